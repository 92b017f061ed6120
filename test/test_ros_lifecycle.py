"""OccfaceNode as a managed (lifecycle) node on real rclpy (loopback DDS, random domain): every
transition requested over its `~/change_state` service from a second node (lifecycle_msgs), what
each state does (inactive: no outputs, models kept; active: outputs), a configure that fails
(invalid parameter; the real pipeline with a corrupt model file) leaving it unconfigured with the
reason in the log and on /diagnostics, and autostart false. docs/ros.md, "Lifecycle"."""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels not installed (make ros)")
pytest.importorskip("occface_msgs.msg", reason="interfaces not built (tools/build_interfaces.sh)")
pytest.importorskip("lifecycle_msgs.srv", reason="lifecycle_msgs not installed (requirements/ros.txt)")

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from occface_msgs.msg import FaceArray  # noqa: E402
from occface_ros.ros.image_conversion import fill_image_msg  # noqa: E402
from occface_ros.ros.occface_node import OUTPUT_QOS, OccfaceNode  # noqa: E402

from fakes import FakePipeline  # noqa: E402
from ros_support import Collector  # noqa: E402

pytestmark = pytest.mark.integration

NS, NAME = "/lc", "occface"
NODE = f"{NS}/{NAME}"
FRAME = np.full((64, 80, 3), 128, np.uint8)
NO_OUTPUT_WAIT_S = 1.0  # "nothing published": nothing within this long after an image


class Manager:
    """A second node (as `ros2 lifecycle` or a lifecycle manager): change_state / get_state clients, an
    image publisher and collectors for ~/faces and /diagnostics; spun with `node` (if any) in one executor."""

    def __init__(self, ctx, node=None, target=NODE, services_within_s=10.0):
        self.ctx, self.node = ctx, node
        self.tester = rclpy.create_node("lifecycle_manager", context=ctx)
        self.change = self.tester.create_client(ChangeState, f"{target}/change_state")
        self.get = self.tester.create_client(GetState, f"{target}/get_state")
        self.col = Collector(self.tester, {f"{target}/faces": (FaceArray, OUTPUT_QOS),
                                           "/diagnostics": (DiagnosticArray, OUTPUT_QOS)})
        self.faces_topic = f"{target}/faces"
        self.pub = self.tester.create_publisher(Image, f"{NS}/image", qos_profile_sensor_data)
        self.executor = MultiThreadedExecutor(num_threads=2, context=ctx)
        for n in (node, self.tester):
            if n is not None:
                self.executor.add_node(n)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        assert self.change.wait_for_service(services_within_s) and self.get.wait_for_service(services_within_s), \
            "no lifecycle services"
        self.stamp = 100

    def _call(self, client, request, timeout_s=60.0):
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        assert done.wait(timeout_s), f"no answer from {client.srv_name}"
        return future.result()

    def state(self) -> str:
        return self._call(self.get, GetState.Request()).current_state.label

    def transition(self, transition_id: int = 0, label: str = "") -> bool:
        return self._call(self.change, ChangeState.Request(transition=Transition(id=transition_id, label=label))).success

    def publish(self):
        self.stamp += 1
        header = Header(frame_id="lc_optical")
        header.stamp.sec = self.stamp
        self.pub.publish(fill_image_msg(Image(), FRAME, "bgr8", header))
        return header

    def answered(self, header, timeout_s) -> bool:
        return self.col.wait_for(lambda m: any(f.header.stamp == header.stamp for f, _ in m[self.faces_topic]),
                                 timeout_s)

    def serves(self, tries=3, timeout_s=5.0) -> bool:
        """A frame comes back on ~/faces (sent again with a new stamp if best effort lost it)."""
        deadline = time.monotonic() + 10
        while self.pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        return any(self.answered(self.publish(), timeout_s) for _ in range(tries))

    def subscribers(self, expected: int, timeout_s=5.0) -> int:
        """The image topic's subscription count once it equals `expected` (graph updates take a moment)."""
        deadline = time.monotonic() + timeout_s
        while self.pub.get_subscription_count() != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.pub.get_subscription_count()

    def lifecycle_status(self, predicate, timeout_s=5.0):
        """The newest `<node>: lifecycle` status on /diagnostics that satisfies `predicate`, or None."""
        def find(m):
            return [s for d, _ in m["/diagnostics"] for s in d.status
                    if s.name == f"{NODE}: lifecycle" and predicate(s)]
        return find(self.col.messages)[-1] if self.col.wait_for(lambda m: find(m), timeout_s) else None

    def close(self):
        if self.node is not None:
            self.node.shutdown()
        self.executor.shutdown()
        self.thread.join(5)
        if self.node is not None:
            self.node.destroy_node()
        self.tester.destroy_node()


