"""Node parameters: declared once, defaults from config/occface.yaml (+ an optional config file).

* Core parameters mirror the config file as `<section>.<key>` (e.g. `detection.max_faces`,
  `camera.hfov_deg`); the `output` section (files of `occface run`) is not used by the node.
  Config entries that default to null are declared with a typed "unset" value: camera.fx/fy/cx/cy
  as 0.0 (0 = unset: use camera_info or camera.hfov_deg), model.path as "" (default search),
  occlusion.parser.weights and occlusion.fisn.weights as "" (the shipped weights),
  detection.low_min_score as 0.0 (off).
  Core parameters take effect at configure (the lifecycle transition that builds the pipeline):
  they can be set while the node is unconfigured and are read-only while it is configured
  (inactive or active), except `smoothing.*` which change at run time.
* Node parameters (below, `NODE_DEFAULTS`), changeable at run time unless listed in READ_ONLY
  (never changeable) or CONFIGURE_ONLY (like the core ones: while unconfigured).
* `config_file`: a YAML file in the shape of config/occface.yaml, or a ROS parameter file
  ({node: {ros__parameters: {...}}}) holding config sections and/or node parameters (nested
  or dotted). Its values become the defaults that --params-file / -p overrides then replace.
Invalid values are rejected with a reason (configure: the transition fails with it and the node
stays unconfigured; run time: the set_parameters result carries it).
"""
from __future__ import annotations

import math
from pathlib import Path

import yaml

from ..config import ConfigError, load_config
from .diagnostics import Thresholds
from .hri import HRI_DEFAULTS, HRI_DESCRIPTIONS, validate_hri_value

NULL_AS = {"camera.fx": 0.0, "camera.fy": 0.0, "camera.cx": 0.0, "camera.cy": 0.0, "model.path": "",
           "occlusion.parser.weights": "", "occlusion.fisn.weights": "", "detection.low_min_score": 0.0}
SKIP_SECTIONS = ("output",)
# the node is live: core defaults that differ from config/occface.yaml's (a config file or -p overrides them)
LIVE_CORE_DEFAULTS = {"occlusion": {"background": True}}
RUNTIME_CORE = ("smoothing.enabled", "smoothing.min_cutoff", "smoothing.beta", "smoothing.d_cutoff",
                "smoothing.noise_deadzone")

NODE_DEFAULTS: dict[str, object] = {
    "config_file": "",  # see module doc
    "autostart": True,  # configure + activate at start (false: wait for `ros2 lifecycle set`)
    "use_camera_info": True,  # subscribe camera_info; its K (when non-zero and of the image's size) wins
    "publish_tf": True,  # face_<track_id> frames on /tf
    "tf_prefix": "face_",  # TF child frame = tf_prefix + track id
    "publish_mesh_markers": True,
    "mesh_max_triangles": 1500,  # mesh level of detail: at most this many triangles per face (0 = full mesh)
    "mesh_colours_from_image": True,  # per-vertex colours sampled from the image (else one flat colour)
    "mesh_marker_lifetime_s": 0.0,  # 0 = until deleted (lost tracks are DELETEd)
    "publish_debug_image": False,  # ~/debug_image overlay (costs a copy + drawing per frame)
    "publish_deoccluded_image": False,  # ~/deoccluded_image: occluded face pixels filled (FISN or the texture)
    "publish_hri": True,  # ROS4HRI (REP-155) /humans/faces/* topics and face_<id>/gaze_<id> frames (ros/hri.py)
    **HRI_DEFAULTS,
    **{f"diagnostics.{k}": float(v) for k, v in vars(Thresholds()).items()},
}
READ_ONLY = ("config_file", "autostart")  # read when the node is created
CONFIGURE_ONLY = ("use_camera_info", "publish_hri", "publish_deoccluded_image")  # read at configure: settable while unconfigured

