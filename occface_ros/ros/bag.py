"""`occface bag`: replay a ROS bag through the pipeline and write a ROS 2 bag with every output topic.

Reads ROS 2 bags (mcap or sqlite3) and ROS 1 bags through `rosbags`; writes a ROS 2 bag (mcap by
default, or sqlite3) with, per image topic, the node's outputs under `namespace` (`/occface_node`
for one image topic, `/occface_node/<image topic>` for several): faces, head_poses, occlusion_mask,
parsing, mesh_markers (and debug_image on request), plus /tf and /diagnostics (once per second of
bag time). Each output message has the input image's header and is logged at the input message's
bag time. The input topics are copied too (unless copy_input=False) so RViz/Foxglove show the
images beside the results. Messages are built by the same code as the node and serialised with
rclpy (CDR); their type definitions are registered in the output bag from msg/occface_msgs.
"""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np

from ..config import ConfigError, for_files, load_config
from ..paths import repo_root
from .diagnostics import Health, Thresholds
from .image_conversion import ImageConversionError, image_msg_to_bgr8
from .outputs import OUTPUTS, OutputBuilder
from .pipeline_protocol import PipelineFactory, default_pipeline_factory
from .params import NODE_DEFAULTS

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "sensor_msgs/Image",
               "sensor_msgs/CompressedImage")
INFO_TYPES = ("sensor_msgs/msg/CameraInfo", "sensor_msgs/CameraInfo")


class BagError(ValueError):
    pass


def occface_msg_dir() -> Path:
    """msg/*.msg of occface_msgs: installed share/ (ament index) first, else the checkout."""
    try:
        from ament_index_python.packages import get_package_share_directory

        d = Path(get_package_share_directory("occface_msgs")) / "msg"
        if (d / "Face.msg").exists():
            return d
    except (ImportError, LookupError):  # no ament index, or occface_msgs not in it: use the checkout
        pass
    except Exception as exc:  # noqa: BLE001 - a broken ament index: say so, use the checkout
        print(f"occface: warning: ament index lookup of occface_msgs failed ({type(exc).__name__}: {exc}); "
              "using the .msg files of the checkout", file=sys.stderr)
    return repo_root() / "msg" / "occface_msgs" / "msg"


def typestore_with_occface():
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for name in ("Face", "FaceArray"):
        text = (occface_msg_dir() / f"{name}.msg").read_text()
        types.update(get_types_from_msg(text, f"occface_msgs/msg/{name}"))
    store.register(types)
    return store


def _header_to_rclpy(h):
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    return Header(stamp=Time(sec=int(h.stamp.sec), nanosec=int(h.stamp.nanosec)), frame_id=str(h.frame_id))


def _decode_compressed(msg) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageConversionError("undecodable", f"cannot decode CompressedImage ({msg.format!r})")
    return img


def _sanitize(topic: str) -> str:
    return re.sub(r"[^A-Za-z0-9_/]", "_", topic).strip("/")