@pytest.fixture
def ctx(ros_env):
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


def make_node(ctx, factory=FakePipeline, **overrides):
    params = [Parameter("autostart", value=False), Parameter("use_camera_info", value=False),
              Parameter("diagnostics.period_s", value=0.25), Parameter("diagnostics.input_rate_warn_hz", value=0.0)]
    params += [Parameter(k.replace("__", "."), value=v) for k, v in overrides.items()]
    return OccfaceNode(NAME, pipeline_factory=factory, context=ctx, namespace=NS, parameter_overrides=params)


def test_every_transition_over_the_services(ctx):
    node = make_node(ctx)
    mgr = Manager(ctx, node)
    try:
        # autostart false: unconfigured, nothing built or subscribed, only config_file/autostart declared
        assert mgr.state() == "unconfigured"
        assert node.pipeline is None and not node.has_parameter("detection.max_faces")
        assert mgr.subscribers(0) == 0
        assert mgr.lifecycle_status(lambda s: s.level == DiagnosticStatus.OK and "unconfigured" in s.message)
        assert not mgr.transition(Transition.TRANSITION_ACTIVATE)  # not from unconfigured
        assert mgr.state() == "unconfigured"

        assert mgr.transition(Transition.TRANSITION_CONFIGURE)
        assert mgr.state() == "inactive"
        pipeline = node.pipeline
        assert isinstance(pipeline, FakePipeline) and node.has_parameter("detection.max_faces")
        time.sleep(0.3)  # a subscription would be in the graph by now (one participant per context)
        assert node.sub_image is None and mgr.tester.count_subscribers(f"{NS}/image") == 0
        assert mgr.tester.count_publishers(mgr.faces_topic) == 1
        assert not mgr.answered(mgr.publish(), NO_OUTPUT_WAIT_S) and not pipeline.processed  # inactive: no outputs
        assert mgr.lifecycle_status(lambda s: "inactive" in s.message and s.level == DiagnosticStatus.OK)

        assert mgr.transition(Transition.TRANSITION_ACTIVATE)
        assert mgr.state() == "active"
        assert mgr.serves()
        assert mgr.col.wait_for(lambda m: any(s.name == f"{NODE}: processing" for d, _ in m["/diagnostics"]
                                              for s in d.status), 5)  # active: the health statuses

        assert mgr.transition(Transition.TRANSITION_DEACTIVATE)
        assert mgr.state() == "inactive"
        assert mgr.subscribers(0) == 0
        processed = len(pipeline.processed)
        assert not mgr.answered(mgr.publish(), NO_OUTPUT_WAIT_S) and len(pipeline.processed) == processed
        assert node.pipeline is pipeline and not pipeline.closed  # models kept

        assert mgr.transition(Transition.TRANSITION_ACTIVATE)
        assert mgr.serves()
        assert node.pipeline is pipeline and pipeline.resets == 1  # the same models; a fresh stream after the pause
        assert not mgr.transition(Transition.TRANSITION_CLEANUP)  # not from active
        assert mgr.transition(Transition.TRANSITION_DEACTIVATE)

        assert mgr.transition(Transition.TRANSITION_CLEANUP)
        assert mgr.state() == "unconfigured"
        assert pipeline.closed and node.pipeline is None and node._worker is None
        deadline = time.monotonic() + 5
        while mgr.tester.count_publishers(mgr.faces_topic) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mgr.tester.count_publishers(mgr.faces_topic) == 0  # output publishers released
        assert node.has_parameter("detection.max_faces")  # parameters stay declared

        assert mgr.transition(Transition.TRANSITION_CONFIGURE)  # again: declared once, no error
        assert node.pipeline is not pipeline and mgr.state() == "inactive"
        assert mgr.transition(label="shutdown")  # as `ros2 lifecycle set <node> shutdown`
        assert mgr.state() == "finalized"
        assert node.pipeline is None and mgr.subscribers(0) == 0
    finally:
        mgr.close()


