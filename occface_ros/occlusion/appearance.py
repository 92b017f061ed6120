"""Appearance evidence: is a pixel of the rendered face explained by the face's appearance model?

The idea (FOCUS): the face model cannot explain an occluder. For every pixel that a fitted face
mesh covers we compare the image with what the face should look like there and turn the residual
into a likelihood in [0, 1] (1 = explained by the face model, i.e. visible face; 0 = occluder).

Building blocks (all torch, vectorised, any device):
- `sh_basis`, `fit_sh_lighting`: Lambertian shading with 2nd-order spherical harmonics (eq. 11),
  robust weighted least squares (IRLS).
- `vertex_normals`, `surface_attributes`: per-vertex / per-pixel normals and UVs of fitted meshes.
- `group_quantile`: quantiles (medians, MADs) of many groups at once (faces x regions).
- `TrackTexture`: a track's albedo texture in the model's UV layout, learned from confidently
  visible pixels (video).
- `AppearanceEvidence`: the stage (see its docstring for the decision rule).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from . import labels as labels_mod

_STATS_CAP = 2048  # robust statistics (fits, medians, MADs, seed support) use at most ~this many pixels per face

__all__ = [
    "SH_BAND_FACTORS",
    "SH_NORMALISATION",
    "AppearanceConfig",
    "AppearanceEvidence",
    "AppearanceResult",
    "SurfaceAttributes",
    "TrackTexture",
    "fit_sh_lighting",
    "group_quantile",
    "sh_basis",
    "shade",
    "surface_attributes",
    "vertex_normals",
]

# ----------------------------------------------------------------------------------------------
# Spherical-harmonics shading (the paper's eq. 11)
# ----------------------------------------------------------------------------------------------

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
    s = 1.4826 * weighted median |r| (occluder pixels get small weights). At most ~4k pixels per group
    (a strided sample of those with weight > 0) take part; sums in float64.
    With `groups` (N,) int64 in [0, num_groups) the fit is done per group at once -> (G, 9, 3).
    """
    device = normals.device
    single = groups is None
    if single:
        groups = torch.zeros(normals.shape[0], dtype=torch.int64, device=device)
        num_groups = 1
    gamma = torch.zeros(num_groups, 9, 3, dtype=normals.dtype, device=device)
    keep = _subsample(weights > 0, _STATS_CAP, groups, num_groups)  # weighted pixels, <= ~4k per group
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


# ----------------------------------------------------------------------------------------------
# Geometry helpers
# ----------------------------------------------------------------------------------------------


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


