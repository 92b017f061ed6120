"""ROS4HRI (REP-155) face outputs: /humans/faces/tracked, per-face roi, landmarks, cropped, aligned, and
the face_<id> / gaze_<id> TF frames, so the node plugs into HRI stacks that consume hri_face_detect.

The conversions are pure functions (numpy in, numpy or messages out); `HriFacePublisher` only owns the
publishers. Face ids are 'f' + the pipeline's track id (e.g. f3; a topic name token cannot start with a
digit), stable over short occlusions: the tracker holds lost tracks for re-acquisition.
Frames (REP-155, "Face and Gaze Frames"):
- face_<id>: child of the image's frame, origin at the sellion (iBUG point 27 of the fitted model),
  x out of the face, y to the person's left, z towards the scalp;
- gaze_<id>: child of face_<id>, same origin, 'optical' axes: z along the gaze, x to the person's right,
  y down. The gaze is not estimated beyond the head orientation, so z is face_<id>'s x (as REP-155 asks).
hri_msgs is not on PyPI: tools/build_interfaces.sh builds msg/hri_msgs_vendor when no hri_msgs exists.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# rclpy and the other message packages are imported where messages are built: the numpy conversions
# import (and are tested) without ROS
try:  # system ROS / a ros4hri checkout, or the vendored build of tools/build_interfaces.sh
    from hri_msgs.msg import FacialLandmarks, IdsList, NormalizedPointOfInterest2D, NormalizedRegionOfInterest2D
except ImportError:  # pragma: no cover - HriFacePublisher says what to do
    FacialLandmarks = IdsList = NormalizedPointOfInterest2D = NormalizedRegionOfInterest2D = None

# Node parameters of this output (names as the node declares them; the node merges them into its own).
HRI_DEFAULTS: dict[str, object] = {
    "hri.face_width_px": 128,  # /cropped and /aligned width (REP-155 /humans/faces/width)
    "hri.face_height_px": 128,  # ... height (REP-155 /humans/faces/height)
    "hri.forget_after_s": 5.0,  # a face's topics are destroyed this long after it was last seen (image time)
}
HRI_DESCRIPTIONS = {
    "hri.face_width_px": "width of /humans/faces/<id>/cropped and /aligned, pixels (> 0)",
    "hri.face_height_px": "height of /humans/faces/<id>/cropped and /aligned, pixels (> 0)",
    "hri.forget_after_s": "a face's /humans/faces/<id>/* publishers are destroyed this many seconds (image "
                          "time) after it was last seen (>= 0); keep it above landmarks.reacquire_s",
}

TRACKED_TOPIC = "/humans/faces/tracked"
FACE_NAMESPACE = "/humans/faces"
FACE_FRAME_PREFIX = "face_"  # REP-155 frame names: fixed, not the node's tf_prefix
GAZE_FRAME_PREFIX = "gaze_"
SELLION_IBUG = 27  # iBUG 68 index of the top of the nose bridge = hri_msgs FacialLandmarks.SELLION
RIGHT_EYE_IBUG = slice(36, 42)  # the person's right eye (image left for a frontal face)
LEFT_EYE_IBUG = slice(42, 48)

# REP-155 face frame axes (x forward, y person's left, z up) written in model space (core/camera.py:
# x person's left, y up, z facing direction): columns are the face frame's x, y, z.
FACE_AXES_IN_MODEL = np.array([[0.0, 1.0, 0.0],
                               [0.0, 0.0, 1.0],
                               [1.0, 0.0, 0.0]])
# gaze frame axes (z = face x, x = person's right = -face y, y down = -face z) in the face frame
GAZE_AXES_IN_FACE = np.array([[0.0, 0.0, 1.0],
                              [-1.0, 0.0, 0.0],
                              [0.0, -1.0, 0.0]])


def validate_hri_value(name: str, value) -> str | None:
    """None when `value` is acceptable for the parameter `name` of HRI_DEFAULTS, else the reason."""
    if name in ("hri.face_width_px", "hri.face_height_px") and not value > 0:
        return f"{name} must be > 0 pixels, got {value}"
    if name == "hri.forget_after_s" and not value >= 0:
        return f"{name} must be >= 0 s, got {value}"
    return None


FACE_ID_PREFIX = "f"  # a ROS topic token must not start with a digit: /humans/faces/f3/roi, not .../3/roi


def face_id(track_id: int) -> str:
    """REP-155 face id of a track: 'f' + its number (short, unique while the track lives; the same
    deterministic form as hri_face_detect's 'f00003', without the padding)."""
    return f"{FACE_ID_PREFIX}{int(track_id)}"


# ------------------------------------------------------------------------------------------- 2D conversions
def normalized_points(points_px: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, 2) pixel positions (integer values at pixel centres) -> (N, 2) in [0, 1] of the image's
    extent (0 = left/top edge of the first pixel, 1 = right/bottom edge of the last)."""
    p = (np.asarray(points_px, np.float64).reshape(-1, 2) + 0.5) / np.array([width, height], np.float64)
    return np.clip(np.nan_to_num(p, nan=0.0), 0.0, 1.0)


def normalized_roi(bbox: np.ndarray, width: int, height: int) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) pixels -> (xmin, ymin, xmax, ymax) normalised and clamped to [0, 1]."""
    (xmin, ymin), (xmax, ymax) = normalized_points(np.asarray(bbox, np.float64).reshape(2, 2), width, height)
    return float(xmin), float(ymin), float(xmax), float(ymax)


def landmarks70(landmarks68: np.ndarray, visible68: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """iBUG 68 points (68, 2) px and their visibility (68,) bool -> hri_msgs' 70 landmarks (70, 2) px
    and the fraction of each that is seen (70,). hri_msgs' codes follow the dlib/OpenPose order, which
    is iBUG's: codes 0-67 are the iBUG points in place; RIGHT_PUPIL (68) and LEFT_PUPIL (69) are the
    centroids of the person's right (iBUG 36-41) and left (42-47) eye contours."""
    pts = np.asarray(landmarks68, np.float64).reshape(68, 2)
    vis = np.asarray(visible68, bool).reshape(68).astype(np.float64)
    out = np.concatenate([pts, pts[RIGHT_EYE_IBUG].mean(0, keepdims=True), pts[LEFT_EYE_IBUG].mean(0, keepdims=True)])
    seen = np.concatenate([vis, [vis[RIGHT_EYE_IBUG].mean(), vis[LEFT_EYE_IBUG].mean()]])
    return out, seen


def landmark_confidences(score: float, seen: np.ndarray) -> np.ndarray:
    """Per-landmark confidence c: the face score times the fraction of the point that is seen. An occluded
    point is the fitted model's estimate, not an observation: c = 0, its position is still the best guess."""
    return np.clip(float(score) * np.asarray(seen, np.float64), 0.0, 1.0)


def crop_face(image_bgr: np.ndarray, bbox: np.ndarray, width_px: int, height_px: int) -> np.ndarray:
    """The bbox (x0, y0, x1, y1 px) of the image, scaled to fit (width_px, height_px) with its aspect
    kept, centred and 0-padded (REP-155 /cropped; what hri_face_detect publishes). uint8 BGR."""
    h, w = image_bgr.shape[:2]
    out = np.zeros((height_px, width_px, 3), np.uint8)
    x0, y0, x1, y1 = np.nan_to_num(np.asarray(bbox, np.float64).reshape(4))
    # pixel-centre bbox -> the pixels it covers, clipped to the image
    c0, r0 = max(0, int(np.floor(x0 + 0.5))), max(0, int(np.floor(y0 + 0.5)))
    c1, r1 = min(w, int(np.floor(x1 + 0.5)) + 1), min(h, int(np.floor(y1 + 0.5)) + 1)
    if c1 <= c0 or r1 <= r0:
        return out  # the box is outside the image: an all-black face image, never an error
    roi = image_bgr[r0:r1, c0:c1]
    scale = min(width_px / roi.shape[1], height_px / roi.shape[0])
    sw = min(width_px, max(1, round(roi.shape[1] * scale)))
    sh = min(height_px, max(1, round(roi.shape[0] * scale)))
    scaled = cv2.resize(roi, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    ox, oy = (width_px - sw) // 2, (height_px - sh) // 2
    out[oy:oy + sh, ox:ox + sw] = scaled
    return out


def aligned_face(image_bgr: np.ndarray, bbox: np.ndarray, roll_deg: float, width_px: int,
                 height_px: int) -> np.ndarray:
    """The face turned upright: the square of side max(bbox width, height) around the bbox centre,
    rotated by -roll about that centre and scaled to fit (width_px, height_px) (REP-155 /aligned).
    roll > 0 turns the face counter-clockwise in the image (core/camera.py), so the image is turned
    clockwise by roll here. Outside the image: black. uint8 BGR."""
    x0, y0, x1, y1 = np.nan_to_num(np.asarray(bbox, np.float64).reshape(4))
    side = max(x1 - x0, y1 - y0, 1.0)
    scale = min(width_px, height_px) / side
    centre = ((x0 + x1) / 2.0, (y0 + y1) / 2.0)
    # cv2 angles are counter-clockwise as displayed (origin top-left): -roll turns the image clockwise
    m = cv2.getRotationMatrix2D(centre, -float(roll_deg), scale)
    m[:, 2] += ((width_px - 1) / 2.0 - centre[0], (height_px - 1) / 2.0 - centre[1])
    return cv2.warpAffine(image_bgr, m, (width_px, height_px), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


# ------------------------------------------------------------------------------------------- 3D conversions
@dataclass
class SellionBasis:
    """The sellion vertex of a morphable model as a function of identity and expression (metres,
    model space): mean (3,) + identity @ identity (K, 3) + expression @ expression (E, 3)."""

    mean_m: np.ndarray
    identity_m: np.ndarray
    expression_m: np.ndarray

    @staticmethod
    def from_model(model) -> SellionBasis:
        """From a MorphableModel (its iBUG-27 landmark vertex)."""
        v = int(model.landmarks68[SELLION_IBUG])
        as_np = lambda t: t.detach().cpu().numpy().astype(np.float64)  # noqa: E731
        return SellionBasis(as_np(model.mean_m[v]), as_np(model.identity_basis_m[:, v]),
                            as_np(model.expression_basis_m[:, v]))

    def model_point_m(self, identity: np.ndarray, expression: np.ndarray) -> np.ndarray:
        """(3,) the sellion of a face with these coefficients, model space, metres."""
        return (self.mean_m + np.asarray(identity, np.float64).reshape(-1) @ self.identity_m
                + np.asarray(expression, np.float64).reshape(-1) @ self.expression_m)


def face_frame_pose(face, sellion: SellionBasis) -> tuple[np.ndarray, np.ndarray]:
    """REP-155 face_<id> pose in the camera frame: (rotation (3, 3) face -> camera, origin (3,) metres)."""
    rotation = np.asarray(face.rotation, np.float64).reshape(3, 3)
    origin = rotation @ sellion.model_point_m(face.identity, face.expression) + np.asarray(face.translation_m,
                                                                                         np.float64).reshape(3)
    return rotation @ FACE_AXES_IN_MODEL, origin


def hri_transforms(header, faces, sellion: SellionBasis) -> list:
    """face_<id> under header.frame_id and gaze_<id> under face_<id>, per face, stamped with the image."""
    from geometry_msgs.msg import Transform, TransformStamped, Vector3
    from std_msgs.msg import Header

    from .messages import pose_msg  # the one rotation -> quaternion path (core.geometry)

    gaze = pose_msg(GAZE_AXES_IN_FACE, np.zeros(3)).orientation
    out = []
    for face in faces:
        fid = face_id(face.track_id)
        p = pose_msg(*face_frame_pose(face, sellion))
        out.append(TransformStamped(header=header, child_frame_id=FACE_FRAME_PREFIX + fid, transform=Transform(
            translation=Vector3(x=p.position.x, y=p.position.y, z=p.position.z), rotation=p.orientation)))
        out.append(TransformStamped(header=Header(stamp=header.stamp, frame_id=FACE_FRAME_PREFIX + fid),
                                    child_frame_id=GAZE_FRAME_PREFIX + fid,
                                    transform=Transform(translation=Vector3(), rotation=gaze)))
    return out


# ------------------------------------------------------------------------------------------- messages
def ids_list_msg(header, faces):
    return IdsList(header=header, ids=[face_id(f.track_id) for f in faces])


def roi_msg(header, face, width: int, height: int):
    xmin, ymin, xmax, ymax = normalized_roi(face.bbox, width, height)
    return NormalizedRegionOfInterest2D(header=header, xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax,
                                        c=float(np.clip(face.score, 0.0, 1.0)))


def facial_landmarks_msg(header, face, width: int, height: int):
    points, seen = landmarks70(face.landmarks68, face.landmarks68_visible)
    xy = normalized_points(points, width, height).tolist()
    c = landmark_confidences(face.score, seen).tolist()
    return FacialLandmarks(header=header, height=int(height), width=int(width),
                           landmarks=[NormalizedPointOfInterest2D(x=x, y=y, c=ci) for (x, y), ci in zip(xy, c)])


@dataclass
class _FaceTopics:
    roi: object
    landmarks: object
    cropped: object
    aligned: object
    last_seen_s: float


class HriFacePublisher:
    """Publishes one frame's faces the REP-155 way on `node`. `params[name]` gives the HRI_DEFAULTS
    parameters (read at every frame: a dict or the node's parameter view); `model` is the pipeline's
    MorphableModel (the sellion, origin of face_<id>); `tf_publisher` a /tf publisher to share (the
    node's), else one is created. Call `publish` from one thread; `close` before destroying the node."""

    def __init__(self, node, params, model, tf_publisher=None):
        from rclpy.qos import QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy

        from .entities import DESTROYABLE_PUBLISHER
        from .outputs import TFMessage  # None without tf2_msgs

        if IdsList is None or (tf_publisher is None and TFMessage is None):
            raise RuntimeError("hri_msgs or tf2_msgs is not importable: run tools/build_interfaces.sh (builds "
                               "msg/hri_msgs_vendor, msg/tf2_msgs_vendor) or source a ROS installation with both")
        self.node, self.params = node, params
        self.sellion = SellionBasis.from_model(model)
        # hri_face_detect's QoS (reliable, volatile, depth 1): latest state per topic
        self.qos = QoSProfile(reliability=QoSReliabilityPolicy.RELIABLE, history=QoSHistoryPolicy.KEEP_LAST, depth=1)
        self.pub_tracked = node.create_publisher(IdsList, TRACKED_TOPIC, self.qos, **DESTROYABLE_PUBLISHER)
        self._own_tf = tf_publisher is None
        if tf_publisher is None:
            tf_qos = QoSProfile(reliability=QoSReliabilityPolicy.RELIABLE, history=QoSHistoryPolicy.KEEP_LAST,
                                depth=100, durability=QoSDurabilityPolicy.VOLATILE)  # tf2_ros' /tf QoS
            tf_publisher = node.create_publisher(TFMessage, "/tf", tf_qos, **DESTROYABLE_PUBLISHER)
        self.pub_tf = tf_publisher
        self.faces: dict[str, _FaceTopics] = {}

    def _topics(self, fid: str, t: float) -> _FaceTopics:
        topics = self.faces.get(fid)
        if topics is None:
            from sensor_msgs.msg import Image

            from .entities import DESTROYABLE_PUBLISHER

            ns = f"{FACE_NAMESPACE}/{fid}"

            def create(msg_type, suffix):
                return self.node.create_publisher(msg_type, ns + suffix, self.qos, **DESTROYABLE_PUBLISHER)

            topics = self.faces[fid] = _FaceTopics(
                create(NormalizedRegionOfInterest2D, "/roi"), create(FacialLandmarks, "/landmarks"),
                create(Image, "/cropped"), create(Image, "/aligned"), t)
        topics.last_seen_s = t
        return topics

    def publish(self, header, result, image_bgr: np.ndarray) -> None:
        """Publish a FrameResult: tracked ids, /tf, then each face's topics (image topics only when
        someone subscribes); destroy the topics of faces unseen for hri.forget_after_s."""
        from .messages import image_msg
        from .outputs import TFMessage

        t = float(result.timestamp_s)
        h, w = image_bgr.shape[:2]
        fw, fh = int(self.params["hri.face_width_px"]), int(self.params["hri.face_height_px"])
        self.pub_tracked.publish(ids_list_msg(header, result.faces))
        if result.faces:
            self.pub_tf.publish(TFMessage(transforms=hri_transforms(header, result.faces, self.sellion)))
        for face in result.faces:
            topics = self._topics(face_id(face.track_id), t)
            topics.roi.publish(roi_msg(header, face, w, h))
            topics.landmarks.publish(facial_landmarks_msg(header, face, w, h))
            if topics.cropped.get_subscription_count():
                topics.cropped.publish(image_msg(header, crop_face(image_bgr, face.bbox, fw, fh), "bgr8"))
            if topics.aligned.get_subscription_count():
                topics.aligned.publish(image_msg(header, aligned_face(image_bgr, face.bbox, face.roll_deg, fw, fh),
                                                 "bgr8"))
        self._forget(t, float(self.params["hri.forget_after_s"]))

    def _forget(self, t: float, after_s: float) -> None:
        for fid, topics in list(self.faces.items()):
            topics.last_seen_s = min(topics.last_seen_s, t)  # image time went backwards (pipeline reset)
            if t - topics.last_seen_s > after_s:
                self._destroy(fid)

    def _destroy(self, fid: str) -> None:
        topics = self.faces.pop(fid)
        for pub in (topics.roi, topics.landmarks, topics.cropped, topics.aligned):
            self.node.destroy_publisher(pub)

    @property
    def face_ids(self) -> list[str]:
        """Ids whose /humans/faces/<id>/* topics exist now."""
        return list(self.faces)

    def close(self, header=None) -> None:
        """Say no face is tracked (when `header` is given) and destroy every publisher of this object."""
        if header is not None:
            self.pub_tracked.publish(IdsList(header=header, ids=[]))
        for fid in list(self.faces):
            self._destroy(fid)
        self.node.destroy_publisher(self.pub_tracked)
        if self._own_tf:
            self.node.destroy_publisher(self.pub_tf)
