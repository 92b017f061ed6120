"""Cold-start evidence (no texture yet: a single image, a new track): residual z of each pixel against
a skin reference, SH shading and plausible facial-feature colours found in this frame alone
(steps 1-4 of `AppearanceEvidence`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...core import labels as labels_mod
from .colour import opponent
from .config import AppearanceConfig
from .lighting import fit_sh_lighting, shade
from .pixels import NUM_LABELS, FacePixels
from .statistics import STATS_CAP, group_quantile, robust_mahalanobis, subsample, weighted_centre

__all__ = ["REGION_BOX_FIELDS", "cold_start_z"]

# the config box of each feature region -> its parsing labels
REGION_BOX_FIELDS = {
    "lips_box": (labels_mod.UPPER_LIP, labels_mod.LOWER_LIP),
    "brows_box": (labels_mod.LEFT_BROW, labels_mod.RIGHT_BROW),
    "eyes_box": (labels_mod.LEFT_EYE, labels_mod.RIGHT_EYE),
    "mouth_box": (labels_mod.INNER_MOUTH,),
}


def cold_start_z(px: FacePixels, cfg: AppearanceConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual z (N,) of the pixels and the fitted lighting (F, 9, 3), from this frame alone."""
    log_rgb, rgb, n_i, uv_i, lab_i, face, usable = px.log_rgb, px.rgb, px.normals, px.uv, px.labels, px.face, px.usable
    num_faces, noise = px.num_faces, px.noise
    device = log_rgb.device
    x = opponent(log_rgb)  # (N, 3) luminance, red-green, yellow-blue of the log colour
    skin_like = usable & ((lab_i == labels_mod.SKIN) | (lab_i == labels_mod.NOSE))

    # 1. skin reference from seeds (per-cell medians)
    cells = cfg.seed_cells
    cu = (uv_i[:, 0] * cells).floor().clamp(0, cells - 1).long()
    cv = (uv_i[:, 1] * cells).floor().clamp(0, cells - 1).long()
    n_groups = num_faces * cells * cells
    sk = subsample(skin_like, STATS_CAP, face, num_faces)  # seeds and their support: a strided sample
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
    for it in range(cfg.shading_passes + 1):
        gamma = fit_sh_lighting(ones, n_i, rgb, weight, groups=face, num_groups=num_faces,
                                iterations=6 if it == 0 else 3, ridge=cfg.sh_ridge)
        expected = shade(n_i, gamma[face]).clamp_min(1e-3)
        d = opponent(log_rgb - torch.log(expected + cfg.log_epsilon))  # (N, 3) residual
        centre = weighted_centre(d, face, weight, num_faces)
        rel = d - centre[face]  # residual relative to skin
        if it < cfg.shading_passes:  # skin pixels the shading explains (Cauchy weights, cut) refit it
            zm = robust_mahalanobis(rel, face, weight, num_faces, floors, noise,
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
    z = robust_mahalanobis(rel_t, face, weight, num_faces, floors, noise, split_luminance=cfg.split_luminance)

    # 3. feature regions
    lo = torch.full((NUM_LABELS, 3), -float("inf"), device=device)
    hi = torch.full((NUM_LABELS, 3), float("inf"), device=device)
    is_feature = torch.zeros(NUM_LABELS, dtype=torch.bool, device=device)
    for name, ids in REGION_BOX_FIELDS.items():
        b = torch.tensor(getattr(cfg, name), device=device, dtype=d.dtype)  # (3, 2)
        for k in ids:
            lo[k], hi[k], is_feature[k] = b[:, 0], b[:, 1], True
    feat = usable & is_feature[lab_i]
    if bool(feat.any()):
        fi = torch.nonzero(feat).squeeze(1)
        gr = face[fi] * NUM_LABELS + lab_i[fi]
        n_regions = num_faces * NUM_LABELS
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
