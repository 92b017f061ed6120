"""A PNG sample sheet of every occluder kind on one face (for `occface synth` and for eyeballing)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    scale = max(0.3, tile.shape[0] / 480)
    cv2.putText(tile, text, (3, tile.shape[0] - 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, text, (3, tile.shape[0] - 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def write_sheet(path, image_bgr: np.ndarray, landmarks68: np.ndarray, seed: int, columns: int = 4) -> Path:
    from . import OCCLUDER_KINDS, occlude

    rows = []
    for r, kind in enumerate(OCCLUDER_KINDS + ("random",)):
        tiles = []
        first_alpha = None
        for c in range(columns):
            rng = np.random.default_rng([seed, r, c])
            sample = occlude(image_bgr, landmarks68, rng, None if kind == "random" else [kind])
            first_alpha = sample.alpha if first_alpha is None else first_alpha
            text = "+".join(sample.kinds) if kind == "random" else f"{kind} {sample.variants[0]}"
            tiles.append(_label(sample.image_bgr.copy(), text))
        alpha = cv2.cvtColor(np.round(first_alpha * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        tiles.append(_label(alpha, "alpha"))
        rows.append(np.hstack(tiles))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.vstack(rows)):
        raise RuntimeError(f"cannot write {path}")
    return path
