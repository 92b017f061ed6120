"""Configuration: defaults from config/occface.yaml, overlaid by a user file, validated."""
from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from .paths import repo_root


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message says which and why."""


def default_config_path() -> Path:
    for candidate in (
        repo_root() / "config" / "occface.yaml",
        Path(sys.prefix) / "share" / "occface_ros" / "config" / "occface.yaml",
    ):
        if candidate.exists():
            return candidate
    raise ConfigError("config/occface.yaml not found (neither in the checkout nor in share/occface_ros)")


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: top level must be a mapping")
    # accept the ROS parameter-file shape: {node_name: {ros__parameters: {...}}}
    if len(data) == 1:
        (inner,) = data.values()
        if isinstance(inner, dict) and "ros__parameters" in inner:
            data = inner["ros__parameters"]
    return data


def merge(base: dict, override: dict, where: str = "") -> dict:
    """Deep-merge `override` into a copy of `base`; unknown keys and type changes are errors."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        path = f"{where}.{key}" if where else key
        if key not in base:
            raise ConfigError(f"unknown config key '{path}'")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{path}' must be a mapping")
            out[key] = merge(base[key], value, path)
        else:
            out[key] = _check_type(path, base[key], value)
    return out


def _check_type(path: str, default: Any, value: Any) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{path}' must be true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{path}' must be a number, got {value!r}")
        return type(default)(value) if isinstance(default, float) else value
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"config key '{path}' must be a string, got {value!r}")
    return value


_CHOICES = {
    "runtime.backend": ("auto", "eager", "compile", "tensorrt", "onnxruntime"),
    "runtime.precision": ("fp32", "fp16"),
    "detection.model": ("short", "full"),
    "landmarks.model": ("facemesh", "occnet", "facemesh+occnet"),
    "occlusion.parser.face_region": ("fit", "both", "parser"),
    "model.name": ("ict", "bfm"),
    "output.mesh_units": ("m",),
    "occlusion.render_backend": ("auto", "torch", "nvdiffrast"),
    "occlusion.background_maps": ("latest", "own_frame"),
}
_POSITIVE = ("detection.min_score", "detection.fallback_min_score", "landmarks.presence_threshold", "landmarks.roi_scale",
             "camera.hfov_deg", "smoothing.min_cutoff", "smoothing.d_cutoff", "detection.max_faces",
             "occlusion.max_face_px", "occlusion.every_n_frames")


def validate(cfg: dict) -> dict:
    def get(path):
        node = cfg
        for part in path.split("."):
            node = node[part]
        return node

    for path, choices in _CHOICES.items():
        if get(path) not in choices:
            raise ConfigError(f"config key '{path}' must be one of {choices}, got {get(path)!r}")
    for path in _POSITIVE:
        if not get(path) > 0:
            raise ConfigError(f"config key '{path}' must be > 0, got {get(path)!r}")
    if not 0 < get("camera.hfov_deg") < 180:
        raise ConfigError("config key 'camera.hfov_deg' must be in (0, 180)")
    for path in ("landmarks.reacquire_iou", "occlusion.visible_threshold", "occlusion.refit_min_change",
                 "occlusion.relandmark_min_ratio",
                 "occlusion.relandmark_min_learned", "occlusion.occnet_min_ratio",
                 "occlusion.parser.complete_face_threshold",
                 "occlusion.parser.rim_fraction",
                 "occlusion.hands.min_score", "occlusion.hands.presence_threshold"):
        if not 0 <= get(path) <= 1:
            raise ConfigError(f"config key '{path}' must be in [0, 1], got {get(path)!r}")
    low = get("detection.low_min_score")
    if low is not None and not (isinstance(low, (int, float)) and 0 < low <= 1):
        raise ConfigError(f"config key 'detection.low_min_score' must be null or in (0, 1], got {low!r}")
    if get("occlusion.hands.idle_detect_every") < 1:
        raise ConfigError("config key 'occlusion.hands.idle_detect_every' must be >= 1")
    for path in ("landmarks.reacquire_s", "occlusion.probe_radius_px", "occlusion.hands.redetect_every",
                 "occlusion.hands.max_hands"):
        if get(path) < 0:
            raise ConfigError(f"config key '{path}' must be >= 0, got {get(path)!r}")
    for path in ("smoothing.beta", "smoothing.noise_deadzone"):
        if get(path) < 0:
            raise ConfigError(f"config key '{path}' must be >= 0, got {get(path)!r}")
    intr = [get(f"camera.{k}") for k in ("fx", "fy", "cx", "cy")]
    if any(v is not None for v in intr) and not all(v is not None for v in intr):
        raise ConfigError("camera intrinsics: set all of fx, fy, cx, cy or none")
    device = get("runtime.device")
    if not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
        raise ConfigError(f"config key 'runtime.device' must be cpu, cuda or cuda:N, got {device!r}")
    _validate_appearance(get("occlusion.appearance"))
    return cfg


