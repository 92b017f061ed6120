"""Runners: a converted network behind one call, one class per execution backend.

    runner = make_runner(module, backend="auto", device="cpu", max_batch=1, precision="fp32")
    outputs = runner(x)     # x: (B, 3, H, W) float32 RGB in [0, 1] on runner.device -> module(x)

Every Runner has `name`, `backend`, `device`, `input_size` (H, W), `input_channels` (the module's
`input_channels`, default 3: an image), `max_batch`, `precision` and
`module` (the eager nn.Module it runs, for export or as a reference). Calls run under
torch.inference_mode (as the pipeline's stages do; compiled graphs are guarded on that mode).
A batch may hold 0 to any number of images: above `max_batch` the compiled runners (compile,
tensorrt) split it into chunks of at most `max_batch`, so one compiled shape range serves all.

- EagerRunner ("eager"): the module itself, eval, no-grad parameters, weights in channels_last
  (on CPU every conv then goes through oneDNN, ~2x faster than NCHW for these depthwise-heavy
  nets), plus one frozen TorchScript copy of the converted graph per batch size 1..max_batch
  (no per-op Python dispatch, ~15% on CPU). "none": the module untouched (a reference).
- CompileRunner ("compile"): torch.compile (inductor; CPU: freezing = oneDNN weight prepacking
  + conv/activation fusion) with the batch dim dynamic in [2, max_batch] (batch 1 gets its own
  specialised graph), both compiled at construction: changing the face count never recompiles.
  Needs a C++ compiler on CPU; ~1 min per graph on a 2-core CPU.
- OnnxRuntimeRunner ("onnxruntime", CPU): the module exported to ONNX with a dynamic batch,
  cached in the user cache dir by weights and code digest (`code_digest`), run by ONNX Runtime's
  CPU provider with torch's thread count. FaceMesh on the 2-core CPU: 1.2 ms against ~1.9 ms eager.
- TensorRTRunner ("tensorrt", CUDA): torch_tensorrt (dynamo) engine for the batch range
  1..max_batch on the configured `cuda:N`, fp32 or fp16, cached on disk (see its docstring).

make_runner falls back when a backend cannot be built here (missing package, no CUDA, a
compile error): tensorrt -> compile -> eager on CUDA, onnxruntime -> eager on CPU, anything
else -> eager, with ONE warning line naming what failed and what runs instead. `strict=True`
raises BackendUnavailable instead. "auto" = onnxruntime on CPU when onnxruntime and onnx are
installed, tensorrt on CUDA when torch_tensorrt is, else eager (and still falls back).
Precision "fp16" is honoured by the tensorrt runner; the others run fp32 (on CUDA without TF32).
PARITY_BOUND[precision] bounds max |runner - eager fp32 on CPU| / output scale; tools/gpu_check.py
asserts it on CUDA for every backend.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import inspect
import io
import json
import logging
import tempfile
import warnings
from abc import ABC, abstractmethod
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)
ONNX_OPSET = 17
TENSORRT_CACHE_FORMAT = 1  # bump when the engine build settings below change

BACKENDS = ("auto", "eager", "compile", "tensorrt", "onnxruntime", "none")
PRECISIONS = ("fp32", "fp16")
# max |runner - eager fp32| / output scale (scale = max(peak-to-peak, max |ref|) per output)
PARITY_BOUND = {"fp32": 1e-3, "fp16": 1e-2}
_FALLBACK_ORDER = {"cuda": ("tensorrt", "compile", "eager"), "cpu": ("onnxruntime", "eager")}


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (missing package or device, or its build failed)."""


# ----------------------------------------------------------------------------- interface


