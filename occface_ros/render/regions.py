"""Face-region labels of a morphable model, derived from its own 68 landmarks on the mean shape.

`face_regions(model)` returns the FACE part of the mesh (forehead to chin, cheeks back to the ears,
down to the jaw line; no scalp, ears, underside of the jaw or neck) plus triangles that close the
holes of the eyes and of the mouth (ICT-FaceKit Light has no eyeballs and no mouth socket), with a
label per vertex and per triangle from `occface_ros.core.labels`. The derivation is geometric
and deterministic (docs/occlusion.md, "Face regions"):

1. Frontal view of the mean shape (model x, y). Face polygon: the convex hull of the 68 landmarks,
   the jaw contour (iBUG 0-16) continued up the temples to the mean brow height, and an elliptic
   forehead arc 0.8 x the brow-to-subnasale distance high (the facial thirds; the brow landmarks
   lie above the glabella).
2. Face triangles: all three corners inside the polygon, on the front surface (a triangle of the
   mean mesh visible in a frontal render, or sharing an edge chain with them inside the polygon:
   the nostrils, eyelid rims and inner lips), the connected patch that holds the nose tip.
   Then down and back to the jaw line (`_jaw_extension`): a model's iBUG jaw contour vertices
   (0-16) sit on the front of the face, inside the jaw silhouette that photo annotations (and the
   evaluation's face region) follow, so the lower cheeks, the sides of the jaw and the chin are
   grown onto the patch: edge-connected triangles below the top of the contour, outside the hull
   of the inner landmarks 17-67, whose normal points down by at most `JAW_MAX_DOWN_DEG` (60 deg;
   the underside of the jaw and chin bounds the growth, so the neck stays out) and whose corners
   lie less than `JAW_RAMUS_DEPTH` (1) eye width behind the contour's depth at their height (the
   ramus) and within the contour's width (+0.2 eye width): the ears stay out.
3. Vertex labels by region polygons in the frontal view, in priority order: eyes (iBUG 36-41 /
   42-47), brows (a band below the iBUG 17-21 / 22-26 brow line), upper lip (outer 48-54 + inner
   60-64), lower lip (outer 54-59, 48 + inner 64-67, 60), nose (bridge 27 to the alae around
   31-35), skin elsewhere. Vertices outside the face part: BACKGROUND.
4. Holes of the face part (boundary loops other than the outer rim) are closed by zipping the
   loop's upper and lower chains between its leftmost and rightmost vertices (no new vertices);
   the fill triangles get LEFT_EYE / RIGHT_EYE / INNER_MOUTH when the loop lies in that region's
   polygon, else the majority label of the loop.
Triangle labels: the majority of the corner labels (eye > brow > lip > nose > skin on ties); a
triangle joining upper-lip and lower-lip corners inside the inner-lip polygon is INNER_MOUTH (a
closed-mouth mesh such as BFM's has such triangles instead of a hole).
"""
from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..core.labels import (
    BACKGROUND,
    INNER_MOUTH,
    LEFT_BROW,
    LEFT_EYE,
    LOWER_LIP,
    NOSE,
    RIGHT_BROW,
    RIGHT_EYE,
    SKIN,
    UPPER_LIP,
)

__all__ = ["FaceRegions", "face_polygons", "face_regions"]

# tie-break priority of labels (higher wins) when a triangle's three corners all differ
_PRIORITY = {BACKGROUND: 0, SKIN: 1, NOSE: 2, UPPER_LIP: 3, LOWER_LIP: 3, INNER_MOUTH: 4,
             LEFT_BROW: 5, RIGHT_BROW: 5, LEFT_EYE: 6, RIGHT_EYE: 6}


@dataclass
class FaceRegions:
    """Labelled face part of a morphable model's mesh (see the module doc)."""

    vertex_labels: torch.Tensor  # (V,) int64 label per model vertex (BACKGROUND outside the face part)
    triangles: torch.Tensor  # (T', 3) int64 vertex indices: face triangles, then the hole-fill triangles
    triangle_labels: torch.Tensor  # (T',) int64
    triangle_uv: np.ndarray | None  # (T', 3) per-corner indices into model.uv, or None without UVs
    source_triangle: torch.Tensor  # (T',) int64 index into model.triangles, -1 for hole-fill triangles

    @property
    def num_fill(self) -> int:
        """Number of hole-fill triangles (at the end of `triangles`)."""
        return int((self.source_triangle < 0).sum())

    def to(self, device) -> FaceRegions:
        """Copy with the tensors on `device`."""
        return FaceRegions(self.vertex_labels.to(device), self.triangles.to(device),
                           self.triangle_labels.to(device), self.triangle_uv, self.source_triangle.to(device))


