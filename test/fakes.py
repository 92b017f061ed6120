"""`FakePipeline`: a FacePipelineLike (occface_ros/ros/pipeline_protocol.py) without networks, for the ROS
adapter's tests. Not part of the package."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from occface_ros.morphable.model import MorphableModel
from occface_ros.contracts import FaceResult, FrameResult

FAKE_EXPRESSIONS = 5
FAKE_IDENTITY = 10
HFOV_DEG = 60.0


def grid_model(n: int = 16) -> MorphableModel:
    """A MorphableModel of an n x n vertex sheet 14 x 18 cm, gently curved; bases all zero."""
    g = np.arange(n * n).reshape(n, n)
    a, b, c, d = g[:-1, :-1].ravel(), g[:-1, 1:].ravel(), g[1:, :-1].ravel(), g[1:, 1:].ravel()
    triangles = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])
    u, v = np.meshgrid(np.linspace(-0.07, 0.07, n), np.linspace(-0.09, 0.09, n))
    mean = np.stack([u.ravel(), v.ravel(), -0.02 * np.cos(u.ravel() * 20)], 1)
    return MorphableModel(
        name="fake_grid", mean_m=torch.tensor(mean, dtype=torch.float32),
        identity_basis_m=torch.zeros(FAKE_IDENTITY, n * n, 3),
        expression_basis_m=torch.zeros(FAKE_EXPRESSIONS, n * n, 3),
        expression_names=[f"expr_{k}" for k in range(FAKE_EXPRESSIONS)], expression_bounds=(0.0, 1.0),
        triangles=torch.tensor(triangles, dtype=torch.int64), landmarks68=torch.arange(68))


def template68() -> np.ndarray:
    """A plausible 68-point layout in a unit box (x right, y down)."""
    t = np.linspace(-1, 1, 17)
    jaw = np.stack([0.5 + 0.48 * t, 0.45 + 0.5 * np.sqrt(1 - 0.8 * t ** 2)], 1)
    brow_r = np.stack([np.linspace(0.15, 0.42, 5), 0.3 - 0.04 * np.sin(np.linspace(0, np.pi, 5))], 1)
    brow_l = np.stack([1 - brow_r[::-1, 0], brow_r[::-1, 1]], 1)
    bridge = np.stack([np.full(4, 0.5), np.linspace(0.38, 0.58, 4)], 1)
    nose = np.stack([np.linspace(0.42, 0.58, 5), 0.63 + 0.02 * np.sin(np.linspace(0, np.pi, 5))], 1)
    ang = np.linspace(np.pi, -np.pi, 6, endpoint=False)
    eye_r = np.stack([0.31 + 0.07 * np.cos(ang), 0.4 + 0.025 * np.sin(ang)], 1)
    eye_l = eye_r + [0.38, 0.0]
    a12 = np.linspace(np.pi, -np.pi, 12, endpoint=False)
    lips_o = np.stack([0.5 + 0.16 * np.cos(a12), 0.78 + 0.06 * np.sin(a12)], 1)
    a8 = np.linspace(np.pi, -np.pi, 8, endpoint=False)
    lips_i = np.stack([0.5 + 0.11 * np.cos(a8), 0.78 + 0.02 * np.sin(a8)], 1)
    return np.concatenate([jaw, brow_r, brow_l, bridge, nose, eye_r, eye_l, lips_o, lips_i])


@dataclass
class SmoothingCall:
    min_cutoff: float
    beta: float
    d_cutoff: float
    noise_deadzone: float | None
    enabled: bool | None


class FakePipeline:
    """FacePipelineLike without networks: one face centred in any image brighter than 10/255, none in
    darker ones (its track ends then; the next bright image starts a new one). Records what the ROS
    layer asked of it (frames, smoothing, camera matrices, resets). `delay_s` slows process() down;
    `fail_next` (an exception) makes the next process() raise it after the track was already updated,
    as a frame failing partway would."""

    def __init__(self, config: dict | None = None, camera_matrix: np.ndarray | None = None, delay_s: float = 0.0):
        self.config = config
        self.model = grid_model()
        self.camera_matrix = None if camera_matrix is None else np.asarray(camera_matrix, np.float64)
        self.delay_s = delay_s
        self.smoothing_calls: list[SmoothingCall] = []
        self.camera_matrices: list[np.ndarray | None] = []
        self.processed: list[tuple[tuple[int, ...], float]] = []  # (image shape, timestamp_s)
        self.resets = 0
        self.fail_next: Exception | None = None
        self.closed = False
        self._track: int | None = None
        self._next_id = 1
        self._lock = threading.Lock()

    @property
    def occlusion_enabled(self) -> bool:
        return False

    def set_camera_matrix(self, camera_matrix: np.ndarray | None) -> None:
        self.camera_matrix = None if camera_matrix is None else np.asarray(camera_matrix, np.float64)
        self.camera_matrices.append(self.camera_matrix)

    def set_smoothing(self, min_cutoff, beta, d_cutoff, noise_deadzone=None, enabled=None) -> None:
        self.smoothing_calls.append(SmoothingCall(min_cutoff, beta, d_cutoff, noise_deadzone, enabled))

    def reset(self) -> None:
        self.resets += 1
        self._track = None

    def close(self) -> None:
        self.closed = True

    def set_maps_listener(self, listener) -> bool:
        """No occlusion reasoning: the maps (none) come on FrameResult."""
        return False

    def intrinsics(self, width: int, height: int) -> np.ndarray:
        if self.camera_matrix is not None:
            return self.camera_matrix
        f = width / (2 * np.tan(np.radians(HFOV_DEG / 2)))
        return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])

    def process(self, image_bgr: np.ndarray, timestamp_s: float) -> FrameResult:
        if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 BGR image, got {image_bgr.shape} {image_bgr.dtype}")
        if self.delay_s:
            time.sleep(self.delay_s)
        h, w = image_bgr.shape[:2]
        with self._lock:
            self.processed.append((image_bgr.shape, timestamp_s))
        if float(image_bgr.mean()) < 10:
            lost = [] if self._track is None else [self._track]
            self._track = None
            return FrameResult([], w, h, timestamp_s, lost_track_ids=lost, stage_ms={"detection": 0.1})
        if self._track is None:
            self._track, self._next_id = self._next_id, self._next_id + 1
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        side = 0.4 * min(w, h)
        x0, y0 = w / 2 - side / 2, h / 2 - side / 2
        k = self.intrinsics(w, h)
        face = FaceResult(
            track_id=self._track, score=0.9, bbox=np.array([x0, y0, x0 + side, y0 + side]),
            landmarks68=template68() * side + [x0, y0], landmarks68_visible=np.ones(68, bool),
            landmarks468=np.zeros((468, 3)), rotation=np.eye(3),
            translation_m=np.array([0.0, 0.0, k[0, 0] * 0.15 / side]),  # a 15 cm face `side` px wide
            yaw_deg=0.0, pitch_deg=0.0, roll_deg=0.0, expression=np.linspace(0, 0.4, FAKE_EXPRESSIONS),
            identity=np.zeros(FAKE_IDENTITY), reprojection_error_px=1.5)
        return FrameResult([face], w, h, timestamp_s, stage_ms={"detection": 1.0, "landmarks": 2.0, "fit": 3.0})

    def mesh_vertices(self, face: FaceResult) -> np.ndarray:
        return self.model.mean_m.double().numpy() @ np.asarray(face.rotation).T + np.asarray(face.translation_m)

    def project(self, points_cam: np.ndarray, width: int, height: int) -> np.ndarray:
        p = np.asarray(points_cam) @ self.intrinsics(width, height).T
        return p[:, :2] / np.maximum(p[:, 2:3], 1e-6)
