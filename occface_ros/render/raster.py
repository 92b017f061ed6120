"""Triangle rasterizer: one interface (`rasterize` -> `Fragments`), two backends.

Conventions (see docs/occlusion.md, "Rasterizer"):
- input vertices are in the camera frame (OpenCV: x right, y down, z forward), metres;
  `K` projects them to pixels; the CENTRE of pixel (row r, col c) is (x=c, y=r).
- a pixel is covered by a triangle when its centre is inside the projected triangle (both
  windings, no culling; a centre exactly on a shared edge may go to either triangle, never to
  none); the nearest surface (smallest camera z) wins.
- triangles with a vertex at z <= `near_m` are not drawn (no clipping: faces are in front of the
  camera); degenerate (zero-area) triangles neither.
- barycentrics are perspective-correct (they interpolate camera-frame attributes exactly).

Backends:
- "torch": pure torch, vectorised, CPU or CUDA, no loop over triangles or pixels. Per triangle
  (float64): edge functions and 1/z as affine functions of the pixel offset from the triangle's
  first pixel centre. Per row of each triangle's bounding box: the exact span of covered pixel
  centres (the work scales with the area the mesh covers, not with the frame size). Per covered
  (triangle, pixel) pair: 1/z and a packed int64 key (float32 bits of 1/z << 32 | triangle), one
  `scatter_reduce(amax)` into a z-buffer over the mesh's bounding box only: nearest wins, exact
  ties go to the later triangle (higher index). Winners' barycentrics are evaluated densely over
  that box, and the box is copied into the frame-sized outputs.
- "nvdiffrast": `nvdiffrast.torch.rasterize` with a `RasterizeCudaContext` (CUDA tensors only, when
  importable); same outputs (its own tie rule on shared edges).
- "auto": nvdiffrast for CUDA tensors when importable, else torch.

Several faces in one frame: `rasterize(..., merge_faces=True)` draws the B meshes into ONE frame
with a shared z-buffer (faces occlude each other); the result has batch size 1, `triangle_id` is
the triangle of the mesh in `face_index` (so per-triangle tables such as region labels apply
unchanged).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.camera import project_points

__all__ = ["Fragments", "interpolate", "nvdiffrast_available", "rasterize"]


@dataclass
class Fragments:
    """Per-pixel rasterization result for B images of (H, W) pixels."""

    triangle_id: torch.Tensor  # (B, H, W) int64, -1 where no triangle covers the pixel centre
    barycentric: torch.Tensor  # (B, H, W, 3) float32, perspective-correct, 0 where triangle_id < 0
    depth: torch.Tensor  # (B, H, W) float32 camera z (metres), +inf where empty
    face_index: torch.Tensor | None = None  # (B, H, W) int64: which input mesh covers the pixel, -1 where empty

    @property
    def mask(self) -> torch.Tensor:
        """(B, H, W) bool: pixel covered by a triangle."""
        return self.triangle_id >= 0


_NVDR_CONTEXTS: dict = {}


def nvdiffrast_available() -> bool:
    """True when `nvdiffrast.torch` imports and CUDA is available."""
    if not torch.cuda.is_available():
        return False
    try:
        import nvdiffrast.torch  # noqa: F401
    except (ImportError, OSError, RuntimeError):  # not installed, or a broken build
        return False
    return True


def rasterize(
    vertices_cam: torch.Tensor,
    triangles: torch.Tensor,
    K: torch.Tensor,
    height: int,
    width: int,
    backend: str = "auto",
    merge_faces: bool = False,
    near_m: float = 1e-3,
    attributes: bool = True,
) -> Fragments:
    """Rasterize B meshes (B, V, 3) (camera frame, metres) sharing `triangles` (T, 3) with K (3, 3)/(B, 3, 3).

    Returns Fragments of batch B, or of batch 1 with a shared z-buffer when `merge_faces` (see module doc).
    `attributes=False`: triangle ids and face indices only (the torch backend then leaves the
    barycentrics at 0 and the depth at inf, ~15% less work).
    """
    if vertices_cam.dim() == 2:
        vertices_cam = vertices_cam.unsqueeze(0)
    if vertices_cam.dim() != 3 or vertices_cam.shape[-1] != 3:
        raise ValueError(f"vertices_cam must be (B, V, 3), got {tuple(vertices_cam.shape)}")
    device = vertices_cam.device
    vertices_cam = vertices_cam.float()
    triangles = triangles.to(device=device, dtype=torch.int64)
    K = K.to(device=device, dtype=torch.float32)
    if K.dim() == 2:
        K = K.unsqueeze(0).expand(vertices_cam.shape[0], 3, 3)
    if backend == "auto":
        backend = "nvdiffrast" if device.type == "cuda" and nvdiffrast_available() else "torch"
    if backend == "torch":
        return _rasterize_torch(vertices_cam, triangles, K, int(height), int(width), merge_faces, near_m, attributes)
    if backend == "nvdiffrast":
        if device.type != "cuda":
            raise ValueError("the nvdiffrast backend needs CUDA tensors")
        return _rasterize_nvdiffrast(vertices_cam, triangles, K, int(height), int(width), merge_faces, near_m)
    raise ValueError(f"unknown rasterizer backend {backend!r} (torch, nvdiffrast, auto)")


def _empty(n_out: int, height: int, width: int, device) -> Fragments:
    return Fragments(
        triangle_id=torch.full((n_out, height, width), -1, dtype=torch.int64, device=device),
        barycentric=torch.zeros((n_out, height, width, 3), dtype=torch.float32, device=device),
        depth=torch.full((n_out, height, width), float("inf"), dtype=torch.float32, device=device),
        face_index=torch.full((n_out, height, width), -1, dtype=torch.int64, device=device),
    )


def _rasterize_torch(verts, tris, K, height, width, merge, near_m, attributes=True) -> Fragments:
    device = verts.device
    B, V, _ = verts.shape
    T = tris.shape[0]
    n_out = 1 if merge else B
    frags = _empty(n_out, height, width, device)
    if T == 0 or B == 0:
        return frags
    # ---- per-triangle setup in float64 (all B*T triangles)
    xy = project_points(verts.double(), K.double(), min_depth_m=None)  # (B, V, 2)
    flat = (tris.unsqueeze(0) + (torch.arange(B, device=device) * V).view(B, 1, 1)).reshape(-1, 3)
    corner_xy = xy.reshape(-1, 2)[flat]  # (N, 3, 2)
    corner_z = verts[..., 2].reshape(-1)[flat]  # (N, 3)
    # min/max over the 3 corners as elementwise ops (a reduction over a dim of 3 is ~5x slower)
    c0, c1, c2 = corner_xy.unbind(1)
    lo = torch.ceil(torch.minimum(torch.minimum(c0, c1), c2))
    hi = torch.floor(torch.maximum(torch.maximum(c0, c1), c2))
    x0, y0 = lo[:, 0].clamp(0, width), lo[:, 1].clamp(0, height)
    x1, y1 = hi[:, 0].clamp(-1, width - 1), hi[:, 1].clamp(-1, height - 1)
    a, b, c = corner_xy.unbind(1)
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    valid = (torch.minimum(torch.minimum(corner_z[:, 0], corner_z[:, 1]), corner_z[:, 2]) > near_m) & (area.abs() > 1e-9) & torch.isfinite(area) & (x1 >= x0) & (y1 >= y0)
    keep = torch.nonzero(valid).squeeze(1)
    if keep.numel() == 0:
        return frags
    x0, y0, bh = x0[keep], y0[keep], (y1 - y0 + 1)[keep].long()
    bw = x1[keep] - x0 + 1
    # corners relative to the triangle's first pixel centre (x0, y0): small numbers
    q = corner_xy[keep] - torch.stack((x0, y0), -1).unsqueeze(1)
    inv_area = (1.0 / area[keep]).unsqueeze(1)
    nxt, prv = q.roll(-1, 1), q.roll(-2, 1)  # corners i+1, i+2
    # screen barycentric w_i(dx, dy) = A_i dx + B_i dy + C_i (edge function of the opposite edge / area)
    edge = torch.stack(
        ((nxt[..., 1] - prv[..., 1]) * inv_area,
         (prv[..., 0] - nxt[..., 0]) * inv_area,
         (nxt[..., 0] * prv[..., 1] - prv[..., 0] * nxt[..., 1]) * inv_area), 1)  # (Nk, 3 [A, B, C], 3 corners)
    persp = edge * (1.0 / corner_z[keep].double()).unsqueeze(1)  # w_i / z_i: also affine in screen space
    inv_z_coef = persp[..., 0] + persp[..., 1] + persp[..., 2]  # (Nk, 3): 1/z = sum_i w_i / z_i
    face_of = torch.div(keep, T, rounding_mode="floor")
    img = torch.zeros_like(face_of) if merge else face_of
    # the z-buffer covers only the bounding box of the drawn triangles (box_h x box_w per image)
    bx0, by0 = int(x0.min()), int(y0.min())
    box_w = int((x0 + bw).max()) - bx0
    box_h = int((y0 + bh).max()) - by0
    base = (img * box_h + (y0.long() - by0)) * box_w + (x0.long() - bx0)  # z-buffer index of (x0, y0)

    # ---- rows of each bounding box: the exact span of covered pixel centres on the row
    # (inside = all three barycentrics >= -eps: centres on shared edges go to both triangles, never to none)
    eps = 1e-5
    n_rows = int(bh.sum())
    row_tri = torch.repeat_interleave(torch.arange(keep.numel(), device=device), bh, output_size=n_rows)
    dy = torch.arange(n_rows, device=device, dtype=torch.float64) - (torch.cumsum(bh, 0) - bh).double()[row_tri]
    table = torch.cat((edge.reshape(-1, 9), inv_z_coef), 1)[row_tri]  # (R, 12)
    slope = table[:, 0:3]
    offset = table[:, 3:6] * dy[:, None] + table[:, 6:9]  # w_i(dx) = slope_i dx + offset_i on this row
    bound = (-eps - offset) / torch.where(slope == 0, torch.ones_like(slope), slope)
    lo_b, hi_b = torch.where(slope > 0, bound, -torch.inf), torch.where(slope < 0, bound, torch.inf)
    x_lo = torch.maximum(torch.maximum(lo_b[:, 0], lo_b[:, 1]), lo_b[:, 2]).clamp_min(0.0).ceil()
    x_hi = torch.minimum(torch.minimum(torch.minimum(hi_b[:, 0], hi_b[:, 1]), hi_b[:, 2]), bw[row_tri] - 1).floor()
    n_cols = (x_hi - x_lo + 1).clamp_min(0)
    n_cols = torch.where(((slope == 0) & (offset < -eps)).any(1), torch.zeros_like(n_cols), n_cols).long()
    x_lo = torch.where(n_cols > 0, x_lo, torch.zeros_like(x_lo))
    row_start = base[row_tri] + dy.long() * box_w + x_lo.long()  # z-buffer index of the row's first pixel
    row_z = torch.stack((table[:, 9] * x_lo + table[:, 10] * dy + table[:, 11], table[:, 9]), 1).float()
    # ---- candidate (triangle, pixel) pairs: the covered pixels of every row; z-buffer
    total = int(n_cols.sum())
    cand_row = torch.repeat_interleave(torch.arange(n_rows, device=device), n_cols, output_size=total)
    j = torch.arange(total, device=device) - (torch.cumsum(n_cols, 0) - n_cols)[cand_row]
    pix = row_start[cand_row] + j
    rz = row_z[cand_row]
    inv_z_pix = torch.addcmul(rz[:, 0], rz[:, 1], j.float())
    # positive float32 bit patterns order like the floats; nearest = largest 1/z; ties: larger index
    key = (inv_z_pix.view(torch.int32).long() << 32) | row_tri[cand_row]
    zbuf = torch.full((n_out * box_h * box_w,), -1, dtype=torch.int64, device=device)
    zbuf.scatter_reduce_(0, pix, key, reduce="amax")
    del cand_row, j, pix, rz, inv_z_pix, key, table, slope, offset, bound

    # ---- winners, densely over the box: perspective-correct barycentrics from w_i / z_i
    zbuf = zbuf.view(n_out, box_h, box_w)
    covered = zbuf >= 0
    k = torch.where(covered, zbuf & 0xFFFFFFFF, torch.zeros_like(zbuf))
    sl = (slice(None), slice(by0, by0 + box_h), slice(bx0, bx0 + box_w))
    kf = keep[k]
    face = torch.div(kf, T, rounding_mode="floor")
    minus = torch.full_like(kf, -1)
    frags.triangle_id[sl] = torch.where(covered, kf - face * T, minus)
    frags.face_index[sl] = torch.where(covered, face, minus)
    if not attributes:
        return frags
    # w_i / z_i at (dx, dy) from each triangle's origin, in float32 (small numbers)
    origin = torch.stack((x0 - bx0, y0 - by0), -1)
    pk = torch.cat((persp.reshape(-1, 9), origin), 1).float()[k]  # (n_out, box_h, box_w, 11)
    gx = torch.arange(box_w, device=device, dtype=torch.float32).view(1, 1, box_w)
    gy = torch.arange(box_h, device=device, dtype=torch.float32).view(1, box_h, 1)
    dxk = (gx - pk[..., 9]).unsqueeze(-1)
    dyk = (gy - pk[..., 10]).unsqueeze(-1)
    u = (pk[..., 0:3] * dxk + pk[..., 3:6] * dyk + pk[..., 6:9]).clamp_min(0)
    inv_z = (u[..., 0] + u[..., 1] + u[..., 2]).unsqueeze(-1)
    bary = torch.where(covered.unsqueeze(-1), u / inv_z.clamp_min(1e-30), torch.zeros_like(u))
    depth = torch.where(covered, 1.0 / inv_z.squeeze(-1).clamp_min(1e-30), torch.full_like(inv_z.squeeze(-1), torch.inf))
    frags.barycentric[sl] = bary
    frags.depth[sl] = depth
    return frags


def _rasterize_nvdiffrast(verts, tris, K, height, width, merge, near_m, far_m: float = 100.0) -> Fragments:
    import nvdiffrast.torch as dr

    device = verts.device
    B, V, _ = verts.shape
    T = tris.shape[0]
    key = device.index if device.index is not None else torch.cuda.current_device()
    if key not in _NVDR_CONTEXTS:
        _NVDR_CONTEXTS[key] = dr.RasterizeCudaContext(device=device)
    ctx = _NVDR_CONTEXTS[key]
    xy = project_points(verts, K, min_depth_m=None)
    w = verts[..., 2]
    # render at a size padded to multiples of 8 (safe for every nvdiffrast version), crop afterwards;
    # pixel centre (c, r) <-> NDC ((c + 0.5) / W * 2 - 1, (r + 0.5) / H * 2 - 1); row 0 is NDC y = -1
    pad_h, pad_w = -(-height // 8) * 8, -(-width // 8) * 8
    ndc_x = (xy[..., 0] + 0.5) / pad_w * 2.0 - 1.0
    ndc_y = (xy[..., 1] + 0.5) / pad_h * 2.0 - 1.0
    ndc_z = (far_m + near_m) / (far_m - near_m) - 2.0 * far_m * near_m / ((far_m - near_m) * w)
    clip = torch.stack((ndc_x * w, ndc_y * w, ndc_z * w, w), -1).contiguous()
    offsets = (torch.arange(B, device=device) * V).view(B, 1, 1)
    corner_z = w.reshape(-1)[(tris.unsqueeze(0) + offsets).reshape(-1, 3)]  # (B*T, 3)
    valid_tri = (corner_z > near_m).all(1)  # like the torch backend: triangles crossing the near plane are not drawn
    if merge:
        # one mesh: the B meshes' triangles concatenated, vertex ids offset by the face
        clip = clip.reshape(1, B * V, 4)
        tri_draw = (tris.unsqueeze(0) + offsets).reshape(-1, 3)
        tri_draw = torch.where(valid_tri.unsqueeze(1), tri_draw, torch.zeros_like(tri_draw))
    else:
        # the same triangle list for every image: a triangle is dropped when invalid in any image
        # (rare: faces are in front of the camera); those pixels are marked empty below
        tri_draw = torch.where(valid_tri.view(B, T).all(0, keepdim=True).T, tris, torch.zeros_like(tris))
    rast, _ = dr.rasterize(ctx, clip, tri_draw.to(torch.int32).contiguous(), resolution=[pad_h, pad_w])
    rast = rast[:, :height, :width]
    tid = rast[..., 3].round().long() - 1  # (n_out, H, W); index into the drawn triangle list
    covered = tid >= 0
    n_out = rast.shape[0]
    if merge:
        face = torch.where(covered, torch.div(tid, T, rounding_mode="floor"), torch.full_like(tid, -1))
        tid_local = torch.where(covered, tid - face * T, tid)
        flat_tri = tid.clamp_min(0)
    else:
        face = torch.where(covered, torch.arange(n_out, device=device).view(-1, 1, 1).expand_as(tid), torch.full_like(tid, -1))
        tid_local = tid
        flat_tri = tid.clamp_min(0) + face.clamp_min(0) * T
    covered = covered & valid_tri[flat_tri]
    u, v = rast[..., 0], rast[..., 1]
    bary = torch.stack((u, v, 1.0 - u - v), -1)  # nvdiffrast: p = u p0 + v p1 + (1 - u - v) p2, perspective-correct
    depth = (bary * corner_z[flat_tri]).sum(-1)
    return Fragments(
        triangle_id=torch.where(covered, tid_local, torch.full_like(tid_local, -1)),
        barycentric=torch.where(covered.unsqueeze(-1), bary, torch.zeros_like(bary)),
        depth=torch.where(covered, depth, torch.full_like(depth, float("inf"))),
        face_index=torch.where(covered, face, torch.full_like(face, -1)),
    )


def interpolate(fragments: Fragments, attributes: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """Interpolate attributes at the pixels -> (B, H, W, C), 0 where empty.

    `attributes`: (T, 3, C) per triangle corner, (V, C) per vertex, or (F, V, C) per vertex of each
    input mesh (F = number of meshes rasterized; picked with `fragments.face_index`).
    """
    tid = fragments.triangle_id
    covered = tid >= 0
    idx = torch.nonzero(covered.reshape(-1)).squeeze(1)
    t = tid.reshape(-1)[idx]
    w = fragments.barycentric.reshape(-1, 3)[idx]
    attributes = attributes.to(fragments.barycentric.device)
    triangles = triangles.to(device=t.device, dtype=torch.int64)
    if attributes.dim() == 3 and attributes.shape[0] == triangles.shape[0] and attributes.shape[1] == 3:
        corner = attributes[t]  # (N, 3, C)
    elif attributes.dim() == 2:
        corner = attributes[triangles[t]]
    elif attributes.dim() == 3:
        if fragments.face_index is None:
            raise ValueError("per-mesh attributes (F, V, C) need fragments.face_index")
        f = fragments.face_index.reshape(-1)[idx]
        corner = attributes[f.unsqueeze(1), triangles[t]]
    else:
        raise ValueError(f"attributes must be (T, 3, C), (V, C) or (F, V, C), got {tuple(attributes.shape)}")
    C = corner.shape[-1]
    out = torch.zeros(tid.numel(), C, dtype=corner.dtype, device=corner.device)
    out[idx] = (corner * w.to(corner.dtype).unsqueeze(-1)).sum(1)
    return out.view(*tid.shape, C)
