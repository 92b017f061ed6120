"""MediaPipe's Apache-2.0 .tflite networks converted to PyTorch by our own converter.

Public API
----------
load_network(name, backend="eager", device="cpu") -> module (callable)
    name: "face_detector_short" | "face_detector_full" | "face_landmarks" |
          "palm_detector" | "hand_landmarks" (+ "palm_detector_lite", "hand_landmarks_lite").
    Input: ONE static-shape tensor (B, 3, H, W) float32 RGB in [0, 1]; H, W = module.input_size.
    Outputs (tuples):
      detectors:      raw_boxes (B, N, 4+2K), raw_scores (B, N)  -> decode with Detector
      face_landmarks: landmarks (B, 468, 3) input pixels, presence_logit (B,), presence (B,)
      hand_landmarks: landmarks (B, 21, 3) input pixels, presence (B,), handedness (B,),
                      world_landmarks (B, 21, 3)
load_detector(name, backend="eager", device="cpu") -> Detector
    Detector(images) -> scores (B, N), boxes (B, N, 4) normalized x0,y0,x1,y1,
                        keypoints (B, N, K, 2) normalized; Detector.decode(raw_boxes, raw_scores).
compile_stage(module, example_input, backend) -> callable   (see .backends)

The ROS-free core: nothing here imports rclpy or mediapipe.
"""
from __future__ import annotations

import torch

from .backends import BACKENDS, BackendUnavailable, compile_stage
from .models import MODELS, Detector, build_network, load_core, ssd_anchors, weights_cache_path

__all__ = [
    "BACKENDS",
    "BackendUnavailable",
    "Detector",
    "MODELS",
    "NETWORK_NAMES",
    "build_network",
    "compile_stage",
    "example_input",
    "load_core",
    "load_detector",
    "load_network",
    "ssd_anchors",
    "weights_cache_path",
]

NETWORK_NAMES = ("face_detector_short", "face_detector_full", "face_landmarks", "palm_detector", "hand_landmarks")


def example_input(name: str, batch: int = 1, device="cpu") -> torch.Tensor:
    h, w = MODELS[name].input_size
    return torch.rand(batch, 3, h, w, device=device)


def load_network(name: str, backend: str = "eager", device="cpu", batch: int = 1):
    """Converted network `name` prepared with `backend` for static input (batch, 3, H, W)."""
    net = build_network(name).to(device)
    return compile_stage(net, example_input(name, batch, device), backend)


def load_detector(name: str = "face_detector_short", backend: str = "eager", device="cpu", batch: int = 1) -> Detector:
    """Detector (network + SSD anchors + decoding) for a detector network name."""
    if MODELS[name].kind != "detector":
        raise ValueError(f"{name!r} is not a detector")
    return Detector(name, load_network(name, backend, device, batch), device=device)
