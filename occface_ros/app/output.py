"""The `occface run` output contract: frame JSON, OBJ meshes, overlays (all written atomically)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np

from ..core.labels import FACE_REGION_NAMES
from ..paths import atomic_write_bytes

# iBUG 68 drawing groups (index ranges; closed loops for eyes and lips)
IBUG68_POLYLINES = [
    (range(0, 17), False), (range(17, 22), False), (range(22, 27), False), (range(27, 31), False),
    (range(31, 36), False), (range(36, 42), True), (range(42, 48), True), (range(48, 60), True), (range(60, 68), True),
]


def frame_name(index: int) -> str:
    return f"{index:06d}"


def face_to_json(face, expression_names: list[str], mesh_path: str | None) -> dict:
    """One face of the frame JSON (see README: output contract)."""
    return {
        "track_id": int(face.track_id),
        "score": round(float(face.score), 4),
        "bbox": [round(float(v), 2) for v in face.bbox],
        "landmarks68": [[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks68],
        "landmarks68_visible": [bool(v) for v in face.landmarks68_visible],
        "pose": {
            "rotation": [[round(float(v), 6) for v in row] for row in face.rotation],
            "translation_m": [round(float(v), 5) for v in face.translation_m],
            "yaw_deg": round(float(face.yaw_deg), 3),
            "pitch_deg": round(float(face.pitch_deg), 3),
            "roll_deg": round(float(face.roll_deg), 3),
        },
        "expression": {n: round(float(v), 4) for n, v in zip(expression_names, face.expression)},
        "identity": [round(float(v), 4) for v in face.identity],
        "occlusion_ratio": round(float(face.occlusion_ratio), 4),
        "occlusion_by_region": {name: round(float(face.occlusion_by_region.get(name, 0.0)), 4)
                                for name in FACE_REGION_NAMES},
        "mesh": mesh_path,
    }


def write_json(path: Path, data: dict) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode())


def write_obj(path: Path, vertices: np.ndarray, triangles: np.ndarray) -> None:
    """Wavefront OBJ (1-based faces), written atomically; vectorised formatting."""
    buf = io.StringIO()
    buf.write("# occface_ros mesh: camera frame (x right, y down, z forward), metres\n")
    np.savetxt(buf, vertices, fmt="v %.6f %.6f %.6f")
    np.savetxt(buf, triangles + 1, fmt="f %d %d %d")
    atomic_write_bytes(path, buf.getvalue().encode())


def draw_overlay(image_bgr: np.ndarray, faces, projected_meshes: list[np.ndarray] | None = None,
                 triangles: np.ndarray | None = None) -> np.ndarray:
    """Landmarks, boxes, ids and (optionally) a projected mesh wireframe over a copy of the image."""
    out = image_bgr.copy()
    scale = max(1, round(max(out.shape[:2]) / 640))
    if projected_meshes is not None and triangles is not None:
        for pts in projected_meshes:
            tri = pts[triangles[::4]].astype(np.int32)  # a quarter of the triangles keeps it legible
            cv2.polylines(out, list(tri), True, (180, 120, 40), 1, cv2.LINE_AA)
    for face in faces:
        x0, y0, x1, y1 = (int(round(v)) for v in face.bbox)
        cv2.rectangle(out, (x0, y0), (x1, y1), (0, 200, 255), scale)
        lm = face.landmarks68.astype(np.float32)
        for idx, closed in IBUG68_POLYLINES:
            cv2.polylines(out, [lm[list(idx)].astype(np.int32)], closed, (0, 255, 0), scale, cv2.LINE_AA)
        for (x, y), vis in zip(lm, face.landmarks68_visible):
            cv2.circle(out, (int(x), int(y)), scale + 1, (0, 255, 0) if vis else (0, 0, 255), -1, cv2.LINE_AA)
        label = f"id {face.track_id} yaw {face.yaw_deg:+.0f} pitch {face.pitch_deg:+.0f} roll {face.roll_deg:+.0f}"
        cv2.putText(out, label, (x0, max(12, y0 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale, (0, 200, 255),
                    scale, cv2.LINE_AA)
    return out


def encode_image(image_bgr: np.ndarray, suffix: str = ".jpg") -> bytes:
    ok, buf = cv2.imencode(suffix, image_bgr)
    if not ok:
        raise RuntimeError(f"cannot encode {suffix}")
    return buf.tobytes()


def frame_masks(result) -> tuple[np.ndarray, np.ndarray]:
    """(occlusion mask mono8: 255 = occluded face pixel, parsing labels mono8) of a FrameResult,
    input size; without occlusion reasoning: an all-zero mask and the landmark-polygon parsing."""
    height, width = result.height, result.width
    if result.occlusion_mask is not None:
        mask = np.asarray(result.occlusion_mask, dtype=bool).astype(np.uint8) * 255
    else:
        mask = np.zeros((height, width), np.uint8)
    if result.parsing is not None:
        parsing = np.asarray(result.parsing, dtype=np.uint8)
    else:
        from ..render.parsing import landmark_parsing

        parsing = landmark_parsing([f.landmarks68 for f in result.faces], height, width)
    return mask, parsing
