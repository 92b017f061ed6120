"""`occface synth` and `occface train landmarks | parser | deocclude` (registered by occface_ros.cli)."""
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
DEFAULT_PARSER_CONFIG = Path(__file__).resolve().parents[2] / "config" / "training" / "parser.yaml"
DEFAULT_DEOCCLUDE_CONFIG = Path(__file__).resolve().parents[2] / "config" / "training" / "deocclude.yaml"


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
        label = f"render {label}" if s.source == "render" else label
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
    sample_cfg = SampleConfig.from_dict({**cfg.samples, "seed": args.seed})
    heads = None
    if sample_cfg.render_fraction > 0:
        from .common import head_renderer, split_faces

        train_faces = split_faces(faces, cfg.val_identity_fraction, cfg.seed)[0]
        heads = head_renderer(train_faces, cfg.render_textures, progress=not args.quiet)
    engine = SampleEngine(faces, sample_cfg, heads)
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


def _provenance(args) -> dict:
    from .photo_pool import manifest_digest

    config_text = Path(args.config).read_text()
    return {"command": "occface " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "config_file": str(args.config), "config_sha256": hashlib.sha256(config_text.encode()).hexdigest(),
            "photo_manifest_sha256": manifest_digest(), "git_commit": _git_commit()}


def _install(weights: Path, dest: Path) -> None:
    from ..paths import atomic_write_bytes

    atomic_write_bytes(dest, weights.read_bytes())
    atomic_write_bytes(dest.with_suffix(".json"), weights.with_suffix(".json").read_bytes())
    print(f"installed {dest}", file=sys.stderr)


def _dataset_faces(folders, data_format: str | None, progress: bool):
    """Teacher faces of public landmark datasets (`--data DIR`), each folder's provenance."""
    from .datasets import load_landmark_dataset
    from .samples import annotated_teacher_faces

    faces, records = [], []
    for folder in folders:
        annotated = load_landmark_dataset(Path(folder), data_format)  # refuses eval photos
        found, left_out = annotated_teacher_faces(annotated, progress=progress)
        digest = hashlib.sha256()
        for a in sorted(annotated, key=lambda a: str(a.annotation_path)):
            digest.update(a.landmarks68.tobytes() if a.landmarks68 is not None else b"-")
        print(f"{folder}: {len(found)} annotated faces for training, {left_out} left out (the teacher did not "
              "find them near their annotation, or they have no 68 points)", file=sys.stderr)
        records.append({"path": str(folder), "format": data_format or "detected", "faces": len(found),
                        "left_out": left_out, "annotations_sha256": digest.hexdigest()})
        faces += found
    return faces, records


def _train_config(config_cls, args):
    """The trainer's config from `--config`, with `--steps` applied."""
    cfg = config_cls.load(args.config)
    if args.steps:
        cfg.steps = args.steps
    return cfg


def _run_trainer(train, cfg, args, faces, record: dict, shipped_weights: Path, describe, **inputs) -> int:
    """Train (resuming unless --restart), print the final figures, install the weights with --install."""
    result = train(cfg, faces, args.output, resume=not args.restart, progress=not args.quiet, provenance=record,
                   device=args.device, **inputs)
    print(f"step {result.step}: {describe(result)} -> {result.weights}", file=sys.stderr)
    if args.install and result.weights is not None:
        _install(result.weights, shipped_weights)
    return 0


def cmd_train_landmarks(args) -> int:
    from .landmarks import LandmarkTrainConfig, train_landmarks
    from ..landmarks.occnet import DEFAULT_WEIGHTS

    cfg = _train_config(LandmarkTrainConfig, args)
    _, faces = _teacher(progress=not args.quiet)
    record = _provenance(args)
    if args.data:
        extra, record["datasets"] = _dataset_faces(args.data, args.data_format, progress=not args.quiet)
        faces = faces + extra
    return _run_trainer(train_landmarks, cfg, args, faces, record, DEFAULT_WEIGHTS,
                        lambda r: f"validation {r.figures}; FaceMesh {r.facemesh}")


