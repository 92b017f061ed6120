"""ICT-FaceKit Light loader (packed npz; format in ../shared/models/README.md)."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ..paths import MissingModelError
from .model import MorphableModel

ICT_REQUIRED_ARRAYS = (
    "vertices", "identity_basis", "expression_basis", "expression_names", "triangles",
    "uv", "triangle_uv", "landmarks68", "face_vertex_count", "units",
)
_UNIT_TO_M = {"cm": 0.01, "m": 1.0, "mm": 0.001}


NPZ_MAGIC = b"PK"  # an npz is a zip archive
DEFAULT_FIX = ("point model.path at an intact ict_face_light.npz "
               "(`occface models fetch` writes one)")


def load_ict_npz(path: str | Path, fix: str = DEFAULT_FIX) -> MorphableModel:
    """Load an ICT-FaceKit npz (as packed by `occface models convert`) into metres.

    A file that is not an intact ICT npz raises MissingModelError with one line: the file, the
    cause and `fix` (which depends on where the path came from, see load_morphable_model)."""
    path = Path(path)

    def unusable(cause: str) -> MissingModelError:
        return MissingModelError(f"ICT model {path} is unusable: {cause}. Fix: {fix}.")

    try:
        with open(path, "rb") as fh:
            if fh.read(2) != NPZ_MAGIC:  # np.load would take it for a pickle and suggest allow_pickle
                raise unusable("not an npz (zip) archive")
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ICT_REQUIRED_ARRAYS if k not in data.files]
            if missing:
                raise unusable(f"not an ICT-FaceKit npz, missing arrays {missing}")
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        if isinstance(exc, MissingModelError):
            raise
        raise unusable(f"corrupt npz ({type(exc).__name__}: {' '.join(str(exc).split())})") from exc
    units = str(arrays["units"])
    if units not in _UNIT_TO_M:
        raise unusable(f"unknown units {units!r}")
    scale = _UNIT_TO_M[units]
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32) * scale)  # noqa: E731
    return MorphableModel(
        name="ict_face_light",
        mean_m=f32(arrays["vertices"]),
        identity_basis_m=f32(arrays["identity_basis"]),
        expression_basis_m=f32(arrays["expression_basis"]),
        expression_names=[str(n) for n in arrays["expression_names"]],
        expression_bounds=(0.0, 1.0),
        triangles=torch.from_numpy(arrays["triangles"].astype(np.int64)),
        landmarks68=torch.from_numpy(arrays["landmarks68"].astype(np.int64)),
        uv=arrays["uv"].astype(np.float32),
        triangle_uv=arrays["triangle_uv"].astype(np.int64),
        face_vertex_count=int(arrays["face_vertex_count"]),
        source=str(path),
        extras={k: arrays[k] for k in ("jawline_right", "jawline_left", "narrow_face_vertex_count") if k in arrays},
    )
