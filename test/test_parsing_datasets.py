"""Public face-parsing dataset loaders (occface_ros/training/parsing_datasets.py): tiny CelebAMask-HQ
and LaPa folders written here with cv2, the label mapping and CelebAMask-HQ's overlay order, mask
resizing, format detection, the one-line errors, the eval rule, the left/right swap of a mirrored
crop, and a few parser training steps with the real labels mixed into the batches."""
import hashlib
import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from occface_ros.core import labels as L
from occface_ros.training import parsing_datasets as pd
from occface_ros.training.datasets import DatasetError
from occface_ros.training.photo_pool import EvalPhotoError

pytestmark = pytest.mark.unit

# the mapping the datasets' documentation implies (left/right: the subject's, the module's assumption)
CELEBAMASK_EXPECTED = {
    "skin": L.SKIN, "nose": L.NOSE, "eye_g": L.OCCLUDER, "l_eye": L.LEFT_EYE, "r_eye": L.RIGHT_EYE,
    "l_brow": L.LEFT_BROW, "r_brow": L.RIGHT_BROW, "l_ear": L.BACKGROUND, "r_ear": L.BACKGROUND,
    "mouth": L.INNER_MOUTH, "u_lip": L.UPPER_LIP, "l_lip": L.LOWER_LIP, "hair": L.HAIR, "hat": L.OCCLUDER,
    "ear_r": L.BACKGROUND, "neck_l": L.BACKGROUND, "neck": L.BACKGROUND, "cloth": L.BACKGROUND,
}
LAPA_EXPECTED = [L.BACKGROUND, L.SKIN, L.LEFT_BROW, L.RIGHT_BROW, L.LEFT_EYE, L.RIGHT_EYE, L.NOSE, L.UPPER_LIP,
                 L.INNER_MOUTH, L.LOWER_LIP, L.HAIR]


def _one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def _parts(dx: int = 0, dy: int = 0, glasses: bool = False) -> dict[str, tuple]:
    """A frontal face on a 32 x 32 mask grid: part -> ("rect", r0, r1, c0, c1) or ("ellipse", cx, cy, ax, ay).
    The subject's left eye and brow are on the image's right."""
    parts = {
        "skin": ("ellipse", 16 + dx, 17 + dy, 9, 12),
        "l_brow": ("rect", 9 + dy, 10 + dy, 18 + dx, 23 + dx), "r_brow": ("rect", 9 + dy, 10 + dy, 9 + dx, 14 + dx),
        "l_eye": ("rect", 12 + dy, 13 + dy, 19 + dx, 22 + dx), "r_eye": ("rect", 12 + dy, 13 + dy, 10 + dx, 13 + dx),
        "nose": ("rect", 15 + dy, 19 + dy, 15 + dx, 17 + dx),
        "mouth": ("rect", 22 + dy, 23 + dy, 14 + dx, 18 + dx), "u_lip": ("rect", 22 + dy, 22 + dy, 13 + dx, 19 + dx),
        "l_lip": ("rect", 24 + dy, 25 + dy, 13 + dx, 19 + dx),
        "neck": ("rect", 27 + dy, 31, 12 + dx, 20 + dx), "hair": ("rect", 2 + dy, 7 + dy, 6 + dx, 26 + dx),
    }
    if glasses:
        parts["eye_g"] = ("rect", 11 + dy, 14 + dy, 8 + dx, 24 + dx)
    return parts


def _mask(shape: tuple, size: int = 32) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    if shape[0] == "rect":
        _, r0, r1, c0, c1 = shape
        mask[r0:r1 + 1, c0:c1 + 1] = 255
    else:
        _, cx, cy, ax, ay = shape
        cv2.ellipse(mask, (cx, cy), (ax, ay), 0, 0, 360, 255, -1)
    return mask


def _expected(parts: dict) -> np.ndarray:
    """The 32 x 32 project labels the spec asks for: parts drawn in CelebAMask-HQ's order, mapped."""
    out = np.zeros((32, 32), np.uint8)
    for name in ["skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r", "nose", "mouth",
                 "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat"]:
        if name in parts:
            out[_mask(parts[name]) > 0] = CELEBAMASK_EXPECTED[name]
    return out


