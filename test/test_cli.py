"""The `occface run` output contract on an image, a folder and a video; bad inputs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from occface_ros.app.clip import clip_frames
from occface_ros.app.samples import sample_path

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def occface(*args):
    return subprocess.run([sys.executable, "-m", "occface_ros.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, timeout=600)


def check_frame(path, width, height, expect_faces, expression_count=53):
    data = json.loads(path.read_text())
    assert data["image"] == {"width": width, "height": height}
    assert len(data["faces"]) >= expect_faces
    for face in data["faces"]:
        assert len(face["landmarks68"]) == 68 and len(face["landmarks68_visible"]) == 68
        assert all(len(p) == 2 for p in face["landmarks68"])
        assert np.array(face["pose"]["rotation"]).shape == (3, 3)
        assert len(face["pose"]["translation_m"]) == 3
        assert {"yaw_deg", "pitch_deg", "roll_deg"} <= set(face["pose"])
        assert len(face["expression"]) == expression_count and "jawOpen" in face["expression"]
        assert len(face["identity"]) == 100
        assert 0.0 <= face["occlusion_ratio"] <= 1.0
        x0, y0, x1, y1 = face["bbox"]
        assert 0 <= x0 < x1 and 0 <= y0 < y1
    return data


def test_run_on_an_image_writes_the_contract(tmp_path):
    out = tmp_path / "out"
    r = occface("run", "--input", sample_path("skimage", "astronaut.png"), "--output", out, "--write-meshes",
                "--write-overlay", "--quiet")
    assert r.returncode == 0, r.stderr
    data = check_frame(out / "frames" / "000000.json", 512, 512, 1)
    mesh = out / data["faces"][0]["mesh"]
    lines = mesh.read_text().splitlines()
    assert sum(line.startswith("v ") for line in lines) == 11248
    assert sum(line.startswith("f ") for line in lines) == 22288
    assert cv2.imread(str(out / "overlay" / "000000.jpg")).shape == (512, 512, 3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 1 and summary["frames_with_faces"] == 1
    assert not list(out.rglob("*.tmp*"))


def test_run_on_a_folder_and_a_video(tmp_path):
    frames = clip_frames(12)
    folder = tmp_path / "seq"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), f)
    r = occface("run", "--input", folder, "--output", tmp_path / "o1", "--quiet", "--sequence")
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in (tmp_path / "o1" / "frames").iterdir())
    assert names == [f"{i:06d}.json" for i in range(12)]
    ids = {json.loads((tmp_path / "o1" / "frames" / n).read_text())["faces"][0]["track_id"] for n in names}
    assert ids == {0}

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
    for f in frames:
        writer.write(f)
    writer.release()
    r = occface("run", "--input", video, "--output", tmp_path / "o2", "--write-overlay")
    assert r.returncode == 0, r.stderr
    for i in range(12):
        check_frame(tmp_path / "o2" / "frames" / f"{i:06d}.json", 640, 480, 1)
    cap = cv2.VideoCapture(str(tmp_path / "o2" / "overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12


@pytest.mark.parametrize("name, data", [("broken.jpg", b"\xff\xd8 not really"), ("broken.mp4", b"\x00" * 64)])
def test_unreadable_input_fails_cleanly(tmp_path, name, data):
    bad = tmp_path / name
    bad.write_bytes(data)
    out = tmp_path / "out"
    r = occface("run", "--input", bad, "--output", out)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "cannot read" in r.stderr
    assert not out.exists()


def test_missing_model_names_the_fix(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model:\n  path: {tmp_path / 'absent.npz'}\n")
    r = occface("run", "--input", sample_path("skimage", "astronaut.png"), "--output", tmp_path / "o",
                "--config", cfg)
    assert r.returncode == 2
    assert "occface models fetch" in r.stderr
    assert not (tmp_path / "o" / "frames" / "000000.json").exists()


def test_corrupt_or_missing_model_is_one_line(tmp_path):
    """A corrupt model file ($OCCFACE_ICT_MODEL or model.path) and a missing $OCCFACE_ICT_MODEL:
    exit 2, one line naming the file, the cause and the fix, nothing written."""
    bad = tmp_path / "x.npz"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 65536, dtype=np.uint8).tobytes())
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model:\n  path: {bad}\n")
    photo = sample_path("skimage", "astronaut.png")
    runs = {
        "env": (["run", "--input", photo, "--output", tmp_path / "o1"], {"OCCFACE_ICT_MODEL": str(bad)}),
        "config": (["run", "--input", photo, "--output", tmp_path / "o2", "--config", cfg], {}),
        "missing": (["run", "--input", photo, "--output", tmp_path / "o3"],
                    {"OCCFACE_ICT_MODEL": str(tmp_path / "absent.npz")}),
    }
    for name, (args, env) in runs.items():
        r = subprocess.run([sys.executable, "-m", "occface_ros.cli", *map(str, args)], capture_output=True,
                           text=True, cwd=REPO, timeout=600, env={**os.environ, **env})
        assert r.returncode == 2, (name, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("occface: error: ICT model "), (name, r.stderr)
        assert "Fix: " in lines[0] and "allow_pickle" not in lines[0] and "Traceback" not in r.stderr
        assert not list(tmp_path.glob("o*/frames/*.json"))
    assert str(bad) in r.stderr.replace(str(tmp_path / "absent.npz"), str(bad))


def test_folder_is_photos_by_default_and_frames_with_sequence(tmp_path):
    """The same photo twice after a broken PNG: as photos both give the same face (nothing carried
    over); with --sequence the second is tracked (warm start, identity evidence, smoothing)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    ok, data = cv2.imencode(".png", np.full((32, 32, 3), 90, np.uint8))
    (folder / "0_broken.png").write_bytes(data.tobytes()[:8] + b"\x00\x00\x01\x00garbage" * 30)
    for name in ("1.png", "2.png"):
        (folder / name).write_bytes(sample_path("skimage", "astronaut.png").read_bytes())
    # with the parser alone the two frames' fits coincide; the texture evidence of hands + appearance
    # carries over frames (what --sequence must keep and photos must not)
    config = tmp_path / "texture.yaml"
    config.write_text("occlusion:\n  visible_threshold: 0.5\n  appearance:\n    enabled: true\n  hands:\n"
                      "    enabled: true\n  parser:\n    enabled: false\n")
    faces = {}
    for mode, extra in (("photos", []), ("sequence", ["--sequence"])):
        r = occface("run", "--input", folder, "--output", tmp_path / mode, "--quiet", "--config", config, *extra)
        assert r.returncode == 0 and r.stderr == "", r.stderr  # no OpenCV/libpng lines about the broken PNG
        summary = json.loads((tmp_path / mode / "summary.json").read_text())
        assert summary["frames"] == 2 and summary["sequence"] == (mode == "sequence")
        assert len(summary["skipped_inputs"]) == 1 and "0_broken.png" in summary["skipped_inputs"][0]
        faces[mode] = [json.loads((tmp_path / mode / "frames" / f"{i:06d}.json").read_text())["faces"][0]
                       for i in range(2)]
    # photos: a new track per photo, and the same face from the same pixels
    assert [f.pop("track_id") for f in faces["photos"]] == [0, 1]
    assert faces["photos"][0] == faces["photos"][1]
    # frames: one track; the second frame is tracked, so it differs from the photo's own fit
    assert [f.pop("track_id") for f in faces["sequence"]] == [0, 0]
    assert faces["sequence"][0] == faces["photos"][0]
    assert faces["sequence"][1]["identity"] != faces["sequence"][0]["identity"]
    r = occface("run", "--input", folder, "--output", tmp_path / "dep", "--quiet", "--independent")
    assert r.returncode == 0 and r.stderr == ""  # the deprecated flag is the default now
    r = occface("run", "--input", folder, "--output", tmp_path / "both", "--sequence", "--independent")
    assert r.returncode == 2 and "not allowed with" in r.stderr