_CACHE: dict[tuple, FaceRegions] = {}
_BY_OBJECT: dict[int, tuple[weakref.ref, FaceRegions]] = {}  # fast path: the same model object again


def face_regions(model) -> FaceRegions:
    """Labelled face triangles of `model` (a MorphableModel), cached in memory per model content (CPU tensors)."""
    hit = _BY_OBJECT.get(id(model))
    if hit is not None and hit[0]() is model:
        return hit[1]
    mean = model.mean_m.detach().cpu().numpy().astype(np.float64)
    tris = model.triangles.detach().cpu().numpy().astype(np.int64)
    digest = hashlib.sha1(mean.tobytes() + tris.tobytes()).hexdigest()
    key = (model.name, mean.shape[0], tris.shape[0], digest)
    if key not in _CACHE:
        lm_idx = model.landmarks68.detach().cpu().numpy().astype(np.int64)
        _CACHE[key] = _derive(mean, tris, lm_idx, model.triangle_uv)
    try:
        _BY_OBJECT[id(model)] = (weakref.ref(model), _CACHE[key])
    except TypeError:  # not weak-referenceable: the content key still caches
        pass
    return _CACHE[key]


# ----------------------------------------------------------------------------------- polygons

def face_polygons(landmarks68_xy: np.ndarray) -> dict[str, np.ndarray]:
    """Region polygons (name -> (N, 2)) in a frontal view with y UP, from the 68 landmarks (68, 2).

    Keys: face, right_eye, left_eye, right_brow, left_brow, upper_lip, lower_lip, inner_mouth, nose.
    """
    L = np.asarray(landmarks68_xy, np.float64)
    up = _up_direction(L)
    side = np.array([up[1], -up[0]])  # image-right of the subject's face (towards larger x for upright)
    cx = L[27:31].mean(0)
    brow_level = L[17:27] @ up
    brow_y = brow_level.mean()
    forehead_h = 0.8 * (brow_y - L[33] @ up)  # the upper third of the face ~ the middle (brow-to-subnasale)
    eye_w = 0.5 * (np.linalg.norm(L[39] - L[36]) + np.linalg.norm(L[45] - L[42]))

    # face outline: jaw, temples up to the brow line, elliptic forehead arc
    jaw = L[0:17]
    right_x, left_x = L[0] @ side, L[16] @ side
    centre_s = 0.5 * (right_x + left_x)
    half_w = 0.5 * (left_x - right_x)
    ang = np.linspace(0.0, np.pi, 25)
    arc_s = centre_s + half_w * np.cos(ang)
    arc_u = brow_y + forehead_h * np.sin(ang)
    arc = arc_s[:, None] * side + arc_u[:, None] * up
    temple_l = L[16] + up * max(0.0, brow_y - L[16] @ up)
    temple_r = L[0] + up * max(0.0, brow_y - L[0] @ up)
    face = np.concatenate([jaw, temple_l[None], arc, temple_r[None], L], 0)
    face = cv2.convexHull(face.astype(np.float32)).reshape(-1, 2).astype(np.float64)  # a turned nose sticks out

    # brows: landmarks on the upper edge of the brow; a band 0.35 eye width below, 0.08 above
    def brow(idx):
        pts = L[idx]
        return np.concatenate([pts + up * 0.08 * eye_w, (pts - up * 0.35 * eye_w)[::-1]], 0)

    # nose: bridge (27) widening to the alae around the nostrils (31-35)
    hw = 0.5 * np.linalg.norm(L[35] - L[31]) * 1.3

    def at(s, u):
        return s * side + u * up

    c_s = cx @ side
    nose_pts = [at(c_s - 0.3 * hw, L[27] @ up), at(c_s + 0.3 * hw, L[27] @ up),
                at(c_s + 0.5 * hw, L[29] @ up), at(c_s + hw, L[30] @ up), at(c_s + hw, L[33] @ up),
                L[35], L[34], L[33], L[32], L[31],
                at(c_s - hw, L[33] @ up), at(c_s - hw, L[30] @ up), at(c_s - 0.5 * hw, L[29] @ up)]
    nose = np.array(nose_pts)
    return {
        "face": face,
        "right_eye": L[36:42],
        "left_eye": L[42:48],
        "right_brow": brow(slice(17, 22)),
        "left_brow": brow(slice(22, 27)),
        "upper_lip": np.concatenate([L[48:55], L[60:65][::-1]], 0),
        "lower_lip": np.concatenate([L[54:60], L[48:49], L[60:61], L[64:68][::-1]], 0),
        "inner_mouth": L[60:68],
        "nose": nose,
    }


