"""Hands: MediaPipe's palm detector + 21 hand landmarks, tracked between frames.

Pipeline (as MediaPipe's hand_landmark_tracking_cpu graph, batched over hands):

1. palm detection (192x192 letterbox, 2016 SSD anchors, 7 keypoints, weighted NMS IoU 0.3) when no
   hand is tracked, or every `redetect_every` frames while fewer than `max_hands` are tracked;
2. palm -> rotated hand ROI (palm_detection_detection_to_roi): rotation makes the wrist (keypoint 0)
   -> middle-finger MCP (keypoint 2) vector point up; box shifted by -0.5 of its height, squared on
   its long side, scaled 2.6;
3. hand landmarks (224x224 crop) -> 21 points in image pixels, hand presence, handedness;
4. next frame's ROI from the landmarks (hand_landmarks_to_rect on the wrist + MCP/PIP of the five
   fingers: rotation from the wrist to the mean of the index/middle/ring MCPs, shift_y -0.1, scale 2.0).

Landmark order (MediaPipe): 0 wrist; thumb 1 CMC, 2 MCP, 3 IP, 4 tip; index 5-8, middle 9-12,
ring 13-16, pinky 17-20 (MCP, PIP, DIP, tip).

The silhouettes drawn from these landmarks are in `occlusion/hand_silhouettes.py`.

Handedness: the network's raw output p, which MediaPipe labels "Left" because it assumes mirrored
(selfie) input; for an un-mirrored camera image p is the probability of the subject's RIGHT hand.
"""
from __future__ import annotations

import math
import torch

from .. import nets
from ..config import load_config
from ..contracts import Hands
from ..core.hand_topology import INDEX_MCP, MIDDLE_MCP, RING_MCP, WRIST
from ..core.roi import crop_rois, crop_to_image, roi_from_points
from ..core.timing import StageTimer
from ..detection.ssd import Detections, SsdDetector
from .rois import admit_detections, distinct_tracks

PALM_KEYPOINT_WRIST = 0  # palm detector keypoints: 0 wrist, 2 middle-finger MCP
PALM_KEYPOINT_MIDDLE_MCP = 2
PALM_ROI_SCALE = 2.6
PALM_ROI_SHIFT_Y = -0.5
PALM_NMS_IOU = 0.3

TRACK_ROI_LANDMARKS = (0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18)  # wrist + MCP/PIP of five fingers
TRACK_ROI_SCALE = 2.0
TRACK_ROI_SHIFT_Y = -0.1
LANDMARK_NORMALIZE_Z = 0.4  # MediaPipe TensorsToLandmarks normalize_z for the hand model
MERGE_IOU = 0.5  # MediaPipe AssociationNormRect min_similarity_threshold

def rois_from_palms(det: Detections) -> torch.Tensor:
    """Rotated hand ROIs (N, 4) from palm detections in pixels (MediaPipe palm_detection_detection_to_roi)."""
    delta = det.keypoints[:, PALM_KEYPOINT_MIDDLE_MCP] - det.keypoints[:, PALM_KEYPOINT_WRIST]
    angle = torch.atan2(delta[:, 1], delta[:, 0]) + 0.5 * math.pi  # wrist -> MCP points up
    centre = 0.5 * (det.boxes[:, :2] + det.boxes[:, 2:])
    w, h = det.boxes[:, 2] - det.boxes[:, 0], det.boxes[:, 3] - det.boxes[:, 1]
    shift = PALM_ROI_SHIFT_Y * h  # along the rotated y axis
    cx = centre[:, 0] - shift * torch.sin(angle)
    cy = centre[:, 1] + shift * torch.cos(angle)
    return torch.stack([cx, cy, torch.maximum(w, h) * PALM_ROI_SCALE, angle], -1)


def rois_from_hand_landmarks(landmarks21: torch.Tensor) -> torch.Tensor:
    """Next-frame ROIs (N, 4) from (N, 21, 2+) pixel landmarks (MediaPipe hand_landmarks_to_rect)."""
    xy = landmarks21[..., :2]
    top = 0.5 * (0.5 * (xy[:, INDEX_MCP] + xy[:, RING_MCP]) + xy[:, MIDDLE_MCP])
    delta = top - xy[:, WRIST]
    angle = torch.atan2(delta[:, 1], delta[:, 0]) + 0.5 * math.pi
    angle = torch.remainder(angle + math.pi, 2 * math.pi) - math.pi
    return roi_from_points(xy[:, list(TRACK_ROI_LANDMARKS)], 0, 0, TRACK_ROI_SCALE, TRACK_ROI_SHIFT_Y, angle=angle)