def replay_bag(input_path: str | Path, output_path: str | Path, *, config_path: str | None = None,
               image_topics: list[str] | None = None, storage: str = "mcap", copy_input: bool = True,
               namespace: str = "/occface_node", options: dict | None = None,
               pipeline_factory: PipelineFactory | None = None,
               progress=None) -> dict:
    """Replay `input_path` into a new bag at `output_path`; returns a summary dict."""
    from rclpy.serialization import serialize_message
    from rosbags.highlevel import AnyReader
    from rosbags.interfaces import ConnectionExtRosbag2
    from rosbags.rosbag2 import StoragePlugin, Writer

    from diagnostic_msgs.msg import DiagnosticArray
    from std_msgs.msg import Header

    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.exists():
        raise BagError(f"input bag {input_path} does not exist")
    if output_path.exists():
        raise BagError(f"output {output_path} exists; choose a new path")
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}.get(storage)
    if plugin is None:
        raise BagError(f"storage must be mcap or sqlite3, got {storage!r}")
    opts = {k: v for k, v in NODE_DEFAULTS.items() if not k.startswith("diagnostics.") and k != "config_file"}
    unknown = set(options or {}) - set(opts)
    if unknown:
        raise BagError(f"unknown options {sorted(unknown)}")
    opts.update(options or {})
    cfg = for_files(load_config(config_path))
    pipeline_factory = pipeline_factory or default_pipeline_factory()

    store = typestore_with_occface()
    summary = {"frames": 0, "frames_with_faces": 0, "faces": 0, "image_errors": 0, "messages_written": 0,
               "topics": {}}
    per_topic: dict[str, dict] = {}  # image topic -> its pipeline, output builder and state
    try:
        with AnyReader([input_path], default_typestore=store) as reader:
            conns = [c for c in reader.connections if c.msgtype in IMAGE_TYPES]
            if image_topics:
                conns = [c for c in conns if c.topic in image_topics]
                missing = set(image_topics) - {c.topic for c in conns}
                if missing:
                    raise BagError(f"no image topic(s) {sorted(missing)} in {input_path} "
                                   f"(has: {sorted({c.topic for c in reader.connections})})")
            if not conns:
                raise BagError(f"{input_path} has no sensor_msgs Image/CompressedImage topic")
            cam_topics = sorted({c.topic for c in conns})
            info_conns = [c for c in reader.connections if c.msgtype in INFO_TYPES]
            ros2_input = all(isinstance(c.ext, ConnectionExtRosbag2) and c.ext.serialization_format == "cdr"
                             for c in reader.connections)

            with Writer(output_path, version=9, storage_plugin=plugin) as writer:
                out_conns: dict[tuple[str, str], object] = {}

                def conn_for(topic: str, msgtype: str):
                    key = (topic, msgtype)
                    if key not in out_conns:
                        out_conns[key] = writer.add_connection(topic, msgtype, typestore=store)
                    return out_conns[key]

                def write(topic, msgtype, t_ns, msg):
                    data = msg if isinstance(msg, bytes) else serialize_message(msg)
                    writer.write(conn_for(topic, msgtype), t_ns, data)
                    summary["messages_written"] += 1
                    summary["topics"][topic] = summary["topics"].get(topic, 0) + 1

                copy_conns = {}
                if copy_input and ros2_input:
                    for c in reader.connections:
                        copy_conns[c.id] = writer.add_connection(c.topic, c.msgtype, typestore=reader.typestore)

                for topic in cam_topics:
                    base = namespace.rstrip("/")
                    ns = base if len(cam_topics) == 1 else f"{base}/{_sanitize(topic)}"
                    per_topic[topic] = {"ns": ns, "pipeline": None, "builder": None, "last_t": None,
                                        "info": None, "info_k": None, "parent": topic.rsplit("/", 1)[0]}
                health = Health(Thresholds(input_rate_warn_hz=0.0, no_input_timeout_s=0.0), name=namespace)
                next_diag_ns = None
                selected = conns + info_conns + (list(reader.connections) if copy_conns else [])
                uniq = {c.id: c for c in selected}.values()
                for conn, t_ns, raw in reader.messages(connections=list(uniq)):
                    if conn.id in copy_conns:
                        writer.write(copy_conns[conn.id], t_ns, raw)
                        summary["messages_written"] += 1
                    if conn.msgtype in INFO_TYPES:
                        for st in per_topic.values():
                            if conn.topic.rsplit("/", 1)[0] == st["parent"]:
                                info = reader.deserialize(raw, conn.msgtype)
                                # ROS 2 CameraInfo names the matrix k, ROS 1's K
                                st["info"], st["info_k"] = info, (info.k if "/msg/" in conn.msgtype else info.K)
                        continue
                    if conn.msgtype not in IMAGE_TYPES or conn.topic not in per_topic:
                        continue
                    st = per_topic[conn.topic]
                    msg = reader.deserialize(raw, conn.msgtype)
                    header = _header_to_rclpy(msg.header)
                    health.received(now=t_ns * 1e-9)
                    try:
                        bgr = _decode_compressed(msg) if "Compressed" in conn.msgtype else image_msg_to_bgr8(msg)
                    except ImageConversionError as exc:
                        summary["image_errors"] += 1
                        health.error(exc.cause, str(exc), now=t_ns * 1e-9)
                        continue
                    if st["pipeline"] is None:
                        st["pipeline"] = pipeline_factory(cfg)
                        st["builder"] = OutputBuilder(st["pipeline"])
                    pipe = st["pipeline"]
                    info = st["info"]
                    if info is not None:
                        k = np.asarray(st["info_k"], np.float64).reshape(3, 3)
                        size = (int(info.width), int(info.height))
                        if k[0, 0] > 0 and size in ((bgr.shape[1], bgr.shape[0]), (0, 0)):
                            pipe.set_camera_matrix(k)
                    t = header.stamp.sec + header.stamp.nanosec * 1e-9 or t_ns * 1e-9
                    if st["last_t"] is not None and t <= st["last_t"]:
                        pipe.reset()
                    st["last_t"] = t
                    t0 = time.monotonic()
                    result = pipe.process(bgr, t)
                    for key, out in st["builder"].build(header, result, bgr, opts):
                        rel, msgtype = OUTPUTS[key]
                        topic = rel if rel.startswith("/") else f"{st['ns']}/{rel[2:]}"
                        write(topic, msgtype, t_ns, out)
                    health.processed((time.monotonic() - t0) * 1e3, len(result.faces), result.stage_ms,
                                     now=t_ns * 1e-9)
                    summary["frames"] += 1
                    summary["faces"] += len(result.faces)
                    summary["frames_with_faces"] += bool(result.faces)
                    if next_diag_ns is None or t_ns >= next_diag_ns:
                        next_diag_ns = t_ns + 1_000_000_000
                        dh = Header(frame_id=header.frame_id)
                        dh.stamp.sec, dh.stamp.nanosec = divmod(int(t_ns), 1_000_000_000)
                        health.hardware_id = header.frame_id
                        write("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", t_ns,
                              DiagnosticArray(header=dh, status=health.statuses(now=t_ns * 1e-9)))
                    if progress:
                        progress(summary["frames"])
    finally:
        for st in per_topic.values():
            if st["pipeline"] is not None:
                st["pipeline"].close()
    return summary


__all__ = ["replay_bag", "BagError", "ConfigError", "typestore_with_occface"]