def _up_direction(L: np.ndarray) -> np.ndarray:
    """Unit 'up' of a face in a y-up 2D frame: from the chin (8) towards the brows' centre."""
    d = L[17:27].mean(0) - L[8]
    return d / max(np.linalg.norm(d), 1e-12)


def points_in_polygon(points: np.ndarray, polygon: np.ndarray, tolerance: float = 0.0) -> np.ndarray:
    """(N,) bool: even-odd inside test of points (N, 2) in a closed polygon (M, 2), or within `tolerance`."""
    p = np.asarray(points, np.float64)[:, None, :]
    a = np.asarray(polygon, np.float64)[None]
    b = np.roll(a, -1, axis=1)
    ay, by = a[..., 1], b[..., 1]
    crosses = (ay > p[..., 1]) != (by > p[..., 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = a[..., 0] + (p[..., 1] - ay) * (b[..., 0] - a[..., 0]) / (by - ay)
    inside = (crosses & (p[..., 0] < x_at)).sum(1) % 2 == 1
    if tolerance > 0:
        ab = b - a
        t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-30), 0.0, 1.0)
        dist = np.linalg.norm(p - (a + t[..., None] * ab), axis=-1).min(1)
        inside |= dist <= tolerance
    return inside


# ----------------------------------------------------------------------------------- derivation

def _frontal_visible_triangles(mean: np.ndarray, tris: np.ndarray, pixel_m: float = 4e-4) -> np.ndarray:
    """(T,) bool: triangles of the mean mesh that win at least one pixel in a frontal (near-orthographic) render."""
    from .raster import rasterize

    lo, hi = mean.min(0), mean.max(0)
    centre = 0.5 * (lo + hi)
    distance_m = 20.0
    f = distance_m / pixel_m
    width = int(np.ceil((hi[0] - lo[0]) / pixel_m)) + 8
    height = int(np.ceil((hi[1] - lo[1]) / pixel_m)) + 8
    # camera frame (x right, y down, z forward) looking at the face: x_c = x, y_c = -y, z_c = D - z
    cam = np.stack([mean[:, 0] - centre[0], -(mean[:, 1] - centre[1]), distance_m - (mean[:, 2] - centre[2])], 1)
    K = torch.tensor([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])
    frags = rasterize(torch.from_numpy(cam).float()[None], torch.from_numpy(tris), K, height, width, backend="torch")
    won = frags.triangle_id[frags.triangle_id >= 0].unique().numpy()
    out = np.zeros(len(tris), bool)
    out[won] = True
    return out


