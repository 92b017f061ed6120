"""Textured morphable-model meshes: the model's triangles plus the eye/mouth hole fills with UVs
and region labels, a photo projected into the UV layout (the texture of a rendered head), and the
small sampling helpers both need. Used by the eval's synthetic sequence and the training engine's
rendered heads.

    mesh = render_mesh(model, device)
    texture, valid, face = build_texture(pipeline, photo_bgr, mesh)   # (S, tiles*S, 3) uint8 BGR
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .raster import interpolate, rasterize

TEXTURE_SIZE = 512
VISIBILITY_TOLERANCE_M = 0.004


@dataclass
class RenderMesh:
    triangles: torch.Tensor  # (T + fills, 3) int64
    triangle_uv: torch.Tensor  # (T + fills, 3) int64 indices into uv
    uv: torch.Tensor  # (Nuv, 2) float32
    triangle_labels: torch.Tensor  # (T + fills,) int64 (BACKGROUND for non-face triangles)
    tiles: int  # UDIM tiles along u


def render_mesh(model, device) -> RenderMesh:
    """The model's triangles plus the eye/mouth hole fills, with per-corner UVs and region labels."""
    from ..core.labels import BACKGROUND
    from .regions import face_regions

    regions = face_regions(model)
    fill = (regions.source_triangle < 0).cpu()
    tris = torch.cat([model.triangles.cpu(), regions.triangles.cpu()[fill]]).to(device)
    if model.uv is None or model.triangle_uv is None or regions.triangle_uv is None:
        raise ValueError("the synthetic sequence needs a model with UVs (ICT)")
    tri_uv = np.concatenate([model.triangle_uv, regions.triangle_uv[fill.numpy()]]).astype(np.int64)
    labels = torch.full((len(tris),), BACKGROUND, dtype=torch.int64)
    src = regions.source_triangle.cpu()
    labels[src[~fill]] = regions.triangle_labels.cpu()[~fill]
    labels[model.triangles.shape[0]:] = regions.triangle_labels.cpu()[fill]
    tiles = int(np.floor(model.uv[:, 0].max())) + 1
    return RenderMesh(tris, torch.from_numpy(tri_uv).to(device), torch.from_numpy(model.uv.astype(np.float32)).to(device),
                      labels.to(device), tiles)


def uv_to_texel(uv: torch.Tensor, size: int) -> torch.Tensor:
    """UV (u in [0, tiles), v in [0, 1], v up) -> texel (col, row) coordinates, pixel centres at integers."""
    return torch.stack([uv[..., 0] * size - 0.5, (1.0 - uv[..., 1]) * size - 0.5], -1)


def sample_bilinear(image_chw: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of a (C, H, W) image at pixel coords xy (..., 2) -> (..., C) (border clamped)."""
    c, h, w = image_chw.shape
    grid = torch.stack([(xy[..., 0] + 0.5) / w * 2 - 1, (xy[..., 1] + 0.5) / h * 2 - 1], -1)
    flat = grid.reshape(1, 1, -1, 2)
    out = torch.nn.functional.grid_sample(image_chw[None], flat, mode="bilinear", padding_mode="border",
                                          align_corners=False)
    return out[0, :, 0].T.reshape(*xy.shape[:-1], c)


def fill_holes(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Push-pull fill: pixels where `valid` is False take the mask-weighted average of coarser levels."""
    img = image.astype(np.float32) * valid[..., None]
    wgt = valid.astype(np.float32)
    pyramid = [(img, wgt)]
    while min(img.shape[:2]) > 1:
        h, w = img.shape[:2]
        img = cv2.resize(img, ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA)
        wgt = cv2.resize(wgt, ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA)
        pyramid.append((img, wgt))
    filled = pyramid[-1][0] / np.maximum(pyramid[-1][1], 1e-6)[..., None]
    for img, wgt in reversed(pyramid[:-1]):
        up = cv2.resize(filled, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
        a = np.clip(wgt, 0.0, 1.0)[..., None]
        filled = np.where(a > 0, img / np.maximum(wgt, 1e-6)[..., None], 0) * a + up * (1 - a)
    return np.clip(filled, 0, 255).astype(np.uint8)


def build_texture(pipeline, image_bgr: np.ndarray, mesh: RenderMesh, size: int = TEXTURE_SIZE):
    """Fit the photo and project it into the UV layout -> (texture (size, tiles*size, 3) uint8 BGR,
    valid texels (bool), the fitted FaceResult)."""
    device = pipeline.device
    pipeline.reset()
    result = pipeline.process(image_bgr, 0.0)
    pipeline.reset()
    if not result.faces:
        raise RuntimeError("no face found on the texture photo")
    face = max(result.faces, key=lambda f: (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]))
    h, w = image_bgr.shape[:2]
    K = pipeline.intrinsics(w, h).to(device)
    verts = torch.as_tensor(pipeline.mesh_vertices(face), dtype=torch.float32, device=device)
    photo_frag = rasterize(verts[None], mesh.triangles, K, h, w)
    zbuf = photo_frag.depth[0]

    uv_pts = uv_to_texel(mesh.uv, size)
    uv_cam = torch.cat([uv_pts, torch.ones_like(uv_pts[:, :1])], 1)
    eye = torch.eye(3, device=device)
    tex_frag = rasterize(uv_cam[None], mesh.triangle_uv, eye, size, mesh.tiles * size)
    corners = verts[mesh.triangles]  # (T, 3, 3)
    normal = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    centre = corners.mean(1)
    facing = (normal * centre).sum(-1).abs() / centre.norm(dim=-1)  # |cos| of the viewing angle
    attrs = torch.cat([corners, facing[:, None, None].expand(-1, 3, 1)], -1)  # (T, 3, 4)
    p = interpolate(tex_frag, attrs, mesh.triangle_uv)[0]  # (S, tiles*S, 4)
    covered = tex_frag.triangle_id[0] >= 0
    pts = p[..., :3]
    z = pts[..., 2].clamp_min(1e-6)
    px = torch.stack([pts[..., 0] / z * K[0, 0] + K[0, 2], pts[..., 1] / z * K[1, 1] + K[1, 2]], -1)
    inside = (px[..., 0] >= 0) & (px[..., 0] <= w - 1) & (px[..., 1] >= 0) & (px[..., 1] <= h - 1)
    ix = px[..., 0].round().long().clamp(0, w - 1)
    iy = px[..., 1].round().long().clamp(0, h - 1)
    visible = covered & inside & (pts[..., 2] <= zbuf[iy, ix] + VISIBILITY_TOLERANCE_M) & (p[..., 3] > 0.3)
    photo = torch.from_numpy(image_bgr).to(device).permute(2, 0, 1).float()
    colours = sample_bilinear(photo, px)
    texture = (colours * visible[..., None]).round().clamp(0, 255).byte().cpu().numpy()
    valid = visible.cpu().numpy()
    return fill_holes(texture, valid), valid, face


def vertex_normals(verts: torch.Tensor, tris: torch.Tensor) -> torch.Tensor:
    c = verts[tris]
    n = torch.linalg.cross(c[:, 1] - c[:, 0], c[:, 2] - c[:, 0])
    out = torch.zeros_like(verts)
    out.index_add_(0, tris.reshape(-1), n.repeat_interleave(3, 0))
    return out / out.norm(dim=-1, keepdim=True).clamp_min(1e-12)
