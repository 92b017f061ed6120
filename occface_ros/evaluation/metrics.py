"""Evaluation metrics (numpy): NME, occlusion-mask IoU/F1, pose change, static-head jitter.

Definitions (also in docs/evaluation.md):
- NME: mean point-to-point distance over the 68 iBUG landmarks divided by the ground truth's
  outer-eye-corner distance |gt[36] - gt[45]| (iBUG 300-W "inter-ocular" normalisation).
- Face region: the convex hull of the 68 landmarks plus the ten brow points moved up (along the
  chin -> brow-centre direction) by `FOREHEAD_FRACTION` of the chin-to-brow-centre distance. Mask
  metrics are computed inside it: ground truth = occluder pixels inside the region, prediction =
  predicted occlusion pixels inside the region.
- Pose change: geodesic angle (degrees) of R_a^T R_b.
- Jitter: per landmark, the RMS distance of its positions over the frames to their mean; averaged
  over the 68 landmarks (pixels).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

FOREHEAD_FRACTION = 0.4
"""Forehead height added above the brows, as a fraction of the chin (8) to brow-centre (19, 24) distance."""

OUTER_EYE_CORNERS = (36, 45)


def interocular_px(gt68: np.ndarray) -> np.ndarray:
    """Outer-eye-corner distance of (..., 68, 2) ground-truth landmarks -> (...)."""
    gt68 = np.asarray(gt68, dtype=np.float64)
    return np.linalg.norm(gt68[..., OUTER_EYE_CORNERS[0], :] - gt68[..., OUTER_EYE_CORNERS[1], :], axis=-1)


def nme(pred68: np.ndarray, gt68: np.ndarray, points: slice | np.ndarray | None = None):
    """Normalised mean error of (..., 68, 2) predictions against (..., 68, 2) ground truth.

    Returns a float for one face, an array for a batch; NaN where the prediction is NaN (missed face).
    `points` restricts the mean to some landmarks (the normalisation stays the outer-eye-corner distance).
    """
    pred = np.asarray(pred68, dtype=np.float64)
    gt = np.asarray(gt68, dtype=np.float64)
    err = np.linalg.norm(pred - gt, axis=-1)
    if points is not None:
        err = err[..., points]
    out = err.mean(-1) / interocular_px(gt)
    return float(out) if np.ndim(out) == 0 else out


def safe_ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when either is NaN or the denominator is 0."""
    if not (np.isfinite(numerator) and np.isfinite(denominator)) or denominator == 0:
        return float("nan")
    return float(numerator) / float(denominator)


def face_region_mask(landmarks68: np.ndarray, height: int, width: int,
                     forehead_fraction: float = FOREHEAD_FRACTION) -> np.ndarray:
    """(H, W) bool face region of one face (see the module docstring); pixel centres inside the hull."""
    lm = np.asarray(landmarks68, dtype=np.float64)
    brow_centre = 0.5 * (lm[19] + lm[24])
    up = brow_centre - lm[8]
    face_height = np.linalg.norm(up)
    up = up / max(face_height, 1e-9)
    forehead = lm[17:27] + up * forehead_fraction * face_height
    pts = np.concatenate([lm, forehead])
    hull = cv2.convexHull(np.round(pts * 16).astype(np.int32))  # 4 fractional bits (shift=4)
    region = np.zeros((height, width), np.uint8)
    cv2.fillConvexPoly(region, hull, 1, lineType=cv2.LINE_8, shift=4)
    return region.astype(bool)


@dataclass
class MaskScores:
    iou: float
    f1: float
    precision: float
    recall: float
    gt_pixels: int
    predicted_pixels: int

    def as_dict(self) -> dict:
        return asdict(self)


def mask_scores(predicted: np.ndarray, ground_truth: np.ndarray, region: np.ndarray | None = None) -> MaskScores:
    """IoU, F1 (Dice), precision and recall of two (H, W) bool masks, counted inside `region`.

    Empty-vs-empty counts as a perfect score (1.0); precision is 1.0 when nothing is predicted,
    recall 1.0 when the ground truth is empty.
    """
    pred = np.asarray(predicted, dtype=bool)
    gt = np.asarray(ground_truth, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {gt.shape}")
    if region is not None:
        region = np.asarray(region, dtype=bool)
        pred, gt = pred & region, gt & region
    tp = int(np.count_nonzero(pred & gt))
    n_pred, n_gt = int(np.count_nonzero(pred)), int(np.count_nonzero(gt))
    union = n_pred + n_gt - tp
    iou = tp / union if union else 1.0
    f1 = 2 * tp / (n_pred + n_gt) if (n_pred + n_gt) else 1.0
    precision = tp / n_pred if n_pred else 1.0
    recall = tp / n_gt if n_gt else 1.0
    return MaskScores(iou, f1, precision, recall, n_gt, n_pred)


def rotation_geodesic_deg(rotation_a: np.ndarray, rotation_b: np.ndarray):
    """Angle in degrees of the relative rotation R_a^T R_b, for (..., 3, 3) inputs (float or array)."""
    import torch

    from ..core.geometry import rotation_angle_deg

    a = torch.from_numpy(np.array(rotation_a, dtype=np.float64))  # a writable copy
    b = torch.from_numpy(np.array(rotation_b, dtype=np.float64))
    out = rotation_angle_deg(a, b).numpy()
    return float(out) if out.ndim == 0 else out


def landmark_jitter_px(landmarks: np.ndarray) -> float:
    """Static-head jitter of (F, N, 2) landmark tracks: mean over the N points of the RMS distance
    of their positions to their mean position (pixels). Frames with NaN (no face) are dropped."""
    lm = np.asarray(landmarks, dtype=np.float64)
    ok = np.isfinite(lm).all(axis=(1, 2))
    lm = lm[ok]
    if len(lm) < 2:
        return float("nan")
    dev = lm - lm.mean(0, keepdims=True)
    return float(np.sqrt((dev ** 2).sum(-1).mean(0)).mean())


def frame_to_frame_jitter_px(landmarks: np.ndarray) -> float:
    """Shake of (F, N, 2) landmark tracks: mean over the N points of the RMS displacement between
    consecutive frames (pixels); what a viewer sees as shaking, blind to slow drift (unlike
    landmark_jitter_px). Pairs with a NaN frame are dropped."""
    lm = np.asarray(landmarks, dtype=np.float64)
    step = np.linalg.norm(lm[1:] - lm[:-1], axis=-1)  # (F-1, N)
    step = step[np.isfinite(step).all(1)]
    if len(step) == 0:
        return float("nan")
    return float(np.sqrt((step ** 2).mean(0)).mean())


def rotation_jitter_deg(rotations: np.ndarray) -> float:
    """RMS geodesic angle (degrees) of (F, 3, 3) rotations to their chordal mean."""
    r = np.asarray(rotations, dtype=np.float64)
    r = r[np.isfinite(r).all(axis=(1, 2))]
    if len(r) < 2:
        return float("nan")
    u, _, vt = np.linalg.svd(r.mean(0))
    mean = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    angles = rotation_geodesic_deg(np.broadcast_to(mean, r.shape), r)
    return float(np.sqrt(np.mean(np.square(angles))))


def summary_stats(values) -> dict:
    """{mean, median, max, n} over the finite values (NaN entries skipped; all-NaN -> NaN)."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"mean": float("nan"), "median": float("nan"), "max": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "max": float(v.max()), "n": len(v)}


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
