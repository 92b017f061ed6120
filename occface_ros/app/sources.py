"""Frame sources for the CLI: one image, a folder of images, or a video file."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


class InputError(ValueError):
    """The input cannot be read; the message is one line for the user."""


@dataclass
class Frame:
    index: int
    source: str
    image_bgr: np.ndarray  # (H, W, 3) uint8
    timestamp_s: float


def read_image(path: Path) -> np.ndarray:
    """Read an image as BGR uint8 (grey and alpha images are converted); InputError if unreadable."""
    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    image = None
    if data is not None and data.size:
        with _quiet_native_stderr():  # OpenCV and libpng print their own lines about a broken file
            image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(f"cannot read image {path}: not a supported or intact image file")
    return to_bgr8(image)


def to_bgr8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.dtype != np.uint8:
        raise InputError(f"unsupported image dtype {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


@contextmanager
def _quiet_native_stderr():
    """Silence native libraries' own messages on fd 2 (FFmpeg, OpenCV, libpng): our error is the one line
    the user sees."""
    try:
        sys.stderr.flush()  # what Python has written so far still reaches the terminal
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class FrameSource:
    """Iterates frames of `path`; validates it when constructed (nothing is written before that)."""

    def __init__(self, path: str | Path, fps_for_images: float = 30.0):
        self.path = Path(path)
        self.fps_for_images = fps_for_images
        self.skipped: list[str] = []
        if not self.path.exists():
            raise InputError(f"input {self.path} does not exist")
        if self.path.is_dir():
            self.kind = "folder"
            self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise InputError(f"folder {self.path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            self._first = self._first_readable()
            self.length = len(self.files) - self._first
            self.fps = fps_for_images
        elif self.path.suffix.lower() in VIDEO_SUFFIXES:
            self.kind = "video"
            with _quiet_native_stderr():
                cap = cv2.VideoCapture(str(self.path))
                ok, _ = cap.read() if cap.isOpened() else (False, None)
                count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if ok else 0
                fps = cap.get(cv2.CAP_PROP_FPS) if ok else 0
                cap.release()
            if not ok:
                raise InputError(f"cannot read video {self.path}: no decodable frame")
            self.length = count if count > 0 else None
            self.fps = fps if fps and fps > 0 else 30.0
        else:
            self.kind = "image"
            read_image(self.path)
            self.length = 1
            self.fps = fps_for_images

    def _first_readable(self) -> int:
        """Index of the folder's first readable image; the broken ones before it are skipped."""
        for i, f in enumerate(self.files):
            try:
                read_image(f)
                return i
            except InputError as exc:
                self.skipped.append(str(exc))
        raise InputError(f"folder {self.path} holds no readable image ({len(self.files)} broken files, "
                         f"e.g. {self.files[0].name}): replace them or pass another folder")

    def __len__(self) -> int:
        return self.length or 0

    def __iter__(self) -> Iterator[Frame]:
        if self.kind == "image":
            yield Frame(0, str(self.path), read_image(self.path), 0.0)
        elif self.kind == "folder":
            index = 0
            for f in self.files[self._first:]:
                try:
                    image = read_image(f)
                except InputError as exc:  # one bad file in a folder is skipped and reported
                    self.skipped.append(str(exc))
                    continue
                yield Frame(index, str(f), image, index / self.fps)
                index += 1
        else:
            cap = cv2.VideoCapture(str(self.path))
            try:
                i = 0
                while True:
                    ok, image = cap.read()
                    if not ok:
                        break
                    yield Frame(i, f"{self.path}#{i}", image, i / self.fps)
                    i += 1
            finally:
                cap.release()
