"""Occlusion reasoning in a worker thread, for live use (`occlusion.background: true`).

The reasoning costs several camera frames on a small CPU. Run inline it stalls the frame it runs
on (the node then drops frames and its p99 latency is the reasoning time). In the background,
the fast path (tracking, landmarks, fit, smoothing) keeps the camera rate. Each frame it:
`collect()`s the last finished job (visibility, region ratios, maps: those of a frame some
frames back) and, when the worker is idle, `submit()`s the current frame. With
`occlusion.background_maps: own_frame` (`every_frame=True`) every frame is submitted and the worker
hands each frame's outcome to a listener as soon as it is reasoned (the node publishes that frame's
maps with that frame's header: masks of age 0, a little later than the faces). Only the worker touches
the reasoner (track textures, hand tracks); lost tracks are forgotten at its next job.
`occface run`, `eval`, `bench` and `bag` reason inline, frame by frame (deterministic files).
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable

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
    """One worker thread running `reasoner` on submitted frames (see the module doc).

    `every_frame=False`: a frame is submitted only when the worker is idle (no job running, no
    outcome uncollected); the fast path then carries the last outcome's maps.
    `every_frame=True`: submit() never waits: a frame submitted while a job runs waits for the
    worker, replacing a frame still waiting (`skipped` counts those), so the worker reasons on one
    frame after another as long as it keeps up; `listener(outcome)` is called in the worker thread
    as each job ends (e.g. to publish that frame's maps with that frame's header), and collect()
    returns the newest outcome."""

    def __init__(self, reasoner: OcclusionReasoner, nice: int = 10, switch_interval_s: float = 5e-4,
                 every_frame: bool = False):
        self.reasoner = reasoner
        self.every_frame = every_frame
        self.listener: Callable[[ReasoningOutcome], None] | None = None
        if switch_interval_s:
            # the fast path releases the GIL in every torch op; taking it back from a worker that
            # runs Python waits up to the switch interval (5 ms by default) each time
            sys.setswitchinterval(min(sys.getswitchinterval(), switch_interval_s))
        self.skipped = 0  # frames replaced while waiting (every_frame)
        self._cond = threading.Condition()
        self._waiting: ReasoningJob | None = None  # submitted, not started
        self._running = False
        self._done: ReasoningOutcome | BaseException | None = None  # finished, not collected
        self._forget: list[int] = []
        self._stop = False
        self._thread = threading.Thread(target=self._work, args=(nice,), name="occface_occlusion", daemon=True)
        self._thread.start()

    def idle(self) -> bool:
        """No job waiting or running and no outcome waiting to be collected."""
        with self._cond:
            return self._idle()

    def _idle(self) -> bool:  # under self._cond
        return self._waiting is None and not self._running and self._done is None

    def accepts(self) -> bool:
        """submit() may be called now: always with every_frame, else when idle()."""
        return self.every_frame or self.idle()

    def wait(self, timeout_s: float | None = None) -> None:
        """Block until no job is waiting or running; the last outcome stays for collect()."""
        with self._cond:
            self._cond.wait_for(lambda: self._waiting is None and not self._running, timeout_s)

    def submit(self, job: ReasoningJob) -> None:
        """Reason on `job` (see the class doc for when this may be called)."""
        with self._cond:
            if not self.every_frame and not self._idle():
                raise RuntimeError("BackgroundReasoner.submit: the previous job is not collected")
            if self._waiting is not None:
                self.skipped += 1
            self._waiting = job
            self._cond.notify_all()

    def collect(self) -> ReasoningOutcome | None:
        """The newest finished job's outcome (once), None when there is none. Errors of the job are
        raised here, in the caller's thread."""
        with self._cond:
            done, self._done = self._done, None
        if isinstance(done, BaseException):
            raise done
        return done

    def forget(self, track_ids) -> None:
        """Drop the state of lost tracks (applied by the worker before its next job)."""
        with self._cond:
            self._forget.extend(track_ids)

    def reset(self) -> None:
        """Drop a waiting job, wait for a running one, drop its outcome and all reasoning state."""
        with self._cond:
            self._waiting = None
            self._cond.wait_for(lambda: not self._running)
            done, self._done = self._done, None
            self._forget.clear()
            self.reasoner.reset()
        if isinstance(done, Exception):
            log.warning("occlusion job dropped at reset had failed: %s: %s", type(done).__name__, done)

    def close(self) -> None:
        """Drop a waiting job, let a running one end, stop the thread."""
        with self._cond:
            self._stop, self._waiting = True, None
            self._cond.notify_all()
        self._thread.join()

    def _work(self, nice: int) -> None:
        _lower_priority(nice)
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop or self._waiting is not None)
                if self._stop:
                    return
                job, self._waiting, self._running = self._waiting, None, True
                forget, self._forget = self._forget, []
            try:
                with torch.inference_mode():  # thread-local: the caller's mode does not reach this thread
                    if forget:
                        self.reasoner.forget(forget)
                    done = reason(self.reasoner, job)
                listener = self.listener
                if listener is not None:
                    try:
                        listener(done)
                    except Exception:  # noqa: BLE001 - the listener's failure is its own; reasoning goes on
                        log.exception("occlusion outcome listener failed")
            except Exception as exc:  # noqa: BLE001 - raised to the caller by collect()
                done = exc
            with self._cond:
                self._done, self._running = done, False
                self._cond.notify_all()


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