class Runner(ABC):
    """One network on one backend: runner(x (B, 3, H, W) float32) -> what `module(x)` returns."""

    backend: str = ""
    chunked = False  # compiled for batches 1..max_batch only: larger batches are split
    precisions = ("fp32",)  # what it can run; another request runs fp32 (`precision` says which)

    def __init__(self, module: nn.Module, device: torch.device, max_batch: int, precision: str):
        self.module = module
        self.name = getattr(module, "name", type(module).__name__)
        self.input_size = tuple(getattr(module, "input_size", ()))
        self.input_channels = int(getattr(module, "input_channels", 3))
        self.device = torch.device(device)
        self.max_batch = int(max_batch)
        self.precision = precision if precision in self.precisions else "fp32"

    @abstractmethod
    def _forward(self, x: torch.Tensor):
        """Outputs for a batch of 1..max_batch images (any batch when not `chunked`)."""

    def __call__(self, x: torch.Tensor):
        with torch.inference_mode(), self._numerics():
            n = x.shape[0]
            if n == 0:  # no faces: the plain graph handles an empty batch, engines may not
                return self.module(x)
            if not self.chunked or n <= self.max_batch:
                return self._forward(x)
            parts = [self._forward(x[i : i + self.max_batch]) for i in range(0, n, self.max_batch)]
            if isinstance(parts[0], torch.Tensor):
                return torch.cat(parts)
            return tuple(torch.cat(outs) for outs in zip(*parts))

    def _numerics(self):
        """fp32 on CUDA means fp32: cuDNN convs without TF32 (its default on Ampere and later is on;
        TF32 rounds conv inputs to 10 mantissa bits, ~1e-3 relative: the size of the fp32 parity bound).
        Other cuDNN flags stay as they are."""
        if self.device.type != "cuda" or self.precision != "fp32" or self.backend == "tensorrt":
            return contextlib.nullcontext()
        cudnn = torch.backends.cudnn
        return cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                           allow_tf32=False)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name!r}, device={self.device}, max_batch={self.max_batch}, "
                f"precision={self.precision!r})")


def make_runner(module: nn.Module, backend: str = "auto", device="cpu", max_batch: int = 1,
                precision: str = "fp32", strict: bool = False) -> Runner:
    """`module` ready to run on `device` with `backend` for batches of 1..max_batch (module doc)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {PRECISIONS}")
    if int(max_batch) < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    device = _normalized_device(device)
    chosen = resolve_auto(device) if backend == "auto" else backend
    chain = (chosen,) if strict else fallback_chain(chosen, device.type)
    failed = []
    for name in chain:
        try:
            runner = RUNNERS[name](module, device, max_batch, precision)
        except Exception as exc:  # noqa: BLE001 - a failed build must never kill the node
            if strict:
                if isinstance(exc, BackendUnavailable):
                    raise
                raise BackendUnavailable(f"backend {name!r} failed to build: {type(exc).__name__}: {exc}") from exc
            if name == chain[-1]:
                raise
            failed.append(f"{name} ({_one_line(exc)})")
            continue
        if failed:
            log.warning("%s on %s: %s unavailable; running on %s", runner.name, device, "; ".join(failed), name)
        if runner.precision != precision:
            log.info("%s: backend %s runs %s (%s is for tensorrt)", runner.name, name, runner.precision, precision)
        return runner
    raise AssertionError("unreachable: the chain ends in eager")


def fallback_chain(backend: str, device_type: str) -> tuple[str, ...]:
    """Backends tried in order for `backend` on a device of `device_type`."""
    order = _FALLBACK_ORDER.get(device_type, ("eager",))
    if backend in order:
        return order[order.index(backend):]
    return (backend,) if backend in ("eager", "none") else (backend, "eager")


def resolve_auto(device) -> str:
    """The backend "auto" stands for on `device` (see the module doc)."""
    device = torch.device(device)
    if device.type == "cpu":
        have = all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))
        return "onnxruntime" if have else "eager"
    if device.type == "cuda" and importlib.util.find_spec("torch_tensorrt") is not None:
        return "tensorrt"
    return "eager"


def _normalized_device(device) -> torch.device:
    """torch.device with an index for CUDA (cache keys and engines are per GPU)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max |got - ref| / output scale, the measure PARITY_BOUND bounds."""
    ref64 = ref.detach().double().cpu()
    got64 = got.detach().double().cpu().reshape(ref64.shape)
    scale = max(float(ref64.max() - ref64.min()), float(ref64.abs().max()), 1e-6) if ref64.numel() else 1.0
    return float((got64 - ref64).abs().max()) / scale if ref64.numel() else 0.0


def max_relative_error(got, ref) -> float:
    """relative_error over all outputs (a tensor or a tuple of tensors)."""
    if isinstance(ref, torch.Tensor):
        return relative_error(got, ref)
    return max(relative_error(g, r) for g, r in zip(got, ref))


# ----------------------------------------------------------------------------- eager


def prepare_eager(module: nn.Module, device=None, example_input: torch.Tensor | None = None,
                  fast_path: bool = True, batches=(1,)) -> nn.Module:
    """eval + no-grad parameters + channels_last weights (+ frozen fast paths, see below).

    With `example_input` (any batch), every sub-network that supports it (`set_fast_path`) gets
    a `torch.jit.trace` + `torch.jit.freeze` copy of its converted graph for each batch size in
    `batches`: it removes the per-op Python dispatch of the fx graph (~15% on CPU). The module
    itself is unchanged (same parameters, state_dict, torch.export/compile behaviour); calls with
    another shape/device, under autograd, or while exporting/compiling use the plain graph.
    Call `clear_fast_path()` (or re-run this) after editing weights.
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
                sub.clear_fast_path()
                for batch in batches:
                    _install_fast_path(sub, _batch_of(example_input, batch))
    return module


