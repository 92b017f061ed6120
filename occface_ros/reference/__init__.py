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


def run_reference(frames_bgr: list[np.ndarray], warmup: int = 5, static_image_mode: bool = False) -> dict:
    """Run mp.solutions.face_mesh on the frames in the reference venv.

    Returns {"name", "per_frame_ms": [...], "landmarks468": (N, 468, 3) array or NaN rows}.
    """
    python = reference_python()
    if python is None:
        raise FileNotFoundError("reference venv not found: run `make venv-ref` (or set OCCFACE_REF_PYTHON)")
    with tempfile.TemporaryDirectory() as tmp:
        frames_path = Path(tmp) / "frames.npy"
        out_path = Path(tmp) / "out.json"
        lms_path = Path(tmp) / "landmarks.npy"
        np.save(frames_path, np.stack(frames_bgr))
        cmd = [str(python), str(SCRIPT), str(frames_path), str(out_path), str(lms_path), str(warmup)]
        if static_image_mode:
            cmd.append("--static")
        subprocess.run(cmd, check=True)
        result = json.loads(out_path.read_text())
        result["landmarks468"] = np.load(lms_path, allow_pickle=False)
    return result
