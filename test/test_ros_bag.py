"""`occface bag`: a small bag made here (mcap and sqlite3) replayed through the node's output code."""
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels not installed (make ros)")
pytest.importorskip("occface_msgs.msg", reason="interfaces not built (tools/build_interfaces.sh)")
pytest.importorskip("rosbags")

from rclpy.serialization import serialize_message  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from occface_ros.ros.bag import BagError, replay_bag, typestore_with_occface  # noqa: E402
from occface_ros.ros.image_conversion import fill_image_msg  # noqa: E402

from fakes import FakePipeline  # noqa: E402

pytestmark = pytest.mark.unit  # rclpy serialization and bag files only: no ROS graph


def make_bag(path, frames, storage="mcap"):
    """frames: list of (image array, encoding); 10 Hz, stamps from 50 s; one camera_info first."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    stamps = []
    with Writer(path, version=9, storage_plugin=plugin) as w:
        cimg = w.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=store)
        cinfo = w.add_connection("/cam/camera_info", "sensor_msgs/msg/CameraInfo", typestore=store)
        h0, w0 = frames[0][0].shape[:2]
        info = CameraInfo(header=Header(frame_id="cam_optical"), width=w0, height=h0)
        info.k = [300.0, 0, w0 / 2, 0, 300.0, h0 / 2, 0, 0, 1]
        w.write(cinfo, 49 * 10**9, serialize_message(info))
        for i, (array, enc) in enumerate(frames):
            h = Header(frame_id="cam_optical")
            h.stamp.sec, h.stamp.nanosec = 50, i * 100_000_000
            stamps.append((h.stamp.sec, h.stamp.nanosec))
            w.write(cimg, 50 * 10**9 + i * 10**8, serialize_message(fill_image_msg(Image(), array, enc, h)))
    return stamps


def read_bag(path):
    from rosbags.highlevel import AnyReader

    out = {}
    with AnyReader([path], default_typestore=typestore_with_occface()) as r:
        for conn, t, raw in r.messages():
            out.setdefault(conn.topic, []).append((t, r.deserialize(raw, conn.msgtype), conn.msgtype))
    return out


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_round_trip(tmp_path, storage):
    rng = np.random.default_rng(0)
    face = (rng.integers(40, 220, (96, 128, 3))).astype(np.uint8)
    frames = [(face, "bgr8"), (face[..., ::-1].copy(), "rgb8"), (np.zeros_like(face), "bgr8"),
              (face, "bgr8")]
    src, dst = tmp_path / "in", tmp_path / "out"
    stamps = make_bag(src, frames, storage)
    pipes = []

    def factory(cfg):
        pipes.append(FakePipeline(cfg))
        return pipes[-1]

    summary = replay_bag(src, dst, storage=storage, pipeline_factory=factory, options={"mesh_max_triangles": 100})
    assert summary["frames"] == 4 and summary["frames_with_faces"] == 3 and summary["image_errors"] == 0
    assert np.allclose(pipes[0].camera_matrix, [[300, 0, 64], [0, 300, 48], [0, 0, 1]])
    assert pipes[0].closed  # replay_bag closes what it built
    got = read_bag(dst)
    for topic in ("/occface_node/faces", "/occface_node/head_poses", "/occface_node/occlusion_mask",
                  "/occface_node/parsing", "/occface_node/mesh_markers"):
        assert len(got[topic]) == 4, topic
    assert "/occface_node/debug_image" not in got
    faces = [m for _, m, _ in got["/occface_node/faces"]]
    assert [(m.header.stamp.sec, m.header.stamp.nanosec) for m in faces] == stamps
    assert all(m.header.frame_id == "cam_optical" for m in faces)
    assert [len(m.faces) for m in faces] == [1, 1, 0, 1]
    assert list(faces[2].lost_track_ids) == [1] and faces[3].faces[0].track_id == 2
    assert len(faces[0].faces[0].landmarks68) == 68
    assert len(got["/tf"]) == 3 and got["/tf"][0][1].transforms[0].child_frame_id == "face_1"
    assert got["/diagnostics"] and got["/diagnostics"][0][2] == "diagnostic_msgs/msg/DiagnosticArray"
    # outputs are logged at the input's bag time; the input topics are copied
    assert [t for t, _, _ in got["/occface_node/faces"]] == [t for t, _, _ in got["/cam/image_raw"]]
    assert len(got["/cam/camera_info"]) == 1
    mk = got["/occface_node/mesh_markers"][0][1].markers[0]
    assert mk.type == 11 and 0 < len(mk.points) <= 300 and len(mk.colors) == len(mk.points)


def test_bag_errors(tmp_path):
    src = tmp_path / "in"
    make_bag(src, [(np.zeros((8, 8, 3), np.uint8), "bgr8")])
    with pytest.raises(BagError, match="exists"):
        replay_bag(src, src, pipeline_factory=FakePipeline)
    with pytest.raises(BagError, match="no image topic"):
        replay_bag(src, tmp_path / "o1", image_topics=["/nope"], pipeline_factory=FakePipeline)
    with pytest.raises(BagError, match="does not exist"):
        replay_bag(tmp_path / "missing", tmp_path / "o2", pipeline_factory=FakePipeline)
