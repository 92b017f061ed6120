"""ROS4HRI (REP-155) face outputs (occface_ros/ros/hri.py): the pure conversions (normalisation, the
iBUG -> hri_msgs landmark order, crops, the aligned face, face/gaze frames), then the publisher on real
rclpy (loopback DDS, own domain) with a FrameResult of the real FacePipeline on a sample photo."""
from __future__ import annotations

import dataclasses
import threading
import time

import cv2
import numpy as np
import pytest
import torch

from occface_ros.contracts import FaceResult
from occface_ros.core.camera import FRONTAL_ROTATION, rotation_from_yaw_pitch_roll_deg
from occface_ros.ros.hri import (
    FACE_AXES_IN_MODEL,
    GAZE_AXES_IN_FACE,
    HRI_DEFAULTS,
    SellionBasis,
    aligned_face,
    crop_face,
    face_frame_pose,
    face_id,
    landmark_confidences,
    landmarks70,
    normalized_points,
    normalized_roi,
    validate_hri_value,
)

pytestmark = pytest.mark.unit


def make_face(rotation=None, translation=(0.0, 0.0, 0.6), bbox=(100.0, 80.0, 200.0, 220.0), roll_deg=0.0,
              track_id=7, score=0.9, identity=None, expression=None, landmarks68=None, visible=None) -> FaceResult:
    z = np.zeros
    return FaceResult(
        track_id=track_id, score=score, bbox=np.asarray(bbox, np.float64),
        landmarks68=z((68, 2)) if landmarks68 is None else landmarks68,
        landmarks68_visible=np.ones(68, bool) if visible is None else visible, landmarks468=z((468, 3)),
        rotation=np.asarray(FRONTAL_ROTATION if rotation is None else rotation, np.float64),
        translation_m=np.asarray(translation, np.float64), yaw_deg=0.0, pitch_deg=0.0, roll_deg=roll_deg,
        expression=z(2) if expression is None else expression, identity=z(3) if identity is None else identity)


# ----------------------------------------------------------------------------------------- normalisation
def test_normalisation_maps_the_image_extent_to_the_unit_square():
    w, h = 640, 480
    # pixel centres 0 .. w-1: the image's edges are half a pixel outside them
    assert normalized_roi(np.array([-0.5, -0.5, w - 0.5, h - 0.5]), w, h) == pytest.approx((0.0, 0.0, 1.0, 1.0))
    xmin, ymin, xmax, ymax = normalized_roi(np.array([159.5, 119.5, 479.5, 359.5]), w, h)
    assert (xmin, ymin, xmax, ymax) == pytest.approx((0.25, 0.25, 0.75, 0.75))
    # a box partly outside the image is clamped (hri_msgs: coordinates belong to [0, 1])
    assert normalized_roi(np.array([-50.0, 400.0, 100.0, 700.0]), w, h) == pytest.approx(
        (0.0, 400.5 / h, 100.5 / w, 1.0))
    pts = normalized_points(np.array([[319.5, 239.5], [np.nan, 10.0]]), w, h)
    assert pts[0] == pytest.approx([0.5, 0.5]) and pts[1, 0] == 0.0


def test_face_ids_are_valid_topic_tokens():
    assert face_id(0) == "f0" and face_id(12) == "f12"  # a token starting with a digit is rejected by rcl


def test_hri_parameters_are_validated():
    assert all(validate_hri_value(k, v) is None for k, v in HRI_DEFAULTS.items())
    assert "must be > 0" in validate_hri_value("hri.face_width_px", 0)
    assert "must be >= 0" in validate_hri_value("hri.forget_after_s", -1.0)


