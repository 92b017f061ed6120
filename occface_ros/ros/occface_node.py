"""OccfaceNode: sensor_msgs/Image in, reconstructed faces out (a thin rclpy adapter of FacePipeline).

Subscribes  image (sensor_msgs/Image, sensor-data QoS), camera_info (optional, sensor-data QoS)
Publishes   ~/faces (occface_msgs/FaceArray), ~/head_poses (geometry_msgs/PoseArray),
            ~/mesh_markers (visualization_msgs/MarkerArray), ~/occlusion_mask (mono8),
            ~/parsing (mono8 labels of occlusion/labels.py), ~/debug_image (bgr8, off by default),
            /tf (tf2_msgs/TFMessage: face_<track_id> under the camera frame), /diagnostics,
            ROS4HRI (REP-155, `publish_hri`): /humans/faces/tracked, /humans/faces/<id>/{roi,landmarks,
            cropped,aligned}, face_<id>/gaze_<id> frames (ros/hri.py).
Every output carries the input image's header (stamp and frame_id) unchanged.

A managed (lifecycle) node. on_configure declares the parameters (the first time), reads them and
builds the pipeline (the slow part: models and weights) and the worker; a failure leaves it
unconfigured with the reason logged and on /diagnostics. on_activate subscribes and enables the
output publishers; on_deactivate unsubscribes and waits out the frame in flight (models stay
loaded); on_cleanup / on_shutdown release the pipeline, worker and publishers. With `autostart`
(default) the constructor configures and activates. /diagnostics is a plain publisher: it reports
the lifecycle state (and a failed transition's reason) while the node is not active.

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
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseArray
from occface_msgs.msg import FaceArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
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
from .entities import DESTROYABLE_PUBLISHER, DESTROYABLE_SUBSCRIPTION
from .diagnostics import ERROR, OK, Health, Thresholds
from .image_conversion import ImageConversionError, have_cv_bridge, image_msg_to_bgr8
from .outputs import OutputBuilder, TFMessage
from .params import (
    CONFIGURE_ONLY,
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
MAX_FRAMES_FOR_MAPS = 8  # own-frame maps: frames kept for their reasoning (the worker takes the newest)
RELEASE_TIMEOUT_S = 5.0  # deactivate / cleanup / shutdown wait this long for the frame in flight

OUTPUT_TOPICS = ("faces", "head_poses", "mesh_markers", "occlusion_mask", "parsing", "debug_image",
                 "deoccluded_image")

# lifecycle primary states as the node tracks them (the labels of lifecycle_msgs/State)
UNCONFIGURED, INACTIVE, ACTIVE, FINALIZED = "unconfigured", "inactive", "active", "finalized"


def stamp_seconds(stamp) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message` (a reason for a log line and a diagnostics message)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class _ParamView:
    """options[name] -> the node parameter's current value (read when the builder needs it)."""

    def __init__(self, node):
        self.node = node

    def __getitem__(self, name):
        return self.node.get_parameter(name).value