def group_quantile(
    values: torch.Tensor,
    groups: torch.Tensor,
    num_groups: int,
    q: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-group, per-channel q-quantile of values (N, C) with groups (N,) in [0, G) -> (G, C).

    Unweighted: the element at rank floor(q * (n - 1)) of each sorted group (the lower median for
    q = 0.5). With `weights` (N,) >= 0: the weighted quantile (first sorted element whose cumulative
    weight reaches q * total). Empty groups (or zero total weight) give NaN.
    """
    n, c = values.shape
    device = values.device
    out = torch.full((num_groups, c), float("nan"), dtype=values.dtype, device=device)
    if n == 0:
        return out
    # one sort per channel by (group, value): key = group + value scaled into [0, 0.5]; float32 keys
    # resolve ~1e-5 of the value range for up to 64 groups (ties that close do not move a median)
    kd = torch.float32 if num_groups <= 64 else torch.float64
    vk = values.to(kd)
    lo, hi = vk.amin(0, keepdim=True), vk.amax(0, keepdim=True)
    key = groups.to(kd).unsqueeze(1) + 0.5 * (vk - lo) / (hi - lo).clamp_min(1e-30)
    perm = torch.argsort(key, dim=0)  # (N, C) original index of each sorted slot
    sorted_vals = values.gather(0, perm)
    sorted_groups = groups[perm]  # (N, C), non-decreasing per column
    if weights is None:
        count = torch.bincount(groups, minlength=num_groups)
        start = torch.cumsum(count, 0) - count
        rank = start + torch.floor(q * (count - 1).clamp_min(0).to(values.dtype)).long()
        ok = count > 0
        picked = sorted_vals.gather(0, rank.clamp(0, n - 1).unsqueeze(1).expand(-1, c))
        out[ok] = picked[ok]
        return out
    w = weights.to(values.dtype)[perm]  # (N, C)
    cum = torch.cumsum(w, 0)
    total = torch.zeros(num_groups, dtype=values.dtype, device=device).index_add_(0, groups, weights.to(values.dtype))
    before = torch.cumsum(total, 0) - total  # cumulative weight before each group
    local = cum - before[sorted_groups]  # cumulative weight inside the group
    target = (q * total)[sorted_groups]
    reached = (local >= target - 1e-12 * total[sorted_groups]) & (w > 0)
    # first reached slot per group: min slot index among reached
    slot = torch.arange(n, device=device).unsqueeze(1).expand(-1, c)
    big = torch.full_like(slot, n)
    first = torch.full((num_groups, c), n, dtype=torch.int64, device=device)
    first.scatter_reduce_(0, sorted_groups, torch.where(reached, slot, big), reduce="amin")
    ok = (first < n) & (total > 0).unsqueeze(1)
    picked = sorted_vals.gather(0, first.clamp_max(n - 1))
    out[ok] = picked[ok]
    return out


def _subsample(mask: torch.Tensor, cap: int, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Indices of the True entries of mask (N,), each group strided down to at most ~cap entries.

    Deterministic and per group (every k-th entry of the group in its own order), so a face gets the
    same sample whether it is processed alone or batched with other faces."""
    idx = torch.nonzero(mask).squeeze(1)
    g = groups[idx]
    count = torch.bincount(g, minlength=num_groups)
    if int(count.max()) <= cap:
        return idx
    step = torch.div(count + cap - 1, cap, rounding_mode="floor").clamp_min(1)
    onehot = F.one_hot(g, num_groups)
    rank = onehot.cumsum(0).gather(1, g.unsqueeze(1)).squeeze(1) - 1  # rank of the entry within its group
    return idx[rank % step[g] == 0]


# ----------------------------------------------------------------------------------------------
# Per-track texture (video)
# ----------------------------------------------------------------------------------------------


class TrackTexture:
    """A track's albedo in the model's UV layout: (C, S, S) texels + (S, S) confidence.

    UV convention: u right, v up, [0, 1]^2 (ICT's face occupies UDIM tile 0); texel row 0 is
    v = 1, so `albedo` displays upright. `sample` is bilinear (grid_sample) and normalised by the
    confidence, so texels never seen do not darken their neighbours. `update` splats samples
    bilinearly (scatter-add), takes the per-texel weighted mean of this frame and blends it into
    the texture as a confidence-weighted running mean whose confidence saturates at
    `max_confidence` (then it is an EMA with rate w / (max_confidence + w)).
    """

    def __init__(self, size: int = 128, channels: int = 3, max_confidence: float = 20.0,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.size = int(size)
        self.max_confidence = float(max_confidence)
        self.albedo = torch.zeros(channels, self.size, self.size, device=device, dtype=dtype)
        self.confidence = torch.zeros(self.size, self.size, device=device, dtype=dtype)
        self.frames = 0
        self.residual_scale: torch.Tensor | None = None  # (3,) robust log-residual scale of visible pixels
        self.scale_rate = 0.3

    def update_residual_scale(self, scale: torch.Tensor) -> None:
        """EMA (rate `scale_rate`) of the track's robust residual scale (3,) (luminance, red-green,
        yellow-blue log residuals of visible pixels against this texture)."""
        scale = scale.detach().to(self.albedo.device)
        if self.residual_scale is None:
            self.residual_scale = scale.clone()
        else:
            self.residual_scale = (1 - self.scale_rate) * self.residual_scale + self.scale_rate * scale

    @property
    def device(self) -> torch.device:
        return self.albedo.device

    def _grid(self, uv: torch.Tensor) -> torch.Tensor:
        return torch.stack((uv[..., 0] * 2.0 - 1.0, 1.0 - uv[..., 1] * 2.0), -1)

    def sample(self, uv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uv (..., 2) -> (albedo (..., C), confidence (...)); confidence 0 where nothing was learned."""
        shape = uv.shape[:-1]
        grid = self._grid(uv.reshape(1, -1, 1, 2).to(self.albedo.dtype))
        stacked = torch.cat([self.albedo * self.confidence, self.confidence.unsqueeze(0)], 0).unsqueeze(0)
        s = F.grid_sample(stacked, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0, :, :, 0]
        conf = s[-1]
        albedo = s[:-1] / conf.clamp_min(1e-6)
        return albedo.T.reshape(*shape, -1), conf.reshape(shape)

    def update(self, uv: torch.Tensor, albedo: torch.Tensor, weights: torch.Tensor) -> None:
        """Blend samples uv (N, 2), albedo (N, C), weights (N,) >= 0 into the texture (see class doc)."""
        s = self.size
        uv = uv.to(self.albedo.dtype)
        inside = (uv >= 0).all(-1) & (uv <= 1).all(-1) & (weights > 0)
        uv, albedo, weights = uv[inside], albedo[inside].to(self.albedo.dtype), weights[inside].to(self.albedo.dtype)
        c = self.albedo.shape[0]
        px = uv[:, 0] * s - 0.5  # continuous texel coordinates (texel centres at integers)
        py = (1.0 - uv[:, 1]) * s - 0.5
        x0, y0 = torch.floor(px), torch.floor(py)
        fx, fy = px - x0, py - y0
        acc = torch.zeros(c + 1, s * s, dtype=self.albedo.dtype, device=self.device)
        payload = torch.cat([albedo * weights.unsqueeze(1), weights.unsqueeze(1)], 1).T  # (C+1, N)
        for dx, dy, wk in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            xi, yi = (x0 + dx).long(), (y0 + dy).long()
            ok = (xi >= 0) & (xi < s) & (yi >= 0) & (yi < s)
            idx = (yi * s + xi).clamp(0, s * s - 1)
            acc.index_add_(1, idx, payload * (wk * ok).unsqueeze(0))
        w_new = acc[-1].view(s, s)
        mean_new = acc[:-1].view(c, s, s) / w_new.clamp_min(1e-8)
        conf = self.confidence
        total = conf + w_new
        blended = (self.albedo * conf + mean_new * w_new) / total.clamp_min(1e-8)
        self.albedo = torch.where(w_new > 0, blended, self.albedo)
        self.confidence = total.clamp_max(self.max_confidence)
        self.frames += 1


# ----------------------------------------------------------------------------------------------
# Per-pixel surface attributes of fitted meshes
# ----------------------------------------------------------------------------------------------


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
    from ..render.raster import interpolate

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


# ----------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------

_SQRT2 = math.sqrt(2.0)
_SQRT6 = math.sqrt(6.0)


def _opponent(d: torch.Tensor) -> torch.Tensor:
    """Log colours (..., 3) -> (luminance, red-green, yellow-blue) (..., 3); an orthonormal rotation
    scaled so that luminance is the mean of the three log channels."""
    r, g, b = d.unbind(-1)
    return torch.stack(((r + g + b) / 3.0, (r - g) / _SQRT2, (r + g - 2.0 * b) / _SQRT6), -1)


@dataclass
class AppearanceConfig:
    """Tunables of `AppearanceEvidence` (config key `occlusion.appearance`).

    Units: colours are in [0, 1]; "log" quantities are natural-log colour ratios in the opponent
    space (luminance = mean log ratio, red-green, yellow-blue chroma); "z" values are residuals in
    units of their robust scale; radii are fractions of the face size (sqrt of its pixel count).
    """

    log_epsilon: float = 0.02  # added to colours before the log: bounds the log noise of dark pixels
    pixel_noise: float = 0.012  # image noise std ([0, 1] units); inflates the scale of dark pixels
    # cold start: skin reference
    seed_cells: int = 6  # UV grid cells per side: skin seeds = per-cell medians
    seed_min_fraction: float = 0.02  # a cell needs this fraction of the face's skin pixels to seed
    seed_chroma_log: float = 0.07  # kernel width (chroma) counting the support of a seed
    seed_luminance_log: float = 0.25  # kernel width (luminance) counting the support of a seed
    colour_image_chroma_log: float = 0.03  # median |chroma| under which a face is treated as grayscale
    # plausible skin (red-green, yellow-blue) log chroma in colour images: red > green > blue
    skin_chroma_box: tuple = ((0.04, 0.6), (0.12, 0.9))
    skin_prior_width_log: float = 0.04  # soft margin of the skin chroma box
    seed_dark_log: float = 1.0  # seeds this much darker (log) than the brightest seed are unlikely skin
    sh_ridge: float = 1e-3  # ridge of the SH lighting fits, relative to the total weight (bands 1-2)
    shading_passes: int = 2  # refits of the shading to the skin pixels it explains
    membership_z: float = 2.5  # Cauchy width (in residual z) of the skin pixels' weights in those refits
    membership_cut_z: float = 4.0  # skin pixels with a larger residual z do not refit the shading
    split_luminance: bool = True  # separate skin residual covariances for darker / brighter than expected
    skin_luminance_floor: float = 0.10  # minimum robust scale of skin luminance residuals (log)
    skin_chroma_floor: float = 0.04  # minimum robust scale of skin chroma residuals (log)
    shadow_tolerance: float = 2.5  # darker-than-expected skin residuals are divided by this (cast shadows, stubble)
    shadow_saturation: float = 0.8  # chroma shift along the skin's chroma forgiven per unit of darkening (log)
    shadow_tolerance_gray: float = 1.5  # the same for grayscale faces (luminance is the only cue there)
    highlight_tolerance: float = 1.5  # brighter-than-expected skin residuals are divided by this (specular)
    # cold start: facial features, plausible (luminance, red-green, yellow-blue) residual vs skin
    lips_box: tuple = ((-1.0, 0.25), (-0.06, 0.45), (-0.15, 0.35))
    brows_box: tuple = ((-1.8, 0.1), (-0.2, 0.2), (-0.45, 0.25))
    eyes_box: tuple = ((-2.2, 0.45), (-0.4, 0.15), (-0.8, 0.15))
    mouth_box: tuple = ((-3.0, 0.3), (-0.2, 0.6), (-0.5, 0.5))
    feature_luminance_floor: float = 0.25  # minimum own-scale of a feature region (luminance, log)
    feature_chroma_floor: float = 0.06  # minimum own-scale of a feature region (chroma, log)
    box_softness_log: float = 0.05  # distance outside a plausibility box per unit of z
    # video: residual against the track texture
    texture_size: int = 128
    texture_max_confidence: float = 20.0
    texture_full_confidence: float = 1.5  # sampled confidence at which the texture fully replaces the cold model
    texture_inlier_z: float = 3.0  # with a known track residual scale: pixels within this z refit the lighting
    texture_scale_rate: float = 0.3  # EMA rate of the track's residual scale
    texture_luminance_floor: float = 0.07
    texture_chroma_floor: float = 0.025
    learn_threshold: float = 0.85  # pixels with likelihood above this (and not prior-occluded) update the texture
    learn_min_view_cosine: float = 0.35
    # decision
    threshold_z: float = 3.5  # residual z at which the likelihood is 0.5
    softness_z: float = 0.5  # logistic width of the soft threshold
    smooth_radius: float = 0.02  # box filter of the occlusion logit (fraction of the face size)
    closing_radius: float = 0.06  # disk closing of the occluded mask; adds feature pixels only (eyes in sunglasses)
    closed_likelihood: float = 0.3  # likelihood given to pixels the closing adds

    @classmethod
    def from_dict(cls, values: dict | None) -> AppearanceConfig:
        """Build from a (partial) dict such as config['occlusion']['appearance']; unknown keys are an error."""
        values = dict(values or {})
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown appearance config keys: {sorted(unknown)}")
        return cls(**{k: tuple(map(tuple, v)) if isinstance(v, list) and v and isinstance(v[0], list) else
                      (tuple(v) if isinstance(v, list) else v) for k, v in values.items()})



def _weighted_centre(resid: torch.Tensor, face: torch.Tensor, weight: torch.Tensor, num_faces: int) -> torch.Tensor:
    """Per-face weighted median (F, C) of resid (N, C) over pixels with weight > 0 (0 where none)."""
    sub = _subsample(weight > 0, _STATS_CAP, face, num_faces)
    return torch.nan_to_num(group_quantile(resid[sub], face[sub], num_faces, 0.5, weights=weight[sub]))


def _robust_mahalanobis(rel: torch.Tensor, face: torch.Tensor, weight: torch.Tensor, num_faces: int,
                        floors: torch.Tensor, noise: torch.Tensor, clip: float = 3.0,
                        split_luminance: bool = True) -> torch.Tensor:
    """Residual z (N,) = sqrt(r^T (S + diag(noise_i^2))^-1 r) of (N, 3) residuals r with robust per-face S.

    S: per-axis scales m = 1.4826 * weighted MAD of the reference pixels (weight > 0); the weighted
    second moments of the reference pixels within `clip` scales (x 1.1 for the truncation),
    its diagonal raised to at least floors^2. With `split_luminance` the moments are taken separately over the reference
    pixels darker (r_lum < 0) and brighter than the centre and each pixel uses its side's: skin
    darkens along a different direction (shading: more saturated) than a white occluder brightens.
    A side with fewer than 10 such pixels uses diag(max(m, floors)^2).
    """
    sel = weight > 0
    sub = _subsample(sel, _STATS_CAP, face, num_faces)
    mad = group_quantile(rel[sub].abs(), face[sub], num_faces, 0.5, weights=weight[sub]) * 1.4826
    mad = torch.maximum(torch.nan_to_num(mad, nan=0.0), floors)
    inlier = sel & ((rel / mad[face]).norm(dim=1) < clip)
    side = (rel[:, 0] > 0).long() if split_luminance else torch.zeros_like(face)
    group = face * 2 + side
    w = weight * inlier
    outer = rel.unsqueeze(2) * rel.unsqueeze(1) * w.view(-1, 1, 1)
    cov = torch.zeros(num_faces * 2, 3, 3, dtype=rel.dtype, device=rel.device).index_add_(0, group, outer)
    total = torch.zeros(num_faces * 2, dtype=rel.dtype, device=rel.device).index_add_(0, group, w)
    count = torch.bincount(group[inlier], minlength=num_faces * 2)
    cov = cov / total.clamp_min(1e-8).view(-1, 1, 1) * 1.1
    cov = cov + torch.diag_embed((floors ** 2 - torch.diagonal(cov, dim1=1, dim2=2)).clamp_min(0))
    fallback = torch.diag_embed(mad ** 2).repeat_interleave(2, 0)
    cov = torch.where((count >= 10).view(-1, 1, 1), cov, fallback)
    full = cov[group] + torch.diag_embed(noise ** 2)
    return (rel * torch.linalg.solve(full, rel.unsqueeze(-1)).squeeze(-1)).sum(1).clamp_min(0).sqrt()


@dataclass
class AppearanceResult:
    """Output of `AppearanceEvidence` for F faces of one (H, W) frame."""

    # (F, H, W) float32 in [0, 1]: 1 = the face's appearance explains the pixel; 0 outside face_pixels
    face_likelihood: torch.Tensor
    # (F, H, W) bool: the pixels judged (face f's rendered face labels, whether or not another face is nearer)
    face_pixels: torch.Tensor
    lighting: torch.Tensor  # (F, 9, 3) SH lighting used for the face (eq. 11)
    textures: list  # per face: the updated TrackTexture (or None when not learning)
    used_texture: torch.Tensor  # (F,) bool: the face had a learned texture (video) this frame


_REGION_BOX_FIELDS = {
    "lips_box": (labels_mod.UPPER_LIP, labels_mod.LOWER_LIP),
    "brows_box": (labels_mod.LEFT_BROW, labels_mod.RIGHT_BROW),
    "eyes_box": (labels_mod.LEFT_EYE, labels_mod.RIGHT_EYE),
    "mouth_box": (labels_mod.INNER_MOUTH,),
}
_NUM_LABELS = max(labels_mod.LABELS) + 1


class AppearanceEvidence:
    """Per-pixel evidence that a face's appearance model explains the image (a callable stage).

    For each face f and each pixel i of f's rendered face region (M_beta labels in FACE_LABELS) the
    image colour is compared with the colour the face model expects there, in log space:
    d_i = log(rgb_i + eps) - log(expected_i + eps), rotated to opponent components (luminance,
    red-green, yellow-blue; `_opponent`). The residual relative to the face's reference pixels is
    turned into a robust Mahalanobis distance z (`_robust_mahalanobis`: covariance of the reference
    residuals, separately for darker / brighter than expected, diagonal floored, plus the image noise
    of dark pixels pixel_noise / (rgb + eps)), and

        likelihood = sigmoid((threshold_z - z) / softness_z)       (0.5 at z = threshold_z = 3.5)

    Cold start (no texture yet: a single image, a new track), from this frame alone:
    1. Skin reference. Candidate skin colours are the medians of the skin/nose pixels in each cell of
       a `seed_cells` x `seed_cells` UV grid. A candidate's score = (its skin-chroma prior) x (sum over
       skin pixels of a kernel around it (`seed_chroma_log`, `seed_luminance_log`) x the pixel's
       skin-chroma prior); the prior (colour faces only) is 1 inside `skin_chroma_box` (skin is
       red > green > blue: blue, green, white, grey and black occluders are outside) with a Gaussian
       margin `skin_prior_width_log`, times a penalty for seeds more than `seed_dark_log` darker
       than the brightest seed. So an occluder that covers more skin than is visible does not become
       "skin" unless it is skin-coloured.
    2. Shading. SH lighting (eq. 11, albedo 1) is fitted (IRLS) to the skin pixels near the reference,
       then `shading_passes` times to the skin pixels it explains (Cauchy weights of their z, width
       `membership_z`, cut at `membership_cut_z`): expected_i = shading(n_i) models the smooth shading.
    3. Skin and nose pixels: z of the residual relative to the reference pixels' median. Darker than
       expected is forgiven: the luminance residual is divided by `shadow_tolerance`
       (`shadow_tolerance_gray` for grayscale faces, where luminance is the only cue) and a chroma shift
       along the skin's own chroma of up to `shadow_saturation` x the darkening is removed (folds,
       eye sockets and nostrils are darker AND more saturated); brighter by `highlight_tolerance`.
    4. Features (brows, eyes, lips, inner mouth). Each region's median residual relative to skin is
       plausible when it lies in the region's box (`lips_box`, `brows_box`, `eyes_box`, `mouth_box`:
       (luminance, red-green, yellow-blue) ranges relative to skin: lips redder / darker, brows darker,
       eyes darker and bluer). A pixel's z is its distance outside the box (in units of
       `box_softness_log`); in a plausible region it is the smaller of that and its distance to the
       region's own median in the region's own robust scale (floors `feature_*_floor`). A blue, white
       or black mask that covers the whole mouth makes the lips' median implausible, so its pixels
       stay flagged.
    Video (the track has a TrackTexture): expected_i = albedo(uv_i) * shading(n_i) with SH lighting
    fitted (IRLS) to the texture-confident pixels that the cold model explains; once the track knows
    its residual scale (learned on earlier frames) the lighting is refitted to all texture-confident
    pixels within `texture_inlier_z` and z uses that scale (an occluder cannot inflate it). The texture
    z and the cold z are blended by the sampled texture confidence (texture only from
    `texture_full_confidence`).
    Spatial coherence (per face, on its bounding box): the logit is box-filtered inside the face
    region (radius `smooth_radius` x face size, face size = sqrt(face pixels)); the occluded mask
    (likelihood < 0.5) is closed with a disk of radius `closing_radius` x face size, and feature pixels
    (eyes, brows, lips, inner mouth) that the closing adds get likelihood `closed_likelihood` (the eyes
    behind sunglasses, whose dark colour is plausible for an eye, the mouth inside a mask).
    Pixels where another face is nearer and `prior_occluded` pixels (hands) get likelihood 0 and take
    no part in any statistic. Textures learn only pixels with likelihood > `learn_threshold`, not
    prior-occluded, view cosine > `learn_min_view_cosine`: albedo = rgb / shading, weight =
    likelihood x view cosine^2.
    Known limits: a skin-coloured occluder (a hand, a beige cup) is not separable by colour in a
    single image (use `prior_occluded` for hands; in video its shading/texture differs); in grayscale
    images only luminance separates, so white or grey occluders are missed there; facial hair, hair
    and glasses frames over the face region are flagged (they are not skin).
    """

    def __init__(self, config: AppearanceConfig | dict | None = None):
        self.config = config if isinstance(config, AppearanceConfig) else AppearanceConfig.from_dict(config)

    def new_texture(self, device) -> TrackTexture:
        c = self.config
        texture = TrackTexture(c.texture_size, 3, c.texture_max_confidence, device=device)
        texture.scale_rate = c.texture_scale_rate
        return texture

    @torch.no_grad()
    def __call__(
        self,
        image: torch.Tensor,
        fragments,
        normals: torch.Tensor,
        uv: torch.Tensor,
        labels: torch.Tensor,
        textures: list | None = None,
        prior_occluded: torch.Tensor | None = None,
        view_cosine: torch.Tensor | None = None,
        update_textures: bool = True,
    ) -> AppearanceResult:
        """image (3, H, W) RGB [0, 1]; fragments of batch R (R faces, or 1 with merge_faces);
        normals (R, H, W, 3), uv (R, H, W, 2), view_cosine (R, H, W) from `surface_attributes`;
        labels (R, H, W) uint8 rendered parsing (M_beta); textures: one entry per face (TrackTexture
        or None; its length is the number of faces F); prior_occluded (H, W) bool.
        """
        cfg = self.config
        device = image.device
        tid = fragments.triangle_id
        R, H, W = tid.shape
        if textures is None:
            num_faces = int(fragments.face_index.max().item()) + 1 if bool((tid >= 0).any()) else 0
            textures = [None] * num_faces
        textures = list(textures)
        num_faces = len(textures)
        likelihood = torch.zeros(num_faces, H * W, device=device)
        face_pixels = torch.zeros(num_faces, H * W, dtype=torch.bool, device=device)
        lighting = torch.zeros(num_faces, 9, 3, device=device)
        used_texture = torch.zeros(num_faces, dtype=torch.bool, device=device)

        lab = labels.to(device).long()
        domain = (tid >= 0) & labels_mod.label_mask(lab, labels_mod.FACE_LABELS)
        idx = torch.nonzero(domain.reshape(-1)).squeeze(1)
        if num_faces == 0 or idx.numel() == 0:
            return self._result(likelihood, face_pixels, lighting, textures, used_texture, H, W)
        pix = idx % (H * W)
        face = fragments.face_index.reshape(-1)[idx].clamp(0, num_faces - 1)
        if R > 1:
            nearest = fragments.depth.amin(0, keepdim=True)
            hidden = (fragments.depth > nearest + 1e-4).reshape(-1)[idx]
        else:
            hidden = torch.zeros_like(idx, dtype=torch.bool)
        lab_i = lab.reshape(-1)[idx]
        n_i = F.normalize(normals.reshape(-1, 3)[idx].float(), dim=-1, eps=1e-12)
        uv_i = uv.reshape(-1, 2)[idx].float()
        cos_i = view_cosine.reshape(-1)[idx].float() if view_cosine is not None else (-n_i[:, 2]).abs()
        rgb = image.reshape(3, -1)[:, pix].T.float().clamp(0, 1)
        prior_i = (prior_occluded.to(device).reshape(-1)[pix].bool() if prior_occluded is not None
                   else torch.zeros_like(hidden))
        usable = ~hidden & ~prior_i

        eps = cfg.log_epsilon
        log_rgb = torch.log(rgb + eps)
        noise_lum = cfg.pixel_noise / (rgb.mean(1) + eps)
        noise_chroma = cfg.pixel_noise / (rgb.amin(1) + eps)

        z_cold, gamma_cold = self._cold(log_rgb, rgb, n_i, uv_i, lab_i, face, usable, num_faces,
                                         noise_lum, noise_chroma)
        z = z_cold
        gamma_face = gamma_cold
        tex_alpha = torch.zeros_like(z)
        have = [t is not None and t.frames > 0 for t in textures]
        rel_tex = None
        if any(have):
            z_tex, gamma_tex, tex_alpha, rel_tex = self._texture(textures, have, log_rgb, rgb, n_i, uv_i, face,
                                                                 usable, cos_i, num_faces, noise_lum, noise_chroma,
                                                                 z_cold)
            z = tex_alpha * z_tex + (1.0 - tex_alpha) * z_cold
            have_t = torch.tensor(have, device=device)
            gamma_face = torch.where(have_t.view(-1, 1, 1), gamma_tex, gamma_cold)
            used_texture = have_t
        logit = ((cfg.threshold_z - z) / cfg.softness_z).clamp(-8.0, 8.0)
        logit = torch.where(usable, logit, torch.full_like(logit, -8.0))
        p = self._spatial(logit, pix, face, lab_i, num_faces, H, W)
        p = torch.where(usable, p, torch.zeros_like(p))
        likelihood[face, pix] = p
        face_pixels[face, pix] = True
        lighting = gamma_face

        if update_textures:
            expected = shade(n_i, gamma_face[face]).clamp_min(1e-3)
            learn = usable & (p > cfg.learn_threshold) & (cos_i > cfg.learn_min_view_cosine)
            albedo = (rgb / expected).clamp(0.0, 4.0)
            for f in range(num_faces):
                sel = learn & (face == f)
                if textures[f] is None:
                    textures[f] = self.new_texture(device)
                if bool(sel.any()):
                    if have[f]:  # the track's residual scale against its texture, before this update
                        scale = (rel_tex[sel].abs().median(0).values * 1.4826)
                        textures[f].update_residual_scale(scale)
                    textures[f].update(uv_i[sel], albedo[sel], (p[sel] * cos_i[sel] ** 2))
        return self._result(likelihood, face_pixels, lighting, textures, used_texture, H, W)

    @staticmethod
    def _result(likelihood, face_pixels, lighting, textures, used_texture, H, W) -> AppearanceResult:
        n = likelihood.shape[0]
        return AppearanceResult(likelihood.view(n, H, W), face_pixels.view(n, H, W), lighting, textures, used_texture)

    # -- cold start --------------------------------------------------------------------------

    def _cold(self, log_rgb, rgb, n_i, uv_i, lab_i, face, usable, num_faces, noise_lum, noise_chroma):
        cfg = self.config
        device = log_rgb.device
        x = _opponent(log_rgb)  # (N, 3) luminance, red-green, yellow-blue of the log colour
        skin_like = usable & ((lab_i == labels_mod.SKIN) | (lab_i == labels_mod.NOSE))

        # 1. skin reference from seeds (per-cell medians)
        cells = cfg.seed_cells
        cu = (uv_i[:, 0] * cells).floor().clamp(0, cells - 1).long()
        cv = (uv_i[:, 1] * cells).floor().clamp(0, cells - 1).long()
        n_groups = num_faces * cells * cells
        sk = _subsample(skin_like, _STATS_CAP, face, num_faces)  # seeds and their support: a strided sample
        g = face[sk] * cells * cells + cv[sk] * cells + cu[sk]
        seeds = group_quantile(x[sk], g, n_groups, 0.5)  # (F*C*C, 3)
        seed_count = torch.bincount(g, minlength=n_groups)
        skin_count = torch.bincount(face[sk], minlength=num_faces)
        seed_face = torch.arange(n_groups, device=device) // (cells * cells)
        min_count = (cfg.seed_min_fraction * skin_count[seed_face]).clamp_min(10)
        seed_ok = (seed_count >= min_count) & torch.isfinite(seeds).all(1)
        seeds = torch.nan_to_num(seeds)
        scale = torch.tensor([cfg.seed_luminance_log, cfg.seed_chroma_log, cfg.seed_chroma_log], device=device)
        per_face_seeds = seeds.view(num_faces, cells * cells, 3)
        diff = (x[sk].unsqueeze(1) - per_face_seeds[face[sk]]) / scale  # (Ns, C*C, 3)
        kernel = torch.exp(-0.5 * (diff ** 2).sum(-1))
        chroma_mag = x[:, 1:].norm(dim=1)
        face_chroma = group_quantile(chroma_mag[usable].unsqueeze(1), face[usable], num_faces, 0.5)[:, 0]
        colour_face = torch.nan_to_num(face_chroma, nan=0.0) > cfg.colour_image_chroma_log
        box = torch.tensor(cfg.skin_chroma_box, device=device, dtype=x.dtype)  # (2, 2): rows red-green, yellow-blue

        def chroma_prior(v, owner):
            outside = (box[:, 0] - v[:, 1:]).clamp_min(0) + (v[:, 1:] - box[:, 1]).clamp_min(0)
            prior = torch.exp(-0.5 * (outside ** 2).sum(1) / cfg.skin_prior_width_log ** 2)
            return torch.where(colour_face[owner], prior, torch.ones_like(prior))

        # support: skin-coloured pixels near the seed (so a non-skin occluder supports no seed)
        pixel_prior = chroma_prior(x[sk], face[sk])
        support = torch.zeros(num_faces, cells * cells, device=device).index_add_(
            0, face[sk], kernel * pixel_prior.unsqueeze(1)).view(-1)
        prior = chroma_prior(seeds, seed_face)
        brightest = torch.where(seed_ok, seeds[:, 0], torch.full_like(seeds[:, 0], -1e9)).view(num_faces, -1).amax(1)
        prior = prior * torch.sigmoid((seeds[:, 0] - brightest[seed_face] + cfg.seed_dark_log) / 0.1)
        score = torch.where(seed_ok, support * (prior + 1e-3), torch.full_like(support, -1.0)).view(num_faces, -1)
        best = score.argmax(1)
        ref = per_face_seeds[torch.arange(num_faces, device=device), best]  # (F, 3)
        has_ref = score.amax(1) > 0

        # 2. shading: fit to the pixels near the reference, then robustly to the skin pixels it explains
        dref = (x - ref[face]) / scale
        weight = torch.exp(-0.5 * (dref ** 2).sum(1))
        weight = torch.where(skin_like & (weight > 0.1), weight, torch.zeros_like(weight))
        ones = torch.ones_like(rgb)
        floors = torch.tensor([cfg.skin_luminance_floor, cfg.skin_chroma_floor, cfg.skin_chroma_floor], device=device)
        noise = torch.stack((noise_lum, noise_chroma, noise_chroma), 1)
        for it in range(cfg.shading_passes + 1):
            gamma = fit_sh_lighting(ones, n_i, rgb, weight, groups=face, num_groups=num_faces,
                                    iterations=6 if it == 0 else 3, ridge=cfg.sh_ridge)
            expected = shade(n_i, gamma[face]).clamp_min(1e-3)
            d = _opponent(log_rgb - torch.log(expected + cfg.log_epsilon))  # (N, 3) residual
            centre = _weighted_centre(d, face, weight, num_faces)
            rel = d - centre[face]  # residual relative to skin
            if it < cfg.shading_passes:  # skin pixels the shading explains (Cauchy weights, cut) refit it
                zm = _robust_mahalanobis(rel, face, weight, num_faces, floors, noise,
                                         split_luminance=cfg.split_luminance)
                weight = torch.where(skin_like & (zm < cfg.membership_cut_z),
                                     1.0 / (1.0 + (zm / cfg.membership_z) ** 2),
                                     torch.zeros_like(zm))
        tolerance = torch.where(colour_face, cfg.shadow_tolerance, cfg.shadow_tolerance_gray)[face]
        rel_t = rel.clone()
        # skin in shadow (folds, eye sockets) is also more saturated: forgive a chroma shift along the
        # skin's own chroma direction of up to shadow_saturation x the darkening
        direction = F.normalize(ref[:, 1:], dim=1, eps=1e-6)[face] * colour_face[face].unsqueeze(1)
        along = (rel[:, 1:] * direction).sum(1)
        allowed = cfg.shadow_saturation * (-rel[:, 0]).clamp_min(0)
        rel_t[:, 1:] = rel[:, 1:] - (torch.minimum(along.clamp_min(0), allowed)).unsqueeze(1) * direction
        highlight = torch.full_like(tolerance, cfg.highlight_tolerance)
        rel_t[:, 0] = rel[:, 0] / torch.where(rel[:, 0] < 0, tolerance, highlight)
        z = _robust_mahalanobis(rel_t, face, weight, num_faces, floors, noise, split_luminance=cfg.split_luminance)

        # 3. feature regions
        lo = torch.full((_NUM_LABELS, 3), -float("inf"), device=device)
        hi = torch.full((_NUM_LABELS, 3), float("inf"), device=device)
        is_feature = torch.zeros(_NUM_LABELS, dtype=torch.bool, device=device)
        for name, ids in _REGION_BOX_FIELDS.items():
            b = torch.tensor(getattr(cfg, name), device=device, dtype=d.dtype)  # (3, 2)
            for k in ids:
                lo[k], hi[k], is_feature[k] = b[:, 0], b[:, 1], True
        feat = usable & is_feature[lab_i]
        if bool(feat.any()):
            fi = torch.nonzero(feat).squeeze(1)
            gr = face[fi] * _NUM_LABELS + lab_i[fi]
            n_regions = num_faces * _NUM_LABELS
            med = torch.nan_to_num(group_quantile(rel[fi], gr, n_regions, 0.5))
            lo_r, hi_r = lo.repeat(num_faces, 1), hi.repeat(num_faces, 1)
            plausible = ((med >= lo_r) & (med <= hi_r)).all(1)
            own = group_quantile((rel[fi] - med[gr]).abs(), gr, n_regions, 0.5) * 1.4826
            ffloor = torch.tensor([cfg.feature_luminance_floor, cfg.feature_chroma_floor, cfg.feature_chroma_floor],
                                  device=device)
            own = torch.maximum(torch.nan_to_num(own, nan=0.0), ffloor)
            r = rel[fi]
            nz = noise[fi]
            out_box = (lo[lab_i[fi]] - r).clamp_min(0) + (r - hi[lab_i[fi]]).clamp_min(0)
            z_box = (out_box / torch.sqrt(cfg.box_softness_log ** 2 + nz ** 2)).norm(dim=1)
            z_own = ((r - med[gr]) / torch.sqrt(own[gr] ** 2 + nz ** 2)).norm(dim=1)
            z[fi] = torch.where(plausible[gr], torch.minimum(z_box, z_own), z_box)
        z = torch.where(has_ref[face], z, torch.zeros_like(z))
        return z, gamma

    # -- video: residual against the track texture ---------------------------------------------

    def _texture(self, textures, have, log_rgb, rgb, n_i, uv_i, face, usable, cos_i, num_faces,
                 noise_lum, noise_chroma, z_cold):
        """Residual z against albedo(uv) * shading -> (z, lighting, texture weight alpha, residual d).

        Lighting: first fitted to the texture-confident pixels the cold model explains; when the track
        knows its residual scale (`TrackTexture.residual_scale`, learned on earlier frames), refitted to
        all texture-confident pixels within `texture_inlier_z` of it, and z uses that scale (an occluder
        cannot inflate it); otherwise z uses the robust scale of the first reference pixels."""
        cfg = self.config
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
        noise = torch.stack((noise_lum, noise_chroma, noise_chroma), 1)
        has_scale = torch.isfinite(known).all(1)
        scale = torch.sqrt(torch.nan_to_num(known, nan=0.0) ** 2 + floors ** 2)  # (F, 3)
        for _ in range(2 if bool(has_scale.any()) else 0):
            expected = (albedo * shade(n_i, gamma[face])).clamp_min(1e-3)
            d = _opponent(log_rgb - torch.log(expected + cfg.log_epsilon))
            centre = _weighted_centre(d, face, weight, num_faces)
            z_known = ((d - centre[face]) / torch.sqrt(scale[face] ** 2 + noise ** 2)).norm(dim=1)
            refit = alpha * cos_i.clamp_min(0) * (confident & (z_known < cfg.texture_inlier_z))
            weight = torch.where(has_scale[face], refit, weight)
            gamma = fit_sh_lighting(albedo, n_i, rgb, weight, groups=face, num_groups=num_faces, ridge=cfg.sh_ridge,
                                    iterations=3)
        expected = (albedo * shade(n_i, gamma[face])).clamp_min(1e-3)
        d = _opponent(log_rgb - torch.log(expected + cfg.log_epsilon))
        centre = _weighted_centre(d, face, weight, num_faces)
        rel = d - centre[face]
        z_robust = _robust_mahalanobis(rel, face, weight, num_faces, floors, noise, split_luminance=cfg.split_luminance)
        z_known = (rel / torch.sqrt(scale[face] ** 2 + noise ** 2)).norm(dim=1)
        z = torch.where(has_scale[face], z_known, z_robust)
        return z, gamma, alpha, rel

    # -- spatial coherence -----------------------------------------------------------------------

    def _spatial(self, logit, pix, face, lab_i, num_faces, H, W):
        """Box-filter the logit inside each face's region, close the occluded mask with a disk (adding
        feature pixels only); -> likelihood (N,)."""
        cfg = self.config
        device = logit.device
        p = torch.sigmoid(logit)
        ys, xs = pix // W, pix % W
        is_feature = torch.zeros(_NUM_LABELS, dtype=torch.bool, device=device)
        is_feature[list(labels_mod.FEATURE_LABELS)] = True
        is_feature[labels_mod.NOSE] = False
        for f in range(num_faces):
            sel = torch.nonzero(face == f).squeeze(1)
            if sel.numel() == 0:
                continue
            size = math.sqrt(sel.numel())
            r_s = max(1, round(cfg.smooth_radius * size))
            r_c = max(1, round(cfg.closing_radius * size))
            pad = r_s + 2 * r_c
            y0, y1 = int(ys[sel].min()) - pad, int(ys[sel].max()) + pad + 1
            x0, x1 = int(xs[sel].min()) - pad, int(xs[sel].max()) + pad + 1
            h, w = y1 - y0, x1 - x0
            local = (ys[sel] - y0) * w + (xs[sel] - x0)
            grid = torch.zeros(2, h * w, device=device)
            grid[0, local] = logit[sel]
            grid[1, local] = 1.0
            grid = grid.view(1, 2, h, w)
            k = 2 * r_s + 1
            summed = F.avg_pool2d(grid, k, stride=1, padding=r_s, count_include_pad=True)
            smooth = (summed[0, 0] / summed[0, 1].clamp_min(1e-6)).reshape(-1)[local]
            ps = torch.sigmoid(smooth)
            occ = torch.zeros(h * w, device=device)
            occ[local] = (ps < 0.5).float()
            closed = _close_disk(occ.view(1, 1, h, w), r_c).reshape(-1)[local]
            add = closed & (ps >= 0.5) & is_feature[lab_i[sel]]
            p[sel] = torch.where(add, torch.clamp_max(ps, cfg.closed_likelihood), ps)
        return p


def _disk(radius: int, device) -> torch.Tensor:
    r = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    return ((r.view(-1, 1) ** 2 + r.view(1, -1) ** 2) <= radius * radius + 0.5).float().view(1, 1, 2 * radius + 1, -1)


def _close_disk(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Morphological closing of a (1, 1, h, w) {0, 1} mask with a disk -> (1, 1, h, w) bool."""
    disk = _disk(radius, mask.device)
    dilated = (F.conv2d(mask, disk, padding=radius) > 0.5).float()
    return F.conv2d(1.0 - dilated, disk, padding=radius) < 0.5
