"""Where occface keeps and finds its files (cache, MediaPipe models, morphable models)."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

MEDIAPIPE_VERSION = "0.10.21"


class MissingModelError(FileNotFoundError):
    """A model file the pipeline needs was not found; the message names the fix."""


def cache_dir() -> Path:
    """User cache: $OCCFACE_CACHE, else $XDG_CACHE_HOME/occface, else ~/.cache/occface."""
    env = os.environ.get("OCCFACE_CACHE")
    if env:
        root = Path(env)
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "occface"
    root.mkdir(parents=True, exist_ok=True)
    return root


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def shared_models_dir() -> Path:
    """../shared/models beside the checkout (present in development and CI)."""
    return repo_root().parent / "shared" / "models"


def mediapipe_modules_dir() -> Path:
    """The `modules/` folder of the installed mediapipe wheel, found without importing it.

    mediapipe is installed with --no-deps and never imported: only its .tflite files are used.
    """
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelError(
            f"mediapipe=={MEDIAPIPE_VERSION} is not installed; its .tflite weights are needed. "
            f"Fix: pip install --no-deps mediapipe=={MEDIAPIPE_VERSION} (or run `make venv`)."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "modules"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers never see it half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
