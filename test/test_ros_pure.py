"""ROS layer pieces without a running ROS graph: image conversion, parsing, LOD, messages, diagnostics, params."""
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels not installed (make ros)")
pytest.importorskip("occface_msgs.msg", reason="interfaces not built (tools/build_interfaces.sh)")

from rclpy.serialization import deserialize_message  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from occface_ros.core.labels import LABEL_IDS  # noqa: E402
from occface_ros.render.parsing import landmark_parsing  # noqa: E402
from occface_ros.ros import messages as M  # noqa: E402
from occface_ros.ros.diagnostics import ERROR, OK, WARN, Health, Thresholds  # noqa: E402
from occface_ros.ros.image_conversion import (  # noqa: E402
    ImageConversionError,
    fill_image_msg,
    image_msg_to_bgr8,
    image_to_array,
)
from occface_ros.ros.mesh_lod import simplify  # noqa: E402
from occface_ros.ros.params import (  # noqa: E402
    NODE_DEFAULTS,
    core_defaults,
    core_overrides,
    read_config_file,
    validate_value,
)
from occface_ros.ros.parsing import (  # noqa: E402
    occlusion_mask_image,
    parsing_image,
    region_occlusion,
)

from fakes import FakePipeline  # noqa: E402

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def photo():
    import cv2

    from occface_ros.app.samples import sample_path

    return cv2.imread(str(sample_path("skimage", "astronaut.png")))


def _msg(array, encoding):
    return fill_image_msg(Image(), array, encoding, Header(frame_id="cam"))


@pytest.mark.parametrize("encoding", ["bgr8", "rgb8", "bgra8", "rgba8", "mono8", "mono16"])
def test_image_round_trip_every_encoding(photo, encoding):
    import cv2

    src = {
        "bgr8": photo, "rgb8": photo[..., ::-1], "bgra8": cv2.cvtColor(photo, cv2.COLOR_BGR2BGRA),
        "rgba8": cv2.cvtColor(photo, cv2.COLOR_BGR2RGBA), "mono8": cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY),
        "mono16": cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257,
    }[encoding]
    msg = _msg(src, encoding)
    assert msg.step == src.shape[1] * (1 if src.ndim == 2 else src.shape[2]) * src.dtype.itemsize
    out = image_msg_to_bgr8(msg)
    assert out.shape == photo.shape and out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
    if encoding in ("mono8", "mono16"):
        assert np.array_equal(out[..., 0], cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY))
    else:
        assert np.array_equal(out, photo)


def test_padded_step_and_big_endian_mono16():
    a = (np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4)
    msg = Image(height=3, width=4, encoding="mono16", is_bigendian=1, step=10)  # 2 bytes of padding per row
    rows = [np.concatenate([r.astype(">u2").view(np.uint8), np.zeros(2, np.uint8)]) for r in a]
    msg.data = np.concatenate(rows).tobytes()
    assert np.array_equal(image_to_array(msg), a)
    padded = np.zeros((3, 4 * 3 + 4), np.uint8)
    padded[:, :12] = np.arange(36, dtype=np.uint8).reshape(3, 12)
    m2 = Image(height=3, width=4, encoding="rgb8", step=16, data=padded.tobytes())
    assert np.array_equal(image_to_array(m2).reshape(3, 12), padded[:, :12])


