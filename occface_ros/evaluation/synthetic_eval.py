"""Evaluation 3, the rendered sequence with exact ground truth (synthetic.py), clean and occluded:
NME, pose error, pose change, mask IoU/F1, landmark visibility, de-occlusion PSNR/SSIM, false positives
on the clean frames."""
from __future__ import annotations

import numpy as np

from . import metrics as M
from .examples import Example, projected_meshes
from .photo_eval import score_deocclusion
from .progress import COLD, TIMING, WARM, Progress
from .reference_column import Reference
from .results import match_face, match_landmarks, predicted_mask
from .settings import EvalSettings
from .summary import deocclusion_means, mean_defined


YAW_BINS_DEG = ((0.0, 30.0), (30.0, 60.0), (60.0, 75.0))


def _run_sequence(pipeline, seq, settings: EvalSettings, progress: Progress, stage: str, independent: bool = False):
    """Clean then occluded frames through the pipeline as two videos (`independent`: each frame on
    its own, the tracks reset before it) -> (FrameResults by version, per-frame NME and pose error by
    version; None where the face was missed)."""
    per = {name: {"nme": [], "pose_error_deg": []} for name in ("clean", "occluded")}
    results = {}
    for name, frames in (("clean", seq.clean_bgr), ("occluded", seq.frames_bgr)):
        pipeline.reset()
        res_list = []
        for i, f in enumerate(frames):
            if independent:
                pipeline.reset()
            res = TIMING.process(pipeline, f, i / settings.fps, COLD if independent else WARM)
            progress.step(stage=f"{stage} {name}")
            res_list.append(res)
            face = match_face(res.faces, seq.landmarks68[i])
            per[name]["nme"].append(M.nme(face.landmarks68, seq.landmarks68[i]) if face else None)
            per[name]["pose_error_deg"].append(M.rotation_geodesic_deg(face.rotation, seq.rotation[i])
                                               if face else None)
        results[name] = res_list
    return results, per


def _reference_nme(reference: Reference, seq) -> dict | None:
    """MediaPipe's per-frame NME on the clean and occluded frames (None: no reference)."""
    n = len(seq.frames_bgr)
    ref68 = reference.landmarks68(list(seq.clean_bgr) + list(seq.frames_bgr))
    if ref68 is None:
        return None
    ref = {}
    for name, offset in (("clean", 0), ("occluded", n)):
        vals = []
        for i in range(n):
            lm = match_landmarks(ref68[offset + i], seq.landmarks68[i])
            vals.append(M.nme(lm, seq.landmarks68[i]) if lm is not None else None)
        ref[name] = vals
    return ref


def evaluate_yaw_bins(pipeline, reference: Reference, settings: EvalSettings, progress: Progress) -> dict | None:
    """A second rendered sequence sweeping yaw +-75 deg: NME by |yaw| bin, ours and MediaPipe, clean
    and occluded, each frame on its own (a pose measurement: the sweep is faster than a head turns,
    so tracking and smoothing lag would dominate a video run; MediaPipe runs in static-image mode
    too). Frames where a run missed the face are counted as missed, not in the mean."""
    if settings.yaw_sweep_frames <= 0:
        return None
    from .synthetic import make_sequence

    width, height = settings.synthetic_size
    seq = make_sequence(num_frames=settings.yaw_sweep_frames, width=width, height=height, config=pipeline.config,
                        fps=settings.fps, seed=settings.seed + 1, yaw_amplitude_deg=75.0)
    _, per = _run_sequence(pipeline, seq, settings, progress, "yaw sweep", independent=True)
    ref = _reference_nme(reference, seq)
    yaw = np.abs(seq.angles_deg[:, 0])
    bins = []
    for lo, hi in YAW_BINS_DEG:
        idx = [i for i in range(len(yaw)) if lo <= yaw[i] < hi or (hi == YAW_BINS_DEG[-1][1] and yaw[i] == hi)]
        row = {"yaw_deg": [lo, hi], "frames": len(idx)}
        for who, values in (("ours", {k: v["nme"] for k, v in per.items()}), ("mediapipe", ref)):
            for name in ("clean", "occluded"):
                vals = [values[name][i] for i in idx] if values else []
                row[f"{who}_nme_{name}"] = mean_defined(vals) if values else None
                row[f"{who}_missed_{name}"] = sum(v is None for v in vals) if values else None
        bins.append(row)
    return {"frames": len(yaw), "amplitude_deg": 75.0, "bins": bins}


