"""Writing the figures: DIR/report.md (Markdown tables), metrics.json's JSON-safe values, the target lines."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from .summary import (
    CLEAN_FALSE_POSITIVE_FRACTION,
    DEOCCLUSION_OFF_HINT,
    DEOCCLUSION_PSNR_GAIN_DB,
    DEOCCLUSION_SSIM_GAIN,
    clean_false_positives,
    photo_deocclusion,
)

DEOCCLUSION_HEADER = ("| occluder | images | PSNR ours (dB) | PSNR cv2.inpaint same mask | PSNR cv2.inpaint GT mask | "
                      "PSNR ours - inpaint same mask (dB) | SSIM ours | SSIM cv2.inpaint same mask | "
                      "SSIM cv2.inpaint GT mask |")
FALSE_POSITIVE_HEADER = "| clean image | face region flagged occluded | target | result |"


def fmt(value, digits=3, suffix=""):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{value}{suffix}"
    return f"{value:.{digits}f}{suffix}"


def json_clean(obj):
    if isinstance(obj, dict):
        return {str(k): json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return json_clean(obj.tolist())
    return obj


def write_report(path: Path, data: dict) -> None:
    """DIR/report.md from the metrics dict."""
    L = []
    L.append("# Occlusion evaluation report\n")
    L.append(f"Generated {data['generated']} by `occface eval{' --quick' if data['quick'] else ''}` "
             f"(protocol: docs/evaluation.md). Device `{data['device']}`; occlusion stage: "
             f"{data['occlusion_stage']}. Reference: {data['reference']['name']}"
             f"{'' if data['reference']['enabled'] else ' — ' + data['reference']['note']}.\n")
    L.append("## Targets\n")
    L.append("| metric | target | ours | MediaPipe | result |")
    L.append("|---|---|---|---|---|")
    for t in data["targets"]:
        note = f" ({t['note']})" if t["note"] else ""
        L.append(f"| {t['metric']}{note} | {t['target']} | {fmt(t['ours'])} | {fmt(t['mediapipe'])} | "
                 f"**{t['result']}** |")
    L.append("")
    m = data["missed"]
    L.append(f"Faces missed (not found, or farther than 0.6 IOD from the ground truth) on the occluded images: "
             f"photos with ground truth ours {m['photos_gt']['ours']}/{m['photos_gt']['images']}, MediaPipe "
             f"{fmt(m['photos_gt']['mediapipe'])}/{m['photos_gt']['images']}; all photos ours "
             f"{m['photos_all']['ours']}/{m['photos_all']['faces']}; synthetic ours {fmt(m['synthetic']['ours'])}, "
             f"MediaPipe {fmt(m['synthetic']['mediapipe'])} of {fmt(m['synthetic']['frames'])} frames. "
             "Missed faces are left out of the NME and pose means.\n")
    sc = data.get("scenes_without_faces") or {}
    if sc.get("pictures"):
        where = ", ".join(f"{k} {v}" for k, v in sc["per_picture"].items() if v) or "none"
        L.append(f"False faces: {sc['faces']} face(s) reported on {sc['pictures']} pictures without a human face "
                 f"(scikit-image's data, a cat among them; each from a fresh start): {where}.\n")
    L.append("## Photos (NME: outer-eye-corner normalised; mean over the occluders)\n")
    L.append("| photo | GT | faces | NME clean ours | NME occl. ours | ratio ours | NME clean MP | NME occl. MP "
             "| ratio MP | missed occl. ours / MP | mask F1 | mask IoU | clean false-pos. | pose change mean / max (deg) |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for p in data["photos"]:
        o, r = p["summary"]["ours"], p["summary"]["mediapipe"]
        L.append(f"| {p['photo']} | {'yes' if p['ground_truth_landmarks'] else 'no'} | {p['faces']} | "
                 f"{fmt(o['nme_clean'], 4)} | {fmt(o['nme_occluded_mean'], 4)} | {fmt(o['nme_ratio'], 2)} | "
                 f"{fmt(r['nme_clean'], 4)} | {fmt(r['nme_occluded_mean'], 4)} | {fmt(r['nme_ratio'], 2)} | "
                 f"{fmt(o['missed_occluded'])} / {fmt(r['missed_occluded'])} | {fmt(o['mask_f1_mean'])} | "
                 f"{fmt(o['mask_iou_mean'])} | {fmt(p['clean']['mask_false_positive_fraction'])} | "
                 f"{fmt(o['pose_change_deg_mean'], 2)} / {fmt(o['pose_change_deg_max'], 2)} |")
    L.append("")
    L.append("## Occluders (over all photos)\n")
    L.append("| occluder | images | face region covered | NME ratio ours | NME ratio MP | mask F1 | mask IoU | "
             "pose change (deg) | landmark visibility acc. | missed ours | ms / image (cold) |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in data["occluders"]:
        L.append(f"| {row['occluder']} | {row['images']} | {fmt(row['face_region_occluded_fraction'], 2)} | "
                 f"{fmt(row['nme_ratio_ours'], 2)} | {fmt(row['nme_ratio_mediapipe'], 2)} | {fmt(row['mask_f1'])} | "
                 f"{fmt(row['mask_iou'])} | {fmt(row['pose_change_deg'], 2)} | "
                 f"{fmt(row['landmark_visibility_accuracy'])} | {row['missed_ours']} | "
                 f"{fmt(row['process_ms_mean'], 0)} |")
    L.append("")
    L += deocclusion_lines(data)
    L += false_positive_lines(data)
    L.append("## Static-head jitter (photo + Gaussian sensor noise per frame, 30 fps)\n")
    L.append("Jitter: RMS distance of each landmark to its mean position (the target's metric). Shake: RMS "
             "displacement between consecutive frames (what a viewer sees; slow drift does not count).\n")
    L.append("| photo | frames used | noise sigma | IOD px | ours smoothed px | ours unsmoothed px | reduction | "
             "MP raw px | shake smoothed / unsmoothed px (reduction) | rotation smoothed / unsmoothed (deg) |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for j in data["jitter"]:
        L.append(f"| {j['photo']} | {j['frames_used']} | {j['noise_sigma']:g} | {j['interocular_px']:.0f} | "
                 f"{fmt(j['ours_smoothed_px'])} | {fmt(j['ours_unsmoothed_px'])} | {fmt(j['reduction'], 2)} | "
                 f"{fmt(j['mediapipe_px'])} | {fmt(j['ours_smoothed_shake_px'])} / "
                 f"{fmt(j['ours_unsmoothed_shake_px'])} ({fmt(j['shake_reduction'], 2)}) | "
                 f"{fmt(j['ours_smoothed_rotation_deg'])} / {fmt(j['ours_unsmoothed_rotation_deg'])} |")
    L.append("")
    s = data["synthetic"]
    L.append("## Synthetic sequence (exact ground truth)\n")
    if s is None:
        L.append(f"n/a: {data['synthetic_note']}\n")
    else:
        o, r = s["ours"], s["mediapipe"] or {}
        L.append(f"{s['frames']} frames {s['size'][0]}x{s['size'][1]}, ICT face textured from `{s['texture_photo']}`, "
                 f"yaw/pitch/roll sweeps and talking, a bar sliding across; {s['occluded_frames']} frames have the "
                 "bar over the face (the figures below are over those frames where the run found the face in both "
                 "versions).\n")
        L.append("| | ours clean | ours occluded | ratio | MP clean | MP occluded | MP ratio |")
        L.append("|---|---|---|---|---|---|---|")
        L.append(f"| NME | {fmt(o['nme_clean'], 4)} | {fmt(o['nme_occluded'], 4)} | {fmt(o['nme_ratio'], 2)} | "
                 f"{fmt(r.get('nme_clean'), 4)} | {fmt(r.get('nme_occluded'), 4)} | {fmt(r.get('nme_ratio'), 2)} |")
        L.append(f"| pose error vs GT (deg) | {fmt(o['pose_error_deg_clean'], 2)} | "
                 f"{fmt(o['pose_error_deg_occluded'], 2)} | | n/a | n/a | |")
        L.append(f"| missed frames | {o['missed_clean']} | {o['missed_occluded']} | | {fmt(r.get('missed_clean'))} | "
                 f"{fmt(r.get('missed_occluded'))} | |")
        L.append("")
        L.append(f"Pose change clean -> occluded: mean {fmt(o['pose_change_deg_mean'], 2)} deg, max "
                 f"{fmt(o['pose_change_deg_max'], 2)} deg. Mask F1 {fmt(o['mask_f1_mean'])}, IoU "
                 f"{fmt(o['mask_iou_mean'])}; landmark visibility accuracy {fmt(o['landmark_visibility_accuracy'])}."
                 "\n")
    yb = data.get("synthetic_yaw_bins")
    if yb:
        L.append(f"### NME by yaw ({yb['frames']} rendered frames, yaw sweep +-{yb['amplitude_deg']:.0f} deg)\n")
        L.append("| abs(yaw) deg | frames | ours clean | ours occluded | MP clean | MP occluded | missed ours / MP |")
        L.append("|---|---|---|---|---|---|---|")
        for b in yb["bins"]:
            missed = (f"{fmt(b['ours_missed_clean'])}+{fmt(b['ours_missed_occluded'])} / "
                      f"{fmt(b['mediapipe_missed_clean'])}+{fmt(b['mediapipe_missed_occluded'])}")
            L.append(f"| {b['yaw_deg'][0]:.0f}-{b['yaw_deg'][1]:.0f} | {b['frames']} | {fmt(b['ours_nme_clean'], 4)} | "
                     f"{fmt(b['ours_nme_occluded'], 4)} | {fmt(b['mediapipe_nme_clean'], 4)} | "
                     f"{fmt(b['mediapipe_nme_occluded'], 4)} | {missed} |")
        L.append("")
    if data.get("timing"):
        L.append("## Time per frame (ms, mean; this machine, see `device`)\n")
        stages = sorted({k for b in data["timing"].values() for k in b["mean_ms"]},
                        key=lambda k: (k == "total (wall)", k))
        L.append("| frames | n | " + " | ".join(stages) + " |")
        L.append("|---|---|" + "---|" * len(stages))
        for bucket, b in data["timing"].items():
            L.append(f"| {bucket} | {b['frames']} | " + " | ".join(fmt(b["mean_ms"].get(k), 0) for k in stages) + " |")
        L.append("")
    L.append("## Notes\n")
    for note in data["notes"]:
        L.append(f"- {note}")
    L.append("- MediaPipe's FaceMesh has no occlusion mask and no head pose: those columns are n/a for it.")
    L.append("- `n/a` for ours: the pipeline does not produce that output yet (see `stage_fields` in metrics.json), "
             "or no face was found.")
    L.append("\n![examples](examples.png)\n\n![metrics](metrics.png)\n")
    path.write_text("\n".join(L))


def _target(data: dict, key: str) -> dict | None:
    return next((t for t in data["targets"] if t["key"] == key), None)


def _deocclusion_row(label: str, d: dict) -> str:
    o, a, g = d["ours"], d["cv2_inpaint"], d["cv2_inpaint_gt_mask"]
    return (f"| {label} | {d['images']} | {fmt(o['psnr_db'], 2)} | {fmt(a['psnr_db'], 2)} | {fmt(g['psnr_db'], 2)} | "
            f"{fmt(d['psnr_gain_db'], 2)} | {fmt(o['ssim'])} | {fmt(a['ssim'])} | {fmt(g['ssim'])} |")


def deocclusion_lines(data: dict) -> list[str]:
    """The "De-occlusion (hidden face pixels)" section: per occluder, all photos, the synthetic bar; the target."""
    L = ["## De-occlusion (hidden face pixels)\n"]
    overall = photo_deocclusion(data["photos"])
    synthetic = (data["synthetic"] or {}).get("ours", {}).get("deocclusion")
    if overall is None and synthetic is None:
        L.append("n/a: the pipeline gave no de-occluded image (`FrameResult.deoccluded_bgr`); "
                 f"{DEOCCLUSION_OFF_HINT}.\n")
        return L
    L.append("PSNR and SSIM against the clean image on the face pixels the occluder hides (ground truth), for our "
             "filling, cv2.inpaint (Telea) on the mask the pipeline predicted (the same pixels filled) and on the "
             "ground-truth occluder mask. Images the pipeline did not de-occlude are left out; each figure is a mean "
             "over the images where all three are finite (a perfect filling's PSNR is inf).\n")
    L.append(DEOCCLUSION_HEADER)
    L.append("|---|---|---|---|---|---|---|---|---|")
    for row in data["occluders"]:
        if row.get("deocclusion"):
            L.append(_deocclusion_row(row["occluder"], row["deocclusion"]))
    if overall is not None:
        L.append(_deocclusion_row("**all photos**", overall))
    if synthetic is not None:
        L.append(_deocclusion_row("synthetic (bar, occluded frames)", synthetic))
    L.append("")
    psnr, ssim = _target(data, "deocclusion_psnr_gain_photos"), _target(data, "deocclusion_ssim_gain_photos")
    if psnr is not None and ssim is not None:
        L.append(f"Target (photos): PSNR >= cv2.inpaint + {DEOCCLUSION_PSNR_GAIN_DB:g} dB, SSIM higher "
                 f"(gain > {DEOCCLUSION_SSIM_GAIN:g}): PSNR gain {fmt(psnr['ours'], 2)} dB **{psnr['result']}**, "
                 f"SSIM gain {fmt(ssim['ours'])} **{ssim['result']}**.\n")
    return L


def false_positive_lines(data: dict) -> list[str]:
    """The "False positives on clean images" section: the face region flagged occluded per clean photo."""
    L = ["## False positives on clean images\n"]
    fp = clean_false_positives(data["photos"])
    synthetic = (data["synthetic"] or {}).get("ours", {}).get("clean_mask_false_positive_fraction")
    if fp["mean"] is None and synthetic is None:
        L.append("n/a: no occlusion mask (the occlusion stage is off or absent: run without `--no-occlusion`).\n")
        return L
    L.append("Fraction of the face region the pipeline flags occluded on an image with nothing over the face.\n")
    L.append(FALSE_POSITIVE_HEADER)
    L.append("|---|---|---|---|")
    target = f"<= {CLEAN_FALSE_POSITIVE_FRACTION:g}"
    for name, value in fp["per_photo"].items():
        L.append(f"| {name} | {fmt(value)} | | |")
    t = _target(data, "mask_false_positive_photos")
    L.append(f"| **mean over the photos** | {fmt(fp['mean'])} | {target} | **{t['result'] if t else 'n/a'}** |")
    if synthetic is not None:
        t = _target(data, "mask_false_positive_synthetic")
        L.append(f"| synthetic sequence, clean run (mean over frames) | {fmt(synthetic)} | {target} | "
                 f"**{t['result'] if t else 'n/a'}** |")
    L.append("")
    return L


def print_targets(data: dict, file=sys.stderr) -> None:
    for t in data["targets"]:
        print(f"{t['result']:>5}  {t['metric']}: ours {fmt(t['ours'])} (target {t['target']}), "
              f"MediaPipe {fmt(t['mediapipe'])}", file=file)
