"""`occface bench-ros`: the node under load, measured from outside (the ros2_benchmark method).

1. Starts occface-node as its own process (loopback-only DDS, random domain), waits until it
   answers, warms it up.
2. Fixed rate: publishes 640x480 frames of the demo clip (one face) at `rate_hz` (30) for
   `duration_s`, stamped with the wall clock at publication. For every output topic it records
   receipt wall time - header stamp (stamp-to-receipt latency) and reports p50/p99; a frame whose
   stamp never arrives on ~/faces counts as dropped.
3. Peak rate: the highest input rate with < 5% dropped frames, found by doubling from `rate_hz`
   and then bisecting (each trial `step_s` long).

Subscriptions are raw (serialized CDR): the stamps are read from the bytes, so the measuring side
does not deserialize images and 10k-point marker arrays and perturbs the node as little as possible.

`canned=True` (`--canned`) runs the node with `CannedPipeline` instead of FacePipeline: the same
outputs at no pipeline cost, so the figures are what the ROS layer itself costs (conversion,
message building, mesh LOD, DDS).
"""
from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from .loopback import loopback_env

NODE_SCRIPT = """
import sys
from occface_ros.ros.bench import CannedPipeline
from occface_ros.ros.node import main
sys.exit(main(pipeline_factory=CannedPipeline if {canned!r} else None))
"""
CANNED_DISTANCE_M = 0.6  # the canned face's distance from the camera (a person at a desk)


class CannedPipeline:
    """A FacePipelineLike (ros/pipeline_protocol.py) that replays one canned face on every frame.

    The face is the configured morphable model's mean shape, frontal, centred CANNED_DISTANCE_M in
    front of the camera: its landmarks, box and mesh are the model's own, so Face.msg, the landmark
    parsing, TF and the mesh markers (LOD of the real mesh) cost what they cost with FacePipeline
    (with occlusion reasoning off: all-zero masks), while detection, landmarks and the fit cost
    nothing. One track (id 1) that never ends.
    """

    def __init__(self, config: dict | None = None, camera_matrix: np.ndarray | None = None):
        from ..config import load_config
        from ..morphable import load_morphable_model

        cfg = load_config() if config is None else config
        self.model = load_morphable_model(cfg["model"]["name"], cfg["model"]["path"])
        self._mean_m = self.model.mean_m.double().numpy()  # (V, 3) model space, metres
        self._camera = dict(cfg["camera"])
        self._camera_matrix = None if camera_matrix is None else np.asarray(camera_matrix, np.float64)
        self._faces: dict[tuple, object] = {}  # (width, height, K bytes) -> FaceResult
        self.frames_processed = 0

    @property
    def occlusion_enabled(self) -> bool:
        return False

    def set_camera_matrix(self, camera_matrix: np.ndarray | None) -> None:
        self._camera_matrix = None if camera_matrix is None else np.asarray(camera_matrix, np.float64)

    def set_smoothing(self, min_cutoff, beta, d_cutoff, noise_deadzone=None, enabled=None) -> None:
        """Nothing to smooth: the face does not move."""

    def reset(self) -> None:
        """One canned track; nothing to forget."""

    def close(self) -> None:
        """No background work."""

    def set_maps_listener(self, listener) -> bool:
        """No occlusion reasoning: all-zero masks on every FrameResult."""
        return False

    def intrinsics(self, width: int, height: int) -> np.ndarray:
        """K (3, 3): camera_info's, else the config's fx..cy, else from camera.hfov_deg (as FacePipeline)."""
        from ..core.camera import intrinsics_from_fov, intrinsics_from_values

        cam = self._camera
        if self._camera_matrix is not None:
            return self._camera_matrix
        if cam["fx"] is not None:
            return intrinsics_from_values(cam["fx"], cam["fy"], cam["cx"], cam["cy"]).double().numpy()
        return intrinsics_from_fov(width, height, cam["hfov_deg"]).double().numpy()

    def process(self, image_bgr: np.ndarray, timestamp_s: float):
        from ..contracts import FrameResult

        h, w = image_bgr.shape[:2]
        k = self.intrinsics(w, h)
        key = (w, h, k.tobytes())
        face = self._faces.get(key)
        if face is None:
            face = self._faces[key] = self._canned_face(k)
        self.frames_processed += 1
        return FrameResult(faces=[face], width=w, height=h, timestamp_s=float(timestamp_s))

    def _canned_face(self, k: np.ndarray):
        from ..core.camera import FRONTAL_ROTATION
        from ..contracts import FaceResult

        rotation = FRONTAL_ROTATION.double().numpy()
        landmarks_model = self._mean_m[self.model.landmarks68.numpy()]
        centre = rotation @ landmarks_model.mean(0)
        translation_m = np.array([-centre[0], -centre[1], CANNED_DISTANCE_M - centre[2]])
        landmarks68 = self._project(landmarks_model @ rotation.T + translation_m, k)
        return FaceResult(
            track_id=1, score=1.0, bbox=np.concatenate([landmarks68.min(0), landmarks68.max(0)]),
            landmarks68=landmarks68, landmarks68_visible=np.ones(68, bool), landmarks468=np.zeros((468, 3)),
            rotation=rotation, translation_m=translation_m, yaw_deg=0.0, pitch_deg=0.0, roll_deg=0.0,
            expression=np.zeros(self.model.num_expression), identity=np.zeros(self.model.num_identity))

    def mesh_vertices(self, face) -> np.ndarray:
        return self._mean_m @ np.asarray(face.rotation).T + np.asarray(face.translation_m)

    def project(self, points_cam: np.ndarray, width: int, height: int) -> np.ndarray:
        return self._project(points_cam, self.intrinsics(width, height))

    @staticmethod
    def _project(points_cam: np.ndarray, k: np.ndarray) -> np.ndarray:
        import torch

        from ..core.camera import project_points

        return project_points(torch.from_numpy(np.asarray(points_cam, np.float64)), torch.from_numpy(k)).numpy()