# occlusion.appearance (occlusion/appearance/config.py AppearanceConfig): every key is in exactly one group
APPEARANCE_RULES = {
    "positive": ("log_epsilon", "seed_chroma_log", "seed_luminance_log", "skin_prior_width_log", "membership_z",
                 "membership_cut_z", "skin_luminance_floor", "skin_chroma_floor", "shadow_tolerance",
                 "shadow_tolerance_gray", "highlight_tolerance", "feature_luminance_floor", "feature_chroma_floor",
                 "box_softness_log", "texture_max_confidence", "texture_full_confidence", "texture_inlier_z",
                 "texture_luminance_floor", "texture_chroma_floor", "threshold_z", "softness_z"),
    "non_negative": ("pixel_noise", "colour_image_chroma_log", "seed_dark_log", "sh_ridge", "shadow_saturation",
                     "smooth_radius", "closing_radius"),
    "unit": ("seed_min_fraction", "texture_scale_rate", "learn_threshold", "learn_min_view_cosine",
             "closed_likelihood"),
    "count": ("seed_cells", "texture_size"),  # integers >= 1
    "count_or_zero": ("shading_passes",),  # integers >= 0
    "bool": ("enabled", "split_luminance"),
    "box2": ("skin_chroma_box",),  # [[lo, hi]] x 2 (red-green, yellow-blue)
    "box3": ("lips_box", "brows_box", "eyes_box", "mouth_box"),  # [[lo, hi]] x 3 (luminance, red-green, yellow-blue)
}


def _validate_appearance(app: dict) -> None:
    """Types and ranges of occlusion.appearance (`merge` already rejected unknown keys)."""
    def fail(key, what):
        raise ConfigError(f"config key 'occlusion.appearance.{key}' must be {what}, got {app[key]!r}")

    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    for rule, keys in APPEARANCE_RULES.items():
        for key in keys:
            v = app[key]
            if rule == "bool" and not isinstance(v, bool):
                fail(key, "true or false")
            elif rule in ("positive", "non_negative", "unit") and not number(v):
                fail(key, "a number")
            elif rule == "positive" and not v > 0:
                fail(key, "> 0")
            elif rule == "non_negative" and not v >= 0:
                fail(key, ">= 0")
            elif rule == "unit" and not 0 <= v <= 1:
                fail(key, "in [0, 1]")
            elif rule in ("count", "count_or_zero") and (
                    not isinstance(v, int) or isinstance(v, bool) or v < (1 if rule == "count" else 0)):
                fail(key, "an integer >= 1" if rule == "count" else "an integer >= 0")
            elif rule in ("box2", "box3"):
                rows = 2 if rule == "box2" else 3
                if not (isinstance(v, (list, tuple)) and len(v) == rows and all(
                        isinstance(r, (list, tuple)) and len(r) == 2 and all(number(x) for x in r) and r[0] <= r[1]
                        for r in v)):
                    fail(key, f"{rows} [lo, hi] pairs of numbers with lo <= hi")


def for_files(cfg: dict) -> dict:
    """Copy of `cfg` for processing files (occface run, eval, bench, bag): occlusion reasoned inline,
    frame by frame, so every written frame has its own maps (occlusion.background is for live use)."""
    return {**cfg, "occlusion": {**cfg["occlusion"], "background": False}}


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """Defaults, then the file at `path`, then `overrides`; validated."""
    cfg = _read_yaml(default_config_path())
    if path is not None:
        if not Path(path).exists():
            raise ConfigError(f"config file {path} does not exist")
        cfg = merge(cfg, _read_yaml(Path(path)))
    if overrides:
        cfg = merge(cfg, overrides)
    return validate(cfg)
