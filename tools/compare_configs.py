"""Landmarks of several configs on the same faces: `occface eval`'s occluded photos and its synthetic
bar sequence, scored only where every config finds the face (a measurement, never a tuning target).

    .venv/bin/python tools/compare_configs.py CONFIG [CONFIG ...]

`occface eval` reports each config's NME ratio over the faces *it* finds, so a config that finds
more of the hardest faces looks worse there. Here, per config: occluded photos missed and the clean
photos' NME; then the occluded photos every config finds (their NME, and its ratio to the config's
clean NME), and the occluded frames of the synthetic sequence every config finds (NME and pose
error against the rendered truth, occluded and on the same clean frames). Choose settings on
held-out training data (tools/validate_found.py); this tells how they carry over to the eval.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def photo_errors(pipe, photos, settings) -> tuple[np.ndarray, np.ndarray]:
    """(NME per occluded photo x occluder, NaN where missed; NME per clean photo)."""
    from occface_ros.evaluation import metrics as M
    from occface_ros.evaluation.photo_eval import occluded_photos
    from occface_ros.evaluation.results import match_face

    def error(image: np.ndarray, truth68: np.ndarray) -> float:
        pipe.reset()
        face = match_face(pipe.process(image, 0.0).faces, truth68)
        return np.nan if face is None else float(M.nme(face.landmarks68, truth68))

    occluded, clean = [], []
    for photo in photos:
        clean.append(error(photo.image_bgr, photo.landmarks68))
        occluded += [error(o.image_bgr, photo.landmarks68) for o in occluded_photos(photo, [photo.landmarks68], settings)]
    return np.array(occluded), np.array(clean)


def sequence_errors(pipe, frames, seq) -> np.ndarray:
    """(F, 2) NME and pose error (deg) per frame of one run through `frames`, NaN where missed."""
    from occface_ros.evaluation import metrics as M
    from occface_ros.evaluation.results import match_face

    pipe.reset()
    out = []
    for i, frame in enumerate(frames):
        face = match_face(pipe.process(frame, i / seq.fps).faces, seq.landmarks68[i])
        out.append((np.nan, np.nan) if face is None else (float(M.nme(face.landmarks68, seq.landmarks68[i])),
                                                          float(M.rotation_geodesic_deg(face.rotation, seq.rotation[i]))))
    return np.array(out)


def main() -> int:
    from occface_ros.config import load_config
    from occface_ros.evaluation.photos import load_photos
    from occface_ros.evaluation.settings import FULL
    from occface_ros.evaluation.synthetic import make_sequence
    from occface_ros.pipeline import FacePipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+")
    args = parser.parse_args()
    torch.set_num_threads(1)
    photos = [p for p in load_photos(FULL.photos) if p.landmarks68 is not None]
    width, height = FULL.synthetic_size
    seq = make_sequence(num_frames=FULL.synthetic_frames, width=width, height=height, config=load_config(),
                        fps=FULL.fps, seed=FULL.seed, period_frames=FULL.synthetic_period)
    occluded_frames = [i for i in range(len(seq.frames_bgr)) if seq.occlusion_mask[i].any()]
    runs = {}
    for config in args.configs:
        pipe = FacePipeline(load_config(config))
        occluded, clean = photo_errors(pipe, photos, FULL)
        seq_clean, seq_occluded = sequence_errors(pipe, seq.clean_bgr, seq), sequence_errors(pipe, seq.frames_bgr, seq)
        pipe.close()
        runs[config] = (occluded, clean, seq_occluded, seq_clean)
        print(f"{config}: occluded photos missed {int(np.isnan(occluded).sum())} of {len(occluded)}, clean photo NME "
              f"{np.nanmean(clean):.4f}; occluded frames missed {int(np.isnan(seq_occluded[occluded_frames, 0]).sum())} "
              f"of {len(occluded_frames)}", flush=True)
    photo_common = np.logical_and.reduce([np.isfinite(r[0]) for r in runs.values()])
    frame_common = [i for i in occluded_frames
                    if all(np.isfinite(r[2][i, 0]) and np.isfinite(r[3][i, 0]) for r in runs.values())]
    print(f"occluded photos every config finds: {int(photo_common.sum())}; occluded frames: {len(frame_common)}")
    for config, (occluded, clean, seq_occluded, seq_clean) in runs.items():
        photo_nme = occluded[photo_common].mean()
        o, c = seq_occluded[frame_common], seq_clean[frame_common]
        print(f"{config}: photos NME {photo_nme:.4f} (/ clean {photo_nme / np.nanmean(clean):.3f}); synthetic NME "
              f"{o[:, 0].mean():.4f} / clean {c[:, 0].mean():.4f} ({o[:, 0].mean() / c[:, 0].mean():.3f}), pose error "
              f"{o[:, 1].mean():.2f} / {c[:, 1].mean():.2f} deg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