def _edge_components(tris: np.ndarray, subset: np.ndarray) -> np.ndarray:
    """Connected components (by shared edges) of the triangles in `subset` (T,) bool -> (T,) label, -1 outside."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    idx = np.nonzero(subset)[0]
    e = np.sort(np.stack([tris[idx][:, [0, 1]], tris[idx][:, [1, 2]], tris[idx][:, [2, 0]]], 1), -1)  # (n, 3, 2)
    n_v = int(tris.max()) + 1
    key = (e[..., 0] * n_v + e[..., 1]).reshape(-1)
    owner = np.repeat(np.arange(len(idx)), 3)
    order = np.argsort(key, kind="stable")
    k_sorted, o_sorted = key[order], owner[order]
    same = k_sorted[1:] == k_sorted[:-1]
    a, b = o_sorted[:-1][same], o_sorted[1:][same]
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(idx), len(idx)))
    _, comp = connected_components(graph, directed=False)
    out = np.full(len(tris), -1, np.int64)
    out[idx] = comp
    return out


def _boundary_loops(tris: np.ndarray) -> list[np.ndarray]:
    """Closed loops of boundary half-edges (edges used by one triangle) of a triangle set, as vertex lists."""
    half = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]], 0)
    und = np.sort(half, 1)
    _, inv, counts = np.unique(und, axis=0, return_inverse=True, return_counts=True)
    boundary = half[counts[inv.reshape(-1)] == 1]
    nxt: dict[int, list[int]] = {}
    for a, b in boundary.tolist():
        nxt.setdefault(a, []).append(b)
    loops, used = [], set()
    for a, b in boundary.tolist():
        if (a, b) in used:
            continue
        loop, cur, prev = [a], b, a
        used.add((a, b))
        while cur != a and len(loop) <= len(boundary):
            loop.append(cur)
            cands = [c for c in nxt.get(cur, []) if (cur, c) not in used]
            if not cands:
                break
            prev, cur = cur, cands[0]
            used.add((prev, cur))
        if cur == a and len(loop) >= 3:
            loops.append(np.array(loop, np.int64))
    return loops


def _zip_loop(loop: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Triangles (n-2, 3) closing a hole: zip the two chains between the loop's leftmost and rightmost vertices."""
    x = xy[loop, 0]
    i0, i1 = int(np.argmin(x)), int(np.argmax(x))
    n = len(loop)
    rolled = np.roll(loop, -i0)
    k = (i1 - i0) % n
    chain_a = rolled[: k + 1]  # leftmost -> rightmost one way round
    chain_b = np.concatenate([rolled[k:], rolled[:1]])[::-1]  # leftmost -> rightmost the other way
    out = []
    i = j = 0
    while i < len(chain_a) - 1 or j < len(chain_b) - 1:
        adv_a = j >= len(chain_b) - 1 or (i < len(chain_a) - 1 and xy[chain_a[i + 1], 0] <= xy[chain_b[j + 1], 0])
        if adv_a:
            out.append((chain_a[i], chain_b[j], chain_a[i + 1]))
            i += 1
        else:
            out.append((chain_a[i], chain_b[j], chain_b[j + 1]))
            j += 1
    t = np.array(out, np.int64).reshape(-1, 3)
    return t[(t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 0] != t[:, 2])]


JAW_MAX_DOWN_DEG = 60.0
"""Lower-face extension: a triangle whose normal points down by more than this (from the horizontal
plane) is under the jaw or the chin (seen only from below): it bounds the extension."""
JAW_RAMUS_DEPTH = 1.0
"""Lower-face extension: how far behind the iBUG jaw contour (at the same height) the face part may
reach, in eye widths (the ramus of the mandible, in front of the ear)."""


def _jaw_extension(mean: np.ndarray, tris: np.ndarray, L3: np.ndarray, face_t: np.ndarray,
                   inner: np.ndarray, eye_w: float) -> np.ndarray:
    """(T,) bool: triangles that extend the face part from the landmark outline to the jaw line.

    A 3D model's iBUG jaw contour vertices (0-16) lie on the front of the face, inside the jaw's
    silhouette in a photo (where iBUG annotations put them). The band between them and the jaw
    line (the lower cheeks, the sides of the jaw back to the ramus, the chin down to where it
    turns under) is face too. Candidates (mean shape, y up, z towards the viewer): not in the face
    patch `face_t`, not within `inner` (triangles inside the hull of the inner landmarks 17-67:
    mouth and nostril insides), every corner below the top of the contour (y < max(y_0, y_16)),
    less than `JAW_RAMUS_DEPTH` eye widths behind the contour's depth at that corner's height
    (left/right averaged, interpolated by height: the ramus; excludes the ears and the strip
    below the ear lobe where the jaw's side runs into the neck) and within the contour's half
    width + 0.2 eye width (ears stick out beyond it); normal pointing down by at most
    `JAW_MAX_DOWN_DEG` (the underside of the jaw and chin separates the face from the neck).
    Kept: the candidates edge-connected to the face patch. Set operations only.
    """
    a, b, c = mean[tris[:, 0]], mean[tris[:, 1]], mean[tris[:, 2]]
    normal = np.cross(b - a, c - a)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-30)
    if normal[face_t, 2].mean() < 0:  # inward-wound mesh
        normal = -normal
    # contour depth by height: left/right averaged, from the top (0/16) down to the chin (8)
    contour = 0.5 * (L3[0:9] + L3[16:7:-1])
    order = np.argsort(contour[:, 1])
    z_min = np.interp(mean[:, 1], contour[order, 1], contour[order, 2]) - JAW_RAMUS_DEPTH * eye_w
    y_top = max(L3[0, 1], L3[16, 1])
    half_width = np.abs(L3[[0, 16], 0]).max() + 0.2 * eye_w  # the ears stick out beyond the contour's width
    cand = (~face_t & ~inner & (mean[tris, 1] < y_top).all(1) & (mean[tris, 2] > z_min[tris]).all(1)
            & (np.abs(mean[tris, 0]) < half_width).all(1)
            & (normal[:, 1] > -np.sin(np.radians(JAW_MAX_DOWN_DEG))))
    comp = _edge_components(tris, face_t | cand)
    return cand & np.isin(comp, np.unique(comp[face_t]))