def _batch_of(example: torch.Tensor, batch: int) -> torch.Tensor:
    return example[:1].expand(batch, *example.shape[1:]).clone() if example.shape[0] != batch else example


def _install_fast_path(net: nn.Module, example_input: torch.Tensor) -> None:
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
        except Exception as exc:  # noqa: BLE001 - the plain graph always works
            log.debug("%s: no frozen fast path (%s); the plain graph runs", type(net).__name__, _one_line(exc))
            return
        if ok:
            net.set_fast_path(frozen, x)


def _example(module: nn.Module, batch: int, device: torch.device) -> torch.Tensor:
    h, w = module.input_size
    c = int(getattr(module, "input_channels", 3))
    return torch.rand(batch, c, h, w, generator=torch.Generator().manual_seed(0)).to(device)


class EagerRunner(Runner):
    """PyTorch eager (module doc); any batch size, frozen fast paths for 1..max_batch."""

    backend = "eager"

    def __init__(self, module: nn.Module, device: torch.device, max_batch: int, precision: str):
        super().__init__(module, device, max_batch, precision)
        prepare_eager(module, self.device, _example(module, 1, self.device), batches=range(1, self.max_batch + 1))

    def _forward(self, x):
        return self.module(x)


class PlainRunner(Runner):
    """The module untouched ("none"): eval on `device`, no layout change, no fast path."""

    backend = "none"

    def __init__(self, module: nn.Module, device: torch.device, max_batch: int, precision: str):
        super().__init__(module.eval().requires_grad_(False).to(device), device, max_batch, precision)

    def _forward(self, x):
        return self.module(x)


# ----------------------------------------------------------------------------- torch.compile


class CompileRunner(Runner):
    """torch.compile (inductor) with a dynamic batch dim; no recompile for batches 1..max_batch.

    Dynamo specialises size 1, so batch 1 is one graph and batches 2..max_batch one more (the
    batch marked dynamic with that range); both are compiled here, none later.
    """

    backend = "compile"
    chunked = True

    def __init__(self, module: nn.Module, device: torch.device, max_batch: int, precision: str):
        super().__init__(module, device, max_batch, precision)
        if self.device.type == "cpu" and not _have_cxx_compiler():
            raise BackendUnavailable("backend 'compile' needs a C++ compiler (gcc/g++/clang) on CPU")
        prepare_eager(module, self.device, fast_path=False)
        options = {"freezing": True} if self.device.type == "cpu" else {}
        self.compiled = torch.compile(module, backend="inductor", dynamic=None, options=options)
        with torch.inference_mode(), self._numerics():  # the mode of every later call (Runner.__call__)
            self.compiled(_example(module, 1, self.device).clone())
            if self.max_batch >= 2:
                x = _example(module, self.max_batch, self.device).clone()
                if self.max_batch >= 3:  # a [2, 2] range is just the static batch-2 graph
                    torch._dynamo.mark_dynamic(x, 0, min=2, max=self.max_batch)
                self.compiled(x)

    def _forward(self, x):
        # dynamo guards on strides and on the input being an inference tensor (made in inference
        # mode) or not: give it what it was compiled for, a fresh contiguous inference tensor
        if not (x.is_inference() and x.is_contiguous() and x.storage_offset() == 0):
            x = x.clone(memory_format=torch.contiguous_format)
        return self.compiled(x)


