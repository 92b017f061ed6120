"""Aggregation of the evaluation records: the targets table, missed faces, per-occluder rows, de-occlusion
means."""
from __future__ import annotations

import numpy as np

from .settings import TARGETS

DEOCCLUSION_METHODS = ("ours", "cv2_inpaint", "cv2_inpaint_gt_mask")
"""Keys of a de-occlusion entry: our filling, cv2.inpaint on the predicted mask, on the GT occluder mask."""
DEOCCLUSION_PSNR_GAIN_DB = 2.0  # ours - cv2.inpaint (same mask) >=, on the hidden face pixels
DEOCCLUSION_SSIM_GAIN = 0.0  # ours - cv2.inpaint (same mask) >
CLEAN_FALSE_POSITIVE_FRACTION = 0.03  # face region flagged occluded on a clean image <=
DEOCCLUSION_OFF_HINT = ("de-occlusion off: `occface eval` sets `occlusion.deocclude` with the occlusion stage, so run "
                        "it without `--no-occlusion` (`occlusion.fisn.enabled: true` in a `--config` file selects "
                        "the FISN generator, else the track's texture fills)")


def mean_defined(values):
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


def _check(value, target, op):
    if value is None or not np.isfinite(value):
        return "n/a"
    ok = {"<=": value <= target, ">=": value >= target, "<": value < target, ">": value > target}[op]
    return "pass" if ok else "FAIL"


def deocclusion_means(entries) -> dict | None:
    """Means of de-occlusion entries ({method: {"psnr_db", "ssim"}}, None = not de-occluded):
    {"images", method: {"psnr_db", "ssim"}, "psnr_gain_db", "ssim_gain"} (gains: ours - cv2.inpaint
    on the same mask); None when no entry has scores. Each figure is averaged over the entries where
    every method's value is finite (a perfect filling's PSNR is inf), so the columns and the gain
    are over the same images."""
    scored = [e for e in entries if e]
    if not scored:
        return None
    out = {"images": len(scored), **{method: {} for method in DEOCCLUSION_METHODS}}
    for key, gain in (("psnr_db", "psnr_gain_db"), ("ssim", "ssim_gain")):
        paired = [e for e in scored if all(_finite(e[m][key]) for m in DEOCCLUSION_METHODS)]
        for method in DEOCCLUSION_METHODS:
            out[method][key] = mean_defined(e[method][key] for e in paired)
        out[gain] = mean_defined(e["ours"][key] - e["cv2_inpaint"][key] for e in paired)
    return out


def _finite(value) -> bool:
    return value is not None and bool(np.isfinite(value))


def photo_deocclusion(photos: list[dict]) -> dict | None:
    """De-occlusion means over every occluded photo."""
    return deocclusion_means(e.get("deocclusion") for p in photos for e in p["occluded"])


def clean_false_positives(photos: list[dict]) -> dict:
    """Fraction of the face region flagged occluded on each clean photo (None: no mask), and the mean."""
    per = {p["photo"]: p["clean"]["mask_false_positive_fraction"] for p in photos}
    return {"per_photo": per, "mean": mean_defined(per.values())}