class HandLandmarker:
    """(image (3, H, W), rois (B, 4)) -> (landmarks21 (B, 21, 3) px, presence (B,), handedness (B,))."""

    def __init__(self, net):
        self.net = net  # occface_ros.nets "hand_landmarks" module
        self.input_size = tuple(net.input_size)

    @torch.inference_mode()
    def __call__(self, image: torch.Tensor, rois: torch.Tensor):
        crops = crop_rois(image, rois, self.input_size)
        landmarks_crop, presence, handedness, _world = self.net(crops)
        scale_z = torch.tensor([1.0, 1.0, 1.0 / LANDMARK_NORMALIZE_Z], dtype=landmarks_crop.dtype,
                               device=landmarks_crop.device)
        landmarks = crop_to_image(landmarks_crop * scale_z, rois, self.input_size)
        return landmarks, presence.reshape(-1), handedness.reshape(-1)


class HandTracker:
    """Callable stage: image (3, H, W) float RGB [0, 1] -> Hands, tracking hands between calls.

    config: keys of `occlusion.hands` in config/occface.yaml (missing ones take the YAML's values).
    Call `reset()` between unrelated images.
    `palm_detections` counts the palm-detector runs (for diagnostics and tests).
    """

    def __init__(self, config: dict | None = None, backend: str = "eager", device="cpu", precision: str = "fp32",
                 timer: StageTimer | None = None):
        defaults = load_config()["occlusion"]["hands"]
        unknown = set(config or {}) - set(defaults)
        if unknown:
            raise ValueError(f"unknown hand config keys {sorted(unknown)}; known: {sorted(defaults)}")
        self.config = {**defaults, **(config or {})}
        self.enabled = bool(self.config["enabled"])
        self.min_score = float(self.config["min_score"])
        self.presence_threshold = float(self.config["presence_threshold"])
        self.redetect_every = int(self.config["redetect_every"])
        self.max_hands = int(self.config["max_hands"])
        self.idle_detect_every = max(1, int(self.config["idle_detect_every"]))
        self.device = torch.device(device)
        self.timer = timer or StageTimer()
        self.palm_detector = self.landmarker = None
        if self.enabled:
            palms = nets.load_detector("palm_detector", backend=backend, device=device, precision=precision)
            self.palm_detector = SsdDetector(palms, min_score=self.min_score, nms_iou=PALM_NMS_IOU)
            self.landmarker = HandLandmarker(nets.load_network("hand_landmarks", backend=backend, device=device,
                                                                max_batch=max(1, self.max_hands), precision=precision))
        self.palm_detections = 0
        self.reset()

    def reset(self) -> None:
        """Forget tracked hands (the next call runs the palm detector)."""
        self.rois = torch.zeros(0, 4, device=self.device)
        self.frames_since_detect = 1 << 30  # the first call detects

    def _needs_detection(self) -> bool:
        n = self.rois.shape[0]
        if n == 0:
            return self.frames_since_detect >= self.idle_detect_every - 1
        if n >= self.max_hands:
            return False
        return self.redetect_every > 0 and self.frames_since_detect >= self.redetect_every

    def detect_palms(self, image: torch.Tensor) -> torch.Tensor:
        """Hand ROIs (N, 4) from the palm detector, best first."""
        with self.timer("hand_detection"):
            self.palm_detections += 1
            return rois_from_palms(self.palm_detector(image))

    @torch.inference_mode()
    def __call__(self, image: torch.Tensor) -> Hands:
        """Hands in one frame (3, H, W) float RGB in [0, 1]."""
        if not self.enabled or self.max_hands <= 0:
            return Hands.empty(image.device, image.dtype)
        detected = self._needs_detection()
        hands, lost = self._step(image, detected)
        if lost and not detected:
            # a tracked hand was lost: look for hands again in this frame rather than one frame late
            hands, _ = self._step(image, True)
        return hands

    def _step(self, image: torch.Tensor, detect: bool) -> tuple[Hands, bool]:
        rois = self.rois
        if detect:
            self.frames_since_detect = 0
            palm_rois = admit_detections(rois, self.detect_palms(image), MERGE_IOU, self.max_hands - rois.shape[0])
            rois = torch.cat([rois, palm_rois])
        else:
            self.frames_since_detect += 1
        if rois.shape[0] == 0:
            self.rois = rois
            return Hands.empty(image.device, image.dtype), False
        with self.timer("hand_landmarks"):
            landmarks, presence, handedness = self.landmarker(image, rois)
        alive = presence >= self.presence_threshold
        landmarks, presence, handedness = landmarks[alive], presence[alive], handedness[alive]
        lost = bool(alive[: self.rois.shape[0]].logical_not().any()) if self.rois.shape[0] else False
        with self.timer("hand_tracking"):
            next_rois = rois_from_hand_landmarks(landmarks)
            keep = distinct_tracks(next_rois, MERGE_IOU)
            if not bool(keep.all()):
                landmarks, presence, handedness = landmarks[keep], presence[keep], handedness[keep]
                next_rois = next_rois[keep]
        self.rois = next_rois
        return Hands(landmarks, presence, handedness), lost
