"""occface_node on real rclpy (loopback DDS, random domain), with a stand-in pipeline (FakePipeline).

Exercises the ROS adapter itself: every topic with the input header, TF, diagnostics, encodings,
bad images, parameters, newest-frame-wins, lost tracks, camera_info, SIGINT shutdown of the
console script. test_ros_integration.py runs the same node with the real FacePipeline.
Every test has its own context, node and DDS domain (the `rig` fixture): any order works.
"""
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels not installed (make ros)")
pytest.importorskip("occface_msgs.msg", reason="interfaces not built (tools/build_interfaces.sh)")

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from geometry_msgs.msg import PoseArray  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from occface_msgs.msg import FaceArray  # noqa: E402
from occface_ros.ros.image_conversion import fill_image_msg  # noqa: E402
from occface_ros.ros.occface_node import OUTPUT_QOS, TF_QOS, OccfaceNode  # noqa: E402

from fakes import FakePipeline, SmoothingCall  # noqa: E402
from ros_support import Collector  # noqa: E402

pytestmark = pytest.mark.integration

NS = "/cam0/occface"
TOPICS = {
    "faces": (FaceArray, OUTPUT_QOS), "head_poses": (PoseArray, OUTPUT_QOS),
    "mesh_markers": (MarkerArray, OUTPUT_QOS), "occlusion_mask": (Image, OUTPUT_QOS),
    "parsing": (Image, OUTPUT_QOS), "debug_image": (Image, OUTPUT_QOS),
}
IMAGE_TOPICS = ("faces", "head_poses", "mesh_markers", "occlusion_mask", "parsing")


def header_of(msg):
    """The header of an output message (a MarkerArray's is its markers')."""
    if isinstance(msg, MarkerArray):
        return msg.markers[0].header if msg.markers else None
    return msg.header


def stamp_is(msg, stamp):
    h = header_of(msg)
    return h is not None and h.stamp == stamp


class Rig:
    def __init__(self):
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        overrides = [Parameter("diagnostics.input_rate_warn_hz", value=0.0),
                     Parameter("diagnostics.latency_warn_ms", value=2000.0),
                     Parameter("diagnostics.latency_error_ms", value=5000.0),
                     Parameter("diagnostics.drop_ratio_warn", value=0.0),
                     Parameter("diagnostics.drop_ratio_error", value=0.0),
                     Parameter("diagnostics.error_hold_s", value=1.0),
                     Parameter("diagnostics.period_s", value=0.25),
                     Parameter("mesh_max_triangles", value=200)]
        self.node = OccfaceNode("occface", pipeline_factory=FakePipeline, context=self.ctx, namespace="/cam0",
                                parameter_overrides=overrides)
        self.pipeline = self.node.pipeline
        self.tester = rclpy.create_node("occface_tester", context=self.ctx)
        topics = {f"{NS}/{k}": v for k, v in TOPICS.items()}
        topics["/tf"] = (TFMessage, TF_QOS)
        topics["/diagnostics"] = (DiagnosticArray, OUTPUT_QOS)
        self.col = Collector(self.tester, topics)
        self.pub = self.tester.create_publisher(Image, "/cam0/image", qos_profile_sensor_data)
        self.pub_info = self.tester.create_publisher(CameraInfo, "/cam0/camera_info", qos_profile_sensor_data)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.ctx)
        self.executor.add_node(self.node)
        self.executor.add_node(self.tester)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self.stamp = 1000
        deadline = time.monotonic() + 10
        while self.pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)

    def msgs(self, topic):
        return [m for m, _ in self.col.messages[topic]]

    def next_header(self, frame_id="cam0_optical"):
        self.stamp += 1
        h = Header(frame_id=frame_id)
        h.stamp.sec, h.stamp.nanosec = self.stamp, 123_000
        return h

    def publish(self, array, encoding="bgr8", header=None, mutate=None):
        header = header or self.next_header()
        msg = fill_image_msg(Image(), array, encoding, header)
        if mutate:
            mutate(msg)
        self.pub.publish(msg)
        return header

    def send(self, array, encoding="bgr8", topics=("faces",), timeout=5.0, tries=3):
        """Publish (again with a new stamp if best-effort lost it) until `topics` carry the stamp."""
        for _ in range(tries):
            header = self.publish(array, encoding)
            if self.col.wait_for(lambda m: all(any(stamp_is(x, header.stamp) for x, _ in m[f"{NS}/{t}"])
                                               for t in topics), timeout):
                return header
        raise AssertionError(f"no {topics} for the published image")

    def with_stamp(self, topic, header):
        return [m for m in self.msgs(f"{NS}/{topic}") if stamp_is(m, header.stamp)]

    def close(self):
        self.node.shutdown()  # the worker first: it publishes
        self.executor.shutdown()
        self.thread.join(5)
        self.node.destroy_node()
        self.tester.destroy_node()
        rclpy.shutdown(context=self.ctx)


