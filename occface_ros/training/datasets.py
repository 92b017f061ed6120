"""Loaders of the public face-landmark datasets (300-W .pts, WFLW, COFW / COFW-68, AFLW2000-3D) as AnnotatedFace records.

`load_landmark_dataset(root)` finds the format from the folder's contents (or takes `format=`),
reads every face and refuses the folder if any file is one of the photo pool's `eval` photos
(`check_not_eval`; the eval is sacred). Training code calls `load_landmark_dataset` only; the
per-format `load_*` functions parse and do not check.

Conventions of every record: pixels of the original image, 0-based (x, y) with (0, 0) the
centre of the top-left pixel; iBUG-68 order. Image files are read lazily (`AnnotatedFace.load_image`);
only COFW, whose pixels live inside its .mat, holds them in memory. docs/training.md,
"Training on a public dataset", has the folder layouts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ..app.samples import read_pts

from .photo_pool import EvalPhotoError, TrainingPhotos, load_manifest, pool_dir, sha256_file

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp")  # preference order when two share a stem

# Which formats store MATLAB-style 1-based pixels (the first pixel's centre at (1, 1)); we subtract 1.
# 300-W .pts: menpo's pts importer says so and subtracts 1 (menpo/io/input/landmark.py).
# COFW and COFW-68: made and read with MATLAB code (RCPR; Ghiasi & Fowlkes' ReadCofw68Data.m).
# AFLW2000-3D: 3DDFA's MATLAB projection puts y = height + 1 - y_model, i.e. 1-based rows.
# WFLW: written by the LAB authors' C++/Python tools, read as 0-based by every public loader.
ONE_BASED = {"300w": True, "wflw": False, "cofw": True, "aflw2000-3d": True}

# WFLW 98 -> iBUG 68: WFLW_98_TO_68[i] is the WFLW index of iBUG point i. The table copied through the
# WFLW conversion scripts as DLIB_68_TO_WFLW_98_IDX_MAPPING (e.g. DSLPT, github.com/Jiahao-UTS/DSLPT):
# jaw every second of 0..32, upper brow contours 33..37 and 42..46, nose 51..59, the six eye points
# of 60..67 and 68..75 that sit where iBUG's do (corners, 1st and 3rd upper, 1st and 3rd lower), mouth 76..95.
WFLW_98_TO_68 = np.array(
    list(range(0, 33, 2)) + list(range(33, 38)) + list(range(42, 47)) + list(range(51, 60))
    + [60, 61, 63, 64, 65, 67] + [68, 69, 71, 72, 73, 75] + list(range(76, 96)),
    dtype=np.int64,
)
WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "make_up", "occlusion", "blur")  # columns 200..205
WFLW_FIELDS = 196 + 4 + 6 + 1  # 98 (x, y), box x_min y_min x_max y_max, 6 attributes, image path


class DatasetError(ValueError):
    """A landmark dataset cannot be loaded; the message is one line and names the file."""


@dataclass
class AnnotatedFace:
    """One annotated face of a public dataset (pixels of the original image, 0-based, iBUG-68 order)."""

    image_path: Path  # the image file; for COFW the .mat that holds the pixels (image_bgr)
    landmarks68: np.ndarray | None  # (68, 2) float32 (x, y); None for a 29-point-only COFW face
    visible68: np.ndarray | None  # (68,) bool, True = not occluded; None when the format has no visibility
    identity: str  # the dataset's identity, or the file stem where it has none (docs/training.md)
    source: str  # "300w", "wflw", "cofw", "cofw68" (COFW face with Ghiasi & Fowlkes' 68 points), "aflw2000-3d"
    annotation_path: Path
    subset: str = ""  # the dataset's own split or sub-folder: "train"/"test" (WFLW, COFW), folder (300-W, AFLW2000-3D)
    occluded: bool | None = None  # per-face flag: WFLW's occlusion attribute; COFW: any point occluded
    attributes: dict[str, bool] = field(default_factory=dict)  # WFLW's six per-face attributes
    bbox_xyxy: np.ndarray | None = None  # (4,) float32 face box where the format gives one (WFLW, COFW)
    points29: np.ndarray | None = None  # (29, 2) float32, COFW's own 29 points
    visible29: np.ndarray | None = None  # (29,) bool, COFW's per-point occlusion, inverted
    yaw_deg: float | None = None  # AFLW2000-3D Pose_Para, in the dataset's sign convention
    pitch_deg: float | None = None
    roll_deg: float | None = None
    image_bgr: np.ndarray | None = field(default=None, repr=False)  # (H, W, 3) uint8, COFW only

    def load_image(self) -> np.ndarray:
        """(H, W, 3) uint8 BGR: the held pixels (COFW) or the image file read now."""
        if self.image_bgr is not None:
            return self.image_bgr.copy()
        import cv2

        image = cv2.imread(str(self.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"cannot read image {self.image_path}")
        return image


# ---------------------------------------------------------------- helpers

def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def _image_index(files: Iterable[Path]) -> dict[tuple[Path, str], Path]:
    """(folder, stem) -> image file, the first of IMAGE_SUFFIXES where several share a stem."""
    rank = {s: i for i, s in enumerate(IMAGE_SUFFIXES)}
    index: dict[tuple[Path, str], Path] = {}
    for p in files:
        suffix = p.suffix.lower()
        if suffix in rank:
            key = (p.parent, p.stem)
            if key not in index or rank[suffix] < rank[index[key].suffix.lower()]:
                index[key] = p
    return index


def _subset(root: Path, folder: Path) -> str:
    rel = folder.relative_to(root).as_posix()
    return "" if rel == "." else rel


def _check_points(points: np.ndarray, count: int, path: Path, what: str = "points") -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (count, 2):
        raise DatasetError(f"{path}: {what} have shape {points.shape}, expected ({count}, 2)")
    if not np.isfinite(points).all():
        raise DatasetError(f"{path}: {what} contain NaN or infinite values")
    return points


def _is_mat_v73(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(128).startswith(b"MATLAB 7.3")


def _h5_to_matlab(h5file, dataset) -> np.ndarray:
    """An HDF5 dataset of a v7.3 .mat in MATLAB's shape (h5py sees it transposed); cells -> object arrays."""
    data = dataset[()]
    if data.dtype.kind == "O":  # a cell array: object references to its elements
        refs = data.T
        out = np.empty(refs.shape, dtype=object)
        for i, ref in np.ndenumerate(refs):
            out[i] = np.asarray(h5file[ref][()]).T
        return out
    return np.asarray(data).T


