"""`occface soak-ros`: the node at a fixed rate for minutes to hours: memory growth, drops, ~/faces latency, /diagnostics rate.

The node runs as its own process exactly as `occface bench-ros` starts it (bench.py: loopback-only
DDS honouring ROS_DOMAIN_ID, FacePipeline or `--canned`), is brought up until it answers, then
receives 640x480 frames of the demo clip at `rate_hz` for `minutes`, stamped with the wall clock.

Measured from outside, with memory bounded by the run's length only through compact arrays:
* the node process's RSS (/proc/<pid>/status VmRSS) once a second; its growth after the warm-up
  (the first `warmup_s`, default a fifth of the soak, at most 2 min: allocator pools, caches and
  lazy initialisation settle there) as % of the RSS at warm-up end and as MB/min (least-squares
  line through the samples after the warm-up);
* stamp-to-receipt latency of ~/faces (p50, p99, max) and drops: a frame whose ~/faces has not
  arrived `drop_after_s` after publication counts as dropped;
* /diagnostics arrays of this node per second, and the node's own totals from its last one.
"""
from __future__ import annotations

import math
import os
import struct
import sys
import textwrap
import threading
import time
from array import array
from pathlib import Path

import numpy as np

from .bench import NODE_NAMESPACE, start_node, start_probe, stop_node, wait_for_node
from .loopback import loopback_env

RSS_PERIOD_S = 1.0  # RSS sample period
MAX_WARMUP_S = 120.0
MAX_SERIES_POINTS = 600  # latency buckets in the report and the plot
PROGRESS_PERIOD_S = 60.0


def read_rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of process `pid` in MB (10^6 bytes), from /proc (Linux)."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = float(value.split()[0]) * 1024 / 1e6  # kB (KiB) -> MB
    return fields["VmRSS"], fields["VmHWM"]


def _stamp(raw: bytes) -> tuple[int, int] | None:
    """header.stamp of a serialized message whose first field is its header (FaceArray)."""
    if len(raw) < 12:
        return None
    sec, nsec = struct.unpack_from(("<" if raw[1] & 1 else ">") + "iI", raw, 4)
    return sec, nsec


class _SoakProbe:
    """~/faces (raw: only the stamp is read) matched against the frames still pending, and /diagnostics."""

    def __init__(self, node, t0_wall: float):
        from diagnostic_msgs.msg import DiagnosticArray
        from occface_msgs.msg import FaceArray
        from rclpy.qos import QoSProfile, QoSReliabilityPolicy

        qos = QoSProfile(depth=50, reliability=QoSReliabilityPolicy.RELIABLE)
        self.t0_wall = t0_wall
        self.lock = threading.Lock()
        self.pending: dict[tuple[int, int], float] = {}  # stamp -> wall time published
        self.answered = 0
        self.latency_t_s = array("d")  # receipt, s since t0_wall
        self.latency_ms = array("d")
        self.recording = False  # bring-up frames are answered but not measured
        self.diag_times: list[float] = []  # wall time of each /diagnostics array of this node
        self.diag_values: dict[str, dict[str, str]] = {}  # status name suffix -> its last values
        self.diag_levels: dict[str, int] = {}
        self.any_faces = threading.Event()
        self.subs = [node.create_subscription(FaceArray, f"{NODE_NAMESPACE}/faces", self._on_faces, qos, raw=True),
                     node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, qos)]

    def _on_faces(self, raw) -> None:
        now = time.time()
        st = _stamp(bytes(raw))
        self.any_faces.set()
        with self.lock:
            sent = self.pending.pop(st, None) if st is not None else None
            if sent is None or not self.recording:
                return
            self.answered += 1
            self.latency_t_s.append(now - self.t0_wall)
            self.latency_ms.append((now - sent) * 1e3)

    def _on_diagnostics(self, msg) -> None:
        mine = [s for s in msg.status if s.name.startswith(f"{NODE_NAMESPACE}: ")]
        if not mine:
            return
        now = time.time()
        with self.lock:
            if self.recording:
                self.diag_times.append(now)
            for s in mine:
                part = s.name.split(": ", 1)[1]
                self.diag_values[part] = {kv.key: kv.value for kv in s.values}
                self.diag_levels[part] = int.from_bytes(s.level, "little") if isinstance(s.level, bytes) else int(s.level)

    def sent(self, stamp: tuple[int, int], wall: float) -> None:
        with self.lock:
            self.pending[stamp] = wall

    def expire(self, older_than_wall: float) -> int:
        """Forget frames published before `older_than_wall` still unanswered; how many (dropped)."""
        with self.lock:
            gone = [st for st, t in self.pending.items() if t < older_than_wall]
            for st in gone:
                del self.pending[st]
        return len(gone)