# ----------------------------------------------------------------------------------------- landmarks
def test_landmarks_keep_the_ibug_order_and_add_the_pupils(annotated_photos):
    """hri_msgs' codes name dlib/OpenPose (= iBUG) points; checked on human-annotated iBUG 68 points."""
    codes = pytest.importorskip("hri_msgs.msg").FacialLandmarks
    photo = next(p for p in annotated_photos if p.name == "einstein")  # a frontal face
    lm = photo.landmarks68
    visible = np.ones(68, bool)
    visible[[37, 38]] = False  # two points of the person's right eye are hidden
    points, seen = landmarks70(lm, visible)
    assert points.shape == (70, 2) and seen.shape == (70,)
    names = [n for n in dir(codes) if n.isupper() and isinstance(getattr(codes, n), int)]
    assert len(names) == 70 and sorted(getattr(codes, n) for n in names) == list(range(70))
    for name in names:
        code = getattr(codes, name)
        if code < 68:
            assert np.array_equal(points[code], lm[code]), name
    # the semantics of the names hold on the annotated face (the person's right is image left)
    p = {n: points[getattr(codes, n)] for n in names}
    assert p["RIGHT_EYE_OUTSIDE"][0] < p["RIGHT_EYE_INSIDE"][0] < p["LEFT_EYE_INSIDE"][0] < p["LEFT_EYE_OUTSIDE"][0]
    assert p["RIGHT_EAR"][0] < p["NOSE"][0] < p["LEFT_EAR"][0]
    assert p["SELLION"][1] < p["NOSE"][1] < p["MOUTH_OUTER_TOP_3"][1] < p["MOUTH_OUTER_BOTTOM_3"][1] < p["MENTON"][1]
    assert p["MOUTH_OUTER_RIGHT"][0] < p["MOUTH_OUTER_LEFT"][0]
    assert p["RIGHT_EYE_TOP_1"][1] < p["RIGHT_EYE_BOTTOM_1"][1]
    assert np.allclose(p["RIGHT_PUPIL"], lm[36:42].mean(0)) and np.allclose(p["LEFT_PUPIL"], lm[42:48].mean(0))
    assert p["RIGHT_EYE_OUTSIDE"][0] < p["RIGHT_PUPIL"][0] < p["RIGHT_EYE_INSIDE"][0]
    # seen fractions: the hidden points 0, the right pupil 4 of 6, the rest 1
    assert seen[37] == seen[38] == 0.0 and seen[codes.RIGHT_PUPIL] == pytest.approx(4 / 6)
    assert seen[codes.LEFT_PUPIL] == 1.0 and seen[:68].sum() == 66
    c = landmark_confidences(0.8, seen)
    assert c[37] == 0.0 and c[0] == pytest.approx(0.8) and c[codes.RIGHT_PUPIL] == pytest.approx(0.8 * 4 / 6)


# ----------------------------------------------------------------------------------------- images
def test_cropped_face_is_the_box_scaled_centred_and_zero_padded():
    image = np.full((480, 640, 3), 40, np.uint8)
    image[100:301, 200:301] = (0, 200, 255)  # the box's pixels: 101 wide, 201 tall
    out = crop_face(image, np.array([200.0, 100.0, 300.0, 300.0]), 128, 128)
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    inside = np.all(out == (0, 200, 255), axis=-1)
    cols = np.flatnonzero(inside.any(0))
    assert inside[:, 64].all()  # the full height is used (the box is taller than wide) ...
    assert 60 <= len(cols) <= 66 and abs((cols[0] + cols[-1]) / 2 - 63.5) <= 1  # ... aspect kept, centred
    assert (out[:, :cols[0] - 1] == 0).all() and (out[:, cols[-1] + 2:] == 0).all()  # 0-padded, no background
    # a box outside the image gives a black image, not an error
    assert not crop_face(image, np.array([700.0, 500.0, 800.0, 600.0]), 96, 64).any()