NAMESPACE = "/occface_bench"
NODE_NAMESPACE = f"{NAMESPACE}/occface"  # the node's outputs: NODE_NAMESPACE/faces, ...
IMAGE_TOPIC = f"{NAMESPACE}/image"
NODE_LOG_LINES = 200  # the node's last output lines kept for an error message


def start_node(env: dict[str, str], canned: bool = False, config: str | None = None,
               node_args: list[str] | None = None) -> tuple[subprocess.Popen, deque]:
    """occface-node as its own process (named NODE_NAMESPACE, subscribing IMAGE_TOPIC) and the deque
    its output lines go to (the last NODE_LOG_LINES; a reader thread drains the pipe so it never blocks)."""
    args = ["--ros-args", "-r", f"__ns:={NAMESPACE}", "-r", "__node:=occface", "-r", f"image:={IMAGE_TOPIC}",
            "-p", "use_camera_info:=false"]
    if config:
        args += ["-p", f"config_file:={config}"]
    args += node_args or []
    proc = subprocess.Popen([sys.executable, "-c", NODE_SCRIPT.format(canned=canned), *args],
                            env=dict(os.environ, **env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    node_log: deque = deque(maxlen=NODE_LOG_LINES)
    threading.Thread(target=lambda: [node_log.append(ln) for ln in proc.stdout], daemon=True).start()
    return proc, node_log


def wait_for_node(pub, proc: subprocess.Popen, node_log: deque, timeout_s: float = 120.0) -> None:
    """Until the node subscribes to `pub`'s topic; RuntimeError with its last lines when it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while pub.get_subscription_count() == 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("occface-node did not start:\n" + "".join(list(node_log)[-30:]))
        time.sleep(0.1)


@dataclass
class ProbeGraph:
    """The measuring side of bench-ros and soak-ros: a probe node in its own rclpy context, spinning
    in a thread, with the image publisher."""

    context: object
    node: object
    probe: object
    publisher: object
    executor: object
    spin: threading.Thread

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.spin.join(5)  # a handler still running would use the destroyed node
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def start_probe(node_name: str, make_probe) -> ProbeGraph:
    """A probe node `node_name` (`make_probe(node)` subscribes what it measures), spinning, and a
    publisher of sensor_msgs/Image on IMAGE_TOPIC (sensor-data QoS)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node(node_name, context=ctx)
    probe = make_probe(node)
    pub = node.create_publisher(Image, IMAGE_TOPIC, qos_profile_sensor_data)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    return ProbeGraph(ctx, node, probe, pub, executor, spin)


def stop_node(proc: subprocess.Popen, timeout_s: float = 20.0) -> int | None:
    """SIGINT (the node's clean shutdown), SIGKILL after `timeout_s`; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


# output topic -> byte offset of header.stamp after the 4-byte CDR encapsulation
STAMP_OFFSETS = {"faces": 0, "head_poses": 0, "occlusion_mask": 0, "parsing": 0, "mesh_markers": 4, "tf": 4}


def _stamp_from_cdr(raw: bytes, offset: int):
    if len(raw) < 4 + offset + 8:
        return None
    endian = "<" if raw[1] & 1 else ">"
    if offset:  # a sequence first: empty -> no stamp
        (n,) = struct.unpack_from(endian + "I", raw, 4)
        if n == 0:
            return None
    sec, nsec = struct.unpack_from(endian + "iI", raw, 4 + offset)
    return sec, nsec


class _Probe:
    def __init__(self, node, ns: str):
        from rclpy.qos import QoSProfile, QoSReliabilityPolicy

        from geometry_msgs.msg import PoseArray
        from sensor_msgs.msg import Image
        from tf2_msgs.msg import TFMessage
        from visualization_msgs.msg import MarkerArray

        from occface_msgs.msg import FaceArray

        types = {"faces": FaceArray, "head_poses": PoseArray, "occlusion_mask": Image, "parsing": Image,
                 "mesh_markers": MarkerArray, "tf": TFMessage}
        qos = QoSProfile(depth=50, reliability=QoSReliabilityPolicy.RELIABLE)
        self.lock = threading.Lock()
        self.arrivals: dict[str, dict[tuple[int, int], float]] = {k: {} for k in types}
        self.subs = []
        for key, typ in types.items():
            topic = "/tf" if key == "tf" else f"{ns}/{key}"
            self.subs.append(node.create_subscription(typ, topic, self._cb(key), qos, raw=True))
        from diagnostic_msgs.msg import DiagnosticArray

        self.processing: dict[str, str] = {}  # values of the node's last "processing" diagnostics status
        self.subs.append(node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, qos))

    def _on_diagnostics(self, msg):
        for status in msg.status:
            if status.name.endswith(": processing"):
                with self.lock:
                    self.processing = {kv.key: kv.value for kv in status.values}

    def _cb(self, key):
        off = STAMP_OFFSETS[key]

        def cb(raw):
            now = time.time()
            st = _stamp_from_cdr(bytes(raw), off)
            if st is not None:
                with self.lock:
                    self.arrivals[key].setdefault(st, now)
        return cb

    def reset(self):
        with self.lock:
            for v in self.arrivals.values():
                v.clear()

    def snapshot(self):
        with self.lock:
            return {k: dict(v) for k, v in self.arrivals.items()}


def _pct(values, q):
    return round(float(np.percentile(values, q)), 2) if len(values) else None


def run_bench_ros(duration_s: float = 20.0, rate_hz: float = 30.0, step_s: float = 6.0, max_rate_hz: float = 240.0,
                  drop_limit: float = 0.05, canned: bool = False, config: str | None = None,
                  node_args: list[str] | None = None, frames: int = 60, verbose: bool = True,
                  find_peak: bool = True) -> dict:
    """Run the benchmark; returns the figures (also printed when verbose)."""
    env = loopback_env()
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from ..app.clip import clip_frames
    from .diagnostics import NO_SAMPLE
    from .image_conversion import fill_image_msg

    def log(*a):
        if verbose:
            print(*a, file=sys.stderr, flush=True)

    ns = NODE_NAMESPACE
    proc, node_log = start_node(env, canned=canned, config=config, node_args=node_args)
    graph = start_probe("occface_bench_probe", lambda node: _Probe(node, ns))
    probe, pub = graph.probe, graph.publisher
    msgs = [fill_image_msg(Image(), f, "bgr8", Header(frame_id="bench_camera")) for f in clip_frames(frames)]
    result: dict = {"pipeline": "CannedPipeline (the ROS layer alone)" if canned else "FacePipeline",
                    "image": f"{msgs[0].width}x{msgs[0].height} bgr8", "rate_hz": rate_hz,
                    "ros_domain_id": int(env["ROS_DOMAIN_ID"]),
                    "discovery_range": env["ROS_AUTOMATIC_DISCOVERY_RANGE"]}
    counter = [0]

    def publish_at(rate, seconds):
        period, sent = 1.0 / rate, []
        t_next = time.perf_counter()
        end = t_next + seconds
        while t_next < end:
            msg = msgs[counter[0] % len(msgs)]
            counter[0] += 1
            now = time.time()
            msg.header.stamp.sec, msg.header.stamp.nanosec = int(now), int((now % 1) * 1e9)
            sent.append(((msg.header.stamp.sec, msg.header.stamp.nanosec), now))
            pub.publish(msg)
            t_next += period
            delay = t_next - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        return sent

    def trial(rate, seconds):
        probe.reset()
        sent = publish_at(rate, seconds)
        time.sleep(1.0)  # let the last frames through
        got = probe.snapshot()
        faces = got["faces"]
        dropped = sum(1 for st, _ in sent if st not in faces)
        lat = {}
        for key, arr in got.items():
            ms = [(arr[st] - t) * 1e3 for st, t in sent if st in arr]
            lat[key] = {"p50_ms": _pct(ms, 50), "p99_ms": _pct(ms, 99), "received": len(ms)}
        with probe.lock:
            diag = dict(probe.processing)
        # the node's own view over its diagnostics window (the trial's last seconds): the background
        # occlusion reasoning's time and the age of the maps published with a frame
        occlusion = {k: float(diag[f"stage.{k}_ms_p50"]) for k in ("occlusion", "occlusion_mask_age", "occlusion_maps_latency")
                     if diag.get(f"stage.{k}_ms_p50", NO_SAMPLE) != NO_SAMPLE}
        return {"published": len(sent), "dropped": dropped, "drop_ratio": round(dropped / max(1, len(sent)), 4),
                "latency": lat, "node_occlusion_p50_ms": occlusion}

    try:
        wait_for_node(pub, proc, node_log)
        log("bench-ros: node up; warming up")
        warm_deadline = time.monotonic() + 60
        while not probe.snapshot()["faces"] and time.monotonic() < warm_deadline:
            publish_at(10, 1.0)
        publish_at(rate_hz, 2.0)
        log(f"bench-ros: {rate_hz:g} Hz for {duration_s:g} s")
        fixed = trial(rate_hz, duration_s)
        result["fixed_rate"] = fixed
        log(f"  dropped {fixed['dropped']}/{fixed['published']}, occlusion masks for "
            f"{fixed['latency']['occlusion_mask']['received']}/{fixed['published']} frames; " + ", ".join(
            f"{k} p50 {v['p50_ms']} / p99 {v['p99_ms']} ms" for k, v in fixed["latency"].items()))
        if fixed["node_occlusion_p50_ms"]:
            log("  node: " + ", ".join(f"{k} p50 {v:.0f} ms" for k, v in fixed["node_occlusion_p50_ms"].items()))
        if find_peak:
            trials = {}

            def ok(rate):
                r = trial(rate, step_s)
                trials[rate] = r["drop_ratio"]
                log(f"  peak search: {rate:.1f} Hz -> {100 * r['drop_ratio']:.1f}% dropped")
                return r["drop_ratio"] < drop_limit

            lo, hi = 0.0, None
            rate = rate_hz
            while rate <= max_rate_hz:
                if ok(rate):
                    lo, rate = rate, rate * 2
                else:
                    hi = rate
                    break
            if hi is None:
                hi = max_rate_hz
            for _ in range(3):
                mid = (lo + hi) / 2 if lo > 0 else hi / 2
                if ok(mid):
                    lo = mid
                else:
                    hi = mid
            result["peak_rate_hz"] = round(lo, 1)
            result["peak_trials"] = {f"{k:.1f}": v for k, v in sorted(trials.items())}
            log(f"bench-ros: peak input rate with < {100 * drop_limit:g}% drops: {lo:.1f} Hz")
    finally:
        graph.close()
        result["node_exit_code"] = stop_node(proc)
    return result
