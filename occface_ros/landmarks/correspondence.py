"""MediaPipe FaceMesh-468 <-> ICT-FaceKit correspondences and the 468 -> iBUG-68 mapping.

Data: occface_ros/data/mp468_correspondences.npz, derived by tools/derive_correspondences.py;
method, arrays and measured error in docs/correspondences.md.

    corr = load_correspondences()
    lm68 = landmarks68_from_mp468(facemesh_points)   # (B, 468, D) -> (B, 68, D)
"""
from __future__ import annotations

import functools
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

CORRESPONDENCES_PATH = Path(__file__).resolve().parent.parent / "data" / "mp468_correspondences.npz"


@dataclass(frozen=True)
class Correspondences:
    mp_to_ict_vertex_ids: torch.Tensor  # (468, 3) int64 ICT vertex ids of the matched triangle
    mp_to_ict_barycentric: torch.Tensor  # (468, 3) float32, rows sum to 1
    mp_to_ict_valid: torch.Tensor  # (468,) bool: match distance <= 0.3 cm after the non-rigid fit
    mp_to_ict_distance_cm: torch.Tensor  # (468,) float32 match distance
    ibug68_from_mp_ids: torch.Tensor  # (68, 3) int64 MediaPipe vertex ids
    ibug68_from_mp_barycentric: torch.Tensor  # (68, 3) float32, rows sum to 1
    ibug68_target_mp_cm: torch.Tensor  # (68, 3) float32 aligned ICT landmarks in canonical MP space (cm)
    contour_method: str
    source: str

    def to(self, device) -> "Correspondences":
        kw = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return Correspondences(**kw)


def load_correspondences(path: str | Path | None = None) -> Correspondences:
    """Load the correspondence npz (allow_pickle=False) as torch tensors."""
    path = Path(path) if path is not None else CORRESPONDENCES_PATH
    try:
        with np.load(path, allow_pickle=False) as d:
            a = {k: d[k] for k in d.files}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"{path}: unreadable correspondence npz ({exc})") from exc
    t = torch.from_numpy
    return Correspondences(
        mp_to_ict_vertex_ids=t(a["mp_to_ict_vertex_ids"].astype(np.int64)),
        mp_to_ict_barycentric=t(a["mp_to_ict_barycentric"].astype(np.float32)),
        mp_to_ict_valid=t(a["mp_to_ict_valid"].astype(bool)),
        mp_to_ict_distance_cm=t(a["mp_to_ict_distance_cm"].astype(np.float32)),
        ibug68_from_mp_ids=t(a["ibug68_from_mp_ids"].astype(np.int64)),
        ibug68_from_mp_barycentric=t(a["ibug68_from_mp_barycentric"].astype(np.float32)),
        ibug68_target_mp_cm=t(a["ibug68_target_mp_cm"].astype(np.float32)),
        contour_method=str(a["contour_method"]),
        source=str(path),
    )


@functools.lru_cache(maxsize=1)
def _default() -> Correspondences:
    return load_correspondences()


def barycentric_gather(points: torch.Tensor, ids: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
    """(B, N, D) points, (M, 3) ids, (M, 3) weights -> (B, M, D) weighted sums."""
    g = points[:, ids.to(points.device)]  # (B, M, 3, D)
    return (g * bary.to(device=points.device, dtype=points.dtype)[None, :, :, None]).sum(2)


def landmarks68_from_mp468(points, corr: Correspondences | None = None):
    """iBUG-68 landmarks from FaceMesh-468 points: (B, 468, D) or (468, D) -> (B, 68, D) / (68, D).

    Accepts torch tensors or numpy arrays (returns the same kind). D is 2 or 3 (any works).
    """
    corr = corr or _default()
    is_np = isinstance(points, np.ndarray)
    p = torch.from_numpy(points) if is_np else points
    single = p.dim() == 2
    if single:
        p = p[None]
    if p.shape[1] < 468:
        raise ValueError(f"expected (B, 468, D) points, got {tuple(p.shape)}")
    if not p.is_floating_point():
        p = p.float()
    out = barycentric_gather(p, corr.ibug68_from_mp_ids, corr.ibug68_from_mp_barycentric)
    out = out[0] if single else out
    return out.numpy() if is_np else out


def ict_points_from_mp468(ict_vertices: torch.Tensor, corr: Correspondences | None = None) -> torch.Tensor:
    """The ICT surface point matched to each MediaPipe vertex: (B, V_ict, 3) -> (B, 468, 3)."""
    corr = corr or _default()
    return barycentric_gather(ict_vertices, corr.mp_to_ict_vertex_ids, corr.mp_to_ict_barycentric)
