"""`occface bench`: per-stage timings on a clip of real frames, beside MediaPipe's legacy pipeline.

Both run in the same process run, on the same frames. The ratio ours/reference compares
per-frame medians of detection + landmarks (preprocess, detection, landmarks, ROI tracking)
measured like for like: our tracker alone on the clip, as MediaPipe's loop runs only its
detection + landmarks. The same stages timed inside the whole pipeline are reported too
(`ratio_vs_reference_in_pipeline`); there they run ~15-25% slower: a few ms of any other work
between two FaceMesh runs (the fit, or even a pure-Python busy loop) lets its weights go cold in
the shared caches (measured: FaceMesh 1.2-1.3 ms back to back, 1.5-1.9 ms after 3 ms of other work).
"""
from __future__ import annotations

import sys
import time

import numpy as np

from .clip import clip_frames
from ..config import for_files, load_config
from ..pipeline import FacePipeline
from ..core.roi import FrameImage

DETECT_LANDMARK_STAGES = ("preprocess", "detection", "landmarks", "tracking")
OCCLUSION_STAGES = ("occlusion", "refit")  # hand_* stages run inside "occlusion"


def _stats(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"median_ms": float(np.median(v)), "p90_ms": float(np.percentile(v, 90)), "mean_ms": float(v.mean())}


def run_bench(num_frames: int = 300, config_path=None, with_reference: bool = True, warmup: int = 15,
              verbose: bool = True) -> dict:
    if with_reference:  # a missing or broken reference venv fails here, in one line, before the work
        from ..reference import check_reference

        check_reference()
    cfg = load_config(config_path)
    frames = clip_frames(num_frames)
    pipeline = FacePipeline(for_files(cfg))
    for i, f in enumerate(frames[:warmup]):
        pipeline.process(f, i / 30.0)
    pipeline.reset()
    pipeline.timer.clear()
    # the reference runs right before and right after our timed loop and its figures pool both
    # runs: a 2-core machine drifts by +-20% over a minute, and bracketing keeps the ratio fair
    ref_before = None
    if with_reference:
        from ..reference import run_reference

        ref_before = run_reference(frames)

    per_stage: dict[str, list[float]] = {}
    detect_landmarks, end_to_end, without_occlusion, faces_found = [], [], [], 0
    for i, f in enumerate(frames):
        t0 = time.perf_counter()
        result = pipeline.process(f, i / 30.0)
        end_to_end.append((time.perf_counter() - t0) * 1e3)
        faces_found += len(result.faces)
        for name, ms in result.stage_ms.items():
            per_stage.setdefault(name, []).append(ms)
        detect_landmarks.append(sum(result.stage_ms.get(s, 0.0) for s in DETECT_LANDMARK_STAGES))
        without_occlusion.append(end_to_end[-1] - sum(result.stage_ms.get(s, 0.0) for s in OCCLUSION_STAGES))

    stages = {name: _stats(v) for name, v in per_stage.items()}
    stages["detection+landmarks"] = _stats(detect_landmarks)
    stages["detection+landmarks_alone"] = _stats(_track_alone(pipeline, frames))
    stages["end_to_end"] = _stats(end_to_end)
    stages["end_to_end_without_occlusion"] = _stats(without_occlusion)
    out = {
        "frames": num_frames,
        "frame_size": [int(frames[0].shape[1]), int(frames[0].shape[0])],
        "faces_per_frame": faces_found / num_frames,
        "device": cfg["runtime"]["device"],
        "backend": cfg["runtime"]["backend"],
        "stages": stages,
        "end_to_end_fps": 1e3 / float(np.mean(end_to_end)),
        "end_to_end_fps_without_occlusion": 1e3 / float(np.mean(without_occlusion)),
        "occlusion_enabled": bool(cfg["occlusion"]["enabled"]),
        "reference": None,
        "ratio_vs_reference": None,
        "ratio_vs_reference_in_pipeline": None,
    }
    if with_reference:
        ref = run_reference(frames)
        ref_stats = _stats(ref_before["per_frame_ms"] + ref["per_frame_ms"])
        ref_stats["runs"] = 2
        out["reference"] = {"name": ref["name"], **ref_stats,
                            "faces_per_frame": float(np.mean(~np.isnan(ref["landmarks468"][:, 0, 0])))}
        out["ratio_vs_reference"] = stages["detection+landmarks_alone"]["median_ms"] / ref_stats["median_ms"]
        out["ratio_vs_reference_in_pipeline"] = stages["detection+landmarks"]["median_ms"] / ref_stats["median_ms"]
    if verbose:
        print_report(out, file=sys.stdout)
    return out


def _track_alone(pipeline: FacePipeline, frames) -> list[float]:
    """Per-frame ms of our detection + landmarks with nothing else between frames (the tracker on
    each frame, from the frame's arrival), as the reference loop runs."""
    pipeline.reset()
    times = []
    for f in frames:
        t0 = time.perf_counter()
        pipeline.tracker(FrameImage(f, pipeline.device))
        times.append((time.perf_counter() - t0) * 1e3)
    pipeline.reset()
    return times


def print_report(result: dict, file=sys.stdout) -> None:
    print(f"occface bench: {result['frames']} frames {result['frame_size'][0]}x{result['frame_size'][1]}, "
          f"{result['faces_per_frame']:.2f} faces/frame, device={result['device']} backend={result['backend']}",
          file=file)
    print(f"{'stage':<28}{'median ms':>10}{'p90 ms':>10}{'mean ms':>10}", file=file)
    for name, s in result["stages"].items():
        print(f"{name:<28}{s['median_ms']:>10.2f}{s['p90_ms']:>10.2f}{s['mean_ms']:>10.2f}", file=file)
    print(f"end-to-end FPS: {result['end_to_end_fps']:.1f} (occlusion reasoning "
          f"{'on' if result['occlusion_enabled'] else 'off'}); without the occlusion stages: "
          f"{result['end_to_end_fps_without_occlusion']:.1f}", file=file)
    ref = result["reference"]
    if ref:
        print(f"reference {ref['name']}: median {ref['median_ms']:.2f} ms, p90 {ref['p90_ms']:.2f} ms", file=file)
        print(f"ratio ours/reference (detection+landmarks, median): {result['ratio_vs_reference']:.2f} like for "
              f"like (both alone); {result['ratio_vs_reference_in_pipeline']:.2f} with ours timed inside the "
              "whole pipeline", file=file)
