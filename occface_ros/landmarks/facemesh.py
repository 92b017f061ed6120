"""Landmark stage: FaceMesh 468 in rotated ROIs, batched over faces; FallbackLandmarker adds occnet
where FaceMesh gives up on a face."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.roi import crop_rois, crop_to_image, roi_from_points

# FaceMesh indices of the outer eye corners (subject's right eye at image left), used for ROI roll.
MP_RIGHT_EYE_OUTER = 33
MP_LEFT_EYE_OUTER = 263


@dataclass
class LandmarkResult:
    landmarks468: torch.Tensor  # (B, 468, 3) image pixels (x, y) and relative depth z (pixels)
    presence: torch.Tensor  # (B,) face-presence probability
    visibility468: torch.Tensor | None = None  # (B, 468) probability a landmark is seen (occnet only)


class FaceLandmarker:
    """(image (3, H, W), rois (B, 4)) -> LandmarkResult in image pixels.

    `net`: a runner of FaceMesh ((landmarks, presence_logit, presence)) or of the trained occnet
    (the same plus visibility logits)."""

    def __init__(self, net, roi_scale: float = 1.5):
        self.net = net
        self.input_size = tuple(net.input_size)
        self.roi_scale = roi_scale

    @torch.inference_mode()
    def __call__(self, image: torch.Tensor, rois: torch.Tensor) -> LandmarkResult:
        crops = crop_rois(image, rois, self.input_size)
        out = self.net(crops)
        visibility = torch.sigmoid(out[3]) if len(out) > 3 else None
        return LandmarkResult(crop_to_image(out[0], rois, self.input_size), out[2].reshape(-1), visibility)

    def next_rois(self, landmarks468: torch.Tensor) -> torch.Tensor:
        """ROIs for the next frame from this frame's landmarks (MediaPipe's tracking rule)."""
        return roi_from_points(landmarks468[..., :2], MP_RIGHT_EYE_OUTER, MP_LEFT_EYE_OUTER, self.roi_scale)


class FallbackLandmarker:
    """FaceMesh, and the occlusion-trained occnet where FaceMesh gives up (`landmarks.model:
    facemesh+occnet`): a face whose FaceMesh presence falls under `presence_threshold` (an occluder
    hides much of it) is landmarked by occnet on the same crop. Visibility: occnet's for its rows,
    1 for FaceMesh's (FaceMesh's own assumption). Same call as FaceLandmarker; `occnet` is also
    what the pipeline runs again on faces the occlusion stage finds occluded (pipeline.py)."""

    def __init__(self, facemesh: FaceLandmarker, occnet: FaceLandmarker, presence_threshold: float):
        self.facemesh, self.occnet, self.presence_threshold = facemesh, occnet, presence_threshold
        self.input_size, self.roi_scale = facemesh.input_size, facemesh.roi_scale

    @torch.inference_mode()
    def __call__(self, image: torch.Tensor, rois: torch.Tensor) -> LandmarkResult:
        result = self.facemesh(image, rois)
        rows = torch.nonzero(result.presence < self.presence_threshold).squeeze(1)
        if rows.numel() == 0:
            return result
        return merge_rows(result, rows, self.occnet(image, rois[rows]))

    def next_rois(self, landmarks468: torch.Tensor) -> torch.Tensor:
        return self.facemesh.next_rois(landmarks468)


def merge_rows(result: LandmarkResult, rows: torch.Tensor, other: LandmarkResult) -> LandmarkResult:
    """`result` with its `rows` replaced by `other` (one row each); visibility 1 where none is known."""
    landmarks, presence = result.landmarks468.clone(), result.presence.clone()
    landmarks[rows], presence[rows] = other.landmarks468, other.presence
    visibility = result.visibility468
    if visibility is not None or other.visibility468 is not None:
        count = (visibility if visibility is not None else other.visibility468).shape[1]
        visibility = (torch.ones(presence.shape[0], count, device=presence.device) if visibility is None
                      else visibility.clone())
        # a row replaced by a network without visibility (FaceMesh) is seen, not the old row's
        visibility[rows] = other.visibility468 if other.visibility468 is not None else 1.0
    return LandmarkResult(landmarks, presence, visibility)
