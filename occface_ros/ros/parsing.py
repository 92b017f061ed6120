"""~/parsing and ~/occlusion_mask images and Face.msg region ratios from a FrameResult (numpy).

* `~/occlusion_mask`: the core's occlusion mask (255 = face pixel hidden by something), or an
  all-zero mono8 image when the frame has none (occlusion reasoning disabled, no face).
* `~/parsing`: the core's M_gamma (Algorithm 1), labels of `occface_ros.core.labels`; without
  it, the landmark-polygon parsing (`render.parsing.landmark_parsing`: regions from the 68
  landmarks, occluders not cut out).
"""
from __future__ import annotations

import numpy as np

from ..core.labels import LABELS, MESSAGE_REGION_GROUPS
from ..render.parsing import landmark_parsing


def parsing_image(result, height: int, width: int) -> tuple[np.ndarray, str]:
    """(label image, source) where source is 'pipeline' or 'landmarks'."""
    if result.parsing is not None:
        p = np.asarray(result.parsing)
        if p.shape[:2] == (height, width):
            return p.astype(np.uint8, copy=False), "pipeline"
    return landmark_parsing([f.landmarks68 for f in result.faces], height, width), "landmarks"


def occlusion_mask_image(result, height: int, width: int) -> tuple[np.ndarray, str]:
    """(mono8 mask, 255 = occluded, source) where source is 'pipeline' or 'none' (all zeros)."""
    if result.occlusion_mask is not None:
        m = np.asarray(result.occlusion_mask)
        if m.shape[:2] == (height, width):
            if m.dtype == bool:
                return m.astype(np.uint8) * 255, "pipeline"
            return m.astype(np.uint8, copy=False), "pipeline"
    return np.zeros((height, width), np.uint8), "none"


def region_occlusion(face) -> dict[str, float]:
    """Occluded fraction of each Face.msg group (eyes, brows, nose, mouth, skin): occluded pixels of
    the group's labels over all its pixels (FaceResult.region_pixels); 0 without occlusion reasoning."""
    counts = face.region_pixels
    out = {}
    for group, label_ids in MESSAGE_REGION_GROUPS.items():
        occ = sum(counts.get(LABELS[k], (0, 0))[0] for k in label_ids)
        total = sum(counts.get(LABELS[k], (0, 0))[1] for k in label_ids)
        out[group] = float(occ) / float(total) if total else 0.0
    return out
