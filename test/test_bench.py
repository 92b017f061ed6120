"""`occface bench` produces the documented figures (not a timing assertion)."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_bench_json_has_stages_reference_and_ratio(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "occface_ros.cli", "bench", "--frames", "40", "--json", str(out)],
                       capture_output=True, text=True, cwd=REPO, timeout=900)
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    for stage in ("detection", "landmarks", "fit", "detection+landmarks", "detection+landmarks_alone", "end_to_end"):
        assert data["stages"][stage]["median_ms"] > 0
        assert data["stages"][stage]["p90_ms"] >= data["stages"][stage]["median_ms"]
    assert data["end_to_end_fps"] > 0
    assert data["faces_per_frame"] == 1.0
    assert data["reference"]["name"].startswith("mediapipe 0.10.21")
    assert data["reference"]["faces_per_frame"] == 1.0
    ref_ms = data["reference"]["median_ms"]
    assert abs(data["ratio_vs_reference"] - data["stages"]["detection+landmarks_alone"]["median_ms"] / ref_ms) < 1e-9
    assert abs(data["ratio_vs_reference_in_pipeline"] - data["stages"]["detection+landmarks"]["median_ms"]
               / ref_ms) < 1e-9
    assert "ratio ours/reference" in r.stdout
