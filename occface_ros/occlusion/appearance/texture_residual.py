"""Video evidence: residual z of each pixel against the track's texture x SH shading."""
from __future__ import annotations

import torch

from .colour import opponent
from .config import AppearanceConfig
from .lighting import fit_sh_lighting, shade
from .pixels import FacePixels
from .statistics import robust_mahalanobis, weighted_centre
from .texture import TrackTexture

__all__ = ["texture_z"]


def texture_z(px: FacePixels, textures: list[TrackTexture | None], have: list[bool], z_cold: torch.Tensor,
              cfg: AppearanceConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Residual z against albedo(uv) * shading -> (z, lighting, texture weight alpha, residual d).

    Lighting: first fitted to the texture-confident pixels the cold model explains; when the track
    knows its residual scale (`TrackTexture.residual_scale`, learned on earlier frames), refitted to
    all texture-confident pixels within `texture_inlier_z` of it, and z uses that scale (an occluder
    cannot inflate it); otherwise z uses the robust scale of the first reference pixels."""
    log_rgb, rgb, n_i, uv_i, face, usable = px.log_rgb, px.rgb, px.normals, px.uv, px.face, px.usable
    cos_i, num_faces, noise = px.view_cosine, px.num_faces, px.noise
    device = rgb.device
    albedo = torch.ones_like(rgb)
    conf = torch.zeros_like(rgb[:, 0])
    known = torch.full((num_faces, 3), float("nan"), device=device)
    for f, t in enumerate(textures):
        if not have[f]:
            continue
        sel = torch.nonzero(face == f).squeeze(1)
        a, c = t.sample(uv_i[sel])
        albedo[sel], conf[sel] = a.to(rgb.dtype), c.to(rgb.dtype)
        if t.residual_scale is not None:
            known[f] = t.residual_scale.to(device)
    alpha = (conf / cfg.texture_full_confidence).clamp(0, 1)
    confident = usable & (alpha > 0.5)
    weight = alpha * cos_i.clamp_min(0) * (confident & (z_cold < cfg.threshold_z))
    gamma = fit_sh_lighting(albedo, n_i, rgb, weight, groups=face, num_groups=num_faces, ridge=cfg.sh_ridge,
                            iterations=3)
    floors = torch.tensor([cfg.texture_luminance_floor, cfg.texture_chroma_floor, cfg.texture_chroma_floor],
                          device=device)
    has_scale = torch.isfinite(known).all(1)
    scale = torch.sqrt(torch.nan_to_num(known, nan=0.0) ** 2 + floors ** 2)  # (F, 3)
    for _ in range(2 if bool(has_scale.any()) else 0):
        expected = (albedo * shade(n_i, gamma[face])).clamp_min(1e-3)
        d = opponent(log_rgb - torch.log(expected + cfg.log_epsilon))
        centre = weighted_centre(d, face, weight, num_faces)
        z_known = ((d - centre[face]) / torch.sqrt(scale[face] ** 2 + noise ** 2)).norm(dim=1)
        refit = alpha * cos_i.clamp_min(0) * (confident & (z_known < cfg.texture_inlier_z))
        weight = torch.where(has_scale[face], refit, weight)
        gamma = fit_sh_lighting(albedo, n_i, rgb, weight, groups=face, num_groups=num_faces, ridge=cfg.sh_ridge,
                                iterations=3)
    expected = (albedo * shade(n_i, gamma[face])).clamp_min(1e-3)
    d = opponent(log_rgb - torch.log(expected + cfg.log_epsilon))
    centre = weighted_centre(d, face, weight, num_faces)
    rel = d - centre[face]
    z_robust = robust_mahalanobis(rel, face, weight, num_faces, floors, noise, split_luminance=cfg.split_luminance)
    z_known = (rel / torch.sqrt(scale[face] ** 2 + noise ** 2)).norm(dim=1)
    z = torch.where(has_scale[face], z_known, z_robust)
    return z, gamma, alpha, rel
