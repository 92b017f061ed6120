"""`occface bench-ros --canned` machinery, short: the node process with CannedPipeline, every output
topic timed (figures are not asserted: not a timed test)."""
import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels not installed (make ros)")
pytest.importorskip("occface_msgs.msg", reason="interfaces not built (tools/build_interfaces.sh)")

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bench_ros_reports_latency_per_topic_and_drops(ros_env):
    from occface_ros.ros.bench import run_bench_ros

    duration_s = 2.0
    r = run_bench_ros(duration_s=duration_s, rate_hz=10.0, canned=True, find_peak=False, frames=4, verbose=False)
    assert r["pipeline"].startswith("CannedPipeline")
    fixed = r["fixed_rate"]
    assert fixed["published"] >= 15 and 0 <= fixed["dropped"] <= fixed["published"]
    for topic in ("faces", "head_poses", "occlusion_mask", "parsing", "mesh_markers", "tf"):
        lat = fixed["latency"][topic]
        assert 0 < lat["received"] <= fixed["published"], topic
        # stamp-to-receipt of frames published during the trial, received before its end + 1 s
        assert 0 < lat["p50_ms"] <= lat["p99_ms"] < (duration_s + 1.0) * 1e3, topic
    assert r["node_exit_code"] == 0
    # the caller's domain (here the fixture's), never a random one beside it; loopback by default
    assert r["ros_domain_id"] == int(ros_env["ROS_DOMAIN_ID"]) and r["discovery_range"] == "LOCALHOST"
