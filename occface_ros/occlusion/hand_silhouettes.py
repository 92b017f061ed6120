"""Hand silhouettes from the 21 hand landmarks: occlusion evidence that is right for hands of any colour.

`hand_mask(hands, height, width)` draws the hand silhouette: one capsule (segment + radius) per bone,
radii relative to the palm size, plus the palm (triangle fan from the wrist through the thumb base
and the finger MCPs), the area enclosed by bent fingers, the gaps between touching fingers and a
wrist capsule.
"""
from __future__ import annotations

import torch

from ..contracts import Hands
from ..core.hand_topology import BONE_PARENTS, FINGERS, INDEX_MCP, MIDDLE_MCP, PINKY_MCP, WRIST

# Shape sizes are fractions of the palm size (palm_size_px). Adult hands: palm length ~10 cm,
# finger breadth ~2 cm (radius ~0.1), knuckle span index->pinky MCP ~6.5 cm, wrist breadth ~6 cm.

# The 20 bones: landmark i (1..20) and its parent, with a capsule radius each.
_FINGER_RADII = (0.11, 0.10, 0.09)  # proximal, middle, distal phalanx
BONE_RADII = (
    (0.17, 0.14, 0.12, 0.105)  # thumb: wrist->CMC (thenar), metacarpal, proximal, distal phalanx
    + (0.12,) + _FINGER_RADII  # index: metacarpal (inside the palm), phalanges
    + (0.12,) + _FINGER_RADII  # middle
    + (0.12,) + _FINGER_RADII  # ring
    + (0.12,) + tuple(0.9 * r for r in _FINGER_RADII)  # pinky
)
KNUCKLE_CAPSULES = ((5, 9, 0.11), (9, 13, 0.11), (13, 17, 0.11), (2, 5, 0.08))  # knuckle line, thumb web
HEEL_LENGTH, HEEL_RADIUS = 0.25, 0.27  # wrist capsule, backwards along middle MCP -> wrist
PALM_TRIANGLES = ((0, 1, 2), (0, 2, 5), (0, 5, 9), (0, 9, 13), (0, 13, 17))
WEB_MAX_GAP = 0.4  # adjacent fingers closer than this (at both ends of a phalanx) are touching


def palm_size_px(landmarks21: torch.Tensor) -> torch.Tensor:
    """(N,) palm length in pixels: wrist -> middle MCP in 3-D (x, y, z), or the knuckle span
    (index MCP -> pinky MCP) / 0.7 when larger (a palm seen edge-on or tilted away)."""
    length = (landmarks21[:, MIDDLE_MCP] - landmarks21[:, WRIST]).norm(dim=-1)
    knuckles = (landmarks21[:, PINKY_MCP] - landmarks21[:, INDEX_MCP]).norm(dim=-1)
    return torch.maximum(length, knuckles / 0.7)


def _capsules(xy: torch.Tensor, palm: torch.Tensor):
    """Capsules (a (M, 2), b (M, 2), radius (M,)) in pixels for (N, 21, 2) landmarks."""
    device = xy.device
    parent = torch.tensor(BONE_PARENTS + tuple(i for i, _, _ in KNUCKLE_CAPSULES), device=device)
    child = torch.tensor(tuple(range(1, 21)) + tuple(j for _, j, _ in KNUCKLE_CAPSULES), device=device)
    radius = torch.tensor(BONE_RADII + tuple(r for _, _, r in KNUCKLE_CAPSULES), device=device, dtype=xy.dtype)
    wrist = xy[:, WRIST]
    heel = wrist + HEEL_LENGTH * (wrist - xy[:, MIDDLE_MCP])
    a = torch.cat([xy[:, parent], wrist[:, None]], 1)
    b = torch.cat([xy[:, child], heel[:, None]], 1)
    r = torch.cat([radius.expand(xy.shape[0], -1), radius.new_full((xy.shape[0], 1), HEEL_RADIUS)], 1)
    return a.reshape(-1, 2), b.reshape(-1, 2), (r * palm[:, None]).reshape(-1)