def _pct(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if len(values) else None


def _num(v: str | None) -> float | None:
    try:
        return float(v) if v is not None else None
    except ValueError:  # "n/a"
        return None


def _latency_series(t_s: np.ndarray, ms: np.ndarray, soak_s: float) -> dict:
    """p50 / p99 per time bucket (at most MAX_SERIES_POINTS buckets, at least 1 s each)."""
    bucket_s = max(1.0, soak_s / MAX_SERIES_POINTS)
    out: dict[str, list] = {"bucket_s": bucket_s, "t_s": [], "p50_ms": [], "p99_ms": [], "frames": []}
    if not len(t_s):
        return out
    idx = np.floor(t_s / bucket_s).astype(np.int64)
    order = np.argsort(idx, kind="stable")
    idx, ms_sorted = idx[order], ms[order]
    bounds = np.flatnonzero(np.diff(idx)) + 1
    for b, chunk in zip(np.split(idx, bounds), np.split(ms_sorted, bounds)):
        out["t_s"].append(round((b[0] + 0.5) * bucket_s, 2))
        out["p50_ms"].append(round(float(np.percentile(chunk, 50)), 2))
        out["p99_ms"].append(round(float(np.percentile(chunk, 99)), 2))
        out["frames"].append(int(len(chunk)))
    return out


def rss_growth(t_s: np.ndarray, rss_mb: np.ndarray, warmup_s: float) -> dict:
    """RSS at warm-up end and at the end, growth in % of the former and MB/min (least-squares line
    through the samples from the warm-up end on; None with fewer than 2 samples there)."""
    after = t_s >= warmup_s
    if not after.any():
        return {"rss_warmup_end_mb": None, "rss_end_mb": None, "rss_growth_pct": None,
                "rss_growth_mb_per_min": None, "rss_fit_samples": 0}
    start, end = float(rss_mb[after][0]), float(rss_mb[-1])
    slope = None
    if after.sum() >= 2 and np.ptp(t_s[after]) > 0:
        slope = float(np.polyfit(t_s[after] / 60.0, rss_mb[after], 1)[0])
    return {"rss_warmup_end_mb": round(start, 2), "rss_end_mb": round(end, 2),
            "rss_growth_pct": round(100.0 * (end - start) / start, 3),
            "rss_growth_mb_per_min": None if slope is None else round(slope, 4),
            "rss_fit_samples": int(after.sum())}


def run_soak_ros(minutes: float, rate_hz: float = 30.0, canned: bool = False, config: str | None = None,
                 node_args: list[str] | None = None, frames: int = 60, warmup_s: float | None = None,
                 drop_after_s: float = 5.0, verbose: bool = True) -> dict:
    """Run the soak; returns the report (summary figures and the time series)."""
    if not minutes > 0 or not rate_hz > 0:
        raise ValueError(f"soak-ros needs minutes > 0 and rate > 0 Hz, got {minutes} min at {rate_hz} Hz")
    if not os.path.exists(f"/proc/{os.getpid()}/status"):
        raise RuntimeError("soak-ros reads the node's memory from /proc/<pid>/status (Linux only)")
    soak_s = 60.0 * float(minutes)
    warmup_s = min(MAX_WARMUP_S, 0.2 * soak_s) if warmup_s is None else float(warmup_s)
    if not 0 <= warmup_s < soak_s:
        raise ValueError(f"soak-ros: the warm-up ({warmup_s:g} s) must be shorter than the soak ({soak_s:g} s)")
    env = loopback_env()
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from ..app.clip import clip_frames
    from .image_conversion import fill_image_msg

    def log(text):
        if verbose:
            print(text, file=sys.stderr, flush=True)

    proc, node_log = start_node(env, canned=canned, config=config, node_args=node_args)
    graph = start_probe("occface_soak_probe", lambda node: _SoakProbe(node, time.time()))
    probe, pub = graph.probe, graph.publisher
    msgs = [fill_image_msg(Image(), f, "bgr8", Header(frame_id="soak_camera")) for f in clip_frames(frames)]
    report: dict = {"pipeline": "CannedPipeline (the ROS layer alone)" if canned else "FacePipeline",
                    "image": f"{msgs[0].width}x{msgs[0].height} bgr8", "rate_hz": rate_hz, "minutes": minutes,
                    "warmup_s": round(warmup_s, 2), "drop_after_s": drop_after_s, "node_pid": proc.pid,
                    "ros_domain_id": int(env["ROS_DOMAIN_ID"]),
                    "discovery_range": env["ROS_AUTOMATIC_DISCOVERY_RANGE"]}
    counter = [0]

    def publish_one():
        msg = msgs[counter[0] % len(msgs)]
        counter[0] += 1
        now = time.time()
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(now), int((now % 1) * 1e9)
        probe.sent((msg.header.stamp.sec, msg.header.stamp.nanosec), now)
        pub.publish(msg)

    rss_t, rss_mb = array("d"), array("d")
    peak_mb = 0.0
    published = dropped = 0
    died = False
    try:
        wait_for_node(pub, proc, node_log)
        log("soak-ros: node up; bringing it up to answering frames")
        bring_up_deadline = time.monotonic() + 120
        while not probe.any_faces.is_set():
            if proc.poll() is not None or time.monotonic() > bring_up_deadline:
                raise RuntimeError("occface-node never answered a frame:\n" + "".join(list(node_log)[-30:]))
            publish_one()
            time.sleep(0.1)
        time.sleep(1.0)
        probe.expire(time.time() + 1)  # bring-up frames are not measured
        log(f"soak-ros: {rate_hz:g} Hz for {minutes:g} min ({warmup_s:g} s warm-up)")
        period = 1.0 / rate_hz
        t0_wall = time.time()
        with probe.lock:
            probe.t0_wall, probe.recording = t0_wall, True
        t_start = t_next = time.perf_counter()
        end = t_start + soak_s
        next_sample = t_start
        next_progress = t_start + PROGRESS_PERIOD_S
        while t_next < end:
            publish_one()
            published += 1
            t_next += period
            now = time.perf_counter()
            if now >= next_sample:
                next_sample += RSS_PERIOD_S
                if proc.poll() is not None:
                    died = True
                    break
                rss, hwm = read_rss_mb(proc.pid)
                rss_t.append(now - t_start)
                rss_mb.append(rss)
                peak_mb = max(peak_mb, hwm)
                dropped += probe.expire(time.time() - drop_after_s)
            if verbose and now >= next_progress:
                next_progress += PROGRESS_PERIOD_S
                log(f"  {(now - t_start) / 60:.1f} min: RSS {rss_mb[-1]:.1f} MB, {dropped} dropped of {published}")
            delay = t_next - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        soak_done_s = time.perf_counter() - t_start
        if not died:
            wait_until = time.monotonic() + drop_after_s  # the last frames' answers
            while probe.pending and time.monotonic() < wait_until:
                time.sleep(0.05)
            if proc.poll() is None:
                rss, hwm = read_rss_mb(proc.pid)
                rss_t.append(time.perf_counter() - t_start)
                rss_mb.append(rss)
                peak_mb = max(peak_mb, hwm)
            else:
                died = True
        with probe.lock:
            probe.recording = False
            dropped += len(probe.pending)
            probe.pending.clear()
            lat_t = np.frombuffer(probe.latency_t_s, np.float64).copy() if len(probe.latency_t_s) else np.zeros(0)
            lat_ms = np.frombuffer(probe.latency_ms, np.float64).copy() if len(probe.latency_ms) else np.zeros(0)
            answered = probe.answered
            diag_count = sum(1 for t in probe.diag_times if t0_wall <= t <= t0_wall + soak_done_s)
            diag_values = {k: dict(v) for k, v in probe.diag_values.items()}
            diag_levels = dict(probe.diag_levels)
    finally:
        graph.close()
        report["node_exit_code"] = stop_node(proc)
    t_arr, rss_arr = np.asarray(rss_t), np.asarray(rss_mb)
    inp, processing = diag_values.get("input", {}), diag_values.get("processing", {})
    report.update({
        "completed": not died, "soak_s": round(soak_done_s, 2), "published": published, "answered": answered,
        "dropped": dropped, "drop_ratio": round(dropped / max(1, published), 5),
        "latency_p50_ms": _pct(lat_ms, 50), "latency_p99_ms": _pct(lat_ms, 99),
        "latency_max_ms": round(float(lat_ms.max()), 2) if len(lat_ms) else None,
        "rss_start_mb": round(float(rss_arr[0]), 2) if len(rss_arr) else None,
        **rss_growth(t_arr, rss_arr, warmup_s),
        "rss_peak_mb": round(peak_mb, 2) if peak_mb else None,
        "diagnostics_messages": diag_count, "diagnostics_per_s": round(diag_count / max(soak_done_s, 1e-9), 3),
        "node_received_total": _num(inp.get("received_total")), "node_dropped_total": _num(inp.get("dropped_total")),
        "node_processed_total": _num(processing.get("processed_total")),
        "node_diagnostics_levels": diag_levels,
        "rss_series": {"t_s": [round(float(t), 2) for t in t_arr], "rss_mb": [round(float(r), 2) for r in rss_arr]},
        "latency_series": _latency_series(lat_t, lat_ms, soak_done_s),
    })
    if died:
        report["node_log_tail"] = "".join(list(node_log)[-30:])
    return report


def summary_line(r: dict) -> str:
    """One line: the figures a soak is judged by."""
    def f(v, fmt):
        return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)

    status = "" if r.get("completed") else " NODE DIED;"
    return (f"{r['rate_hz']:g} Hz for {r['soak_s'] / 60:.2f} min ({r['pipeline'].split(' ')[0]}):{status} "
            f"RSS {f(r['rss_warmup_end_mb'], '.1f')} -> {f(r['rss_end_mb'], '.1f')} MB "
            f"({f(r['rss_growth_pct'], '+.2f')}%, {f(r['rss_growth_mb_per_min'], '+.3f')} MB/min after "
            f"{r['warmup_s']:g} s warm-up), dropped {r['dropped']}/{r['published']}, ~/faces p50 "
            f"{f(r['latency_p50_ms'], '.1f')} / p99 {f(r['latency_p99_ms'], '.1f')} ms, "
            f"/diagnostics {f(r['diagnostics_per_s'], '.2f')} msg/s")


