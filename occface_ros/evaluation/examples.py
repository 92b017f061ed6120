"""examples.png: one row per example image (input, visible parsing, M_gamma, occlusion mask, mesh overlay,
de-occluded) and a legend of the parsing colours."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np


@dataclass
class Example:
    """What examples.png shows for one image."""

    title: str
    image_bgr: np.ndarray
    result: object  # FrameResult
    gt_mask: np.ndarray | None
    region: np.ndarray
    meshes: list = field(default_factory=list)  # projected (V, 2) meshes


def crop_box(region: np.ndarray, margin: float = 0.3):
    ys, xs = np.nonzero(region)
    if len(xs) == 0:
        h, w = region.shape
        return 0, 0, w, h
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    h, w = region.shape
    bx0, by0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    return bx0, by0, int(min(w, cx + side / 2)), int(min(h, cy + side / 2))


def projected_meshes(pipeline, result) -> list:
    return [pipeline.project(pipeline.mesh_vertices(f), result.width, result.height) for f in result.faces]


def _label_tile(tile: np.ndarray, text: str) -> np.ndarray:
    cv2.putText(tile, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def _na_tile(size: int, text: str = "n/a") -> np.ndarray:
    tile = np.full((size, size, 3), 40, np.uint8)
    cv2.putText(tile, text, (size // 2 - 18, size // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (200, 200, 200), 1,
                cv2.LINE_AA)
    return tile


def parsing_colours(parsing: np.ndarray) -> np.ndarray:
    """(H, W) uint8 labels -> (H, W, 3) BGR with labels.LABEL_COLOURS_BGR."""
    from ..core.labels import LABEL_COLOURS_BGR

    lut = np.zeros((256, 3), np.uint8)
    for label, colour in LABEL_COLOURS_BGR.items():
        lut[label] = colour
    return lut[np.asarray(parsing, dtype=np.uint8)]


PANELS = ("input", "visible parsing\n(M_gamma minus mask)", "M_gamma\n(complete parsing)", "occlusion mask",
          "mesh overlay", "de-occluded")
"""Column titles of examples.png (FrameResult has no M_alpha: the visible parsing is M_gamma with the
occlusion mask's pixels labelled OCCLUDER)."""


def visible_parsing(parsing: np.ndarray, occlusion_mask: np.ndarray | None) -> np.ndarray:
    """M_gamma with the occluded pixels set to OCCLUDER: what the image shows of the face."""
    from ..core.labels import OCCLUDER

    visible = np.array(parsing, dtype=np.uint8, copy=True)
    if occlusion_mask is not None:
        visible[np.asarray(occlusion_mask, bool)] = OCCLUDER
    return visible


def label_legend(width: int) -> np.ndarray:
    """A strip of the parsing colours with their label names."""
    from ..core.labels import LABEL_COLOURS_BGR, LABELS

    per_row = max(1, width // 100)
    rows = -(-len(LABELS) // per_row)
    strip = np.full((rows * 20 + 4, width, 3), 255, np.uint8)
    for k, (label, name) in enumerate(LABELS.items()):
        x, y = (k % per_row) * 100 + 6, (k // per_row) * 20 + 4
        cv2.rectangle(strip, (x, y), (x + 14, y + 14), LABEL_COLOURS_BGR[label], -1)
        cv2.rectangle(strip, (x, y), (x + 14, y + 14), (128, 128, 128), 1)
        cv2.putText(strip, name, (x + 18, y + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def example_row(ex: Example, triangles: np.ndarray, size: int = 200) -> np.ndarray:
    """input | visible parsing | M_gamma | occlusion mask (pred red, GT outline green) | mesh overlay | de-occluded."""
    from ..app.output import draw_overlay

    x0, y0, x1, y1 = crop_box(ex.region)

    def crop(img):
        c = img[y0:y1, x0:x1]
        return cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA if c.shape[0] > size else cv2.INTER_LINEAR)

    res = ex.result
    tiles = [_label_tile(crop(ex.image_bgr), ex.title)]
    pred = getattr(res, "occlusion_mask", None)
    parsing = getattr(res, "parsing", None)
    if parsing is not None:
        tiles.append(_label_tile(crop(parsing_colours(visible_parsing(parsing, pred))), "visible parsing"))
        tiles.append(_label_tile(crop(parsing_colours(parsing)), "M_gamma"))
    else:
        tiles += [_na_tile(size), _na_tile(size)]
    vis = (ex.image_bgr.astype(np.float32) * 0.45).astype(np.uint8)
    if pred is not None:
        vis[np.asarray(pred, bool)] = (0.5 * vis[np.asarray(pred, bool)] + np.array([0, 0, 140])).astype(np.uint8)
    if ex.gt_mask is not None:
        contours, _ = cv2.findContours(ex.gt_mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(vis, contours, -1, (0, 255, 0), max(1, (y1 - y0) // size))
    tile = crop(vis)
    tiles.append(_label_tile(tile, "mask" if pred is not None else "mask n/a (GT outline)"))
    tiles.append(_label_tile(crop(draw_overlay(ex.image_bgr, res.faces, ex.meshes, triangles)), "mesh"))
    deocc = getattr(res, "deoccluded_bgr", None)
    tiles.append(_label_tile(crop(deocc), "de-occluded") if deocc is not None else _na_tile(size))
    return np.hstack(tiles)


def write_examples(path: Path, examples: list[Example], triangles: np.ndarray, size: int = 200) -> None:
    """examples.png: the column titles, one row per example, the parsing-colour legend."""
    width = len(PANELS) * size
    header = np.full((40, width, 3), 255, np.uint8)
    for i, name in enumerate(PANELS):
        for j, line in enumerate(name.split("\n")):
            cv2.putText(header, line, (i * size + 6, 16 + 18 * j), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                        cv2.LINE_AA)
    rows = [header] + [example_row(ex, triangles, size) for ex in examples]
    if len(rows) == 1:
        rows.append(np.hstack([_na_tile(size)] * len(PANELS)))
    rows.append(label_legend(width))
    ok, buf = cv2.imencode(".png", np.vstack(rows))
    if not ok:
        raise RuntimeError("cannot encode examples.png")
    path.write_bytes(buf.tobytes())
