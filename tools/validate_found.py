"""Faces found, false faces and occlusion masks on held-out *training* data: the place to choose
detection, presence and occlusion settings (the eval's photos and no-face pictures only measure).

    .venv/bin/python tools/validate_found.py [--config FILE ...] [--draws 4] [--framing photo|camera]

For each config (default: config/occface.yaml), a fresh pipeline on:
- every `train` photo of the validation identities (the same seeded identity split as
  `occface train landmarks`: val_identity_fraction 0.15, seed 0), clean and under `--draws` draws
  of the *training* occluders over each face the teacher (FaceMesh, clean photo) found
  (training/occluders): a teacher face is found when a face lies within 0.6 IOD (`occface eval`'s
  rule); any other face is false, counted only on photos whose every face the teacher found;
- the validation share of the pool's `scenes_without_faces` (the same identity split), where every
  face is false.
`--framing camera` cuts, from each photo and draw, a 640x480 frame around one of its faces, the face
12-35 % of the frame's width (a person 0.5-2 m from a webcam: the node's use), instead of the whole
photo (small faces in group photos: the full-range model's case).
Group photos hold more faces than a config tracks at once: `detection.max_faces` is raised to 16
here, so a face is missed for what the detectors and the presence do, not for the cap.
Prints per config: occluded faces missed, clean faces missed, false faces in the photos and in the
scenes, the median NME of the occluded faces found against the teacher's landmarks of the clean
photo (the landmarks of the unoccluded face); with an occlusion stage, the mask F1 in the faces'
region against the occluders' exact coverage (alpha >= 0.5), overall and per occluder kind (an image
counts for every kind drawn on it), and the share of the clean faces' region flagged occluded; with
several configs, the NME on the occluded faces every one of them finds.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _camera_frame(image: np.ndarray, face, truth: list, rng: np.random.Generator, size=(640, 480)):
    """A (480, 640) frame around `face` (its width 12-35 % of the frame's), and the 68 points of
    `truth` that lie wholly inside it, in frame pixels."""
    import cv2

    width, height = size
    face_px = face.roi[2] / 1.5  # the landmark ROI is 1.5 x the face
    scale = rng.uniform(0.12, 0.35) * width / face_px
    centre = np.array(face.roi[:2]) + rng.uniform(-0.25, 0.25, 2) * face_px
    affine = np.array([[scale, 0.0, width / 2 - scale * centre[0]], [0.0, scale, height / 2 - scale * centre[1]]])
    frame = cv2.warpAffine(image, affine, size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT)
    points = [p @ affine[:, :2].T + affine[:, 2] for p in truth]
    inside = [p for p in points if (p >= 0).all() and (p[:, 0] < width).all() and (p[:, 1] < height).all()]
    return frame, inside


@dataclass
class ValidationImage:
    image_bgr: np.ndarray
    truth68: list  # the teacher's 68 points (clean photo) of each face in the image
    occluded: bool
    every_face_known: bool  # the teacher found every face of the photo: other faces are false
    occluder_mask: np.ndarray  # (H, W) bool, training occluder alpha >= 0.5 (the landmarks' visibility rule)
    kinds: list  # occluder kinds drawn


def validation_images(framing: str = "photo", draws: int = 4, fraction: float = 0.15, seed: int = 0):
    """([ValidationImage], scenes [(id, BGR)], summary)."""
    from occface_ros.landmarks.correspondence import landmarks68_from_mp468
    from occface_ros.training.cli import _teacher
    from occface_ros.training.common import split_faces
    from occface_ros.training.occluders import occlude
    from occface_ros.training.photo_pool import scenes_without_faces
    from occface_ros.training.samples import complete_photos, faces_by_photo, validation_identity

    _, faces = _teacher(progress=False)
    _, val_faces = split_faces(faces, fraction, seed)
    photos = faces_by_photo(val_faces)
    complete = {group[0].photo_id for group in complete_photos(val_faces)}
    scenes = [(i, s) for i, s in scenes_without_faces() if validation_identity(i, fraction, seed)]
    images = []
    for photo_faces in photos:
        truth = [landmarks68_from_mp468(f.landmarks468[:, :2]) for f in photo_faces]
        known = photo_faces[0].photo_id in complete
        for draw in range(draws + 1):  # draw 0: clean
            rng = np.random.default_rng([seed, draw, len(images)])
            image, points = photo_faces[0].image_bgr, truth
            if framing == "camera":
                image, points = _camera_frame(image, photo_faces[int(rng.integers(len(photo_faces)))], truth, rng)
            alpha, kinds = np.zeros(image.shape[:2], np.float32), []
            if draw:
                for landmarks68 in points:
                    drawn = occlude(image, landmarks68, rng)
                    image, alpha = drawn.image_bgr, np.maximum(alpha, drawn.alpha)
                    kinds += [k for k in drawn.kinds if k not in kinds]
            images.append(ValidationImage(image, points, draw > 0, known, alpha >= 0.5, kinds))
    summary = (f"{len(photos)} validation photos ({len(val_faces)} faces; {len(complete)} with every face found) "
               f"x {draws} occluder draws, framing {framing}, {len(scenes)} validation scenes without a face")
    return images, scenes, summary


def count_found(pipe, images, scenes) -> tuple[str, np.ndarray, dict]:
    """(one line: occluded and clean faces missed, false faces in the photos and the scenes, the
    occluded faces' median NME against the teacher's clean landmarks, and with an occlusion stage
    the mask F1 in the faces' region (`occface eval`'s rule: a missed face flags nothing) overall and
    per occluder kind, and the share of clean faces flagged; that NME per occluded face, NaN where
    missed; the mean mask F1 by kind, "all" for every occluded image, empty without an occlusion stage)."""
    from occface_ros.evaluation import metrics as M
    from occface_ros.evaluation.results import match_face, predicted_mask

    missed = {True: 0, False: 0}
    total = {True: 0, False: 0}
    false_photos = false_scenes = 0
    occluded_nme, mask_f1, clean_flagged = [], {}, []
    mask_expected = bool(pipe.config.get("occlusion", {}).get("enabled", False))
    for item in images:
        image, truth, occluded, known = item.image_bgr, item.truth68, item.occluded, item.every_face_known
        pipe.reset()
        result = pipe.process(image, 0.0)
        found = list(result.faces)
        pred = predicted_mask(result, mask_expected)
        if pred is not None and truth:
            region = np.logical_or.reduce([M.face_region_mask(lm, *image.shape[:2]) for lm in truth])
            if occluded:
                f1 = M.mask_scores(pred, item.occluder_mask & region, region).f1
                for kind in ["all"] + item.kinds:
                    mask_f1.setdefault(kind, []).append(f1)
            else:
                clean_flagged.append(float((pred & region).sum() / max(region.sum(), 1)))
        for landmarks68 in truth:
            total[occluded] += 1
            face = match_face(found, landmarks68)
            if face is None:
                missed[occluded] += 1
            else:
                found.remove(face)
            if occluded:
                occluded_nme.append(np.nan if face is None else float(M.nme(face.landmarks68, landmarks68)))
        false_photos += len(found) if known else 0
    for _, scene in scenes:
        pipe.reset()
        false_scenes += len(pipe.process(scene, 0.0).faces)
    occluded_nme = np.array(occluded_nme)
    line = (f"occluded missed {missed[True]}/{total[True]}, clean missed {missed[False]}/{total[False]}, "
            f"false faces: photos {false_photos}, scenes {false_scenes}, occluded NME (found) "
            f"{np.nanmedian(occluded_nme):.3f}")
    mean_f1 = {k: float(np.mean(v)) for k, v in mask_f1.items()}
    if mask_f1:
        line += (f"\n  mask F1 {mean_f1['all']:.3f}, clean face flagged {np.mean(clean_flagged):.3f}; by kind: "
                 + ", ".join(f"{k} {mean_f1[k]:.2f} ({len(v)})" for k, v in sorted(mask_f1.items()) if k != "all"))
    return line, occluded_nme, mean_f1


def main() -> int:
    from occface_ros.config import load_config
    from occface_ros.pipeline import FacePipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", nargs="*", default=[None])
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--fraction", type=float, default=0.15, help="validation identity fraction")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--framing", choices=("photo", "camera"), default="photo")
    args = parser.parse_args()
    torch.set_num_threads(1)
    images, scenes, summary = validation_images(args.framing, args.draws, args.fraction, args.seed)
    print(summary)
    errors = {}
    for config in args.config:
        pipe = FacePipeline(load_config(config, overrides={"detection": {"max_faces": 16}}))
        line, errors[config or "config/occface.yaml"], _ = count_found(pipe, images, scenes)
        print(f"{config or 'config/occface.yaml'}: {line}", flush=True)
        pipe.close()
    if len(errors) > 1:  # the same faces for every config: NME compares like with like
        common = np.logical_and.reduce([np.isfinite(e) for e in errors.values()])
        print(f"occluded faces every config finds: {int(common.sum())}; NME median / mean: " + ", ".join(
            f"{name} {np.median(e[common]):.3f} / {np.mean(e[common]):.3f}" for name, e in errors.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
