"""`occface bench-ros` machinery, short, with the stand-in pipeline (figures are not asserted: not a timed test)."""
import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels not installed (make ros)")
pytest.importorskip("occface_msgs.msg", reason="interfaces not built (tools/build_interfaces.sh)")


def test_bench_ros_reports_latency_per_topic_and_drops():
    from occface_ros.ros.bench import run_bench_ros

    r = run_bench_ros(duration_s=2.0, rate_hz=10.0, fake=True, find_peak=False, frames=4, verbose=False)
    fixed = r["fixed_rate"]
    assert fixed["published"] >= 15 and 0 <= fixed["dropped"] <= fixed["published"]
    for topic in ("faces", "head_poses", "occlusion_mask", "parsing", "mesh_markers", "tf"):
        assert fixed["latency"][topic]["received"] > 0, topic
        assert fixed["latency"][topic]["p50_ms"] > 0
    assert r["node_exit_code"] == 0