def test_configure_only_parameters_change_while_unconfigured(ctx):
    node = make_node(ctx)
    mgr = Manager(ctx, node)
    try:
        assert mgr.transition(Transition.TRANSITION_CONFIGURE)
        bad = node.set_parameters([Parameter("detection.max_faces", value=3)])[0]
        assert not bad.successful and "read-only while the node is inactive" in bad.reason
        assert node.set_parameters([Parameter("smoothing.beta", value=0.3)])[0].successful  # run time
        assert mgr.transition(Transition.TRANSITION_CLEANUP)
        assert node.set_parameters([Parameter("detection.max_faces", value=3)])[0].successful
        assert mgr.transition(Transition.TRANSITION_CONFIGURE)
        assert node.pipeline.config["detection"]["max_faces"] == 3
        assert node.pipeline.config["smoothing"]["beta"] == 0.3
    finally:
        mgr.close()


def test_invalid_parameter_fails_configure_then_a_fix_configures(ctx, capfd):
    node = make_node(ctx, smoothing__beta=-1.0)
    mgr = Manager(ctx, node)
    try:
        assert not mgr.transition(Transition.TRANSITION_CONFIGURE)
        assert mgr.state() == "unconfigured" and node.pipeline is None
        status = mgr.lifecycle_status(lambda s: s.level == DiagnosticStatus.ERROR)
        assert status is not None and "configure failed" in status.message
        assert "smoothing.beta must be >= 0" in status.message
        err = capfd.readouterr().err
        lines = [ln for ln in err.splitlines() if "configure failed" in ln]
        assert len(lines) == 1 and "smoothing.beta must be >= 0" in lines[0] and "Traceback" not in err, err
        assert node.set_parameters([Parameter("smoothing.beta", value=0.2)])[0].successful
        assert mgr.transition(Transition.TRANSITION_CONFIGURE) and mgr.state() == "inactive"
        assert mgr.lifecycle_status(lambda s: s.level == DiagnosticStatus.OK and "inactive" in s.message)
    finally:
        mgr.close()


def test_autostart_from_config_file(ctx, tmp_path):
    f = tmp_path / "node.yaml"
    f.write_text("occface:\n  ros__parameters:\n    autostart: false\n")
    node = OccfaceNode(NAME, pipeline_factory=FakePipeline, context=ctx, namespace=NS,
                       parameter_overrides=[Parameter("config_file", value=str(f))])
    mgr = Manager(ctx, node)
    try:
        assert mgr.state() == "unconfigured" and node.pipeline is None
        assert mgr.transition(Transition.TRANSITION_CONFIGURE) and mgr.transition(Transition.TRANSITION_ACTIVATE)
        assert mgr.serves()
    finally:
        mgr.close()


def test_default_autostart_is_active(ctx):
    node = OccfaceNode(NAME, pipeline_factory=FakePipeline, context=ctx, namespace=NS,
                       parameter_overrides=[Parameter("use_camera_info", value=False)])
    mgr = Manager(ctx, node)
    try:
        assert node.get_parameter("autostart").value is True
        assert mgr.state() == "active" and mgr.serves()
    finally:
        mgr.close()


def _real_pipeline_or_skip():
    try:
        from occface_ros.ros.pipeline_protocol import default_pipeline_factory

        return default_pipeline_factory()
    except Exception as exc:  # noqa: BLE001 - the core cannot be imported here: nothing to test
        pytest.skip(f"core pipeline not importable: {exc}")


