"""Occluder generators of the training-data engine: `occlude(image, landmarks68, rng)` draws one or
more occluders over a face and returns the occluded image and the exact per-pixel coverage.

Kinds (`OCCLUDER_KINDS`; a kind may name a variant as "kind:variant", e.g. "hand:mouth"):
hand, mask, glasses, sunglasses, scarf, hair (worn or held at the face), bar, cup, phone,
microphone, shape (objects). None of the `occface eval` generators (evaluation/occluders.py) is
used here: the eval stays a test of occluders the network has not seen drawn this way.
Docs: docs/training.md "Occluders".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import cv2
import numpy as np

from .common import Canvas, Face, face_frame, pick, planar
from .hand import PLACEMENTS as HAND_PLACEMENTS, draw_hand
from .objects import draw_bar, draw_cup, draw_microphone, draw_phone, draw_shape
from .wearables import draw_glasses, draw_hair, draw_mask, draw_scarf, draw_sunglasses

Generator = Callable[[Face, np.random.Generator, "str | None"], "tuple[Canvas, str]"]

# kind -> (generator, weight when drawn at random, layer order (worn < held < hands), chance of
# partial transparency (alpha x 0.5-0.9: thin fabric, tinted plastic, motion blur))
_KINDS: dict[str, tuple[Generator, float, int, float]] = {
    "hand": (draw_hand, 0.24, 3, 0.1),
    "mask": (draw_mask, 0.18, 0, 0.12),
    "glasses": (draw_glasses, 0.06, 0, 0.0),
    "sunglasses": (draw_sunglasses, 0.06, 0, 0.0),
    "scarf": (draw_scarf, 0.07, 0, 0.3),
    "hair": (draw_hair, 0.07, 1, 0.0),
    "bar": (draw_bar, 0.08, 2, 0.25),
    "cup": (draw_cup, 0.05, 2, 0.15),
    "phone": (draw_phone, 0.06, 2, 0.05),
    "microphone": (draw_microphone, 0.05, 2, 0.05),
    "shape": (draw_shape, 0.08, 2, 0.3),
}
OCCLUDER_KINDS: tuple[str, ...] = tuple(_KINDS)
EXCLUSIVE = ({"mask", "scarf"}, {"glasses", "sunglasses"})  # never drawn together at random
__all__ = ["OCCLUDER_KINDS", "HAND_PLACEMENTS", "OccluderSample", "occlude", "occluder_sheet"]


@dataclass
class OccluderSample:
    image_bgr: np.ndarray  # (H, W, 3) uint8, the occluded image
    alpha: np.ndarray  # (H, W) float32 in [0, 1], occluder coverage (1 = opaque occluder)
    kinds: list[str]  # the kinds drawn, in order
    variants: list[str] = field(default_factory=list)  # per kind: its variant (e.g. "mouth/flat")


def _random_kinds(rng: np.random.Generator, max_occluders: int) -> list[str]:
    n_max = max(1, int(max_occluders))
    p_count = 0.55 ** np.arange(n_max)
    count = 1 + pick(rng, range(n_max), p_count)
    chosen: list[str] = []
    for _ in range(count):
        allowed = [k for k in OCCLUDER_KINDS if k not in chosen
                   and not any(k in group and chosen_k in group for group in EXCLUSIVE for chosen_k in chosen)]
        weights = np.array([_KINDS[k][1] for k in allowed])
        chosen.append(pick(rng, allowed, weights))
    return sorted(chosen, key=lambda k: _KINDS[k][2])  # stable: worn things under held things under hands


def _face_roi(lm: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1: the face box grown by one face size on every side (occluders live there)."""
    lo, hi = lm.min(0), lm.max(0)
    size = float(max(hi - lo))
    x0, y0 = np.floor(lo - size).astype(int)
    x1, y1 = np.ceil(hi + size).astype(int) + 1
    return max(0, x0), max(0, y0), min(width, x1), min(height, y1)


def occlude(image_bgr: np.ndarray, landmarks68: np.ndarray, rng: np.random.Generator,
            kinds: Sequence[str] | None = None, max_occluders: int = 3) -> OccluderSample:
    """Draw occluders over one face (deterministic for a given rng state).

    kinds=None draws 1..max_occluders different kinds at random (hands and masks most often);
    otherwise each entry ("kind" or "kind:variant") is drawn, in that order. Pixels where the
    returned alpha is 0 are the input's, bit for bit."""
    image_bgr = np.ascontiguousarray(image_bgr)
    lm = np.asarray(landmarks68, np.float64).reshape(68, 2)
    h, w = image_bgr.shape[:2]
    names = _random_kinds(rng, max_occluders) if kinds is None else list(kinds)
    x0, y0, x1, y1 = _face_roi(lm, h, w)
    if x1 <= x0 or y1 <= y0:  # the face is nowhere near the image
        return OccluderSample(image_bgr.copy(), np.zeros((h, w), np.float32), [], [])
    region = image_bgr[y0:y1, x0:x1]
    grey = bool((region[..., 0] == region[..., 1]).all() and (region[..., 1] == region[..., 2]).all())
    result = image_bgr.copy()
    out = result[y0:y1, x0:x1]  # composited in place, one occluder window at a time
    alpha = np.zeros(region.shape[:2], np.float32)
    drawn, variants = [], []
    face = face_frame(region, lm - (x0, y0))  # skin and textures from the clean image
    for name in names:
        kind, _, variant = name.partition(":")
        if kind not in _KINDS:
            raise ValueError(f"unknown occluder kind {kind!r}; expected one of {OCCLUDER_KINDS}")
        generate, _, _, partial_p = _KINDS[kind]
        canvas, variant_drawn = generate(face, rng, variant or None)
        premult, a = canvas.premult, canvas.alpha
        (ox, oy), (sh, sw) = canvas.origin, a.shape
        if rng.random() < partial_p:
            k = np.float32(rng.uniform(0.5, 0.9))
            premult, a = premult * k, a * k
        if rng.random() < 0.5:  # soft edges, as a camera's blur leaves them
            sigma = rng.uniform(0.3, 0.9)
            k = (5, 5) if sigma > 0.6 else (3, 3)
            blurred = cv2.GaussianBlur(cv2.merge([*premult, a]), k, sigma)
            premult, a = np.stack(cv2.split(blurred)[:3]), blurred[..., 3]
        if grey:  # a colour occluder on a grey photo would be found by its chroma alone
            premult = np.broadcast_to(0.114 * premult[0] + 0.587 * premult[1] + 0.299 * premult[2], premult.shape)
        a = np.clip(a, 0.0, 1.0)
        win = planar(out[oy:oy + sh, ox:ox + sw])
        win *= 1.0 - a
        win += premult
        out[oy:oy + sh, ox:ox + sw] = cv2.merge(list(np.clip(np.rint(win), 0, 255).astype(np.uint8)))
        alpha[oy:oy + sh, ox:ox + sw] += a * (1.0 - alpha[oy:oy + sh, ox:ox + sw])
        drawn.append(kind)
        variants.append(variant_drawn)
    full_alpha = np.zeros((h, w), np.float32)
    full_alpha[y0:y1, x0:x1] = np.clip(alpha, 0.0, 1.0)
    return OccluderSample(result, full_alpha, drawn, variants)


def occluder_sheet(path, image_bgr: np.ndarray, landmarks68: np.ndarray, seed: int, columns: int = 4) -> None:
    """Write a PNG grid: one row per kind (plus a row of random several-per-face draws), `columns`
    seeds each, and the coverage alpha of the row's first sample in the last column."""
    from .sheet import write_sheet

    write_sheet(path, image_bgr, landmarks68, seed, columns)
