"""Bookkeeping while `occface eval` runs: per-stage timing by bucket and the progress bar."""
from __future__ import annotations

import sys
import time

import numpy as np


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
