#!/usr/bin/env python3
"""Benchmark the converted MediaPipe networks per backend against LiteRT (batch 1, CPU).

Variants are run interleaved in rounds (so machine load hits all of them alike) and
the median (and 10th percentile) per-call latency is printed in milliseconds.

    python tools/nets_bench.py                       # face_landmarks + face_detector_short
    python tools/nets_bench.py --models face_detector_full --backends eager compile

On CUDA: tools/gpu_check.py (parity, two-face batches, TensorRT fp32/fp16).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def litert_runner(name: str, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    from occface_ros.nets import MODELS
    from occface_ros.nets.models import model_path

    it = Interpreter(model_path=str(model_path(name)), num_threads=threads)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    outs = it.get_output_details()
    x = np.random.rand(*inp["shape"]).astype(np.float32) * MODELS[name].norm[0] + MODELS[name].norm[1]

    def run():
        it.set_tensor(inp["index"], x)
        it.invoke()
        return [it.get_tensor(o["index"]) for o in outs]

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["face_landmarks", "face_detector_short"])
    ap.add_argument("--backends", nargs="+", default=["litert", "none", "eager", "onnxruntime", "compile"])
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)))
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--per-round", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from occface_ros.nets import example_input, load_network

    print(f"torch {torch.__version__}, threads={args.threads}, cpus={os.cpu_count()}, "
          f"load avg {os.getloadavg()[0]:.2f}")
    for name in args.models:
        runners = {}
        for b in args.backends:
            t0 = time.perf_counter()
            try:
                if b == "litert":
                    runners[b] = litert_runner(name, args.threads)
                else:
                    net = load_network(name, backend=b, strict=True)  # no silent fallback
                    x = example_input(name)

                    def run(net=net, x=x):
                        return net(x)  # runners run in inference mode

                    runners[b] = run
            except Exception as e:  # noqa: BLE001
                print(f"{name:22s} {b:9s} unavailable: {type(e).__name__}: {str(e)[:100]}")
                continue
            for _ in range(10):
                runners[b]()
            print(f"{name:22s} {b:9s} ready in {time.perf_counter() - t0:6.1f} s", flush=True)
        times = {b: [] for b in runners}
        for _ in range(args.rounds):
            for b, fn in runners.items():
                for _ in range(args.per_round):
                    t = time.perf_counter()
                    fn()
                    times[b].append(time.perf_counter() - t)
        for b, ts in times.items():
            ts = np.asarray(ts) * 1e3
            print(f"{name:22s} {b:9s} median {np.median(ts):7.3f} ms   p10 {np.percentile(ts, 10):7.3f} ms")
    print(f"load avg after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