def _derive(mean: np.ndarray, tris: np.ndarray, lm_idx: np.ndarray, triangle_uv) -> FaceRegions:
    V = mean.shape[0]
    xy = mean[:, :2]
    L = xy[lm_idx]
    polys = face_polygons(L)
    eye_w = 0.5 * (np.linalg.norm(L[39] - L[36]) + np.linalg.norm(L[45] - L[42]))
    tol = 0.02 * eye_w  # ~0.6 mm: vertices on a polygon's edge (the landmarks themselves) count as inside

    # 1-2. face triangles
    in_face_v = points_in_polygon(xy, polys["face"], tol)
    in_face_t = in_face_v[tris].all(1)
    visible_t = _frontal_visible_triangles(mean, tris)
    core = in_face_t & visible_t
    comp = _edge_components(tris, core)
    nose_tip = lm_idx[30]
    tip_tris = np.nonzero((tris == nose_tip).any(1) & core)[0]
    if len(tip_tris) == 0:
        raise ValueError("face_regions: the nose tip is not on the visible face surface")
    face_t = comp == comp[tip_tris[0]]
    # hidden pockets inside the polygon (nostrils, eyelid rims, inner lips): components of the
    # remaining in-polygon triangles that touch the face patch and are small
    rest = in_face_t & ~face_t
    rest_comp = _edge_components(tris, rest)
    face_vertices = np.zeros(V, bool)
    face_vertices[tris[face_t].reshape(-1)] = True
    touching = np.unique(rest_comp[rest & face_vertices[tris].any(1)])
    sizes = np.bincount(rest_comp[rest], minlength=int(rest_comp.max()) + 1 if rest.any() else 0)
    for c in touching.tolist():
        members = rest_comp == c
        # a pocket: small, and in front of the jaw corners' depth (not the back of the head or the neck)
        if sizes[c] <= 0.05 * face_t.sum() and mean[tris[members].reshape(-1), 2].min() > mean[lm_idx[[0, 16]], 2].min() - 0.5 * eye_w:
            face_t |= members
    # 2b. lower face down to the jaw line (see _jaw_extension)
    inner = cv2.convexHull(L[17:68].astype(np.float32)).reshape(-1, 2).astype(np.float64)  # brows to lower lip
    in_inner_t = points_in_polygon(xy, inner, tol)[tris].all(1)
    face_t |= _jaw_extension(mean, tris, mean[lm_idx], face_t, in_inner_t, eye_w)
    face_vertices[:] = False
    face_vertices[tris[face_t].reshape(-1)] = True

    # 3. vertex labels (later assignments win)
    labels = np.full(V, BACKGROUND, np.int64)
    labels[face_vertices] = SKIN
    fv = np.nonzero(face_vertices)[0]
    p = xy[fv]

    def paint(poly, label, tolerance=tol):
        sel = points_in_polygon(p, poly, tolerance)
        labels[fv[sel]] = label

    paint(polys["nose"], NOSE)
    # lips; vertices inside the inner-lip polygon (the lips' inner roll) go to the nearer lip
    paint(polys["upper_lip"], UPPER_LIP)
    paint(polys["lower_lip"], LOWER_LIP)
    inner = points_in_polygon(p, polys["inner_mouth"], 0.0)
    if inner.any():
        mid = _mouth_midline(L, p[inner])
        labels[fv[inner]] = np.where(p[inner] @ _up_direction(L) >= mid, UPPER_LIP, LOWER_LIP)
    paint(polys["right_brow"], RIGHT_BROW, 0.0)
    paint(polys["left_brow"], LEFT_BROW, 0.0)
    paint(polys["right_eye"], RIGHT_EYE)
    paint(polys["left_eye"], LEFT_EYE)

    # triangle labels of the face triangles
    face_idx = np.nonzero(face_t)[0]
    face_tris = tris[face_idx]
    tri_labels = _majority(labels[face_tris])
    lips = np.isin(labels[face_tris], (UPPER_LIP, LOWER_LIP))
    joins_lips = (labels[face_tris] == UPPER_LIP).any(1) & (labels[face_tris] == LOWER_LIP).any(1)
    in_inner = points_in_polygon(xy[face_tris].mean(1), polys["inner_mouth"], 0.0)
    tri_labels[joins_lips & lips.all(1) & in_inner] = INNER_MOUTH

    # 4. close the holes
    loops = _boundary_loops(face_tris)
    fills, fill_labels = [], []
    if loops:
        perim = [np.linalg.norm(xy[lp] - xy[np.roll(lp, -1)], axis=1).sum() for lp in loops]
        outer = int(np.argmax(perim))
        for k, lp in enumerate(loops):
            if k == outer:
                continue
            centre = xy[lp].mean(0, keepdims=True)
            label = None
            for name, lab in (("right_eye", RIGHT_EYE), ("left_eye", LEFT_EYE)):
                if points_in_polygon(centre, polys[name], 0.25 * eye_w)[0]:
                    label = lab
            if label is None and points_in_polygon(centre, np.concatenate([L[48:60]]), 0.1 * eye_w)[0]:
                label = INNER_MOUTH
            if label is None:
                vals, counts = np.unique(labels[lp], return_counts=True)
                label = int(vals[np.argmax(counts)])
            t = _zip_loop(lp, xy)
            fills.append(t)
            fill_labels.append(np.full(len(t), label, np.int64))
    if fills:
        fill = np.concatenate(fills, 0)
        # orient the fill triangles towards the viewer (+z) on the mean shape
        a, b, c = mean[fill[:, 0]], mean[fill[:, 1]], mean[fill[:, 2]]
        flip = np.cross(b - a, c - a)[:, 2] < 0
        fill[flip] = fill[flip][:, [0, 2, 1]]
        fill_lab = np.concatenate(fill_labels)
    else:
        fill = np.zeros((0, 3), np.int64)
        fill_lab = np.zeros(0, np.int64)
    all_tris = np.concatenate([face_tris, fill], 0)
    all_labels = np.concatenate([tri_labels, fill_lab])
    source = np.concatenate([face_idx, np.full(len(fill), -1, np.int64)])
    tri_uv = None
    if triangle_uv is not None:
        tuv = np.asarray(triangle_uv, np.int64)
        vertex_uv = np.full(V, -1, np.int64)
        vertex_uv[tris.reshape(-1)[::-1]] = tuv.reshape(-1)[::-1]  # any UV index of the vertex (its first)
        tri_uv = np.concatenate([tuv[face_idx], vertex_uv[fill]], 0)
    return FaceRegions(
        vertex_labels=torch.from_numpy(labels),
        triangles=torch.from_numpy(np.ascontiguousarray(all_tris)),
        triangle_labels=torch.from_numpy(all_labels),
        triangle_uv=tri_uv,
        source_triangle=torch.from_numpy(source),
    )


def _mouth_midline(L: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Height ('up' coordinate) of the mouth line (inner-lip centre line) at the points' sideways position."""
    up = _up_direction(L)
    side = np.array([up[1], -up[0]])
    upper = L[[60, 61, 62, 63, 64]]
    lower = L[[60, 67, 66, 65, 64]]
    mid = 0.5 * (upper + lower)
    s = mid @ side
    order = np.argsort(s)
    return np.interp(pts @ side, s[order], (mid @ up)[order])


def _majority(corner_labels: np.ndarray) -> np.ndarray:
    """(T,) label held by >= 2 corners, else the highest-priority corner label."""
    a, b, c = corner_labels.T
    out = np.where((a == b) | (a == c), a, np.where(b == c, b, -1))
    tie = out < 0
    if tie.any():
        prio = np.vectorize(_PRIORITY.get)(corner_labels[tie])
        out[tie] = corner_labels[tie][np.arange(tie.sum()), prio.argmax(1)]
    return out