def _parsing_datasets(folders, data_format: str | None):
    """Labelled faces of public face-parsing datasets (`--data DIR`), each folder's provenance."""
    from .parsing_datasets import dataset_record, detect_parsing_format, load_parsing_dataset, subject_side_agreement

    faces, records = [], []
    for folder in folders:
        name = data_format or detect_parsing_format(Path(folder))
        found = load_parsing_dataset(Path(folder), name)  # refuses eval photos
        agreement, told = subject_side_agreement(found)
        record = {**dataset_record(Path(folder), name, found), "subject_side_agreement": agreement if told else None}
        sides = (f"left/right look like the subject's on {agreement:.0%} of {told} checked" if told
                 else "left/right not checkable (no eyes and nose in the faces checked)")
        print(f"{folder}: {len(found)} labelled {name} faces; {sides}", file=sys.stderr)
        if told and agreement < 0.5:
            print(f"warning: {folder}'s left/right labels look like the image's, not the subject's: "
                  "see the mapping constants in occface_ros/training/parsing_datasets.py", file=sys.stderr)
        records.append(record)
        faces += found
    return faces, records


def cmd_train_parser(args) -> int:
    from .parser import ParserTrainConfig, train_parser
    from ..occlusion.parser import DEFAULT_WEIGHTS

    cfg = _train_config(ParserTrainConfig, args)
    if args.data_fraction is not None:
        cfg.dataset_fraction = args.data_fraction
    record = _provenance(args)
    datasets = None
    if args.data:
        datasets, record["datasets"] = _parsing_datasets(args.data, args.data_format)
    _, faces = _teacher(progress=not args.quiet)
    return _run_trainer(train_parser, cfg, args, faces, record, DEFAULT_WEIGHTS,
                        lambda r: f"validation {r.figures}", datasets=datasets)


def cmd_train_deocclude(args) -> int:
    from .deocclude import DeoccludeTrainConfig, train_deocclude
    from ..deocclusion.fisn import DEFAULT_WEIGHTS

    cfg = _train_config(DeoccludeTrainConfig, args)
    record = _provenance(args)
    _, faces = _teacher(progress=not args.quiet)
    return _run_trainer(train_deocclude, cfg, args, faces, record, DEFAULT_WEIGHTS,
                        lambda r: f"validation {r.figures} (cv2.inpaint {r.inpaint})")


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
    for name, default, func, help_text in (
            ("landmarks", DEFAULT_LANDMARK_CONFIG, cmd_train_landmarks,
             "the occlusion-robust landmark network, from FaceMesh's weights"),
            ("parser", DEFAULT_PARSER_CONFIG, cmd_train_parser, "the face parser (N_alpha): labels of the visible face"),
            ("deocclude", DEFAULT_DEOCCLUDE_CONFIG, cmd_train_deocclude,
             "the de-occlusion generator (FISN): the hidden face from the crop and its parsing maps")):
        tl = t.add_parser(name, help=help_text)
        tl.add_argument("--output", required=True, help="run folder (checkpoint.pt, curves.png, weights)")
        tl.add_argument("--config", default=str(default))
        tl.add_argument("--steps", type=int, help="override the config's steps")
        tl.add_argument("--restart", action="store_true", help="ignore an existing checkpoint in the run folder")
        tl.add_argument("--install", action="store_true", help="copy the final weights to the package's shipped weights")
        tl.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda when present)")
        tl.add_argument("--quiet", action="store_true")
        if name == "landmarks":
            tl.add_argument("--data", action="append", metavar="DIR",
                            help="a public landmark dataset folder (300-W .pts, WFLW, COFW, AFLW2000-3D) "
                                 "to train on beside the photo pool; repeatable")
            tl.add_argument("--data-format", choices=("300w", "wflw", "cofw", "aflw2000-3d"),
                            help="the --data folders' format (default: detected)")
        elif name == "parser":
            tl.add_argument("--data", action="append", metavar="DIR",
                            help="a public face-parsing dataset folder (CelebAMask-HQ, LaPa) whose labelled "
                                 "faces fill part of every batch; repeatable")
            tl.add_argument("--data-format", choices=("celebamask-hq", "lapa"),
                            help="the --data folders' format (default: detected)")
            tl.add_argument("--data-fraction", type=float, metavar="F",
                            help="fraction of each batch from --data (default: the config's dataset_fraction)")
        tl.set_defaults(func=func)