def build_targets(photos: list[dict], jitter: list[dict], synthetic: dict | None) -> list[dict]:
    gt_photos = [p for p in photos if p["ground_truth_landmarks"]]
    occluded = [e for p in photos for e in p["occluded"]]
    rows = []

    def add(key, label, target, op, ours, mediapipe=None, note=""):
        rows.append({"key": key, "metric": label, "target": f"{op} {target:g}", "ours": ours,
                     "mediapipe": mediapipe, "result": _check(ours, target, op), "note": note})

    add("nme_ratio_photos", "NME occluded / clean, photos (mean of per-photo ratios)", TARGETS["nme_ratio"], "<=",
        mean_defined(p["summary"]["ours"]["nme_ratio"] for p in gt_photos),
        mean_defined(p["summary"]["mediapipe"]["nme_ratio"] for p in gt_photos))
    add("mask_f1_photos", "Occlusion mask F1 in the face region, occluded photos (mean)", TARGETS["mask_f1"], ">=",
        mean_defined(e["mask"]["f1"] for e in occluded if e["mask"]), None,
        "" if any(e["mask"] for e in occluded) else "no occlusion_mask: stage off or absent")
    add("pose_change_photos", "Pose change clean -> occluded, photos (mean, deg)", TARGETS["pose_change_deg"], "<",
        mean_defined(e["pose_change_deg"] for e in occluded), None, "MediaPipe FaceMesh gives no head pose")
    reductions = [j["reduction"] for j in jitter]
    add("jitter_reduction", "Static-head jitter, unsmoothed / smoothed (mean)", TARGETS["jitter_reduction"], ">=",
        mean_defined(reductions), None, "MediaPipe raw jitter (px) in the jitter table")
    if synthetic is not None:
        s_ours, s_ref = synthetic["ours"], synthetic["mediapipe"] or {}
        add("nme_ratio_synthetic", "NME occluded / clean, synthetic (occluded frames)", TARGETS["nme_ratio"], "<=",
            s_ours["nme_ratio"], s_ref.get("nme_ratio"))
        add("mask_f1_synthetic", "Occlusion mask F1, synthetic (mean over occluded frames)", TARGETS["mask_f1"], ">=",
            s_ours["mask_f1_mean"], None, "" if s_ours["mask_f1_mean"] is not None else
            "no occlusion_mask: stage off or absent")
        add("pose_change_synthetic", "Pose change clean -> occluded, synthetic (mean, deg)",
            TARGETS["pose_change_deg"], "<", s_ours["pose_change_deg_mean"], None)
    deocc = photo_deocclusion(photos)
    off = "" if deocc else DEOCCLUSION_OFF_HINT
    add("deocclusion_psnr_gain_photos", "De-occlusion PSNR on the hidden face pixels, ours - cv2.inpaint (same mask), "
        "photos (dB)", DEOCCLUSION_PSNR_GAIN_DB, ">=", deocc["psnr_gain_db"] if deocc else None, None, off)
    add("deocclusion_ssim_gain_photos", "De-occlusion SSIM on the hidden face pixels, ours - cv2.inpaint (same mask), "
        "photos", DEOCCLUSION_SSIM_GAIN, ">", deocc["ssim_gain"] if deocc else None, None, off)
    fp = clean_false_positives(photos)["mean"]
    add("mask_false_positive_photos", "Face region flagged occluded on the clean photos (mean fraction)",
        CLEAN_FALSE_POSITIVE_FRACTION, "<=", fp, None,
        "" if fp is not None else "no occlusion_mask: stage off or absent")
    if synthetic is not None and synthetic["ours"].get("clean_mask_false_positive_fraction") is not None:
        add("mask_false_positive_synthetic",
            "Face region flagged occluded on the clean synthetic frames (mean fraction)", CLEAN_FALSE_POSITIVE_FRACTION,
            "<=", synthetic["ours"]["clean_mask_false_positive_fraction"], None)
    return rows


def missed_summary(photos: list[dict], synthetic: dict | None) -> dict:
    """Faces not found on the occluded images (ours / MediaPipe)."""
    gt = [e for p in photos if p["ground_truth_landmarks"] for e in p["occluded"]]
    ref = [e["missed"]["mediapipe"] for e in gt]
    return {
        "photos_gt": {"images": len(gt), "ours": sum(e["missed"]["ours"] for e in gt),
                      "mediapipe": sum(ref) if ref and all(v is not None for v in ref) else None},
        "photos_all": {"faces": sum(p["faces"] * len(p["occluded"]) for p in photos),
                       "ours": sum(e["missed"]["ours"] for p in photos for e in p["occluded"])},
        "synthetic": {"frames": synthetic["frames"] if synthetic else None,
                      "ours": synthetic["ours"]["missed_occluded"] if synthetic else None,
                      "mediapipe": (synthetic["mediapipe"] or {}).get("missed_occluded") if synthetic else None},
    }


def per_occluder_summary(photos: list[dict], kinds) -> list[dict]:
    rows = []
    for kind in kinds:
        entries = [(p, e) for p in photos for e in p["occluded"] if e["occluder"] == kind]
        row = {"occluder": kind, "images": len(entries)}
        for method in ("ours", "mediapipe"):
            ratios = [e["nme"][method] / p["clean"]["nme"][method] for p, e in entries
                      if e["nme"][method] is not None and p["clean"]["nme"][method]]
            row[f"nme_ratio_{method}"] = mean_defined(ratios)
        row["mask_f1"] = mean_defined(e["mask"]["f1"] for _, e in entries if e["mask"])
        row["mask_iou"] = mean_defined(e["mask"]["iou"] for _, e in entries if e["mask"])
        row["pose_change_deg"] = mean_defined(e["pose_change_deg"] for _, e in entries)
        row["face_region_occluded_fraction"] = mean_defined(e["face_region_occluded_fraction"] for _, e in entries)
        row["landmark_visibility_accuracy"] = mean_defined(e["landmark_visibility_accuracy"] for _, e in entries)
        row["missed_ours"] = sum(e["missed"]["ours"] for _, e in entries)
        row["process_ms_mean"] = mean_defined(e["process_ms"] for _, e in entries)
        row["deocclusion"] = deocclusion_means(e.get("deocclusion") for _, e in entries)
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------