def read_mat(path: Path, names: Iterable[str]) -> dict[str, np.ndarray]:
    """The named variables of a .mat file in MATLAB's shapes (scipy.io for v5, h5py for v7.3/HDF5)."""
    names = list(names)
    try:
        if _is_mat_v73(path):
            try:
                import h5py
            except ImportError:
                raise DatasetError(f"{path} is a MATLAB v7.3 (HDF5) file: "
                                   "install h5py to read it (pip install h5py)") from None
            with h5py.File(path, "r") as f:
                missing = [n for n in names if n not in f]
                if missing:
                    variables = sorted(k for k in f if not k.startswith("#"))
                    raise DatasetError(f"{path}: no variable {missing[0]!r} (has {variables})")
                return {n: _h5_to_matlab(f, f[n]) for n in names}
        import scipy.io

        data = scipy.io.loadmat(str(path), variable_names=names)
    except DatasetError:
        raise
    except _mat_read_errors() as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatasetError(f"cannot read {path}: {reason}") from None
    missing = [n for n in names if n not in data]
    if missing:
        raise DatasetError(f"{path}: no variable {missing[0]!r} (has {_mat_variables(path)})")
    return {n: data[n] for n in names}


def _mat_read_errors() -> tuple[type[Exception], ...]:
    """What scipy.io / h5py raise for an unreadable or malformed .mat file."""
    from scipy.io.matlab import MatReadError

    return (OSError, ValueError, TypeError, KeyError, NotImplementedError, MatReadError)


