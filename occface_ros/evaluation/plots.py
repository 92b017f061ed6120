"""metrics.png: bar plots of the evaluation figures (matplotlib, Agg)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .settings import TARGETS


def write_metric_plots(path: Path, data: dict) -> None:
    """Bar plots (matplotlib, Agg): NME per photo, mask F1/IoU and pose change per occluder, jitter, synthetic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def nz(v):
        return np.nan if v is None else v

    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5))
    ax = axes[0, 0]
    gt_photos = [p for p in data["photos"] if p["ground_truth_landmarks"]]
    x = np.arange(len(gt_photos))
    for k, (method, key, colour) in enumerate((("ours", "nme_clean", "#9ecae1"), ("ours", "nme_occluded_mean", "#3182bd"),
                                               ("mediapipe", "nme_clean", "#fdae6b"),
                                               ("mediapipe", "nme_occluded_mean", "#e6550d"))):
        vals = [nz(p["summary"][method][key]) for p in gt_photos]
        ax.bar(x + (k - 1.5) * 0.2, vals, 0.2, color=colour,
               label=f"{'ours' if method == 'ours' else 'MediaPipe'} {'clean' if key == 'nme_clean' else 'occluded'}")
    ax.set_xticks(x, [p["photo"] for p in gt_photos])
    ax.set_title("NME per photo (outer-eye-corner normalised)")
    ax.legend(fontsize=8)

    occ = data["occluders"]
    x = np.arange(len(occ))
    ax = axes[0, 1]
    ax.bar(x - 0.2, [nz(r["mask_f1"]) for r in occ], 0.4, label="F1", color="#31a354")
    ax.bar(x + 0.2, [nz(r["mask_iou"]) for r in occ], 0.4, label="IoU", color="#a1d99b")
    ax.axhline(TARGETS["mask_f1"], color="k", ls="--", lw=1, label="F1 target")
    ax.set_ylim(0, 1)
    ax.set_xticks(x, [r["occluder"] for r in occ], rotation=30, fontsize=8)
    ax.set_title("Occlusion mask per occluder" + ("" if any(r["mask_f1"] is not None for r in occ) else " (n/a)"))
    ax.legend(fontsize=8)

    ax = axes[0, 2]
    ax.bar(x - 0.2, [nz(r["nme_ratio_ours"]) for r in occ], 0.4, label="ours", color="#3182bd")
    ax.bar(x + 0.2, [nz(r["nme_ratio_mediapipe"]) for r in occ], 0.4, label="MediaPipe", color="#e6550d")
    ax.axhline(TARGETS["nme_ratio"], color="k", ls="--", lw=1, label="target")
    ax.set_xticks(x, [r["occluder"] for r in occ], rotation=30, fontsize=8)
    ax.set_title("NME occluded / clean per occluder")
    ax.legend(fontsize=8)

    ax = axes[1, 0]
    ax.bar(x, [nz(r["pose_change_deg"]) for r in occ], 0.6, color="#756bb1")
    ax.axhline(TARGETS["pose_change_deg"], color="k", ls="--", lw=1, label="target")
    ax.set_xticks(x, [r["occluder"] for r in occ], rotation=30, fontsize=8)
    ax.set_title("Pose change clean -> occluded (deg), ours")
    ax.legend(fontsize=8)

    ax = axes[1, 1]
    jit = data["jitter"]
    x = np.arange(len(jit))
    ax.bar(x - 0.25, [nz(j["ours_smoothed_px"]) for j in jit], 0.25, label="ours smoothed", color="#3182bd")
    ax.bar(x, [nz(j["ours_unsmoothed_px"]) for j in jit], 0.25, label="ours unsmoothed", color="#9ecae1")
    ax.bar(x + 0.25, [nz(j["mediapipe_px"]) for j in jit], 0.25, label="MediaPipe raw", color="#e6550d")
    ax.set_xticks(x, [j["photo"] for j in jit])
    ax.set_title("Static-head landmark jitter (px)")
    ax.legend(fontsize=8)

    ax = axes[1, 2]
    s = data["synthetic"]
    if s is not None:
        pf = s["per_frame"]
        f = np.arange(s["frames"])
        ax.plot(f, [nz(v) for v in pf["nme_ours_clean"]], color="#9ecae1", label="NME ours clean")
        ax.plot(f, [nz(v) for v in pf["nme_ours_occluded"]], color="#3182bd", label="NME ours occluded")
        if pf["nme_mediapipe_occluded"] is not None:
            ax.plot(f, [nz(v) for v in pf["nme_mediapipe_occluded"]], color="#e6550d", label="NME MP occluded")
        ax.fill_between(f, 0, np.asarray(pf["occluded_fraction_of_face"]) * 0.2, color="0.85",
                        label="face occluded (x0.2)")
        ax.set_xlabel("frame")
        ax.legend(fontsize=8)
    ax.set_title("Synthetic sequence" + ("" if s is not None else " (n/a)"))
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
