"""The occlusion stage's work window (reasoner.py) and the parser behind every CPU backend, on a real clip.

The reasoning runs in a box around the faces (and their ROIs and hands) instead of the whole
frame: these tests pin that the box changes nothing but the cost."""
import numpy as np
import pytest
import torch

from occface_ros.app.clip import clip_frames
from occface_ros.config import load_config
from occface_ros.core import labels as L
from occface_ros.occlusion.reasoner import OcclusionReasoner

pytestmark = pytest.mark.slow


def _card_frames(count: int) -> tuple[list[np.ndarray], tuple[int, int, int, int]]:
    """Clip frames with a blue card over the mouth, and the card's box."""
    from occface_ros.pipeline import FacePipeline

    frames = clip_frames(count)
    first = FacePipeline(load_config(overrides={"occlusion": {"enabled": False}})).process(frames[0], 0.0)
    mouth = first.faces[0].landmarks68[48:60]
    x0, y0 = (mouth.min(0) - 6).astype(int)
    x1, y1 = (mouth.max(0) + 6).astype(int)
    for f in frames:
        f[y0:y1, x0:x1] = (220, 140, 40)
    return frames, (x0, y0, x1, y1)


def _jobs(frames, overrides=None):
    """The reasoning jobs of the frames (inline pipeline) and the pipeline."""
    from occface_ros.pipeline import FacePipeline

    pipe = FacePipeline(load_config(overrides={"occlusion": overrides or {}}))
    jobs = []
    reason = pipe.occlusion.reason
    pipe.occlusion.reason = lambda job: jobs.append(job) or reason(job)
    for i, frame in enumerate(frames):
        pipe.process(frame, i / 30.0)
    return jobs, pipe


def _run(reasoner, job):
    result = reasoner(job.image, job.fit, job.K, job.track_ids, job.rois)
    return result, result.points_visible(job.points, job.probe_radius_px)


@pytest.mark.parametrize("max_face_px", [1000, 128])
def test_the_work_window_gives_the_maps_of_the_whole_frame(monkeypatch, max_face_px):
    frames, (x0, y0, x1, y1) = _card_frames(3)
    jobs, pipe = _jobs(frames, {"max_face_px": max_face_px})
    reasoner = pipe.occlusion.reasoner
    job = jobs[-1]
    windowed, visible = _run(reasoner, job)
    wx0, wy0, wx1, wy1 = windowed.window
    height, width = frames[0].shape[:2]
    assert (wx1 - wx0) * (wy1 - wy0) < 0.4 * height * width  # a face of the clip: most of the frame is not reasoned
    assert windowed.occlusion_mask.shape == windowed.m_gamma.shape == (height, width)
    outside = torch.ones(height, width, dtype=torch.bool)
    outside[wy0:wy1, wx0:wx1] = False
    assert not windowed.occlusion_mask[outside].any() and (windowed.m_beta[outside] == L.BACKGROUND).all()
    assert (windowed.face_index[outside] == -1).all()

    monkeypatch.setattr(OcclusionReasoner, "_window", staticmethod(lambda *a: (0, 0, a[-2], a[-1])))
    whole, visible_whole = _run(reasoner, job)
    assert whole.window == (0, 0, width, height)
    face = whole.m_beta != L.BACKGROUND
    card = torch.zeros(height, width, dtype=torch.bool)
    card[y0:y1, x0:x1] = True
    assert whole.occlusion_mask[card & face].float().mean() > 0.9  # the card is found either way
    agree_gamma = (windowed.m_gamma == whole.m_gamma)[face].float().mean()
    inter = (windowed.occlusion_mask & whole.occlusion_mask).sum()
    union = (windowed.occlusion_mask | whole.occlusion_mask).sum()
    if max_face_px == 1000:  # same pixel grid, shifted by whole pixels: the same maps
        assert agree_gamma > 0.999 and inter > 0.995 * union
        assert (visible == visible_whole).float().mean() > 0.995
    else:  # the window is resampled on its own grid (from its origin): edges move by up to a work pixel,
        # ~1.5 input pixels here, around a card ~50 x 30 pixels (measured: 0.97 of the face, IoU 0.89)
        assert agree_gamma > 0.95 and inter > 0.85 * union
        assert windowed.occlusion_mask[card & face].float().mean() > 0.9
        assert (visible == visible_whole).float().mean() > 0.95
    assert torch.allclose(windowed.occlusion_ratio, whole.occlusion_ratio, atol=0.02)


def test_points_outside_the_window_are_visible_and_inside_follow_the_mask():
    frames, (x0, y0, x1, y1) = _card_frames(2)
    jobs, pipe = _jobs(frames, {"max_face_px": 1000})
    result, _ = _run(pipe.occlusion.reasoner, jobs[-1])
    wx0, wy0, wx1, wy1 = result.window
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2  # the card's centre: occluded
    points = torch.tensor([[[cx, cy], [wx0 - 20.0, wy0 - 20.0], [-50.0, -50.0], [1e5, 1e5], [wx1 + 3.0, cy]]])
    seen = result.points_visible(points, 2.0)[0].tolist()
    assert seen == [False, True, True, True, True]
    # radius 0: a point is hidden exactly where the mask is
    ys, xs = torch.nonzero(result.occlusion_mask, as_tuple=True)
    some = torch.stack([xs[::97], ys[::97]], -1).float()[None]
    assert not result.points_visible(some, 0.0).any()


