"""Why an occluded `occface eval` photo is missed: the detectors or the landmark stage.

    python tools/missed_faces.py [--config FILE]

For each annotated eval photo (a measurement, never training) clean and under each occluder: the
best box of the short- and full-range detectors at their configured threshold (IoU with the
ground-truth face box, score), the best score any box overlapping the face (IoU > 0.3) gets down
to 0.05, the landmark stage's presence on a crop from the ground-truth landmarks, and whether the
pipeline finds the face (within 0.6 IOD, as `occface eval`).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from occface_ros.config import load_config
from occface_ros.core.roi import FrameImage, box_iou, roi_from_points
from occface_ros.detection.ssd import SsdDetector
from occface_ros.evaluation import metrics as M
from occface_ros.evaluation.photo_eval import occluded_photos
from occface_ros.evaluation.photos import load_photos
from occface_ros.evaluation.results import match_face
from occface_ros.evaluation.settings import FULL
from occface_ros.pipeline import FacePipeline


def _best(detector: SsdDetector, image: torch.Tensor, face_box: torch.Tensor) -> tuple[float, float]:
    """(IoU, score) of the detection that overlaps the face most (0, 0 without one)."""
    det = detector(image)
    if not len(det):
        return 0.0, 0.0
    iou = box_iou(det.boxes, face_box[None])[:, 0]
    k = int(iou.argmax())
    return float(iou[k]), float(det.scores[k])


def _low_score(detector: SsdDetector, image: torch.Tensor, face_box: torch.Tensor) -> float:
    """The best score of a box overlapping the face (IoU > 0.3) down to a score of 0.05."""
    det = SsdDetector(detector.detector, 0.05, detector.nms_iou)(image)
    if not len(det):
        return 0.0
    iou = box_iou(det.boxes, face_box[None])[:, 0]
    return float(det.scores[iou > 0.3].max()) if bool((iou > 0.3).any()) else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipe = FacePipeline(load_config(args.config))
    tracker = pipe.tracker
    detectors = [("short", tracker.detector)] + ([("full", tracker.fallback_detector)]
                                                 if tracker.fallback_detector is not None else [])
    missed = 0
    print("photo / occluder | detectors: IoU/score at threshold, best score >= 0.05 on the face | "
          "presence on the ground-truth crop | pipeline")
    for photo in load_photos(FULL.photos):
        gt = photo.landmarks68
        if gt is None:
            continue
        face_box = torch.tensor(np.r_[gt.min(0), gt.max(0)], dtype=torch.float32)
        gt_roi = roi_from_points(torch.tensor(gt, dtype=torch.float32)[None], 36, 45, tracker.landmarker.roi_scale)
        versions = [photo.image_bgr] + [o.image_bgr for o in occluded_photos(photo, [gt], FULL)]
        for kind, image in zip(("clean",) + tuple(FULL.occluders), versions):
            frame = FrameImage(image)
            cells = []
            for name, detector in detectors:
                iou, score = _best(detector, frame.tensor, face_box)
                cells.append(f"{name} {iou:.2f}/{score:.2f} low {_low_score(detector, frame.tensor, face_box):.2f}")
            presence = float(tracker.landmarker(frame, gt_roi).presence[0])
            pipe.reset()
            face = match_face(pipe.process(image, 0.0).faces, gt)
            missed += face is None and kind != "clean"
            found = "MISSED" if face is None else f"found, NME {M.nme(face.landmarks68, gt):.3f}"
            print(f"{photo.name} / {kind} | {'; '.join(cells)} | {presence:.2f} | {found}", flush=True)
    print(f"occluded images missed: {missed}")


if __name__ == "__main__":
    main()
