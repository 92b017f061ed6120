"""`occface bag`, `occface bench-ros` and `occface soak-ros` (registered by occface_ros.cli; ROS imports happen only when run)."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def cmd_bag(args) -> int:
    from .bag import BagError, replay_bag

    options = {"publish_debug_image": args.debug_image}
    if args.mesh_max_triangles is not None:
        options["mesh_max_triangles"] = args.mesh_max_triangles
    try:
        summary = replay_bag(args.input, args.output, config_path=args.config, image_topics=args.topic or None,
                             storage=args.storage, copy_input=not args.no_copy_input, namespace=args.namespace,
                             options=options)
    except BagError as exc:
        print(f"occface: error: {exc}", file=sys.stderr)
        return 2
    print(f"{summary['frames']} frames, {summary['frames_with_faces']} with faces, {summary['image_errors']} image "
          f"errors, {summary['messages_written']} messages -> {args.output}", file=sys.stderr)
    return 0


def cmd_bench_ros(args) -> int:
    from .bench import run_bench_ros
    from .loopback import LoopbackEnvError

    try:
        result = run_bench_ros(duration_s=args.duration, rate_hz=args.rate, step_s=args.step, canned=args.canned,
                               config=args.config, find_peak=not args.no_peak)
    except LoopbackEnvError as exc:
        print(f"occface: error: {exc} (unset it for a random domain on loopback)", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        from ..paths import atomic_write_bytes

        atomic_write_bytes(Path(args.json), (text + "\n").encode())
    return 0


def cmd_soak_ros(args) -> int:
    from .loopback import LoopbackEnvError
    from .soak import run_soak_ros, summary_line, write_soak_plot

    try:
        report = run_soak_ros(minutes=args.minutes, rate_hz=args.rate, canned=args.canned, config=args.config,
                              warmup_s=args.warmup)
    except LoopbackEnvError as exc:
        print(f"occface: error: {exc} (unset it for a random domain on loopback)", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError) as exc:  # bad arguments; the node did not start or never answered
        print(f"occface: error: {exc}", file=sys.stderr)
        return 2
    if args.report:
        from ..paths import atomic_write_bytes

        atomic_write_bytes(Path(args.report), (json.dumps(report, indent=1) + "\n").encode())
    if args.plot:
        write_soak_plot(Path(args.plot), report)
    print("soak-ros: " + summary_line(report))
    if not report["completed"]:
        print(f"occface: error: the node exited during the soak (code {report['node_exit_code']}):\n"
              + report.get("node_log_tail", ""), file=sys.stderr)
        return 1
    return 0


def add_ros_commands(sub) -> None:
    b = sub.add_parser("bag", help="replay a ROS bag (mcap/sqlite3/ROS 1) through the pipeline into a new ROS 2 bag")
    b.add_argument("--input", required=True, help="input bag (folder or file)")
    b.add_argument("--output", required=True, help="output bag folder (must not exist)")
    b.add_argument("--config", help="YAML config overriding config/occface.yaml")
    b.add_argument("--topic", action="append", help="image topic to process (repeatable; default: all image topics)")
    b.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
    b.add_argument("--namespace", default="/occface_node", help="namespace of the output topics")
    b.add_argument("--mesh-max-triangles", type=int, help="mesh marker level of detail (0 = full mesh)")
    b.add_argument("--debug-image", action="store_true", help="also write ~/debug_image overlays")
    b.add_argument("--no-copy-input", action="store_true", help="do not copy the input topics into the output")
    b.set_defaults(func=cmd_bag)

    r = sub.add_parser("bench-ros", help="the node under load: latency per output topic, drops, peak input rate")
    r.add_argument("--duration", type=float, default=20.0, help="seconds at the fixed rate")
    r.add_argument("--rate", type=float, default=30.0, help="fixed input rate, Hz")
    r.add_argument("--step", type=float, default=6.0, help="seconds per peak-rate trial")
    r.add_argument("--no-peak", action="store_true", help="skip the peak-rate search")
    r.add_argument("--config", help="config file for the node (config_file parameter)")
    r.add_argument("--canned", action="store_true",
                   help="replay one canned face instead of running FacePipeline: measures the ROS layer alone")
    r.add_argument("--json", help="write the figures to this JSON file")
    r.set_defaults(func=cmd_bench_ros)

    s = sub.add_parser("soak-ros", help="the node at a fixed rate for minutes to hours: RSS growth, drops, latency, "
                                        "/diagnostics rate")
    s.add_argument("--minutes", type=float, required=True, help="soak length in minutes (fractions allowed: 0.5)")
    s.add_argument("--rate", type=float, default=30.0, help="input rate, Hz")
    s.add_argument("--warmup", type=float,
                   help="seconds at the start left out of the RSS growth fit (default: a fifth of the soak, <= 120)")
    s.add_argument("--config", help="config file for the node (config_file parameter)")
    s.add_argument("--canned", action="store_true",
                   help="replay one canned face instead of running FacePipeline: soaks the ROS layer alone")
    s.add_argument("--report", help="write the JSON report (figures and time series) to this file")
    s.add_argument("--plot", help="write a PNG of RSS and ~/faces latency over time to this file")
    s.set_defaults(func=cmd_soak_ros)