@pytest.fixture
def rig(ros_env):
    r = Rig()
    yield r
    r.close()


@pytest.fixture(scope="module")
def photo():
    import cv2

    from occface_ros.app.samples import sample_path

    return cv2.imread(str(sample_path("skimage", "astronaut.png")))


def _level_by_name(diag):
    return {s.name.split(": ")[-1]: s for s in diag.status}


def test_every_output_carries_the_input_header(rig, photo):
    header = rig.send(photo[..., ::-1], "rgb8", topics=IMAGE_TOPICS)
    h, w = photo.shape[:2]
    for topic in IMAGE_TOPICS:
        (msg,) = rig.with_stamp(topic, header)
        assert header_of(msg) == header, topic
    (faces,) = rig.with_stamp("faces", header)
    assert len(faces.faces) == 1 and (faces.image_width, faces.image_height) == (w, h)
    face = faces.faces[0]
    assert face.tf_frame == f"face_{face.track_id}" and len(face.expression) == len(face.expression_names) == 5
    (poses,) = rig.with_stamp("head_poses", header)
    assert len(poses.poses) == 1 and poses.poses[0].position.z > 0
    for topic in ("occlusion_mask", "parsing"):
        (img,) = rig.with_stamp(topic, header)
        assert (img.encoding, img.height, img.width, img.step, len(img.data)) == ("mono8", h, w, w, h * w)
    (mask,) = rig.with_stamp("occlusion_mask", header)
    assert not np.frombuffer(bytes(mask.data), np.uint8).any()  # this pipeline gives no mask: zeros (documented)
    (parsing,) = rig.with_stamp("parsing", header)
    labels = np.frombuffer(bytes(parsing.data), np.uint8)
    assert set(np.unique(labels).tolist()) == set(range(10))  # landmark-polygon parsing: background + 9 face labels
    (markers,) = rig.with_stamp("mesh_markers", header)
    (mk,) = [m for m in markers.markers if m.action == Marker.ADD]
    assert mk.type == Marker.TRIANGLE_LIST and mk.id == face.track_id and mk.ns == "occface_mesh"
    assert all(m.header == header for m in markers.markers)
    assert 0 < len(mk.points) <= 3 * 200 and len(mk.points) % 3 == 0 and len(mk.colors) == len(mk.points)
    assert not rig.msgs(f"{NS}/debug_image")  # off by default
    assert rig.col.wait_for(lambda m: any(t.header.stamp == header.stamp for x, _ in m["/tf"] for t in x.transforms),
                            5)
    tfs = [t for x in rig.msgs("/tf") for t in x.transforms if t.header.stamp == header.stamp]
    own = [(t.header.frame_id, t.child_frame_id) for t in tfs if t.child_frame_id == face.tf_frame]
    assert own == [("cam0_optical", face.tf_frame)]  # the node's frame; REP-155's face_f<id>/gaze_f<id> beside it
    assert {t.child_frame_id for t in tfs} - {face.tf_frame} <= {f"face_f{face.track_id}", f"gaze_f{face.track_id}"}


@pytest.mark.parametrize("encoding", ["bgr8", "bgra8", "rgba8", "mono8", "mono16"])
def test_encodings_reach_the_pipeline(rig, photo, encoding):
    import cv2

    src = {"bgr8": photo, "bgra8": cv2.cvtColor(photo, cv2.COLOR_BGR2BGRA),
           "rgba8": cv2.cvtColor(photo, cv2.COLOR_BGR2RGBA), "mono8": cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY),
           "mono16": cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257}[encoding]
    header = rig.send(src, encoding)
    (faces,) = rig.with_stamp("faces", header)
    assert len(faces.faces) == 1
    shape, t = rig.pipeline.processed[-1]
    assert shape == photo.shape and t == pytest.approx(header.stamp.sec + header.stamp.nanosec * 1e-9)