def write_soak_plot(path: Path, r: dict) -> None:
    """PNG (matplotlib, Agg): the node's RSS with the fitted line after the warm-up, and ~/faces latency over time."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..paths import atomic_write_bytes

    fig, (ax_rss, ax_lat) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    t_min = np.asarray(r["rss_series"]["t_s"], np.float64) / 60.0
    rss = np.asarray(r["rss_series"]["rss_mb"], np.float64)
    warm_min = r["warmup_s"] / 60.0
    ax_rss.plot(t_min, rss, lw=1.2, color="#3182bd", label="node RSS")
    ax_rss.axvspan(0, warm_min, color="0.9", label="warm-up")
    slope = r["rss_growth_mb_per_min"]
    after = t_min >= warm_min
    if slope is not None and after.sum() >= 2:
        a, b = np.polyfit(t_min[after], rss[after], 1)
        ax_rss.plot(t_min[after], a * t_min[after] + b, "--", color="#e6550d", lw=1,
                    label=f"fit: {slope:+.3f} MB/min")
    ax_rss.set_ylabel("RSS (MB)")
    ax_rss.legend(fontsize=8, loc="lower right")
    lat = r["latency_series"]
    lt = np.asarray(lat["t_s"], np.float64) / 60.0
    ax_lat.plot(lt, lat["p50_ms"], lw=1, color="#31a354", label="p50")
    ax_lat.plot(lt, lat["p99_ms"], lw=1, color="#e6550d", label="p99")
    ax_lat.set_ylabel(f"~/faces latency (ms, per {lat['bucket_s']:g} s)")
    ax_lat.set_xlabel("minutes")
    ax_lat.legend(fontsize=8, loc="upper right")
    fig.suptitle("\n".join(textwrap.wrap("occface soak-ros: " + summary_line(r), 120)), fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