def evaluate_synthetic(pipeline, reference: Reference, settings: EvalSettings, progress: Progress,
                       num_examples: int, mask_expected: bool) -> tuple[dict | None, list[Example], str | None]:
    """The rendered sequence (clean and occluded) through our pipeline (as a video) and MediaPipe."""
    try:
        from .synthetic import make_sequence
    except ImportError as exc:  # the render module is not there yet
        progress.step(2 * settings.synthetic_frames)
        return None, [], f"synthetic sequence skipped: {exc}"
    width, height = settings.synthetic_size
    # the texture comes from a fit without the occlusion stage: the same frames whatever the stage does
    texture_pipeline = pipeline if not mask_expected else None
    seq = make_sequence(num_frames=settings.synthetic_frames, width=width, height=height, config=pipeline.config,
                        fps=settings.fps, seed=settings.seed, period_frames=settings.synthetic_period,
                        pipeline=texture_pipeline)
    n = len(seq.frames_bgr)
    results, per = _run_sequence(pipeline, seq, settings, progress, "synthetic")
    pose_change, masks, visibility, ex, deocc, clean_fp = [], [], [], [], [], []
    occluded_frames = [i for i in range(n) if seq.occlusion_mask[i].any()]
    pick = ({occluded_frames[round(k)] for k in np.linspace(0, len(occluded_frames) - 1, num_examples + 2)[1:-1]}
            if occluded_frames else set())
    for i in range(n):
        c = match_face(results["clean"][i].faces, seq.landmarks68[i])
        o = match_face(results["occluded"][i].faces, seq.landmarks68[i])
        pose_change.append(M.rotation_geodesic_deg(c.rotation, o.rotation) if c and o else None)
        res = results["occluded"][i]
        pred = predicted_mask(res, mask_expected)
        masks.append(M.mask_scores(pred, seq.occlusion_mask[i], seq.face_mask[i]).as_dict()
                     if pred is not None and seq.occlusion_mask[i].any() else None)
        # the clean rendering is the reference; hidden = the bar over the rendered face
        deocc.append(score_deocclusion(res, seq.clean_bgr[i], seq.frames_bgr[i], seq.occlusion_mask[i], pred,
                                       seq.occluder_mask[i]))
        clean_pred = predicted_mask(results["clean"][i], mask_expected)
        face_px = int(seq.face_mask[i].sum())
        clean_fp.append(float((clean_pred & seq.face_mask[i]).sum() / face_px)
                        if clean_pred is not None and face_px else None)
        if mask_expected and o is not None:
            visibility.append(float(np.mean(np.asarray(o.landmarks68_visible, bool) == seq.landmarks68_visible[i])))
        if i in pick:
            ex.append(Example(f"synthetic / frame {i}", seq.frames_bgr[i], res, seq.occlusion_mask[i],
                              seq.face_mask[i], projected_meshes(pipeline, res)))
    ref = _reference_nme(reference, seq)
    occ_idx = occluded_frames

    def paired(values_occ, values_clean):
        """Occluded frames where both runs found the face: (mean clean, mean occluded, ratio)."""
        idx = [i for i in occ_idx if values_occ[i] is not None and values_clean[i] is not None]
        a, b = mean_defined(values_clean[i] for i in idx), mean_defined(values_occ[i] for i in idx)
        return a, b, ((b / a) if (a and b is not None) else None)

    ours_nme = paired(per["occluded"]["nme"], per["clean"]["nme"])
    ours_pose = paired(per["occluded"]["pose_error_deg"], per["clean"]["pose_error_deg"])
    ref_nme = paired(ref["occluded"], ref["clean"]) if ref else (None, None, None)

    summary = {
        "frames": n,
        "size": [width, height],
        "occluded_frames": len(occ_idx),
        "texture_photo": seq.texture_photo,
        "ours": {
            "nme_clean": ours_nme[0],
            "nme_occluded": ours_nme[1],
            "nme_ratio": ours_nme[2],
            "nme_clean_all_frames": mean_defined(per["clean"]["nme"]),
            "pose_error_deg_clean": ours_pose[0],
            "pose_error_deg_occluded": ours_pose[1],
            "pose_change_deg_mean": mean_defined(pose_change[i] for i in occ_idx),
            "pose_change_deg_max": max((pose_change[i] for i in occ_idx if pose_change[i] is not None), default=None),
            "mask_f1_mean": mean_defined(m["f1"] for m in masks if m),
            "mask_iou_mean": mean_defined(m["iou"] for m in masks if m),
            "landmark_visibility_accuracy": mean_defined(visibility),
            "missed_clean": sum(v is None for v in per["clean"]["nme"]),
            "missed_occluded": sum(v is None for v in per["occluded"]["nme"]),
            "deocclusion": deocclusion_means(deocc[i] for i in occ_idx),
            "clean_mask_false_positive_fraction": mean_defined(clean_fp),
        },
        "mediapipe": None if ref is None else {
            "nme_clean": ref_nme[0],
            "nme_occluded": ref_nme[1],
            "nme_ratio": ref_nme[2],
            "missed_clean": sum(v is None for v in ref["clean"]),
            "missed_occluded": sum(v is None for v in ref["occluded"]),
        },
        "per_frame": {
            "occluded_fraction_of_face": [float(seq.occlusion_mask[i].sum() / max(seq.face_mask[i].sum(), 1))
                                          for i in range(n)],
            "nme_ours_clean": per["clean"]["nme"],
            "nme_ours_occluded": per["occluded"]["nme"],
            "nme_mediapipe_clean": ref["clean"] if ref else None,
            "nme_mediapipe_occluded": ref["occluded"] if ref else None,
            "pose_change_deg": pose_change,
            "mask_f1": [m["f1"] if m else None for m in masks],
            "deocclusion": deocc,
            "clean_mask_false_positive_fraction": clean_fp,
        },
    }
    return summary, ex, None
