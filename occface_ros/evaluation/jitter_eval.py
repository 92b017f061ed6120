"""Evaluation 2, static-head jitter: a photo + per-frame sensor noise, landmark jitter with and without smoothing."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from . import metrics as M
from .occluders import occluder_seed
from .photos import load_photos
from .progress import TIMING, WARM, Progress
from .reference_column import Reference
from .results import match_face
from .settings import EvalSettings


def noisy_still_frames(image_bgr: np.ndarray, count: int, sigma: float, seed: int) -> list[np.ndarray]:
    """`count` copies of a photo with independent Gaussian sensor noise (grey levels), deterministic."""
    rng = np.random.default_rng(seed)
    base = image_bgr.astype(np.float32)
    return [np.clip(base + rng.normal(0.0, sigma, base.shape), 0, 255).astype(np.uint8) for _ in range(count)]


def _track(pipeline, frames, reference68, fps, progress, stage):
    pipeline.reset()
    lms = np.full((len(frames), 68, 2), np.nan)
    rots = np.full((len(frames), 3, 3), np.nan)
    for i, f in enumerate(frames):
        res = TIMING.process(pipeline, f, i / fps, WARM)
        progress.step(stage=stage)
        face = match_face(res.faces, reference68)
        if face is not None:
            lms[i], rots[i] = face.landmarks68, face.rotation
    return lms, rots


@contextmanager
def smoothing_disabled(pipeline):
    """`config["smoothing"]["enabled"] = False` for the tracks created inside (FacePipeline reads the
    smoothing config when it creates a track); tracks are reset on entry and exit."""
    sm = pipeline.config["smoothing"]
    saved = sm["enabled"]
    pipeline.reset()
    sm["enabled"] = False
    try:
        yield pipeline
    finally:
        sm["enabled"] = saved
        pipeline.reset()


def evaluate_jitter(pipeline, reference: Reference, settings: EvalSettings, progress: Progress) -> list[dict]:
    """Landmark std of a still head (photo + sensor noise): smoothed vs unsmoothed vs MediaPipe raw."""
    out = []
    skip = settings.jitter_warmup
    for photo in load_photos(settings.jitter_photos):
        pipeline.reset()
        first = pipeline.process(photo.image_bgr, 0.0)
        ref_lm = photo.landmarks68 if photo.landmarks68 is not None else (
            np.asarray(first.faces[0].landmarks68) if first.faces else None)
        if ref_lm is None:
            continue
        frames = noisy_still_frames(photo.image_bgr, settings.jitter_frames, settings.jitter_noise_sigma,
                                    occluder_seed(photo.name, "jitter", settings.seed))
        smooth_lm, smooth_rot = _track(pipeline, frames, ref_lm, settings.fps, progress, f"jitter {photo.name}")
        with smoothing_disabled(pipeline):
            raw_lm, raw_rot = _track(pipeline, frames, ref_lm, settings.fps, progress, f"jitter {photo.name} raw")
        ref68 = reference.landmarks68(frames)
        smoothed = M.landmark_jitter_px(smooth_lm[skip:])
        raw = M.landmark_jitter_px(raw_lm[skip:])
        out.append({
            "photo": photo.name,
            "frames": settings.jitter_frames,
            "frames_used": settings.jitter_frames - skip,
            "noise_sigma": settings.jitter_noise_sigma,
            "interocular_px": float(M.interocular_px(ref_lm)),
            "ours_smoothed_px": smoothed,
            "ours_unsmoothed_px": raw,
            "reduction": M.safe_ratio(raw, smoothed),
            "mediapipe_px": M.landmark_jitter_px(ref68[skip:]) if ref68 is not None else None,
            "ours_smoothed_shake_px": M.frame_to_frame_jitter_px(smooth_lm[skip:]),
            "ours_unsmoothed_shake_px": M.frame_to_frame_jitter_px(raw_lm[skip:]),
            "shake_reduction": M.safe_ratio(M.frame_to_frame_jitter_px(raw_lm[skip:]),
                                            M.frame_to_frame_jitter_px(smooth_lm[skip:])),
            "ours_smoothed_rotation_deg": M.rotation_jitter_deg(smooth_rot[skip:]),
            "ours_unsmoothed_rotation_deg": M.rotation_jitter_deg(raw_rot[skip:]),
        })
    return out
