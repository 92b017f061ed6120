"""The occlusion ratio the occlusion stage gives the faces of the clean `train` photos: the false-
positive level that `occlusion.occnet_min_ratio` must lie above (docs/occlusion.md).

    python tools/clean_occlusion_ratio.py [--config FILE]

Train photos only (`training_photos()` refuses eval ones); prints the quantiles and the fractions
of faces at or above a few thresholds.
"""
from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

from occface_ros.config import load_config
from occface_ros.pipeline import FacePipeline
from occface_ros.training.photo_pool import training_photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None)
    args = parser.parse_args()
    pipe = FacePipeline(load_config(args.config, overrides={"occlusion": {"enabled": True}}))
    ratios = []
    for photo in tqdm(training_photos(), desc="train photos", unit="photo"):
        pipe.reset()
        ratios += [f.occlusion_ratio for f in pipe.process(photo.image_bgr, 0.0).faces]
    r = np.array(ratios)
    q = np.quantile(r, [0.5, 0.9, 0.95, 0.99, 1.0])
    print(f"{len(r)} faces; occlusion ratio median {q[0]:.3f}, 90 % {q[1]:.3f}, 95 % {q[2]:.3f}, "
          f"99 % {q[3]:.3f}, max {q[4]:.3f}")
    print(", ".join(f">= {t}: {(r >= t).mean():.3f}" for t in (0.1, 0.15, 0.2)))


if __name__ == "__main__":
    main()
