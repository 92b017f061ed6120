"""`occface eval` on the command line (registered by occface_ros.cli)."""
from __future__ import annotations

import sys
from pathlib import Path

from .harness import run_evaluation
from .report import print_targets


def cmd_eval(args) -> int:
    data = run_evaluation(Path(args.output), quick=args.quick, config_path=args.config,
                          with_reference=not args.no_reference, progress=not args.quiet, device=args.device,
                          occlusion=not args.no_occlusion)
    if not args.quiet:
        print_targets(data)
        print(f"report -> {Path(args.output) / 'report.md'} ({data['elapsed_s']:.0f} s)", file=sys.stderr)
    if args.strict and any(t["result"] != "pass" for t in data["targets"]):
        return 1
    return 0


def add_eval_command(sub) -> None:
    """`occface eval --output DIR [--quick]`."""
    e = sub.add_parser("eval", help="occlusion evaluation: occluded photos, jitter, synthetic sequence vs MediaPipe "
                                    "-> DIR/report.md, metrics.json, examples.png, metrics.png")
    e.add_argument("--output", required=True, help="output folder")
    e.add_argument("--quick", action="store_true", help="a small subset (tests, CI): 2 photos, 4 occluders")
    e.add_argument("--config", help="YAML config overriding config/occface.yaml")
    e.add_argument("--device", help="cpu | cuda | cuda:N (overrides the config)")
    e.add_argument("--no-reference", action="store_true", help="skip the MediaPipe FaceMesh column")
    e.add_argument("--no-occlusion", action="store_true",
                   help="run the pipeline with its occlusion stage off (the baseline)")
    e.add_argument("--strict", action="store_true", help="exit 1 unless every target passes")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_eval)
