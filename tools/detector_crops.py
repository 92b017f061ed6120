"""Where the face detectors' crops of occluded `train` faces fall, relative to the teacher's ROI.

    .venv/bin/python tools/detector_crops.py [--seed 0]

Every other teacher face of the `train` photos (a measurement on training data), clean and under two
draws of the training occluders (training/occluders): the short- and full-range detectors at score
>= 0.2, the best-scoring box overlapping the face (IoU > 0.2) turned into a landmark ROI, and its side,
and centre offset in units of the teacher's ROI side. Prints percentiles and the share of crops
outside a sample config's ROI jitter (`--scale-range`, `--shift`): positives the presence has never
been shown (config/training/landmarks_presence_wide.yaml, docs/training.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    from occface_ros import nets
    from occface_ros.core.roi import FrameImage, box_iou
    from occface_ros.detection.ssd import SsdDetector, rois_from_detections
    from occface_ros.landmarks.correspondence import landmarks68_from_mp468
    from occface_ros.training.cli import _teacher
    from occface_ros.training.occluders import occlude

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale-range", type=float, nargs=2, default=(0.8, 1.35))
    parser.add_argument("--shift", type=float, default=0.12)
    args = parser.parse_args()
    torch.set_num_threads(1)
    _, faces = _teacher(progress=True)
    detectors = [SsdDetector(nets.load_detector(name, backend="eager"), 0.2, 0.3)
                 for name in ("face_detector_short", "face_detector_full")]
    rng = np.random.default_rng(args.seed)
    crops: dict[str, list] = {"clean": [], "occluded": []}
    for face in faces[::2]:
        landmarks68 = landmarks68_from_mp468(face.landmarks468[:, :2])
        face_box = torch.tensor(np.r_[landmarks68.min(0), landmarks68.max(0)], dtype=torch.float32)[None]
        for kind in ("clean", "occluded", "occluded"):
            image = face.image_bgr if kind == "clean" else occlude(face.image_bgr, landmarks68, rng).image_bgr
            frame = FrameImage(image).tensor
            best = None
            for detector in detectors:
                det = detector(frame)
                if not len(det):
                    continue
                iou = box_iou(det.boxes, face_box)[:, 0]
                k = int(iou.argmax())
                if iou[k] > 0.2 and (best is None or float(det.scores[k]) > best[0]):
                    best = (float(det.scores[k]), rois_from_detections(det, 1.5)[k].numpy())
            if best is not None:
                roi, side = best[1], face.roi[2]
                crops[kind].append((roi[2] / side, (roi[0] - face.roi[0]) / side, (roi[1] - face.roi[1]) / side))
    lo, hi = args.scale_range
    print(f"detector crop / teacher ROI (p5 p50 p95); outside scale {lo}-{hi} or shift {args.shift}")
    for kind, rows in crops.items():
        v = np.array(rows).reshape(-1, 3)
        if not len(v):
            print(f"{kind:9s} no detections")
            continue
        scale, dx, dy = (np.percentile(v[:, i], [5, 50, 95]) for i in range(3))
        print(f"{kind:9s} {len(v):4d} crops | scale {scale.round(2)} | dx {dx.round(2)} | dy {dy.round(2)} | "
              f"scale outside {float(((v[:, 0] < lo) | (v[:, 0] > hi)).mean()):.2f} | "
              f"shift outside {float((np.abs(v[:, 1:]).max(1) > args.shift).mean()):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
