"""Evaluation 1, occluded photos: clean and with pasted occluders -> NME, mask IoU/F1 in the face region,
pose change between the clean and the occluded fit, landmark visibility, de-occlusion PSNR/SSIM."""
from __future__ import annotations

import time

import numpy as np

from . import metrics as M
from .deocclusion import deocclusion_scores, inpaint_baseline
from .examples import Example, projected_meshes
from .occluders import apply_occluder, occluder_seed
from .photos import load_photos, load_scenes
from .progress import COLD, TIMING, Progress
from .reference_column import Reference
from .results import match_face, match_landmarks, predicted_mask, stage_fields
from .settings import EvalSettings
from .summary import deocclusion_means, mean_defined


def occluded_photos(photo, subjects: list[np.ndarray], settings: EvalSettings) -> list:
    """The photo under each of the eval's occluders (`settings.occluders`, in order), over the faces
    `subjects` (68 points each), seeded by photo and occluder as every eval run is."""
    return [apply_occluder(kind, photo.image_bgr, subjects, occluder_seed(photo.name, kind, settings.seed))
            for kind in settings.occluders]


def score_deocclusion(result, reference_bgr: np.ndarray, occluded_bgr: np.ndarray, hidden: np.ndarray,
                      predicted: np.ndarray | None, occluder_mask: np.ndarray) -> dict | None:
    """PSNR/SSIM on the `hidden` face pixels against the clean `reference_bgr`: ours
    (result.deoccluded_bgr), cv2.inpaint on the mask the pipeline predicted (the same pixels filled)
    and cv2.inpaint on the ground-truth occluder mask (an oracle mask). None when the pipeline did
    not de-occlude this image or nothing of the face is hidden."""
    ours = getattr(result, "deoccluded_bgr", None)
    if ours is None or not hidden.any():
        return None
    if predicted is None:  # no mask from the pipeline: the baseline fills nothing either
        predicted = np.zeros(hidden.shape, bool)
    return {
        "ours": deocclusion_scores(reference_bgr, np.asarray(ours), hidden),
        "cv2_inpaint": deocclusion_scores(reference_bgr, inpaint_baseline(occluded_bgr, predicted), hidden),
        "cv2_inpaint_gt_mask": deocclusion_scores(reference_bgr, inpaint_baseline(occluded_bgr, occluder_mask),
                                                  hidden),
    }


def deocclusion_filler(config: dict) -> str:
    """Which filling `occlusion.deocclude` uses with this config (for the report's notes)."""
    occ = config.get("occlusion") or {}
    if not occ.get("enabled") or not occ.get("deocclude"):
        return "off"
    fisn = occ.get("fisn") or {}
    if fisn.get("enabled"):
        return f"FISN generator ({fisn.get('weights') or 'shipped weights'})"
    return "the track's texture (occlusion.fisn.enabled false)"


def score_occluded_image(result, subjects: list[np.ndarray], clean_faces: list, occluder_mask: np.ndarray,
                         region: np.ndarray, gt68: np.ndarray | None, mask_expected: bool) -> dict:
    """Our metrics on one occluded image: NME (with GT), pose change against the clean fit (per subject,
    averaged), mask IoU/F1 inside `region`, landmark visibility accuracy, occlusion-ratio error."""
    gt_mask = occluder_mask & region
    faces = [match_face(result.faces, lm) for lm in subjects]
    pose_changes = [M.rotation_geodesic_deg(c.rotation, f.rotation)
                    for c, f in zip(clean_faces, faces) if c is not None and f is not None]
    pred = predicted_mask(result, mask_expected)
    main = faces[0]
    visibility = ratio_error = None
    if mask_expected and main is not None:
        if gt68 is not None:  # GT visibility: the GT landmark's pixel is not under the occluder
            h, w = occluder_mask.shape
            xy = np.clip(np.round(gt68).astype(int), 0, [w - 1, h - 1])
            gt_visible = ~occluder_mask[xy[:, 1], xy[:, 0]]
            visibility = float(np.mean(np.asarray(main.landmarks68_visible, dtype=bool) == gt_visible))
        if len(subjects) == 1:
            ratio_error = abs(float(main.occlusion_ratio) - float(gt_mask.sum() / max(region.sum(), 1)))
    by_region = {f"face{i}": dict(f.occlusion_by_region) for i, f in enumerate(faces)
                 if f is not None and getattr(f, "occlusion_by_region", None)}
    return {
        "face_region_occluded_fraction": float(gt_mask.sum() / max(region.sum(), 1)),
        "nme_ours": M.nme(main.landmarks68, gt68) if gt68 is not None and main is not None else None,
        "missed_ours": sum(f is None for f in faces),
        "pose_change_deg": float(np.mean(pose_changes)) if pose_changes else None,
        "mask": M.mask_scores(pred, gt_mask, region).as_dict() if pred is not None else None,
        "landmark_visibility_accuracy": visibility,
        "occlusion_ratio_error": ratio_error,
        "occlusion_by_region": by_region or None,
    }