class OccfaceNode(LifecycleNode):
    """The node around one pipeline: `pipeline_factory(config)` (default FacePipeline) builds it at configure."""

    def __init__(self, node_name: str = "occface_node", pipeline_factory: PipelineFactory | None = None,
                 **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        self._pipeline_factory = pipeline_factory
        self._lock = threading.Condition()  # mailbox, worker state, pending smoothing
        self._phase = UNCONFIGURED  # the lifecycle state, for the worker, the callbacks and /diagnostics
        self._transition_error: str | None = None  # the last failed transition's reason, until a configure succeeds
        self._release_timeout_s = RELEASE_TIMEOUT_S
        # what configure builds (None while unconfigured)
        self.pipeline: FacePipelineLike | None = None
        self.outputs: OutputBuilder | None = None
        self.health: Health | None = None
        self._config: dict | None = None
        self._config_file: tuple[dict, dict] | None = None  # (core, node) of config_file, read once
        self._core_names: list[str] = []
        self._declaring = False
        self.publishers_by_key: dict[str, object] = {}
        self.hri = None  # ros/hri.HriFacePublisher while active (publish_hri)
        self.pub_faces = self.pub_poses = self.pub_markers = self.pub_mask = None
        self.pub_parsing = self.pub_debug = self.pub_deoccluded = self.pub_tf = None
        self.sub_image = self.sub_info = None
        self._image_topic = self.resolve_topic_name("image")
        self._use_camera_info = False
        self._worker: threading.Thread | None = None
        self._stop = False
        self._busy = False  # the worker is on a frame
        self._accepting = False  # images are parked (active); off before the subscriptions go
        self._slot = None  # (Image, receipt monotonic time)
        self._pending_smoothing = None
        self._fresh_stream = False  # forget tracks and stamps before the next frame (set by deactivate)
        self._camera_info = None
        self._camera_matrix = None  # the K last given to the pipeline (from camera_info)
        self._last_stamp = None
        self._last_recv = 0.0  # receipt (monotonic) of the frame of _last_stamp
        self._stamp_clock: _FallbackClock | None = None  # set for good by the first zero stamp
        self._last_frame_id = ""
        # own-frame maps (occlusion.background_maps: own_frame): frames whose maps are still being reasoned
        self._own_frame_maps = False
        self._maps_lock = threading.Lock()
        self._frames_for_maps: dict[float, tuple] = {}  # pipeline timestamp -> (header, bgr, receipt time)
        self._diag_lock = threading.Lock()
        self._diag_level = OK  # the worst level of the last /diagnostics published
        self._logged: set[str] = set()

        self.declare_parameter("config_file", "", ParameterDescriptor(description=DESCRIPTIONS["config_file"],
                                                                      read_only=True))
        self.declare_parameter("autostart", self._autostart_default(),
                               ParameterDescriptor(description=DESCRIPTIONS["autostart"], read_only=True))
        # not a lifecycle publisher: a failed configure and the inactive state are reported too
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QOS)
        self._diag_timer = self.create_timer(Thresholds().period_s, self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if self.get_parameter("autostart").value and self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def _autostart_default(self) -> bool:
        """NODE_DEFAULTS' autostart, or config_file's (an unreadable file: the default; configure reports it)."""
        path = self.get_parameter("config_file").value
        try:
            node_file = read_config_file(path)[1] if path else {}
        except ConfigError:  # configure reads the file again and fails with the reason
            node_file = {}
        return bool(node_file.get("autostart", NODE_DEFAULTS["autostart"]))

    # ---------------------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Parameters (declared the first time), pipeline (models, weights), publishers, worker."""
        t0 = time.monotonic()
        try:
            self._configure()
        except Exception as exc:  # noqa: BLE001 - any reason (config, parameter, model, weights): stay unconfigured
            self._release()
            return self._failed("configure", exc, TransitionCallbackReturn.FAILURE)
        self._transition_error = None
        self._phase = INACTIVE
        self.get_logger().info(f"configured in {time.monotonic() - t0:.1f} s ({type(self.pipeline).__name__}); "
                               "inactive until activated")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Enable the output publishers, then subscribe."""
        try:
            result = super().on_activate(state)  # the lifecycle publishers publish from here on
            self._start_hri()
            with self._lock:
                self._accepting = True
            self._create_subscriptions()
        except Exception as exc:  # noqa: BLE001 - on_error releases everything: unconfigured, with the reason
            return self._failed("activate", exc, TransitionCallbackReturn.ERROR)
        self._phase = ACTIVE
        self.get_logger().info(f"ready: image={self._image_topic} outputs under {self.get_fully_qualified_name()}/ "
                               f"({'cv_bridge' if have_cv_bridge() else 'numpy'} image conversion)")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe and wait out the frame in flight; the pipeline stays loaded. The next
        activation starts a fresh stream (tracks forgotten: their meshes are deleted here)."""
        try:
            self._pause()
            self._stop_hri()
            result = super().on_deactivate(state)  # the lifecycle publishers drop messages from here on
        except Exception as exc:  # noqa: BLE001 - on_error releases everything: unconfigured, with the reason
            return self._failed("deactivate", exc, TransitionCallbackReturn.ERROR)
        self._phase = INACTIVE
        self.get_logger().info("inactive: not processing images (models stay loaded)")
        return result

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the pipeline, worker and publishers: back to unconfigured."""
        self._release()
        self._phase = UNCONFIGURED
        self.get_logger().info("cleaned up: unconfigured")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything (from any primary state): finalized."""
        self._release()
        self._phase = FINALIZED
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: release everything and return to unconfigured (the reason is logged)."""
        self._release()
        self._phase = UNCONFIGURED
        self._publish_diagnostics()
        return TransitionCallbackReturn.SUCCESS

    def shutdown(self, timeout_s: float = RELEASE_TIMEOUT_S) -> None:
        """Finalize (the lifecycle shutdown from whichever primary state) and release everything;
        the console entry and tests call this before destroying the node."""
        self._release_timeout_s = timeout_s
        try:
            self.trigger_shutdown()  # on_shutdown releases
        except _rclpy.RCLError:  # not in a primary state (a transition was interrupted) or finalized already
            self._release()
        self._phase = FINALIZED

    def _failed(self, transition: str, exc: Exception, result: TransitionCallbackReturn) -> TransitionCallbackReturn:
        self._transition_error = f"{transition} failed: {one_line(exc)}"
        log = self.get_logger()
        log.error(f"{self._transition_error} (the node is unconfigured; fix it and configure again)")
        log.debug(traceback.format_exc())
        self._phase = UNCONFIGURED
        self._publish_diagnostics()
        return result

    def _configure(self) -> None:
        factory = self._pipeline_factory or default_pipeline_factory()
        self._declare_parameters()
        config = self._config_from_parameters()
        th = Thresholds(**{k: self.get_parameter(f"diagnostics.{k}").value for k in Thresholds.names()})
        pipeline = factory(config)  # the slow part
        with self._lock:
            self._config, self.pipeline, self._pending_smoothing = config, pipeline, None
        self.outputs = OutputBuilder(pipeline)
        self._own_frame_maps = pipeline.set_maps_listener(self._publish_frame_maps)
        self._use_camera_info = bool(self.get_parameter("use_camera_info").value)
        self._camera_info = self._camera_matrix = None
        self._reset_stream_state()
        health = Health(th, name=self.get_fully_qualified_name())
        health.extra["image_conversion"] = "cv_bridge" if have_cv_bridge() else "numpy"
        occlusion_on = pipeline.occlusion_enabled
        health.extra["parsing_source"] = "M_gamma (Algorithm 1)" if occlusion_on else "landmark polygons"
        health.extra["occlusion_mask_source"] = "occlusion reasoning" if occlusion_on else "all zeros (disabled)"
        health.extra["frame_time"] = "image stamps"  # the key exists from the start: read unlocked
        self.health = health
        self._set_diagnostics_period(th.period_s)
        self._create_publishers()
        with self._lock:
            self._stop, self._busy, self._slot, self._fresh_stream = False, False, None, False
        self._worker = threading.Thread(target=self._run_worker, name="occface_worker", daemon=True)
        self._worker.start()

    def _create_publishers(self) -> None:
        """Every output publisher, in one place (lifecycle publishers: they publish only while the
        node is active). Outputs added later (e.g. REP-155 /humans/faces/*) are created here too and
        listed in publishers_by_key, so _destroy_publishers releases them."""
        pub = self.create_lifecycle_publisher
        self.pub_faces = pub(FaceArray, "~/faces", OUTPUT_QOS, **DESTROYABLE_PUBLISHER)
        self.pub_poses = pub(PoseArray, "~/head_poses", OUTPUT_QOS, **DESTROYABLE_PUBLISHER)
        self.pub_markers = pub(MarkerArray, "~/mesh_markers", OUTPUT_QOS, **DESTROYABLE_PUBLISHER)
        self.pub_mask = pub(Image, "~/occlusion_mask", OUTPUT_QOS, **DESTROYABLE_PUBLISHER)
        self.pub_parsing = pub(Image, "~/parsing", OUTPUT_QOS, **DESTROYABLE_PUBLISHER)
        self.pub_debug = pub(Image, "~/debug_image", OUTPUT_QOS, **DESTROYABLE_PUBLISHER)
        self.pub_deoccluded = pub(Image, "~/deoccluded_image", OUTPUT_QOS, **DESTROYABLE_PUBLISHER)
        self.pub_tf = pub(TFMessage, "/tf", TF_QOS, **DESTROYABLE_PUBLISHER) if TFMessage is not None else None
        self.publishers_by_key = {
            "faces": self.pub_faces, "head_poses": self.pub_poses, "tf": self.pub_tf, "occlusion_mask": self.pub_mask,
            "parsing": self.pub_parsing, "mesh_markers": self.pub_markers, "debug_image": self.pub_debug,
            "deoccluded_image": self.pub_deoccluded}
        if self.pub_tf is None:
            self._log_once("no_tf2_msgs", "tf2_msgs is not importable: face TF frames are not published "
                                          "(run tools/build_interfaces.sh or source a ROS installation)", warning=True)

    def _destroy_publishers(self) -> None:
        for pub in self.publishers_by_key.values():
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self.publishers_by_key = {}
        self.pub_faces = self.pub_poses = self.pub_markers = self.pub_mask = None
        self.pub_parsing = self.pub_debug = self.pub_deoccluded = self.pub_tf = None

    def _create_subscriptions(self) -> None:
        self.sub_image = self.create_subscription(Image, "image", self._on_image, qos_profile_sensor_data,
                                                 **DESTROYABLE_SUBSCRIPTION)
        self._image_topic = self.sub_image.topic_name
        if self._use_camera_info:
            self.sub_info = self.create_subscription(CameraInfo, "camera_info", self._on_camera_info,
                                                     qos_profile_sensor_data, **DESTROYABLE_SUBSCRIPTION)

    def _destroy_subscriptions(self) -> None:
        with self._lock:
            self._accepting = False  # a callback already running drops its image
            self._slot = None
        for sub in (self.sub_image, self.sub_info):
            if sub is not None:
                self.destroy_subscription(sub)
        self.sub_image = self.sub_info = None

    def _wait_idle(self) -> bool:
        """Until the worker is off its frame (at most the release timeout); True when it is."""
        deadline = time.monotonic() + self._release_timeout_s
        with self._lock:
            while self._busy and time.monotonic() < deadline:
                self._lock.wait(0.05)
            return not self._busy

    def _pause(self) -> None:
        self._destroy_subscriptions()
        if not self._wait_idle():
            self.get_logger().warning(f"a frame is still in the pipeline after {self._release_timeout_s:g} s: "
                                      "its outputs are dropped")
        with self._lock:
            self._fresh_stream = True  # the worker resets the pipeline before the next frame
        if self._last_frame_id and self.pub_markers is not None:
            header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self._last_frame_id)
            self.pub_markers.publish(M.marker_array([M.delete_all_marker(header)]))

    def _start_hri(self) -> None:
        """The REP-155 outputs (plain publishers: they exist only while the node is active)."""
        if not self.get_parameter("publish_hri").value or self.pipeline is None:
            return
        from .hri import HriFacePublisher

        try:
            self.hri = HriFacePublisher(self, _ParamView(self), self.pipeline.model, tf_publisher=self.pub_tf)
        except (RuntimeError, AttributeError, ValueError) as exc:  # no hri_msgs / tf2_msgs, or no model
            self._log_once("no_hri", f"ROS4HRI faces are not published: {one_line(exc)}", warning=True)

    def _stop_hri(self) -> None:
        hri, self.hri = self.hri, None
        if hri is not None:
            hri.close(Header(stamp=self.get_clock().now().to_msg(), frame_id=self._last_frame_id or ""))

    def _release(self) -> None:
        """Subscriptions, worker, pipeline and output publishers (whatever exists); idempotent."""
        self._destroy_subscriptions()
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        worker, self._worker = self._worker, None
        if worker is not None and worker is not threading.current_thread():
            worker.join(self._release_timeout_s)
        self._stop_hri()
        pipeline, self.pipeline = self.pipeline, None
        if worker is not None and worker.is_alive():
            self.get_logger().warning(f"the worker is still on a frame after {self._release_timeout_s:g} s: "
                                      "the pipeline is left to the process's end")
        elif pipeline is not None:
            try:
                pipeline.close()
            except Exception as exc:  # noqa: BLE001 - keep releasing the rest; one line says what failed
                self.get_logger().error(f"could not close the pipeline: {one_line(exc)}")
        self._destroy_publishers()
        self.outputs = self.health = self._config = None

    # ---------------------------------------------------------------------------- parameters
    def _declare_parameters(self) -> None:
        """Declare the core and node parameters (defaults from config/occface.yaml and config_file);
        names declared by an earlier configure are kept as they are (declared once)."""
        if self._config_file is None:
            path = self.get_parameter("config_file").value
            self._config_file = ({}, {}) if not path else read_config_file(path)
        core_file, node_file = self._config_file
        base = load_config(None, _deep_merge(LIVE_CORE_DEFAULTS, core_file))  # raises ConfigError with the reason
        defaults = core_defaults(base)
        self._core_names = list(defaults)
        self._declaring = True
        try:
            for name, default in defaults.items():
                if self.has_parameter(name):
                    continue
                note = "" if name in RUNTIME_CORE else "; set while unconfigured, read at configure"
                desc = DESCRIPTIONS.get(name, "from config/occface.yaml" + note)
                self.declare_parameter(name, default, ParameterDescriptor(description=desc))
            for name, default in NODE_DEFAULTS.items():
                if self.has_parameter(name):
                    continue
                self.declare_parameter(name, node_file.get(name, default), ParameterDescriptor(
                    description=DESCRIPTIONS.get(name, ""), read_only=name in READ_ONLY))
        finally:
            self._declaring = False

    def _config_from_parameters(self) -> dict:
        for name in list(NODE_DEFAULTS) + list(RUNTIME_CORE):
            reason = validate_value(name, self.get_parameter(name).value)
            if reason:
                raise ConfigError(f"parameter {reason}")
        values = {n: self.get_parameter(n).value for n in self._core_names}
        if self.get_parameter("publish_deoccluded_image").value:
            values["occlusion.deocclude"] = True  # the topic needs the filled frame
        return load_config(None, _deep_merge(self._config_file[0], core_overrides(values)))

    def _configure_only(self, name: str) -> bool:
        return name in CONFIGURE_ONLY or (name in self._core_names and name not in RUNTIME_CORE)

    def _on_set_parameters(self, params) -> SetParametersResult:
        if self._declaring:  # values from the overrides: configure checks them, with the reason
            return SetParametersResult(successful=True)
        configured = self._phase in (INACTIVE, ACTIVE)
        for p in params:
            if configured and self._configure_only(p.name):
                return SetParametersResult(successful=False, reason=(
                    f"{p.name} is read-only while the node is {self._phase}: it is read at configure "
                    "(set it after cleanup, then configure)"))
            reason = validate_value(p.name, p.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        for p in params:  # all valid: apply
            if p.name == "diagnostics.period_s":
                self._set_diagnostics_period(float(p.value))
            if p.name.startswith("diagnostics.") and self.health is not None:
                setattr(self.health.thresholds, p.name.split(".", 1)[1], float(p.value))
        with self._lock:
            if self._config is None:
                return SetParametersResult(successful=True)  # unconfigured: the next configure reads them
            smoothing = dict(self._pending_smoothing or self._config["smoothing"])
            for p in params:
                if p.name.startswith("smoothing."):
                    smoothing[p.name.split(".", 1)[1]] = p.value
            if smoothing != self._config["smoothing"] or self._pending_smoothing is not None:
                self._pending_smoothing = smoothing  # applied by the worker between frames
        return SetParametersResult(successful=True)

    def _set_diagnostics_period(self, period_s: float) -> None:
        self._diag_timer.timer_period_ns = int(period_s * 1e9)
        self._diag_timer.reset()

    def _param(self, name):
        return self.get_parameter(name).value

    # ---------------------------------------------------------------------------- callbacks
    def _on_image(self, msg: Image) -> None:
        now = time.monotonic()
        with self._lock:
            if not self._accepting:  # deactivating: this callback raced the unsubscribe
                return
            self.health.received(now)
            if self._slot is not None:
                self.health.dropped(1, now)
            self._slot = (msg, now)
            self._lock.notify()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _publish_diagnostics(self, only_if_worse: bool = False) -> None:
        """The timer publishes every period; an error calls this with `only_if_worse`, which
        publishes at once only when the level rose over the last one published (no flood).
        Active: the health statuses; otherwise one `<node>: lifecycle` status."""
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self._last_frame_id)
        health, phase = self.health, self._phase
        if phase == FINALIZED:
            return
        if phase == ACTIVE and health is not None:
            health.hardware_id = self._last_frame_id
            array = health.array(header)
        else:
            array = DiagnosticArray(header=header, status=[self._lifecycle_status(phase)])
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

    def _lifecycle_status(self, phase: str) -> DiagnosticStatus:
        error = self._transition_error
        if error:
            level, message = ERROR, error
        elif phase == INACTIVE:
            level, message = OK, "inactive: models loaded, not processing images (activate to resume)"
        else:
            level, message = OK, f"{phase}: waiting for configure"
        values = [KeyValue(key="lifecycle_state", value=phase)] + (
            [KeyValue(key="error", value=error)] if error else [])
        return DiagnosticStatus(level=level, name=f"{self.get_fully_qualified_name()}: lifecycle", message=message,
                                hardware_id=self._last_frame_id, values=values)

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
                fresh, self._fresh_stream = self._fresh_stream, False
                self._busy = True
            try:
                if fresh:
                    self.pipeline.reset()
                    self._reset_stream_state()
                if smoothing is not None:
                    self._apply_smoothing(smoothing)
                self.process_image(msg, t_recv)
            except Exception as exc:  # noqa: BLE001 - never let the worker die
                if self._stop or not self.context.ok():
                    return  # shutting down while this frame was in flight
                self._recover_from_failed_frame(msg.header, exc)
            finally:
                with self._lock:
                    self._busy = False
                    self._lock.notify_all()

    def _reset_stream_state(self) -> None:
        """Forget the stamps' timeline (a new stream: first configure, or activation after a pause)."""
        self._last_stamp, self._last_recv, self._stamp_clock = None, 0.0, None
        with self._maps_lock:
            self._frames_for_maps.clear()
        if self.health is not None:
            self.health.extra["frame_time"] = "image stamps"

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
                self.get_logger().error(f"cannot use image on {self._image_topic}: {exc} "
                                        "(reported once per cause; see /diagnostics)")
            self._publish_diagnostics(only_if_worse=True)
            return
        h, w = bgr.shape[:2]
        if self._use_camera_info:
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
        if self._own_frame_maps:
            with self._maps_lock:
                frames = self._frames_for_maps
                frames[t] = (header, bgr, t_recv)
                while len(frames) > MAX_FRAMES_FOR_MAPS:  # reasoned never (replaced while waiting)
                    del frames[next(iter(frames))]

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
        for key, msg in self.outputs.build(header, result, bgr, options, with_maps=not self._own_frame_maps):
            pub = self.publishers_by_key.get(key)
            if pub is not None:
                pub.publish(msg)
        hri = self.hri
        if hri is not None:
            hri.publish(header, result, bgr)

    def _publish_frame_maps(self, maps) -> None:
        """One frame's maps from the background reasoning (its thread): published with that frame's
        header; frames before it that were never reasoned are forgotten."""
        with self._maps_lock:
            frames = self._frames_for_maps
            entry = frames.get(maps.timestamp_s)
            if entry is None:  # a frame of a stream before a reset
                return
            for t in [t for t in frames if t <= maps.timestamp_s]:
                del frames[t]
        if not self._accepting:  # deactivated while this frame was reasoned: its outputs are dropped
            return
        header, bgr, t_recv = entry
        publishers, health = self.publishers_by_key, self.health
        for key, msg in OutputBuilder.maps(header, maps, bgr, _ParamView(self)):
            pub = publishers.get(key)
            if pub is not None:
                pub.publish(msg)
        if health is not None:
            health.stages({"occlusion_mask_age": 0.0, "occlusion_maps_latency": (time.monotonic() - t_recv) * 1e3})


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
