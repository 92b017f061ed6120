"""Convert an ICT-FaceKit checkout (folder FaceXModel/ of OBJ files) to the packed npz format.

Layout read (as in https://github.com/ICT-VGL/ICT-FaceKit, folder FaceXModel/):

    generic_neutral_mesh.obj            neutral mesh: v, vt, f (quads, "v/vt[/vn]" corners)
    identity000.obj .. identity099.obj  identity shape modes, full meshes (same topology)
    browDown_L.obj .. noseSneer_R.obj   53 expression shapes named by ARKit names, full meshes

Offsets are stored, not full meshes: identity_basis[k] = identity{k:03d}.obj - neutral, and the
same for expressions. Only vertices [0, 11248) (face + head and neck) are kept; faces that use
any other vertex (eyes, teeth, mouth socket, ...) are dropped; quads are split into two triangles
(a, b, c), (a, c, d). Texture coordinates are kept per triangle corner (`triangle_uv` indexes
`uv`; only the vt entries used by the kept faces are kept, in their original order).
Landmark tables (landmarks68, jawline_*) and the face-area sizes come from
`occface_ros/data/ict_facekit_tables.npz` (the ICT-FaceKit README's tables).
The output format is documented in ../shared/models/README.md and read by `ict.load_ict_npz`.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..paths import atomic_write_bytes

TABLES_PATH = Path(__file__).resolve().parent.parent / "data" / "ict_facekit_tables.npz"
NEUTRAL_NAME = "generic_neutral_mesh.obj"


class ObjError(ValueError):
    """An OBJ file is missing, unreadable or malformed."""


def ict_tables() -> dict:
    """The ICT-FaceKit constant tables: landmarks68, jawline_right/left, face_vertex_count,
    narrow_face_vertex_count, kept_vertex_count (11248), expression_names (53, basis order)."""
    with np.load(TABLES_PATH, allow_pickle=False) as d:
        out = {k: d[k].tolist() for k in d.files if k != "source"}
    out["expression_names"] = [str(n) for n in out["expression_names"]]
    return out


def read_obj(path: str | Path, vertices_only: bool = False):
    """Parse an OBJ: (v (N, 3) float64, vt (M, 2) float64, faces list[list[(vi, ti)]]), 0-based.

    Faces may be triangles or quads (or any polygon); corners "v", "v/vt", "v/vt/vn" or "v//vn".
    Negative (relative) indices are resolved. Raises ObjError with file and line on bad input.
    """
    path = Path(path)
    if not path.is_file():
        raise ObjError(f"{path}: OBJ file not found")
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise ObjError(f"{path}: unreadable OBJ ({exc})") from exc
    v, vt, faces = [], [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line or line[0] not in "vf":
            continue
        parts = line.split()
        tag = parts[0]
        try:
            if tag == "v":
                if len(parts) < 4:
                    raise ValueError("vertex needs 3 coordinates")
                v.append((float(parts[1]), float(parts[2]), float(parts[3])))
            elif vertices_only:
                continue
            elif tag == "vt":
                if len(parts) < 3:
                    raise ValueError("texture coordinate needs 2 values")
                vt.append((float(parts[1]), float(parts[2])))
            elif tag == "f":
                if len(parts) < 4:
                    raise ValueError("face needs at least 3 corners")
                corners = []
                for c in parts[1:]:
                    fields = c.split("/")
                    vi = int(fields[0])
                    vi = vi - 1 if vi > 0 else len(v) + vi
                    ti = -1
                    if len(fields) > 1 and fields[1]:
                        ti = int(fields[1])
                        ti = ti - 1 if ti > 0 else len(vt) + ti
                    if not 0 <= vi < len(v) or (ti != -1 and not 0 <= ti < len(vt)):
                        raise ValueError(f"corner {c!r} refers to a missing vertex or texture coordinate")
                    corners.append((vi, ti))
                faces.append(corners)
        except ValueError as exc:
            raise ObjError(f"{path}:{lineno}: malformed OBJ line {line[:60]!r} ({exc})") from exc
    if not v:
        raise ObjError(f"{path}: no vertices (empty or not an OBJ file)")
    v = np.asarray(v, np.float64)
    if not np.isfinite(v).all():
        raise ObjError(f"{path}: non-finite vertex coordinates")
    return v, np.asarray(vt, np.float64).reshape(-1, 2), faces


def _triangulate(faces, max_vertices: int, obj_path: Path):
    tris, tuv = [], []
    for corners in faces:
        if any(vi >= max_vertices for vi, _ in corners):
            continue
        if any(ti < 0 for _, ti in corners):
            raise ObjError(f"{obj_path}: a kept face has no texture coordinates (expected 'v/vt' corners)")
        for k in range(1, len(corners) - 1):  # fan: quad (a, b, c, d) -> (a, b, c), (a, c, d)
            tri = (corners[0], corners[k], corners[k + 1])
            tris.append([c[0] for c in tri])
            tuv.append([c[1] for c in tri])
    if not tris:
        raise ObjError(f"{obj_path}: no faces inside the kept vertex range [0, {max_vertices})")
    return np.asarray(tris, np.int64), np.asarray(tuv, np.int64)


def identity_files(folder: Path) -> list[Path]:
    """identity000.obj, identity001.obj, ... (contiguous from 000)."""
    out = []
    while (folder / f"identity{len(out):03d}.obj").is_file():
        out.append(folder / f"identity{len(out):03d}.obj")
    return out


def convert_ict_folder(
    folder: str | Path,
    out_path: str | Path,
    *,
    expression_names: list[str] | None = None,
    num_identity: int | None = None,
    tables: dict | None = None,
    progress: bool = False,
) -> Path:
    """Pack an ICT-FaceKit FaceXModel folder into `out_path` (npz, cm), atomically.

    folder: the FaceXModel folder (or a checkout root containing FaceXModel/).
    expression_names: basis order (default: the 53 names of the ICT tables, all required).
    num_identity: how many identity modes to use (default: all identityNNN.obj found, >= 1).
    tables: override of `ict_tables()` (landmarks68, jawline_*, face/narrow/kept vertex counts).
    Nothing is written unless every file converts.
    """
    folder = Path(folder)
    if (folder / "FaceXModel" / NEUTRAL_NAME).is_file():
        folder = folder / "FaceXModel"
    if not (folder / NEUTRAL_NAME).is_file():
        raise ObjError(f"{folder}: no {NEUTRAL_NAME} (expected an ICT-FaceKit FaceXModel folder)")
    tables = dict(ict_tables(), **(tables or {}))
    names = list(expression_names if expression_names is not None else tables["expression_names"])
    id_files = identity_files(folder)
    if num_identity is not None:
        if len(id_files) < num_identity:
            raise ObjError(f"{folder}: {num_identity} identity OBJs wanted, found {len(id_files)} "
                           f"(identity000.obj ...)")
        id_files = id_files[:num_identity]
    if not id_files:
        raise ObjError(f"{folder}: no identity000.obj")
    missing = [n for n in names if not (folder / f"{n}.obj").is_file()]
    if missing:
        raise ObjError(f"{folder}: missing expression OBJs {missing[:5]}{' ...' if len(missing) > 5 else ''}")

    keep = int(tables["kept_vertex_count"])
    neutral_path = folder / NEUTRAL_NAME
    v, vt, faces = read_obj(neutral_path)
    if len(v) < keep:
        raise ObjError(f"{neutral_path}: {len(v)} vertices, expected at least {keep}")
    tris, tuv = _triangulate(faces, keep, neutral_path)
    used_uv, tuv = np.unique(tuv, return_inverse=True)
    tuv = tuv.reshape(-1, 3)
    neutral = v[:keep]

    def offsets(paths):
        out = np.empty((len(paths), keep, 3), np.float32)
        it = paths
        if progress:
            from tqdm import tqdm

            it = tqdm(paths, desc="ICT OBJs", unit="file")
        for k, p in enumerate(it):
            pv, _, _ = read_obj(p, vertices_only=True)
            if len(pv) != len(v):
                raise ObjError(f"{p}: {len(pv)} vertices, the neutral mesh has {len(v)} (topology mismatch)")
            out[k] = pv[:keep] - neutral
        return out

    identity_basis = offsets(id_files)
    expression_basis = offsets([folder / f"{n}.obj" for n in names])
    lm = np.asarray(tables["landmarks68"], np.int32)
    if lm.shape != (68,) or lm.min() < 0 or lm.max() >= keep:
        raise ValueError(f"landmarks68 table must be 68 vertex ids in [0, {keep})")
    arrays = dict(
        vertices=neutral.astype(np.float32),
        identity_basis=identity_basis,
        expression_basis=expression_basis,
        expression_names=np.array(names, dtype=f"<U{max(16, max(len(n) for n in names))}"),
        triangles=tris.astype(np.int32),
        uv=vt[used_uv].astype(np.float32),
        triangle_uv=tuv.astype(np.int32),
        landmarks68=lm,
        face_vertex_count=np.int32(min(int(tables["face_vertex_count"]), keep)),
        narrow_face_vertex_count=np.int32(min(int(tables["narrow_face_vertex_count"]), keep)),
        units=np.array("cm"),
    )
    for key in ("jawline_right", "jawline_left"):
        if key in tables:
            arrays[key] = np.asarray(tables[key], np.int32)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    out_path = Path(out_path)
    atomic_write_bytes(out_path, buf.getvalue())
    return out_path
