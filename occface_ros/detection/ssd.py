"""Detection stage: MediaPipe's SSD detectors (BlazeFace for faces, the palm detector for hands):
letterbox, network, decode, weighted NMS; face ROIs for the landmark stage."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.roi import box_iou, crop_rois


@dataclass
class Detections:
    scores: torch.Tensor  # (N,)
    boxes: torch.Tensor  # (N, 4) x0, y0, x1, y1 in image pixels
    keypoints: torch.Tensor  # (N, K, 2) image pixels; faces: right eye, left eye, nose, mouth, right ear, left ear

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def weighted_nms(scores: torch.Tensor, boxes: torch.Tensor, keypoints: torch.Tensor, iou: float) -> Detections:
    """MediaPipe's blending NMS: overlapping candidates are averaged, weighted by score.

    Loops over the (few) surviving clusters, not over anchors or pixels.
    """
    order = torch.argsort(scores, descending=True)
    scores, boxes, keypoints = scores[order], boxes[order], keypoints[order]
    remaining = torch.ones_like(scores, dtype=torch.bool)
    ious = box_iou(boxes, boxes)
    out_s, out_b, out_k = [], [], []
    while bool(remaining.any()):
        first = int(torch.nonzero(remaining)[0])
        cluster = remaining & (ious[first] > iou)
        cluster[first] = True
        w = scores[cluster]
        wn = (w / w.sum()).view(-1, 1)
        out_s.append(scores[first])
        out_b.append((boxes[cluster] * wn).sum(0))
        out_k.append((keypoints[cluster] * wn.view(-1, 1, 1)).sum(0))
        remaining &= ~cluster
    if not out_s:
        return Detections(scores.new_zeros(0), boxes.new_zeros(0, 4), keypoints.new_zeros(0, *keypoints.shape[1:]))
    return Detections(torch.stack(out_s), torch.stack(out_b), torch.stack(out_k))


class SsdDetector:
    """Image (3, H, W) float in [0, 1] -> Detections in image pixels (faces or palms, by network)."""

    def __init__(self, detector, min_score: float = 0.5, nms_iou: float = 0.3):
        self.detector = detector  # occface_ros.nets detector: net + anchors + decode
        self.input_size = tuple(detector.input_size)
        self.min_score = min_score
        self.nms_iou = nms_iou

    def letterbox_roi(self, height: int, width: int, device, dtype) -> torch.Tensor:
        side = float(max(height, width))
        return torch.tensor([[(width - 1) / 2.0, (height - 1) / 2.0, side, 0.0]], device=device, dtype=dtype)

    @torch.inference_mode()
    def __call__(self, image: torch.Tensor) -> Detections:
        _, height, width = image.shape
        roi = self.letterbox_roi(height, width, image.device, image.dtype)
        net_in = crop_rois(image, roi, self.input_size)
        scores, boxes, keypoints = self.detector(net_in)  # normalised to the letterboxed square
        scores, boxes, keypoints = scores[0], boxes[0], keypoints[0]
        keep = scores >= self.min_score
        side = roi[0, 2]
        origin = roi[0, :2] - 0.5 * side
        to_px = lambda p: p * side + origin  # noqa: E731
        boxes = to_px(boxes[keep].view(-1, 2, 2)).view(-1, 4)
        keypoints = to_px(keypoints[keep])
        return weighted_nms(scores[keep], boxes, keypoints, self.nms_iou)


def rois_from_detections(det: Detections, scale: float = 1.5) -> torch.Tensor:
    """Rotated ROIs (N, 4) for FaceMesh from detections, as MediaPipe's face_detection_front_detection_to_roi:
    centre of the box, angle from the right-eye -> left-eye keypoints, square side = box width * scale."""
    delta = det.keypoints[:, 1] - det.keypoints[:, 0]
    angle = torch.atan2(delta[:, 1], delta[:, 0])
    centre = 0.5 * (det.boxes[:, :2] + det.boxes[:, 2:])
    size = torch.maximum(det.boxes[:, 2] - det.boxes[:, 0], det.boxes[:, 3] - det.boxes[:, 1]) * scale
    return torch.stack([centre[:, 0], centre[:, 1], size, angle], -1)
