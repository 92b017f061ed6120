"""`occface bench`: figures checked against what this test measures itself (not timing thresholds).

* in-process with a stand-in reference of known speed (it sleeps REFERENCE_MS per frame): the
  ratio's direction (ours/reference), the bracketing of our timed loop by the two reference runs,
  and our end-to-end times against the wall time of each FacePipeline.process call as timed here;
* the command line with MediaPipe's own pipeline (.venv-ref): the JSON carries the reference's
  figures, both find the one face of the clip, and the printed report is the JSON's.
"""
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
REFERENCE_MS = 80.0  # the stand-in reference's time per frame: several times our detection + landmarks

STAND_IN_REFERENCE = '''#!{python}
"""Called as the reference venv's python: SCRIPT FRAMES.npy OUT.json LANDMARKS.npy WARMUP,
or `-c PROBE` (the check that it imports MediaPipe: it answers yes)."""
import json, sys, time
if sys.argv[1] == "-c":
    sys.exit(0)
import numpy as np
frames_path, out_path, lms_path = sys.argv[2:5]
n = len(np.load(frames_path, allow_pickle=False))
t_start = time.time()
times = []
for _ in range(n):
    t0 = time.perf_counter()
    time.sleep({seconds})
    times.append((time.perf_counter() - t0) * 1e3)
with open(out_path, "w") as fh:
    json.dump({{"name": "stand-in", "per_frame_ms": times}}, fh)
np.save(lms_path, np.full((n, 468, 3), np.nan, np.float32))
with open({log!r}, "a") as fh:
    fh.write(f"{{t_start}} {{time.time()}}\\n")
'''


def test_bench_ratio_direction_bracketing_and_frame_times(tmp_path, monkeypatch):
    from occface_ros.app import bench
    from occface_ros.pipeline import FacePipeline

    log = tmp_path / "reference_runs.txt"
    stand_in = tmp_path / "python"
    stand_in.write_text(STAND_IN_REFERENCE.format(python=sys.executable, seconds=REFERENCE_MS / 1e3, log=str(log)))
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("OCCFACE_REF_PYTHON", str(stand_in))

    calls = []  # (start wall time, seconds) of every FacePipeline.process call, timed here
    process = FacePipeline.process

    def timed_process(self, image_bgr, timestamp_s):
        t0 = time.perf_counter()
        out = process(self, image_bgr, timestamp_s)
        calls.append((time.time(), time.perf_counter() - t0))
        return out

    monkeypatch.setattr(FacePipeline, "process", timed_process)
    frames, warmup = 12, 4
    out = bench.run_bench(num_frames=frames, warmup=warmup, verbose=False)

    assert len(calls) == warmup + frames
    timed = np.array([s for _, s in calls[warmup:]]) * 1e3
    e2e = out["stages"]["end_to_end"]
    # the reported end-to-end figures are the timed frames' (not the warm-up's), in ms
    assert e2e["median_ms"] == pytest.approx(np.median(timed), rel=0.05, abs=0.5)
    assert e2e["mean_ms"] == pytest.approx(timed.mean(), rel=0.05, abs=0.5)
    assert out["end_to_end_fps"] == pytest.approx(1e3 / timed.mean(), rel=0.05)
    assert out["stages"]["detection+landmarks"]["median_ms"] <= e2e["median_ms"]
    assert out["stages"]["end_to_end_without_occlusion"]["median_ms"] <= e2e["median_ms"] + 1e-9
    assert out["faces_per_frame"] == 1.0

    # the reference ran once before and once after our timed loop, and its figures pool both
    runs = [tuple(map(float, line.split())) for line in log.read_text().splitlines()]
    assert len(runs) == 2 and out["reference"]["runs"] == 2
    first_timed, last_timed = calls[warmup][0], calls[-1][0]
    assert runs[0][1] <= first_timed and runs[1][0] >= last_timed
    ref = out["reference"]
    assert ref["name"] == "stand-in" and ref["faces_per_frame"] == 0.0
    assert REFERENCE_MS <= ref["median_ms"] < 1.5 * REFERENCE_MS
    # ours / reference: the stand-in is far slower than our detection + landmarks, so both ratios
    # are well below 1 (reference / ours would be well above)
    ours_alone = out["stages"]["detection+landmarks_alone"]["median_ms"]
    assert 0 < ours_alone < REFERENCE_MS / 2
    assert 0 < out["ratio_vs_reference"] < 0.5 and 0 < out["ratio_vs_reference_in_pipeline"] < 0.5
    assert out["ratio_vs_reference"] == pytest.approx(ours_alone / ref["median_ms"])


def test_bench_cli_against_mediapipe_reports_the_reference(tmp_path):
    if not (os.environ.get("OCCFACE_REF_PYTHON") or (REPO / ".venv-ref" / "bin" / "python").exists()):
        pytest.skip("reference venv missing (make venv-ref)")
    out = tmp_path / "bench.json"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "occface_ros.cli", "bench", "--frames", "40", "--json", str(out)],
                       capture_output=True, text=True, cwd=REPO, timeout=900)
    wall_s = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert data["frames"] == 40 and data["frame_size"] == [640, 480] and data["faces_per_frame"] == 1.0
    for stage in ("detection", "landmarks", "fit", "detection+landmarks", "detection+landmarks_alone", "end_to_end"):
        assert 0 < data["stages"][stage]["median_ms"] <= data["stages"][stage]["p90_ms"], stage
    assert 40 / data["end_to_end_fps"] < wall_s  # the timed loop ran inside this process's lifetime
    ref = data["reference"]
    assert ref["name"].startswith("mediapipe 0.10.21") and ref["runs"] == 2
    assert ref["faces_per_frame"] == 1.0  # MediaPipe finds the same one face on every frame
    assert 0 < ref["median_ms"] <= ref["p90_ms"]
    # the report prints the JSON's figures
    assert f"ratio ours/reference (detection+landmarks, median): {data['ratio_vs_reference']:.2f}" in r.stdout
    assert f"median {ref['median_ms']:.2f} ms" in r.stdout


@pytest.mark.parametrize("reference", ["missing", "broken"])
def test_bench_without_a_working_reference_fails_in_one_line_before_the_work(tmp_path, reference):
    python = tmp_path / "python"
    if reference == "broken":  # a venv whose MediaPipe does not import
        python.write_text("#!/bin/sh\necho 'Traceback (most recent call last):' >&2\n"
                          "echo \"ModuleNotFoundError: No module named 'mediapipe'\" >&2\nexit 1\n")
        python.chmod(0o755)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "occface_ros.cli", "bench", "--frames", "300"], capture_output=True,
                       text=True, cwd=REPO, timeout=300, env={**os.environ, "OCCFACE_REF_PYTHON": str(python)})
    wall_s = time.perf_counter() - t0
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("occface: error: MediaPipe reference"), r.stderr
    assert "run `make venv-ref`" in lines[0] and "--no-reference" in lines[0]
    if reference == "broken":
        assert "No module named 'mediapipe'" in lines[0]
    # before the work: 300 frames through the pipeline would take well over this on any machine here
    assert wall_s < 60
