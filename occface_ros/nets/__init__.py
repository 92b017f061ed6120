"""MediaPipe's Apache-2.0 .tflite networks converted to PyTorch by our own converter.

Public API
----------
load_network(name, backend="eager", device="cpu", max_batch=1, precision="fp32", strict=False) -> Runner
    name: "face_detector_short" | "face_detector_full" | "face_landmarks" |
          "palm_detector" | "hand_landmarks" (+ "palm_detector_lite", "hand_landmarks_lite").
    runner(x) with x (B, 3, H, W) float32 RGB in [0, 1] on runner.device, H, W = runner.input_size;
    any B (compiled backends are built for 1..max_batch and split larger batches). Outputs (tuples):
      detectors:      raw_boxes (B, N, 4+2K), raw_scores (B, N)  -> decode with Detector
      face_landmarks: landmarks (B, 468, 3) input pixels, presence_logit (B,), presence (B,)
      hand_landmarks: landmarks (B, 21, 3) input pixels, presence (B,), handedness (B,),
                      world_landmarks (B, 21, 3)
    max_batch: the most images per call (faces: detection.max_faces, hands: occlusion.hands.max_hands).
    An unavailable backend falls back with one warning line unless strict=True (see .runners).
load_detector(name, backend="eager", device="cpu", max_batch=1, precision="fp32", strict=False) -> Detector
    Detector(images) -> scores (B, N), boxes (B, N, 4) normalized x0,y0,x1,y1,
                        keypoints (B, N, K, 2) normalized; Detector.decode(raw_boxes, raw_scores).
make_runner(module, backend, device, max_batch, precision, strict) -> Runner   (see .runners)

The ROS-free core: nothing here imports rclpy or mediapipe.
"""
from __future__ import annotations

import torch

from .runners import BACKENDS, PARITY_BOUND, PRECISIONS, BackendUnavailable, Runner, make_runner
from .models import MODELS, Detector, build_network, load_core, ssd_anchors, weights_cache_path

__all__ = [
    "BACKENDS",
    "BackendUnavailable",
    "PARITY_BOUND",
    "PRECISIONS",
    "Detector",
    "MODELS",
    "NETWORK_NAMES",
    "build_network",
    "example_input",
    "load_core",
    "load_detector",
    "load_network",
    "make_runner",
    "Runner",
    "ssd_anchors",
    "weights_cache_path",
]

NETWORK_NAMES = ("face_detector_short", "face_detector_full", "face_landmarks", "palm_detector", "hand_landmarks")


def example_input(name: str, batch: int = 1, device="cpu") -> torch.Tensor:
    h, w = MODELS[name].input_size
    return torch.rand(batch, 3, h, w, device=device)


def load_network(name: str, backend: str = "eager", device="cpu", max_batch: int = 1, precision: str = "fp32",
                 strict: bool = False) -> Runner:
    """Converted network `name` on `device` as a Runner for batches of 1..max_batch (see .runners)."""
    return make_runner(build_network(name), backend, device, max_batch, precision, strict)


def load_detector(name: str = "face_detector_short", backend: str = "eager", device="cpu", max_batch: int = 1,
                  precision: str = "fp32", strict: bool = False) -> Detector:
    """Detector (network Runner + SSD anchors + decoding) for a detector network name."""
    if MODELS[name].kind != "detector":
        raise ValueError(f"{name!r} is not a detector")
    runner = load_network(name, backend, device, max_batch, precision, strict)
    return Detector(name, runner, device=runner.device)
