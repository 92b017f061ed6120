"""`occface eval`: runs the three evaluations and writes DIR/report.md, metrics.json, examples.png and
metrics.png (protocol: docs/evaluation.md).

Runs FacePipeline (occlusion stage on when the config has one) and MediaPipe 0.10.21's raw FaceMesh
(`reference_column`, static-image mode) on
1. real photos, clean and with pasted occluders (`photo_eval`);
2. static-head clips, a photo + per-frame sensor noise (`jitter_eval`);
3. a rendered sequence with exact ground truth (`synthetic_eval`).
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

from ..config import for_files
from .examples import write_examples
from .jitter_eval import evaluate_jitter
from .photo_eval import evaluate_photos, evaluate_scenes
from .plots import write_metric_plots
from .progress import TIMING, Progress
from .reference_column import Reference
from .report import json_clean, write_report
from .settings import FULL, QUICK, EvalSettings
from .summary import build_targets, missed_summary, per_occluder_summary
from .synthetic_eval import evaluate_synthetic, evaluate_yaw_bins


def eval_config(config_path=None, device: str | None = None, occlusion: bool = True) -> tuple[dict, str]:
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
    cfg, stage = eval_config(config_path, device, occlusion)
    mask_expected = stage == "on"  # the stage runs: a frame without a mask (no face) flags nothing
    start = time.perf_counter()
    pipeline = FacePipeline(for_files(cfg))
    reference = Reference(with_reference)
    total = (len(settings.photos) * (1 + len(settings.occluders))
             + len(settings.jitter_photos) * (1 + 2 * settings.jitter_frames) + 2 * settings.synthetic_frames
             + 2 * settings.yaw_sweep_frames + len(settings.scenes))
    bar = Progress(total, progress)
    TIMING.samples.clear()
    try:
        photos, examples, notes = evaluate_photos(pipeline, reference, settings, bar,
                                                  _example_keys(settings, 4 if quick else 8), mask_expected)
        jitter = evaluate_jitter(pipeline, reference, settings, bar)
        synthetic, syn_examples, syn_note = evaluate_synthetic(pipeline, reference, settings, bar,
                                                               1 if quick else 2, mask_expected)
        yaw_bins = evaluate_yaw_bins(pipeline, reference, settings, bar)
        scenes = evaluate_scenes(pipeline, settings, bar)
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
        "scenes_without_faces": scenes,
        "photos": photos,
        "occluders": per_occluder_summary(photos, settings.occluders),
        "jitter": jitter,
        "synthetic": synthetic,
        "synthetic_note": syn_note,
        "synthetic_yaw_bins": yaw_bins,
        "notes": notes,
        "timing": TIMING.summary(),
        "elapsed_s": time.perf_counter() - start,
    }
    data = json_clean(data)
    (out / "metrics.json").write_text(json.dumps(data, indent=1) + "\n")
    write_report(out / "report.md", data)
    triangles = pipeline.model.triangles.cpu().numpy()
    if pipeline.model.face_vertex_count:  # the face part only: a legible wireframe
        triangles = triangles[(triangles < pipeline.model.face_vertex_count).all(1)]
    write_examples(out / "examples.png", examples, triangles)
    write_metric_plots(out / "metrics.png", data)
    return data
