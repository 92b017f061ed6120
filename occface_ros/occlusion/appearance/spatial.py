"""Spatial coherence of the occlusion evidence: box filter of the logit, disk closing of the occluded mask."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...core import labels as labels_mod
from .config import AppearanceConfig
from .pixels import NUM_LABELS, FacePixels

__all__ = ["coherent_likelihood"]


def coherent_likelihood(logit: torch.Tensor, px: FacePixels, width: int, cfg: AppearanceConfig) -> torch.Tensor:
    """Box-filter the logit inside each face's region, close the occluded mask with a disk (adding
    feature pixels only); -> likelihood (N,)."""
    pix, face, lab_i, num_faces = px.pixel, px.face, px.labels, px.num_faces
    device = logit.device
    p = torch.sigmoid(logit)
    ys, xs = pix // width, pix % width
    is_feature = torch.zeros(NUM_LABELS, dtype=torch.bool, device=device)
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
