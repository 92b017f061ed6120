"""Per-vertex and per-pixel surface attributes of fitted meshes: normals, UVs, view cosines."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["SurfaceAttributes", "surface_attributes", "vertex_normals"]


def vertex_normals(vertices: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals (B, V, 3) of meshes (B, V, 3) with triangles (T, 3).

    Orientation follows the triangles' winding (right-hand rule); vertices in no triangle get 0.
    """
    squeeze = vertices.dim() == 2
    if squeeze:
        vertices = vertices.unsqueeze(0)
    triangles = triangles.to(device=vertices.device, dtype=torch.int64)
    a, b, c = (vertices[:, triangles[:, k]] for k in range(3))  # (B, T, 3)
    face_normal = torch.cross(b - a, c - a, dim=-1)  # length = 2 * area: area weighting
    normals = torch.zeros_like(vertices)
    for k in range(3):
        normals.index_add_(1, triangles[:, k], face_normal)
    normals = F.normalize(normals, dim=-1, eps=1e-12)
    return normals[0] if squeeze else normals


@dataclass
class SurfaceAttributes:
    """Per-pixel attributes of the rasterized faces (batch = the fragments' batch)."""

    normals: torch.Tensor  # (B, H, W, 3) unit camera-frame normals turned toward the camera, 0 where empty
    uv: torch.Tensor  # (B, H, W, 2) texture coordinates, 0 where empty
    view_cosine: torch.Tensor  # (B, H, W) cos(angle between normal and the direction to the camera), 0 where empty


def surface_attributes(fragments, vertices_cam: torch.Tensor, mesh_triangles: torch.Tensor,
                       triangles: torch.Tensor, uv: torch.Tensor | None = None,
                       triangle_uv: torch.Tensor | None = None) -> SurfaceAttributes:
    """Normals, UVs and view cosines of the pixels of rasterized meshes.

    vertices_cam (F, V, 3): the F meshes that were rasterized (camera frame, metres);
    mesh_triangles (T, 3): the full mesh (vertex normals are computed on it);
    triangles (T', 3): the triangles that were rasterized (e.g. `face_regions(model).triangles`);
    uv (Nuv, 2) + triangle_uv (T', 3): per-corner texture coordinates (zeros when None).
    Normals are flipped where they face away from the camera (hole-closing triangles, winding).
    """
    from ...render.raster import interpolate

    if vertices_cam.dim() == 2:
        vertices_cam = vertices_cam.unsqueeze(0)
    device = fragments.barycentric.device
    vertices_cam = vertices_cam.to(device=device, dtype=torch.float32)
    normals_v = vertex_normals(vertices_cam, mesh_triangles.to(device))
    attrs = torch.cat([normals_v, vertices_cam], -1)  # (F, V, 6)
    interp = interpolate(fragments, attrs, triangles.to(device))
    normals = F.normalize(interp[..., :3], dim=-1, eps=1e-12)
    to_camera = -F.normalize(interp[..., 3:], dim=-1, eps=1e-12)
    cos = (normals * to_camera).sum(-1)
    flip = torch.where(cos < 0, -1.0, 1.0)
    normals = normals * flip.unsqueeze(-1)
    cos = cos.abs()
    if uv is not None and triangle_uv is not None:
        uv = torch.as_tensor(uv, dtype=torch.float32, device=device)
        tuv = torch.as_tensor(triangle_uv, dtype=torch.int64, device=device)
        uv_px = interpolate(fragments, uv[tuv], triangles.to(device))
    else:
        uv_px = torch.zeros(*fragments.triangle_id.shape, 2, device=device)
    covered = (fragments.triangle_id >= 0).unsqueeze(-1)
    return SurfaceAttributes(normals * covered, uv_px, cos * covered[..., 0])
