"""Loaders of the public face-parsing datasets (CelebAMask-HQ, LaPa) as ParsingFace records in the project's labels, and their face crops for `occface train parser`.

`load_parsing_dataset(root)` finds the format from the folder layout (or takes `format=`), lists
every labelled face and refuses the folder if any image is one of the photo pool's `eval` photos
(`check_not_eval`). Records read their files lazily: `ParsingFace.load()` gives the (H, W, 3) uint8
BGR image and its (H, W) uint8 labels in core/labels.py's ids. `parsing_crop` cuts a face crop the
way the tracker frames a face (`face_roi`) with the sample engine's scale/shift/rotation jitter and
a mirror flip that swaps the left/right labels. docs/training.md, "Real face-parsing labels", has
the layouts and the label mapping.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..core.labels import (
    BACKGROUND,
    FACE_LABELS,
    HAIR,
    INNER_MOUTH,
    LEFT_BROW,
    LEFT_EYE,
    LOWER_LIP,
    NOSE,
    OCCLUDER,
    RIGHT_BROW,
    RIGHT_EYE,
    SKIN,
    UPPER_LIP,
)
from .datasets import IMAGE_SUFFIXES, DatasetError, check_not_eval, read_dataset_folder

CELEBAMASK_IMAGES, CELEBAMASK_MASKS = "CelebA-HQ-img", "CelebAMask-HQ-mask-anno"
LAPA_SPLITS = ("train", "val", "test")

# CelebAMask-HQ's parts in the drawing order of its own label maps (g_mask.py): later overwrite earlier.
CELEBAMASK_PARTS = ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r", "nose",
                    "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat")
# Part -> project label. "l_"/"r_" are taken as the SUBJECT's left/right (an assumption: the dataset
# does not say; `subject_side_agreement` tests it on the data). Glasses and hats hide the face, so
# they are occluders; ears, earrings, neck, necklace and clothes are not face in our label set.
CELEBAMASK_TO_LABELS = {
    "skin": SKIN, "l_brow": LEFT_BROW, "r_brow": RIGHT_BROW, "l_eye": LEFT_EYE, "r_eye": RIGHT_EYE,
    "eye_g": OCCLUDER, "l_ear": BACKGROUND, "r_ear": BACKGROUND, "ear_r": BACKGROUND, "nose": NOSE,
    "mouth": INNER_MOUTH, "u_lip": UPPER_LIP, "l_lip": LOWER_LIP, "neck": BACKGROUND, "neck_l": BACKGROUND,
    "cloth": BACKGROUND, "hair": HAIR, "hat": OCCLUDER,
}
# LaPa label value (index) -> project label: 0 background, 1 skin, 2/3 left/right eyebrow, 4/5 left/right
# eye, 6 nose, 7 upper lip, 8 inner mouth, 9 lower lip, 10 hair. Left/right taken as the SUBJECT's, as in
# CelebAMask-HQ (an assumption; were they the image's, swap the 2/3 and 4/5 entries on this one line):
LAPA_TO_LABELS = (BACKGROUND, SKIN, LEFT_BROW, RIGHT_BROW, LEFT_EYE, RIGHT_EYE, NOSE, UPPER_LIP, INNER_MOUTH,
                  LOWER_LIP, HAIR)

# a mirror image swaps the subject's left and right
FLIP_LABELS = np.arange(256, dtype=np.uint8)
for _a, _b in ((LEFT_BROW, RIGHT_BROW), (LEFT_EYE, RIGHT_EYE)):
    FLIP_LABELS[_a], FLIP_LABELS[_b] = _b, _a
_FACE_TABLE = np.zeros(256, dtype=bool)
_FACE_TABLE[list(FACE_LABELS)] = True
_BELOW_EYES = (NOSE, UPPER_LIP, LOWER_LIP, INNER_MOUTH)


@dataclass
class ParsingFace:
    """One labelled face of a public face-parsing dataset; files are read by `load()`."""

    image_path: Path
    label_paths: tuple[Path, ...]  # LaPa: the label map; CelebAMask-HQ: one binary mask per part
    source: str  # "celebamask-hq" | "lapa"
    subset: str = ""  # LaPa's split folder (train/val/test); "" for CelebAMask-HQ
    identity: str = ""  # the image's stem (neither dataset has identities)

    def load_image(self) -> np.ndarray:
        image = cv2.imread(str(self.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"cannot read image {self.image_path}")
        return image

    def load_labels(self, height: int, width: int) -> np.ndarray:
        """(height, width) uint8 project labels for an image of that size."""
        if self.source == "celebamask-hq":
            return celebamask_labels(self.label_paths, height, width)
        return lapa_labels(self.label_paths[0], height, width)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """(image_bgr (H, W, 3) uint8, labels (H, W) uint8 in core/labels.py's ids)."""
        image = self.load_image()
        return image, self.load_labels(*image.shape[:2])


# ---------------------------------------------------------------- label maps

def _read_grey(path: Path) -> np.ndarray:
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise DatasetError(f"cannot read label file {path}")
    if data.ndim == 3:  # a grey map saved as colour: every channel the same
        if data.shape[2] == 4:
            data = data[:, :, :3]
        if not (data == data[:, :, :1]).all():
            raise DatasetError(f"{path}: a colour image, expected a single-channel label map")
        data = data[:, :, 0]
    if data.dtype != np.uint8:
        raise DatasetError(f"{path}: {data.dtype} pixels, expected 8-bit labels")
    return data


def celebamask_part(path: Path) -> str:
    """The part name of a CelebAMask-HQ mask file `<%05d n>_<part>.png`."""
    match = re.fullmatch(r"\d+_(.+)\.png", path.name)
    if match is None or match.group(1) not in CELEBAMASK_TO_LABELS:
        raise DatasetError(f"{path}: not a CelebAMask-HQ part mask <number>_<part>.png; "
                           f"parts: {', '.join(CELEBAMASK_PARTS)}")
    return match.group(1)


def celebamask_labels(mask_paths, height: int, width: int) -> np.ndarray:
    """Project labels at (height, width) from CelebAMask-HQ's binary part masks (any non-zero pixel is
    the part), drawn in CELEBAMASK_PARTS order, then resized (nearest) to the image."""
    masks = {celebamask_part(p): p for p in mask_paths}
    labels = None
    for part in CELEBAMASK_PARTS:
        if part not in masks:
            continue
        mask = _read_grey(masks[part])
        if labels is None:
            labels = np.full(mask.shape, BACKGROUND, np.uint8)
            mh, mw = mask.shape
            if abs(mh * width - mw * height) > max(mh, mw, height, width):  # more than a pixel of rounding
                raise DatasetError(f"{masks[part]}: mask {mw}x{mh} and image {width}x{height} differ in shape "
                                   "(CelebAMask-HQ masks are the image scaled)")
        elif mask.shape != labels.shape:
            raise DatasetError(f"{masks[part]}: mask {mask.shape[1]}x{mask.shape[0]}, the face's other masks "
                               f"are {labels.shape[1]}x{labels.shape[0]}")
        labels[mask != 0] = CELEBAMASK_TO_LABELS[part]
    if labels is None:
        return np.full((height, width), BACKGROUND, np.uint8)
    if labels.shape != (height, width):
        labels = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
    return labels


_LAPA_TABLE = np.zeros(256, dtype=np.uint8)
_LAPA_TABLE[:len(LAPA_TO_LABELS)] = LAPA_TO_LABELS


def lapa_labels(path: Path, height: int, width: int) -> np.ndarray:
    """Project labels from a LaPa label map (values 0..10) that must be the image's size."""
    data = _read_grey(path)
    if data.shape != (height, width):
        raise DatasetError(f"{path}: label map {data.shape[1]}x{data.shape[0]}, its image is {width}x{height}")
    unknown = np.unique(data[data >= len(LAPA_TO_LABELS)])
    if unknown.size:
        raise DatasetError(f"{path}: unknown LaPa label values {unknown.tolist()} (known 0..{len(LAPA_TO_LABELS) - 1})")
    return _LAPA_TABLE[data]


# ---------------------------------------------------------------- loaders

def _image_for(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def load_celebamask_hq(root: Path) -> list[ParsingFace]:
    """Every face of CelebAMask-HQ: CelebA-HQ-img/<n>.jpg with CelebAMask-HQ-mask-anno/<k>/<%05d n>_<part>.png."""
    root = Path(root)
    by_number: dict[int, list[Path]] = {}
    for path in sorted((root / CELEBAMASK_MASKS).rglob("*.png")):
        celebamask_part(path)  # a stray file is an error, not silently dropped
        by_number.setdefault(int(path.name.split("_")[0]), []).append(path)
    faces = []
    for number, masks in sorted(by_number.items()):
        image = _image_for(root / CELEBAMASK_IMAGES, str(number))
        if image is None:
            raise DatasetError(f"{masks[0]}: no image {root / CELEBAMASK_IMAGES}/{number}.jpg for its masks")
        faces.append(ParsingFace(image, tuple(masks), "celebamask-hq", "", str(number)))
    return faces


def _lapa_folders(root: Path) -> list[tuple[Path, str]]:
    """(folder holding images/ and labels/, subset): the split folders, or root itself."""
    candidates = [(root / s, s) for s in LAPA_SPLITS] + [(root, "")]
    return [(d, s) for d, s in candidates if (d / "images").is_dir() and (d / "labels").is_dir()]


def load_lapa(root: Path) -> list[ParsingFace]:
    """Every face of LaPa: <split>/labels/<name>.png with <split>/images/<name>.jpg (landmarks/ unused)."""
    faces = []
    for folder, subset in _lapa_folders(Path(root)):
        for label in sorted((folder / "labels").glob("*.png")):
            image = _image_for(folder / "images", label.stem)
            if image is None:
                raise DatasetError(f"{label}: no image {folder / 'images'}/{label.stem}.jpg for it")
            faces.append(ParsingFace(image, (label,), "lapa", subset, label.stem))
    return faces


LOADERS = {"celebamask-hq": load_celebamask_hq, "lapa": load_lapa}


def detect_parsing_format(root: Path) -> str:
    """The one face-parsing format laid out under root (DatasetError when none or both are)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    found = []
    if (root / CELEBAMASK_IMAGES).is_dir() and (root / CELEBAMASK_MASKS).is_dir():
        found.append("celebamask-hq")
    if _lapa_folders(root):
        found.append("lapa")
    if len(found) > 1:
        raise DatasetError(f"{root} holds several formats ({', '.join(found)}): pass format=")
    if not found:
        if not any(p for p in root.iterdir() if not p.name.startswith(".")):
            raise DatasetError(f"{root} is empty: no face-parsing labels to load")
        raise DatasetError(f"{root}: no known face-parsing layout (CelebAMask-HQ: {CELEBAMASK_IMAGES}/ and "
                           f"{CELEBAMASK_MASKS}/; LaPa: {{train,val,test}}/images/ and labels/)")
    return found[0]


def load_parsing_dataset(root: Path, format: str | None = None, manifest: dict | None = None) -> list[ParsingFace]:
    """Every labelled face under root (format detected unless given); refuses eval photos; the first
    face is read once so that a wrong layout fails here, not inside training."""
    _, faces = read_dataset_folder(root, format, LOADERS, detect_parsing_format, "face-parsing")
    refuse_eval_parsing_faces(faces, manifest)
    faces[0].load()
    return faces


def refuse_eval_parsing_faces(faces, manifest: dict | None = None) -> None:
    """check_not_eval on every face's image. Label files are not hashed: the pool's eval annotations
    are landmark files, which a mask or label map never is."""
    check_not_eval([f.image_path for f in faces], manifest)


def dataset_record(root: Path, format: str, faces: list[ParsingFace]) -> dict:
    """Provenance of one dataset folder: counts, and a sha256 of its file list (relative names and sizes)."""
    root = Path(root)
    digest = hashlib.sha256()
    for face in faces:
        for path in (face.image_path, *face.label_paths):
            digest.update(f"{path.relative_to(root).as_posix()} {path.stat().st_size}\n".encode())
    subsets: dict[str, int] = {}
    for face in faces:
        subsets[face.subset] = subsets.get(face.subset, 0) + 1
    return {"path": str(root), "format": format, "faces": len(faces), "subsets": subsets,
            "files_sha256": digest.hexdigest()}


# ---------------------------------------------------------------- crops

def _centroid(labels: np.ndarray, ids) -> np.ndarray | None:
    ys, xs = np.nonzero(np.isin(labels, ids))
    return np.array([xs.mean(), ys.mean()]) if len(xs) else None


def face_roi(labels: np.ndarray, roi_scale: float = 1.5) -> tuple[np.ndarray, bool | None]:
    """(cx, cy, side, angle) around the labelled face as the tracker frames one (core/roi.py
    roi_from_points: the face's extent in its upright frame, square, x roi_scale), and whether the
    labels' left/right are the subject's.

    Upright: the eye line (brows without both eyes) horizontal, turned so that nose and mouth lie
    below it. The subject's left eye shows on the image's right, so labels whose left eye is on
    the upright crop's left are the image's left (False); None when eyes/brows or nose/mouth are
    missing. Without face labels: the whole image."""
    h, w = labels.shape
    angle, subject_sides = 0.0, None
    for left, right in ((LEFT_EYE, RIGHT_EYE), (LEFT_BROW, RIGHT_BROW)):
        c_left, c_right = _centroid(labels, [left]), _centroid(labels, [right])
        if c_left is not None and c_right is not None and np.linalg.norm(c_left - c_right) > 1.0:
            d = c_left - c_right
            angle = math.atan2(d[1], d[0])
            below = _centroid(labels, list(_BELOW_EYES))
            if below is not None:
                down = (below - 0.5 * (c_left + c_right)) @ np.array([-math.sin(angle), math.cos(angle)])
                subject_sides = bool(down > 0)
                if not subject_sides:
                    angle += math.pi
            break
    ys, xs = np.nonzero(_FACE_TABLE[labels])
    if not len(xs):
        return np.array([(w - 1) / 2, (h - 1) / 2, float(min(h, w)), 0.0]), subject_sides
    cos, sin = math.cos(angle), math.sin(angle)
    u, v = xs * cos + ys * sin, -xs * sin + ys * cos  # the upright frame
    cu, cv = 0.5 * (u.min() + u.max()), 0.5 * (v.min() + v.max())
    side = max(u.max() - u.min(), v.max() - v.min(), 1.0) * roi_scale
    return np.array([cu * cos - cv * sin, cu * sin + cv * cos, side, angle]), subject_sides


def subject_side_agreement(faces: list[ParsingFace], count: int = 32) -> tuple[float, int]:
    """(fraction of faces whose labels' left/right look like the subject's, faces that could tell)
    over up to `count` faces spread through the list: near 1 confirms the mapping's assumption,
    near 0 says the dataset's left/right are the image's."""
    picks = np.unique(np.linspace(0, len(faces) - 1, min(count, len(faces))).round().astype(int))
    votes = []
    for i in picks:
        image = faces[i].load_image()
        sides = face_roi(faces[i].load_labels(*image.shape[:2]))[1]
        if sides is not None:
            votes.append(sides)
    return (float(np.mean(votes)) if votes else float("nan")), len(votes)


def flip_parsing(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mirror image and its labels, left and right swapped (they are the subject's)."""
    return np.ascontiguousarray(image[:, ::-1]), FLIP_LABELS[labels[:, ::-1]]


def parsing_crop(image: np.ndarray, labels: np.ndarray, roi: np.ndarray, size: int, rng: np.random.Generator,
                 scale_range=(1.0, 1.0), shift_fraction: float = 0.0, angle_std_deg: float = 0.0,
                 flip_probability: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """A (size, size) crop of the ROI, jittered as the sample engine jitters its ROIs (side x
    scale_range, centre +- shift_fraction x side, angle + N(0, angle_std_deg)), mirrored with
    `flip_probability`: image bilinear, labels nearest, the same reflected border for both."""
    from .samples import crop_affine

    cx, cy, side, angle = (float(v) for v in roi)
    side *= rng.uniform(*scale_range)
    cx += rng.uniform(-1, 1) * shift_fraction * side
    cy += rng.uniform(-1, 1) * shift_fraction * side
    angle += math.radians(rng.normal(0.0, angle_std_deg)) if angle_std_deg > 0 else 0.0
    affine = crop_affine(np.array([cx, cy, side, angle]), size)
    crop = cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    crop_labels = cv2.warpAffine(labels, affine, (size, size), flags=cv2.INTER_NEAREST,
                                 borderMode=cv2.BORDER_REFLECT101)
    if rng.random() < flip_probability:
        crop, crop_labels = flip_parsing(crop, crop_labels)
    return crop, crop_labels
