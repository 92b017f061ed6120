"""Evaluation harness: metrics on known answers, occluder masks, synthetic ground truth, `occface eval --quick`."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from occface_ros.evaluation import metrics
from occface_ros.evaluation.occluders import (
    OCCLUDER_KINDS,
    apply_occluder,
    occluder_seed,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------ metrics


def test_nme_of_a_shifted_copy(annotated_photos):
    gt = annotated_photos[2].landmarks68
    iod = np.linalg.norm(gt[36] - gt[45])
    assert metrics.nme(gt + np.array([3.0, 4.0]), gt) == pytest.approx(5.0 / iod)
    assert metrics.nme(gt, gt) == 0.0
    batch = metrics.nme(np.stack([gt, gt + [0.0, 2.0]]), np.stack([gt, gt]))
    np.testing.assert_allclose(batch, [0.0, 2.0 / iod])
    assert np.isnan(metrics.nme(np.full((68, 2), np.nan), gt))


def test_mask_iou_and_f1_of_known_masks():
    pred = np.zeros((40, 40), bool)
    gt = np.zeros((40, 40), bool)
    pred[0:10, 0:10] = True  # 100 px
    gt[0:10, 5:15] = True  # 100 px, 50 shared
    s = metrics.mask_scores(pred, gt)
    assert s.iou == pytest.approx(50 / 150) and s.f1 == pytest.approx(0.5)
    assert s.precision == pytest.approx(0.5) and s.recall == pytest.approx(0.5)
    region = np.zeros((40, 40), bool)
    region[:, 5:] = True  # drops the 50 false-positive pixels of pred
    s = metrics.mask_scores(pred, gt, region)
    assert s.precision == 1.0 and s.recall == pytest.approx(0.5) and s.f1 == pytest.approx(2 / 3)
    empty = np.zeros((40, 40), bool)
    assert metrics.mask_scores(empty, empty).f1 == 1.0
    assert metrics.mask_scores(pred, empty).f1 == 0.0


def test_geodesic_angle_of_known_rotations():
    from occface_ros.core.camera import rotation_from_yaw_pitch_roll_deg

    a = rotation_from_yaw_pitch_roll_deg(0.0, 0.0, 0.0).numpy()
    b = rotation_from_yaw_pitch_roll_deg(30.0, 0.0, 0.0).numpy()
    assert metrics.rotation_geodesic_deg(a, b) == pytest.approx(30.0, abs=1e-4)
    axis = np.array([1.0, -2.0, 0.5])
    r, _ = cv2.Rodrigues(axis / np.linalg.norm(axis) * np.deg2rad(17.0))
    assert metrics.rotation_geodesic_deg(b, b @ r) == pytest.approx(17.0, abs=1e-4)
    assert metrics.rotation_geodesic_deg(b, b) == pytest.approx(0.0, abs=1e-4)
    assert metrics.rotation_geodesic_deg(np.eye(3), np.diag([1.0, -1.0, -1.0])) == pytest.approx(180.0, abs=1e-4)


def test_jitter_of_known_tracks():
    base = np.random.default_rng(0).uniform(0, 100, (68, 2))
    offsets = np.array([[1.0, 0.0], [-1.0, 0.0]] * 10)  # +-1 px in x: RMS distance to the mean is 1
    tracks = base[None] + offsets[:, None]
    assert metrics.landmark_jitter_px(tracks) == pytest.approx(1.0)
    tracks[3] = np.nan  # a frame without a face is dropped
    assert np.isfinite(metrics.landmark_jitter_px(tracks))
    assert metrics.landmark_jitter_px(np.repeat(base[None], 5, 0)) == pytest.approx(0.0, abs=1e-9)
    # shake: +-1 px alternation moves every point 2 px per frame; a slow drift barely shakes
    alternating = base[None] + np.array([1.0, 0.0]) * np.array([1, -1, 1, -1, 1])[:, None, None]
    assert metrics.frame_to_frame_jitter_px(alternating) == pytest.approx(2.0)
    drift = base[None] + np.array([0.1, 0.0]) * np.arange(5)[:, None, None]
    assert metrics.frame_to_frame_jitter_px(drift) == pytest.approx(0.1)
    assert metrics.landmark_jitter_px(drift) > metrics.frame_to_frame_jitter_px(drift)


def test_face_region_covers_the_landmarks_and_the_forehead(annotated_photos):
    photo = annotated_photos[2]
    h, w = photo.image_bgr.shape[:2]
    region = metrics.face_region_mask(photo.landmarks68, h, w)
    xy = np.round(photo.landmarks68).astype(int)
    assert region[xy[:, 1], xy[:, 0]].mean() > 0.95  # hull points on the border may round outside
    brow_top = photo.landmarks68[17:27, 1].min()
    assert region[: int(brow_top) - 10].any()  # extends above the brows (the image is upright)


# ------------------------------------------------------------------------------------ occluders


@pytest.mark.parametrize("photo_index", [2, 3])  # lenna (colour), takeo (grey)
def test_occluder_masks_are_the_pasted_pixels(annotated_photos, photo_index):
    photo = annotated_photos[photo_index]
    h, w = photo.image_bgr.shape[:2]
    region = metrics.face_region_mask(photo.landmarks68, h, w)
    for kind in OCCLUDER_KINDS:
        occ = apply_occluder(kind, photo.image_bgr, [photo.landmarks68], occluder_seed(photo.name, kind))
        changed = (occ.image_bgr != photo.image_bgr).any(-1)
        assert not (changed & ~occ.occluder_mask).any(), kind  # nothing outside the mask changed
        assert changed[occ.occluder_mask].mean() > 0.97, kind  # (a pasted pixel may equal the photo's)
        covered = (occ.occluder_mask & region).sum() / region.sum()
        assert 0.04 < covered < 0.75, (kind, covered)
        again = apply_occluder(kind, photo.image_bgr, [photo.landmarks68], occluder_seed(photo.name, kind))
        assert np.array_equal(again.image_bgr, occ.image_bgr)  # deterministic
        if photo_index == 3:
            assert (occ.image_bgr[..., 0] == occ.image_bgr[..., 2]).all()  # grey photo stays grey


# ------------------------------------------------------------------------------------ synthetic sequence


@pytest.fixture(scope="module")
def sequence():
    from occface_ros.evaluation.synthetic import make_sequence

    return make_sequence(num_frames=6, width=320, height=240, period_frames=24)


def test_synthetic_ground_truth_matches_the_rendered_geometry(sequence):
    import torch

    from occface_ros.morphable import load_morphable_model
    from occface_ros.render import rasterize

    seq = sequence
    n, h, w = seq.face_mask.shape
    # the stated pose, identity and expression reproduce the rendered vertices and the landmarks
    model = load_morphable_model("ict", None)
    ident = torch.as_tensor(seq.identity, dtype=torch.float32)[None].expand(n, -1)
    verts = model.vertices(ident, torch.as_tensor(seq.expression, dtype=torch.float32)).numpy()
    cam = np.einsum("fij,fvj->fvi", seq.rotation, verts) + seq.translation_m[:, None]
    np.testing.assert_allclose(cam, seq.vertices_cam, atol=1e-5)
    lm = cam[:, model.landmarks68.numpy()]
    proj = lm[..., :2] / lm[..., 2:] * np.diag(seq.K)[:2] + seq.K[:2, 2]
    np.testing.assert_allclose(proj, seq.landmarks68, atol=1e-3)
    # the inner landmarks (17-67) lie on the visible rendered surface: their depth is the z-buffer's there
    near = []
    for f in range(n):
        frag = rasterize(torch.from_numpy(seq.vertices_cam[f])[None], torch.from_numpy(seq.triangles),
                         torch.from_numpy(seq.K).float(), h, w, backend="torch")
        xy = np.round(seq.landmarks68[f, 17:]).astype(int)
        zbuf = frag.depth[0].numpy()[xy[:, 1], xy[:, 0]]
        near.append(np.abs(zbuf - seq.landmark_depth_m[f, 17:]) < 0.003)
        assert seq.face_mask[f][xy[:, 1], xy[:, 0]].mean() > 0.95  # and on face-region pixels
    assert np.mean(near) > 0.9, np.mean(near)


def test_synthetic_occluder_masks(sequence):
    seq = sequence
    assert np.array_equal(seq.occlusion_mask, seq.face_mask & seq.occluder_mask)
    assert seq.occlusion_mask.any(axis=(1, 2)).sum() >= 3  # the bar crosses the face
    for f in range(len(seq.frames_bgr)):
        changed = (seq.frames_bgr[f] != seq.clean_bgr[f]).any(-1)
        assert not (changed & ~seq.occluder_mask[f]).any()  # the frames differ only under the bar
        assert changed[seq.occluder_mask[f]].mean() > 0.95
        xy = np.clip(np.round(seq.landmarks68[f]).astype(int), 0, [seq.face_mask.shape[2] - 1, seq.face_mask.shape[1] - 1])
        under_bar = seq.occluder_mask[f][xy[:, 1], xy[:, 0]]
        assert not seq.landmarks68_visible[f][under_bar].any()  # landmarks under the bar are not visible
        assert (seq.parsing[f][seq.occlusion_mask[f]] == 11).all()  # OCCLUDER label


# ------------------------------------------------------------------------------------ end to end


def test_mask_scoring_of_a_frame_result(annotated_photos):
    """The harness scores a FrameResult's occlusion_mask inside the face region; a stage that finds no
    face flags nothing (F1 0); without a stage the mask metrics are n/a."""
    from occface_ros.config import load_config
    from occface_ros.evaluation.photo_eval import score_occluded_image
    from occface_ros.pipeline import FacePipeline

    photo = annotated_photos[2]
    h, w = photo.image_bgr.shape[:2]
    cfg = load_config()
    if "occlusion" in cfg:
        cfg["occlusion"]["enabled"] = False  # only the fit is needed here; the mask is set below
    pipeline = FacePipeline(cfg)
    occ = apply_occluder("mask_blue", photo.image_bgr, [photo.landmarks68], occluder_seed(photo.name, "mask_blue"))
    clean = pipeline.process(photo.image_bgr, 0.0)
    pipeline.reset()
    result = pipeline.process(occ.image_bgr, 0.0)
    region = metrics.face_region_mask(photo.landmarks68, h, w)
    gt = [photo.landmarks68]
    result.occlusion_mask = occ.occluder_mask.copy()  # a perfect prediction (also outside the region)
    sc = score_occluded_image(result, gt, clean.faces, occ.occluder_mask, region, photo.landmarks68, True)
    assert sc["mask"]["f1"] == 1.0 and sc["mask"]["iou"] == 1.0
    assert 0.0 < sc["nme_ours"] < 0.5 and sc["missed_ours"] == 0 and sc["pose_change_deg"] >= 0.0
    result.occlusion_mask = None  # the stage ran but produced nothing (e.g. no face): an empty prediction
    assert score_occluded_image(result, gt, clean.faces, occ.occluder_mask, region, None, True)["mask"]["f1"] == 0.0
    assert score_occluded_image(result, gt, clean.faces, occ.occluder_mask, region, None, False)["mask"] is None


def test_eval_quick_end_to_end(tmp_path):
    # --no-occlusion keeps this under a minute on 2 cores (the stage's cold frames take seconds each);
    # the mask metrics are covered by test_mask_scoring_of_a_frame_result
    out = tmp_path / "eval"
    r = subprocess.run([sys.executable, "-m", "occface_ros.cli", "eval", "--quick", "--no-occlusion", "--output",
                        str(out), "--quiet"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    data = json.loads((out / "metrics.json").read_text())
    report = (out / "report.md").read_text()
    keys = {t["key"] for t in data["targets"]}
    assert {"nme_ratio_photos", "mask_f1_photos", "pose_change_photos", "jitter_reduction",
            "nme_ratio_synthetic", "mask_f1_synthetic", "pose_change_synthetic"} <= keys
    for t in data["targets"]:
        assert t["result"] in ("pass", "FAIL", "n/a") and f"**{t['result']}**" in report
    assert data["occlusion_stage"] != "on"
    assert next(t for t in data["targets"] if t["key"] == "mask_f1_photos")["result"] == "n/a"
    lenna = next(p for p in data["photos"] if p["photo"] == "lenna")
    assert 0.0 < lenna["clean"]["nme"]["ours"] < 0.15
    has_mask = lenna["clean"]["stage_fields"]["occlusion_mask"]
    for e in lenna["occluded"]:  # mask metrics exist exactly when the pipeline produces a mask
        assert (e["mask"] is not None) == has_mask
        if has_mask:
            assert 0.0 <= e["mask"]["f1"] <= 1.0
    assert data["jitter"][0]["ours_unsmoothed_px"] > 0.0
    assert data["synthetic"]["frames"] == 8
    examples = cv2.imread(str(out / "examples.png"))
    assert examples is not None and examples.shape[1] == 6 * 200 and examples.shape[0] > 24 + 4 * 200
    plots = cv2.imread(str(out / "metrics.png"))
    assert plots is not None and min(plots.shape[:2]) > 300


def test_yaw_bins_of_a_wide_sweep():
    """The yaw sweep reaches every bin, and the frontal bin is measured (the pipeline finds the face)."""
    import dataclasses

    from occface_ros.config import load_config
    from occface_ros.evaluation.progress import Progress
    from occface_ros.evaluation.reference_column import Reference
    from occface_ros.evaluation.settings import QUICK
    from occface_ros.evaluation.synthetic_eval import YAW_BINS_DEG, evaluate_yaw_bins
    from occface_ros.pipeline import FacePipeline

    settings = dataclasses.replace(QUICK, yaw_sweep_frames=12)
    pipeline = FacePipeline(load_config(overrides={"occlusion": {"enabled": False}}))
    out = evaluate_yaw_bins(pipeline, Reference(False), settings, Progress(24, False))
    assert [tuple(b["yaw_deg"]) for b in out["bins"]] == list(YAW_BINS_DEG)
    assert sum(b["frames"] for b in out["bins"]) == 12 and all(b["frames"] > 0 for b in out["bins"])
    frontal = out["bins"][0]
    assert frontal["ours_nme_clean"] is not None and 0.0 < frontal["ours_nme_clean"] < 0.2
    assert frontal["mediapipe_nme_clean"] is None  # no reference asked for
    assert dataclasses.replace(settings, yaw_sweep_frames=0).yaw_sweep_frames == 0
    assert evaluate_yaw_bins(pipeline, Reference(False), QUICK, Progress(0, False)) is None