def _image_for(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """An image whose colours follow its labels (plus noise), at size x size."""
    rng = np.random.default_rng(seed)
    colours = np.array([L.LABEL_COLOURS_BGR[k] for k in range(len(L.LABELS))] + [(0, 0, 0)] * (256 - len(L.LABELS)),
                       np.uint8)
    big = cv2.resize(labels, (size, size), interpolation=cv2.INTER_NEAREST)
    return np.clip(colours[big].astype(int) + rng.integers(-20, 20, (size, size, 3)), 0, 255).astype(np.uint8)


def _celeba_face(root: Path, number: int, parts: dict, image_size: int = 64, seed: int = 0) -> np.ndarray:
    """CelebA-HQ-img/<n>.jpg and CelebAMask-HQ-mask-anno/<n // 2000>/<%05d n>_<part>.png; returns the 32 x 32 expectation."""
    expected = _expected(parts)
    _write(root / "CelebA-HQ-img" / f"{number}.jpg", _image_for(expected, image_size, seed))
    for name, shape in parts.items():
        _write(root / "CelebAMask-HQ-mask-anno" / str(number // 2000) / f"{number:05d}_{name}.png", _mask(shape))
    return expected


def _lapa_face(root: Path, split: str, name: str, labels: np.ndarray, seed: int = 0) -> Path:
    h, w = labels.shape
    _write(root / split / "images" / f"{name}.jpg", _image_for(labels, w, seed)[:h])
    label_path = _write(root / split / "labels" / f"{name}.png", labels)
    (root / split / "landmarks").mkdir(parents=True, exist_ok=True)
    (root / split / "landmarks" / f"{name}.txt").write_text("106\n" + "1.0 2.0\n" * 106)
    return label_path


def _lapa_values(labels: np.ndarray) -> np.ndarray:
    """Project labels written as LaPa values (the inverse of the spec's mapping)."""
    inverse = np.zeros(256, np.uint8)
    for value, label in enumerate(LAPA_EXPECTED):
        inverse[label] = value
    return inverse[labels]


# ---------------------------------------------------------------- CelebAMask-HQ

def test_celebamask_hq_maps_every_part_as_specified(tmp_path):
    for number, part in enumerate(pd.CELEBAMASK_PARTS):
        _write(tmp_path / "CelebA-HQ-img" / f"{number}.jpg", np.full((16, 16, 3), 128, np.uint8))
        _write(tmp_path / "CelebAMask-HQ-mask-anno" / "0" / f"{number:05d}_{part}.png", np.full((8, 8), 255, np.uint8))
    faces = pd.load_parsing_dataset(tmp_path)
    assert len(faces) == len(CELEBAMASK_EXPECTED) == 18
    for face in faces:
        image, labels = face.load()
        part = face.label_paths[0].stem.split("_", 1)[1]
        assert labels.shape == (16, 16) and labels.dtype == np.uint8
        assert set(np.unique(labels)) == {CELEBAMASK_EXPECTED[part]}, part


def test_celebamask_hq_overlay_order_and_mask_resize(tmp_path):
    parts = _parts(glasses=True)
    expected = _celeba_face(tmp_path, 2001, parts)  # in mask folder 1, as CelebAMask-HQ files it
    assert pd.detect_parsing_format(tmp_path) == "celebamask-hq"
    [face] = pd.load_parsing_dataset(tmp_path)
    assert face.source == "celebamask-hq" and face.identity == "2001" and face.subset == ""
    assert face.image_path == tmp_path / "CelebA-HQ-img" / "2001.jpg" and len(face.label_paths) == len(parts)
    image, labels = face.load()
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert labels.shape == (64, 64)  # the 32 x 32 masks resized to the image, nearest: every label a 2 x 2 block
    np.testing.assert_array_equal(labels, np.repeat(np.repeat(expected, 2, 0), 2, 1))
    # later parts overwrite earlier ones: hair over skin, neck over skin, upper lip over mouth, glasses over eyes
    assert labels[2 * 5, 2 * 16] == L.HAIR and labels[2 * 28, 2 * 16] == L.BACKGROUND
    assert labels[2 * 22, 2 * 16] == L.UPPER_LIP and labels[2 * 23, 2 * 16] == L.INNER_MOUTH
    assert labels[2 * 12, 2 * 20] == L.OCCLUDER and not np.isin(labels, [L.LEFT_EYE, L.RIGHT_EYE]).any()

    # a 1024 x 1024 image with 512 x 512 masks, as the dataset ships them
    big = tmp_path / "big"
    _write(big / "CelebA-HQ-img" / "0.jpg", np.zeros((1024, 1024, 3), np.uint8))
    mask = np.zeros((512, 512), np.uint8)
    mask[100:200, 300:301] = 255
    _write(big / "CelebAMask-HQ-mask-anno" / "0" / "00000_nose.png", mask)
    _, labels = pd.load_parsing_dataset(big)[0].load()
    assert labels.shape == (1024, 1024)
    assert np.array_equal(np.argwhere(labels == L.NOSE)[[0, -1]], [[200, 600], [399, 601]])


def test_celebamask_hq_errors_are_one_line(tmp_path):
    _celeba_face(tmp_path, 0, _parts())
    stray = _write(tmp_path / "CelebAMask-HQ-mask-anno" / "0" / "00000_beard.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(DatasetError) as e:
        pd.load_parsing_dataset(tmp_path)
    assert _one_line(e).startswith(f"{stray}: not a CelebAMask-HQ part mask <number>_<part>.png; parts: skin, ")
    stray.unlink()

    _write(tmp_path / "CelebAMask-HQ-mask-anno" / "0" / "00007_skin.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(DatasetError, match=r"00007_skin.png: no image .*CelebA-HQ-img/7.jpg for its masks"):
        pd.load_parsing_dataset(tmp_path)
    (tmp_path / "CelebAMask-HQ-mask-anno" / "0" / "00007_skin.png").unlink()

    _write(tmp_path / "CelebAMask-HQ-mask-anno" / "0" / "00000_hat.png", np.zeros((16, 32), np.uint8))
    with pytest.raises(DatasetError) as e:
        pd.load_parsing_dataset(tmp_path)
    assert _one_line(e).endswith("00000_hat.png: mask 32x16, the face's other masks are 32x32")
    (tmp_path / "CelebAMask-HQ-mask-anno" / "0" / "00000_hat.png").unlink()

    _write(tmp_path / "CelebA-HQ-img" / "0.jpg", np.zeros((64, 32, 3), np.uint8))  # not the masks' shape
    with pytest.raises(DatasetError, match="00000_skin.png: mask 32x32 and image 32x64 differ in shape"):
        pd.load_parsing_dataset(tmp_path)


# ---------------------------------------------------------------- LaPa

def test_lapa_values_map_as_specified_and_splits_are_subsets(tmp_path):
    values = np.repeat(np.arange(11, dtype=np.uint8)[None], 5, 0)  # one column per LaPa value
    _lapa_face(tmp_path, "train", "a_1", values)
    labels = np.repeat(np.repeat(_expected(_parts()), 2, 0), 2, 1)
    _lapa_face(tmp_path, "val", "b_2", _lapa_values(labels), seed=1)
    _lapa_face(tmp_path, "test", "c_3", _lapa_values(labels), seed=2)
    assert pd.detect_parsing_format(tmp_path) == "lapa"
    faces = pd.load_parsing_dataset(tmp_path)
    assert [(f.subset, f.identity, f.source) for f in faces] == [
        ("train", "a_1", "lapa"), ("val", "b_2", "lapa"), ("test", "c_3", "lapa")]
    image, mapped = faces[0].load()
    assert image.shape == (5, 11, 3) and mapped.dtype == np.uint8
    assert mapped[0].tolist() == LAPA_EXPECTED  # 8 inner mouth and 9 lower lip trade places, the rest keep theirs
    np.testing.assert_array_equal(faces[1].load()[1], labels)
    # one split folder on its own is LaPa too
    assert pd.detect_parsing_format(tmp_path / "val") == "lapa"
    assert [f.subset for f in pd.load_parsing_dataset(tmp_path / "val")] == [""]


def test_lapa_errors_are_one_line(tmp_path):
    good = np.ones((8, 8), np.uint8)
    _lapa_face(tmp_path, "train", "a", good)
    wrong_size = _lapa_face(tmp_path, "train", "b", good)
    _write(wrong_size, np.ones((8, 6), np.uint8))
    unknown = _lapa_face(tmp_path, "train", "c", np.full((8, 8), 3, np.uint8))
    _write(unknown, np.where(np.eye(8, dtype=bool), 12, 11).astype(np.uint8))
    faces = pd.load_parsing_dataset(tmp_path)  # the first face reads
    with pytest.raises(DatasetError) as e:
        faces[1].load()
    assert _one_line(e) == f"{wrong_size}: label map 6x8, its image is 8x8"
    with pytest.raises(DatasetError) as e:
        faces[2].load()
    assert _one_line(e) == f"{unknown}: unknown LaPa label values [11, 12] (known 0..10)"
    _write(wrong_size, np.ones((8, 8, 3), np.uint8) * np.array([1, 2, 3], np.uint8))
    with pytest.raises(DatasetError, match="b.png: a colour image, expected a single-channel label map"):
        faces[1].load()

    (tmp_path / "train" / "images" / "a.jpg").unlink()
    with pytest.raises(DatasetError) as e:
        pd.load_parsing_dataset(tmp_path)
    assert _one_line(e) == f"{tmp_path / 'train' / 'labels' / 'a.png'}: no image {tmp_path / 'train' / 'images'}/a.jpg for it"


# ---------------------------------------------------------------- detection

def test_format_detection_and_folder_errors(tmp_path):
    with pytest.raises(DatasetError) as e:
        pd.detect_parsing_format(tmp_path)
    assert _one_line(e) == f"{tmp_path} is empty: no face-parsing labels to load"
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetError) as e:
        pd.load_parsing_dataset(tmp_path)
    assert _one_line(e).startswith(f"{tmp_path}: no known face-parsing layout (CelebAMask-HQ: CelebA-HQ-img/ and ")
    with pytest.raises(DatasetError, match="is not a folder"):
        pd.load_parsing_dataset(tmp_path / "notes.txt")
    with pytest.raises(DatasetError, match="unknown face-parsing dataset format 'helen'; known: celebamask-hq, lapa"):
        pd.load_parsing_dataset(tmp_path, format="helen")

    _celeba_face(tmp_path, 3, _parts())
    _lapa_face(tmp_path, "train", "x", np.ones((8, 8), np.uint8))
    with pytest.raises(DatasetError, match=r"holds several formats \(celebamask-hq, lapa\): pass format="):
        pd.load_parsing_dataset(tmp_path)
    assert [f.source for f in pd.load_parsing_dataset(tmp_path, format="lapa")] == ["lapa"]
    assert [f.source for f in pd.load_parsing_dataset(tmp_path, format="celebamask-hq")] == ["celebamask-hq"]
    (tmp_path / "train" / "labels" / "x.png").unlink()
    with pytest.raises(DatasetError, match="no lapa faces found"):
        pd.load_parsing_dataset(tmp_path, format="lapa")


# ---------------------------------------------------------------- the eval rule

def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(eval_image: Path, train_image: Path) -> dict:
    """A pool manifest with one eval photo (a fixed eval identity) and one train photo."""
    def entry(photo_id, member, sha, identity, split):
        return {"id": photo_id, "source": "pkg", "member": member, "sha256": sha, "identities": [identity],
                "split": split, "annotations": []}
    return {"split": {"eval_identities_fixed": ["eval_person"], "salt": "test", "eval_fraction": 0.0},
            "sources": {"pkg": {}},
            "photos": [entry("pkg/evalphoto", "pkg-1.0/data/evalphoto.jpg", _sha(eval_image), "eval_person", "eval"),
                       entry("pkg/trainphoto", "pkg-1.0/data/trainphoto.jpg", _sha(train_image), "train_person", "train")]}


def test_eval_photos_never_reach_parser_training(tmp_path):
    eval_image = _write(tmp_path / "src" / "e.jpg", np.random.default_rng(0).integers(0, 255, (16, 16, 3), np.uint8))
    train_image = _write(tmp_path / "src" / "t.jpg", np.random.default_rng(1).integers(0, 255, (16, 16, 3), np.uint8))
    manifest = _manifest(eval_image, train_image)

    celeba = tmp_path / "celeba"
    _celeba_face(celeba, 0, _parts())
    _celeba_face(celeba, 1, _parts())
    shutil.copyfile(train_image, celeba / "CelebA-HQ-img" / "1.jpg")  # a train photo is fine
    assert len(pd.load_parsing_dataset(celeba, manifest=manifest)) == 2
    shutil.copyfile(eval_image, celeba / "CelebA-HQ-img" / "1.jpg")
    with pytest.raises(EvalPhotoError) as e:
        pd.load_parsing_dataset(celeba, manifest=manifest)
    assert _one_line(e) == (f"{celeba / 'CelebA-HQ-img' / '1.jpg'} is the eval photo pkg/evalphoto (or its "
                            "annotation): eval photos never reach training")

    lapa = tmp_path / "lapa"
    _lapa_face(lapa, "train", "a", np.ones((16, 16), np.uint8))
    _lapa_face(lapa, "test", "b", np.ones((16, 16), np.uint8))
    shutil.copyfile(eval_image, lapa / "test" / "images" / "b.jpg")
    with pytest.raises(EvalPhotoError, match="b.jpg is the eval photo pkg/evalphoto"):
        pd.load_parsing_dataset(lapa, manifest=manifest)
    faces = pd.load_lapa(lapa)  # the per-format loader only parses; the check is separate
    with pytest.raises(EvalPhotoError, match="b.jpg is the eval photo pkg/evalphoto"):
        pd.refuse_eval_parsing_faces(faces, manifest)


# ---------------------------------------------------------------- crops, flips, the left/right check

def test_a_mirrored_crop_swaps_left_and_right():
    labels = np.repeat(np.repeat(_expected(_parts()), 2, 0), 2, 1)
    image = _image_for(labels, 64, 0)
    flipped_image, flipped = pd.flip_parsing(image, labels)
    np.testing.assert_array_equal(flipped_image, image[:, ::-1])
    # the subject's left eye was on the image's right; in the mirror image it is a right eye on the left
    assert labels[25, 41] == L.LEFT_EYE and flipped[25, 64 - 1 - 41] == L.RIGHT_EYE
    assert labels[25, 23] == L.RIGHT_EYE and flipped[25, 64 - 1 - 23] == L.LEFT_EYE
    assert labels[19, 40] == L.LEFT_BROW and flipped[19, 64 - 1 - 40] == L.RIGHT_BROW
    assert np.array_equal(flipped == L.NOSE, (labels == L.NOSE)[:, ::-1])  # the rest only mirror
    assert pd.face_roi(labels)[1] is True and pd.face_roi(flipped)[1] is True  # still the subject's sides
    assert pd.face_roi(labels[:, ::-1])[1] is False  # mirrored without the swap: the image's sides

    roi, _ = pd.face_roi(labels)
    rng = lambda: np.random.default_rng(3)  # noqa: E731
    crop, crop_labels = pd.parsing_crop(image, labels, roi, 48, rng(), flip_probability=0.0)
    mirror, mirror_labels = pd.parsing_crop(image, labels, roi, 48, rng(), flip_probability=1.0)
    np.testing.assert_array_equal(mirror, crop[:, ::-1])
    np.testing.assert_array_equal(mirror_labels, pd.FLIP_LABELS[crop_labels[:, ::-1]])
    assert (crop_labels == L.LEFT_EYE).sum() == (mirror_labels == L.RIGHT_EYE).sum() > 0


def test_face_roi_frames_the_face_upright_and_reads_the_sides():
    labels = np.repeat(np.repeat(_expected(_parts()), 4, 0), 4, 1)  # 128 x 128
    face = np.isin(labels, L.FACE_LABELS)
    ys, xs = np.nonzero(face)
    (cx, cy, side, angle), sides = pd.face_roi(labels, roi_scale=1.5)
    assert sides is True and abs(angle) < 1e-9
    assert cx == pytest.approx((xs.min() + xs.max()) / 2) and cy == pytest.approx((ys.min() + ys.max()) / 2)
    assert side == pytest.approx(1.5 * max(np.ptp(xs), np.ptp(ys)))
    (cx2, cy2, side2, angle2), sides2 = pd.face_roi(np.rot90(labels, 2))  # upside down: turned by pi
    assert sides2 is True and abs(abs(angle2) - math.pi) < 1e-9 and side2 == pytest.approx(side)
    assert cx2 == pytest.approx(127 - cx) and cy2 == pytest.approx(127 - cy)
    # an upright crop of the upside-down face has the eyes above the mouth again
    crop, crop_labels = pd.parsing_crop(np.zeros((128, 128, 3), np.uint8), np.rot90(labels, 2).copy(),
                                        np.array([cx2, cy2, side2, angle2]), 64, np.random.default_rng(0),
                                        flip_probability=0.0)
    rows = lambda k: np.nonzero(crop_labels == k)[0].mean()  # noqa: E731
    assert rows(L.LEFT_EYE) < rows(L.NOSE) < rows(L.LOWER_LIP)
    assert np.nonzero(crop_labels == L.LEFT_EYE)[1].mean() > np.nonzero(crop_labels == L.RIGHT_EYE)[1].mean()
    # labels with the image's left/right
    swapped = pd.FLIP_LABELS[labels]
    assert pd.face_roi(swapped)[1] is False
    roi, sides = pd.face_roi(np.full((10, 12), L.HAIR, np.uint8))  # no face: the whole image
    assert roi.tolist() == [5.5, 4.5, 10.0, 0.0] and sides is None


def test_subject_side_agreement_and_dataset_record(tmp_path):
    for n in range(4):
        _celeba_face(tmp_path, n, _parts(dx=n - 2))
    faces = pd.load_parsing_dataset(tmp_path)
    assert pd.subject_side_agreement(faces) == (1.0, 4)
    record = pd.dataset_record(tmp_path, "celebamask-hq", faces)
    assert record["faces"] == 4 and record["subsets"] == {"": 4} and record["format"] == "celebamask-hq"
    assert record == pd.dataset_record(tmp_path, "celebamask-hq", pd.load_parsing_dataset(tmp_path))
    _write(tmp_path / "CelebAMask-HQ-mask-anno" / "0" / "00002_hat.png", _mask(("rect", 0, 3, 0, 31)))
    assert pd.dataset_record(tmp_path, "celebamask-hq", pd.load_parsing_dataset(tmp_path))["files_sha256"] != \
        record["files_sha256"]


# ---------------------------------------------------------------- training with real labels mixed in

# `teacher`: test/conftest.py (a fixed handful of the pool's `train` photos)


def test_a_few_parser_steps_with_a_dataset_mixed_in(teacher, tmp_path):
    import torch

    from occface_ros.occlusion.parser import load_parser
    from occface_ros.training.parser import DatasetMix, ParserTrainConfig, ParsingCollate, train_parser
    from occface_ros.training.samples import SampleConfig, SampleEngine

    root = tmp_path / "celeba"
    for n in range(12):
        _celeba_face(root, n, _parts(dx=n % 3 - 1, dy=n % 2, glasses=n % 4 == 0), image_size=96, seed=n)
    faces = pd.load_parsing_dataset(root)

    engine = SampleEngine(teacher, SampleConfig(seed=2, parsing_labels=True))
    mix = DatasetMix(engine, faces, 0.5, 4)
    samples = [mix.sample(i) for i in range(8)]
    assert [s.source == "dataset" for s in samples] == [True, True, False, False] * 2  # 2 of each batch of 4
    again = mix.sample(4)
    assert np.array_equal(again.image, samples[4].image) and np.array_equal(again.parsing, samples[4].parsing)
    for s in samples[:2] + samples[4:6]:
        assert s.image.shape == (192, 192, 3) and s.parsing.shape == (192, 192)
        assert np.isin(s.parsing, L.FACE_LABELS).mean() > 0.15  # the face fills the crop as in a tracker crop
    batch = ParsingCollate(64)(samples)
    assert batch["image"].shape == (8, 3, 64, 64) and batch["parsing"].dtype == torch.int64

    cfg = ParserTrainConfig(steps=2, batch_size=4, warmup_steps=1, val_samples=8, val_every=2, checkpoint_every=2,
                            workers=0, val_identity_fraction=0.4, seed=5, input_size=64, base_channels=4,
                            dataset_fraction=0.5)
    provenance = {"photo_manifest_sha256": "y", "datasets": [pd.dataset_record(root, "celebamask-hq", faces)]}
    result = train_parser(cfg, teacher, tmp_path / "run", progress=False, provenance=provenance, datasets=faces)
    record = json.loads(result.weights.with_suffix(".json").read_text())
    mixed = record["parsing_datasets"]
    assert mixed["faces"] == {"celebamask-hq": 12} and mixed["per_batch"] == 2 and mixed["fraction"] == 0.5
    assert mixed["train_faces"] + mixed["val_faces"] == 12 and mixed["train_faces"] > 0
    assert record["datasets"][0]["faces"] == 12 and record["datasets"][0]["format"] == "celebamask-hq"
    if mixed["val_faces"]:
        assert 0.0 <= record["validation"]["dataset_face_f1"] <= 1.0
    assert 0.0 <= record["validation"]["face_f1"] <= 1.0
    assert load_parser(result.weights).input_size == (64, 64)
