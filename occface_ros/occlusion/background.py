"""Occlusion reasoning in a worker thread, for live use (`occlusion.background: true`).

The reasoning costs several camera frames on a small CPU. Run inline it stalls the frame it runs
on (the node then drops frames and its p99 latency is the reasoning time). In the background,
the fast path (tracking, landmarks, fit, smoothing) keeps the camera rate. Each frame it:
`collect()`s the last finished job (visibility, region ratios, maps: those of a frame some
frames back) and, when the worker is idle, `submit()`s the current frame. Only the worker touches
the reasoner (track textures, hand tracks); lost tracks are forgotten at its next job.
`occface run`, `eval`, `bench` and `bag` reason inline, frame by frame (deterministic files).
"""
from __future__ import annotations

import concurrent.futures
import logging
import os
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import torch

from ..contracts import FaceOcclusion
from .reasoner import OcclusionReasoner, OcclusionResult

log = logging.getLogger(__name__)


@dataclass
class ReasoningJob:
    """Inputs of one reasoning run (tensors are not modified by the caller afterwards)."""

    image: torch.Tensor  # (3, H, W) RGB [0, 1]
    fit: object  # FitState of the frame's faces
    K: torch.Tensor
    track_ids: list[int]
    rois: torch.Tensor
    points: torch.Tensor  # (B, P, 2) fitting points, pixels: the 68 landmarks first, then the dense ones
    timestamp_s: float
    probe_radius_px: float
    deocclude: bool = False
    deocclude_when: tuple[float, float] | None = None  # see OcclusionReasoner.__call__


@dataclass
class ReasoningOutcome:
    job: ReasoningJob
    result: OcclusionResult
    points_visible: torch.Tensor  # (B, P) bool
    faces: list[FaceOcclusion]  # per face of the job
    elapsed_ms: float

    def with_points(self, points_px: torch.Tensor) -> ReasoningOutcome:
        """The outcome for other points of the same faces (e.g. landmarks taken again after the reasoning)."""
        visible = self.result.points_visible(points_px, self.job.probe_radius_px)
        faces = [replace(f, landmarks68_visible=visible[i, :68]) for i, f in enumerate(self.faces)]
        return replace(self, points_visible=visible, faces=faces)


class BackgroundReasoner:
    """One worker thread running `reasoner` on the newest submitted frame (see the module doc)."""

    def __init__(self, reasoner: OcclusionReasoner, nice: int = 10, switch_interval_s: float = 5e-4):
        self.reasoner = reasoner
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="occface_occlusion",
                                            initializer=_lower_priority, initargs=(nice,))
        if switch_interval_s:
            # the fast path releases the GIL in every torch op; taking it back from a worker that
            # runs Python waits up to the switch interval (5 ms by default) each time
            sys.setswitchinterval(min(sys.getswitchinterval(), switch_interval_s))
        self._future: Future | None = None
        self._forget: list[int] = []

    def idle(self) -> bool:
        """No job running and no outcome waiting to be collected: submit() may start one."""
        return self._future is None

    def wait(self, timeout_s: float | None = None) -> None:
        """Block until the running job (if any) has finished; its outcome stays for collect()."""
        if self._future is not None:
            concurrent.futures.wait([self._future], timeout=timeout_s)

    def submit(self, job: ReasoningJob) -> None:
        """Start reasoning on `job` (only when idle())."""
        if self._future is not None:
            raise RuntimeError("BackgroundReasoner.submit: the previous job is not collected")
        forget, self._forget = self._forget, []
        self._future = self._executor.submit(self._run, job, forget)

    def collect(self) -> ReasoningOutcome | None:
        """The finished job's outcome (once), None while it runs or when there is none.
        Errors of the job are raised here, in the caller's thread."""
        if self._future is None or not self._future.done():
            return None
        future, self._future = self._future, None
        return future.result()

    def forget(self, track_ids) -> None:
        """Drop the state of lost tracks (applied by the worker before its next job)."""
        self._forget.extend(track_ids)

    def reset(self) -> None:
        """Wait for a running job, drop its outcome and all reasoning state."""
        if self._future is not None:
            try:
                self._future.result()
            except Exception as exc:  # noqa: BLE001 - a dropped job's error does not stop the reset
                log.warning("occlusion job dropped at reset had failed: %s: %s", type(exc).__name__, exc)
            self._future = None
        self._forget.clear()
        self.reasoner.reset()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _run(self, job: ReasoningJob, forget: list[int]) -> ReasoningOutcome:
        with torch.inference_mode():  # thread-local: the caller's mode does not reach this thread
            if forget:
                self.reasoner.forget(forget)
            return reason(self.reasoner, job)


def _lower_priority(nice: int) -> None:
    """Linux schedules threads as tasks: a higher nice for this one leaves the CPU to the fast path."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):  # not Linux / not permitted: same priority, still correct
        pass


def reason(reasoner: OcclusionReasoner, job: ReasoningJob) -> ReasoningOutcome:
    """Run `reasoner` on `job`: maps, visibility of the job's points, region ratios per face."""
    start = time.perf_counter()
    result = reasoner(job.image, job.fit, job.K, job.track_ids, job.rois, deocclude=job.deocclude,
                      deocclude_when=job.deocclude_when)
    points_visible = result.points_visible(job.points, job.probe_radius_px)
    faces = [FaceOcclusion(points_visible[i, :68], float(result.occlusion_ratio[i]), *reasoner.region_dicts(result, i))
             for i in range(len(job.track_ids))]
    return ReasoningOutcome(job, result, points_visible, faces, (time.perf_counter() - start) * 1e3)
