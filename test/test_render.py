"""Rasterizer (torch backend vs brute-force references), face regions of the morphable models, parsing maps."""
import cv2
import numpy as np
import pytest
import torch

from occface_ros.core.camera import (
    intrinsics_from_fov,
    project_points,
    rotation_from_yaw_pitch_roll_deg,
)
from occface_ros.core import labels as L
from occface_ros.render import (
    face_regions,
    interpolate,
    landmark_parsing,
    nvdiffrast_available,
    rasterize,
    render_parsing,
)

pytestmark = pytest.mark.unit

# ----------------------------------------------------------------------------------- references

def _project_np(verts, K):
    v = np.asarray(verts, np.float64)
    K = np.asarray(K, np.float64)
    return v[:, :2] / v[:, 2:3] * np.array([K[0, 0], K[1, 1]]) + K[:2, 2]


def _screen_bary(P, px, py):
    """Screen-space barycentrics of points (px, py) (broadcast) in triangles P (..., 3, 2)."""
    a, b, c = P[..., 0, :], P[..., 1, :], P[..., 2, :]
    area = (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])
    w0 = ((b[..., 0] - px) * (c[..., 1] - py) - (b[..., 1] - py) * (c[..., 0] - px)) / area
    w1 = ((c[..., 0] - px) * (a[..., 1] - py) - (c[..., 1] - py) * (a[..., 0] - px)) / area
    return np.stack([w0, w1, 1.0 - w0 - w1], -1), area


def reference_per_pixel(verts, tris, K, height, width):
    """Brute force: for every pixel centre, test every triangle (float64). Returns tid, depth, bary, edge."""
    v = np.asarray(verts, np.float64)
    t = np.asarray(tris)
    P = _project_np(v, K)[t]  # (T, 3, 2)
    z = v[t, 2]
    tid = np.full((height, width), -1)
    depth = np.full((height, width), np.inf)
    bary = np.zeros((height, width, 3))
    edge = np.zeros((height, width), bool)  # a pixel centre within 1e-4 (barycentric) of some triangle's edge
    np.seterr(divide="ignore", invalid="ignore")  # degenerate random triangles
    for r in range(height):
        for c in range(width):
            w, area = _screen_bary(P, float(c), float(r))
            ok = (np.abs(area) > 1e-12) & (z.min(1) > 1e-3)
            inside = ok & (w >= 0).all(1)
            edge[r, c] = (ok & (w.min(1) > -1e-4) & (np.abs(w).min(1) < 1e-4)).any()
            if inside.any():
                iz = (w / z).sum(1)
                d = np.where(inside, 1.0 / iz, np.inf)
                k = int(np.argmin(d))
                tid[r, c], depth[r, c] = k, d[k]
                bary[r, c] = (w[k] / z[k]) / iz[k]
    return tid, depth, bary, edge