def _rolled_face_image(roll_deg: float):
    """A 640x480 image of a face-like pattern (eyes and mouth, ICT-sized) posed with core.camera's
    roll convention and projected: person's right eye red, left eye blue, mouth green."""
    points_model = np.array([[-0.032, 0.03, 0.0], [0.032, 0.03, 0.0], [0.0, -0.04, 0.0]])  # x = person's left
    rotation = rotation_from_yaw_pitch_roll_deg(0.0, 0.0, roll_deg, dtype=torch.float64).numpy()
    cam = points_model @ rotation.T + np.array([0.0, 0.0, 0.5])
    px = cam[:, :2] / cam[:, 2:] * 600.0 + np.array([319.5, 239.5])
    image = np.zeros((480, 640, 3), np.uint8)
    for (x, y), colour in zip(px, [(0, 0, 255), (255, 0, 0), (0, 255, 0)]):
        cv2.circle(image, (int(round(x)), int(round(y))), 7, colour, -1)
    bbox = np.concatenate([px.min(0) - 50, px.max(0) + 50])
    return image, bbox, px


def _blob_centre(image, channel):
    mask = (image[..., channel] > 128) & (image.max(-1) == image[..., channel]) & (image.sum(-1) < 400)
    ys, xs = np.nonzero(mask)
    assert len(xs) > 10
    return np.array([xs.mean(), ys.mean()])


@pytest.mark.parametrize("roll_deg", [25.0, -35.0])
def test_aligned_face_is_upright_for_a_rolled_face(roll_deg):
    image, bbox, px = _rolled_face_image(roll_deg)
    tilt = abs(px[0, 1] - px[1, 1])
    assert tilt > 20  # the eyes are far from level in the input
    crop = crop_face(image, bbox, 128, 128)
    right, left = _blob_centre(crop, 2), _blob_centre(crop, 0)
    assert abs(right[1] - left[1]) > 8  # ... and in the plain crop
    aligned = aligned_face(image, bbox, roll_deg, 128, 128)
    assert aligned.shape == (128, 128, 3)
    right, left, mouth = _blob_centre(aligned, 2), _blob_centre(aligned, 0), _blob_centre(aligned, 1)
    assert abs(right[1] - left[1]) < 1.0  # eyes level
    assert right[0] < left[0]  # the person's right eye on the image left (upright, not upside down)
    assert mouth[1] > right[1] + 15 and abs(mouth[0] - (right[0] + left[0]) / 2) < 1.0
    # turning the wrong way doubles the tilt: the sign of the roll is used, not only its size
    wrong = aligned_face(image, bbox, -roll_deg, 128, 128)
    assert abs(_blob_centre(wrong, 2)[1] - _blob_centre(wrong, 0)[1]) > 15


# ----------------------------------------------------------------------------------------- frames
def test_face_and_gaze_frames_follow_rep155():
    for m in (FACE_AXES_IN_MODEL, GAZE_AXES_IN_FACE):
        assert np.allclose(m @ m.T, np.eye(3)) and np.linalg.det(m) == pytest.approx(1.0)
    sellion = SellionBasis(np.array([0.0, 0.03, 0.09]), np.array([[0.0, 0.01, 0.0], [0.0, 0.0, 0.0]]),
                           np.array([[0.001, 0.0, 0.0]]))
    face = make_face(translation=(0.1, -0.05, 0.8), identity=np.array([1.0, 5.0]), expression=np.array([2.0]))
    rotation, origin = face_frame_pose(face, sellion)
    # frontal face: the sellion (model (0.002, 0.04, 0.09)) is up (-y camera) and nearer the camera than the origin
    assert origin == pytest.approx([0.1 + 0.002, -0.05 - 0.04, 0.8 - 0.09])
    x, y, z = rotation.T
    assert x == pytest.approx([0, 0, -1])  # out of the face: towards the camera
    assert y == pytest.approx([1, 0, 0])  # the person's left = image right for a face looking at us
    assert z == pytest.approx([0, -1, 0])  # towards the scalp = image up
    gaze = rotation @ GAZE_AXES_IN_FACE  # gaze_<id> in the camera frame: z along face x, x right, y down
    assert gaze[:, 2] == pytest.approx(x) and gaze[:, 0] == pytest.approx(-y) and gaze[:, 1] == pytest.approx(-z)
    # a face turned to its own left (yaw > 0) looks towards image right: face x gets a +x camera component
    turned = make_face(rotation=rotation_from_yaw_pitch_roll_deg(30.0, 0.0, 0.0, dtype=torch.float64).numpy(),
                       identity=np.zeros(2), expression=np.zeros(1))
    assert face_frame_pose(turned, sellion)[0][0, 0] == pytest.approx(np.sin(np.radians(30.0)))