def _have_cxx_compiler() -> bool:
    import shutil  # noqa: PLC0415

    return any(shutil.which(c) for c in ("g++", "c++", "clang++", "gcc", "cc"))


# ----------------------------------------------------------------------------- ONNX Runtime


class OnnxRuntimeRunner(Runner):
    """ONNX Runtime, CPU provider (module doc); any batch size (dynamic batch export)."""

    backend = "onnxruntime"

    def __init__(self, module: nn.Module, device: torch.device, max_batch: int, precision: str):
        missing = [m for m in ("onnxruntime", "onnx") if importlib.util.find_spec(m) is None]
        if missing:
            raise BackendUnavailable(f"backend 'onnxruntime' needs the {' and '.join(missing)} package(s) "
                                     "(requirements/core.txt)")
        if torch.device(device).type != "cpu":
            raise BackendUnavailable("backend 'onnxruntime' runs on the CPU here, not on CUDA")
        import onnxruntime as ort  # noqa: PLC0415

        module = module.eval().requires_grad_(False).to(device)
        super().__init__(module, device, max_batch, precision)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no busy-waiting between calls: the node's other threads need the cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        example = _example(module, 1, self.device)
        path = _onnx_file(module, example)
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - a corrupt or stale cache file: export again
            log.warning("ONNX cache %s unusable (%s); exporting again", path, _one_line(exc))
            path.unlink(missing_ok=True)
            path = _onnx_file(module, example)
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.session = session
        with torch.inference_mode():
            self.single = isinstance(module(example), torch.Tensor)

    def _forward(self, x):
        outs = self.session.run(None, {"x": x.detach().float().contiguous().numpy()})
        outs = tuple(torch.from_numpy(o) for o in outs)
        return outs[0] if self.single else outs


def code_digest(module: nn.Module) -> str:
    """sha256 of the code `module` runs: the source of each submodule's class (an fx.GraphModule's
    generated code), so that a cached export is never reused after that code changed."""
    from torch import fx  # noqa: PLC0415

    parts = set()
    for sub in module.modules():
        if isinstance(sub, fx.GraphModule):
            parts.add(sub.code)
            continue
        try:
            parts.add(inspect.getsource(type(sub)))
        except (OSError, TypeError):  # no source file (e.g. a class built at run time)
            parts.add(type(sub).__qualname__)
    return hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()


