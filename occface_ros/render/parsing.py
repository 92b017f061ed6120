"""Face-parsing maps M_beta (where each face region is expected): from a rendered mesh or from 68 landmarks.

Labels: `occface_ros.core.labels` (BACKGROUND where no face is). Both variants use the same
region conventions (iBUG 68; `regions.face_polygons`), so a map from a fitted mesh and one from its
landmarks agree up to the mesh's 3D shape.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from ..core.labels import (
    BACKGROUND,
    INNER_MOUTH,
    LEFT_BROW,
    LEFT_EYE,
    LOWER_LIP,
    NOSE,
    RIGHT_BROW,
    RIGHT_EYE,
    SKIN,
    UPPER_LIP,
)
from .raster import Fragments
from .regions import face_polygons

__all__ = ["landmark_parsing", "render_parsing"]


def render_parsing(fragments: Fragments, triangle_labels: torch.Tensor) -> torch.Tensor:
    """(B, H, W) uint8 labels of the rasterized triangles (`FaceRegions.triangle_labels`), BACKGROUND where empty."""
    tid = fragments.triangle_id
    labels = triangle_labels.to(device=tid.device, dtype=torch.uint8)
    out = labels[tid.clamp_min(0)]
    return torch.where(tid >= 0, out, torch.full_like(out, BACKGROUND))


# drawing order: later regions overwrite earlier ones
_ORDER = (
    ("face", SKIN),
    ("nose", NOSE),
    ("upper_lip", UPPER_LIP),
    ("lower_lip", LOWER_LIP),
    ("inner_mouth", INNER_MOUTH),
    ("right_brow", RIGHT_BROW),
    ("left_brow", LEFT_BROW),
    ("right_eye", RIGHT_EYE),
    ("left_eye", LEFT_EYE),
)


def landmark_parsing(landmarks68_list, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 label image from each face's 68 landmarks (pixels, iBUG order): filled region polygons.

    Regions (subject's left/right): face outline = jaw 0-16 + temples + a forehead arc (brow-to-
    subnasale high), nose, upper lip (outer 48-54 + inner 60-64), lower lip (outer 54-59 + inner
    64-67), inner mouth (60-67), brows (band below 17-21 / 22-26), eyes (36-41 / 42-47). A
    geometric estimate of where each region is, not a segmentation: occluders are not cut out.
    Faces are drawn in list order (a later face covers an earlier one).
    """
    out = np.zeros((height, width), np.uint8)
    flip = np.array([1.0, -1.0])  # face_polygons works with y up; image y is down
    for lm in landmarks68_list:
        lm = np.asarray(lm, np.float64).reshape(68, 2)
        if not np.isfinite(lm).all():
            continue
        polys = face_polygons(lm * flip)
        for name, label in _ORDER:
            pts = np.round(polys[name] * flip * 16).astype(np.int32)  # 4 fractional bits (shift=4)
            cv2.fillPoly(out, [pts], int(label), cv2.LINE_8, 4)
    return out