def evaluate_photos(pipeline, reference: Reference, settings: EvalSettings, progress: Progress,
                    example_keys: set, mask_expected: bool) -> tuple[list[dict], list[Example], list[str]]:
    """Clean and occluded photos -> per-photo records, the chosen examples, notes."""
    records, examples, notes = [], [], []
    notes.append(f"De-occlusion filling: {deocclusion_filler(getattr(pipeline, 'config', {}))}.")
    for photo in load_photos(settings.photos):
        h, w = photo.image_bgr.shape[:2]
        pipeline.reset()
        clean = TIMING.process(pipeline, photo.image_bgr, 0.0, COLD)
        progress.step(stage=photo.name)
        if photo.landmarks68 is not None:
            subjects = [photo.landmarks68]
            clean_faces = [match_face(clean.faces, photo.landmarks68)]
        else:  # no annotation: the clean fit defines the faces (placement of occluders, face regions)
            clean_faces = list(clean.faces)
            subjects = [np.asarray(f.landmarks68) for f in clean_faces]
        if not subjects:
            notes.append(f"{photo.name}: no face found on the clean photo; skipped")
            progress.step(len(settings.occluders))
            continue
        region = np.zeros((h, w), bool)
        for lm in subjects:
            region |= M.face_region_mask(lm, h, w)

        occluded = occluded_photos(photo, subjects, settings)
        ref68 = None
        if photo.landmarks68 is not None:  # MediaPipe has no pose and no mask: only NME needs it
            ref68 = reference.landmarks68([photo.image_bgr] + [o.image_bgr for o in occluded])

        gt = photo.landmarks68
        clean_pred = predicted_mask(clean, mask_expected)
        record = {
            "photo": photo.name,
            "size": [w, h],
            "ground_truth_landmarks": gt is not None,
            "faces": len(subjects),
            "clean": {
                "nme": {
                    "ours": M.nme(clean_faces[0].landmarks68, gt) if gt is not None and clean_faces[0] else None,
                    "mediapipe": _ref_nme(ref68, 0, gt),
                },
                "missed": {"ours": sum(f is None for f in clean_faces),
                           "mediapipe": _ref_missed(ref68, 0, gt)},
                "mask_false_positive_fraction": (float((clean_pred & region).sum() / region.sum())
                                                 if clean_pred is not None else None),
                "stage_fields": stage_fields(clean),
            },
            "occluded": [],
        }
        for k, occ in enumerate(occluded):
            pipeline.reset()
            t0 = time.perf_counter()
            res = TIMING.process(pipeline, occ.image_bgr, 0.0, COLD)
            elapsed_ms = (time.perf_counter() - t0) * 1e3
            progress.step(stage=f"{photo.name}/{occ.kind}")
            sc = score_occluded_image(res, subjects, clean_faces, occ.occluder_mask, region, gt, mask_expected)
            deocc = score_deocclusion(res, photo.image_bgr, occ.image_bgr, occ.occluder_mask & region,
                                      predicted_mask(res, mask_expected), occ.occluder_mask)
            entry = {
                "occluder": occ.kind,
                "face_region_occluded_fraction": sc["face_region_occluded_fraction"],
                "nme": {"ours": sc["nme_ours"], "mediapipe": _ref_nme(ref68, k + 1, gt)},
                "missed": {"ours": sc["missed_ours"], "mediapipe": _ref_missed(ref68, k + 1, gt)},
                **{key: sc[key] for key in ("pose_change_deg", "mask", "landmark_visibility_accuracy",
                                            "occlusion_ratio_error", "occlusion_by_region")},
                "deocclusion": deocc,
                "process_ms": elapsed_ms,
            }
            record["occluded"].append(entry)
            if (photo.name, occ.kind) in example_keys:
                examples.append(Example(f"{photo.name} / {occ.kind}", occ.image_bgr, res, occ.occluder_mask & region,
                                        region,
                                        projected_meshes(pipeline, res)))
        _photo_summary(record)
        records.append(record)
    return records, examples, notes


def _ref_nme(ref68, index, gt):
    if ref68 is None or gt is None:
        return None
    lm = match_landmarks(ref68[index], gt)
    return M.nme(lm, gt) if lm is not None else None


def _ref_missed(ref68, index, gt):
    if ref68 is None or gt is None:
        return None
    return int(match_landmarks(ref68[index], gt) is None)


def _photo_summary(record: dict) -> None:
    occ = record["occluded"]
    summary = {}
    for method in ("ours", "mediapipe"):
        clean = record["clean"]["nme"][method]
        occluded = mean_defined(e["nme"][method] for e in occ)
        summary[method] = {
            "nme_clean": clean,
            "nme_occluded_mean": occluded,
            "nme_ratio": (occluded / clean) if (clean and occluded is not None) else None,
            "missed_occluded": (sum(e["missed"][method] for e in occ)
                                if all(e["missed"][method] is not None for e in occ) else None),
        }
    summary["ours"].update(
        mask_f1_mean=mean_defined(e["mask"]["f1"] for e in occ if e["mask"]),
        mask_iou_mean=mean_defined(e["mask"]["iou"] for e in occ if e["mask"]),
        pose_change_deg_mean=mean_defined(e["pose_change_deg"] for e in occ),
        pose_change_deg_max=max((e["pose_change_deg"] for e in occ if e["pose_change_deg"] is not None),
                                default=None),
        deocclusion=deocclusion_means(e["deocclusion"] for e in occ),
    )
    record["summary"] = summary


def evaluate_scenes(pipeline, settings: EvalSettings, progress: Progress) -> dict:
    """Faces the pipeline reports on the pictures without a face (each from a fresh start): all false."""
    per_picture = {}
    for name, image in load_scenes(settings.scenes):
        pipeline.reset()
        per_picture[name] = len(pipeline.process(image, 0.0).faces)
        progress.step(stage=name)
    return {"pictures": len(per_picture), "faces": sum(per_picture.values()), "per_picture": per_picture}
