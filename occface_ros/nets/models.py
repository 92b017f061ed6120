"""MediaPipe networks as torch modules: model table, weight cache, wrappers, SSD anchors, decoding.

Every network module takes ONE static-shape tensor (B, 3, H, W) float32 RGB in [0, 1]
and applies the model's own input normalization itself.
"""
from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..paths import MissingModelError, atomic_write_bytes, cache_dir, mediapipe_modules_dir
from .tflite_import import build_graph_module, read_tflite

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


@dataclass(frozen=True)
class AnchorOptions:
    """MediaPipe SsdAnchorsCalculatorOptions (only what these models use)."""

    input_size: tuple[int, int]  # (H, W)
    strides: tuple[int, ...]
    min_scale: float = 0.1484375
    max_scale: float = 0.75
    anchor_offset: float = 0.5
    aspect_ratios: tuple[float, ...] = (1.0,)
    interpolated_scale_aspect_ratio: float = 1.0
    fixed_anchor_size: bool = True


@dataclass(frozen=True)
class ModelSpec:
    file: str  # relative to mediapipe_modules_dir()
    kind: str  # "detector" | "face_landmarks" | "hand_landmarks"
    input_size: tuple[int, int]
    norm: tuple[float, float]  # model input = x * norm[0] + norm[1]
    anchors: AnchorOptions | None = None
    num_keypoints: int = 0
    min_score: float = 0.5  # MediaPipe's min_score_thresh (informative; decode returns all)
    outputs: tuple[str, ...] = field(default=())


_FACE_SHORT_ANCHORS = AnchorOptions((128, 128), (8, 16, 16, 16))
_FACE_FULL_ANCHORS = AnchorOptions((192, 192), (4,), interpolated_scale_aspect_ratio=0.0)
_PALM_ANCHORS = AnchorOptions((192, 192), (8, 16, 16, 16))

MODELS: dict[str, ModelSpec] = {
    "face_detector_short": ModelSpec(
        "face_detection/face_detection_short_range.tflite", "detector", (128, 128), (2.0, -1.0),
        _FACE_SHORT_ANCHORS, 6, 0.5, ("regressors", "classificators")),
    "face_detector_full": ModelSpec(
        "face_detection/face_detection_full_range_sparse.tflite", "detector", (192, 192), (2.0, -1.0),
        _FACE_FULL_ANCHORS, 6, 0.6, ("Identity", "Identity_1")),
    "face_landmarks": ModelSpec(
        "face_landmark/face_landmark.tflite", "face_landmarks", (192, 192), (1.0, 0.0),
        outputs=("conv2d_21", "conv2d_31")),
    "palm_detector": ModelSpec(
        "palm_detection/palm_detection_full.tflite", "detector", (192, 192), (1.0, 0.0),
        _PALM_ANCHORS, 7, 0.5, ("Identity", "Identity_1")),
    "palm_detector_lite": ModelSpec(
        "palm_detection/palm_detection_lite.tflite", "detector", (192, 192), (1.0, 0.0),
        _PALM_ANCHORS, 7, 0.5, ("Identity", "Identity_1")),
    "hand_landmarks": ModelSpec(
        "hand_landmark/hand_landmark_full.tflite", "hand_landmarks", (224, 224), (1.0, 0.0),
        outputs=("Identity", "Identity_1", "Identity_2", "Identity_3")),
    "hand_landmarks_lite": ModelSpec(
        "hand_landmark/hand_landmark_lite.tflite", "hand_landmarks", (224, 224), (1.0, 0.0),
        outputs=("Identity", "Identity_1", "Identity_2", "Identity_3")),
}


def model_path(name: str) -> Path:
    spec = _spec(name)
    p = mediapipe_modules_dir() / spec.file
    if not p.is_file():
        raise MissingModelError(f"{p} not found (needed for {name!r}); reinstall mediapipe --no-deps")
    return p


def _spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown network {name!r}; known: {sorted(MODELS)}") from None


# ----------------------------------------------------------------------------- weight cache


def weights_cache_path(name: str, sha256: str) -> Path:
    return cache_dir() / "weights" / f"{name}-{sha256[:16]}.pt"