def _onnx_file(module: nn.Module, example_input: torch.Tensor) -> Path:
    """Export `module` (dynamic batch) once per weights/code/shape/torch version; the cached file path."""
    from ..paths import atomic_write_bytes, cache_dir  # noqa: PLC0415
    from .models import _digest  # noqa: PLC0415

    key = hashlib.sha256(f"{_digest(module.state_dict())}|{code_digest(module)}|{type(module).__name__}|"
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


# ----------------------------------------------------------------------------- TensorRT


class TensorRTRunner(Runner):
    """torch_tensorrt (dynamo IR) engine on `cuda:N` for batches 1..max_batch, cached on disk.

    Built from a batch RANGE: torch_tensorrt.Input(min (1,3,H,W), opt (1,3,H,W) (one face is the
    common case), max (max_batch,3,H,W)); larger batches are split. Compiled under
    torch.cuda.device(N) with device=cuda:N (never a bare .cuda()).
    Cache: `cache_dir()/tensorrt/<name>-<precision>-<key>.ep` (torch_tensorrt.save, written
    atomically), key = engine_cache_key(weights and code digest, shape range, precision, torch /
    torch_tensorrt / TensorRT versions, GPU name and compute capability). A cached engine that
    does not load or does not match the eager module is rebuilt.
    Precision: "fp32" with TF32 off; "fp16" runs the network in half precision (input and outputs
    stay float32: the casts are in the engine).
    Parity bound (asserted by tools/gpu_check.py, checked loosely (x10) on every build/load):
    max |trt - eager fp32| / output scale <= 1e-3 (fp32), <= 1e-2 (fp16; ~2 px of FaceMesh's
    192 px crop at most). PARITY_BOUND holds these numbers.
    """

    backend = "tensorrt"
    chunked = True
    precisions = ("fp32", "fp16")

    def __init__(self, module: nn.Module, device: torch.device, max_batch: int, precision: str):
        self.trt = _import_torch_tensorrt(device)
        module = module.eval().requires_grad_(False).to(device)
        for sub in module.modules():  # frozen TorchScript fast paths neither export nor deep-copy
            if hasattr(sub, "clear_fast_path"):
                sub.clear_fast_path()
        super().__init__(module, device, max_batch, precision)
        (h, w), c = self.input_size, self.input_channels
        self.shape_range = ((1, c, h, w), (1, c, h, w), (self.max_batch, c, h, w))
        from ..paths import cache_dir  # noqa: PLC0415
        from .models import _digest  # noqa: PLC0415

        self.cache_key = engine_cache_key(f"{_digest(module.state_dict())}|{code_digest(module)}", self.name,
                                          self.shape_range, precision,
                                          tensorrt_versions(self.device))
        self.cache_path = cache_dir() / "tensorrt" / f"{self.name}-{precision}-{self.cache_key[:16]}.ep"
        with torch.cuda.device(self.device):
            self.engine = self._load_cached() or self._build()

    def _forward(self, x):
        outs = self.engine(x.to(self.device, torch.float32).contiguous())
        return tuple(outs) if isinstance(outs, list) else outs

    def _engine_input(self):
        mn, opt, mx = self.shape_range
        if mn == mx:
            return self.trt.Input(shape=mx, dtype=torch.float32)
        try:  # the name lets torch_tensorrt.save derive the dynamic batch of forward(x)
            return self.trt.Input(min_shape=mn, opt_shape=opt, max_shape=mx, dtype=torch.float32, name="x")
        except TypeError:  # older torch_tensorrt: no `name`
            return self.trt.Input(min_shape=mn, opt_shape=opt, max_shape=mx, dtype=torch.float32)

    def _graph(self) -> nn.Module:
        return _HalfIO(copy.deepcopy(self.module).half()) if self.precision == "fp16" else self.module

    def _build(self):
        trt = self.trt
        fields = {f.name for f in dataclasses.fields(trt.dynamo.CompilationSettings)}
        kwargs = {"ir": "dynamo", "inputs": [self._engine_input()], "device": self.device}
        if "use_explicit_typing" in fields:  # strong typing: the graph's dtypes are the engine's
            kwargs["use_explicit_typing"] = True
        else:
            kwargs["enabled_precisions"] = {torch.float16, torch.float32} if self.precision == "fp16" else {torch.float32}
        if self.precision == "fp32" and "disable_tf32" in fields:
            kwargs["disable_tf32"] = True
        with torch.inference_mode(False):  # torch.export cannot trace inference tensors
            engine = trt.compile(self._graph(), **kwargs)
        self._check(engine, "built")
        self._save(engine)
        return engine

    def _load_cached(self):
        if not self.cache_path.is_file():
            return None
        try:
            load = getattr(self.trt, "load", None) or torch.export.load
            engine = load(str(self.cache_path)).module()
            self._check(engine, "cached")
            return engine
        except Exception as exc:  # noqa: BLE001 - corrupt, stale or foreign: build again
            log.info("TensorRT cache %s unusable (%s); building again", self.cache_path, _one_line(exc))
            self.cache_path.unlink(missing_ok=True)
            return None

    def _save(self, engine) -> None:
        from ..paths import atomic_write_bytes  # noqa: PLC0415

        params = inspect.signature(self.trt.save).parameters
        kwargs = {"output_format": "exported_program"}
        if "arg_inputs" in params:
            kwargs["arg_inputs"] = [self._engine_input()]
        else:
            kwargs["inputs"] = [self._engine_input()]
        if "retrace" in params:
            kwargs["retrace"] = True
        try:
            with tempfile.TemporaryDirectory() as tmp:
                tmp_path = Path(tmp) / "engine.ep"
                self.trt.save(engine, str(tmp_path), **kwargs)
                atomic_write_bytes(self.cache_path, tmp_path.read_bytes())
            # a program saved without its batch range would fail at max_batch: try it once now
            self._check((getattr(self.trt, "load", None) or torch.export.load)(str(self.cache_path)).module(), "saved")
        except Exception as exc:  # noqa: BLE001 - the engine runs; only the next start pays
            log.info("TensorRT engine for %s not cached (%s)", self.name, _one_line(exc))
            self.cache_path.unlink(missing_ok=True)

    def _check(self, engine, what: str) -> None:
        """Engine vs the eager fp32 module at batch 1 and max_batch (also the warm-up)."""
        bound = 10 * PARITY_BOUND[self.precision]
        for batch in sorted({1, self.max_batch}):
            x = _example(self.module, batch, self.device)
            with torch.inference_mode():
                err = max_relative_error(engine(x), self.module(x))
            if not err <= bound:
                raise BackendUnavailable(f"{what} TensorRT engine for {self.name} differs from eager at batch "
                                         f"{batch}: relative error {err:.2e} > {bound:.0e}")


class _HalfIO(nn.Module):
    """Runs `inner` (already .half()) on a float32 input; float32 outputs."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        outs = self.inner(x.half())
        if isinstance(outs, torch.Tensor):
            return outs.float()
        return tuple(o.float() for o in outs)


def _import_torch_tensorrt(device: torch.device):
    device = torch.device(device)
    if device.type != "cuda":
        raise BackendUnavailable(f"backend 'tensorrt' needs a CUDA device; the device is {device}")
    if importlib.util.find_spec("torch_tensorrt") is None:
        raise BackendUnavailable("backend 'tensorrt' needs the torch_tensorrt package (pip install torch-tensorrt "
                                 "matching your torch/CUDA)")
    if not torch.cuda.is_available():
        raise BackendUnavailable("backend 'tensorrt' needs a CUDA GPU; torch.cuda.is_available() is False")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise BackendUnavailable(f"no {device}: {torch.cuda.device_count()} CUDA device(s)")
    try:
        import torch_tensorrt  # noqa: PLC0415
    except Exception as exc:  # noqa: BLE001 - a broken install (ABI, missing libnvinfer)
        raise BackendUnavailable(f"import torch_tensorrt failed: {_one_line(exc)}") from exc
    return torch_tensorrt


def tensorrt_versions(device=None) -> dict[str, str]:
    """What a serialized engine depends on besides the weights: library versions and the GPU."""
    versions = {"torch": torch.__version__, "format": str(TENSORRT_CACHE_FORMAT)}
    for key, dists in (("torch_tensorrt", ("torch_tensorrt", "torch-tensorrt")),
                       ("tensorrt", ("tensorrt", "tensorrt-cu12", "tensorrt-cu11", "tensorrt_cu12_libs"))):
        versions[key] = "none"
        for dist in dists:
            try:
                versions[key] = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        versions["gpu"] = f"{torch.cuda.get_device_name(index)} sm{major}{minor}"
    else:
        versions["gpu"] = "none"
    return versions


def engine_cache_key(weights_digest: str, network: str, shape_range, precision: str, versions: dict) -> str:
    """sha256 (hex) naming one TensorRT engine: any change of its inputs gives another key."""
    blob = json.dumps({"weights": weights_digest, "network": network,
                       "shapes": [list(map(int, s)) for s in shape_range], "precision": precision,
                       "versions": dict(sorted(versions.items()))}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


RUNNERS: dict[str, type[Runner]] = {
    "eager": EagerRunner,
    "none": PlainRunner,
    "compile": CompileRunner,
    "onnxruntime": OnnxRuntimeRunner,
    "tensorrt": TensorRTRunner,
}
