"""The track-keeping rules faces and hands share: admit detections, drop duplicate tracks."""
from __future__ import annotations

import torch

from ..core.roi import box_iou, rois_to_boxes


def admit_detections(tracked_rois: torch.Tensor | None, detected_rois: torch.Tensor, merge_iou: float,
                     capacity: int) -> torch.Tensor:
    """The detected ROIs (N, 4) that start new tracks: those not overlapping a tracked ROI by
    `merge_iou` or more, best first, at most `capacity`."""
    if tracked_rois is not None and tracked_rois.shape[0] and detected_rois.shape[0]:
        overlap = box_iou(rois_to_boxes(detected_rois), rois_to_boxes(tracked_rois)).amax(1)
        detected_rois = detected_rois[overlap < merge_iou]
    return detected_rois[:max(capacity, 0)]


def distinct_tracks(next_rois: torch.Tensor, merge_iou: float) -> torch.Tensor:
    """(N,) bool: False for a track whose next ROI overlaps an older track's (listed first) by more
    than `merge_iou`: two tracks converged on one face or hand, the older id wins."""
    keep = torch.ones(next_rois.shape[0], dtype=torch.bool, device=next_rois.device)
    if next_rois.shape[0] > 1:
        iou = box_iou(rois_to_boxes(next_rois), rois_to_boxes(next_rois))
        keep = ~torch.triu(iou > merge_iou, diagonal=1).any(0)
    return keep