def _digest(sd: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(sd):
        t = sd[k].detach().contiguous().cpu()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _load_cached(path: Path, sha: str, module: nn.Module) -> bool:
    """Load weights from `path` into `module`; False (and the file removed) if it is unusable."""
    if not path.is_file():
        return False
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != CACHE_FORMAT or blob.get("sha256") != sha:
            raise ValueError("format/sha256 mismatch")
        sd = blob["state_dict"]
        if _digest(sd) != blob.get("digest"):
            raise ValueError("tensor digest mismatch")
        module.load_state_dict(sd, strict=True)
        return True
    except Exception as e:  # corrupt, truncated, stale: rebuild
        log.warning("weight cache %s unusable (%s); rebuilding", path, e)
        try:
            path.unlink()
        except OSError:
            pass
        return False


def load_core(name: str, use_cache: bool = True) -> nn.Module:
    """The converted TFLite graph (`fx.GraphModule`, NCHW input, TFLite-layout outputs).

    Weights come from the cache (`cache_dir()/weights/<name>-<sha256[:16]>.pt`) when valid,
    else are converted from the .tflite and the cache is (atomically) rewritten.
    """
    path = model_path(name)
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    cpath = weights_cache_path(name, sha)
    if use_cache:
        core = build_graph_module(read_tflite(data, with_weights=False), class_name=_class_name(name))
        if _load_cached(cpath, sha, core):
            core.eval()
            return core
    core = build_graph_module(read_tflite(data, with_weights=True), class_name=_class_name(name))
    if use_cache:
        sd = {k: v.detach().clone() for k, v in core.state_dict().items()}
        blob = {"format": CACHE_FORMAT, "sha256": sha, "model": name, "digest": _digest(sd), "state_dict": sd}
        buf = io.BytesIO()
        torch.save(blob, buf)
        atomic_write_bytes(cpath, buf.getvalue())
    return core


def _class_name(name: str) -> str:
    return "".join(p.capitalize() for p in name.split("_")) + "Core"


def _output_order(name: str) -> list[int]:
    """Positions of the spec's named outputs among the core's outputs."""
    spec = _spec(name)
    tg = read_tflite(model_path(name), with_weights=False)
    names = [tg.tensors[i].name for i in tg.outputs]
    return [names.index(n) for n in spec.outputs]


# ----------------------------------------------------------------------------- network wrappers


class _Net(nn.Module):
    def __init__(self, name: str, core: nn.Module):
        super().__init__()
        spec = _spec(name)
        self.name = name
        self.core = core
        self.input_size = tuple(spec.input_size)
        self.scale, self.offset = float(spec.norm[0]), float(spec.norm[1])
        self.order = _output_order(name)
        self.channels_last = False  # set by runners.prepare_eager (weights in channels_last)

    def _run(self, x: torch.Tensor):
        if self.scale != 1.0 or self.offset != 0.0:
            x = x * self.scale + self.offset
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        fast = _fast_path_for(x, self.__dict__.get("_fast"))
        outs = fast(x) if fast is not None else self.core(x)
        return [outs[i] for i in self.order]

    def set_fast_path(self, fn, example: torch.Tensor) -> None:
        """Add a frozen copy of `core` (see runners.prepare_eager) used for plain calls with
        `example`'s shape/device/dtype (one per batch size). Kept outside the module tree (not in
        state_dict); export/compile/tracing/autograd calls still run `core` itself."""
        self.__dict__.setdefault("_fast", {})[_fast_key(example)] = fn

    def clear_fast_path(self) -> None:
        self.__dict__.pop("_fast", None)


def _fast_key(x: torch.Tensor) -> tuple:
    return tuple(x.shape), x.device, x.dtype


def _fast_path_for(x: torch.Tensor, fast: dict | None):
    """The frozen graph for `x`'s shape, or None when there is none or the call must see `core`."""
    if not fast or type(x) is not torch.Tensor or torch.jit.is_tracing() or torch.jit.is_scripting():
        return None
    if torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return None
    if x.requires_grad and torch.is_grad_enabled():
        return None
    return fast.get(_fast_key(x))


class DetectorNet(_Net):
    """SSD detector network (BlazeFace short/full range, palm detector).

    forward(x: (B, 3, H, W) RGB in [0, 1]) -> (raw_boxes (B, N, 4 + 2K), raw_scores (B, N))
    raw values are in input pixels relative to the anchors; use `Detector.decode`.
    """

    def forward(self, x: torch.Tensor):
        boxes, scores = self._run(x)
        return boxes, scores.flatten(1)


class FaceLandmarkNet(_Net):
    """FaceMesh (468 landmarks), input 192x192.

    forward(x: (B, 3, 192, 192) RGB in [0, 1]) ->
        landmarks (B, 468, 3): x, y in input pixels (0..192), z in the same pixel scale
                               (relative depth, MediaPipe convention);
        presence_logit (B,); presence (B,) = sigmoid(logit), the face-presence score.
    """

    def forward(self, x: torch.Tensor):
        lm, flag = self._run(x)
        logit = flag.reshape(-1)
        return lm.reshape(-1, 468, 3), logit, torch.sigmoid(logit)


class HandLandmarkNet(_Net):
    """Hand landmarks (21 points), input 224x224.

    forward(x: (B, 3, 224, 224) RGB in [0, 1]) ->
        landmarks (B, 21, 3): x, y in input pixels (0..224), z relative depth (pixel scale);
        presence (B,): hand-presence probability (already sigmoid);
        handedness (B,): MediaPipe's handedness probability (> 0.5: 'Right');
        world_landmarks (B, 21, 3): metric 3-D landmarks (meters, hand-centred).
    """

    def forward(self, x: torch.Tensor):
        lm, presence, handed, world = self._run(x)
        return lm.reshape(-1, 21, 3), presence.reshape(-1), handed.reshape(-1), world.reshape(-1, 21, 3)


_WRAPPERS = {"detector": DetectorNet, "face_landmarks": FaceLandmarkNet, "hand_landmarks": HandLandmarkNet}


def build_network(name: str, use_cache: bool = True) -> nn.Module:
    """Plain (eval, no-grad parameters, NCHW) module for `name`."""
    spec = _spec(name)
    net = _WRAPPERS[spec.kind](name, load_core(name, use_cache=use_cache))
    net.requires_grad_(False)
    return net.eval()


# ----------------------------------------------------------------------------- SSD anchors / decoding


def _calc_scale(min_scale: float, max_scale: float, i: int, n: int) -> float:
    return (min_scale + max_scale) * 0.5 if n == 1 else min_scale + (max_scale - min_scale) * i / (n - 1.0)


def ssd_anchors(opts: AnchorOptions) -> np.ndarray:
    """MediaPipe SsdAnchorsCalculator -> (N, 4) float32 [x_center, y_center, w, h] (normalized)."""
    h_in, w_in = opts.input_size
    n = len(opts.strides)
    out = []
    layer = 0
    while layer < n:
        heights, widths = [], []
        last = layer
        while last < n and opts.strides[last] == opts.strides[layer]:
            scale = _calc_scale(opts.min_scale, opts.max_scale, last, n)
            for ar in opts.aspect_ratios:
                heights.append(scale / np.sqrt(ar))
                widths.append(scale * np.sqrt(ar))
            if opts.interpolated_scale_aspect_ratio > 0.0:
                nxt = 1.0 if last == n - 1 else _calc_scale(opts.min_scale, opts.max_scale, last + 1, n)
                s = np.sqrt(scale * nxt)
                ar = opts.interpolated_scale_aspect_ratio
                heights.append(s / np.sqrt(ar))
                widths.append(s * np.sqrt(ar))
            last += 1
        stride = opts.strides[layer]
        fh, fw = int(np.ceil(h_in / stride)), int(np.ceil(w_in / stride))
        for y in range(fh):
            for x in range(fw):
                for a in range(len(heights)):
                    xc = (x + opts.anchor_offset) / fw
                    yc = (y + opts.anchor_offset) / fh
                    if opts.fixed_anchor_size:
                        out.append((xc, yc, 1.0, 1.0))
                    else:
                        out.append((xc, yc, widths[a], heights[a]))
        layer = last
    return np.asarray(out, dtype=np.float32)


class Detector:
    """SSD detector = network Runner (nets.runners) + anchors + vectorized MediaPipe decoding.

    __call__(images (B, 3, H, W) RGB [0, 1]) -> decode(*net(images)); `net` is any callable
    returning (raw_boxes, raw_scores), normally a Runner.
    decode(raw_boxes (B, N, 4+2K), raw_scores (B, N) or (B, N, 1)) ->
        scores (B, N) sigmoid (raw clipped to +-100 as MediaPipe),
        boxes (B, N, 4) normalized [x0, y0, x1, y1],
        keypoints (B, N, K, 2) normalized (x, y).
    No thresholding / NMS: `min_score` holds MediaPipe's threshold for the caller.
    """

    def __init__(self, name: str, net, device="cpu"):
        spec = _spec(name)
        self.name = name
        self.net = net
        self.input_size = tuple(spec.input_size)
        self.num_keypoints = spec.num_keypoints
        self.min_score = spec.min_score
        self.anchors = torch.from_numpy(ssd_anchors(spec.anchors)).to(device)
        h, w = self.input_size
        # MediaPipe x_scale = y_scale = w_scale = h_scale = input size (width for x/w, height for y/h)
        self.scale = torch.tensor([w, h], dtype=torch.float32, device=device)

    def to(self, device) -> "Detector":
        self.anchors = self.anchors.to(device)
        self.scale = self.scale.to(device)
        return self

    def __call__(self, images: torch.Tensor):
        raw_boxes, raw_scores = self.net(images)
        return self.decode(raw_boxes, raw_scores)

    def decode(self, raw_boxes: torch.Tensor, raw_scores: torch.Tensor):
        if raw_scores.dim() == 3:
            raw_scores = raw_scores.squeeze(-1)
        scores = torch.sigmoid(raw_scores.clamp(-100.0, 100.0))
        a_xy = self.anchors[:, :2]
        a_wh = self.anchors[:, 2:]
        center = raw_boxes[..., 0:2] / self.scale * a_wh + a_xy
        size = raw_boxes[..., 2:4] / self.scale * a_wh
        boxes = torch.cat([center - size * 0.5, center + size * 0.5], dim=-1)
        k = self.num_keypoints
        kp = raw_boxes[..., 4 : 4 + 2 * k].reshape(*raw_boxes.shape[:-1], k, 2)
        keypoints = kp / self.scale * a_wh[:, None, :] + a_xy[:, None, :]
        return scores, boxes, keypoints