def _mat_variables(path: Path) -> list[str]:
    """Variable names of a .mat file without reading its data ([] when unreadable)."""
    try:
        if _is_mat_v73(path):
            try:
                import h5py
            except ImportError:
                return []
            with h5py.File(path, "r") as f:
                return sorted(k for k in f if not k.startswith("#"))
        import scipy.io

        return [name for name, _, _ in scipy.io.whosmat(str(path))]
    except _mat_read_errors():
        return []


def _bgr_from_matlab(image: np.ndarray, path: Path, index: int) -> np.ndarray:
    """A MATLAB image (H, W) grey or (H, W, 3) RGB -> (H, W, 3) uint8 BGR."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image[:, :, ::-1])
    raise DatasetError(f"{path}: image {index + 1} has shape {image.shape}, expected (H, W) or (H, W, 3)")


# ---------------------------------------------------------------- 300-W / iBUG .pts

def load_300w(root: Path) -> list[AnnotatedFace]:
    """Every 68-point iBUG .pts file under root with its image (same folder, same stem)."""
    root = Path(root)
    files = _files(root)
    images = _image_index(files)
    faces = []
    for pts_path in (p for p in files if p.suffix.lower() == ".pts"):
        try:
            points = read_pts(pts_path)  # 0-based: read_pts undoes the format's 1-based coordinates
        except ValueError as exc:
            raise DatasetError(str(exc)) from None
        if len(points) != 68:
            raise DatasetError(f"{pts_path}: {len(points)} points, expected 68 (iBUG 68-point markup)")
        image = images.get((pts_path.parent, pts_path.stem))
        if image is None:
            raise DatasetError(f"{pts_path}: no image {pts_path.stem}{{{','.join(IMAGE_SUFFIXES)}}} beside it")
        points = _check_points(points, 68, pts_path)
        faces.append(AnnotatedFace(
            image_path=image, landmarks68=points.astype(np.float32), visible68=None, identity=pts_path.stem,
            source="300w", annotation_path=pts_path, subset=_subset(root, pts_path.parent)))
    return faces


# ---------------------------------------------------------------- WFLW

def _wflw_image(annotation: Path, root: Path, rel: str, bases: list[Path]) -> Path | None:
    """WFLW image `rel` (relative to WFLW_images/): tried in the folders that worked before, then upwards."""
    candidates = list(bases)
    folder = annotation.parent
    while True:
        candidates += [folder / "WFLW_images", folder]
        if folder == root or folder == folder.parent:
            break
        folder = folder.parent
    for base in dict.fromkeys(candidates):
        if (base / rel).is_file():
            if base not in bases:
                bases.insert(0, base)
            return base / rel
    return None


def load_wflw(root: Path) -> list[AnnotatedFace]:
    """Every face of the WFLW lists (list_98pt_rect_attr_{train,test}.txt) under root, 98 -> 68 points."""
    root = Path(root)
    lists = [p for p in _files(root) if re.fullmatch(r"list_98pt_rect_attr_.*\.txt", p.name)]
    shift = float(ONE_BASED["wflw"])
    faces, bases = [], []
    for list_path in lists:
        subset = list_path.stem.removeprefix("list_98pt_rect_attr_")
        try:
            lines = list_path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"cannot read {list_path}: {exc}") from None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            fields = line.split(maxsplit=WFLW_FIELDS - 1)
            if len(fields) != WFLW_FIELDS:
                raise DatasetError(f"{list_path} line {number}: {len(fields)} fields, expected {WFLW_FIELDS} "
                                   "(196 coordinates, 4 box, 6 attributes, image path)")
            try:
                values = np.array([float(v) for v in fields[:206]])
            except ValueError:
                raise DatasetError(f"{list_path} line {number}: a coordinate, box or attribute is not a number") from None
            points98 = _check_points(values[:196].reshape(98, 2) - shift, 98, list_path, f"line {number}'s points")
            rel = fields[-1].strip()
            image = _wflw_image(list_path, root, rel, bases)
            if image is None:
                raise DatasetError(f"{list_path} line {number}: image {rel} not found under {root} "
                                   f"(expected {root}/WFLW_images/{rel})")
            attributes = {name: bool(values[200 + i]) for i, name in enumerate(WFLW_ATTRIBUTES)}
            faces.append(AnnotatedFace(
                image_path=image, landmarks68=points98[WFLW_98_TO_68].astype(np.float32), visible68=None,
                identity=Path(rel).stem, source="wflw", annotation_path=list_path, subset=subset,
                occluded=attributes["occlusion"], attributes=attributes,
                bbox_xyxy=(values[196:200] - shift).astype(np.float32)))
    return faces


# ---------------------------------------------------------------- COFW and COFW-68

def _cofw_mats(files: list[Path]) -> dict[str, Path]:
    """'train'/'test' -> the COFW .mat holding that part (the colour one where both are there)."""
    found: dict[str, list[Path]] = {"train": [], "test": []}
    for p in files:
        if p.suffix.lower() != ".mat" or p.name.endswith("_points.mat"):
            continue
        names = set(_mat_variables(p))
        if not names and p.name.lower().startswith("cofw"):  # unreadable here (v7.3 without h5py, damaged):
            names = {"phisTr"} if "train" in p.name.lower() else {"phisT"}  # read_mat then names the file and fix
        if "phisTr" in names:
            found["train"].append(p)
        elif "phisT" in names:
            found["test"].append(p)
    return {part: sorted(paths, key=lambda p: ("color" not in p.name.lower(), p.name))[0]
            for part, paths in found.items() if paths}


def _cofw_part(mat_path: Path, part: str) -> list[AnnotatedFace]:
    keys = ("IsTr", "phisTr", "bboxesTr") if part == "train" else ("IsT", "phisT", "bboxesT")
    names = set(_mat_variables(mat_path))
    wanted = [k for k in keys if k in names or k != keys[2]]  # the boxes are optional
    data = read_mat(mat_path, wanted)
    images, phis = data[keys[0]].reshape(-1), np.asarray(data[keys[1]], dtype=np.float64)
    if phis.ndim != 2 or phis.shape[1] != 87:
        raise DatasetError(f"{mat_path}: {keys[1]} has shape {phis.shape}, expected (N, 87): x(29), y(29), occlusion(29)")
    if len(images) != len(phis):
        raise DatasetError(f"{mat_path}: {len(images)} images in {keys[0]} but {len(phis)} shapes in {keys[1]}")
    boxes = np.asarray(data[keys[2]], dtype=np.float64).reshape(-1, 4) if keys[2] in data else None
    shift = float(ONE_BASED["cofw"])
    faces = []
    for i, (image, row) in enumerate(zip(images, phis)):
        points29 = _check_points(np.stack([row[:29], row[29:58]], axis=1) - shift, 29, mat_path, f"face {i + 1}'s points")
        occluded29 = row[58:87] > 0.5
        bbox = None
        if boxes is not None and i < len(boxes):
            x, y, w, h = boxes[i]
            bbox = np.array([x - shift, y - shift, x - shift + w, y - shift + h], dtype=np.float32)
        faces.append(AnnotatedFace(
            image_path=mat_path, landmarks68=None, visible68=None, identity=f"{mat_path.stem}#{i + 1:04d}",
            source="cofw", annotation_path=mat_path, subset=part, occluded=bool(occluded29.any()), bbox_xyxy=bbox,
            points29=points29.astype(np.float32), visible29=~occluded29, image_bgr=_bgr_from_matlab(image, mat_path, i)))
    return faces


def load_cofw(root: Path) -> list[AnnotatedFace]:
    """COFW's 29-point faces (COFW_train*.mat, COFW_test*.mat) and, where test_annotations/<i>_points.mat
    are there, COFW-68's 68 points + occlusion for test face i (source 'cofw68')."""
    root = Path(root)
    files = _files(root)
    mats = _cofw_mats(files)
    points68 = sorted((p for p in files if re.fullmatch(r"\d+_points\.mat", p.name)),
                      key=lambda p: int(p.name.split("_")[0]))
    if points68 and "test" not in mats:
        raise DatasetError(f"{points68[0]}: COFW-68 annotations need the COFW test images "
                           f"(COFW_test.mat or COFW_test_color.mat with IsT) under {root}")
    faces = []
    for part in ("train", "test"):
        if part in mats:
            faces += _cofw_part(mats[part], part)
    test = [f for f in faces if f.subset == "test"]
    shift = float(ONE_BASED["cofw"])
    for path in points68:
        number = int(path.name.split("_")[0])
        if not 1 <= number <= len(test):
            raise DatasetError(f"{path}: no test image {number} in {mats['test']} ({len(test)} images)")
        data = read_mat(path, ["Points", "Occ"])
        occluded = np.asarray(data["Occ"]).reshape(-1) > 0.5
        if occluded.shape != (68,):
            raise DatasetError(f"{path}: Occ has {occluded.size} flags, expected 68")
        face = test[number - 1]
        face.landmarks68 = (_check_points(data["Points"], 68, path, "Points") - shift).astype(np.float32)
        face.visible68 = ~occluded
        face.occluded = bool(occluded.any())
        face.source, face.annotation_path = "cofw68", path
    return faces


