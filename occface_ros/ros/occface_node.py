"""OccfaceNode: sensor_msgs/Image in, reconstructed faces out (a thin rclpy adapter of FacePipeline).

Subscribes  image (sensor_msgs/Image, sensor-data QoS), camera_info (optional, sensor-data QoS)
Publishes   ~/faces (occface_msgs/FaceArray), ~/head_poses (geometry_msgs/PoseArray),
            ~/mesh_markers (visualization_msgs/MarkerArray), ~/occlusion_mask (mono8),
            ~/parsing (mono8 labels of occlusion/labels.py), ~/debug_image (bgr8, off by default),
            /tf (tf2_msgs/TFMessage: face_<track_id> under the camera frame), /diagnostics.
Every output carries the input image's header (stamp and frame_id) unchanged.

Threading: the image callback only parks the message in a one-slot mailbox (newest frame wins; a
frame replaced before the worker took it is dropped and counted) so the executor never blocks; one
worker thread converts, runs the pipeline and publishes. The console entry (signals, exit codes)
is occface_ros/ros/node.py.
"""
from __future__ import annotations

import threading
import time
import traceback

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray
from occface_msgs.msg import FaceArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.qos import (
    QoSDurabilityPolicy,
    QoSHistoryPolicy,
    QoSProfile,
    QoSReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from ..config import ConfigError, load_config
from . import messages as M
from .pipeline_protocol import FacePipelineLike, PipelineFactory, default_pipeline_factory
from .diagnostics import OK, Health, Thresholds
from .image_conversion import ImageConversionError, have_cv_bridge, image_msg_to_bgr8
from .outputs import OutputBuilder, TFMessage
from .params import (
    DESCRIPTIONS,
    LIVE_CORE_DEFAULTS,
    NODE_DEFAULTS,
    READ_ONLY,
    RUNTIME_CORE,
    core_defaults,
    core_overrides,
    read_config_file,
    validate_value,
)

OUTPUT_QOS = QoSProfile(reliability=QoSReliabilityPolicy.RELIABLE, history=QoSHistoryPolicy.KEEP_LAST, depth=5)
TF_QOS = QoSProfile(reliability=QoSReliabilityPolicy.RELIABLE, history=QoSHistoryPolicy.KEEP_LAST, depth=100,
                    durability=QoSDurabilityPolicy.VOLATILE)

LOG_THROTTLE_S = 10.0  # a log line that can repeat per frame appears at most this often

OUTPUT_TOPICS = ("faces", "head_poses", "mesh_markers", "occlusion_mask", "parsing", "debug_image")


def stamp_seconds(stamp) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


class _ParamView:
    """options[name] -> the node parameter's current value (read when the builder needs it)."""

    def __init__(self, node):
        self.node = node

    def __getitem__(self, name):
        return self.node.get_parameter(name).value


class OccfaceNode(Node):
    """The node around one pipeline: `pipeline_factory(config)` (default FacePipeline) builds it."""

    def __init__(self, node_name: str = "occface_node", pipeline_factory: PipelineFactory | None = None,
                 **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        log = self.get_logger()
        self._declare_parameters()
        factory = pipeline_factory or default_pipeline_factory()
        self.pipeline: FacePipelineLike = factory(self._config)
        self.outputs = OutputBuilder(self.pipeline)

        th = Thresholds(**{k: self.get_parameter(f"diagnostics.{k}").value for k in Thresholds.names()})
        self.health = Health(th, name=self.get_fully_qualified_name())
        self.health.extra["image_conversion"] = "cv_bridge" if have_cv_bridge() else "numpy"
        occlusion_on = self.pipeline.occlusion_enabled
        self.health.extra["parsing_source"] = "M_gamma (Algorithm 1)" if occlusion_on else "landmark polygons"
        self.health.extra["occlusion_mask_source"] = "occlusion reasoning" if occlusion_on else "all zeros (disabled)"
        self.health.extra["frame_time"] = "image stamps"  # the key exists from the start: read unlocked

        # publishers
        self.pub_faces = self.create_publisher(FaceArray, "~/faces", OUTPUT_QOS)
        self.pub_poses = self.create_publisher(PoseArray, "~/head_poses", OUTPUT_QOS)
        self.pub_markers = self.create_publisher(MarkerArray, "~/mesh_markers", OUTPUT_QOS)
        self.pub_mask = self.create_publisher(Image, "~/occlusion_mask", OUTPUT_QOS)
        self.pub_parsing = self.create_publisher(Image, "~/parsing", OUTPUT_QOS)
        self.pub_debug = self.create_publisher(Image, "~/debug_image", OUTPUT_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QOS)
        self.pub_tf = self.create_publisher(TFMessage, "/tf", TF_QOS) if TFMessage is not None else None
        self.publishers_by_key = {
            "faces": self.pub_faces, "head_poses": self.pub_poses, "tf": self.pub_tf, "occlusion_mask": self.pub_mask,
            "parsing": self.pub_parsing, "mesh_markers": self.pub_markers, "debug_image": self.pub_debug}
        if self.pub_tf is None:
            log.warning("tf2_msgs is not importable: face TF frames are not published "
                        "(run tools/build_interfaces.sh or source a ROS installation)")

        # inputs
        self._lock = threading.Condition()
        self._slot = None  # (Image, receipt monotonic time)
        self._camera_info = None
        self._stop = False
        self.sub_image = self.create_subscription(Image, "image", self._on_image, qos_profile_sensor_data)
        self.sub_info = None
        if self.get_parameter("use_camera_info").value:
            self.sub_info = self.create_subscription(CameraInfo, "camera_info", self._on_camera_info,
                                                     qos_profile_sensor_data)
        self._pending_smoothing = None
        self._camera_matrix = None  # the K last given to the pipeline (from camera_info)
        self._last_stamp = None
        self._last_recv = 0.0  # receipt (monotonic) of the frame of _last_stamp
        self._stamp_clock: _FallbackClock | None = None  # set for good by the first zero stamp
        self._last_frame_id = ""
        self._diag_lock = threading.Lock()
        self._diag_level = OK  # the worst level of the last /diagnostics published
        self._logged: set[str] = set()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diag_timer = self.create_timer(th.period_s, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._run_worker, name="occface_worker", daemon=True)
        self._worker.start()
        log.info(f"ready: image={self.resolve_topic_name('image')} "
                 f"outputs under {self.get_fully_qualified_name()}/ ({'cv_bridge' if have_cv_bridge() else 'numpy'}"
                 " image conversion)")

    # ---------------------------------------------------------------------------- parameters
    def _declare_parameters(self) -> None:
        self.declare_parameter("config_file", "", ParameterDescriptor(description=DESCRIPTIONS["config_file"],
                                                                      read_only=True))
        path = self.get_parameter("config_file").value
        core_file, node_file = ({}, {}) if not path else read_config_file(path)
        base = load_config(None, _deep_merge(LIVE_CORE_DEFAULTS, core_file))  # raises ConfigError with the reason
        for name, default in core_defaults(base).items():
            runtime = name in RUNTIME_CORE
            desc = DESCRIPTIONS.get(name, "from config/occface.yaml" + ("" if runtime else "; read-only at run time"))
            self.declare_parameter(name, default, ParameterDescriptor(description=desc, read_only=not runtime))
        for name, default in NODE_DEFAULTS.items():
            if name == "config_file":
                continue
            default = node_file.get(name, default)
            self.declare_parameter(name, default, ParameterDescriptor(description=DESCRIPTIONS.get(name, ""),
                                                                      read_only=name in READ_ONLY))
        for name in list(NODE_DEFAULTS) + list(RUNTIME_CORE):
            if name == "config_file":
                continue
            reason = validate_value(name, self.get_parameter(name).value)
            if reason:
                raise ConfigError(f"parameter {reason}")
        values = {n: self.get_parameter(n).value for n in core_defaults(base)}
        self._config = load_config(None, {**_deep_merge(core_file, core_overrides(values))})

    def _on_set_parameters(self, params) -> SetParametersResult:
        with self._lock:
            smoothing = dict(self._pending_smoothing or self._config["smoothing"])
        for p in params:
            reason = validate_value(p.name, p.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            if p.name.startswith("smoothing."):
                smoothing[p.name.split(".", 1)[1]] = p.value
        for p in params:  # all valid: apply
            if p.name.startswith("diagnostics."):
                setattr(self.health.thresholds, p.name.split(".", 1)[1], float(p.value))
                if p.name == "diagnostics.period_s":
                    self._diag_timer.timer_period_ns = int(float(p.value) * 1e9)
                    self._diag_timer.reset()
        with self._lock:
            if smoothing != self._config["smoothing"] or self._pending_smoothing is not None:
                self._pending_smoothing = smoothing  # applied by the worker between frames
        return SetParametersResult(successful=True)

    def _param(self, name):
        return self.get_parameter(name).value

    # ---------------------------------------------------------------------------- callbacks
    def _on_image(self, msg: Image) -> None:
        now = time.monotonic()
        self.health.received(now)
        with self._lock:
            if self._slot is not None:
                self.health.dropped(1, now)
            self._slot = (msg, now)
            self._lock.notify()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _publish_diagnostics(self, only_if_worse: bool = False) -> None:
        """The timer publishes every period; an error calls this with `only_if_worse`, which
        publishes at once only when the level rose over the last one published (no flood)."""
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self._last_frame_id)
        self.health.hardware_id = self._last_frame_id
        array = self.health.array(header)
        level = max((s.level for s in array.status), default=OK)
        with self._diag_lock:
            if only_if_worse and level <= self._diag_level:
                return
            self._diag_level = level
        try:
            self.pub_diag.publish(array)
        except Exception as exc:  # noqa: BLE001 - e.g. the context is shutting down; never kill the caller
            if self.context.ok():
                self.get_logger().warning(f"cannot publish /diagnostics: {type(exc).__name__}: {exc}",
                                          throttle_duration_sec=LOG_THROTTLE_S)

    def _log_once(self, cause: str, text: str, warning: bool = False) -> None:
        if cause not in self._logged:
            self._logged.add(cause)
            log = self.get_logger()
            (log.warning if warning else log.error)(f"{text} (reported once; see /diagnostics)")

    # ---------------------------------------------------------------------------- worker
    def _run_worker(self) -> None:
        while True:
            with self._lock:
                while self._slot is None and not self._stop:
                    self._lock.wait(0.2)
                if self._stop:
                    return
                (msg, t_recv), self._slot = self._slot, None
                smoothing, self._pending_smoothing = self._pending_smoothing, None
            if smoothing is not None:
                self._apply_smoothing(smoothing)
            try:
                self.process_image(msg, t_recv)
            except Exception as exc:  # noqa: BLE001 - never let the worker die
                if self._stop or not self.context.ok():
                    return  # shutting down while this frame was in flight
                self._recover_from_failed_frame(msg.header, exc)

    def _recover_from_failed_frame(self, header, exc: Exception) -> None:
        """A frame failed partway: its tracks may be half-updated, so start the next frame clean."""
        cause = f"pipeline_{type(exc).__name__}"
        self.health.error(cause, str(exc), kind="pipeline_errors")
        try:
            self.pipeline.reset()
            self.pub_markers.publish(M.marker_array([M.delete_all_marker(header)]))
            outcome = "tracks reset"
        except Exception as reset_exc:  # noqa: BLE001 - report it; the next frame tries again
            outcome = f"reset failed too: {type(reset_exc).__name__}: {reset_exc}"
        log = self.get_logger()
        log.error(f"frame {header.stamp.sec}.{header.stamp.nanosec:09d} failed in the pipeline "
                  f"({type(exc).__name__}: {exc}); {outcome} (see /diagnostics)", throttle_duration_sec=LOG_THROTTLE_S)
        log.debug(traceback.format_exc())
        self._publish_diagnostics(only_if_worse=True)

    def _apply_smoothing(self, s: dict) -> None:
        self._config["smoothing"].update(s)
        self.pipeline.set_smoothing(float(s["min_cutoff"]), float(s["beta"]), float(s["d_cutoff"]),
                                    noise_deadzone=float(s["noise_deadzone"]), enabled=bool(s["enabled"]))

    def _intrinsics_from_camera_info(self, width: int, height: int):
        info = self._camera_info
        if info is None:
            return None
        k = np.asarray(info.k, np.float64).reshape(3, 3)
        if k[0, 0] <= 0 or k[1, 1] <= 0:
            self._log_once("camera_info_zero_k", "camera_info has no intrinsics (K is zero): using camera.hfov_deg",
                           warning=True)
            return None
        if (info.width, info.height) not in ((width, height), (0, 0)):
            self._log_once("camera_info_size", f"camera_info is for {info.width}x{info.height}, images are "
                                               f"{width}x{height}: ignoring it", warning=True)
            return None
        return k

    def process_image(self, msg: Image, t_recv: float | None = None) -> None:
        """Convert, run the pipeline and publish every output for one image (worker thread)."""
        t_recv = time.monotonic() if t_recv is None else t_recv
        header = msg.header
        self._last_frame_id = header.frame_id
        try:
            bgr = image_msg_to_bgr8(msg)
        except ImageConversionError as exc:
            if self.health.error(exc.cause, str(exc)):
                self.get_logger().error(f"cannot use image on {self.sub_image.topic_name}: {exc} "
                                        "(reported once per cause; see /diagnostics)")
            self._publish_diagnostics(only_if_worse=True)
            return
        h, w = bgr.shape[:2]
        if self.sub_info is not None:
            k = self._intrinsics_from_camera_info(w, h)
            if k is not None and (self._camera_matrix is None or not np.array_equal(k, self._camera_matrix)):
                self._camera_matrix = k
                self.pipeline.set_camera_matrix(k)
        t = self._frame_time(header, t_recv)
        if self._last_stamp is not None and t <= self._last_stamp:
            # time went backwards (bag loop, restarted driver): per-track filters would break
            self._log_once("stamp_backwards", "image stamps went backwards: tracks reset", warning=True)
            self.pipeline.reset()
            self.pub_markers.publish(M.marker_array([M.delete_all_marker(header)]))
        self._last_stamp, self._last_recv = t, t_recv

        result = self.pipeline.process(bgr, t)
        self.publish_result(header, result, bgr)
        latency_ms = (time.monotonic() - t_recv) * 1e3
        stage_ms = dict(result.stage_ms)
        if result.occlusion_timestamp_s is not None:  # maps reasoned on an earlier frame
            stage_ms["occlusion_mask_age"] = (t - result.occlusion_timestamp_s) * 1e3
        self.health.processed(latency_ms, len(result.faces), stage_ms)

    def _frame_time(self, header, t_recv: float) -> float:
        """The frame's time for the pipeline: its stamp, or, from the first zero stamp on, the
        node's fallback clock for every frame (never mixed with stamps: a jump between two clocks
        would look like time going backwards and reset the tracks)."""
        if self._stamp_clock is None:
            t = stamp_seconds(header.stamp)
            if t != 0.0:
                return t
            start = (self._last_stamp + max(1e-6, t_recv - self._last_recv) if self._last_stamp is not None
                     else self.get_clock().now().nanoseconds * 1e-9)  # continues the stamps' timeline
            self._stamp_clock = _FallbackClock(start, t_recv)
            self.health.extra["frame_time"] = "node clock (an image had a zero stamp)"
            self._log_once("zero_stamp", "an image has a zero stamp: frames are timed by the node's clock from now "
                                         "on (outputs keep the input headers)", warning=True)
        return self._stamp_clock.at(t_recv)

    def publish_result(self, header, result, bgr: np.ndarray) -> None:
        options = _ParamView(self)
        for key, msg in self.outputs.build(header, result, bgr, options):
            pub = self.publishers_by_key.get(key)
            if pub is not None:
                pub.publish(msg)

    # ---------------------------------------------------------------------------- shutdown
    def shutdown(self, timeout_s: float = 5.0) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        if self._worker.is_alive() and self._worker is not threading.current_thread():
            self._worker.join(timeout_s)
        if not self._worker.is_alive():
            self.pipeline.close()


class _FallbackClock:
    """Seconds on a monotonic clock that starts at `start_s` at monotonic time `t0`, strictly increasing."""

    def __init__(self, start_s: float, t0: float):
        self.start_s, self.t0, self.last_s = start_s, t0, None

    def at(self, t_monotonic: float) -> float:
        t = self.start_s + (t_monotonic - self.t0)
        if self.last_s is not None and t <= self.last_s:
            t = self.last_s + 1e-6  # two frames received in the same clock tick
        self.last_s = t
        return t


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