DESCRIPTIONS = {
    "config_file": "YAML config (config/occface.yaml shape or a ROS parameter file); read at the first "
                   "configure (and for autostart when the node starts)",
    "autostart": "configure and activate when the node starts (false: stay unconfigured until told)",
    "use_camera_info": "subscribe camera_info and use its intrinsics when valid; set while unconfigured",
    "mesh_max_triangles": "mesh level of detail: max triangles per face marker (0 = full mesh)",
    "smoothing.min_cutoff": "One-Euro min cutoff, Hz (> 0); changeable at run time",
    "smoothing.beta": "One-Euro speed coefficient (>= 0); changeable at run time",
    "smoothing.d_cutoff": "One-Euro derivative cutoff, Hz (> 0); changeable at run time",
    "smoothing.noise_deadzone": "speeds up to this many noise stds keep the filter at min_cutoff (>= 0; "
                                "0 = classic One-Euro); changeable at run time",
    "publish_deoccluded_image": "~/deoccluded_image (bgr8): the frame with its occluded face pixels filled by FISN "
                                "(occlusion.fisn.enabled) or the track's texture; turns occlusion.deocclude on; "
                                "set while unconfigured",
    "publish_hri": "ROS4HRI (REP-155) faces: /humans/faces/tracked, /humans/faces/<id>/{roi,landmarks,cropped,"
                   "aligned}, face_<id>/gaze_<id> frames; set while unconfigured",
    **HRI_DESCRIPTIONS,
}


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def unflatten(flat: dict) -> dict:
    out: dict = {}
    for key, v in flat.items():
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return out


def read_config_file(path: str) -> tuple[dict, dict]:
    """(core overrides as nested sections, node parameter values flat) from a config file."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config_file {path}: {exc}") from exc
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config_file {path}: top level must be a mapping")
    if len(data) == 1:
        (inner,) = data.values()
        if isinstance(inner, dict) and "ros__parameters" in inner:
            data = inner["ros__parameters"] or {}
    core_sections = set(load_config().keys())
    flat = flatten(data)
    core, node = {}, {}
    for key, v in flat.items():
        section = key.split(".", 1)[0]
        if section in core_sections:
            core[key] = v
        elif key in NODE_DEFAULTS:
            node[key] = v
        else:
            raise ConfigError(f"config_file {path}: unknown key '{key}'")
    return unflatten(core), node


def core_defaults(cfg: dict) -> dict:
    """Flat {param: value} for the core config sections, nulls replaced by typed 'unset' values.
    Nested lists (e.g. occlusion.appearance.*_box) cannot be ROS parameters: config_file only."""
    out = {}
    for key, v in flatten({k: v for k, v in cfg.items() if k not in SKIP_SECTIONS}).items():
        if isinstance(v, list) and any(isinstance(x, (list, dict)) for x in v):
            continue
        if v is None:
            v = NULL_AS.get(key, "")
        elif isinstance(v, int) and not isinstance(v, bool) and key in NULL_AS:
            v = float(v)
        out[key] = v
    return out


def core_overrides(values: dict) -> dict:
    """Flat ROS parameter values -> nested overrides for load_config (typed 'unset' back to null)."""
    flat = {}
    for key, v in values.items():
        if key in NULL_AS and v == NULL_AS[key]:
            v = None
        flat[key] = v
    return unflatten(flat)


def validate_value(name: str, value) -> str | None:
    """None when `value` is acceptable for the run-time-changeable parameter `name`, else the reason."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name} must be finite"
    if name in ("smoothing.min_cutoff", "smoothing.d_cutoff") and not value > 0:
        return f"{name} must be > 0 (Hz), got {value}"
    if name in ("smoothing.beta", "smoothing.noise_deadzone") and value < 0:
        return f"{name} must be >= 0, got {value}"
    if name == "mesh_max_triangles" and value < 0:
        return f"{name} must be >= 0 (0 = full mesh), got {value}"
    if name == "mesh_marker_lifetime_s" and value < 0:
        return f"{name} must be >= 0, got {value}"
    if name == "tf_prefix" and (not value or value.startswith("/") or " " in value):
        return f"{name} must be a non-empty frame name prefix without '/' at the start or spaces, got {value!r}"
    if name.startswith("hri."):
        return validate_hri_value(name, value)
    if name.startswith("diagnostics."):
        return Thresholds().validate(name.split(".", 1)[1], float(value))
    return None
