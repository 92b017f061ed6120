"""~/parsing and ~/occlusion_mask images from what the pipeline provides (pure numpy/cv2).

Until the core produces a face-parsing map / occlusion mask (a later issue), the node publishes:
* `~/occlusion_mask`: the pipeline's mask when a FrameResult carries one (`occlusion_mask`,
  (H, W) bool/uint8), else an ALL-ZERO mono8 image of the input size (255 = occluded pixel).
* `~/parsing`: the pipeline's map when a FrameResult carries one (`parsing`, (H, W) uint8 labels),
  else a RASTERISATION OF THE 68 LANDMARKS: filled polygons per region, labels below. This is a
  geometric estimate of where each region is, not a segmentation: occluders are not cut out.
"""
from __future__ import annotations

import cv2
import numpy as np

# mono8 label values of ~/parsing ("right"/"left" are the subject's, as in iBUG 68)
PARSING_LABELS = {
    0: "background",
    1: "skin",         # convex hull of the 68 landmarks (face below the brow line), not covered below
    2: "right_brow",   # iBUG 17-21, a band of thickness ~4% of the face width
    3: "left_brow",    # iBUG 22-26
    4: "right_eye",    # iBUG 36-41 polygon
    5: "left_eye",     # iBUG 42-47 polygon
    6: "nose",         # convex hull of iBUG 27-35
    7: "lips",         # iBUG 48-59 outer lip polygon minus the mouth interior
    8: "mouth",        # iBUG 60-67 inner lip polygon (teeth / mouth interior)
}
LABEL_IDS = {name: k for k, name in PARSING_LABELS.items()}


def rasterise_parsing(landmarks68_list, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 label image from the 68 landmarks (pixels) of each face; labels: PARSING_LABELS."""
    out = np.zeros((height, width), np.uint8)
    for lm in landmarks68_list:
        lm = np.asarray(lm, np.float64).reshape(68, 2)
        if not np.isfinite(lm).all():
            continue
        pts = np.round(lm * 16).astype(np.int32)  # 4 fractional bits (shift=4) for sub-pixel polygons
        width_px = float(np.ptp(lm[:, 0])) or 1.0
        cv2.fillConvexPoly(out, cv2.convexHull(pts), LABEL_IDS["skin"], cv2.LINE_8, 4)
        cv2.fillConvexPoly(out, cv2.convexHull(pts[27:36]), LABEL_IDS["nose"], cv2.LINE_8, 4)
        thick = max(2, int(round(0.04 * width_px)))
        for idx, label in ((slice(17, 22), "right_brow"), (slice(22, 27), "left_brow")):
            cv2.polylines(out, [pts[idx]], False, LABEL_IDS[label], thick, cv2.LINE_8, 4)
        cv2.fillPoly(out, [pts[36:42]], LABEL_IDS["right_eye"], cv2.LINE_8, 4)
        cv2.fillPoly(out, [pts[42:48]], LABEL_IDS["left_eye"], cv2.LINE_8, 4)
        cv2.fillPoly(out, [pts[48:60]], LABEL_IDS["lips"], cv2.LINE_8, 4)
        cv2.fillPoly(out, [pts[60:68]], LABEL_IDS["mouth"], cv2.LINE_8, 4)
    return out


def parsing_image(result, height: int, width: int) -> tuple[np.ndarray, str]:
    """(label image, source) where source is 'pipeline' or 'landmarks'."""
    parsing = getattr(result, "parsing", None)
    if parsing is not None:
        p = np.asarray(parsing)
        if p.shape[:2] == (height, width):
            return p.astype(np.uint8, copy=False), "pipeline"
    return rasterise_parsing([f.landmarks68 for f in result.faces], height, width), "landmarks"


def occlusion_mask_image(result, height: int, width: int) -> tuple[np.ndarray, str]:
    """(mono8 mask, 255 = occluded, source) where source is 'pipeline' or 'none' (all zeros)."""
    mask = getattr(result, "occlusion_mask", None)
    if mask is not None:
        m = np.asarray(mask)
        if m.shape[:2] == (height, width):
            if m.dtype == bool:
                return m.astype(np.uint8) * 255, "pipeline"
            return m.astype(np.uint8, copy=False), "pipeline"
    return np.zeros((height, width), np.uint8), "none"


def region_occlusion(face) -> dict[str, float]:
    """Per-region occluded fractions for Face.msg: the pipeline's when the FaceResult has
    `region_occlusion` (a dict with eyes/brows/nose/mouth/skin), else zeros."""
    regions = getattr(face, "region_occlusion", None) or {}
    return {k: float(regions.get(k, 0.0)) for k in ("eyes", "brows", "nose", "mouth", "skin")}
