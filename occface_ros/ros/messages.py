"""Message builders: FrameResult/FaceResult (numpy) -> ROS messages (rclpy classes).

Pure functions of their inputs (no node), built from numpy in bulk; every output message takes the
input image's header unchanged.
"""
from __future__ import annotations

import struct

import numpy as np
from geometry_msgs.msg import (
    Point,
    Point32,
    Pose,
    PoseArray,
    Quaternion,
    Transform,
    TransformStamped,
    Vector3,
)
from occface_msgs.msg import Face, FaceArray
from sensor_msgs.msg import Image
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from ..core.geometry import rotation_to_quaternion_xyzw
from .image_conversion import fill_image_msg
from .parsing import region_occlusion

MESH_NS = "occface_mesh"
MESH_RGB = (0.8, 0.7, 0.6)  # the mesh marker's colour when it is not sampled from the image
# Lambert shading of that colour: a fixed light in the camera (optical) frame, above-left of the
# camera and behind it (direction towards the light; x right, y down, z forward), plus ambient
MESH_LIGHT_DIR = (-0.35, -0.55, -1.0)
MESH_AMBIENT = 0.3


def pose_msg(rotation: np.ndarray, translation: np.ndarray) -> Pose:
    x, y, z, w = (float(v) for v in rotation_to_quaternion_xyzw(np.asarray(rotation, np.float64)))
    tx, ty, tz = (float(v) for v in np.asarray(translation, np.float64))
    return Pose(position=Point(x=tx, y=ty, z=tz), orientation=Quaternion(x=x, y=y, z=z, w=w))


def tf_frame_name(track_id: int, prefix: str = "face_") -> str:
    return f"{prefix}{int(track_id)}"


def face_msg(face, expression_names: list[str], tf_prefix: str = "face_") -> Face:
    msg = Face()
    msg.track_id = int(face.track_id)
    msg.score = float(face.score)
    msg.bbox = np.asarray(face.bbox, np.float32).reshape(4)
    lm = np.asarray(face.landmarks68, np.float64).reshape(68, 2).tolist()
    msg.landmarks68 = [Point32(x=x, y=y, z=0.0) for x, y in lm]
    msg.landmarks68_visible = [bool(v) for v in np.asarray(face.landmarks68_visible).reshape(68)]
    msg.pose = pose_msg(face.rotation, face.translation_m)
    msg.yaw_deg, msg.pitch_deg, msg.roll_deg = float(face.yaw_deg), float(face.pitch_deg), float(face.roll_deg)
    msg.identity = np.asarray(face.identity, np.float32).reshape(-1)
    msg.expression = np.asarray(face.expression, np.float32).reshape(-1)
    msg.expression_names = [str(n) for n in expression_names]
    msg.occlusion_ratio = float(face.occlusion_ratio)
    regions = region_occlusion(face)
    msg.occlusion_eyes, msg.occlusion_brows = regions["eyes"], regions["brows"]
    msg.occlusion_nose, msg.occlusion_mouth, msg.occlusion_skin = regions["nose"], regions["mouth"], regions["skin"]
    msg.reprojection_error_px = float(face.reprojection_error_px)
    msg.tf_frame = tf_frame_name(face.track_id, tf_prefix)
    return msg


def face_array_msg(header, result, expression_names: list[str], tf_prefix: str = "face_") -> FaceArray:
    msg = FaceArray()
    msg.header = header
    msg.image_width, msg.image_height = int(result.width), int(result.height)
    msg.faces = [face_msg(f, expression_names, tf_prefix) for f in result.faces]
    msg.lost_track_ids = [int(t) for t in result.lost_track_ids]
    return msg


def pose_array_msg(header, faces) -> PoseArray:
    return PoseArray(header=header, poses=[pose_msg(f.rotation, f.translation_m) for f in faces])


def transforms(header, faces, tf_prefix: str = "face_") -> list[TransformStamped]:
    """face_<track_id> under header.frame_id (the camera frame), stamped with the image stamp."""
    out = []
    for f in faces:
        p = pose_msg(f.rotation, f.translation_m)
        out.append(TransformStamped(
            header=header, child_frame_id=tf_frame_name(f.track_id, tf_prefix),
            transform=Transform(translation=Vector3(x=p.position.x, y=p.position.y, z=p.position.z),
                                rotation=p.orientation)))
    return out


