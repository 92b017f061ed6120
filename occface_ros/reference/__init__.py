"""MediaPipe 0.10.21's own legacy FaceMesh pipeline as a reference, run in its own venv (.venv-ref)."""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..paths import repo_root

SCRIPT = Path(__file__).with_name("mp_legacy_facemesh.py")


def reference_python() -> Path | None:
    """The reference venv's interpreter ($OCCFACE_REF_PYTHON or .venv-ref), or None if absent."""
    import os

    env = os.environ.get("OCCFACE_REF_PYTHON")
    candidate = Path(env) if env else repo_root() / ".venv-ref" / "bin" / "python"
    return candidate if candidate.exists() else None


class ReferenceUnavailable(OSError):
    """The reference venv is missing or broken; the message is one line naming the fix."""


PROBE = "import mediapipe as mp, numpy; mp.solutions.face_mesh.FaceMesh"
FIX = "run `make venv-ref` (or set OCCFACE_REF_PYTHON to its python), or pass --no-reference"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def check_reference(timeout_s: float = 120.0) -> Path:
    """The reference interpreter, after checking that it imports MediaPipe (a second or two);
    ReferenceUnavailable before any work otherwise."""
    python = reference_python()
    if python is None:
        raise ReferenceUnavailable(f"MediaPipe reference venv (.venv-ref) not found. Fix: {FIX}.")
    try:
        probe = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReferenceUnavailable(f"MediaPipe reference {python} does not run ({type(exc).__name__}). "
                                   f"Fix: {FIX}.") from exc
    if probe.returncode != 0:
        raise ReferenceUnavailable(f"MediaPipe reference {python} is broken ({_last_line(probe.stderr)}). "
                                   f"Fix: {FIX}.")
    return python


def run_reference(frames_bgr: list[np.ndarray], warmup: int = 5, static_image_mode: bool = False) -> dict:
    """Run mp.solutions.face_mesh on the frames in the reference venv.

    Returns {"name", "per_frame_ms": [...], "landmarks468": (N, 468, 3) array or NaN rows};
    ReferenceUnavailable (an OSError, one line) when the venv is missing or the run fails.
    """
    python = reference_python()
    if python is None:
        raise ReferenceUnavailable(f"MediaPipe reference venv (.venv-ref) not found. Fix: {FIX}.")
    with tempfile.TemporaryDirectory() as tmp:
        frames_path = Path(tmp) / "frames.npy"
        out_path = Path(tmp) / "out.json"
        lms_path = Path(tmp) / "landmarks.npy"
        np.save(frames_path, np.stack(frames_bgr))
        cmd = [str(python), str(SCRIPT), str(frames_path), str(out_path), str(lms_path), str(warmup)]
        if static_image_mode:
            cmd.append("--static")
        run = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if run.returncode != 0:  # MediaPipe's own log lines are dropped; its error is the last line
            raise ReferenceUnavailable(f"MediaPipe reference run failed ({_last_line(run.stderr)}). Fix: {FIX}.")
        result = json.loads(out_path.read_text())
        result["landmarks468"] = np.load(lms_path, allow_pickle=False)
    return result
