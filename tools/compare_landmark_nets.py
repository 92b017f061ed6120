"""Compare landmark networks alone (no fit, no smoothing) on the eval's rendered sequences.

    .venv/bin/python tools/compare_landmark_nets.py [WEIGHTS.pt ...] [--yaw-amplitude 25]

For each frame of `evaluation.synthetic.make_sequence` (60 frames, 640x480; the eval's bar) the
tracker (FaceMesh) finds the face's ROI on the clean frame, each network sees the same crop of the
clean and the occluded frame, and its 68 iBUG points (landmarks/correspondence.py) are scored
against the rendered ground truth (NME, outer-eye-corner normaliser), overall and per |yaw| bin.
FaceMesh (converted) is always the first row. A measurement on eval data: never a tuning target.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

YAW_BINS_DEG = ((0, 30), (30, 60), (60, 76))


def main() -> int:
    from occface_ros.config import load_config
    from occface_ros.core.roi import FrameImage, crop_rois, crop_to_image
    from occface_ros.evaluation.synthetic import make_sequence
    from occface_ros.landmarks.correspondence import landmarks68_from_mp468
    from occface_ros.landmarks.occnet import load_occnet
    from occface_ros.nets.models import build_network
    from occface_ros.pipeline import FacePipeline

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", nargs="*", help="OccLandmarkNet weights files")
    ap.add_argument("--yaw-amplitude", type=float, default=25.0, help="yaw sweep amplitude, deg (the eval: 25 and 75)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    seq = make_sequence(num_frames=60, width=640, height=480, yaw_amplitude_deg=args.yaw_amplitude,
                        seed=0 if args.yaw_amplitude == 25.0 else 1)
    pipe = FacePipeline(load_config(overrides={"occlusion": {"enabled": False}}))
    nets = {"facemesh": build_network("face_landmarks").eval()}
    nets.update({Path(w).name: load_occnet(w).eval() for w in args.weights})
    nme = {k: {"clean": np.full(60, np.nan), "occluded": np.full(60, np.nan)} for k in nets}
    for i in range(60):
        pipe.reset()
        tracked = pipe.tracker(FrameImage(seq.clean_bgr[i], pipe.device))
        if not len(tracked.track_ids):
            continue
        roi, gt = tracked.rois[:1], seq.landmarks68[i]
        iod = np.linalg.norm(gt[45] - gt[36])
        for version, frames in (("clean", seq.clean_bgr), ("occluded", seq.frames_bgr)):
            crop = crop_rois(FrameImage(frames[i], pipe.device), roi, (192, 192))
            for name, net in nets.items():
                with torch.no_grad():
                    xy = crop_to_image(net(crop)[0][..., :2], roi, (192, 192))[0].numpy()
                nme[name][version][i] = np.linalg.norm(landmarks68_from_mp468(xy) - gt, axis=1).mean() / iod
    occluded = seq.occlusion_mask.reshape(60, -1).any(1)
    yaw = np.abs(seq.angles_deg[:, 0])
    print(f"yaw sweep +-{args.yaw_amplitude:g} deg; NME clean / occluded over the {int(occluded.sum())} frames "
          "with the bar on the face; per |yaw| bin over all frames")
    for name in nets:
        c, o = nme[name]["clean"], nme[name]["occluded"]
        row = f"{name:28s} {np.nanmean(c[occluded]):.4f} / {np.nanmean(o[occluded]):.4f}"
        for lo, hi in YAW_BINS_DEG:
            m = (yaw >= lo) & (yaw < hi)
            if m.any():
                row += f" | {lo}-{min(hi, 75)} deg {np.nanmean(c[m]):.3f} / {np.nanmean(o[m]):.3f}"
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
