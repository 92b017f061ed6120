"""What one stage hands the next: the typed data of the pipeline's data path (docs/architecture.md).

detect + track -> TrackedFaces -> FittingPoints -> (fit: fitting.FitState) -> FaceOcclusion
-> smoothing -> FaceResult / FrameResult. Tensors stay on the pipeline's device until FaceResult,
which is numpy (what is published and written).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # the stages' own state types; contracts import no stage at run time
    from .fitting import FitState, IdentityAccumulator
    from .smoothing import TrackSmoother


@dataclass
class TrackedFaces:
    """The faces tracked in one frame, batched (B faces, in track order)."""

    track_ids: list[int]
    rois: torch.Tensor  # (B, 4) cx, cy, side, angle: the ROIs the landmarks were taken in
    landmarks468: torch.Tensor  # (B, 468, 3) image pixels (x, y) and relative depth z (pixels)
    presence: torch.Tensor  # (B,) face-presence probability
    new_ids: list[int] = field(default_factory=list)  # tracks started this frame
    lost_ids: list[int] = field(default_factory=list)  # tracks lost this frame
    detected: bool = False  # the detector ran on this frame
    visibility468: torch.Tensor | None = None  # (B, 468) probability each landmark is seen (occnet only)

    def __len__(self) -> int:
        return len(self.track_ids)

    def boxes(self) -> torch.Tensor:
        """(B, 4) x0, y0, x1, y1 around each face's landmarks."""
        xy = self.landmarks468[..., :2]
        return torch.cat([xy.amin(1), xy.amax(1)], -1)


@dataclass
class Hands:
    """Hands tracked in one frame (occlusion evidence)."""

    landmarks21: torch.Tensor  # (N, 21, 3) image pixels (x, y); z relative depth in pixels (wrist-relative)
    score: torch.Tensor  # (N,) hand-presence probability
    handedness: torch.Tensor  # (N,) probability that it is the subject's RIGHT hand in an un-mirrored image

    def __len__(self) -> int:
        return int(self.score.shape[0])

    @staticmethod
    def empty(device=None, dtype=torch.float32) -> Hands:
        z = torch.zeros(0, device=device, dtype=dtype)
        return Hands(torch.zeros(0, 21, 3, device=device, dtype=dtype), z, z.clone())


@dataclass
class FittingPoints:
    """The 2D points the model is fitted to: the 68 iBUG landmarks, then the dense FaceMesh points
    that have an ICT correspondence."""

    landmarks68: torch.Tensor  # (B, 68, 2) pixels
    points: torch.Tensor  # (B, 68 + D, 2) pixels; points[:, :68] == landmarks68


@dataclass
class FaceOcclusion:
    """One face's occlusion from the last reasoning on its track."""

    landmarks68_visible: torch.Tensor  # (68,) bool
    ratio: float  # occluded / all pixels of the rendered face region
    ratio_by_region: dict[str, float]  # core.labels.FACE_REGION_NAMES -> ratio
    pixels_by_region: dict[str, tuple[int, int]]  # name -> (occluded, total) pixels


@dataclass
class TrackState:
    """What the pipeline remembers of one face track."""

    identity: IdentityAccumulator
    smoother: TrackSmoother
    fit_state: FitState | None = None  # last frame's fit (B=1): the warm start
    points_visible: torch.Tensor | None = None  # (68 + dense,) bool, last visibility of the fitting points
    occlusion: FaceOcclusion | None = None  # last reasoning on this track
    bbox: torch.Tensor | None = None  # (4,) x0, y0, x1, y1 of the last frame's landmarks
    lost_at_s: float | None = None  # set while the track is held for re-acquisition


@dataclass
class FaceResult:
    """One face of one frame (numpy, what is published and written)."""

    track_id: int
    score: float
    bbox: np.ndarray  # (4,) x0, y0, x1, y1 pixels
    landmarks68: np.ndarray  # (68, 2) pixels, smoothed
    landmarks68_visible: np.ndarray  # (68,) bool
    landmarks468: np.ndarray  # (468, 3) raw FaceMesh, pixels
    rotation: np.ndarray  # (3, 3) model -> camera (OpenCV camera frame)
    translation_m: np.ndarray  # (3,) model origin in the camera frame, metres
    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    expression: np.ndarray  # (E,) weights
    identity: np.ndarray  # (K,) coefficients
    occlusion_ratio: float = 0.0  # occluded / all pixels of the face (rendered fitted face region)
    occlusion_by_region: dict[str, float] = field(default_factory=dict)  # labels.FACE_REGION_NAMES -> ratio
    region_pixels: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (occluded, total) pixels
    reprojection_error_px: float = 0.0


@dataclass
class FrameMaps:
    """One frame's occlusion maps, handed over by the background reasoning as soon as they are
    ready (`occlusion.background_maps: own_frame`, `FacePipeline.set_maps_listener`)."""

    timestamp_s: float  # the frame's, as given to FacePipeline.process
    occlusion_mask: np.ndarray  # (H, W) bool, True = occluded face pixel (all faces)
    parsing: np.ndarray  # (H, W) uint8 M_gamma labels (core/labels.py)
    deoccluded_bgr: np.ndarray | None  # (H, W, 3) uint8 when occlusion.deocclude is on
    reasoning_ms: float


@dataclass
class FrameResult:
    """Everything the pipeline says about one frame."""

    faces: list[FaceResult]
    width: int
    height: int
    timestamp_s: float
    lost_track_ids: list[int] = field(default_factory=list)
    stage_ms: dict[str, float] = field(default_factory=dict)
    occlusion_mask: np.ndarray | None = None  # (H, W) bool, True = occluded face pixel (all faces)
    parsing: np.ndarray | None = None  # (H, W) uint8 M_gamma labels (core/labels.py)
    deoccluded_bgr: np.ndarray | None = None  # (H, W, 3) uint8 when occlusion.deocclude is on
    occlusion_timestamp_s: float | None = None  # timestamp of the frame the maps were reasoned on
    # (this frame's when reasoning ran on it; older with occlusion.every_n_frames or .background)
