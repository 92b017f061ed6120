"""Per-stage wall-clock timing (synchronising CUDA so GPU work is counted where it runs)."""
from __future__ import annotations

import time
from collections import defaultdict, deque
from contextlib import contextmanager
from functools import partial

import numpy as np
import torch


MAX_SAMPLES_PER_STAGE = 10_000  # ~5.5 min at 30 Hz: enough for stable percentiles, bounded memory


class StageTimer:
    """`with timer("stage"): ...` records milliseconds per stage; `last` holds this frame's.

    `samples[stage]` keeps only the newest `max_samples` (a ring buffer: a node runs for days);
    `counts[stage]` counts every sample ever recorded."""

    def __init__(self, sync_cuda: bool = False, max_samples: int = MAX_SAMPLES_PER_STAGE):
        self.sync_cuda = sync_cuda and torch.cuda.is_available()
        self.max_samples = int(max_samples)
        self.samples: dict[str, deque[float]] = defaultdict(partial(deque, maxlen=self.max_samples))
        self.counts: dict[str, int] = defaultdict(int)
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
        self.counts[name] += 1
        self.last[name] = self.last.get(name, 0.0) + ms

    def new_frame(self) -> None:
        self.last = {}

    def clear(self) -> None:
        """Forget every sample (e.g. after a warm-up)."""
        self.samples.clear()
        self.counts.clear()
        self.last = {}

    def summary(self) -> dict[str, dict[str, float]]:
        """{stage: {median_ms, p90_ms, mean_ms, count}}: statistics of the kept samples, `count` of all;
        a stage that never ran is absent (never NaN)."""
        out = {}
        for name, kept in list(self.samples.items()):  # snapshots: a worker thread may add meanwhile
            v = np.asarray(list(kept), dtype=np.float64)
            if v.size:
                out[name] = {"median_ms": float(np.median(v)), "p90_ms": float(np.percentile(v, 90)),
                             "mean_ms": float(v.mean()), "count": self.counts[name]}
        return out