def test_bad_images_give_diagnostics_error_and_the_node_keeps_serving(rig, photo):
    small = photo[::4, ::4].copy()
    cases = {
        "unsupported_encoding": lambda m: setattr(m, "encoding", "yuv422"),
        "wrong_step": lambda m: setattr(m, "step", 7),
        "truncated_buffer": lambda m: setattr(m, "data", bytes(m.data)[:1000]),
    }
    for cause, mutate in cases.items():
        rig.col.clear()
        seen = False
        for _ in range(3):  # best effort: resend if the bad frame itself was lost
            rig.publish(small, "bgr8", mutate=mutate)
            seen = rig.col.wait_for(lambda m: any(
                s.level == DiagnosticStatus.ERROR and cause in s.message for d, _ in m["/diagnostics"] for s in d.status),
                3)
            if seen:
                break
        assert seen, f"no diagnostics ERROR for {cause}"
        assert not rig.msgs(f"{NS}/faces")  # nothing published for the bad frame
        header = rig.send(small)  # the next good frame is served
        assert len(rig.with_stamp("faces", header)[0].faces) == 1
    assert rig.node.health.totals["image_errors"] >= 3


def test_diagnostics_ok_when_healthy(rig, photo):
    for _ in range(3):
        rig.send(photo[::2, ::2].copy())
    assert rig.col.wait_for(lambda m: len(m["/diagnostics"]) >= 2, 5)
    diag = rig.msgs("/diagnostics")[-1]
    st = _level_by_name(diag)
    assert set(st) == {"input", "processing"}
    assert all(s.level == DiagnosticStatus.OK for s in st.values()), [(s.name, s.message) for s in diag.status]
    values = {kv.key: kv.value for kv in st["processing"].values}
    assert float(values["output_rate_hz"]) > 0 and "stage.fit_ms_p50" in values
    assert st["input"].hardware_id == "cam0_optical"


def test_parameters_runtime_smoothing_and_rejections(rig, photo):
    ok = rig.node.set_parameters([Parameter("smoothing.min_cutoff", value=2.5), Parameter("smoothing.beta", value=0.3)])
    assert all(r.successful for r in ok)
    rig.send(photo[::4, ::4].copy())
    # one call between frames with both changes; d_cutoff and noise_deadzone as configured
    assert rig.pipeline.smoothing_calls == [SmoothingCall(2.5, 0.3, 0.5, 3.0, True)]
    assert rig.node.set_parameters([Parameter("smoothing.noise_deadzone", value=1.5),
                                    Parameter("smoothing.enabled", value=False)])[0].successful
    rig.send(photo[::4, ::4].copy())
    assert rig.pipeline.smoothing_calls[-1] == SmoothingCall(2.5, 0.3, 0.5, 1.5, False)
    bad = rig.node.set_parameters([Parameter("smoothing.noise_deadzone", value=-0.5)])[0]
    assert not bad.successful and "smoothing.noise_deadzone must be >= 0" in bad.reason
    bad = rig.node.set_parameters([Parameter("smoothing.beta", value=-1.0)])[0]
    assert not bad.successful and "smoothing.beta must be >= 0" in bad.reason
    bad = rig.node.set_parameters([Parameter("smoothing.min_cutoff", value=0.0)])[0]
    assert not bad.successful and "> 0" in bad.reason
    bad = rig.node.set_parameters([Parameter("detection.max_faces", value=2)])[0]
    assert not bad.successful and "read-only" in bad.reason
    bad = rig.node.set_parameters([Parameter("mesh_max_triangles", value=-3)])[0]
    assert not bad.successful and "mesh_max_triangles" in bad.reason
    bad = rig.node.set_parameters([Parameter("smoothing.beta", value="high")])[0]
    assert not bad.successful
    assert rig.node.get_parameter("smoothing.beta").value == 0.3
    # live defaults of the node (config/occface.yaml has the file-processing ones)
    assert rig.node.get_parameter("occlusion.background").value is True
    assert rig.node._config["occlusion"]["background"] is True


