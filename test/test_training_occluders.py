"""Training occluders (occface_ros.training.occluders) on a real face crop: every kind covers what it
targets, leaves everything else bit-identical, is deterministic per seed and is fast."""
import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from occface_ros.training.occluders import OCCLUDER_KINDS, occlude, occluder_sheet

pytestmark = pytest.mark.unit

CROP_PX = 192


@pytest.fixture(scope="module")
def face():
    """(full image, its 68 landmarks, a 192 x 192 crop, the crop's landmarks) of the most frontal face
    FaceMesh finds in ultralytics' zidane.jpg (not an eval photo)."""
    from occface_ros.app.samples import sample_path
    from occface_ros.config import load_config
    from occface_ros.pipeline import FacePipeline

    image = cv2.imread(str(sample_path("ultralytics", "zidane.jpg")), cv2.IMREAD_COLOR)
    pipeline = FacePipeline(load_config(overrides={"occlusion": {"enabled": False}}))
    try:
        faces = pipeline.process(image, 0.0).faces
    finally:
        pipeline.close()
    assert faces, "FaceMesh found no face in zidane.jpg"
    lm = min(faces, key=lambda f: abs(f.yaw_deg)).landmarks68.astype(np.float64)
    centre = 0.5 * (lm.min(0) + lm.max(0))
    scale = CROP_PX / (1.7 * float(np.ptp(lm, 0).max()))
    m = np.array([[scale, 0, CROP_PX / 2 - scale * centre[0]], [0, scale, CROP_PX / 2 - scale * centre[1]]])
    crop = cv2.warpAffine(image, m, (CROP_PX, CROP_PX), flags=cv2.INTER_LINEAR)
    return image, lm, crop, lm * scale + m[:, 2]


def _alpha_at(alpha: np.ndarray, points: np.ndarray) -> np.ndarray:
    p = np.round(np.atleast_2d(points)).astype(int)
    return alpha[p[:, 1], p[:, 0]]


@pytest.mark.parametrize("kind", OCCLUDER_KINDS)
def test_each_kind_draws_only_where_its_alpha_is(face, kind):
    _, _, crop, lm = face
    for seed in range(4):
        sample = occlude(crop, lm, np.random.default_rng(seed), [kind])
        assert sample.kinds == [kind] and len(sample.variants) == 1
        assert sample.image_bgr.shape == crop.shape and sample.image_bgr.dtype == np.uint8
        assert sample.alpha.shape == crop.shape[:2] and sample.alpha.dtype == np.float32
        assert sample.alpha.min() >= 0.0 and sample.alpha.max() <= 1.0
        assert sample.alpha.max() > 0.3, f"{kind} seed {seed} drew nothing"
        changed = (sample.image_bgr != crop).any(-1)
        assert changed.any()
        assert not (changed & (sample.alpha == 0)).any(), "pixels changed where alpha is 0"
        # the occluder lies on or near the face: some coverage inside the landmark box grown by 20 %
        lo, hi = lm.min(0), lm.max(0)
        pad = 0.2 * (hi - lo)
        x0, y0 = np.maximum(np.floor(lo - pad).astype(int), 0)
        x1, y1 = np.ceil(hi + pad).astype(int)
        assert sample.alpha[y0:y1, x0:x1].max() > 0.3


@pytest.mark.parametrize("kind, points, min_alpha", [
    ("hand:mouth", list(range(48, 68)), None),  # most mouth points, checked below
    ("mask", [30] + list(range(48, 68)), 0.4),  # nose tip and the whole mouth
    ("mask:texture", [30] + list(range(48, 68)), 0.4),
    ("mask:surgical", [30] + list(range(48, 68)), 0.4),
    ("mask:n95", [30] + list(range(48, 68)), 0.4),
    ("mask:cloth", [30] + list(range(48, 68)), 0.4),
    ("sunglasses", list(range(36, 48)), 0.8),  # both eyes, opaque
    ("glasses", list(range(36, 48)), 0.02),  # both eyes, behind (at least faintly) tinted glass
    ("scarf:nose", [30] + list(range(48, 68)), 0.4),
    ("scarf:chin", [8], 0.4),
])
def test_kind_covers_its_target(face, kind, points, min_alpha):
    _, _, crop, lm = face
    fractions = []
    for seed in range(10):
        alpha = occlude(crop, lm, np.random.default_rng(100 + seed), [kind]).alpha
        values = _alpha_at(alpha, lm[points])
        if min_alpha is None:
            fractions.append(float((values > 0.4).mean()))
        else:
            assert values.min() > min_alpha, f"{kind} seed {seed}: alpha {values.min():.3f} at its target"
    if fractions:
        assert np.mean(fractions) >= 0.8 and min(fractions) >= 0.5, fractions


@pytest.mark.parametrize("kind", ["cup", "microphone", "phone:front"])
def test_held_objects_are_at_the_mouth(face, kind):
    _, _, crop, lm = face
    mouth = lm[48:68].mean(0)
    iod = float(np.linalg.norm(lm[45] - lm[36]))
    yy, xx = np.mgrid[0:crop.shape[0], 0:crop.shape[1]]
    near_mouth = (xx - mouth[0]) ** 2 + (yy - mouth[1]) ** 2 < iod ** 2
    for seed in range(8):
        alpha = occlude(crop, lm, np.random.default_rng(200 + seed), [kind]).alpha
        assert alpha[near_mouth].max() > 0.4
    if kind == "cup":
        assert _alpha_at(alpha, mouth)[0] > 0.4


