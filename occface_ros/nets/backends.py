"""Execution backends for the converted networks: one callable interface for all.

compile_stage(module, example_input, backend) -> callable(x) -> same outputs as module(x)

- "eager":    the module itself, prepared for CPU/GPU inference: eval, parameters without
              grad, weights in channels_last (on CPU this routes every conv through oneDNN,
              ~2x faster than NCHW for these depthwise-heavy nets), plus a hidden frozen
              TorchScript copy of the converted graph for the example's static shape (no
              per-op Python dispatch). Still a plain nn.Module: torch.export / torch.jit /
              torch.compile see (and run) the ordinary graph.
- "jit":      torch.jit.trace + torch.jit.freeze (ScriptModule; folds constants).
- "compile":  torch.compile(inductor, static shapes; CPU: freezing = oneDNN weight
              prepacking + conv/activation fusion). Compiled on the example input here,
              so the first real call is not slow. Needs a C++ compiler on CPU.
- "tensorrt": torch_tensorrt (dynamo IR, fp32) when it is importable and CUDA is
              available; otherwise raises BackendUnavailable with the reason.
- "onnxruntime": CPU only. The module exported to ONNX (torch.onnx, dynamic batch; cached in
              the user cache dir by weight digest) and run by ONNX Runtime's CPU provider with
              torch's thread count. FaceMesh on the 2-core CPU: 1.2 ms against ~1.9 ms for the
              frozen eager graph (one op of ONNX Runtime costs a few microseconds, one of the
              TorchScript interpreter + ATen + oneDNN ~15; these nets have ~110 small ops).
- "auto":     "onnxruntime" on CPU when onnxruntime and onnx are installed, "tensorrt" on CUDA
              when torch_tensorrt is, else "eager".
- "none":     the module untouched.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)
ONNX_OPSET = 17

BACKENDS = ("auto", "eager", "jit", "compile", "tensorrt", "onnxruntime", "none")


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (missing package or device)."""


def prepare_eager(module: nn.Module, device=None, example_input: torch.Tensor | None = None,
                  fast_path: bool = True) -> nn.Module:
    """eval + no-grad parameters + channels_last weights (+ frozen fast path, see below).

    With `example_input`, every sub-network that supports it (`set_fast_path`) gets a
    `torch.jit.trace` + `torch.jit.freeze` copy of its converted graph for that static
    shape: it removes the per-op Python dispatch of the fx graph (~15% on CPU). The module
    itself is unchanged (same parameters, state_dict, torch.export/compile behaviour);
    calls with another shape/device, under autograd, or while exporting/compiling use the
    plain graph. Call `clear_fast_path()` (or re-run this) after editing weights.
    """
    module.eval()
    module.requires_grad_(False)
    if device is not None:
        module.to(device)
    # channels_last weights make conv outputs channels_last as well (oneDNN path on CPU)
    module.to(memory_format=torch.channels_last)
    for sub in module.modules():
        if hasattr(sub, "channels_last"):
            sub.channels_last = True  # feed the converted graph channels_last input too
    if fast_path and example_input is not None:
        for sub in module.modules():
            if hasattr(sub, "set_fast_path") and hasattr(sub, "core"):
                _install_fast_path(sub, example_input)
    return module


def _install_fast_path(net: nn.Module, example_input: torch.Tensor) -> None:
    net.clear_fast_path()
    with torch.no_grad():
        x = example_input
        if getattr(net, "scale", 1.0) != 1.0 or getattr(net, "offset", 0.0) != 0.0:
            x = x * net.scale + net.offset
        if getattr(net, "channels_last", False):
            x = x.contiguous(memory_format=torch.channels_last)
        try:
            with warnings.catch_warnings():  # jit.trace/freeze deprecation notices
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(net.core, (x,), check_trace=False)
                frozen = torch.jit.freeze(traced.eval())
            ref = net.core(x)
            for _ in range(3):  # the profiling executor specializes during the first calls
                got = frozen(x)
            ok = all(torch.allclose(a, b, rtol=1e-4, atol=1e-4 * (1 + float(a.abs().max()))) for a, b in zip(ref, got))
        except Exception:  # noqa: BLE001 - the plain graph always works
            return
        if ok:
            net.set_fast_path(frozen, x)


def _example_device(example: torch.Tensor) -> torch.device:
    return example.device if isinstance(example, torch.Tensor) else torch.device("cpu")


