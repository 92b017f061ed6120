"""`occface synth` and `occface train landmarks` (registered by occface_ros.cli)."""
from __future__ import annotations

import hashlib
import io
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_LANDMARK_CONFIG = Path(__file__).resolve().parents[2] / "config" / "training" / "landmarks.yaml"


def _teacher(progress: bool):
    from .photo_pool import training_photos
    from .samples import teacher_faces

    photos = training_photos()
    faces = teacher_faces(photos, progress=progress)
    if not faces:
        raise RuntimeError("FaceMesh found no face in the training photos: run `occface data fetch --pool`")
    return photos, faces


def sample_sheet(samples, path: Path, columns: int = 8) -> None:
    """A PNG grid of samples: the occluded input, visible landmarks green, hidden ones red."""
    import cv2

    from ..paths import atomic_write_bytes

    tiles = []
    for s in samples:
        tile = s.image.copy()
        if s.presence > 0:
            for (x, y, _z), seen in zip(s.landmarks468[::3], s.visible468[::3]):
                cv2.circle(tile, (int(round(x)), int(round(y))), 1, (60, 220, 60) if seen else (40, 40, 230), -1)
        label = ",".join(s.kinds) if s.kinds else ("clean" if s.presence > 0 else "no face")
        cv2.putText(tile, label[:28], (3, 186), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i:i + columns], 1) for i in range(0, len(tiles), columns)]
    ok, png = cv2.imencode(".png", np.concatenate(rows, 0))
    atomic_write_bytes(path, png.tobytes())


def cmd_synth(args) -> int:
    from tqdm import tqdm

    from ..paths import atomic_write_bytes
    from .landmarks import LandmarkTrainConfig
    from .samples import SampleConfig, SampleEngine

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    cfg = LandmarkTrainConfig.load(args.config)
    _, faces = _teacher(progress=not args.quiet)
    engine = SampleEngine(faces, SampleConfig.from_dict({**cfg.samples, "seed": args.seed}))
    started = time.perf_counter()
    samples = [engine.sample(i) for i in tqdm(range(args.count), desc="synth", unit="sample", disable=args.quiet)]
    rate = args.count / max(time.perf_counter() - started, 1e-9)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, image=np.stack([s.image for s in samples]), clean=np.stack([s.clean for s in samples]),
                        landmarks468=np.stack([s.landmarks468 for s in samples]),
                        visible468=np.stack([s.visible468 for s in samples]),
                        occluder_alpha=np.stack([s.occluder_alpha for s in samples]).astype(np.float16),
                        presence=np.array([s.presence for s in samples], np.float32))
    atomic_write_bytes(out / "samples.npz", buffer.getvalue())
    sample_sheet(samples[: min(len(samples), args.sheet)], out / "sample_sheet.png")
    print(f"{args.count} samples from {len(faces)} teacher faces, {rate:.0f} samples/s (one process) -> "
          f"{out / 'samples.npz'}, {out / 'sample_sheet.png'}", file=sys.stderr)
    return 0


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cmd_train_landmarks(args) -> int:
    from ..paths import atomic_write_bytes
    from .landmarks import LandmarkTrainConfig, train_landmarks
    from .photo_pool import manifest_digest

    cfg = LandmarkTrainConfig.load(args.config)
    if args.steps:
        cfg.steps = args.steps
    _, faces = _teacher(progress=not args.quiet)
    config_text = Path(args.config).read_text()
    record = {"command": "occface " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
              "config_file": str(args.config), "config_sha256": hashlib.sha256(config_text.encode()).hexdigest(),
              "photo_manifest_sha256": manifest_digest(), "git_commit": _git_commit()}
    result = train_landmarks(cfg, faces, args.output, resume=not args.restart, progress=not args.quiet,
                             provenance=record, device=args.device)
    print(f"step {result.step}: validation {result.figures}; FaceMesh {result.facemesh} -> {result.weights}",
          file=sys.stderr)
    if args.install and result.weights is not None:
        from ..landmarks.occnet import DEFAULT_WEIGHTS

        atomic_write_bytes(DEFAULT_WEIGHTS, result.weights.read_bytes())
        atomic_write_bytes(DEFAULT_WEIGHTS.with_suffix(".json"), result.weights.with_suffix(".json").read_bytes())
        print(f"installed {DEFAULT_WEIGHTS}", file=sys.stderr)
    return 0


def add_training_commands(sub) -> None:
    s = sub.add_parser("synth", help="training samples from the data engine: occluded face crops with whole-face labels")
    s.add_argument("--output", required=True, help="folder for samples.npz and sample_sheet.png")
    s.add_argument("--count", type=int, default=256)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--sheet", type=int, default=48, help="samples shown in sample_sheet.png")
    s.add_argument("--config", default=str(DEFAULT_LANDMARK_CONFIG), help="training YAML (its `samples` section)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_synth)

    t = sub.add_parser("train", help="train the learned stages").add_subparsers(dest="train_cmd", required=True)
    tl = t.add_parser("landmarks", help="the occlusion-robust landmark network, from FaceMesh's weights")
    tl.add_argument("--output", required=True, help="run folder (checkpoint.pt, curves.png, weights)")
    tl.add_argument("--config", default=str(DEFAULT_LANDMARK_CONFIG))
    tl.add_argument("--steps", type=int, help="override the config's steps")
    tl.add_argument("--restart", action="store_true", help="ignore an existing checkpoint in the run folder")
    tl.add_argument("--install", action="store_true", help="copy the final weights to the package's shipped weights")
    tl.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda when present)")
    tl.add_argument("--quiet", action="store_true")
    tl.set_defaults(func=cmd_train_landmarks)
