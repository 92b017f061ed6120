"""`occface soak-ros --canned`, short (~30 s): the node process at 30 Hz, its RSS, drops, latency and
/diagnostics rate in the report and the plot (figures are real numbers; not a timed test)."""
import json
import math

import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels not installed (make ros)")
pytest.importorskip("occface_msgs.msg", reason="interfaces not built (tools/build_interfaces.sh)")

def _real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@pytest.mark.integration
@pytest.mark.slow
def test_soak_ros_reports_memory_growth_drops_latency_and_diagnostics(ros_env, tmp_path, capsys):
    from occface_ros.cli import main

    report_path, plot_path = tmp_path / "soak.json", tmp_path / "soak.png"
    code = main(["soak-ros", "--minutes", "0.5", "--canned", "--report", str(report_path), "--plot", str(plot_path)])
    out = capsys.readouterr().out
    assert code == 0
    r = json.loads(report_path.read_text())
    (line,) = [ln for ln in out.splitlines() if ln.startswith("soak-ros: ")]  # the one-line summary
    assert "RSS" in line and "MB/min" in line and f"dropped {r['dropped']}/{r['published']}" in line

    assert r["completed"] is True and r["node_exit_code"] == 0
    assert r["minutes"] == 0.5 and r["rate_hz"] == 30.0 and 29.0 <= r["soak_s"] <= 35.0
    assert r["warmup_s"] == pytest.approx(6.0)  # a fifth of the soak
    for key in ("rss_start_mb", "rss_warmup_end_mb", "rss_end_mb", "rss_peak_mb", "rss_growth_pct",
                "rss_growth_mb_per_min", "latency_p50_ms", "latency_p99_ms", "latency_max_ms", "drop_ratio",
                "diagnostics_per_s", "node_received_total", "node_processed_total"):
        assert _real(r[key]), (key, r[key])
    # the node answered: 30 Hz for 30 s published, most frames answered on ~/faces, every frame accounted for
    assert r["published"] >= 0.9 * 30 * 30
    assert r["answered"] >= 0.5 * r["published"] and r["answered"] + r["dropped"] == r["published"]
    assert r["node_processed_total"] > 0
    # a python process with rclpy, numpy and torch: tens to hundreds of MB, and a peak at least the last value
    assert 50 < r["rss_warmup_end_mb"] < 4000 and r["rss_peak_mb"] >= r["rss_end_mb"]
    assert r["rss_fit_samples"] >= 20  # one sample a second after the warm-up
    assert 0 < r["latency_p50_ms"] <= r["latency_p99_ms"] <= r["latency_max_ms"] < 6000
    # /diagnostics once per diagnostics.period_s (1 s): about one message a second
    assert 0.5 <= r["diagnostics_per_s"] <= 2.0
    # the caller's domain (the fixture's), loopback by default, as bench-ros
    assert r["ros_domain_id"] == int(ros_env["ROS_DOMAIN_ID"]) and r["discovery_range"] == "LOCALHOST"
    series = r["rss_series"]
    assert len(series["t_s"]) == len(series["rss_mb"]) >= 25 and series["t_s"] == sorted(series["t_s"])
    assert sum(r["latency_series"]["frames"]) == r["answered"]
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot_path.stat().st_size > 10_000


@pytest.mark.unit
def test_soak_growth_fit_is_the_slope_after_the_warm_up():
    """rss_growth on a made-up series: a warm-up jump, then a steady 0.5 MB/min leak."""
    import numpy as np

    from occface_ros.ros.soak import rss_growth

    t = np.arange(0.0, 601.0)  # 10 min at 1 Hz
    rss = np.where(t < 60, 100 + t, 200 + 0.5 * t / 60)
    g = rss_growth(t, rss, warmup_s=60)
    assert g["rss_growth_mb_per_min"] == pytest.approx(0.5, abs=1e-3)
    assert g["rss_warmup_end_mb"] == pytest.approx(200.5) and g["rss_end_mb"] == pytest.approx(205.0)
    assert g["rss_growth_pct"] == pytest.approx(100 * 4.5 / 200.5, abs=1e-3) and g["rss_fit_samples"] == 541
    assert rss_growth(t[:1], rss[:1], warmup_s=60)["rss_growth_mb_per_min"] is None  # nothing after the warm-up