# ----------------------------------------------------------------------------------------- real rclpy
@pytest.fixture(scope="module")
def astronaut():
    """(pipeline, image, FrameResult) of the real FacePipeline on skimage's astronaut photo."""
    try:
        from occface_ros.pipeline import FacePipeline
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"core pipeline not importable: {exc}")
    from occface_ros.app.samples import sample_path
    from occface_ros.app.sources import read_image
    from occface_ros.config import load_config

    pipeline = FacePipeline(load_config())
    image = read_image(sample_path("skimage", "astronaut.png"))
    result = pipeline.process(image, 0.0)
    yield pipeline, image, result
    pipeline.close()


@pytest.mark.integration
@pytest.mark.slow
def test_rep155_topics_and_frames_on_real_rclpy(ros_env, astronaut):
    rclpy = pytest.importorskip("rclpy")
    pytest.importorskip("hri_msgs.msg", reason="interfaces not built (tools/build_interfaces.sh)")
    from builtin_interfaces.msg import Time
    from hri_msgs.msg import FacialLandmarks, IdsList, NormalizedRegionOfInterest2D
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header
    from tf2_msgs.msg import TFMessage

    from occface_ros.core.geometry import quaternion_xyzw_to_rotation
    from occface_ros.ros.hri import HriFacePublisher
    from occface_ros.ros.image_conversion import image_msg_to_bgr8
    from ros_support import Collector

    pipeline, image, result = astronaut
    assert len(result.faces) == 1
    face = result.faces[0]
    fid = f"f{face.track_id}"
    h, w = image.shape[:2]
    reliable = QoSProfile(reliability=QoSReliabilityPolicy.RELIABLE, history=QoSHistoryPolicy.KEEP_LAST, depth=10)
    tf_qos = QoSProfile(reliability=QoSReliabilityPolicy.RELIABLE, history=QoSHistoryPolicy.KEEP_LAST, depth=100,
                        durability=QoSDurabilityPolicy.VOLATILE)
    ns = f"/humans/faces/{fid}"
    topics = {"/humans/faces/tracked": (IdsList, reliable), "/tf": (TFMessage, tf_qos),
              ns + "/roi": (NormalizedRegionOfInterest2D, reliable), ns + "/landmarks": (FacialLandmarks, reliable),
              ns + "/cropped": (Image, reliable), ns + "/aligned": (Image, reliable)}

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    try:
        node = rclpy.create_node("occface_hri", context=ctx)
        tester = rclpy.create_node("hri_tester", context=ctx)
        params = dict(HRI_DEFAULTS)
        hri = HriFacePublisher(node, params, pipeline.model)
        col = Collector(tester, topics)
        executor.add_node(node)
        executor.add_node(tester)
        spinner.start()

        def frames_named(m):
            names = {(t.header.frame_id, t.child_frame_id) for msg, _ in m["/tf"] for t in msg.transforms}
            return {("camera_optical", f"face_{fid}"), (f"face_{fid}", f"gaze_{fid}")} <= names

        def complete(m):
            return all(m[t] for t in topics) and frames_named(m)

        deadline, k = time.monotonic() + 30.0, 0
        while not col.wait_for(complete, 0.1) and time.monotonic() < deadline:
            k += 1  # the same frame again at 10 Hz until discovery is done and everything arrived
            header = Header(stamp=Time(sec=1000 + k // 10, nanosec=(k % 10) * 100_000_000), frame_id="camera_optical")
            hri.publish(header, dataclasses.replace(result, timestamp_s=1000.0 + k / 10.0), image)
        assert complete(col.messages), {t: len(v) for t, v in col.messages.items()}
        last = {t: col.messages[t][-1][0] for t in topics}

        tracked = last["/humans/faces/tracked"]
        assert list(tracked.ids) == [fid] and tracked.header.frame_id == "camera_optical"
        roi = last[ns + "/roi"]
        x0, y0, x1, y1 = face.bbox
        assert (roi.xmin, roi.ymin, roi.xmax, roi.ymax) == pytest.approx(
            ((x0 + 0.5) / w, (y0 + 0.5) / h, (x1 + 0.5) / w, (y1 + 0.5) / h), abs=1e-6)
        assert 0 <= roi.xmin < roi.xmax <= 1 and 0 <= roi.ymin < roi.ymax <= 1 and roi.c == pytest.approx(face.score)
        lm = last[ns + "/landmarks"]
        assert (lm.width, lm.height, len(lm.landmarks)) == (w, h, 70)
        nose = lm.landmarks[FacialLandmarks.NOSE]
        assert (nose.x * w - 0.5, nose.y * h - 0.5) == pytest.approx(tuple(face.landmarks68[30]), abs=0.05)
        for key in ("/cropped", "/aligned"):
            msg = last[ns + key]
            assert (msg.width, msg.height, msg.encoding) == (128, 128, "bgr8")
            assert msg.header.frame_id == "camera_optical"
            pixels = image_msg_to_bgr8(msg)
            assert pixels.mean() > 20  # a face, not the black padding
        assert np.array_equal(image_msg_to_bgr8(last[ns + "/cropped"]), crop_face(image, face.bbox, 128, 128))

        tf = {t.child_frame_id: t for msg, _ in col.messages["/tf"] for t in msg.transforms}
        face_tf, gaze_tf = tf[f"face_{fid}"].transform, tf[f"gaze_{fid}"].transform
        origin = np.array([face_tf.translation.x, face_tf.translation.y, face_tf.translation.z])
        r = face_tf.rotation
        rotation = quaternion_xyzw_to_rotation(np.array([r.x, r.y, r.z, r.w]))
        # the origin is the fitted sellion: it projects onto iBUG point 27 (top of the nose bridge)
        iod = np.linalg.norm(face.landmarks68[36] - face.landmarks68[45])
        assert np.linalg.norm(pipeline.project(origin[None], w, h)[0] - face.landmarks68[27]) < 0.15 * iod
        assert origin[2] < face.translation_m[2]  # in front of the model's origin (inside the head)
        assert rotation[:, 0] @ (-origin / np.linalg.norm(origin)) > 0.7  # the astronaut looks about at us
        assert rotation[:, 2] @ np.array([0.0, -1.0, 0.0]) > 0.7  # scalp up
        g = gaze_tf.rotation
        gaze_in_face = quaternion_xyzw_to_rotation(np.array([g.x, g.y, g.z, g.w]))
        assert gaze_in_face @ np.array([0.0, 0.0, 1.0]) == pytest.approx([1.0, 0.0, 0.0], abs=1e-9)
        assert gaze_tf.translation.x == gaze_tf.translation.y == gaze_tf.translation.z == 0.0

        # the face leaves: no id tracked at once, its topics go after hri.forget_after_s (image time)
        t_end = 1000.0 + k / 10.0
        col.clear()
        gone = dataclasses.replace(result, faces=[], timestamp_s=t_end + 1.0)
        hri.publish(Header(frame_id="camera_optical"), gone, image)
        assert hri.face_ids == [fid]
        assert col.wait_for(lambda m: m["/humans/faces/tracked"], 5.0)
        assert list(col.messages["/humans/faces/tracked"][-1][0].ids) == []
        hri.publish(Header(frame_id="camera_optical"),
                    dataclasses.replace(gone, timestamp_s=t_end + params["hri.forget_after_s"] + 0.5), image)
        assert hri.face_ids == []
        deadline = time.monotonic() + 10.0
        while tester.count_publishers(ns + "/roi") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tester.count_publishers(ns + "/roi") == 0 and tester.count_publishers(ns + "/aligned") == 0
        hri.close(Header(frame_id="camera_optical"))
    finally:
        executor.shutdown()
        rclpy.shutdown(context=ctx)
        if spinner.is_alive():
            spinner.join(5.0)
