"""ICT-FaceKit Light loader (packed npz; format in ../shared/models/README.md)."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from .model import MorphableModel

ICT_REQUIRED_ARRAYS = (
    "vertices", "identity_basis", "expression_basis", "expression_names", "triangles",
    "uv", "triangle_uv", "landmarks68", "face_vertex_count", "units",
)
_UNIT_TO_M = {"cm": 0.01, "m": 1.0, "mm": 0.001}


def load_ict_npz(path: str | Path) -> MorphableModel:
    """Load an ICT-FaceKit npz (as packed by `occface models convert`) into metres."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ICT_REQUIRED_ARRAYS if k not in data.files]
            if missing:
                raise ValueError(f"{path}: not an ICT-FaceKit npz, missing arrays {missing}")
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"{path}: unreadable or corrupt npz ({exc})") from exc
    units = str(arrays["units"])
    if units not in _UNIT_TO_M:
        raise ValueError(f"{path}: unknown units {units!r}")
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
