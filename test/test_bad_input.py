"""What must not reach the outputs or grow without bound: non-finite fits, failed background
jobs hidden without a log line, per-stage timing samples."""
import logging

import cv2
import numpy as np
import pytest
import torch

from occface_ros.app.samples import sample_path
from occface_ros.config import for_files, load_config


@pytest.fixture(scope="module")
def astronaut_fit_inputs():
    """The real FitStage and FaceMesh landmarks of the astronaut photo."""
    from occface_ros.pipeline import FacePipeline

    pipeline = FacePipeline(for_files(load_config()))
    image = cv2.imread(str(sample_path("skimage", "astronaut.png")))
    result = pipeline.process(image, 0.0)
    assert len(result.faces) == 1
    landmarks468 = torch.as_tensor(result.faces[0].landmarks468, dtype=torch.float32)[None]
    K = pipeline.intrinsics(result.width, result.height)
    return pipeline.fitting, landmarks468, K


def _fit(stage, landmarks468, K, init=None):
    points = stage.points(landmarks468)
    visible = torch.ones(1, stage.num_points, dtype=torch.bool)
    return stage(points, visible, K, stage.priors([stage.new_identity()]), init)


def _finite(fit):
    return all(bool(torch.isfinite(t).all()) for t in (fit.rotation, fit.translation_m, fit.expression, fit.identity))


@pytest.mark.slow
def test_non_finite_landmarks_never_give_a_non_finite_fit(astronaut_fit_inputs, caplog):
    stage, landmarks468, K = astronaut_fit_inputs
    clean = _fit(stage, landmarks468, K)
    assert _finite(clean)
    nan_all = torch.full_like(landmarks468, float("nan"))
    some = landmarks468.clone()
    some[0, ::7] = float("nan")
    # the defect: the fitter itself fails on a few NaN landmarks (the frame is lost, or worse)
    weights = stage.weights(torch.ones(1, stage.num_points, dtype=torch.bool))
    with pytest.raises(torch.linalg.LinAlgError):
        stage.fitter(stage.points(some).points, weights, K)

    # some NaN points are ignored: the pose stays that of the clean fit
    partial = _fit(stage, some, K)
    assert _finite(partial)
    angle = torch.arccos(((partial.rotation[0].T @ clean.rotation[0]).trace() - 1) / 2).clamp(-1, 1)
    assert float(angle) < np.radians(2.0)
    assert float((partial.translation_m - clean.translation_m).norm()) < 0.02

    # all NaN, warm: the previous fit is kept, and a warning says so
    with caplog.at_level(logging.WARNING, logger="occface_ros.fitting.stage"):
        warm = _fit(stage, nan_all, K, init=clean)
    assert "previous fit kept" in caplog.text
    for name in ("rotation", "translation_m", "expression", "identity"):
        assert torch.equal(getattr(warm, name), getattr(clean, name)), name
    # all NaN, cold: finite (the prior-mean shape, expression 0)
    cold = _fit(stage, nan_all, K)
    assert _finite(cold) and float(cold.expression.abs().max()) == 0.0


def test_stage_timer_keeps_a_bounded_window_and_counts_all():
    from occface_ros.core.timing import MAX_SAMPLES_PER_STAGE, StageTimer

    assert MAX_SAMPLES_PER_STAGE >= 1000
    timer = StageTimer(max_samples=100)
    for i in range(1000):  # 1000 frames: the first 900 samples (0..899 ms) leave the window
        timer.new_frame()
        with timer("fit"):
            pass
        timer.add("occlusion", float(i))
    assert len(timer.samples["occlusion"]) == len(timer.samples["fit"]) == 100
    summary = timer.summary()
    assert summary["occlusion"]["count"] == 1000 and summary["occlusion"]["median_ms"] == pytest.approx(949.5)
    assert timer.last == {"fit": pytest.approx(timer.samples["fit"][-1]), "occlusion": 999.0}
    assert "hand_detection" not in summary  # a stage that never ran is absent, not NaN
    timer.clear()
    assert timer.summary() == {} and timer.last == {}


class _FailingReasoner:
    """Stands in for OcclusionReasoner's interface: every job fails (as on a device error)."""

    def __call__(self, *args, **kwargs):
        raise RuntimeError("device lost")

    def forget(self, track_ids):
        pass

    def reset(self):
        pass


def test_background_reset_logs_the_dropped_jobs_error(caplog):
    from occface_ros.occlusion.background import BackgroundReasoner, ReasoningJob

    bg = BackgroundReasoner(_FailingReasoner(), switch_interval_s=0)
    try:
        job = ReasoningJob(torch.zeros(3, 4, 4), None, torch.eye(3), [0], torch.zeros(1, 4), torch.zeros(1, 2, 2),
                           0.0, 2.0)
        bg.submit(job)
        bg.wait(5.0)
        with caplog.at_level(logging.WARNING, logger="occface_ros.occlusion.background"):
            bg.reset()
        assert bg.idle()
        assert "RuntimeError: device lost" in caplog.text and len(caplog.records) == 1
    finally:
        bg.close()