# ---------------------------------------------------------------- AFLW2000-3D

def load_aflw2000_3d(root: Path) -> list[AnnotatedFace]:
    """Every AFLW2000-3D .mat (pt3d_68, Pose_Para) under root with the .jpg beside it."""
    root = Path(root)
    files = _files(root)
    images = _image_index(files)
    shift = float(ONE_BASED["aflw2000-3d"])
    faces = []
    for mat_path in (p for p in files if p.suffix.lower() == ".mat"):
        data = read_mat(mat_path, ["pt3d_68", "Pose_Para"])
        pt3d = np.asarray(data["pt3d_68"], dtype=np.float64)
        if pt3d.shape != (3, 68):
            raise DatasetError(f"{mat_path}: pt3d_68 has shape {pt3d.shape}, expected (3, 68)")
        pose = np.asarray(data["Pose_Para"], dtype=np.float64).reshape(-1)
        if pose.size < 3:
            raise DatasetError(f"{mat_path}: Pose_Para has {pose.size} values, expected 7 (pitch yaw roll tx ty tz scale)")
        image = images.get((mat_path.parent, mat_path.stem))
        if image is None:
            raise DatasetError(f"{mat_path}: no image {mat_path.stem}{{{','.join(IMAGE_SUFFIXES)}}} beside it")
        points = _check_points(pt3d[:2].T - shift, 68, mat_path, "pt3d_68's x, y")
        pitch, yaw, roll = np.degrees(pose[:3])  # Pose_Para = [pitch yaw roll tx ty tz scale], radians
        faces.append(AnnotatedFace(
            image_path=image, landmarks68=points.astype(np.float32), visible68=None, identity=mat_path.stem,
            source="aflw2000-3d", annotation_path=mat_path, subset=_subset(root, mat_path.parent),
            yaw_deg=float(yaw), pitch_deg=float(pitch), roll_deg=float(roll)))
    return faces