@pytest.mark.parametrize("mutate,cause", [
    (lambda m: setattr(m, "encoding", "yuv422"), "unsupported_encoding"),
    (lambda m: setattr(m, "encoding", "32FC1"), "unsupported_encoding"),
    (lambda m: setattr(m, "step", 5), "wrong_step"),
    (lambda m: setattr(m, "data", bytes(m.data)[: len(m.data) // 2]), "truncated_buffer"),
    (lambda m: setattr(m, "height", 0), "empty_image"),
])
def test_bad_images_raise_with_cause(mutate, cause):
    msg = _msg(np.zeros((8, 6, 3), np.uint8), "bgr8")
    mutate(msg)
    with pytest.raises(ImageConversionError) as exc:
        image_msg_to_bgr8(msg)
    assert exc.value.cause == cause and str(exc.value)


def test_parsing_rasterisation_labels():
    pipe = FakePipeline()
    frame = pipe.process(np.full((240, 320, 3), 128, np.uint8), 1.0)
    labels = landmark_parsing([f.landmarks68 for f in frame.faces], 240, 320)
    assert labels.shape == (240, 320) and labels.dtype == np.uint8
    present = set(np.unique(labels).tolist())
    # every face region of the documented set is drawn (hair/occluder need image evidence)
    assert present == set(LABEL_IDS.values()) - {LABEL_IDS["hair"], LABEL_IDS["occluder"]}
    lm = frame.faces[0].landmarks68
    cx, cy = np.round(lm[36:42].mean(0)).astype(int)
    assert labels[cy, cx] == LABEL_IDS["right_eye"]
    img, source = parsing_image(frame, 240, 320)
    assert source == "landmarks" and np.array_equal(img, labels)
    mask, source = occlusion_mask_image(frame, 240, 320)
    assert source == "none" and mask.shape == (240, 320) and not mask.any()
    frame.occlusion_mask = np.zeros((240, 320), bool)
    frame.occlusion_mask[:10] = True
    mask, source = occlusion_mask_image(frame, 240, 320)
    assert source == "pipeline" and mask[:10].min() == 255 and mask[10:].max() == 0


def test_region_occlusion_groups_pixel_counts():
    class Face:
        region_pixels = {"left_eye": (10, 10), "right_eye": (0, 30), "skin": (5, 100), "nose": (0, 0)}

    ratios = region_occlusion(Face())
    assert ratios["eyes"] == pytest.approx(10 / 40)  # pixel-weighted over both eyes, not a mean of ratios
    assert ratios["skin"] == pytest.approx(0.05) and ratios["nose"] == 0.0 and ratios["mouth"] == 0.0


def test_mesh_lod_bounds_triangles():
    model = FakePipeline().model
    vertices, triangles = model.mean_m.double().numpy(), model.triangles.numpy()
    for budget in (0, 50, 200):
        lod = simplify(vertices, triangles, budget)
        if budget == 0:
            assert len(lod.triangles) == len(triangles)
        else:
            assert 0 < len(lod.triangles) <= budget
        v = lod.vertices(vertices)
        assert v.shape == (lod.num_clusters, 3) and lod.triangles.max() < len(v)


def test_pose_quaternion_matches_rotation():
    rng = np.random.default_rng(0)
    for _ in range(20):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        q *= np.sign(np.linalg.det(q))
        o = M.pose_msg(q, np.zeros(3)).orientation
        x, y, z, w = o.x, o.y, o.z, o.w
        r = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        assert np.allclose(r, q, atol=1e-9) and w >= 0


def test_face_messages_from_a_frame():
    pipe = FakePipeline()
    frame = pipe.process(np.full((120, 160, 3), 200, np.uint8), 3.5)
    header = Header(frame_id="cam_optical")
    header.stamp.sec, header.stamp.nanosec = 3, 500_000_000
    fa = M.face_array_msg(header, frame, pipe.model.expression_names)
    assert fa.header == header and (fa.image_width, fa.image_height) == (160, 120) and len(fa.faces) == 1
    f = fa.faces[0]
    assert f.tf_frame == "face_1" and len(f.landmarks68) == 68 and all(f.landmarks68_visible)
    assert np.allclose([p.x for p in f.landmarks68], frame.faces[0].landmarks68[:, 0], atol=1e-3)
    assert list(f.expression_names) == pipe.model.expression_names and len(f.expression) == 5
    assert f.occlusion_eyes == f.occlusion_skin == 0.0
    tf = M.transforms(header, frame.faces)
    assert tf[0].header == header and tf[0].child_frame_id == "face_1"
    assert tf[0].transform.translation.z == pytest.approx(frame.faces[0].translation_m[2])
    verts = pipe.mesh_vertices(frame.faces[0])
    px = pipe.project(verts, 160, 120)
    cols = M.sample_colours(np.full((120, 160, 3), 200, np.uint8), px)
    raw = M.mesh_marker_array_cdr(header, [(1, verts, pipe.model.triangles.numpy(), cols)], deleted_track_ids=[7])
    deleted, mk = deserialize_message(raw, MarkerArray).markers
    assert (deleted.id, deleted.action) == (7, deleted.DELETE) and deleted.header == header
    assert mk.type == mk.TRIANGLE_LIST and len(mk.points) == 3 * len(pipe.model.triangles) == len(mk.colors)
    assert mk.header == header and mk.id == 1 and mk.colors[0].r == pytest.approx(200 / 255)


def test_health_levels():
    th = Thresholds(window_s=5.0, input_rate_warn_hz=5.0, latency_warn_ms=100, latency_error_ms=500,
                    drop_ratio_warn=0.1, drop_ratio_error=0.5, error_hold_s=2.0)
    h = Health(th)
    assert h.statuses(now=0.0)[0].level == WARN  # nothing received yet
    for k in range(50):
        h.received(now=10 + k * 0.033)
        h.processed(20.0, 1, {"fit": 5.0}, now=10 + k * 0.033 + 0.02)
    now = 10 + 50 * 0.033
    assert [s.level for s in h.statuses(now=now)] == [OK, OK]
    assert h.error("unsupported_encoding", "yuv422", now=now) is True
    assert h.error("unsupported_encoding", "yuv422", now=now) is False  # log once per cause
    st = h.statuses(now=now + 0.1)
    assert st[0].level == ERROR and "unsupported_encoding" in st[0].message
    assert h.statuses(now=now + 2.5)[0].level in (OK, WARN)  # error hold elapsed
    h.dropped(40, now=now + 2.5)
    assert h.statuses(now=now + 2.6)[0].level == ERROR  # > 50 % dropped
    h2 = Health(Thresholds(input_rate_warn_hz=0, latency_warn_ms=100, latency_error_ms=500))
    h2.received(now=1.0)
    h2.processed(250.0, 1, {}, now=1.1)
    assert h2.statuses(now=1.2)[1].level == WARN


def test_health_message_is_one_cause_and_a_count():
    h = Health(Thresholds(input_rate_warn_hz=0, error_hold_s=2.0))
    h.received(now=1.0)
    h.processed(10.0, 1, {"fit": 5.0, "hand_detection": 3.0}, now=1.0)
    for k in range(30):  # a stream of two kinds of bad frames
        h.error("truncated_buffer", "data has 1000 bytes", now=2.0 + k * 0.01)
    h.error("wrong_step", "step 7 < width 80 x 3", now=2.5)
    h.error("pipeline_ValueError", "bad shape", kind="pipeline_errors", now=2.4)
    inp, proc = h.statuses(now=2.6)
    assert inp.level == ERROR and inp.message == "wrong_step (1x): step 7 < width 80 x 3 (+1 more, see values)"
    assert proc.level == ERROR and proc.message == "pipeline_ValueError (1x): bad shape"
    values = {kv.key: kv.value for kv in inp.values}
    assert values["error.truncated_buffer"].startswith("30x")  # every held cause stays in the values
    # stages with no sample left in the window are absent, not "nan"
    h.processed(10.0, 1, {"fit": 5.0}, now=6.5)
    proc_values = {kv.key: kv.value for kv in h.statuses(now=7.0)[1].values}
    assert "stage.fit_ms_p50" in proc_values and "stage.hand_detection_ms_p50" not in proc_values
    assert "nan" not in proc_values.values()


def test_params_round_trip_and_validation(tmp_path):
    from occface_ros.config import load_config

    cfg = load_config()
    flat = core_defaults(cfg)
    assert flat["camera.fx"] == 0.0 and flat["model.path"] == "" and "output.write_meshes" not in flat
    back = core_overrides(flat)
    assert back["camera"]["fx"] is None and back["model"]["path"] is None
    assert load_config(None, back)["smoothing"] == cfg["smoothing"]
    assert validate_value("smoothing.min_cutoff", 0.0) and validate_value("smoothing.beta", -1.0)
    assert validate_value("smoothing.beta", 0.0) is None and validate_value("mesh_max_triangles", -1)
    assert validate_value("diagnostics.drop_ratio_warn", 2.0) and validate_value("tf_prefix", "/x")
    f = tmp_path / "p.yaml"
    f.write_text("occface_node:\n  ros__parameters:\n    smoothing:\n      beta: 0.2\n"
                 "    mesh_max_triangles: 100\n    diagnostics.latency_warn_ms: 80.0\n")
    core, node = read_config_file(str(f))
    assert core == {"smoothing": {"beta": 0.2}}
    assert node == {"mesh_max_triangles": 100, "diagnostics.latency_warn_ms": 80.0}
    assert set(node) <= set(NODE_DEFAULTS)
    f.write_text("smoothing:\n  bogus: 1\n")
    from occface_ros.config import ConfigError

    core, _ = read_config_file(str(f))
    with pytest.raises(ConfigError):
        load_config(None, core)


def test_spliced_mesh_markers_equal_the_generated_serialization():
    """mesh_marker_array_cdr splices numpy buffers into a template: the same message as the slow path."""
    import numpy as np
    from geometry_msgs.msg import Point
    from rclpy.serialization import serialize_message
    from std_msgs.msg import ColorRGBA, Header
    from visualization_msgs.msg import Marker

    from occface_ros.ros import messages as M

    rng = np.random.default_rng(0)
    header = Header(frame_id="camera_optical")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    meshes = [(3, rng.random((50, 3)), rng.integers(0, 50, (200, 3)), rng.random((50, 3)).astype(np.float32)),
              (4, rng.random((7, 3)) - 0.5, rng.integers(0, 7, (5, 3)), None),  # no colours
              (5, np.zeros((0, 3)), np.zeros((0, 3), np.int64), None),  # empty mesh
              (9, rng.random((30, 3)), rng.integers(0, 30, (41, 3)), rng.random((30, 3)).astype(np.float32))]
    raw = M.mesh_marker_array_cdr(header, meshes, deleted_track_ids=[1, 2], lifetime_s=0.25)
    ref = [Marker(header=header, ns=M.MESH_NS, id=t, action=Marker.DELETE) for t in (1, 2)]
    for track_id, verts, tris, colours in meshes:
        m = Marker(header=header, ns=M.MESH_NS, id=track_id, type=Marker.TRIANGLE_LIST, action=Marker.ADD)
        m.pose.orientation.w = 1.0
        m.scale.x = m.scale.y = m.scale.z = 1.0
        m.color = ColorRGBA(r=0.8, g=0.7, b=0.6, a=1.0)
        m.lifetime.nanosec = 250_000_000
        idx = tris.reshape(-1)
        m.points = [Point(x=x, y=y, z=z) for x, y, z in verts[idx].tolist()]
        if colours is not None:
            m.colors = [ColorRGBA(r=r, g=g, b=b, a=1.0) for r, g, b in colours.astype(np.float64)[idx].tolist()]
        ref.append(m)
    back = deserialize_message(raw, MarkerArray)
    assert back == deserialize_message(serialize_message(MarkerArray(markers=ref)), MarkerArray)
    assert len(raw) == len(serialize_message(MarkerArray(markers=ref)))
    assert [len(m.points) for m in back.markers] == [0, 0, 600, 15, 0, 123]
    assert back.markers[5].points[-1].x == pytest.approx(float(meshes[3][1][meshes[3][2][-1, -1], 0]))


def test_mesh_marker_goes_when_its_face_is_absent_and_when_its_track_ends():
    from occface_ros.contracts import FrameResult
    from occface_ros.ros.outputs import OutputBuilder
    from occface_ros.ros.params import NODE_DEFAULTS

    pipe = FakePipeline()
    builder = OutputBuilder(pipe)
    options = {**NODE_DEFAULTS, "publish_mesh_markers": True, "publish_debug_image": False}
    image = np.full((120, 160, 3), 200, np.uint8)

    def markers(frame):
        raw = dict(builder.build(Header(frame_id="cam"), frame, image, options))["mesh_markers"]
        return [(m.action, m.id) for m in deserialize_message(raw, MarkerArray).markers]

    first = pipe.process(image, 0.0)
    tid = first.faces[0].track_id
    assert markers(first) == [(0, tid)]  # ADD
    hidden = FrameResult([], 160, 120, 0.1)  # the track is held: absent, not ended
    assert markers(hidden) == [(2, tid)]  # DELETE at once
    assert markers(FrameResult([], 160, 120, 0.2)) == []
    assert markers(pipe.process(image, 0.3)) == [(0, tid)]  # resumed: shown again
    assert markers(FrameResult([], 160, 120, 0.4, [tid])) == [(2, tid)]  # ended


def _members(cls) -> dict[str, object]:
    """Public members of a class -> inspect.Signature (methods) or 'property' / 'attribute'."""
    import inspect

    out = {}
    for name, value in inspect.getmembers(cls):
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            out[name] = "property"
        elif callable(value):
            out[name] = inspect.signature(value)
    return out


@pytest.mark.parametrize("implementation", ["occface_ros.pipeline:FacePipeline",
                                            "occface_ros.ros.bench:CannedPipeline", "fakes:FakePipeline"])
def test_pipelines_satisfy_the_ros_contract(implementation):
    """Every method and property of FacePipelineLike exists with the same parameters (names, order,
    defaults): the node calls them by keyword, so a renamed parameter is a broken node."""
    import importlib
    import inspect

    from occface_ros.ros.pipeline_protocol import FacePipelineLike

    module, name = implementation.split(":")
    cls = getattr(importlib.import_module(module), name)
    want, got = _members(FacePipelineLike), _members(cls)
    for member, sig in want.items():
        assert member in got, f"{name} has no {member}"
        if sig == "property":
            assert got[member] == "property", f"{name}.{member} must be a property"
        else:
            params = [(p.name, p.default) for p in sig.parameters.values()]
            assert [(p.name, p.default) for p in got[member].parameters.values()] == params, (name, member)
    assert [p.name for p in inspect.signature(cls).parameters.values()][:2] == ["config", "camera_matrix"]


def test_canned_pipeline_replays_the_model_face_for_the_node_outputs():
    """bench-ros --canned: the model's own face, frontal, in the image, through the whole output builder."""
    from occface_ros.core.labels import LABEL_IDS
    from occface_ros.ros.bench import CANNED_DISTANCE_M, CannedPipeline
    from occface_ros.ros.outputs import OutputBuilder
    from occface_ros.ros.params import NODE_DEFAULTS

    pipe = CannedPipeline()
    image = np.zeros((480, 640, 3), np.uint8)
    first, second = pipe.process(image, 1.0), pipe.process(image, 1.1)
    assert [f.track_id for f in first.faces + second.faces] == [1, 1] and second.timestamp_s == 1.1
    face = first.faces[0]
    lm = face.landmarks68
    assert (lm >= 0).all() and (lm[:, 0] < 640).all() and (lm[:, 1] < 480).all()
    assert abs(lm[:, 0].mean() - 319.5) < 1 and abs(lm[:, 1].mean() - 239.5) < 1  # centred
    assert 60 < np.ptp(lm[:, 0]) < 300  # a face at 0.6 m with a 60 deg lens: ~14 cm -> ~190 px
    mesh = pipe.mesh_vertices(face)
    assert mesh.shape == (pipe.model.num_vertices, 3)
    assert np.median(mesh[:, 2]) == pytest.approx(CANNED_DISTANCE_M, abs=0.1)
    # the mesh and the landmarks agree: projected landmark vertices are the landmarks
    px = pipe.project(mesh[pipe.model.landmarks68.numpy()], 640, 480)
    assert np.abs(px - lm).max() < 1e-6
    options = {**NODE_DEFAULTS, "publish_mesh_markers": True, "publish_debug_image": False}
    out = dict(OutputBuilder(pipe).build(Header(frame_id="cam"), first, image, options))
    assert set(out) == {"faces", "head_poses", "tf", "occlusion_mask", "parsing", "mesh_markers"}
    labels = np.frombuffer(bytes(out["parsing"].data), np.uint8)
    assert LABEL_IDS["nose"] in labels and LABEL_IDS["upper_lip"] in labels
    (marker,) = deserialize_message(out["mesh_markers"], MarkerArray).markers
    assert 0 < len(marker.points) <= 3 * NODE_DEFAULTS["mesh_max_triangles"]


def test_cv_bridge_failure_falls_back_to_numpy_with_one_rate_limited_line(monkeypatch, caplog):
    import logging

    from occface_ros.ros import image_conversion as ic

    class BrokenBridge:  # cv_bridge is not installed here; this one fails as a broken build would
        def imgmsg_to_cv2(self, msg, desired_encoding):
            raise RuntimeError("boost::python conversion failed")

    monkeypatch.setattr(ic, "_CvBridge", BrokenBridge)
    monkeypatch.setattr(ic, "_fallback_logged_at", {})
    rgb = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    msg = fill_image_msg(Image(), rgb, "rgb8")
    with caplog.at_level(logging.WARNING, logger=ic.__name__):
        for _ in range(20):
            assert np.array_equal(image_msg_to_bgr8(msg), rgb[..., ::-1])
    lines = [r.getMessage() for r in caplog.records if r.name == ic.__name__]
    assert len(lines) == 1 and "RuntimeError: boost::python conversion failed" in lines[0], lines


def test_loopback_env_honours_the_callers_ros_environment(tmp_path):
    from occface_ros.ros.loopback import LoopbackEnvError, loopback_env

    env = loopback_env(folder=tmp_path, apply=False, environ={})
    assert 1 <= int(env["ROS_DOMAIN_ID"]) <= 101 and env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert "127.0.0.1" in (tmp_path / "fastdds_loopback.xml").read_text()
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(tmp_path / "fastdds_loopback.xml")
    assert "ROS_LOCALHOST_ONLY" not in env and env["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp"
    # the caller's domain (a live robot's domain on this host is joined only if the caller says so)
    assert loopback_env(folder=tmp_path, apply=False, environ={"ROS_DOMAIN_ID": "42"})["ROS_DOMAIN_ID"] == "42"
    assert loopback_env(domain_id=7, folder=tmp_path, apply=False, environ={"ROS_DOMAIN_ID": "42"})["ROS_DOMAIN_ID"] == "7"
    # a wider discovery range asked for: honoured, and the loopback-only profile is not forced on it
    wide = loopback_env(folder=tmp_path, apply=False, environ={"ROS_AUTOMATIC_DISCOVERY_RANGE": "subnet",
                                                               "RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"})
    assert wide["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SUBNET" and "FASTDDS_DEFAULT_PROFILES_FILE" not in wide
    assert wide["RMW_IMPLEMENTATION"] == "rmw_cyclonedds_cpp"
    for bad in ({"ROS_DOMAIN_ID": "abc"}, {"ROS_DOMAIN_ID": "300"}, {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LAN"}):
        with pytest.raises(LoopbackEnvError, match=next(iter(bad))):
            loopback_env(folder=tmp_path, apply=False, environ=bad)