def test_run_writes_masks_parsing_and_deoccluded_image(tmp_path):
    """A blue block pasted over the astronaut's mouth: the mask finds it, the mouth landmarks are
    flagged occluded, the parsing restores the lips behind it (Algorithm 1)."""
    clean = cv2.imread(str(sample_path("skimage", "astronaut.png")))
    r = occface("run", "--input", sample_path("skimage", "astronaut.png"), "--output", tmp_path / "clean", "--quiet",
                "--write-masks")
    assert r.returncode == 0, r.stderr
    clean_mask = cv2.imread(str(tmp_path / "clean" / "masks" / "000000.png"), cv2.IMREAD_UNCHANGED) == 255
    lm = np.array(json.loads((tmp_path / "clean" / "frames" / "000000.json").read_text())["faces"][0]["landmarks68"])
    x0, y0 = np.floor(lm[48:60].min(0) - 6).astype(int)
    x1, y1 = np.ceil(lm[48:60].max(0) + 6).astype(int)
    occluded = clean.copy()
    occluded[y0:y1, x0:x1] = (220, 140, 40)  # BGR: a blue block over the mouth
    cv2.imwrite(str(tmp_path / "occluded.png"), occluded)
    out = tmp_path / "out"
    r = occface("run", "--input", tmp_path / "occluded.png", "--output", out, "--write-masks", "--write-deoccluded",
                "--quiet")
    assert r.returncode == 0, r.stderr
    data = check_frame(out / "frames" / "000000.json", 512, 512, 1)
    assert data["occlusion_mask"] == "masks/000000.png" and data["parsing"] == "parsing/000000.png"
    mask = cv2.imread(str(out / data["occlusion_mask"]), cv2.IMREAD_UNCHANGED)
    parsing = cv2.imread(str(out / data["parsing"]), cv2.IMREAD_UNCHANGED)
    deoccluded = cv2.imread(str(out / data["deoccluded"]))
    assert mask.shape == parsing.shape == (512, 512) and mask.dtype == parsing.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255} and parsing.max() <= 11
    block = np.zeros(mask.shape, bool)
    block[y0:y1, x0:x1] = True
    predicted = mask == 255
    # the clean photo's mask: little, and only above the brows (her fringe, if anything)
    face_pixels = (parsing > 0).sum()
    assert clean_mask.sum() < 0.1 * face_pixels and clean_mask[int(lm[33, 1]):].sum() < 0.01 * face_pixels
    new = predicted & ~clean_mask
    assert (new & block).sum() / new.sum() > 0.75  # what the block adds is the block (parser: 0.79)
    assert (predicted & block).sum() / block.sum() > 0.5  # much of the block is found (its rim is off-face)
    clean_parsing = cv2.imread(str(tmp_path / "clean" / "parsing" / "000000.png"), cv2.IMREAD_UNCHANGED)
    lips = np.isin(clean_parsing, [7, 8, 9]) & block
    assert np.isin(parsing[lips], [7, 8, 9]).mean() > 0.6  # M_gamma restores the lips behind the block
    face = data["faces"][0]
    assert sum(face["landmarks68_visible"][48:68]) <= 4 and sum(face["landmarks68_visible"][36:48]) >= 10
    assert face["occlusion_by_region"]["upper_lip"] > 0.8 and face["occlusion_by_region"]["left_eye"] < 0.2
    assert 0.03 < face["occlusion_ratio"] < 0.4
    assert deoccluded.shape == clean.shape
    assert np.array_equal(deoccluded[~predicted], occluded[~predicted])  # only occluded pixels change
    changed = np.abs(deoccluded.astype(int) - occluded).sum(-1) > 0
    assert changed[predicted].mean() > 0.9