@pytest.mark.parametrize("backend", ["onnxruntime", "none"])
def test_the_shipped_parser_matches_eager_on_every_cpu_backend(backend):
    """Face, hair, complete-face and occluder probabilities of the shipped parser on real frames,
    batch 1 and 2 (two faces)."""
    from occface_ros.nets.runners import PARITY_BOUND, max_relative_error
    from occface_ros.occlusion.parser import DEFAULT_WEIGHTS, FaceParser, load_parser

    frames, _ = _card_frames(2)
    jobs, _ = _jobs(frames)
    job = jobs[-1]
    rois = torch.cat([job.rois, job.rois + torch.tensor([[15.0, -10.0, 8.0, 0.1]])])
    eager = FaceParser(load_parser(DEFAULT_WEIGHTS), backend="eager", max_batch=2)
    other = FaceParser(load_parser(DEFAULT_WEIGHTS), backend=backend, max_batch=2)
    assert other.runner.backend == backend
    for batch in (rois[:1], rois):
        want, got = eager(job.image, batch), other(job.image, batch)
        assert got.shape == want.shape == (len(batch), 4, *job.image.shape[1:])
        assert max_relative_error(got, want) < PARITY_BOUND["fp32"]
        assert float(want[:, 0].amax()) > 0.9 and float(want[:, 2].amax()) > 0.9  # a face is there to be parsed


@pytest.mark.parametrize("backend", ["onnxruntime", "none"])
def test_the_shipped_fisn_fills_the_same_face_on_every_cpu_backend(backend):
    """The de-occluded frame of the shipped FISN (the reasoner's real maps of a carded frame)."""
    from occface_ros.deocclusion.fisn import load_fisn
    from occface_ros.deocclusion.stage import FaceDeoccluder
    from occface_ros.nets.runners import PARITY_BOUND, relative_error

    frames, (x0, y0, x1, y1) = _card_frames(2)
    jobs, pipe = _jobs(frames)
    job = jobs[-1]
    result, _ = _run(pipe.occlusion.reasoner, job)
    maps = (job.image, job.rois, result.m_alpha, result.m_gamma, result.occlusion_mask)
    eager = FaceDeoccluder(load_fisn(None), backend="eager")(*maps)
    other = FaceDeoccluder(load_fisn(None), backend=backend)
    assert other.runner.backend == backend
    got = other(*maps)
    hidden = result.occlusion_mask
    assert hidden.sum() > 500 and relative_error(got[:, hidden], eager[:, hidden]) < PARITY_BOUND["fp32"]
    assert torch.equal(got[:, ~hidden], job.image[:, ~hidden])  # only the hidden pixels change
    card = torch.tensor(frames[-1][y0:y1, x0:x1, ::-1].copy()).permute(2, 0, 1).float() / 255
    assert (got[:, y0:y1, x0:x1] - card).abs().mean() > 0.1  # the blue card is painted over


def _mask_scores(pipe, photo, kind):
    """(recall, precision) of the occlusion mask inside the face region under the eval's `kind`
    occluder, and the fraction of the face region flagged on the clean photo."""
    from occface_ros.evaluation.metrics import face_region_mask
    from occface_ros.evaluation.occluders import apply_occluder

    h, w = photo.image_bgr.shape[:2]
    region = face_region_mask(photo.landmarks68, h, w)
    occluded = apply_occluder(kind, photo.image_bgr, [photo.landmarks68], seed=0)
    truth = occluded.occluder_mask & region
    pipe.reset()
    predicted = pipe.process(occluded.image_bgr, 0.0).occlusion_mask
    predicted = np.zeros((h, w), bool) if predicted is None else predicted.astype(bool) & region
    pipe.reset()
    clean = pipe.process(photo.image_bgr, 0.0).occlusion_mask
    flagged = 0.0 if clean is None else float((clean.astype(bool) & region).sum() / region.sum())
    tp = float((predicted & truth).sum())
    return tp / max(truth.sum(), 1), tp / max(predicted.sum(), 1), flagged


def test_the_parsers_complete_face_finds_more_of_the_occluder_and_less_on_a_clean_face(annotated_photos):
    """The shipped parser's complete-face head (`face_region: both`) against the fitted face alone
    (`fit`), on two photos under the eval's face mask and hand: more of the occluder inside the face
    region is found, as precisely, and less of the clean face is flagged (eval photos: this
    measures, nothing was tuned on them)."""
    from occface_ros.pipeline import FacePipeline

    photos = [p for p in annotated_photos if p.name in ("lenna", "takeo")]
    scores = {}
    for region in ("fit", "both"):
        pipe = FacePipeline(load_config(overrides={"occlusion": {"parser": {"face_region": region}}}))
        assert pipe.occlusion.reasoner.parser.net.amodal_head is not None
        scores[region] = np.array([_mask_scores(pipe, p, kind) for p in photos for kind in ("mask_blue", "hand")])
    recall, precision, flagged = (scores["both"] - scores["fit"]).mean(0)
    # measured: recall +0.07, precision +0.05, clean face flagged -0.023 (lenna 0.12 -> 0.074)
    assert recall > 0.04 and precision > 0.0 and flagged < -0.01, scores
