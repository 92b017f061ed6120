"""The landmark stage as configured (`landmarks.model`): FaceMesh, occnet, or FaceMesh with occnet
where FaceMesh gives up (FallbackLandmarker)."""
from __future__ import annotations

import torch

from .. import nets
from .facemesh import FaceLandmarker, FallbackLandmarker
from .occnet import load_occnet


def build_landmarker(landmarks_config: dict, backend: str, device: torch.device, max_faces: int,
                     precision: str) -> FaceLandmarker | FallbackLandmarker:
    """The landmarker of config section `landmarks` behind `backend`, for batches of up to `max_faces`."""
    model, roi_scale = landmarks_config["model"], landmarks_config["roi_scale"]
    occnet = facemesh = None
    if "occnet" in model:
        occnet = FaceLandmarker(nets.make_runner(load_occnet(landmarks_config["weights"]), backend, device, max_faces,
                                                 precision), roi_scale)
    if "facemesh" in model:
        facemesh = FaceLandmarker(nets.load_network("face_landmarks", backend=backend, device=device,
                                                    max_batch=max_faces, precision=precision), roi_scale)
    if facemesh is not None and occnet is not None:
        return FallbackLandmarker(facemesh, occnet, landmarks_config["presence_threshold"])
    return facemesh or occnet