def test_lost_track_deletes_marker_and_debug_image(rig, photo):
    header = rig.send(photo[::4, ::4].copy(), topics=("faces", "mesh_markers"))
    tid = rig.with_stamp("faces", header)[0].faces[0].track_id
    header = rig.send(np.zeros((64, 80, 3), np.uint8), topics=("faces", "mesh_markers"))
    (faces,) = rig.with_stamp("faces", header)
    assert faces.faces == [] and list(faces.lost_track_ids) == [tid]
    (markers,) = rig.with_stamp("mesh_markers", header)
    assert [(m.action, m.id) for m in markers.markers] == [(Marker.DELETE, tid)]
    rig.node.set_parameters([Parameter("publish_debug_image", value=True)])
    header = rig.send(photo[::4, ::4].copy(), topics=("faces", "debug_image"))
    (dbg,) = rig.with_stamp("debug_image", header)
    assert dbg.encoding == "bgr8" and (dbg.height, dbg.width) == photo[::4, ::4].shape[:2]


def test_camera_info_sets_intrinsics(rig, photo):
    small = photo[::4, ::4].copy()
    h, w = small.shape[:2]
    info = CameraInfo(width=w, height=h)
    info.k = [200.0, 0.0, w / 2, 0.0, 200.0, h / 2, 0.0, 0.0, 1.0]
    deadline = time.monotonic() + 5
    while rig.node._camera_info is None and time.monotonic() < deadline:
        rig.pub_info.publish(info)
        time.sleep(0.05)
    rig.send(small)
    rig.send(small)
    # given once (not again for the same K), and the projection uses it
    assert len(rig.pipeline.camera_matrices) == 1
    assert np.allclose(rig.pipeline.camera_matrices[0], np.reshape(info.k, (3, 3)))


def test_newest_frame_wins_and_drops_are_counted(rig, photo):
    small = photo[::4, ::4].copy()
    dropped0, processed0 = rig.node.health.totals["dropped"], len(rig.pipeline.processed)
    rig.pipeline.delay_s = 0.15
    headers = []
    for _ in range(12):
        headers.append(rig.publish(small))
        time.sleep(0.02)
    last = headers[-1]
    assert rig.col.wait_for(lambda m: any(x.header.stamp == last.stamp for x, _ in m[f"{NS}/faces"]), 5)
    assert rig.node.health.totals["dropped"] > dropped0
    assert len(rig.pipeline.processed) - processed0 < 12
    assert rig.pipeline.processed[-1][1] == pytest.approx(last.stamp.sec + last.stamp.nanosec * 1e-9)


def test_stamps_going_backwards_reset_tracks(rig, photo):
    small = photo[::4, ::4].copy()
    first = rig.send(small)
    tid = rig.with_stamp("faces", first)[0].faces[0].track_id
    assert rig.pipeline.resets == 0
    h = Header(frame_id="cam0_optical")
    h.stamp.sec = 5  # far behind the previous frame
    rig.publish(small, header=h)
    assert rig.col.wait_for(lambda m: any(x.header.stamp == h.stamp for x, _ in m[f"{NS}/faces"]), 5)
    assert rig.pipeline.resets == 1
    (faces,) = rig.with_stamp("faces", h)
    assert faces.faces[0].track_id != tid  # a new track after the reset
    assert rig.col.wait_for(lambda m: any(  # the old mesh markers are cleared
        mk.action == Marker.DELETEALL for x, _ in m[f"{NS}/mesh_markers"] for mk in x.markers), 5)


def _zero_stamp_header():
    return Header(frame_id="cam0_optical")  # stamp 0.0: a driver that does not stamp


def test_zero_stamps_use_one_node_clock_and_never_reset_the_tracks(rig, photo):
    """A zero stamp used to become wall time (~1.8e9 s) and the next real stamp (1001 s here) looked
    like time going backwards: tracks reset. Now the node keeps one monotonic clock from then on."""
    small = photo[::4, ::4].copy()
    first = rig.send(small)
    tid = rig.with_stamp("faces", first)[0].faces[0].track_id
    for header in [None, _zero_stamp_header(), None, None, _zero_stamp_header(), None]:
        header = header or rig.next_header()
        rig.publish(small, header=header)
        assert rig.col.wait_for(lambda m: any(stamp_is(x, header.stamp) for x, _ in m[f"{NS}/faces"]), 5)
        (faces,) = rig.with_stamp("faces", header)[-1:]
        assert faces.header == header  # outputs still carry the input header, zero stamp included
        assert [f.track_id for f in faces.faces] == [tid]
        time.sleep(0.05)
    times = [t for _, t in rig.pipeline.processed]
    assert rig.pipeline.resets == 0 and all(b > a for a, b in zip(times, times[1:])), times
    assert times[-1] - times[0] < 10  # continues the stamps' timeline (no jump to wall time)
    assert not rig.col.wait_for(lambda m: any(mk.action == Marker.DELETEALL for x, _ in m[f"{NS}/mesh_markers"]
                                              for mk in x.markers), 0.3)


