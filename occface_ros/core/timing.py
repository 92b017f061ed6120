"""Per-stage wall-clock timing (synchronising CUDA so GPU work is counted where it runs)."""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import numpy as np
import torch


class StageTimer:
    """`with timer("stage"): ...` accumulates milliseconds per stage; `last` holds this frame's."""

    def __init__(self, sync_cuda: bool = False):
        self.sync_cuda = sync_cuda and torch.cuda.is_available()
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.last: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        if self.sync_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.sync_cuda:
                torch.cuda.synchronize()
            self.add(name, (time.perf_counter() - start) * 1e3)

    def add(self, name: str, ms: float) -> None:
        """Record `ms` for `name` in this frame (work timed elsewhere, e.g. in a worker thread)."""
        self.samples[name].append(ms)
        self.last[name] = self.last.get(name, 0.0) + ms

    def new_frame(self) -> None:
        self.last = {}

    def summary(self) -> dict[str, dict[str, float]]:
        """{stage: {median_ms, p90_ms, mean_ms, count}}."""
        return {
            name: {
                "median_ms": float(np.median(v)),
                "p90_ms": float(np.percentile(v, 90)),
                "mean_ms": float(np.mean(v)),
                "count": len(v),
            }
            for name, v in self.samples.items()
            if v
        }