@pytest.mark.slow
def test_real_pipeline_corrupt_model_fails_configure_then_recovers(ctx, tmp_path, capfd):
    """The real FacePipeline with model.path at a corrupt file: configure fails with the loader's
    reason (log and /diagnostics), the node stays unconfigured; model.path reset while unconfigured
    (default search), configure builds the real pipeline."""
    factory = _real_pipeline_or_skip()
    corrupt = tmp_path / "ict_face_light.npz"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    node = make_node(ctx, factory=factory, model__path=str(corrupt))
    mgr = Manager(ctx, node)
    try:
        assert not mgr.transition(Transition.TRANSITION_CONFIGURE)
        assert mgr.state() == "unconfigured" and node.pipeline is None
        status = mgr.lifecycle_status(lambda s: s.level == DiagnosticStatus.ERROR)
        assert status is not None and str(corrupt) in status.message and "MissingModelError" in status.message
        assert {kv.key: kv.value for kv in status.values}["lifecycle_state"] == "unconfigured"
        err = capfd.readouterr().err
        lines = [ln for ln in err.splitlines() if "configure failed" in ln]
        assert len(lines) == 1 and str(corrupt) in lines[0] and "Traceback" not in err, err
        assert node.set_parameters([Parameter("model.path", value="")])[0].successful
        assert mgr.transition(Transition.TRANSITION_CONFIGURE), capfd.readouterr().err
        assert mgr.state() == "inactive" and type(node.pipeline).__name__ == "FacePipeline"
        assert mgr.lifecycle_status(lambda s: s.level == DiagnosticStatus.OK and "inactive" in s.message)
    finally:
        mgr.close()


