"""sensor_msgs/Image <-> numpy, with cv_bridge when importable and numpy otherwise.

Works on any object with the fields of sensor_msgs/Image (height, width, encoding, is_bigendian,
step, data), so rosbags messages convert too. Every problem raises `ImageConversionError` whose
`cause` is a short stable key (for log-once and diagnostics), never anything else.
"""
from __future__ import annotations

import logging
import threading
import time

import numpy as np

try:  # optional: only on machines with system ROS
    from cv_bridge import CvBridge as _CvBridge  # type: ignore
except Exception:  # noqa: BLE001 - any import problem means "not available"
    _CvBridge = None

# encoding -> (channels, dtype)
ENCODINGS: dict[str, tuple[int, type]] = {
    "rgb8": (3, np.uint8),
    "bgr8": (3, np.uint8),
    "rgba8": (4, np.uint8),
    "bgra8": (4, np.uint8),
    "mono8": (1, np.uint8),
    "8UC1": (1, np.uint8),
    "8UC3": (3, np.uint8),
    "mono16": (1, np.uint16),
    "16UC1": (1, np.uint16),
}
SUPPORTED_ENCODINGS = tuple(ENCODINGS)
FALLBACK_LOG_PERIOD_S = 10.0  # a cv_bridge failure can repeat on every frame: one line per cause this often

_log = logging.getLogger(__name__)
_fallback_logged_at: dict[str, float] = {}  # cause -> monotonic time of its last log line
_fallback_lock = threading.Lock()


def _log_cv_bridge_fallback(exc: Exception, encoding: str) -> None:
    cause = type(exc).__name__
    now = time.monotonic()
    with _fallback_lock:
        last = _fallback_logged_at.get(cause)
        if last is not None and now - last < FALLBACK_LOG_PERIOD_S:
            return
        _fallback_logged_at[cause] = now
    _log.warning("cv_bridge could not convert a %s image (%s: %s): converted with numpy instead "
                 "(logged at most every %g s)", encoding, cause, exc, FALLBACK_LOG_PERIOD_S)


class ImageConversionError(ValueError):
    """An image message that cannot be converted; `cause` is one of: unsupported_encoding,
    empty_image, wrong_step, truncated_buffer."""

    def __init__(self, cause: str, message: str):
        super().__init__(message)
        self.cause = cause


def have_cv_bridge() -> bool:
    return _CvBridge is not None


def _buffer(data) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data.view(np.uint8).reshape(-1)
    return np.frombuffer(memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else data,
                         dtype=np.uint8)


def image_to_array(msg) -> np.ndarray:
    """The image as (H, W) or (H, W, C) numpy, in its own encoding (validated; a view when possible)."""
    enc = msg.encoding
    if enc not in ENCODINGS:
        raise ImageConversionError(
            "unsupported_encoding",
            f"unsupported image encoding {enc!r} (supported: {', '.join(SUPPORTED_ENCODINGS)})")
    channels, dtype = ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageConversionError("empty_image", f"empty image {w}x{h}")
    itemsize = np.dtype(dtype).itemsize
    row = w * channels * itemsize
    if step < row:
        raise ImageConversionError(
            "wrong_step", f"step {step} < width {w} x {channels} channel(s) x {itemsize} byte(s) = {row} ({enc})")
    buf = _buffer(msg.data)
    if buf.size < step * (h - 1) + row:
        raise ImageConversionError(
            "truncated_buffer", f"data has {buf.size} bytes, {enc} {w}x{h} with step {step} needs {step * h}")
    rows = np.lib.stride_tricks.as_strided(buf, shape=(h, row), strides=(step, 1)) if buf.size < step * h \
        else buf[: step * h].reshape(h, step)[:, :row]
    arr = np.ascontiguousarray(rows)
    if itemsize > 1:  # to native byte order
        order = ">" if msg.is_bigendian else "<"
        arr = arr.view(np.dtype(dtype).newbyteorder(order)).astype(dtype, copy=False)
    arr = arr.reshape(h, w, channels)
    return arr[:, :, 0] if channels == 1 else arr


def _to_bgr8_numpy(msg) -> np.ndarray:
    import cv2

    arr = image_to_array(msg)
    enc = msg.encoding
    if enc in ("bgr8", "8UC3"):
        return arr
    if enc == "rgb8":
        return cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    if enc == "rgba8":
        return cv2.cvtColor(arr, cv2.COLOR_RGBA2BGR)
    if enc == "bgra8":
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2BGR)
    if enc in ("mono16", "16UC1"):
        arr = (arr >> 8).astype(np.uint8)  # top byte: the full 16-bit range maps to 0..255
    return cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)


def image_msg_to_bgr8(msg, use_cv_bridge: bool = True) -> np.ndarray:
    """Any supported encoding -> contiguous (H, W, 3) uint8 BGR (what FacePipeline.process takes).

    Validation (encoding, step, buffer size) is always done here first, so cv_bridge (when present)
    only ever sees well-formed messages; mono16 is scaled by 1/256 either way.
    """
    image_to_array(msg)  # validates; raises ImageConversionError
    if use_cv_bridge and _CvBridge is not None and msg.encoding not in ("mono16", "16UC1"):
        try:
            out = _CvBridge().imgmsg_to_cv2(msg, desired_encoding="bgr8")
            return np.ascontiguousarray(out)
        except Exception as exc:  # noqa: BLE001 - fall back to numpy on any cv_bridge problem, with a line
            _log_cv_bridge_fallback(exc, msg.encoding)
    return np.ascontiguousarray(_to_bgr8_numpy(msg))


def fill_image_msg(msg, array: np.ndarray, encoding: str, header=None):
    """Fill a sensor_msgs/Image (rclpy or rosbags instance) from a (H, W[, C]) array; returns msg."""
    channels, dtype = ENCODINGS[encoding]
    array = np.ascontiguousarray(array, dtype=dtype)
    h, w = array.shape[:2]
    got = 1 if array.ndim == 2 else array.shape[2]
    if got != channels:
        raise ValueError(f"{encoding} needs {channels} channel(s), got array of shape {array.shape}")
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding = h, w, encoding
    msg.is_bigendian = 0 if array.dtype.byteorder in ("=", "<", "|") else 1
    msg.step = w * channels * array.dtype.itemsize
    try:
        msg.data = array.tobytes()
    except (TypeError, AssertionError):  # rosbags dataclasses hold numpy uint8 arrays
        msg.data = array.view(np.uint8).reshape(-1)
    return msg