def _triangles(xy: torch.Tensor, palm: torch.Tensor) -> torch.Tensor:
    """Filled triangles (M, 3, 2) in pixels: palm fan; the area a bent finger encloses (MCP, PIP,
    DIP, tip), down to the wrist for a finger curled into a fist; the gap between touching fingers."""
    device = xy.device
    fingers = torch.tensor(FINGERS, device=device)  # (4, 4)
    mcp, pip, dip, tip = fingers.unbind(1)
    wrist = torch.full_like(mcp, WRIST)
    idx = [torch.tensor(PALM_TRIANGLES, device=device)]
    idx += [torch.stack([mcp, pip, dip], 1), torch.stack([mcp, dip, tip], 1)]
    tri = xy[:, torch.cat(idx)]  # (N, 5 + 8, 3, 2), always drawn
    # finger curled into a fist: its tip is nearer the wrist than its PIP is
    dist_w = (xy - xy[:, WRIST:WRIST + 1]).norm(dim=-1)  # (N, 21)
    curled = dist_w[:, tip] < dist_w[:, pip]  # (N, 4)
    fist = xy[:, torch.stack([wrist, mcp, tip], 1)]  # (N, 4, 3, 2)
    # touching adjacent fingers: quads between their corresponding joints
    f, g = fingers[:-1], fingers[1:]  # (3, 4) pairs of adjacent fingers
    gap = (xy[:, f] - xy[:, g]).norm(dim=-1) < WEB_MAX_GAP * palm[:, None, None]  # (N, 3, 4) per joint
    touch = gap[..., :-1] & gap[..., 1:]  # (N, 3, 3) per phalanx
    j0, j1 = f[:, :-1], f[:, 1:]
    k0, k1 = g[:, :-1], g[:, 1:]
    web = torch.cat([xy[:, torch.stack([j0, j1, k1], -1)], xy[:, torch.stack([j0, k1, k0], -1)]], 1)  # (N, 6, 3, 3, 2)
    touch2 = torch.cat([touch, touch], 1)
    return torch.cat([tri.reshape(-1, 3, 2), fist[curled], web[touch2]])


_SUBPIXEL_BITS = 4  # cv2 drawing with 1/16 pixel coordinates and radii


def hand_mask(hands: Hands, height: int, width: int) -> torch.Tensor:
    """(H, W) bool silhouette of all hands from their landmarks, on the landmarks' device: bone
    capsules (radii relative to the palm size), palm and bent-finger triangles, the gaps between
    touching fingers, a wrist capsule. Shapes are computed batched in torch and drawn with cv2 on a
    CPU copy (pixel centres inside a shape, up to cv2's rounding of edge pixels; ~0.5 ms per hand;
    a per-pixel torch evaluation was 20-300x slower on CPU)."""
    import cv2
    import numpy as np

    xy = hands.landmarks21[..., :2]
    if xy.shape[0] == 0:
        return torch.zeros(height, width, dtype=torch.bool, device=xy.device)
    palm = palm_size_px(hands.landmarks21)
    a, b, r = _capsules(xy, palm)
    tri = _triangles(xy, palm)
    # capsule = two end discs + the rectangle between them
    d = b - a
    normal = torch.stack([-d[:, 1], d[:, 0]], -1) / d.norm(dim=-1, keepdim=True).clamp(min=1e-6) * r[:, None]
    quads = torch.stack([a + normal, b + normal, b - normal, a - normal], 1)
    fixed = float(1 << _SUBPIXEL_BITS)
    ends = (torch.cat([a, b]) * fixed).round().long().cpu().numpy()
    radii = (torch.cat([r, r]) * fixed).round().long().cpu().numpy()
    polys = (torch.cat([quads.reshape(-1, 2), tri.reshape(-1, 2)]) * fixed).round().int().cpu().numpy()
    quad_pts, tri_pts = polys[: quads.shape[0] * 4].reshape(-1, 4, 2), polys[quads.shape[0] * 4 :].reshape(-1, 3, 2)
    mask = np.zeros((height, width), np.uint8)
    for (cx, cy), rad in zip(ends.tolist(), radii.tolist()):
        cv2.circle(mask, (cx, cy), rad, 1, -1, cv2.LINE_8, _SUBPIXEL_BITS)
    for poly in list(quad_pts) + list(tri_pts):
        cv2.fillConvexPoly(mask, poly, 1, cv2.LINE_8, _SUBPIXEL_BITS)
    return torch.from_numpy(mask.view(bool)).to(xy.device)
