"""Helpers for the ROS tests and `occface bench-ros`: loopback-only DDS, a stand-in pipeline, collectors.

Loopback only: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, a random ROS_DOMAIN_ID and a Fast DDS
profile whose only transports are UDPv4 on 127.0.0.1 (discovery and small data; 4 MiB socket
buffers) and shared memory (host-local, no network interface; what carries the images between
processes: best-effort 1 MB images as ~15 UDP fragments are easily lost).
"""
from __future__ import annotations

import os
import random
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FASTDDS_LOOPBACK_XML = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>udp_loopback</transport_id>
        <type>UDPv4</type>
        <interfaceWhiteList><address>127.0.0.1</address></interfaceWhiteList>
        <sendBufferSize>4194304</sendBufferSize>
        <receiveBufferSize>4194304</receiveBufferSize>
      </transport_descriptor>
      <transport_descriptor>
        <transport_id>shm_local</transport_id>
        <type>SHM</type>
        <segment_size>8388608</segment_size>
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="occface_loopback_only" is_default_profile="true">
      <rtps>
        <userTransports>
          <transport_id>shm_local</transport_id>
          <transport_id>udp_loopback</transport_id>
        </userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>
      </rtps>
    </participant>
  </profiles>
</dds>
"""


def loopback_env(domain_id: int | None = None, folder: str | Path | None = None) -> dict[str, str]:
    """Environment variables that keep DDS on 127.0.0.1 in a (random) domain; also applied to os.environ."""
    folder = Path(folder or tempfile.mkdtemp(prefix="occface_dds."))
    profile = folder / "fastdds_loopback.xml"
    profile.write_text(FASTDDS_LOOPBACK_XML)
    env = {
        "ROS_DOMAIN_ID": str(domain_id if domain_id is not None else random.randint(1, 101)),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_LOCALHOST_ONLY": "0",  # deprecated in Kilted; the range above replaces it
        "FASTDDS_DEFAULT_PROFILES_FILE": str(profile),
        "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
    }
    os.environ.update(env)
    return env


# ------------------------------------------------------------------------------ stand-in pipeline
@dataclass
class FakeFace:
    track_id: int
    score: float
    bbox: np.ndarray
    landmarks68: np.ndarray
    landmarks68_visible: np.ndarray
    landmarks468: np.ndarray
    rotation: np.ndarray
    translation_m: np.ndarray
    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    expression: np.ndarray
    identity: np.ndarray
    occlusion_ratio: float = 0.0
    reprojection_error_px: float = 0.0


@dataclass
class FakeFrame:
    faces: list
    width: int
    height: int
    timestamp_s: float
    lost_track_ids: list = field(default_factory=list)
    stage_ms: dict = field(default_factory=dict)


class _FakeModel:
    def __init__(self, n: int = 16):
        self.expression_names = [f"expr_{k}" for k in range(5)]
        g = np.arange(n * n).reshape(n, n)
        a, b, c, d = g[:-1, :-1].ravel(), g[:-1, 1:].ravel(), g[1:, :-1].ravel(), g[1:, 1:].ravel()
        self.triangles = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])
        u, v = np.meshgrid(np.linspace(-0.07, 0.07, n), np.linspace(-0.09, 0.09, n))
        self.vertices = np.stack([u.ravel(), v.ravel(), -0.02 * np.cos(u.ravel() * 20)], 1)


def _template68() -> np.ndarray:
    """A plausible 68-point layout in a unit box (x right, y down), for the stand-in pipeline."""
    t = np.linspace(-1, 1, 17)
    jaw = np.stack([0.5 + 0.48 * t, 0.45 + 0.5 * np.sqrt(1 - 0.8 * t ** 2)], 1)
    brow_r = np.stack([np.linspace(0.15, 0.42, 5), 0.3 - 0.04 * np.sin(np.linspace(0, np.pi, 5))], 1)
    brow_l = brow_r.copy(); brow_l[:, 0] = 1 - brow_r[::-1, 0]; brow_l[:, 1] = brow_r[::-1, 1]
    bridge = np.stack([np.full(4, 0.5), np.linspace(0.38, 0.58, 4)], 1)
    nose = np.stack([np.linspace(0.42, 0.58, 5), 0.63 + 0.02 * np.sin(np.linspace(0, np.pi, 5))], 1)
    ang = np.linspace(np.pi, -np.pi, 6, endpoint=False)
    eye_r = np.stack([0.31 + 0.07 * np.cos(ang), 0.4 + 0.025 * np.sin(ang)], 1)
    eye_l = eye_r.copy(); eye_l[:, 0] += 0.38
    a12 = np.linspace(np.pi, -np.pi, 12, endpoint=False)
    lips_o = np.stack([0.5 + 0.16 * np.cos(a12), 0.78 + 0.06 * np.sin(a12)], 1)
    a8 = np.linspace(np.pi, -np.pi, 8, endpoint=False)
    lips_i = np.stack([0.5 + 0.11 * np.cos(a8), 0.78 + 0.02 * np.sin(a8)], 1)
    return np.concatenate([jaw, brow_r, brow_l, bridge, nose, eye_r, eye_l, lips_o, lips_i])


class FakePipeline:
    """FacePipeline's interface without networks: one face centred in any image brighter than 10/255,
    none in darker ones (a track ends then). Deterministic and fast; used to test the ROS adapter."""

    def __init__(self, config: dict | None = None, camera_matrix=None, delay_s: float = 0.0):
        self.config = config or {"smoothing": {"enabled": True, "min_cutoff": 1.0, "beta": 0.05, "d_cutoff": 1.0}}
        self.camera_matrix = camera_matrix
        self.model = _FakeModel()
        self.delay_s = delay_s
        self.smoothing_calls: list[tuple[float, float, float]] = []
        self.processed: list[tuple[tuple[int, ...], float]] = []
        self.resets = 0
        self._track = None
        self._next_id = 1
        self._lock = threading.Lock()

    def set_smoothing(self, min_cutoff, beta, d_cutoff, noise_deadzone=None):
        self.config["smoothing"].update(min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff)
        if noise_deadzone is not None:
            self.config["smoothing"]["noise_deadzone"] = noise_deadzone
        self.smoothing_calls.append((min_cutoff, beta, d_cutoff))

    def reset(self):
        self.resets += 1
        self._track = None

    def intrinsics_matrix(self, w, h):
        if self.camera_matrix is not None:
            return np.asarray(self.camera_matrix, np.float64)
        f = w / (2 * np.tan(np.radians(30.0)))
        return np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])

    def process(self, image_bgr, timestamp_s):
        if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 BGR image, got {image_bgr.shape} {image_bgr.dtype}")
        if self.delay_s:
            time.sleep(self.delay_s)
        h, w = image_bgr.shape[:2]
        self.processed.append((image_bgr.shape, timestamp_s))
        lost = []
        if float(image_bgr.mean()) < 10:
            if self._track is not None:
                lost, self._track = [self._track], None
            return FakeFrame([], w, h, timestamp_s, lost, {"detect": 0.1})
        if self._track is None:
            self._track, self._next_id = self._next_id, self._next_id + 1
        side = 0.4 * min(w, h)
        x0, y0 = w / 2 - side / 2, h / 2 - side / 2
        lm = _template68() * side + [x0, y0]
        K = self.intrinsics_matrix(w, h)
        z = K[0, 0] * 0.15 / side
        trans = np.array([0.0, 0.0, z])
        face = FakeFace(
            track_id=self._track, score=0.9, bbox=np.array([x0, y0, x0 + side, y0 + side]), landmarks68=lm,
            landmarks68_visible=np.ones(68, bool), landmarks468=np.zeros((468, 3)), rotation=np.diag([1.0, 1.0, 1.0]),
            translation_m=trans, yaw_deg=0.0, pitch_deg=0.0, roll_deg=0.0,
            expression=np.linspace(0, 0.4, len(self.model.expression_names)), identity=np.zeros(10),
            occlusion_ratio=0.0, reprojection_error_px=1.5)
        return FakeFrame([face], w, h, timestamp_s, lost, {"detect": 1.0, "landmarks": 2.0, "fit": 3.0})

    def mesh_vertices(self, face):
        return self.model.vertices @ np.asarray(face.rotation).T + np.asarray(face.translation_m)

    def project(self, points, w, h):
        K = self.intrinsics_matrix(w, h)
        p = np.asarray(points) @ K.T
        return p[:, :2] / np.maximum(p[:, 2:3], 1e-6)


# ------------------------------------------------------------------------------ collecting messages
class Collector:
    """Subscribes to topics on a node and keeps (message, receipt wall time) per topic."""

    def __init__(self, node, topics: dict[str, tuple[type, object]]):
        self.node = node
        self.messages: dict[str, list] = {t: [] for t in topics}
        self.cond = threading.Condition()
        self.subs = [node.create_subscription(typ, topic, self._cb(topic), qos) for topic, (typ, qos) in topics.items()]

    def _cb(self, topic):
        def cb(msg):
            with self.cond:
                self.messages[topic].append((msg, time.time()))
                self.cond.notify_all()
        return cb

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.1))
        return True

    def clear(self):
        with self.cond:
            for v in self.messages.values():
                v.clear()