LOADERS = {"300w": load_300w, "wflw": load_wflw, "cofw": load_cofw, "aflw2000-3d": load_aflw2000_3d}


# ---------------------------------------------------------------- detection and the dispatcher

def detect_format(root: Path) -> str:
    """The one format found under root (DatasetError when none or several are)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    files = _files(root)
    if not files:
        raise DatasetError(f"{root} is empty: no annotation files to load")
    found = set()
    if any(re.fullmatch(r"list_98pt_rect_attr_.*\.txt", p.name) for p in files):
        found.add("wflw")
    if any(p.suffix.lower() == ".pts" for p in files):
        found.add("300w")
    mats = [p for p in files if p.suffix.lower() == ".mat"]
    images = _image_index(files)
    beside = [p for p in mats if (p.parent, p.stem) in images]  # AFLW2000-3D's; COFW keeps its pixels inside
    if beside and "pt3d_68" in _mat_variables(beside[0]):
        found.add("aflw2000-3d")
    alone = [p for p in mats if (p.parent, p.stem) not in images]
    if any(re.fullmatch(r"\d+_points\.mat", p.name) for p in alone) or _cofw_mats(alone):
        found.add("cofw")
    if not found:
        raise DatasetError(f"{root}: no known landmark annotations (300-W .pts, WFLW list_98pt_rect_attr_*.txt, "
                           "COFW .mat, AFLW2000-3D .mat beside images)")
    if len(found) > 1:
        raise DatasetError(f"{root} holds several formats ({', '.join(sorted(found))}): pass format=")
    return found.pop()


def read_dataset_folder(root: Path, format: str | None, loaders: dict, detect, kind: str) -> tuple[str, list]:
    """(format, items) of a dataset folder: the format checked against `loaders` or detected, items
    from its loader, a DatasetError for an unknown format, a missing folder or an empty dataset."""
    root = Path(root)
    if format is not None and format not in loaders:
        raise DatasetError(f"unknown {kind} dataset format {format!r}; known: {', '.join(loaders)}")
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    name = format or detect(root)
    items = loaders[name](root)
    if not items:
        raise DatasetError(f"{root}: no {name} faces found")
    return name, items


def load_landmark_dataset(root: Path, format: str | None = None) -> list[AnnotatedFace]:
    """Every face of the dataset under root (format detected unless given); refuses eval photos (check_not_eval)."""
    _, faces = read_dataset_folder(root, format, LOADERS, detect_format, "landmark")
    refuse_eval_faces(faces)
    return faces


# ---------------------------------------------------------------- the eval rule

def eval_fingerprints(manifest: dict | None = None, pool_root: Path | None = None,
                      samples_root: Path | None = None) -> tuple[dict[str, str], dict[Path, str]]:
    """(sha256 -> eval photo id, resolved path -> eval photo id) of every eval photo and its annotation files.

    Eval photos are those TrainingPhotos refuses (stored split or identity rule says eval). Paths are
    their copies in the pool cache and, for photos the samples fetcher brings, in the samples cache."""
    from ..app.samples import samples_dir

    manifest = manifest or load_manifest()
    train_ids = set(TrainingPhotos(manifest=manifest).ids)
    pool_root = Path(pool_root) if pool_root is not None else pool_dir()
    samples_root = Path(samples_root) if samples_root is not None else samples_dir()
    hashes: dict[str, str] = {}
    paths: dict[Path, str] = {}
    for entry in manifest["photos"]:
        if entry["id"] in train_ids:
            continue
        fetched_by_samples = manifest["sources"].get(entry["source"], {}).get("fetched_by") == "samples"
        for item in [entry] + list(entry.get("annotations", [])):
            hashes[item["sha256"]] = entry["id"]
            paths[(pool_root / entry["source"] / item["member"]).resolve()] = entry["id"]
            if fetched_by_samples:
                paths[(samples_root / entry["source"] / Path(item["member"]).name).resolve()] = entry["id"]
    for entry in manifest.get("eval_scenes_without_faces", []):  # the false-face pictures (samples fetcher)
        hashes[entry["sha256"]] = entry["id"]
        paths[(samples_root / entry["source"] / Path(entry["member"]).name).resolve()] = entry["id"]
    return hashes, paths


def check_not_eval(paths: Iterable[Path], manifest: dict | None = None, pool_root: Path | None = None,
                   samples_root: Path | None = None) -> None:
    """EvalPhotoError (one line) if any file is an eval photo of the pool or its annotation: the same
    bytes (sha256) or the cached copy itself. Re-encoded or resized copies are not recognised."""
    hashes, eval_paths = eval_fingerprints(manifest, pool_root, samples_root)
    for path in dict.fromkeys(Path(p) for p in paths):
        photo_id = eval_paths.get(path.resolve())
        if photo_id is None:
            try:
                photo_id = hashes.get(sha256_file(path))
            except OSError as exc:
                raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
        if photo_id is not None:
            raise EvalPhotoError(f"{path} is the eval photo {photo_id} (or its annotation): "
                                 "eval photos never reach training")


def refuse_eval_faces(faces: Iterable[AnnotatedFace], manifest: dict | None = None) -> None:
    """check_not_eval on every face's image and annotation file (each file hashed once)."""
    faces = list(faces)
    check_not_eval([f.image_path for f in faces] + [f.annotation_path for f in faces], manifest)