def reference_per_triangle(verts, tris, K, height, width):
    """Brute force z-buffer looping over triangles (float64), for large meshes. Returns tid, depth."""
    v = np.asarray(verts, np.float64)
    t = np.asarray(tris)
    xy = _project_np(v, K)
    tid = np.full((height, width), -1)
    depth = np.full((height, width), np.inf)
    for i, tri in enumerate(t):
        P, z = xy[tri], v[tri, 2]
        x0, y0 = np.maximum(np.ceil(P.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.floor(P.max(0)).astype(int), [width - 1, height - 1])
        if x1 < x0 or y1 < y0:
            continue
        gx, gy = np.meshgrid(np.arange(x0, x1 + 1), np.arange(y0, y1 + 1))
        w, area = _screen_bary(P[None, None], gx, gy)
        if abs(area[0, 0]) < 1e-12:
            continue
        d = 1.0 / (w / z).sum(-1)
        win = (w >= 0).all(-1) & (d < depth[y0:y1 + 1, x0:x1 + 1])
        depth[y0:y1 + 1, x0:x1 + 1][win] = d[win]
        tid[y0:y1 + 1, x0:x1 + 1][win] = i
    return tid, depth


# ----------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def ict():
    from occface_ros.morphable import load_morphable_model

    return load_morphable_model("ict", None)


@pytest.fixture(scope="module")
def ict_regions(ict):
    return face_regions(ict)


def _posed(model, yaw=0.0, pitch=0.0, roll=0.0, width=640, height=480, face_px=250.0, offset_px=(0.0, 0.0)):
    """Mean shape in the camera frame with the landmarks' extent `face_px` tall, and K."""
    K = intrinsics_from_fov(width, height, 60.0)
    v = model.mean_m
    lm = v[model.landmarks68]
    f = float(K[0, 0])
    z = f * float(lm[:, 1].max() - lm[:, 1].min()) / face_px
    R = rotation_from_yaw_pitch_roll_deg(yaw, pitch, roll)
    t = torch.tensor([offset_px[0] * z / f, offset_px[1] * z / f, z]) - R @ lm.mean(0)
    return v @ R.T + t, K


# ----------------------------------------------------------------------------------- rasterizer

def test_torch_rasterizer_matches_per_pixel_reference_on_random_meshes():
    gen = torch.Generator().manual_seed(0)
    K = torch.tensor([[40.0, 0.0, 15.5], [0.0, 40.0, 11.5], [0.0, 0.0, 1.0]])
    for _ in range(4):
        verts = torch.rand(30, 3, generator=gen) * torch.tensor([1.0, 0.8, 1.0]) + torch.tensor([-0.5, -0.4, 1.0])
        tris = torch.randint(0, 30, (40, 3), generator=gen)
        frags = rasterize(verts[None], tris, K, 24, 32, backend="torch")
        tid, depth, bary, edge = reference_per_pixel(verts.numpy(), tris.numpy(), K.numpy(), 24, 32)
        got = frags.triangle_id[0].numpy()
        assert ((got == tid) | edge).all()
        assert (tid >= 0).mean() > 0.2
        same = (got == tid) & (tid >= 0)
        np.testing.assert_allclose(frags.depth[0].numpy()[same], depth[same], rtol=1e-5)
        np.testing.assert_allclose(frags.barycentric[0].numpy()[same], bary[same], atol=1e-4)
        empty = got < 0
        assert np.isinf(frags.depth[0].numpy()[empty]).all()
        assert (frags.barycentric[0].numpy()[empty] == 0).all()
        assert (frags.face_index[0].numpy() == np.where(empty, -1, 0)).all()


def test_torch_rasterizer_matches_reference_on_ict_face(ict):
    verts, K = _posed(ict, yaw=25.0, pitch=10.0, roll=5.0, width=200, height=160, face_px=90.0)
    frags = rasterize(verts[None], ict.triangles, K, 160, 200, backend="torch")
    tid, depth = reference_per_triangle(verts.numpy(), ict.triangles.numpy(), K.numpy(), 160, 200)
    got = frags.triangle_id[0].numpy()
    assert (tid >= 0).sum() > 3000
    assert (got == tid).mean() > 0.995
    same = (got == tid) & (tid >= 0)
    np.testing.assert_allclose(frags.depth[0].numpy()[same], depth[same], rtol=1e-5)


def test_watertight_mesh_has_no_holes(ict):
    # the face is a connected surface: every pixel inside its silhouette is covered (no cracks on shared edges)
    verts, K = _posed(ict, yaw=-15.0)
    frags = rasterize(verts[None], ict.triangles, K, 480, 640)
    covered = frags.mask[0].numpy().astype(np.uint8)
    filled = covered.copy()
    contours, _ = cv2.findContours(covered, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(filled, contours, -1, 1, -1)
    # pixels inside the outline but not covered: only the eye holes and the mouth gap of the ICT mesh
    pts = project_points(verts[ict.landmarks68], K).numpy()
    holes = np.zeros_like(covered)
    for idx in (slice(36, 42), slice(42, 48), slice(48, 60)):
        cv2.fillPoly(holes, [np.round(pts[idx]).astype(np.int32)], 1)
    holes = cv2.dilate(holes, np.ones((5, 5), np.uint8))
    assert ((filled > covered) & (holes == 0)).sum() == 0


def test_merged_faces_share_one_zbuffer(ict):
    a, K = _posed(ict, yaw=20.0, offset_px=(-60.0, 0.0))
    b, _ = _posed(ict, yaw=-20.0, offset_px=(60.0, 10.0))
    b = b * 1.3  # further away along the rays: same image size x 1/1.3, behind face a
    both = torch.stack([a, b])
    separate = rasterize(both, ict.triangles, K, 480, 640)
    merged = rasterize(both, ict.triangles, K, 480, 640, merge_faces=True)
    assert merged.triangle_id.shape == (1, 480, 640)
    nearest = separate.depth.argmin(0)
    covered = separate.mask.any(0)
    fi = merged.face_index[0]
    assert torch.equal(fi >= 0, covered)
    overlap = separate.mask.all(0)
    assert overlap.sum() > 1000  # the faces really overlap
    assert torch.equal(fi[covered], nearest[covered])
    assert torch.equal(merged.depth[0][covered], separate.depth.min(0).values[covered])
    pick = separate.triangle_id.gather(0, nearest[None])[0]
    assert torch.equal(merged.triangle_id[0][covered], pick[covered])
    # per-face vertex attributes follow face_index
    pos = interpolate(merged, both, ict.triangles)[0]
    ray = torch.stack(((torch.arange(640.0)[None] - K[0, 2]) / K[0, 0] * torch.ones(480, 1),
                       (torch.arange(480.0)[:, None] - K[1, 2]) / K[1, 1] * torch.ones(1, 640),
                       torch.ones(480, 640)), -1)
    expected = ray * merged.depth[0].unsqueeze(-1)
    assert (pos[covered] - expected[covered]).abs().max() < 1e-5


def test_interpolate_reproduces_positions(ict):
    verts, K = _posed(ict, yaw=30.0)
    frags = rasterize(verts[None], ict.triangles, K, 480, 640)
    covered = frags.mask[0]
    per_vertex = interpolate(frags, verts, ict.triangles)[0]
    per_corner = interpolate(frags, verts[ict.triangles], ict.triangles)[0]
    # the interpolated point lies on the pixel's ray at the rasterized depth and projects to the pixel centre
    assert torch.allclose(per_vertex[..., 2][covered], frags.depth[0][covered], rtol=1e-5)
    px = project_points(per_vertex[covered].unsqueeze(0), K)[0]
    rows, cols = torch.nonzero(covered, as_tuple=True)
    assert (px - torch.stack((cols, rows), -1).float()).abs().max() < 1e-2
    assert torch.allclose(per_vertex, per_corner, atol=1e-6)
    assert (per_vertex[~covered] == 0).all()


@pytest.mark.skipif(not nvdiffrast_available(), reason="nvdiffrast with CUDA not available")
def test_nvdiffrast_agrees_with_torch(ict):
    verts, K = _posed(ict, yaw=20.0)
    verts, K = verts.cuda(), K.cuda()
    a = rasterize(verts[None], ict.triangles.cuda(), K, 480, 640, backend="torch")
    b = rasterize(verts[None], ict.triangles.cuda(), K, 480, 640, backend="nvdiffrast")
    assert (a.triangle_id == b.triangle_id).float().mean() > 0.99
    same = (a.triangle_id == b.triangle_id) & a.mask
    assert torch.allclose(a.depth[same], b.depth[same], rtol=1e-4)
    assert torch.allclose(a.barycentric[same], b.barycentric[same], atol=1e-3)


# ----------------------------------------------------------------------------------- regions

def _check_regions(model, regions, need_mouth_hole: bool):
    V = model.num_vertices
    assert regions.vertex_labels.shape == (V,)
    T = regions.triangles.shape[0]
    assert regions.triangle_labels.shape == (T,) and regions.source_triangle.shape == (T,)
    for label in L.FACE_LABELS:
        if label == L.INNER_MOUTH and not need_mouth_hole:
            continue
        assert (regions.triangle_labels == label).sum() > 0, L.LABELS[label]
    assert (regions.triangle_labels == L.BACKGROUND).sum() == 0
    mean = model.mean_m
    x_of = {lab: mean[regions.vertex_labels == lab, 0].mean() for lab in (L.LEFT_EYE, L.RIGHT_EYE, L.LEFT_BROW, L.RIGHT_BROW)}
    assert x_of[L.LEFT_EYE] > 0.01 > -0.01 > x_of[L.RIGHT_EYE]  # subject's left = larger model x
    assert x_of[L.LEFT_BROW] > 0.01 > -0.01 > x_of[L.RIGHT_BROW]
    # face part only: within the jaw's width, above the chin, below the top of the head, in front of the ears
    lm = mean[model.landmarks68]
    used = mean[regions.triangles.unique()]
    half_width = lm[[0, 16], 0].abs().max()
    assert used[:, 0].abs().max() <= half_width + 0.005
    assert used[:, 1].min() >= lm[8, 1] - 0.005
    assert used[:, 2].min() > lm[[0, 16], 2].min() - 0.03
    # source triangles are the model's own
    src = regions.source_triangle
    kept = src >= 0
    assert torch.equal(regions.triangles[kept], model.triangles[src[kept]])


def test_ict_regions(ict, ict_regions):
    _check_regions(ict, ict_regions, need_mouth_hole=True)
    used = ict.mean_m[ict_regions.triangles.unique()]
    assert used[:, 1].max() < ict.mean_m[:, 1].max() - 0.025  # no scalp: well below the crown
    assert face_regions(ict) is ict_regions  # cached
    fill = ict_regions.source_triangle < 0
    fill_labels = set(ict_regions.triangle_labels[fill].tolist())
    assert {L.LEFT_EYE, L.RIGHT_EYE, L.INNER_MOUTH} <= fill_labels
    # UV indices: valid, and the face triangles keep the model's own
    uv = ict_regions.triangle_uv
    assert uv.shape == (ict_regions.triangles.shape[0], 3)
    assert uv.min() >= 0 and uv.max() < len(ict.uv)
    kept = (ict_regions.source_triangle >= 0).numpy()
    np.testing.assert_array_equal(uv[kept], ict.triangle_uv[ict_regions.source_triangle.numpy()[kept]])
    # the face part is one open surface whose only boundary is its outer rim (holes closed)
    from occface_ros.render.regions import _boundary_loops

    assert len(_boundary_loops(ict_regions.triangles.numpy())) == 1


def test_bfm_regions():
    from occface_ros.morphable import MissingModelError, load_morphable_model

    try:
        bfm = load_morphable_model("bfm", None)
    except (MissingModelError, FileNotFoundError, OSError) as exc:
        pytest.skip(f"BFM model not available: {exc}")
    _check_regions(bfm, face_regions(bfm), need_mouth_hole=False)


def _frontal_render(ict, ict_regions, yaw=0.0):
    verts, K = _posed(ict, yaw=yaw)
    frags = rasterize(verts[None], ict_regions.triangles, K, 480, 640)
    parsing = render_parsing(frags, ict_regions.triangle_labels)[0].numpy()
    lm = project_points(verts[ict.landmarks68].unsqueeze(0), K)[0].numpy()
    return parsing, lm


def test_eye_and_mouth_holes_are_closed(ict, ict_regions):
    parsing, lm = _frontal_render(ict, ict_regions)
    for idx, label in ((slice(36, 42), L.RIGHT_EYE), (slice(42, 48), L.LEFT_EYE), (slice(60, 68), None)):
        poly = np.zeros(parsing.shape, np.uint8)
        cv2.fillPoly(poly, [np.round(lm[idx] * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
        inside = poly.astype(bool)
        assert inside.sum() > 0
        assert (parsing[inside] != L.BACKGROUND).all()
        if label is not None:
            assert (parsing[inside] == label).mean() > 0.9


def test_render_parsing_labels_at_landmarks(ict, ict_regions):
    for yaw in (0.0, 30.0):
        parsing, lm = _frontal_render(ict, ict_regions, yaw)

        def at(p, parsing=parsing):
            return int(parsing[round(p[1]), round(p[0])])

        assert at(lm[36:42].mean(0)) == L.RIGHT_EYE
        assert at(lm[42:48].mean(0)) == L.LEFT_EYE
        assert lm[36:42, 0].mean() < lm[42:48, 0].mean()  # subject's right eye on the image's left
        assert at(0.5 * (lm[30] + lm[33])) == L.NOSE
        assert at(0.5 * (lm[51] + lm[62])) == L.UPPER_LIP
        assert at(0.5 * (lm[57] + lm[66])) == L.LOWER_LIP
        assert at(0.6 * lm[19] + 0.4 * lm[37]) in (L.RIGHT_BROW, L.SKIN)
        assert at(lm[19] + 0.15 * (lm[37] - lm[19])) == L.RIGHT_BROW
        assert at(lm[24] + 0.15 * (lm[44] - lm[24])) == L.LEFT_BROW
        assert at(0.5 * (lm[48] + lm[4]) if yaw <= 0 else 0.5 * (lm[54] + lm[12])) == L.SKIN
        assert parsing[0, 0] == L.BACKGROUND


def test_face_part_reaches_the_jaw_line_and_not_the_neck(ict, ict_regions):
    """The face part is grown from the landmark outline down and back to the jaw line (regions._jaw_extension)."""
    from occface_ros.render.regions import face_polygons, points_in_polygon

    mean = ict.mean_m.numpy().astype(np.float64)
    lm = mean[ict.landmarks68.numpy()]
    used = np.zeros(len(mean), bool)
    used[ict_regions.triangles.unique().numpy()] = True
    outline = face_polygons(lm[:, :2])["face"]
    beyond = used & ~points_in_polygon(mean[:, :2], outline, 1e-3)  # face vertices outside the frontal outline
    assert beyond.sum() > 100  # the band below and behind the jaw contour vertices
    assert mean[beyond, 1].max() < max(lm[0, 1], lm[16, 1]) + 1e-9  # only below the top of the contour
    # frontal view (face 250 px tall): below the face part, down the columns of the chin and jaw
    # contour points, the full head mesh jumps back to the neck (> 2 cm) within 2 rows: the face
    # reaches the jaw's silhouette (only the chin's underside steeper than 60 deg is left out). With
    # the outline from the contour vertices alone the chin stopped 8 rows above its silhouette.
    parsing, lm_px = _frontal_render(ict, ict_regions)
    verts, K = _posed(ict)
    depth = rasterize(verts[None], ict.triangles, K, 480, 640).depth[0].numpy()
    for k in (4, 6, 8, 10, 12):
        col = round(float(lm_px[k, 0]))
        bottom = np.nonzero(parsing[:, col] != L.BACKGROUND)[0].max()
        steps = np.diff(depth[bottom:bottom + 12, col])
        assert (steps > 0.02).any() and np.argmax(steps > 0.02) <= 2, k
    # turned away (yaw 40, 60): the side of the jaw behind the near-side contour vertices is face
    # (the outline used to end at them); ears and neck stay out (_check_regions' bounds)
    for yaw in (40.0, 60.0):
        parsing, lm_px = _frontal_render(ict, ict_regions, yaw=yaw)
        for k in (2, 3, 4):
            p = lm_px[k] + 0.1 * (lm_px[k] - lm_px[33])
            assert parsing[round(p[1]), round(p[0])] == L.SKIN, (yaw, k)


def test_face_part_reaches_the_annotated_jaw_contour(annotated_photos):
    """On real photo fits M_beta covers the annotated jaw-contour polygon (iBUG 0-16) almost entirely.

    Annotations follow the jaw's silhouette; the ICT model's contour vertices sit on the front of the
    face, above and inside it. With the face outline built from those vertices alone, M_beta covered
    0.81-0.90 of the polygon (einstein 0.81, takeo 0.89, lenna 0.90; pooled 0.88); grown to the jaw
    line it covers 0.92-0.95 (pooled 0.94). What is left is the fit's own contour error (a few pixels
    along the jaw) and the chin's underside. Thresholds: 0.90 per photo (above each old figure)
    and 0.915 pooled (halfway between). Photos where the clean fit lands on the face
    (breakingbad's does not).
    """
    from occface_ros.config import load_config
    from occface_ros.evaluation.results import match_face
    from occface_ros.pipeline import FacePipeline

    pipeline = FacePipeline(load_config(overrides={"occlusion": {"enabled": True}}))
    covered, total = 0, 0
    for photo in annotated_photos:
        if photo.name not in ("einstein", "lenna", "takeo"):
            continue
        pipeline.reset()
        result = pipeline.process(photo.image_bgr, 0.0)
        assert match_face(result.faces, photo.landmarks68) is not None, photo.name
        h, w = photo.image_bgr.shape[:2]
        jaw = np.zeros((h, w), np.uint8)
        cv2.fillPoly(jaw, [np.round(photo.landmarks68[:17] * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
        jaw = jaw.astype(bool)
        face = np.isin(result.parsing, L.FACE_LABELS)  # face pixels of M_gamma = those of M_beta
        fraction = (face & jaw).sum() / jaw.sum()
        print(f"{photo.name}: M_beta covers {fraction:.3f} of the annotated jaw polygon")
        assert fraction >= 0.9, photo.name
        covered, total = covered + (face & jaw).sum(), total + jaw.sum()
    print(f"pooled: {covered / total:.3f}")
    assert covered / total >= 0.915


# ----------------------------------------------------------------------------------- landmark parsing

def test_landmark_parsing_on_annotated_photos(annotated_photos):
    for photo in annotated_photos:
        h, w = photo.image_bgr.shape[:2]
        lm = photo.landmarks68
        parsing = landmark_parsing([lm], h, w)
        assert parsing.shape == (h, w) and parsing.dtype == np.uint8

        def at(p, parsing=parsing):
            return int(parsing[round(p[1]), round(p[0])])

        assert at(lm[36:42].mean(0)) == L.RIGHT_EYE, photo.name
        assert at(lm[42:48].mean(0)) == L.LEFT_EYE, photo.name
        assert at(0.5 * (lm[30] + lm[33])) == L.NOSE, photo.name
        assert at(0.5 * (lm[51] + lm[62])) == L.UPPER_LIP, photo.name
        assert at(0.5 * (lm[57] + lm[66])) == L.LOWER_LIP, photo.name
        assert at(lm[19] + 0.1 * (lm[37] - lm[19])) == L.RIGHT_BROW, photo.name
        assert at(lm[24] + 0.1 * (lm[44] - lm[24])) == L.LEFT_BROW, photo.name
        near_side = np.linalg.norm(lm[3] - lm[31]) > np.linalg.norm(lm[13] - lm[35])  # the cheek facing the camera
        assert at(0.5 * (lm[3] + lm[31]) if near_side else 0.5 * (lm[13] + lm[35])) == L.SKIN, photo.name
        forehead = lm[27] + 0.5 * (lm[27] - lm[33])
        assert at(forehead) == L.SKIN, photo.name
        below_chin = lm[8] + 0.3 * (lm[8] - lm[33])
        if 0 <= below_chin[1] < h:
            assert at(below_chin) == L.BACKGROUND, photo.name
        labels = set(np.unique(parsing).tolist())
        assert set(L.FACE_LABELS) <= labels or L.INNER_MOUTH not in labels  # a closed mouth may have no interior
    # several faces; invalid landmarks are skipped
    photo = annotated_photos[0]
    h, w = photo.image_bgr.shape[:2]
    one = landmark_parsing([photo.landmarks68], h, w)
    two = landmark_parsing([photo.landmarks68, np.full((68, 2), np.nan)], h, w)
    assert np.array_equal(one, two)
    shift = np.array([w / 2, 0.0]) if photo.landmarks68[:, 0].max() < w / 2 else np.array([-w / 2, 0.0])
    both = landmark_parsing([photo.landmarks68, photo.landmarks68 + shift], h, w)
    for lm in (photo.landmarks68, photo.landmarks68 + shift):
        c = np.round(lm[36:42].mean(0)).astype(int)
        assert both[c[1], c[0]] == L.RIGHT_EYE
