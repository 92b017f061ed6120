#!/usr/bin/env python3
"""GPU check of the network runners and the pipeline (`make gpu-check`; under 10 minutes).

1. Parity and speed: each network on each backend (eager, tensorrt fp32, tensorrt fp16, compile),
   built strict (no silent fallback) for the batch the pipeline uses (face_landmarks: detection.max_faces,
   hand_landmarks: occlusion.hands.max_hands, detectors: 1; larger batches are split), against eager
   fp32 on the CPU on the same real images at batch 1 and 2 (two faces in one call):
   max |out - ref| / output scale must stay within nets.PARITY_BOUND[precision]; median ms per call.
2. The whole FacePipeline on the device on frames with two faces (two clip frames side by side),
   with tensorrt when every engine it needs was built in step 1 (then loaded from the engine cache),
   else eager: faces per frame, ms per frame, raw FaceMesh landmarks against the CPU pipeline.

Prints a table; exit status 1 on a parity or pipeline failure, else 0. Without CUDA it prints one line
and exits 0 (`--device cpu` runs the same checks on the CPU, to check the script itself).
New runner builds stop after --budget-s seconds (what is left is listed as skipped).

    .venv/bin/python tools/gpu_check.py [--device cuda:0] [--frames 6] [--budget-s 420]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

MAIN_NETS = ("face_detector_short", "face_landmarks", "hand_landmarks")
PIPELINE_LANDMARK_BOUND_PX = 3.0  # mean |landmarks468 on the device - on the CPU| per face


def two_face_frames(count: int) -> list[np.ndarray]:
    """640x480 BGR frames: the astronaut clip and the Tom Hanks clip side by side (two real faces)."""
    from occface_ros.app.clip import clip_frames

    left, right = clip_frames(count, "astronaut"), clip_frames(count, "tom_hanks")
    frames = []
    for a, b in zip(left, right):
        canvas = np.zeros((480, 640, 3), np.uint8)
        canvas[120:360, :320] = cv2.resize(a, (320, 240), interpolation=cv2.INTER_AREA)
        canvas[120:360, 320:] = cv2.resize(b, (320, 240), interpolation=cv2.INTER_AREA)
        frames.append(canvas)
    return frames


def network_inputs(name: str) -> torch.Tensor:
    """(2, 3, H, W) float32 RGB in [0, 1]: centre crops of two real clip frames (a face each)."""
    from occface_ros import nets
    from occface_ros.app.clip import clip_frames

    h, w = nets.MODELS[name].input_size
    crops = []
    for photo in ("astronaut", "tom_hanks"):
        frame = clip_frames(1, photo)[0]
        fh, fw = frame.shape[:2]
        side = min(fh, fw) * 2 // 3
        y0, x0 = (fh - side) // 2, (fw - side) // 2
        crop = cv2.resize(frame[y0 : y0 + side, x0 : x0 + side], (w, h), interpolation=cv2.INTER_AREA)
        crops.append(crop[:, :, ::-1].astype(np.float32) / 255.0)
    return torch.from_numpy(np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2)))


def median_ms(fn, x: torch.Tensor, device: torch.device, calls: int = 30) -> float:
    for _ in range(3):
        fn(x)
    times = []
    for _ in range(calls):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def runner_rows(device: torch.device, cfg: dict, networks, variants, deadline: float) -> tuple[list[list[str]], set, bool]:
    """Parity/timing rows; the (network, backend, precision) built; whether everything passed."""
    from occface_ros import nets
    from occface_ros.nets.runners import max_relative_error

    batch_of = {"face_landmarks": cfg["detection"]["max_faces"], "hand_landmarks": cfg["occlusion"]["hands"]["max_hands"]}
    rows, built, ok = [], set(), True
    refs = {}
    for backend, precision, nets_for in variants:
        for name in networks:
            if name not in nets_for:
                continue
            label = f"{backend}/{precision}"
            if time.monotonic() > deadline:
                rows.append([name, label, "-", "-", "-", "-", "-", "skipped (time budget)"])
                continue
            if name not in refs:
                x = network_inputs(name)
                refs[name] = (x, nets.load_network(name, "none", "cpu")(x))
            x, ref = refs[name]
            max_batch = max(1, int(batch_of.get(name, 1)))
            t0 = time.perf_counter()
            try:
                runner = nets.load_network(name, backend, device, max_batch=max_batch, precision=precision, strict=True)
            except nets.BackendUnavailable as exc:
                rows.append([name, label, str(max_batch), "-", "-", "-", "-", f"unavailable: {str(exc)[:70]}"])
                continue
            build_s = time.perf_counter() - t0
            built.add((name, backend, precision))
            bound = nets.PARITY_BOUND[precision]
            cells = []
            for batch in (1, 2):
                xb = x[:batch].to(device)
                err = max_relative_error(runner(xb), tuple(r[:batch] for r in ref))
                ms = median_ms(runner, xb, device)
                passed = err <= bound
                ok &= passed
                cells.append((err, ms, passed))
            verdict = "ok" if all(c[2] for c in cells) else f"PARITY FAIL (bound {bound:.0e})"
            rows.append([name, label, str(max_batch), f"{cells[0][0]:.1e}", f"{cells[1][0]:.1e}",
                         f"{cells[0][1]:.2f}", f"{cells[1][1]:.2f}", f"{verdict}; built in {build_s:.0f} s"])
            del runner
    return rows, built, ok


def pipeline_landmarks(cfg: dict, frames: list[np.ndarray]) -> tuple[list[list[np.ndarray]], float, str]:
    """Raw FaceMesh landmarks (per frame, per face, sorted left to right), median ms per frame."""
    from occface_ros.pipeline import FacePipeline

    pipe = FacePipeline(cfg)
    out, times = [], []
    try:
        for i, frame in enumerate(frames):
            t = time.perf_counter()
            result = pipe.process(frame, i / 30.0)
            if pipe.device.type == "cuda":
                torch.cuda.synchronize(pipe.device)
            times.append(time.perf_counter() - t)
            faces = sorted(result.faces, key=lambda f: float(f.bbox[0]))
            for f in faces:
                if not (np.isfinite(f.landmarks468).all() and np.isfinite(f.translation_m).all()):
                    raise RuntimeError(f"frame {i}: non-finite result")
            out.append([f.landmarks468[:, :2] for f in faces])
        backends = getattr(getattr(pipe, "tracker", None), "landmarker", None)
        used = getattr(getattr(backends, "net", None), "backend", "?")
    finally:
        pipe.close()
    return out, float(np.median(times[1:] or times) * 1e3), used


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu (cpu: check this script)")
    ap.add_argument("--frames", type=int, default=6, help="pipeline frames")
    ap.add_argument("--budget-s", type=float, default=420.0, help="no new runner build starts after this")
    ap.add_argument("--networks", nargs="+", default=None, help="default: all for tensorrt fp32, "
                    f"{' '.join(MAIN_NETS)} for the others")
    args = ap.parse_args()
    start = time.monotonic()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu-check: no CUDA device here (torch {torch.__version__}, cuda {torch.version.cuda}); nothing checked")
        return 0

    from occface_ros import nets
    from occface_ros.config import for_files, load_config

    cfg = load_config()
    all_nets = tuple(args.networks or nets.NETWORK_NAMES)
    main_nets = tuple(args.networks or MAIN_NETS)
    if device.type == "cuda":
        device = torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())
        print(f"gpu-check on {device}: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, "
              f"cuda {torch.version.cuda}", flush=True)
        # tensorrt fp32 for every network the pipeline loads (cached for step 2), then the rest
        variants = [("eager", "fp32", main_nets), ("tensorrt", "fp32", all_nets),
                    ("tensorrt", "fp16", main_nets), ("compile", "fp32", main_nets)]
    else:
        print(f"gpu-check on {device} (script check; torch {torch.__version__})", flush=True)
        variants = [("eager", "fp32", main_nets), ("onnxruntime", "fp32", main_nets)]
    rows, built, ok = runner_rows(device, cfg, all_nets, variants, start + args.budget_s)

    header = ["network", "backend", "max_batch", "err b1", "err b2", "ms b1", "ms b2", "verdict"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)), flush=True)

    # the pipeline: tensorrt when its engines are cached by step 1, else eager
    needed = {f"face_detector_{cfg['detection']['model']}", "face_landmarks"}
    if cfg["detection"]["model"] == "short" and cfg["detection"]["fallback_full"]:
        needed.add("face_detector_full")
    if cfg["occlusion"]["enabled"] and cfg["occlusion"]["hands"]["enabled"]:
        needed |= {"palm_detector", "hand_landmarks"}
    trt_ready = all((n, "tensorrt", "fp32") in built for n in needed)
    backend = "tensorrt" if device.type == "cuda" and trt_ready else ("eager" if device.type == "cuda" else "auto")
    frames = two_face_frames(args.frames)
    try:
        dev_cfg = for_files(load_config(overrides={"runtime": {"device": str(device), "backend": backend}}))
        got, ms, used = pipeline_landmarks(dev_cfg, frames)
        ref, ref_ms, _ = pipeline_landmarks(for_files(load_config(overrides={"runtime": {"device": "cpu"}})), frames)
    except Exception as exc:  # noqa: BLE001 - reported as the failure it is
        print(f"pipeline on {device} ({backend}): FAIL {type(exc).__name__}: {exc}")
        return 1
    counts = [len(f) for f in got]
    diffs = [float(np.abs(a - b).mean()) for fa, fb in zip(got, ref) if len(fa) == len(fb) for a, b in zip(fa, fb)]
    same_counts = counts == [len(f) for f in ref]
    worst = max(diffs) if diffs else float("nan")
    pipe_ok = same_counts and bool(diffs) and worst <= PIPELINE_LANDMARK_BOUND_PX
    print(f"pipeline on {device} (backend {backend}, FaceMesh runner {used}): faces per frame {counts} "
          f"(CPU: {[len(f) for f in ref]}), {ms:.1f} ms/frame (CPU {ref_ms:.1f}), landmarks468 vs CPU: "
          f"worst mean {worst:.2f} px (bound {PIPELINE_LANDMARK_BOUND_PX}) -> {'ok' if pipe_ok else 'FAIL'}")
    if max(counts, default=0) < 2:
        print("note: fewer than two faces found per frame; the two-face path was not exercised by the pipeline")
    print(f"gpu-check: {'PASS' if ok and pipe_ok else 'FAIL'} in {time.monotonic() - start:.0f} s")
    return 0 if ok and pipe_ok else 1


if __name__ == "__main__":
    sys.exit(main())
