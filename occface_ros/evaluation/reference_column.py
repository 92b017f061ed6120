"""The MediaPipe column of the report: raw FaceMesh (static-image mode, in the reference venv) -> iBUG 68."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager

import numpy as np


@contextmanager
def _captured_stderr():
    """Send fd 2 to a temp file (MediaPipe's glog spam); re-emit it if the block fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            tmp.seek(0)
            sys.stderr.write(tmp.read().decode(errors="replace")[-4000:])
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class Reference:
    """MediaPipe's raw FaceMesh (static-image mode) -> iBUG 68 via the 468->68 mapping."""

    def __init__(self, enabled: bool):
        from ..reference import reference_python

        self.note = None
        self.name = "MediaPipe FaceMesh (raw)"
        if not enabled:
            self.note = "MediaPipe column skipped (--no-reference)"
        elif reference_python() is None:
            self.note = "MediaPipe column skipped: reference venv .venv-ref not found (`make venv-ref`)"
        self.enabled = self.note is None
        self._corr = None

    def landmarks68(self, frames_bgr: list[np.ndarray]) -> np.ndarray | None:
        """(N, 68, 2) pixels (NaN rows where no face), or None when disabled. Frames of one size."""
        if not self.enabled:
            return None
        from ..landmarks.correspondence import landmarks68_from_mp468, load_correspondences
        from ..reference import run_reference

        if self._corr is None:
            self._corr = load_correspondences()
        try:
            with _captured_stderr():
                out = run_reference(frames_bgr, warmup=0, static_image_mode=True)
        except (subprocess.CalledProcessError, OSError) as exc:  # keep evaluating; the column becomes n/a
            self.enabled, self.note = False, f"MediaPipe column dropped: the reference run failed ({exc})"
            return None
        self.name = out["name"] + ", static_image_mode"
        lms = np.asarray(out["landmarks468"], dtype=np.float32)[..., :2]
        return landmarks68_from_mp468(np.ascontiguousarray(lms), self._corr).astype(np.float64)
