"""Health of the node as diagnostic_msgs/DiagnosticArray (input/output rate, latency, drops, errors).

`Health` is thread-safe: the subscription callback and the worker thread record events, the node's
timer builds the array every period (an error publishes at once only when it raises the level).
Levels come from `Thresholds` (node parameters `diagnostics.*`); the status message is the one
worst condition (the newest error among equals) and how many others there are; every held error
cause is in the values (`error.<cause>`).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

OK, WARN, ERROR, STALE = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR, DiagnosticStatus.STALE
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}


@dataclass
class Thresholds:
    """Node parameters diagnostics.<name>; a rate/ratio/latency threshold of 0 disables that check."""

    period_s: float = 1.0  # how often /diagnostics is published
    window_s: float = 5.0  # rates, drop ratio and latency percentiles over this sliding window
    input_rate_warn_hz: float = 5.0  # input rate below this (with frames in the window) -> WARN
    input_rate_error_hz: float = 0.0  # ... below this -> ERROR
    no_input_timeout_s: float = 5.0  # no image for this long -> WARN ("no images")
    latency_warn_ms: float = 100.0  # p99 receipt-to-publish latency above this -> WARN
    latency_error_ms: float = 500.0  # ... above this -> ERROR
    drop_ratio_warn: float = 0.1  # fraction of received frames dropped (stale) in the window -> WARN
    drop_ratio_error: float = 0.5  # ... -> ERROR
    error_hold_s: float = 2.0  # an image error keeps the input status at ERROR this long

    @classmethod
    def names(cls) -> list[str]:
        return list(cls.__dataclass_fields__)

    def validate(self, name: str, value: float) -> str | None:
        """None when `value` is acceptable for threshold `name`, else the reason."""
        if not np.isfinite(value):
            return f"diagnostics.{name} must be finite"
        if name in ("period_s", "window_s") and value <= 0:
            return f"diagnostics.{name} must be > 0"
        if value < 0:
            return f"diagnostics.{name} must be >= 0"
        if name.startswith("drop_ratio") and value > 1:
            return f"diagnostics.{name} is a fraction in [0, 1]"
        return None


def _summary(checks: list[tuple[int, float, str]]) -> tuple[int, str]:
    """(level, message) of (level, time, text) conditions: the worst, the newest among equals, plus a count."""
    if not checks:
        return OK, ""
    level, _, text = max(checks, key=lambda c: (c[0], c[1]))
    others = len(checks) - 1
    return level, text + (f" (+{others} more, see values)" if others else "")


NO_SAMPLE = "n/a"  # the value of a statistic with no finite sample in the window (never "nan")


def _percentile(values, q) -> float:
    """The q-th percentile of the finite values; nan when there is none (callers format it with _ms)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(np.percentile(v, q)) if v.size else float("nan")


def _ms(value: float) -> str:
    return f"{value:.1f}" if np.isfinite(value) else NO_SAMPLE


