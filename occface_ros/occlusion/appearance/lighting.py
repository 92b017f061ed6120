"""Lambertian shading with 2nd-order spherical harmonics (the paper's eq. 11): basis, shade, robust fit."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .statistics import STATS_CAP, group_quantile, subsample

__all__ = ["SH_BAND_FACTORS", "SH_NORMALISATION", "fit_sh_lighting", "sh_basis", "shade"]

SH_BAND_FACTORS = (math.pi, 2.0 * math.pi / math.sqrt(3.0), 2.0 * math.pi / math.sqrt(8.0))
"""a_0, a_1, a_2: Lambertian (clamped cosine) convolution factors per SH band as used by
Deep3DFaceRecon (Ramamoorthi & Hanrahan 2001 give pi, 2pi/3, pi/4 for the irradiance of the
orthonormal basis; Deep3DFaceRecon's a_1, a_2 differ by constant factors per band, which only
rescale the lighting coefficients of that band)."""
SH_NORMALISATION = (1.0 / math.sqrt(4.0 * math.pi), math.sqrt(3.0) / math.sqrt(4.0 * math.pi),
                    3.0 * math.sqrt(5.0) / math.sqrt(12.0 * math.pi))
"""c_0, c_1, c_2: SH normalisation constants 1/sqrt(4 pi), sqrt(3/(4 pi)), 3 sqrt(5/(12 pi))."""


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """Irradiance SH basis of unit normals (..., 3) -> (..., 9) (the paper's eq. 11, Deep3DFaceRecon form).

    With n = (x, y, z), a_k = SH_BAND_FACTORS, c_k = SH_NORMALISATION:
        Y = [ a0 c0,
              -a1 c1 y,  a1 c1 z,  -a1 c1 x,
              a2 c2 x y,  -a2 c2 y z,  a2 c2 / (2 sqrt 3) (3 z^2 - 1),  -a2 c2 x z,  a2 c2 / 2 (x^2 - y^2) ]
    Shading (per colour channel) is Y @ gamma with lighting gamma (9, 3); a pixel's colour is
    albedo * shading. The frame of the normals defines the frame of gamma: this module uses
    OpenCV camera-frame normals turned toward the camera.
    """
    a0, a1, a2 = SH_BAND_FACTORS
    c0, c1, c2 = SH_NORMALISATION
    x, y, z = normals.unbind(-1)
    return torch.stack([
        torch.full_like(x, a0 * c0),
        -a1 * c1 * y,
        a1 * c1 * z,
        -a1 * c1 * x,
        a2 * c2 * x * y,
        -a2 * c2 * y * z,
        0.5 * a2 * c2 / math.sqrt(3.0) * (3.0 * z * z - 1.0),
        -a2 * c2 * x * z,
        0.5 * a2 * c2 * (x * x - y * y),
    ], -1)


def shade(normals: torch.Tensor, lighting: torch.Tensor) -> torch.Tensor:
    """Shading (..., 3) of unit normals (..., 3) under lighting (9, 3) (or (N, 9, 3) matching the normals' rows)."""
    basis = sh_basis(normals)
    if lighting.dim() == 2:
        return basis @ lighting
    return torch.einsum("nk,nkc->nc", basis, lighting)


def fit_sh_lighting(
    albedo: torch.Tensor,
    normals: torch.Tensor,
    colours: torch.Tensor,
    weights: torch.Tensor,
    groups: torch.Tensor | None = None,
    num_groups: int = 1,
    ridge: float = 1e-3,
    iterations: int = 6,
    robust_scale: float = 1.0,
) -> torch.Tensor:
    """Lighting gamma (9, 3) with colours ~= albedo * (sh_basis(normals) @ gamma), robustly.

    albedo, normals, colours: (N, 3); weights: (N,) >= 0 (0 = not used). Weighted least squares per
    colour channel with a ridge `ridge * sum(w)` on bands 1-2 (keeps the fit bounded when the normals
    cover a small cone, e.g. half a face), then `iterations` IRLS steps with Cauchy weights
    1 / (1 + (r / (robust_scale * s))^2), r = the pixel's residual norm over the channels,
    s = 1.4826 * weighted median |r| (occluder pixels get small weights). At most ~STATS_CAP pixels per group
    (a strided sample of those with weight > 0) take part; sums in float64.
    With `groups` (N,) int64 in [0, num_groups) the fit is done per group at once -> (G, 9, 3).
    """
    device = normals.device
    single = groups is None
    if single:
        groups = torch.zeros(normals.shape[0], dtype=torch.int64, device=device)
        num_groups = 1
    gamma = torch.zeros(num_groups, 9, 3, dtype=normals.dtype, device=device)
    keep = subsample(weights > 0, STATS_CAP, groups, num_groups)  # weighted pixels, <= ~STATS_CAP per group
    if keep.numel() == 0:
        return gamma[0] if single else gamma
    out_dtype = normals.dtype  # float64 inside: the normal equations of a face's normal cone are ill-conditioned
    albedo, normals, colours = (t[keep].double() for t in (albedo, normals, colours))
    groups = groups[keep]
    w0 = weights[keep].double()
    basis = sh_basis(normals)  # (N, 9)
    outer = (basis.unsqueeze(2) * basis.unsqueeze(1)).reshape(-1, 81)  # (N, 81)
    onehot = F.one_hot(groups, num_groups).to(basis.dtype)  # (N, G)
    reg = torch.full((9,), ridge, dtype=basis.dtype, device=device)
    reg[0] = ridge * 1e-3
    w = w0
    for it in range(iterations + 1):
        # normal equations per group and channel: A^T W A = sum w a_c^2 B B^T, A^T W y = sum w a_c y_c B
        wa2 = (w.unsqueeze(1) * albedo * albedo).unsqueeze(1) * onehot.unsqueeze(2)  # (N, G, 3)
        ata = (wa2.reshape(-1, num_groups * 3).T @ outer).view(num_groups, 3, 9, 9)
        way = (w.unsqueeze(1) * albedo * colours).unsqueeze(1) * onehot.unsqueeze(2)
        atb = (way.reshape(-1, num_groups * 3).T @ basis).view(num_groups, 3, 9)
        total = (onehot * w.unsqueeze(1)).sum(0).clamp_min(1e-8)  # (G,)
        ata = ata + torch.diag_embed(reg.expand(num_groups, 3, 9) * total.view(-1, 1, 1))
        gamma = torch.linalg.solve(ata, atb.unsqueeze(-1)).squeeze(-1).transpose(1, 2)  # (G, 9, 3)
        if it == iterations:
            break
        pred = albedo * torch.einsum("nk,nkc->nc", basis, gamma[groups])
        resid = (pred - colours).norm(dim=-1)  # (N,)
        sub = torch.nonzero(w > 0).squeeze(1)
        scale = group_quantile(resid[sub].unsqueeze(1), groups[sub], num_groups, 0.5, weights=w[sub])[:, 0] * 1.4826
        scale = torch.nan_to_num(scale, nan=1e-4).clamp_min(1e-4)
        w = w0 / (1.0 + (resid / (robust_scale * scale[groups])) ** 2)
    gamma = gamma.to(out_dtype)
    return gamma[0] if single else gamma
