"""Robust statistics of many groups at once (faces x regions): quantiles, strided samples, medians,
Mahalanobis distances of colour residuals."""
from __future__ import annotations

import torch
import torch.nn.functional as F

STATS_CAP = 2048  # robust statistics (fits, medians, MADs, seed support) use at most ~this many pixels per face

__all__ = ["STATS_CAP", "group_quantile", "robust_mahalanobis", "subsample", "weighted_centre"]


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


def subsample(mask: torch.Tensor, cap: int, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
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


def weighted_centre(resid: torch.Tensor, face: torch.Tensor, weight: torch.Tensor, num_faces: int) -> torch.Tensor:
    """Per-face weighted median (F, C) of resid (N, C) over pixels with weight > 0 (0 where none)."""
    sub = subsample(weight > 0, STATS_CAP, face, num_faces)
    return torch.nan_to_num(group_quantile(resid[sub], face[sub], num_faces, 0.5, weights=weight[sub]))


def robust_mahalanobis(rel: torch.Tensor, face: torch.Tensor, weight: torch.Tensor, num_faces: int,
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
    sub = subsample(sel, STATS_CAP, face, num_faces)
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