@dataclass
class Health:
    thresholds: Thresholds = field(default_factory=Thresholds)
    name: str = "occface_node"
    hardware_id: str = ""

    def __post_init__(self):
        self._lock = threading.Lock()
        self._received: deque = deque()  # receipt times (monotonic)
        self._dropped: deque = deque()  # times a stale frame was replaced
        self._published: deque = deque()  # (time, latency_ms, faces)
        self._stage: dict[str, deque] = {}
        self.totals = {"received": 0, "processed": 0, "dropped": 0, "image_errors": 0, "pipeline_errors": 0}
        self._errors: dict[str, tuple[float, str, int]] = {}  # cause -> (last time, message, count)
        self.extra: dict[str, str] = {}

    # --- events ---------------------------------------------------------------------------------
    def received(self, now: float | None = None) -> None:
        with self._lock:
            self._received.append(time.monotonic() if now is None else now)
            self.totals["received"] += 1

    def dropped(self, n: int = 1, now: float | None = None) -> None:
        with self._lock:
            for _ in range(n):
                self._dropped.append(time.monotonic() if now is None else now)
            self.totals["dropped"] += n

    def processed(self, latency_ms: float, faces: int, stage_ms: dict[str, float], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._published.append((now, float(latency_ms), int(faces)))
            self._add_stages(stage_ms, now)
            self.totals["processed"] += 1

    def stages(self, stage_ms: dict[str, float], now: float | None = None) -> None:
        """Stage times measured apart from a frame's publication (e.g. own-frame occlusion maps)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._add_stages(stage_ms, now)

    def _add_stages(self, stage_ms: dict[str, float], now: float) -> None:  # under self._lock
        for k, v in stage_ms.items():
            self._stage.setdefault(k, deque()).append((now, float(v)))

    def error(self, cause: str, message: str, kind: str = "image_errors", now: float | None = None) -> bool:
        """Record an error; True when this cause is new (log it), False when seen before."""
        with self._lock:
            last = self._errors.get(cause)
            self._errors[cause] = (time.monotonic() if now is None else now, message, (last[2] if last else 0) + 1)
            self.totals[kind] = self.totals.get(kind, 0) + 1
            return last is None

    # --- report ---------------------------------------------------------------------------------
    def _trim(self, now: float) -> None:
        cutoff = now - self.thresholds.window_s
        for dq in (self._received, self._dropped):
            while dq and dq[0] < cutoff:
                dq.popleft()
        while self._published and self._published[0][0] < cutoff:
            self._published.popleft()
        for dq in self._stage.values():
            while dq and dq[0][0] < cutoff:
                dq.popleft()

    def statuses(self, now: float | None = None) -> list[DiagnosticStatus]:
        th = self.thresholds
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            span = th.window_s
            n_in, n_drop, n_out = len(self._received), len(self._dropped), len(self._published)
            if n_in >= 2:
                span = max(1e-6, min(th.window_s, now - self._received[0]))
            in_rate = n_in / span if n_in else 0.0
            out_rate = n_out / span if n_out else 0.0
            last_in = self._received[-1] if self._received else None
            lat = [p[1] for p in self._published]
            faces = self._published[-1][2] if self._published else 0
            stages = {k: [v for _, v in dq] for k, dq in self._stage.items()}
            errors = {c: e for c, e in self._errors.items() if now - e[0] <= th.error_hold_s}
            all_errors = dict(self._errors)
            totals = dict(self.totals)
        drop_ratio = n_drop / n_in if n_in else 0.0

        # input status; conditions are (level, time, text): errors carry their time, the rest `now`
        checks: list[tuple[int, float, str]] = []
        if last_in is None:
            checks.append((WARN, now, "no images received yet" if totals["received"] == 0 else
                           f"no images for more than {th.window_s:g} s"))
        elif th.no_input_timeout_s > 0 and now - last_in > th.no_input_timeout_s:
            checks.append((WARN, now, f"no images for {now - last_in:.1f} s"))
        else:
            if th.input_rate_error_hz > 0 and in_rate < th.input_rate_error_hz:
                checks.append((ERROR, now, f"input rate {in_rate:.1f} Hz < {th.input_rate_error_hz:g} Hz"))
            elif th.input_rate_warn_hz > 0 and in_rate < th.input_rate_warn_hz:
                checks.append((WARN, now, f"input rate {in_rate:.1f} Hz < {th.input_rate_warn_hz:g} Hz"))
        if th.drop_ratio_error > 0 and drop_ratio >= th.drop_ratio_error and n_drop:
            checks.append((ERROR, now, f"dropping {100 * drop_ratio:.0f}% of frames"))
        elif th.drop_ratio_warn > 0 and drop_ratio >= th.drop_ratio_warn and n_drop:
            checks.append((WARN, now, f"dropping {100 * drop_ratio:.0f}% of frames"))
        for cause, (t, message, count) in errors.items():
            if not cause.startswith("pipeline"):
                checks.append((ERROR, t, f"{cause} ({count}x): {message}"))
        level, msg = _summary(checks)
        msg = msg or "receiving images"
        values = {
            "input_rate_hz": f"{in_rate:.2f}", "received_total": str(totals["received"]),
            "dropped_total": str(totals["dropped"]), "dropped_in_window": str(n_drop),
            "drop_ratio": f"{drop_ratio:.3f}", "image_errors_total": str(totals.get("image_errors", 0)),
        }
        for cause, (t, message, count) in all_errors.items():
            values[f"error.{cause}"] = f"{count}x, {now - t:.1f} s ago: {message}"
        input_status = self._status(f"{self.name}: input", level, msg, values)

        # processing status
        p99 = _percentile(lat, 99)
        checks = []
        if th.latency_error_ms > 0 and lat and p99 > th.latency_error_ms:
            checks.append((ERROR, now, f"p99 latency {p99:.0f} ms > {th.latency_error_ms:g} ms"))
        elif th.latency_warn_ms > 0 and lat and p99 > th.latency_warn_ms:
            checks.append((WARN, now, f"p99 latency {p99:.0f} ms > {th.latency_warn_ms:g} ms"))
        for cause, (t, message, count) in errors.items():
            if cause.startswith("pipeline"):
                checks.append((ERROR, t, f"{cause} ({count}x): {message}"))
        level, msg = _summary(checks)
        msg = msg or (f"{out_rate:.1f} Hz, {faces} face(s)" if lat else "idle")
        values = {
            "output_rate_hz": f"{out_rate:.2f}", "processed_total": str(totals["processed"]),
            "faces": str(faces), "latency_p50_ms": _ms(_percentile(lat, 50)), "latency_p99_ms": _ms(p99),
        }
        for stage, v in sorted(stages.items()):
            if v:  # a stage with no sample in the window (hands not run lately) is left out
                values[f"stage.{stage}_ms_p50"] = _ms(_percentile(v, 50))
        values.update(self.extra)
        return [input_status, self._status(f"{self.name}: processing", level, msg, values)]

    def _status(self, name, level, message, values) -> DiagnosticStatus:
        return DiagnosticStatus(level=level, name=name, message=message, hardware_id=self.hardware_id,
                                values=[KeyValue(key=k, value=v) for k, v in values.items()])

    def array(self, header) -> DiagnosticArray:
        return DiagnosticArray(header=header, status=self.statuses())
