"""Hands: MediaPipe's palm detector + 21 hand landmarks, tracked between frames, and a hand silhouette mask.

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

`hand_mask(hands, height, width)` draws the hand silhouette: one capsule (segment + radius) per bone,
radii relative to the palm size, plus the palm (triangle fan from the wrist through the thumb base
and the finger MCPs), the area enclosed by bent fingers, the gaps between touching fingers and a
wrist capsule.

Handedness: the network's raw output p, which MediaPipe labels "Left" because it assumes mirrored
(selfie) input; for an un-mirrored camera image p is the probability of the subject's RIGHT hand.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .detection import Detections, FaceDetector
from .roi import box_iou, crop_rois, crop_to_image, roi_from_points, rois_to_boxes
from .timing import StageTimer

WRIST = 0
THUMB_CMC, THUMB_MCP = 1, 2
INDEX_MCP, MIDDLE_MCP, RING_MCP, PINKY_MCP = 5, 9, 13, 17

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

DEFAULT_CONFIG: dict = {
    "enabled": True,
    "min_score": 0.5,  # palm detection score threshold (MediaPipe min_detection_confidence)
    "presence_threshold": 0.5,  # hand presence to keep a hand (MediaPipe min_tracking_confidence)
    "redetect_every": 10,  # frames between palm detections while fewer than max_hands are tracked
    "idle_detect_every": 3,  # frames between palm detections while NO hand is tracked (1 = every frame)
    "max_hands": 2,
}


@dataclass
class Hands:
    landmarks21: torch.Tensor  # (N, 21, 3) image pixels (x, y); z relative depth in pixels (wrist-relative)
    score: torch.Tensor  # (N,) hand-presence probability
    handedness: torch.Tensor  # (N,) probability that it is the subject's RIGHT hand in an un-mirrored image

    def __len__(self) -> int:
        return int(self.score.shape[0])

    @staticmethod
    def empty(device=None, dtype=torch.float32) -> Hands:
        z = torch.zeros(0, device=device, dtype=dtype)
        return Hands(torch.zeros(0, 21, 3, device=device, dtype=dtype), z, z.clone())


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


class HandDetector:
    """Callable stage: image (3, H, W) float RGB [0, 1] -> Hands, tracking hands between calls.

    config keys (missing ones take DEFAULT_CONFIG's values): enabled, min_score, presence_threshold,
    redetect_every, max_hands. Call `reset()` between unrelated images.
    `palm_detections` counts the palm-detector runs (for diagnostics and tests).
    """

    def __init__(self, config: dict | None = None, backend: str = "eager", device="cpu",
                 timer: StageTimer | None = None):
        from . import nets

        unknown = set(config or {}) - set(DEFAULT_CONFIG)
        if unknown:
            raise ValueError(f"unknown hand config keys {sorted(unknown)}; known: {sorted(DEFAULT_CONFIG)}")
        self.config = {**DEFAULT_CONFIG, **(config or {})}
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
            self.palm_detector = FaceDetector(nets.load_detector("palm_detector", backend=backend, device=device),
                                              min_score=self.min_score, nms_iou=PALM_NMS_IOU)
            self.landmarker = HandLandmarker(nets.load_network("hand_landmarks", backend=backend, device=device))
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
            palm_rois = self.detect_palms(image)
            if rois.shape[0] and palm_rois.shape[0]:
                overlap = box_iou(rois_to_boxes(palm_rois), rois_to_boxes(rois)).amax(1)
                palm_rois = palm_rois[overlap < MERGE_IOU]
            rois = torch.cat([rois, palm_rois[: self.max_hands - rois.shape[0]]])
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
            if next_rois.shape[0] > 1:  # two tracks on one hand: the older one (listed first) wins
                iou = box_iou(rois_to_boxes(next_rois), rois_to_boxes(next_rois))
                keep = ~torch.triu(iou > MERGE_IOU, diagonal=1).any(0)
                landmarks, presence, handedness = landmarks[keep], presence[keep], handedness[keep]
                next_rois = next_rois[keep]
        self.rois = next_rois
        return Hands(landmarks, presence, handedness), lost


# ----------------------------------------------------------------------------- silhouette mask
# Shape sizes are fractions of the palm size (palm_size_px). Adult hands: palm length ~10 cm,
# finger breadth ~2 cm (radius ~0.1), knuckle span index->pinky MCP ~6.5 cm, wrist breadth ~6 cm.

# The 20 bones: landmark i (1..20) and its parent, with a capsule radius each.
BONE_PARENTS = (0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)
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
FINGERS = ((5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))  # MCP, PIP, DIP, tip
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
