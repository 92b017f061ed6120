"""/diagnostics values: a statistic without a sample reads "n/a", never "nan"."""
import math

import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels not installed (make ros)")

from occface_ros.ros.diagnostics import NO_SAMPLE, Health, Thresholds  # noqa: E402

pytestmark = pytest.mark.unit


def _values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def _no_nan(values: dict[str, str]) -> bool:
    return all(v.strip().lower() not in ("nan", "-nan", "inf", "-inf") for v in values.values())


def test_idle_node_reports_no_sample_not_nan():
    h = Health(Thresholds())
    inp, proc = h.statuses(now=100.0)  # nothing ever received
    values = _values(proc)
    assert values["latency_p50_ms"] == values["latency_p99_ms"] == NO_SAMPLE == "n/a"
    assert _no_nan(values) and _no_nan(_values(inp))
    assert proc.message == "idle"


def test_latency_percentiles_after_the_window_empties():
    h = Health(Thresholds(window_s=5.0, input_rate_warn_hz=0))
    h.received(now=1.0)
    h.processed(42.0, 1, {"fit": 5.0, "hand_detection": 3.0}, now=1.0)
    values = _values(h.statuses(now=2.0)[1])
    assert values["latency_p50_ms"] == "42.0" and values["stage.hand_detection_ms_p50"] == "3.0"
    values = _values(h.statuses(now=20.0)[1])  # the window has no frame left
    assert values["latency_p50_ms"] == values["latency_p99_ms"] == NO_SAMPLE
    assert "stage.hand_detection_ms_p50" not in values and _no_nan(values)


def test_non_finite_samples_are_not_samples():
    h = Health(Thresholds(input_rate_warn_hz=0))
    h.received(now=1.0)
    h.processed(float("nan"), 1, {"occlusion_mask_age": float("nan"), "fit": float("inf")}, now=1.0)
    values = _values(h.statuses(now=1.5)[1])
    assert values["latency_p50_ms"] == values["stage.occlusion_mask_age_ms_p50"] == values["stage.fit_ms_p50"] == \
        NO_SAMPLE
    h.processed(10.0, 1, {"occlusion_mask_age": 30.0}, now=1.2)
    values = _values(h.statuses(now=1.5)[1])
    assert values["latency_p50_ms"] == "10.0" and values["stage.occlusion_mask_age_ms_p50"] == "30.0"
    assert all(math.isfinite(float(values[k])) for k in ("latency_p50_ms", "latency_p99_ms"))
