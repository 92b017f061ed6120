"""One track's smoothing: landmarks (68, 2) px, pose (rotation (3, 3) + translation (3,) m) and
expression (E,), each with a One-Euro filter (``one_euro.py``) and per-channel defaults measured by
tools/measure_smoothing.py (docs/smoothing.md). One ``TrackSmoother`` per track; ``reset()`` (or
a new object) on a new track."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .one_euro import OneEuroFilter, RotationFilter

__all__ = ["OneEuroParams", "SmoothingConfig", "TrackSmoother", "SmoothedTrack"]


@dataclass
class OneEuroParams:
    """min_cutoff (Hz) and beta may be floats or sequences broadcastable to the channel (e.g. a
    per-axis beta for the translation)."""

    min_cutoff: float | tuple[float, ...]
    beta: float | tuple[float, ...]
    d_cutoff: float = 1.0
    noise_deadzone: float = 0.0  # speeds up to this many noise stds keep the cutoff at min_cutoff


@dataclass
class SmoothingConfig:
    """Per-channel One-Euro parameters of ``TrackSmoother`` (chosen with
    tools/measure_smoothing.py at 30 FPS; see docs/smoothing.md for the numbers).

    landmarks: pixels (speed per landmark = 2D norm, px/s);
    rotation: quaternion components (speed ~ half the angular speed, rad/s);
    translation: metres (speed = 3D norm, m/s);
    expression: blendshape weights (per weight, 1/s).
    """

    landmarks: OneEuroParams = field(default_factory=lambda: OneEuroParams(0.25, 0.3, 0.5, 3.0))
    rotation: OneEuroParams = field(default_factory=lambda: OneEuroParams(0.5, 30.0, 1.0, 3.0))
    translation: OneEuroParams = field(default_factory=lambda: OneEuroParams(0.5, (40.0, 40.0, 5.0), 1.0, 3.0))
    expression: OneEuroParams = field(default_factory=lambda: OneEuroParams(0.5, 0.3, 1.0, 3.0))
    enabled: bool = True

    @classmethod
    def from_single(cls, min_cutoff: float, beta: float, d_cutoff: float, enabled: bool = True,
                    noise_deadzone: float = 0.0) -> "SmoothingConfig":
        """Map one (min_cutoff, beta, d_cutoff) triple, as in config/occface.yaml's ``smoothing``
        section, to all channels: the triple is taken as the *landmark* (pixel) parameters and the
        other channels are scaled by the same factors relative to the defaults (min_cutoff by
        min_cutoff / 0.25, beta by beta / 0.3); ``d_cutoff`` and ``noise_deadzone`` (in noise stds,
        so unit-free) are used for every channel."""
        d = cls()
        kc, kb = min_cutoff / d.landmarks.min_cutoff, beta / d.landmarks.beta

        def scale(p: OneEuroParams) -> OneEuroParams:
            mc = p.min_cutoff * kc if isinstance(p.min_cutoff, (int, float)) else tuple(v * kc for v in p.min_cutoff)
            b = p.beta * kb if isinstance(p.beta, (int, float)) else tuple(v * kb for v in p.beta)
            return OneEuroParams(mc, b, d_cutoff, noise_deadzone)

        return cls(OneEuroParams(min_cutoff, beta, d_cutoff, noise_deadzone), scale(d.rotation), scale(d.translation),
                   scale(d.expression), enabled)


@dataclass
class SmoothedTrack:
    landmarks68: torch.Tensor | None = None
    rotation: torch.Tensor | None = None
    translation_m: torch.Tensor | None = None
    expression: torch.Tensor | None = None


class TrackSmoother:
    """Smoothing state of one track. Call with a timestamp (seconds) and any subset of
    landmarks68 (68, 2), rotation (3, 3), translation_m (3,), expression (E,) (tensors or numpy;
    a leading batch axis is fine as long as it stays the same); returns a SmoothedTrack with the
    smoothed versions of what was given. Parameters can be changed at run time through
    ``configure(config)`` or the filters' attributes."""

    def __init__(self, config: SmoothingConfig | None = None):
        self.config = config or SmoothingConfig()
        c = self.config
        self.landmarks = OneEuroFilter(c.landmarks.min_cutoff, c.landmarks.beta, c.landmarks.d_cutoff, speed_dims=-1,
                                       noise_deadzone=c.landmarks.noise_deadzone)
        self.rotation = RotationFilter(c.rotation.min_cutoff, c.rotation.beta, c.rotation.d_cutoff,
                                       c.rotation.noise_deadzone)
        # per-axis speed: the depth of a monocular fit is much noisier than x/y, so a shared
        # cutoff would let the depth noise open the filter for x/y too
        self.translation = OneEuroFilter(c.translation.min_cutoff, c.translation.beta, c.translation.d_cutoff,
                                         noise_deadzone=c.translation.noise_deadzone)
        self.expression = OneEuroFilter(c.expression.min_cutoff, c.expression.beta, c.expression.d_cutoff,
                                        noise_deadzone=c.expression.noise_deadzone)

    def configure(self, config: SmoothingConfig) -> None:
        """Change parameters (state kept)."""
        self.config = config
        for name in ("landmarks", "rotation", "translation", "expression"):
            p = getattr(config, name)
            f = getattr(self, name)
            f.min_cutoff, f.beta, f.d_cutoff, f.noise_deadzone = p.min_cutoff, p.beta, p.d_cutoff, p.noise_deadzone

    def reset(self) -> None:
        for f in (self.landmarks, self.rotation, self.translation, self.expression):
            f.reset()

    def __call__(self, t: float, landmarks68=None, rotation=None, translation_m=None, expression=None) -> SmoothedTrack:
        if not self.config.enabled:
            return SmoothedTrack(landmarks68, rotation, translation_m, expression)
        return SmoothedTrack(
            landmarks68=None if landmarks68 is None else self.landmarks(landmarks68, t),
            rotation=None if rotation is None else self.rotation(rotation, t),
            translation_m=None if translation_m is None else self.translation(translation_m, t),
            expression=None if expression is None else self.expression(expression, t),
        )
