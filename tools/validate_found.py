"""Faces found and false faces on held-out *training* data: the place to choose detection and presence
settings (the eval's photos and no-face pictures only measure).

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
Prints one line per config: occluded faces missed, clean faces missed, false faces in the photos
and in the scenes, the median NME of the occluded faces found against the teacher's landmarks of the
clean photo (the landmarks of the unoccluded face); with several configs, the NME on the occluded
faces every one of them finds.
"""
from __future__ import annotations

import argparse
import sys
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


def validation_images(framing: str = "photo", draws: int = 4, fraction: float = 0.15, seed: int = 0):
    """(images [(BGR, teacher 68-point sets, occluded, every face known)], scenes [(id, BGR)], summary)."""
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
            if draw:
                for landmarks68 in points:
                    image = occlude(image, landmarks68, rng).image_bgr
            images.append((image, points, draw > 0, known))
    summary = (f"{len(photos)} validation photos ({len(val_faces)} faces; {len(complete)} with every face found) "
               f"x {draws} occluder draws, framing {framing}, {len(scenes)} validation scenes without a face")
    return images, scenes, summary


def count_found(pipe, images, scenes) -> tuple[str, np.ndarray]:
    """(one line: occluded and clean faces missed, false faces in the photos and the scenes, the
    occluded faces' median NME against the teacher's clean landmarks; that NME per occluded face,
    NaN where missed)."""
    from occface_ros.evaluation import metrics as M
    from occface_ros.evaluation.results import match_face

    missed = {True: 0, False: 0}
    total = {True: 0, False: 0}
    false_photos = false_scenes = 0
    occluded_nme = []
    for image, truth, occluded, known in images:
        pipe.reset()
        found = list(pipe.process(image, 0.0).faces)
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
    return (f"occluded missed {missed[True]}/{total[True]}, clean missed {missed[False]}/{total[False]}, "
            f"false faces: photos {false_photos}, scenes {false_scenes}, occluded NME (found) "
            f"{np.nanmedian(occluded_nme):.3f}"), occluded_nme


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
        line, errors[config or "config/occface.yaml"] = count_found(pipe, images, scenes)
        print(f"{config or 'config/occface.yaml'}: {line}", flush=True)
        pipe.close()
    if len(errors) > 1:  # the same faces for every config: NME compares like with like
        common = np.logical_and.reduce([np.isfinite(e) for e in errors.values()])
        print(f"occluded faces every config finds: {int(common.sum())}; NME median / mean: " + ", ".join(
            f"{name} {np.median(e[common]):.3f} / {np.mean(e[common]):.3f}" for name, e in errors.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
