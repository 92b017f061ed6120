"""Smoothing stage: one track's fit and landmarks, smoothed in time, as the FaceResult published."""
from __future__ import annotations

import numpy as np
import torch

from ..contracts import FaceResult, TrackedFaces, TrackState
from ..core.camera import yaw_pitch_roll_deg
from ..fitting.fitter import FitState


def _numpy(t) -> np.ndarray:
    return torch.as_tensor(t).detach().cpu().numpy().astype(np.float64)


def smoothed_face(faces: TrackedFaces, i: int, fit: FitState, landmarks68: torch.Tensor, landmarks68_visible: torch.Tensor,
                  state: TrackState, timestamp_s: float) -> FaceResult:
    """Face i of the frame: its track's filters applied to landmarks, pose and expression."""
    sm = state.smoother(timestamp_s, landmarks68=landmarks68, rotation=fit.rotation[i],
                        translation_m=fit.translation_m[i], expression=fit.expression[i])
    rotation = torch.as_tensor(sm.rotation)  # the smoother passes the fit through when disabled
    yaw, pitch, roll = (float(v) for v in yaw_pitch_roll_deg(rotation.unsqueeze(0))[0])
    face = FaceResult(
        track_id=faces.track_ids[i],
        score=float(faces.presence[i]),
        bbox=_numpy(state.bbox),
        landmarks68=_numpy(sm.landmarks68),
        landmarks68_visible=landmarks68_visible.cpu().numpy(),
        landmarks468=faces.landmarks468[i].cpu().numpy(),
        rotation=_numpy(rotation),
        translation_m=_numpy(sm.translation_m),
        yaw_deg=yaw, pitch_deg=pitch, roll_deg=roll,
        expression=np.clip(_numpy(sm.expression), 0.0, 1.0),
        identity=_numpy(state.identity.mean),
        reprojection_error_px=float(fit.reprojection_error_px[i]),
    )
    if state.occlusion is not None:
        face.occlusion_ratio = state.occlusion.ratio
        face.occlusion_by_region = state.occlusion.ratio_by_region
        face.region_pixels = state.occlusion.pixels_by_region
    return face
