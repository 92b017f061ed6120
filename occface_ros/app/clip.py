"""A short 640x480 clip of real frames, built from a registry photo with smooth camera motion.

Used by `make demo` and `occface bench`: the same frames feed our pipeline and the reference.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from .samples import sample_path

CLIP_SIZE = (640, 480)


def clip_frames(num_frames: int = 120, photo: str = "astronaut", size=CLIP_SIZE, seed: int = 0) -> list[np.ndarray]:
    """Frames (BGR uint8) of a real photo under a slow similarity motion (pan, zoom, in-plane roll)."""
    if photo == "astronaut":
        image = cv2.imread(str(sample_path("skimage", "astronaut.png")))
        centre = np.array([240.0, 130.0])  # the face in the 512x512 photo
        face_px = 130.0
    else:
        image = cv2.imread(str(sample_path("insightface", "Tom_Hanks_54745.png")))
        centre = np.array([image.shape[1] / 2, image.shape[0] / 2])
        face_px = image.shape[1] * 0.6
    width, height = size
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * math.pi, 4)
    frames = []
    for i in range(num_frames):
        t = i / 30.0
        scale = (height * 0.45 / face_px) * (1.0 + 0.12 * math.sin(0.7 * t + phase[0]))
        angle = 8.0 * math.sin(0.9 * t + phase[1])
        shift = np.array([60 * math.sin(0.5 * t + phase[2]), 30 * math.sin(0.8 * t + phase[3])])
        m = cv2.getRotationMatrix2D(tuple(centre), angle, scale)
        m[:, 2] += np.array([width / 2, height / 2]) + shift - centre
        frames.append(cv2.warpAffine(image, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
    return frames


def write_clip(path: str | Path, num_frames: int = 120, fps: float = 30.0, photo: str = "astronaut") -> Path:
    """Write the clip as an mp4 (mp4v) video; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = clip_frames(num_frames, photo)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, CLIP_SIZE)
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write mp4 video here")
    for frame in frames:
        writer.write(frame)
    writer.release()
    tmp.replace(path)
    return path