def test_hair_covers_the_forehead_and_brows(face):
    _, _, crop, lm = face
    x0, x1 = int(lm[17:27, 0].min()), int(lm[17:27, 0].max())
    y1 = int(lm[17:27, 1].max())
    y0 = max(0, y1 - int(0.4 * np.ptp(lm[:, 1])))
    for seed in range(6):
        alpha = occlude(crop, lm, np.random.default_rng(300 + seed), ["hair"]).alpha
        assert (alpha[y0:y1, x0:x1] > 0.3).mean() > 0.02


def test_hand_placements_and_poses(face):
    _, _, crop, lm = face
    variants = set()
    for seed in range(40):
        variants.add(occlude(crop, lm, np.random.default_rng(seed), ["hand"]).variants[0])
    placements = {v.split("/")[0] for v in variants}
    poses = {v.split("/")[1] for v in variants}
    assert {"mouth", "eyes", "eye", "cheek", "chin", "hold_chin"} <= placements
    assert {"flat", "fist"} <= poses


def test_deterministic_per_seed_and_different_across_seeds(face):
    _, _, crop, lm = face
    for kinds in [None] + [[k] for k in OCCLUDER_KINDS]:
        a = occlude(crop, lm, np.random.default_rng(7), kinds)
        b = occlude(crop, lm, np.random.default_rng(7), kinds)
        c = occlude(crop, lm, np.random.default_rng(8), kinds)
        assert np.array_equal(a.image_bgr, b.image_bgr) and np.array_equal(a.alpha, b.alpha) and a.kinds == b.kinds
        assert not np.array_equal(a.alpha, c.alpha), f"{kinds}: seeds 7 and 8 gave the same occluder"


def test_random_kinds_several_per_face(face):
    _, _, crop, lm = face
    counts = {k: 0 for k in OCCLUDER_KINDS}
    sizes = []
    for seed in range(150):
        sample = occlude(crop, lm, np.random.default_rng(seed), None, max_occluders=3)
        assert 1 <= len(sample.kinds) <= 3 and len(set(sample.kinds)) == len(sample.kinds)
        assert not {"glasses", "sunglasses"} <= set(sample.kinds) and not {"mask", "scarf"} <= set(sample.kinds)
        if "hand" in sample.kinds:
            assert sample.kinds[-1] == "hand"  # hands are in front of everything else
        for k in sample.kinds:
            counts[k] += 1
        sizes.append(len(sample.kinds))
    assert set(sizes) == {1, 2, 3}
    assert all(counts.values()), counts
    assert counts["hand"] == max(counts.values()) and counts["mask"] >= sorted(counts.values())[-3]
    assert all(len(occlude(crop, lm, np.random.default_rng(s), None, max_occluders=1).kinds) == 1 for s in range(10))


def test_partial_transparency_occurs(face):
    _, _, crop, lm = face
    tinted = occlude(crop, lm, np.random.default_rng(0), ["glasses:tinted"]).alpha
    eyes = _alpha_at(tinted, lm[[37, 38, 43, 44]])
    assert 0.1 < eyes.mean() < 0.95
    maxima = [occlude(crop, lm, np.random.default_rng(s), ["scarf"]).alpha.max() for s in range(30)]
    assert any(m < 0.92 for m in maxima) and any(m > 0.98 for m in maxima)


def test_full_image_and_grey_image(face):
    image, lm, _, _ = face
    sample = occlude(image, lm, np.random.default_rng(3), ["hand", "sunglasses"])
    changed = (sample.image_bgr != image).any(-1)
    assert changed.any() and not (changed & (sample.alpha == 0)).any()
    # far from this face nothing is touched (the other person in the photo stays as it was)
    lo, hi = lm.min(0), lm.max(0)
    size = float(np.ptp(lm, 0).max())
    far = np.ones(image.shape[:2], bool)
    y0, x0 = (max(0, int(v - 1.5 * size)) for v in (lo[1], lo[0]))
    far[y0:int(hi[1] + 1.5 * size), x0:int(hi[0] + 1.5 * size)] = False
    assert sample.alpha[far].max() == 0.0
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    g = occlude(grey, lm, np.random.default_rng(3), ["mask:cloth", "hand"])
    assert (g.image_bgr != grey).any()
    assert (g.image_bgr[..., 0] == g.image_bgr[..., 1]).all() and (g.image_bgr[..., 1] == g.image_bgr[..., 2]).all()


def test_unknown_kind_is_refused(face):
    _, _, crop, lm = face
    with pytest.raises(ValueError, match="unknown occluder kind"):
        occlude(crop, lm, np.random.default_rng(0), ["umbrella"])


def test_training_occluders_do_not_use_the_eval_generators():
    root = Path(__file__).resolve().parent.parent / "occface_ros" / "training"
    sources = list(root.glob("occluders.py")) + list((root / "occluders").glob("*.py"))
    assert sources
    for path in sources:
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+[\w.]*evaluation", text, re.M), path
        assert "paste_face_mask" not in text and "apply_occluder" not in text, path


def test_sample_sheet(face, tmp_path):
    _, _, crop, lm = face
    path = tmp_path / "sheet.png"
    occluder_sheet(path, crop, lm, seed=1, columns=3)
    sheet = cv2.imread(str(path))
    assert sheet.shape == ((len(OCCLUDER_KINDS) + 1) * CROP_PX, 4 * CROP_PX, 3)


def test_speed_per_kind(face):
    """Prints ms per 192 x 192 sample for each kind and for random draws (no assertion: shared CPU)."""
    _, _, crop, lm = face
    for kind in OCCLUDER_KINDS + ("random",):
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        for _ in range(30):
            occlude(crop, lm, rng, None if kind == "random" else [kind])
        print(f"occluder {kind:<11s} {1000 * (time.perf_counter() - start) / 30:.2f} ms / sample")