def sample_colours(image_bgr: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """(N, 2) pixel positions -> (N, 3) RGB in [0, 1] (nearest pixel, clamped to the image)."""
    h, w = image_bgr.shape[:2]
    px = np.nan_to_num(np.asarray(pixels, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    x = np.clip(np.rint(px[:, 0]), 0, w - 1).astype(np.intp)
    y = np.clip(np.rint(px[:, 1]), 0, h - 1).astype(np.intp)
    return image_bgr[y, x, ::-1].astype(np.float32) / 255.0


def lambert_colours(vertices: np.ndarray, triangles: np.ndarray, rgb=MESH_RGB, light_dir=MESH_LIGHT_DIR,
                    ambient: float = MESH_AMBIENT) -> np.ndarray:
    """(N, 3) RGB in [0, 1] per vertex: `rgb` x (ambient + (1 - ambient) max(0, n.l)) with n the
    area-weighted vertex normal of the (N, 3) vertices (camera frame) over the (T, 3) triangles,
    oriented outwards (away from the centroid on the whole: the winding convention of a model is
    not trusted) and l the fixed light direction. Vertices of no triangle get `ambient`."""
    v = np.asarray(vertices, np.float64).reshape(-1, 3)
    tris = np.asarray(triangles, np.intp).reshape(-1, 3)
    normals = np.zeros_like(v)
    if len(tris):
        face_n = np.cross(v[tris[:, 1]] - v[tris[:, 0]], v[tris[:, 2]] - v[tris[:, 0]])  # length = 2 x area
        corners = tris.reshape(-1)
        for k in range(3):
            normals[:, k] = np.bincount(corners, np.repeat(face_n[:, k], 3), minlength=len(v))
    if np.einsum("ij,ij->", normals, v - v.mean(0)) < 0:  # inward on the whole (divergence theorem): flip
        normals = -normals
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)
    light = np.asarray(light_dir, np.float64)
    light = light / np.linalg.norm(light)
    shade = ambient + (1.0 - ambient) * np.clip(normals @ light, 0.0, 1.0)
    return (shade[:, None] * np.asarray(rgb, np.float64)[None, :]).astype(np.float32)


def _mesh_marker(header, track_id: int, ns: str, lifetime_s: float) -> Marker:
    m = Marker(header=header, ns=ns, id=int(track_id), type=Marker.TRIANGLE_LIST, action=Marker.ADD)
    m.pose.orientation.w = 1.0
    m.scale.x = m.scale.y = m.scale.z = 1.0
    m.color = ColorRGBA(r=MESH_RGB[0], g=MESH_RGB[1], b=MESH_RGB[2], a=1.0)
    m.lifetime.sec = int(lifetime_s)
    m.lifetime.nanosec = int(round((lifetime_s - int(lifetime_s)) * 1e9))
    return m


# Sentinels of marker k: exactly representable in float64 / float32, never produced by a mesh.
def _sentinel_point(k: int) -> tuple[float, float, float]:
    return (-(k + 1) * 2.0 ** -1000, 3 * 2.0 ** -1001, -5 * 2.0 ** -1002)


def _sentinel_colour(k: int) -> tuple[float, float, float, float]:
    return (-(k + 1) * 2.0 ** -100, 3 * 2.0 ** -101, -5 * 2.0 ** -102, 7 * 2.0 ** -103)


def mesh_marker_array_cdr(header, meshes, deleted_track_ids=(), ns: str = MESH_NS,
                          lifetime_s: float = 0.0) -> bytes:
    """Serialized visualization_msgs/MarkerArray: a DELETE marker per id in `deleted_track_ids`,
    then one TRIANGLE_LIST marker per (track_id, vertices (N, 3) m, triangles (T, 3),
    colours (N, 3) RGB in [0, 1] or None): 3 points (and colours) per triangle, in header.frame_id.

    A mesh marker has ~10^4 points; building them as Python Point objects costs ~10 ms per frame
    and converting them back in publish() as much again. Instead the distro's own serializer
    writes a template with one sentinel point (and colour) per marker and the numpy buffers are
    spliced in at the sentinels (the inserted sizes are multiples of 8, so CDR alignment is kept).
    The bytes deserialize to the full message (tested); Publisher.publish and the bag writer take
    them as they are.
    """
    from rclpy.serialization import serialize_message  # noqa: PLC0415 - rclpy only where ROS runs

    markers = [Marker(header=header, ns=ns, id=int(t), action=Marker.DELETE) for t in deleted_track_ids]
    payloads = []
    for k, (track_id, vertices, triangles, colours) in enumerate(meshes):
        m = _mesh_marker(header, track_id, ns, lifetime_s)
        idx = np.asarray(triangles, np.intp).reshape(-1)
        points = np.asarray(vertices, np.float64)[idx]
        rgba = None
        if colours is not None:
            rgba = np.ones((len(idx), 4), np.float32)
            rgba[:, :3] = np.asarray(colours, np.float32)[idx]
        if len(idx):
            x, y, z = _sentinel_point(k)
            m.points = [Point(x=x, y=y, z=z)]
            if rgba is not None:
                r, g, b, a = _sentinel_colour(k)
                m.colors = [ColorRGBA(r=r, g=g, b=b, a=a)]
            payloads.append((k, points, rgba))
        markers.append(m)
    raw = serialize_message(MarkerArray(markers=markers))
    if not payloads:
        return raw
    little = raw[1] & 1  # encapsulation id: odd = little-endian (CDR_LE, PL_CDR_LE, CDR2_LE, ...)
    e = "<" if little else ">"
    parts, cursor = [], 0
    for k, points, rgba in payloads:
        for values, fmt, data in ((_sentinel_point(k), "ddd", points), (_sentinel_colour(k), "ffff", rgba)):
            if data is None:
                continue
            at = raw.find(struct.pack(e + fmt, *values), cursor)
            one = struct.pack(e + "I", 1)
            # the sequence length precedes the data, for points in XCDR1 with 4 bytes of alignment
            # padding between them (padding bytes are not zeroed); the byte before a points length
            # is frame_locked (False = 0), so raw[at-8:at-4] == 1 only in the padded layout
            if at < 8:
                raise RuntimeError("mesh_marker_array_cdr: sentinel not found in the serialized template")
            if fmt == "ddd" and raw[at - 8:at - 4] == one:
                length_at = at - 8
            elif raw[at - 4:at] == one:
                length_at = at - 4
            else:
                raise RuntimeError("mesh_marker_array_cdr: unexpected CDR layout of visualization_msgs/Marker")
            parts += [raw[cursor:length_at], struct.pack(e + "I", len(data)), raw[length_at + 4:at],
                      data.astype(e + fmt[0]).tobytes()]
            cursor = at + struct.calcsize(fmt)
    parts.append(raw[cursor:])
    return b"".join(parts)


def delete_all_marker(header, ns: str = MESH_NS) -> Marker:
    return Marker(header=header, ns=ns, action=Marker.DELETEALL)


def image_msg(header, array: np.ndarray, encoding: str) -> Image:
    return fill_image_msg(Image(), array, encoding, header)


def marker_array(markers) -> MarkerArray:
    return MarkerArray(markers=list(markers))
