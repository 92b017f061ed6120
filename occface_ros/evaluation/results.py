"""Reading a FrameResult for scoring: the face that matches a ground truth, the occlusion mask, which
occlusion-stage outputs it carries (read with getattr: a pipeline without a stage gives "n/a")."""
from __future__ import annotations

import numpy as np

from . import metrics as M


def stage_fields(result) -> dict:
    """Which occlusion-stage outputs a FrameResult carries (None/absent = not produced)."""
    return {
        "occlusion_mask": getattr(result, "occlusion_mask", None) is not None,
        "parsing": getattr(result, "parsing", None) is not None,
        "deoccluded_bgr": getattr(result, "deoccluded_bgr", None) is not None,
        "occlusion_by_region": any(bool(getattr(f, "occlusion_by_region", None)) for f in result.faces),
    }


def match_face(faces, reference68: np.ndarray, max_distance_iod: float = 0.6):
    """The face whose landmark centroid is nearest `reference68`'s, if within `max_distance_iod` x IOD."""
    if not faces:
        return None
    centre = reference68.mean(0)
    dist = [float(np.linalg.norm(np.asarray(f.landmarks68).mean(0) - centre)) for f in faces]
    best = int(np.argmin(dist))
    return faces[best] if dist[best] <= max_distance_iod * M.interocular_px(reference68) else None


def match_landmarks(candidates68: np.ndarray, reference68: np.ndarray, max_distance_iod: float = 0.6):
    """(68, 2) landmarks if finite and near `reference68` (see match_face), else None."""
    if candidates68 is None or not np.isfinite(candidates68).all():
        return None
    d = np.linalg.norm(candidates68.mean(0) - reference68.mean(0))
    return candidates68 if d <= max_distance_iod * M.interocular_px(reference68) else None


def predicted_mask(result, mask_expected: bool) -> np.ndarray | None:
    """The (H, W) bool occlusion mask of a FrameResult; an empty one when the stage is on but gave none
    (no face found: nothing flagged); None when the pipeline has no occlusion stage (metrics n/a)."""
    mask = getattr(result, "occlusion_mask", None)
    if mask is not None:
        return np.asarray(mask, dtype=bool)
    return np.zeros((result.height, result.width), bool) if mask_expected else None