@pytest.mark.slow
def test_console_node_with_a_corrupt_model_stays_up_unconfigured(ros_env, tmp_path):
    """`occface-node` whose configure fails keeps running (never a dead process): unconfigured, the
    reason in its log; SIGINT still exits 0."""
    _real_pipeline_or_skip()
    corrupt = tmp_path / "ict_face_light.npz"
    corrupt.write_bytes(b"not a zip archive" * 100)
    proc = subprocess.Popen(
        [sys.executable, "-m", "occface_ros.ros.node", "--ros-args", "-r", f"__ns:={NS}", "-r", f"__node:={NAME}",
         "-p", f"model.path:={corrupt}"],
        env=dict(os.environ, **ros_env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out: list[str] = []
    threading.Thread(target=lambda: [out.append(ln) for ln in proc.stdout], daemon=True).start()
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    mgr = None
    try:
        mgr = Manager(ctx, services_within_s=60.0)
        deadline = time.monotonic() + 60
        while not any("configure failed" in ln for ln in out) and time.monotonic() < deadline:
            assert proc.poll() is None, "".join(out)
            time.sleep(0.1)
        assert mgr.state() == "unconfigured", "".join(out)
        time.sleep(0.5)
        assert proc.poll() is None, "".join(out)
        assert mgr.lifecycle_status(lambda s: s.level == DiagnosticStatus.ERROR and str(corrupt) in s.message)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0, "".join(out)
    finally:
        if mgr is not None:
            mgr.close()
        rclpy.try_shutdown(context=ctx)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    failed = [ln for ln in out if "configure failed" in ln]
    assert len(failed) == 1 and "MissingModelError" in failed[0], "".join(out)
    assert not any("Traceback" in ln for ln in out), "".join(out)


def test_rep155_faces_follow_the_lifecycle(ctx):
    """Active: /humans/faces/tracked lists the tracked face and its per-face topics exist; deactivate
    says no face is tracked and removes them; publish_hri false publishes none."""
    pytest.importorskip("hri_msgs.msg", reason="hri_msgs not built (tools/build_interfaces.sh)")
    from hri_msgs.msg import IdsList

    from occface_ros.ros.hri import TRACKED_TOPIC

    node = make_node(ctx)
    mgr = Manager(ctx, node)
    tracked = Collector(mgr.tester, {TRACKED_TOPIC: (IdsList, OUTPUT_QOS)})
    try:
        assert mgr.transition(Transition.TRANSITION_CONFIGURE) and mgr.transition(Transition.TRANSITION_ACTIVATE)
        assert mgr.serves()
        assert tracked.wait_for(lambda m: any(list(msg.ids) == ["f1"] for msg, _ in m[TRACKED_TOPIC]), 5)
        deadline = time.monotonic() + 5  # the ids go out before the per-face topics are made
        while node.hri.face_ids != ["f1"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert node.hri.face_ids == ["f1"]
        while mgr.tester.count_publishers("/humans/faces/f1/roi") != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert mgr.tester.count_publishers("/humans/faces/f1/roi") == 1
        assert mgr.transition(Transition.TRANSITION_DEACTIVATE)
        assert tracked.wait_for(lambda m: list(m[TRACKED_TOPIC][-1][0].ids) == [], 5)
        assert node.hri is None
        time.sleep(0.3)
        assert mgr.tester.count_publishers("/humans/faces/f1/roi") == 0
        assert mgr.transition(Transition.TRANSITION_CLEANUP)
        node.set_parameters([Parameter("publish_hri", value=False)])
        assert mgr.transition(Transition.TRANSITION_CONFIGURE) and mgr.transition(Transition.TRANSITION_ACTIVATE)
        assert mgr.serves() and node.hri is None
    finally:
        mgr.close()


def test_repeated_cycles_keep_the_executor_spinning(ctx):
    """Twenty configure/activate/serve/deactivate/cleanup cycles (publishers, the image subscription
    and REP-155 per-face topics made and destroyed each time) while a two-thread executor spins:
    the executor thread survives and every transition is answered (rclpy's event handlers made a
    destroyed publisher kill the spin thread, ros2/rclpy#1284)."""
    node = make_node(ctx)
    mgr = Manager(ctx, node)
    try:
        for cycle in range(20):
            assert mgr.transition(Transition.TRANSITION_CONFIGURE), cycle
            assert mgr.transition(Transition.TRANSITION_ACTIVATE), cycle
            assert mgr.serves(), cycle
            assert mgr.transition(Transition.TRANSITION_DEACTIVATE), cycle
            assert mgr.transition(Transition.TRANSITION_CLEANUP), cycle
            assert mgr.thread.is_alive(), f"executor thread died in cycle {cycle}"
        assert mgr.state() == "unconfigured"
    finally:
        mgr.close()


def test_deoccluded_image_topic_is_opt_in_and_turns_deocclusion_on(ctx):
    """publish_deoccluded_image (configure-time): the pipeline is built with occlusion.deocclude on and
    ~/deoccluded_image carries each frame's header (the frame itself when nothing was filled); off
    by default: nothing on that topic."""
    off = make_node(ctx)
    mgr = Manager(ctx, off)
    try:
        col = Collector(mgr.tester, {f"{NODE}/deoccluded_image": (Image, OUTPUT_QOS)})
        assert mgr.transition(Transition.TRANSITION_CONFIGURE) and mgr.transition(Transition.TRANSITION_ACTIVATE)
        assert off.pipeline.config["occlusion"]["deocclude"] is False
        assert mgr.serves()
        assert not col.wait_for(lambda m: m[f"{NODE}/deoccluded_image"], NO_OUTPUT_WAIT_S)
    finally:
        mgr.close()

    on = make_node(ctx, publish_deoccluded_image=True)
    mgr = Manager(ctx, on)
    try:
        col = Collector(mgr.tester, {f"{NODE}/deoccluded_image": (Image, OUTPUT_QOS)})
        assert mgr.transition(Transition.TRANSITION_CONFIGURE) and mgr.transition(Transition.TRANSITION_ACTIVATE)
        assert on.pipeline.config["occlusion"]["deocclude"] is True
        assert mgr.serves()
        assert col.wait_for(lambda m: m[f"{NODE}/deoccluded_image"], 5)
        msg, _ = col.messages[f"{NODE}/deoccluded_image"][-1]
        assert (msg.height, msg.width, msg.encoding) == (*FRAME.shape[:2], "bgr8")
        assert np.array_equal(np.frombuffer(bytes(msg.data), np.uint8).reshape(FRAME.shape), FRAME)
        # configure-time: refused while configured
        assert not on.set_parameters([Parameter("publish_deoccluded_image", value=False)])[0].successful
    finally:
        mgr.close()