def compile_stage(module: nn.Module, example_input: torch.Tensor, backend: str = "eager"):
    """Prepare `module` for inference with `backend` (see module docstring).

    `example_input` fixes the static shape and device. The result is always an nn.Module
    (ScriptModule for "jit", NoGradModule for "compile"/"tensorrt") called with one tensor
    and returning what `module` returns; it carries `input_size` when `module` has one.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    device = _example_device(example_input)
    if backend == "auto":
        backend = resolve_auto(device)
    if backend == "none":
        return module.eval()
    if backend == "tensorrt":
        return _tensorrt(module, example_input)
    if backend == "onnxruntime":
        return _onnxruntime(module, example_input)
    module = prepare_eager(module, device, example_input, fast_path=backend == "eager")
    if backend == "eager":
        return module
    if backend == "jit":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, (example_input,), check_trace=False)
            frozen = torch.jit.freeze(traced.eval())
            for _ in range(2):  # profiling executor specializes on the first calls
                frozen(example_input)
        for attr in ("input_size", "name"):
            if hasattr(module, attr):
                try:
                    setattr(frozen, attr, getattr(module, attr))
                except Exception:
                    pass
        return frozen
    # "compile"
    options = {"freezing": True} if device.type == "cpu" else {}
    compiled = torch.compile(module, backend="inductor", dynamic=False, options=options)
    with torch.no_grad():
        compiled(example_input)
    return NoGradModule(compiled, module)


def resolve_auto(device) -> str:
    """The backend "auto" stands for on `device` (see the module doc)."""
    device = torch.device(device)
    if device.type == "cpu":
        have = all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))
        return "onnxruntime" if have else "eager"
    if device.type == "cuda" and importlib.util.find_spec("torch_tensorrt") is not None:
        return "tensorrt"
    return "eager"


class NoGradModule(nn.Module):
    """nn.Module calling `inner` under torch.no_grad (inductor freezing applies only there;
    it also avoids a recompile when the caller has grad mode on). Copies `input_size`."""

    def __init__(self, inner, like: nn.Module | None = None):
        super().__init__()
        self.inner = inner
        size = getattr(like, "input_size", None)
        if size is not None:
            self.input_size = size

    def forward(self, x):
        with torch.no_grad():
            return self.inner(x)


def _tensorrt(module: nn.Module, example_input: torch.Tensor):
    if importlib.util.find_spec("torch_tensorrt") is None:
        raise BackendUnavailable(
            "backend 'tensorrt' needs the torch_tensorrt package (pip install torch-tensorrt "
            "matching your torch/CUDA); use backend='eager' or 'compile' instead"
        )
    if not torch.cuda.is_available():
        raise BackendUnavailable("backend 'tensorrt' needs a CUDA GPU; torch.cuda.is_available() is False")
    import torch_tensorrt  # noqa: PLC0415

    module = module.eval().requires_grad_(False).cuda()
    example = example_input.cuda().contiguous()
    trt = torch_tensorrt.compile(module, ir="dynamo", inputs=[example], enabled_precisions={torch.float32})
    return NoGradModule(trt, module)


def _onnxruntime(module: nn.Module, example_input: torch.Tensor):
    missing = [m for m in ("onnxruntime", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendUnavailable(f"backend 'onnxruntime' needs the {' and '.join(missing)} package(s) "
                                 "(requirements/core.txt); use backend='eager' instead")
    if example_input.device.type != "cpu":
        raise BackendUnavailable("backend 'onnxruntime' runs on the CPU here; use 'tensorrt' or 'eager' on CUDA")
    import onnxruntime as ort  # noqa: PLC0415

    module = module.eval().requires_grad_(False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # no busy-waiting between calls: the node's other threads need the cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    path = _onnx_file(module, example_input)
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - a corrupt or stale cache file: export again
        log.warning("ONNX cache %s unusable (%s); exporting again", path, exc)
        path.unlink(missing_ok=True)
        path = _onnx_file(module, example_input)
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        single = isinstance(module(example_input), torch.Tensor)
    return OnnxRuntimeModule(session, module, single)


def _onnx_file(module: nn.Module, example_input: torch.Tensor) -> Path:
    """Export `module` (dynamic batch) once per weights/shape/torch version; the cached file path."""
    from ..paths import atomic_write_bytes, cache_dir  # noqa: PLC0415
    from .models import _digest  # noqa: PLC0415

    key = hashlib.sha256(f"{_digest(module.state_dict())}|{type(module).__name__}|"
                         f"{tuple(example_input.shape[1:])}|{torch.__version__}|{ONNX_OPSET}".encode()).hexdigest()
    name = getattr(module, "name", type(module).__name__)
    path = cache_dir() / "onnx" / f"{name}-{key[:16]}.onnx"
    if path.is_file():
        return path
    with torch.no_grad():
        outputs = module(example_input)
    count = 1 if isinstance(outputs, torch.Tensor) else len(outputs)
    names = [f"out{i}" for i in range(count)]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example_input,), buffer, dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["x"], output_names=names,
                          dynamic_axes={n: {0: "batch"} for n in ["x", *names]})
    atomic_write_bytes(path, buffer.getvalue())
    return path


class OnnxRuntimeModule(nn.Module):
    """nn.Module running an ONNX Runtime session: forward(x) -> what `like(x)` returns (CPU tensors).
    Copies `input_size` and `name` from `like`."""

    def __init__(self, session, like: nn.Module, single: bool):
        super().__init__()
        self.__dict__["session"] = session  # not a submodule / state
        self.single = single
        for attr in ("input_size", "name"):
            if hasattr(like, attr):
                setattr(self, attr, getattr(like, attr))

    def forward(self, x):
        outs = self.session.run(None, {"x": x.detach().float().contiguous().numpy()})
        outs = tuple(torch.from_numpy(o) for o in outs)
        return outs[0] if self.single else outs
