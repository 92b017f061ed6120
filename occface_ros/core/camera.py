"""Camera model and head-pose conventions (ROS-free).

Camera frame: the OpenCV / ROS *optical* frame: x right, y down, z forward (into the scene),
metres. Image coordinates: pixels, x right, y down, 0-based with integer values at pixel
centres (OpenCV); ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.

Model space (``MorphableModel``): x right (as seen by a viewer facing the face, i.e. the
person's left), y up, z towards the viewer (the face looks along +z), metres.

Pose: ``p_cam = rotation @ p_model + translation_m``.
- ``rotation`` (3, 3): model space -> camera frame. It *includes* the fixed flip between the
  two spaces, so a face looking straight into the camera, upright, has
  ``rotation == FRONTAL_ROTATION == diag(1, -1, -1)`` (a proper rotation: 180 deg about x).
- ``translation_m`` (3,): the model origin in camera coordinates, metres. For the ICT model
  the origin is inside the head, about 9.4 cm behind the landmarks' centre.

Head angles (``yaw_pitch_roll_deg``) are relative to the frontal pose, written in the
"viewer" frame V = (x image-right, y up, z towards the camera), which equals model space for
a frontal face: ``rotation = FRONTAL_ROTATION @ R_head`` with
``R_head = Ry(yaw) @ Rx(pitch) @ Rz(roll)`` (right-handed rotations about V's axes, applied
roll first). Consequently, with the head frame = model space (x = person's left, y up,
z = facing direction), the angles match ROS REP-103 yaw/pitch/roll of a head frame whose
x is forward, y left, z up:
- yaw   > 0: the face turns to its own left (the nose moves towards image right);
- pitch > 0: the face looks down (nose moves towards image bottom);
- roll  > 0: the head tilts towards its own right shoulder (counter-clockwise in the image).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .geometry import rotation_to_quaternion_xyzw  # noqa: F401  (re-exported for ROS users)

__all__ = [
    "FRONTAL_ROTATION",
    "intrinsics_from_fov",
    "intrinsics_from_values",
    "scale_intrinsics",
    "project_points",
    "camera_intrinsics",
    "transform_points",
    "yaw_pitch_roll_deg",
    "rotation_from_yaw_pitch_roll_deg",
    "rotation_to_quaternion_xyzw",
]

FRONTAL_ROTATION = torch.diag(torch.tensor([1.0, -1.0, -1.0]))


def intrinsics_from_fov(width: int, height: int, hfov_deg: float = 60.0, dtype=torch.float32) -> torch.Tensor:
    """K (3, 3) for square pixels, principal point at the image centre ((w-1)/2, (h-1)/2)."""
    if not (0.0 < hfov_deg < 180.0):
        raise ValueError(f"hfov_deg must be in (0, 180), got {hfov_deg}")
    f = 0.5 * width / math.tan(math.radians(hfov_deg) / 2.0)
    return intrinsics_from_values(f, f, (width - 1) / 2.0, (height - 1) / 2.0, dtype=dtype)


def intrinsics_from_values(fx: float, fy: float, cx: float, cy: float, dtype=torch.float32) -> torch.Tensor:
    """K (3, 3) from focal lengths and principal point in pixels."""
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=dtype)


def scale_intrinsics(K: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """K for an image resized by (sx, sy) (pixel-centre convention kept)."""
    out = K.clone()
    out[..., 0, 0] *= sx
    out[..., 1, 1] *= sy
    out[..., 0, 2] = (K[..., 0, 2] + 0.5) * sx - 0.5
    out[..., 1, 2] = (K[..., 1, 2] + 0.5) * sy - 0.5
    return out


def transform_points(rotation: torch.Tensor, translation_m: torch.Tensor, points_model: torch.Tensor) -> torch.Tensor:
    """Model-space points (B, N, 3) -> camera frame (B, N, 3): ``R p + t``."""
    return points_model @ rotation.transpose(-1, -2) + translation_m.unsqueeze(-2)


def camera_intrinsics(camera: dict, camera_matrix: np.ndarray | None, width: int, height: int) -> torch.Tensor:
    """K (3, 3) for a frame: the camera's own matrix (e.g. from CameraInfo) when given, else
    config/occface.yaml's `camera` intrinsics when all are set, else its `hfov_deg`."""
    if camera_matrix is not None:
        k = np.asarray(camera_matrix, dtype=np.float64)
        return intrinsics_from_values(k[0, 0], k[1, 1], k[0, 2], k[1, 2])
    if camera["fx"] is not None:
        return intrinsics_from_values(camera["fx"], camera["fy"], camera["cx"], camera["cy"])
    return intrinsics_from_fov(width, height, camera["hfov_deg"])


def project_points(points_cam: torch.Tensor, K: torch.Tensor, min_depth_m: float | None = 1e-6) -> torch.Tensor:
    """Pinhole projection of camera-frame points (..., N, 3) with K (..., 3, 3) -> pixels (..., N, 2).
    Depths are clamped to at least `min_depth_m` (None: not clamped, for points known in front)."""
    z = points_cam[..., 2:3] if min_depth_m is None else points_cam[..., 2:3].clamp_min(min_depth_m)
    xy = points_cam[..., :2] / z
    f = torch.stack((K[..., 0, 0], K[..., 1, 1]), -1).unsqueeze(-2)
    c = torch.stack((K[..., 0, 2], K[..., 1, 2]), -1).unsqueeze(-2)
    return xy * f + c


def _axis_rot(angle: torch.Tensor, axis: int) -> torch.Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    o, i = torch.zeros_like(angle), torch.ones_like(angle)
    if axis == 0:
        rows = ((i, o, o), (o, c, -s), (o, s, c))
    elif axis == 1:
        rows = ((c, o, s), (o, i, o), (-s, o, c))
    else:
        rows = ((c, -s, o), (s, c, o), (o, o, i))
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def rotation_from_yaw_pitch_roll_deg(yaw, pitch, roll, dtype=torch.float32) -> torch.Tensor:
    """Inverse of ``yaw_pitch_roll_deg``: angles (...,) in degrees -> ``rotation`` (..., 3, 3)."""
    y, p, r = (torch.deg2rad(torch.as_tensor(a, dtype=dtype)) for a in (yaw, pitch, roll))
    y, p, r = torch.broadcast_tensors(y, p, r)
    head = _axis_rot(y, 1) @ _axis_rot(p, 0) @ _axis_rot(r, 2)
    return FRONTAL_ROTATION.to(dtype) @ head


def yaw_pitch_roll_deg(rotation):
    """``rotation`` (..., 3, 3) (model -> camera) -> (..., 3) = (yaw, pitch, roll) in degrees.

    See the module docstring for the convention (relative to the frontal pose, ROS-like signs).
    pitch is in [-90, 90]; yaw and roll in (-180, 180]. Accepts numpy (returns numpy) or torch.
    """
    was_np = isinstance(rotation, np.ndarray)
    r = torch.from_numpy(np.asarray(rotation, dtype=np.float64)) if was_np else rotation
    head = FRONTAL_ROTATION.to(r.dtype).to(r.device) @ r  # FRONTAL_ROTATION is its own inverse
    pitch = torch.asin((-head[..., 1, 2]).clamp(-1.0, 1.0))
    yaw = torch.atan2(head[..., 0, 2], head[..., 2, 2])
    roll = torch.atan2(head[..., 1, 0], head[..., 1, 1])
    out = torch.rad2deg(torch.stack((yaw, pitch, roll), -1))
    return out.numpy() if was_np else out