def test_a_frame_failing_in_the_pipeline_resets_it_and_logs_one_line(rig, photo, capfd):
    small = photo[::4, ::4].copy()
    first = rig.send(small, topics=("faces", "mesh_markers"))
    tid = rig.with_stamp("faces", first)[0].faces[0].track_id
    for _ in range(2):  # the same failure twice: one log line (throttled), a reset each time
        rig.pipeline.fail_next = RuntimeError("landmarks diverged")
        failed = rig.publish(small)
        deadline = time.monotonic() + 5
        while rig.pipeline.fail_next is not None and time.monotonic() < deadline:
            rig.publish(small)  # best effort: resend until the failing frame was taken
            time.sleep(0.05)
        assert rig.pipeline.fail_next is None
    assert rig.col.wait_for(lambda m: any(mk.action == Marker.DELETEALL for x, _ in m[f"{NS}/mesh_markers"]
                                          for mk in x.markers), 5)
    assert rig.pipeline.resets == 2
    header = rig.send(small)  # the next frame is served, on a clean pipeline: a new track
    (faces,) = rig.with_stamp("faces", header)
    assert len(faces.faces) == 1 and faces.faces[0].track_id != tid
    assert rig.col.wait_for(lambda m: any(s.level == DiagnosticStatus.ERROR and "pipeline_RuntimeError" in s.message
                                          for d, _ in m["/diagnostics"] for s in d.status), 3)
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if "failed in the pipeline" in ln]
    assert len(lines) == 1 and "RuntimeError: landmarks diverged" in lines[0] and "tracks reset" in lines[0], err
    assert "Traceback" not in err
    del failed


def test_bad_input_does_not_flood_diagnostics(rig, photo):
    """100 malformed images in 1 s: /diagnostics keeps its period (one immediate publish when the
    level rises), and the message names one cause plus a count."""
    assert rig.node.set_parameters([Parameter("diagnostics.period_s", value=1.0)])[0].successful
    small = photo[::8, ::8].copy()
    rig.send(small)
    time.sleep(1.2)
    rig.col.clear()
    errors0 = rig.node.health.totals["image_errors"]
    t_start = time.time()
    for k in range(100):
        cut = (lambda m: setattr(m, "data", bytes(m.data)[:100])) if k % 2 else (lambda m: setattr(m, "step", 7))
        rig.publish(small, mutate=cut)
        time.sleep(max(0.0, t_start + (k + 1) * 0.01 - time.time()))
    t_end = time.time()
    time.sleep(0.3)
    assert rig.node.health.totals["image_errors"] - errors0 >= 50  # most bad frames reached the node
    during = [d for d, t in rig.col.messages["/diagnostics"] if t_start <= t <= t_start + 1.0]
    assert 1 <= len(during) <= 3, f"{len(during)} /diagnostics in the second of {t_end - t_start:.2f} s of bad input"
    inp = _level_by_name(during[-1])["input"]
    assert inp.level == DiagnosticStatus.ERROR
    assert ";" not in inp.message and "(+1 more, see values)" in inp.message, inp.message


SIGINT_SCRIPT = """
import sys
from fakes import FakePipeline
from occface_ros.ros.node import main
sys.exit(main(pipeline_factory=FakePipeline))
"""


def test_console_entry_takes_ros_args_and_exits_cleanly_on_sigint(ros_env):
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGINT_SCRIPT, "--ros-args", "-r", "__node:=occ_sig", "-r", "image:=/sig/image",
         "-p", "mesh_max_triangles:=100"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "ready:" in line or not line:
                break
        assert any("ready: image=/sig/image" in ln for ln in lines), "".join(lines)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out
