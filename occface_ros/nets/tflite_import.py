"""Our own TFLite -> PyTorch converter (no TensorFlow, no MediaPipe import).

`read_tflite` parses a .tflite flatbuffer with the `tflite` package into a small
op-list description (`TFLGraph`); constant DEQUANTIZE (float16 / int8) and DENSIFY
(sparse weights) ops are folded into dense float32 constants.

`build_graph_module` turns that op list into a `torch.fx.GraphModule` working in NCHW:
straight-line generated Python that calls real `nn.Conv2d` / `nn.PReLU` / `nn.Linear`
submodules, so it is fast in eager mode, scriptable, and `torch.export`-able.

Layout rules: every rank-4 activation (NHWC in TFLite) is kept as NCHW; conv weights
OHWI -> OIHW, depthwise 1HW(C*m) -> (C*m)1HW; TFLite SAME padding is computed from the
static shapes and, when asymmetric (stride 2: TF pads more at the bottom/right), done
with an explicit `F.pad`; spatial zero PAD ops feeding a VALID conv are folded into
the conv's own (symmetric) padding. Axis-sensitive ops (RESHAPE, CONCATENATION, MEAN,
FULLY_CONNECTED, DEPTH_TO_SPACE) are remapped. Graph outputs are returned in TFLite's
layout (NHWC for rank 4) so they compare 1:1 with the interpreter.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from tflite.utils import BUILTIN_OPCODE2NAME

__all__ = ["TFLTensor", "TFLOp", "TFLGraph", "read_tflite", "build_graph_module", "densify"]

_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16, 9: np.int8}
_OPTION_CLASSES = {
    "CONV_2D": "Conv2DOptions",
    "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "ADD": "AddOptions",
    "MUL": "MulOptions",
    "SUB": "SubOptions",
    "MAX_POOL_2D": "Pool2DOptions",
    "AVERAGE_POOL_2D": "Pool2DOptions",
    "RESIZE_BILINEAR": "ResizeBilinearOptions",
    "RESIZE_NEAREST_NEIGHBOR": "ResizeNearestNeighborOptions",
    "CONCATENATION": "ConcatenationOptions",
    "FULLY_CONNECTED": "FullyConnectedOptions",
    "MEAN": "ReducerOptions",
    "DEPTH_TO_SPACE": "DepthToSpaceOptions",
}
# TFLite enum values
_SAME, _VALID = 0, 1
_ACT = {0: None, 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh"}


@dataclass
class TFLTensor:
    name: str
    shape: tuple[int, ...]
    dtype: type
    data: np.ndarray | None = None  # constant value (after folding), else None


@dataclass
class TFLOp:
    index: int
    kind: str
    inputs: list[int]
    outputs: list[int]
    options: dict = field(default_factory=dict)


@dataclass
class TFLGraph:
    tensors: list[TFLTensor]
    ops: list[TFLOp]
    inputs: list[int]
    outputs: list[int]


def _options(op, kind: str) -> dict:
    cls_name = _OPTION_CLASSES.get(kind)
    table = op.BuiltinOptions()
    if cls_name is None or table is None:
        return {}
    cls = getattr(importlib.import_module(f"tflite.{cls_name}"), cls_name)
    o = cls()
    o.Init(table.Bytes, table.Pos)
    out = {}
    for k in dir(o):
        if not k[0].isupper() or k.startswith(("Init", "GetRoot")) or "Buffer" in k:
            continue
        if k.endswith(("AsNumpy", "Length", "IsNone")):
            continue
        try:
            out[k] = getattr(o, k)()
        except TypeError:
            pass
    return out


def _index_vector(dm, which: str) -> np.ndarray:
    """A SparseIndexVector union (Int32/Uint16/Uint8 vector) as int64 numpy."""
    kind = getattr(dm, f"{which}Type")()
    table = getattr(dm, which)()
    cls_name = {1: "Int32Vector", 2: "Uint16Vector", 3: "Uint8Vector"}[kind]
    cls = getattr(importlib.import_module(f"tflite.{cls_name}"), cls_name)
    v = cls()
    v.Init(table.Bytes, table.Pos)
    return np.asarray(v.ValuesAsNumpy(), dtype=np.int64)


def densify(values: np.ndarray, shape, sparsity) -> np.ndarray:
    """TFLite SparsityParameters (DENSE / SPARSE_CSR levels, optional blocks) -> dense array.

    Vectorized version of tflite's FormatConverter::SparseToDense: walk the levels in
    traversal order keeping, for every stored path, the CSR parent position and the
    coordinate along each expanded dimension.
    """
    shape = [int(s) for s in shape]
    n = len(shape)
    trav = [int(t) for t in sparsity.TraversalOrderAsNumpy()]
    block_map = [] if sparsity.BlockMapIsNone() else [int(b) for b in sparsity.BlockMapAsNumpy()]
    levels = sparsity.DimMetadataLength()
    prev = np.zeros(1, dtype=np.int64)
    coords = np.zeros((levels, 1), dtype=np.int64)
    dense_sizes = {}
    for lvl in range(levels):
        dm = sparsity.DimMetadata(lvl)
        if dm.Format() == 0:  # DENSE
            size = int(dm.DenseSize())
            dense_sizes[trav[lvl]] = size
            k = prev.shape[0]
            prev = (prev[:, None] * size + np.arange(size)[None, :]).reshape(-1)
            coords = np.repeat(coords, size, axis=1)
            coords[lvl] = np.tile(np.arange(size), k)
        else:  # SPARSE_CSR
            seg = _index_vector(dm, "ArraySegments")
            idx = _index_vector(dm, "ArrayIndices")
            starts, ends = seg[prev], seg[prev + 1]
            counts = ends - starts
            pos = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
            coords = np.repeat(coords, counts, axis=1)
            coords[lvl] = idx[pos]
            prev = pos
    # expanded coordinate per expanded dim
    exp = {trav[lvl]: coords[lvl] for lvl in range(levels)}
    orig = []
    for d in range(n):
        c = exp[d]
        if d in block_map:
            j = block_map.index(d)
            c = c * dense_sizes[n + j] + exp[n + j]
        orig.append(c)
    out = np.zeros(shape, dtype=values.dtype)
    if coords.shape[1] != values.size:
        raise ValueError(f"densify: {coords.shape[1]} positions for {values.size} values")
    out[tuple(orig)] = values.reshape(-1)
    return out


def read_tflite(path_or_bytes, with_weights: bool = True) -> TFLGraph:
    """Parse subgraph 0 of a .tflite model. Constant DEQUANTIZE/DENSIFY chains are folded.

    with_weights=False skips decoding large float weights (only int constants such as
    paddings/shapes/axes are read): enough to build the architecture before loading a
    cached state dict.
    """
    import tflite

    buf = Path(path_or_bytes).read_bytes() if not isinstance(path_or_bytes, (bytes, bytearray)) else bytes(path_or_bytes)
    model = tflite.Model.GetRootAsModel(buf, 0)
    g = model.Subgraphs(0)
    tensors: list[TFLTensor] = []
    sparsity: dict[int, object] = {}
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        dtype = _DTYPES.get(t.Type(), None)
        data = None
        b = model.Buffers(t.Buffer())
        if b is not None and b.DataLength() > 0:
            is_float = dtype in (np.float32, np.float16)
            if with_weights or not is_float:
                raw = b.DataAsNumpy().tobytes()
                arr = np.frombuffer(raw, dtype=dtype).copy()
                if t.Sparsity() is not None:
                    sparsity[i] = t.Sparsity()
                    data = arr  # densified by the DENSIFY op below
                else:
                    data = arr.reshape(shape)
            else:
                data = _Lazy(shape, dtype)
        q = t.Quantization()
        tt = TFLTensor(t.Name().decode(), shape, dtype, data)
        if q is not None and q.ScaleLength() > 0:
            tt.quant = (q.ScaleAsNumpy().astype(np.float32), q.ZeroPointAsNumpy().astype(np.int64), q.QuantizedDimension())
        tensors.append(tt)
    ops: list[TFLOp] = []
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        oc = model.OperatorCodes(op.OpcodeIndex())
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        kind = BUILTIN_OPCODE2NAME.get(code, str(code))
        if kind == "CUSTOM":
            kind = "CUSTOM:" + oc.CustomCode().decode()
        ins = [int(x) for x in op.InputsAsNumpy()] if op.InputsLength() else []
        outs = [int(x) for x in op.OutputsAsNumpy()]
        # constant folding of weight-decoding ops
        if kind in ("DEQUANTIZE", "DENSIFY") and tensors[ins[0]].data is not None:
            src = tensors[ins[0]]
            dst = tensors[outs[0]]
            if isinstance(src.data, _Lazy):
                dst.data = _Lazy(dst.shape, np.float32)
            elif kind == "DENSIFY":
                dst.data = densify(src.data, dst.shape, sparsity[ins[0]])
            else:
                q = getattr(src, "quant", None)
                if src.dtype in (np.float16, np.float32):
                    dst.data = src.data.astype(np.float32)
                elif q is not None:
                    scale, zp, axis = q
                    shp = [1] * src.data.ndim
                    if scale.size > 1:
                        shp[axis] = -1
                    dst.data = ((src.data.astype(np.float32) - zp.reshape(shp)) * scale.reshape(shp)).astype(np.float32)
                else:
                    raise NotImplementedError(f"DEQUANTIZE of {src.dtype} without quantization params")
            continue
        ops.append(TFLOp(i, kind, ins, outs, _options(op, kind)))
    return TFLGraph(
        tensors,
        ops,
        [int(x) for x in g.InputsAsNumpy()],
        [int(x) for x in g.OutputsAsNumpy()],
    )


class _Lazy:
    """Placeholder for a float constant not decoded (weights come from a cache)."""

    def __init__(self, shape, dtype):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.ndim = len(self.shape)


# ----------------------------------------------------------------------------- building

_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


def _same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    out = -(-size // s)
    eff = (k - 1) * d + 1
    total = max((out - 1) * s + eff - size, 0)
    return total // 2, total - total // 2


def _act(graph: fx.Graph, node, act):
    act = _ACT.get(act, act) if not isinstance(act, str) or act is None else act
    if act is None:
        return node
    # fused activations act on the producer's fresh output: in place saves an allocation
    if act == "relu":
        return graph.call_function(torch.relu_, (node,))
    if act == "relu6":
        return graph.call_function(F.hardtanh, (node, 0.0, 6.0, True))
    if act == "relu_n1_to_1":
        return graph.call_function(F.hardtanh, (node, -1.0, 1.0, True))
    if act == "tanh":
        return graph.call_function(torch.tanh_, (node,))
    raise NotImplementedError(f"fused activation {act}")


def _add_into_channel_prefix(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x + zero-channel-padded y, computed in place on x (x is a fresh intermediate)."""
    x[:, : y.shape[1]].add_(y)
    return x


def _param(arr, lazy_shape=None) -> nn.Parameter:
    if isinstance(arr, _Lazy) or arr is None:
        return nn.Parameter(torch.empty(lazy_shape), requires_grad=False)
    return nn.Parameter(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)), requires_grad=False)


def build_graph_module(tg: TFLGraph, class_name: str = "TFLiteNet") -> fx.GraphModule:
    """Build an NCHW `fx.GraphModule` from a parsed TFLite graph.

    forward(x): x is (B, C, H, W) float32 (the TFLite NHWC input, transposed).
    Returns a tuple of the graph outputs in TFLite layout.
    """
    T = tg.tensors
    root = nn.Module()
    graph = fx.Graph()
    env: dict[int, fx.Node] = {}
    nchw: dict[int, bool] = {}
    consumers: dict[int, list[TFLOp]] = {}
    for op in tg.ops:
        for i in op.inputs:
            consumers.setdefault(i, []).append(op)
    outputs_set = set(tg.outputs)

    for k, idx in enumerate(tg.inputs):
        env[idx] = graph.placeholder(f"x{k}" if k else "x")
        nchw[idx] = len(T[idx].shape) == 4

    const_count = [0]

    def const(idx: int, as_nchw: bool | None = None) -> fx.Node:
        """A constant tensor as a registered buffer (rank-4 constants permuted to NCHW)."""
        arr = T[idx].data
        if isinstance(arr, _Lazy):
            t = torch.empty(arr.shape)
        else:
            t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        if t.ndim == 4 and as_nchw:
            t = t.permute(0, 3, 1, 2).contiguous()
        name = f"const{const_count[0]}"
        const_count[0] += 1
        root.register_buffer(name, t)
        return graph.get_attr(name)

    def val(idx: int, like_nchw: bool = False) -> fx.Node:
        if idx in env:
            return env[idx]
        if T[idx].data is not None:
            arr = T[idx].data
            # per-channel vectors broadcast over NCHW as (C, 1, 1)
            if like_nchw and arr.ndim in (1, 3) and (arr.ndim == 1 or arr.shape[:2] == (1, 1)):
                name = f"const{const_count[0]}"
                const_count[0] += 1
                if isinstance(arr, _Lazy):
                    c = torch.empty(int(np.prod(arr.shape)))
                else:
                    c = torch.from_numpy(np.asarray(arr, dtype=np.float32).reshape(-1).copy())
                root.register_buffer(name, c.reshape(-1, 1, 1))
                return graph.get_attr(name)
            return const(idx, as_nchw=like_nchw)
        raise KeyError(f"tensor {idx} ({T[idx].name}) has no producer")

    skip_pad: set[int] = set()  # PAD ops folded into the following conv
    fold_pad: dict[int, tuple[int, int]] = {}  # conv op index -> extra symmetric (ph, pw)
    for op in tg.ops:
        if op.kind != "PAD":
            continue
        pads = np.asarray(T[op.inputs[1]].data).reshape(-1, 2)
        users = consumers.get(op.outputs[0], [])
        if op.outputs[0] in outputs_set or len(users) != 1 or pads.shape[0] != 4:
            continue
        u = users[0]
        if u.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D") or u.options.get("Padding") != _VALID or u.inputs[0] != op.outputs[0]:
            continue
        if pads[0].any() or pads[3].any() or pads[1, 0] != pads[1, 1] or pads[2, 0] != pads[2, 1]:
            continue
        skip_pad.add(op.index)
        fold_pad[u.index] = (int(pads[1, 0]), int(pads[2, 0]))

    producers = {t: op for op in tg.ops for t in op.outputs}

    def _sole_fresh(idx: int) -> bool:
        """Tensor made by an op of ours, used once, not a graph output: safe to overwrite."""
        p = producers.get(idx)
        return (
            p is not None
            and p.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "PRELU", "MAX_POOL_2D", "FULLY_CONNECTED")
            and len(consumers.get(idx, [])) == 1
            and idx not in outputs_set
        )

    # ADD(x, PAD(y) on channels only) with x fresh -> x[:, :C] += y (no padded copy)
    pad_add: dict[int, tuple[int, int]] = {}
    skip_chpad: set[int] = set()
    for op in tg.ops:
        if op.kind != "ADD" or len(op.inputs) != 2 or any(i in outputs_set for i in op.outputs):
            continue
        for a, b in (op.inputs, op.inputs[::-1]):
            p = producers.get(b)
            if p is None or p.kind != "PAD" or len(consumers.get(b, [])) != 1 or not _sole_fresh(a):
                continue
            pads = np.asarray(T[p.inputs[1]].data).reshape(-1, 2)
            if pads.shape[0] != 4 or pads[:3].any() or pads[3, 0] != 0 or len(T[a].shape) != 4:
                continue
            pad_add[op.index] = (a, p.inputs[0])
            skip_chpad.add(p.index)
            break
    skip_pad |= skip_chpad

    pad_src: dict[int, int] = {}  # folded PAD output -> its input
    for op in tg.ops:
        if op.index in skip_pad and op.index not in skip_chpad:
            pad_src[op.outputs[0]] = op.inputs[0]

    for op in tg.ops:
        k = op.kind
        o = op.options
        name = f"{k.lower()}_{op.index}"
        out_idx = op.outputs[0]
        out_nchw = len(T[out_idx].shape) == 4
        if op.index in skip_pad:
            continue
        if k in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            src = pad_src.get(op.inputs[0], op.inputs[0])
            x = val(src)
            in_shape = T[src].shape  # NHWC
            wt = T[op.inputs[1]]
            kh, kw = wt.shape[1], wt.shape[2]
            sh, sw = o["StrideH"], o["StrideW"]
            dh, dw = o["DilationHFactor"], o["DilationWFactor"]
            ph = pw = (0, 0)
            if o["Padding"] == _SAME:
                ph = _same_pads(in_shape[1], kh, sh, dh)
                pw = _same_pads(in_shape[2], kw, sw, dw)
            if op.index in fold_pad:
                fh, fw = fold_pad[op.index]
                ph, pw = (ph[0] + fh, ph[1] + fh), (pw[0] + fw, pw[1] + fw)
            if ph[0] == ph[1] and pw[0] == pw[1]:
                conv_pad = (ph[0], pw[0])
            else:
                x = graph.call_function(F.pad, (x, (pw[0], pw[1], ph[0], ph[1])))
                conv_pad = (0, 0)
            cin = in_shape[3]
            if k == "CONV_2D":
                cout = wt.shape[0]
                groups = 1
                w_shape = (cout, cin, kh, kw)
                w = None if isinstance(wt.data, _Lazy) else np.transpose(wt.data, (0, 3, 1, 2))
            else:
                cout = wt.shape[3]
                groups = cin
                w_shape = (cout, 1, kh, kw)
                w = None if isinstance(wt.data, _Lazy) else np.transpose(wt.data, (3, 0, 1, 2))
            has_bias = len(op.inputs) > 2 and op.inputs[2] >= 0
            conv = nn.Conv2d(cin, cout, (kh, kw), (sh, sw), conv_pad, (dh, dw), groups=groups, bias=has_bias)
            conv.weight = _param(w, w_shape)
            if has_bias:
                conv.bias = _param(T[op.inputs[2]].data, (cout,))
            conv.requires_grad_(False)
            root.add_module(name, conv)
            # functional call on the submodule's parameters: skips nn.Module.__call__ overhead
            w_node = graph.get_attr(f"{name}.weight")
            b_node = graph.get_attr(f"{name}.bias") if has_bias else None
            y = graph.call_function(torch.conv2d, (x, w_node, b_node, (sh, sw), conv_pad, (dh, dw), groups))
            y = _act(graph, y, o["FusedActivationFunction"])
        elif k == "ADD" and op.index in pad_add:
            big, small = pad_add[op.index]
            y = graph.call_function(_add_into_channel_prefix, (val(big), val(small)))
            y = _act(graph, y, o.get("FusedActivationFunction", 0))
            out_nchw = True
        elif k == "RELU" and _sole_fresh(op.inputs[0]):
            y = graph.call_function(torch.relu_, (val(op.inputs[0]),))
            out_nchw = nchw[op.inputs[0]]
        elif k in ("ADD", "MUL", "SUB"):
            a_idx, b_idx = op.inputs
            like = any(nchw.get(i, False) for i in (a_idx, b_idx))
            a, b = val(a_idx, like), val(b_idx, like)
            fn = {"ADD": torch.add, "MUL": torch.mul, "SUB": torch.sub}[k]
            y = _act(graph, graph.call_function(fn, (a, b)), o.get("FusedActivationFunction", 0))
            out_nchw = like
        elif k == "RELU":
            y = graph.call_function(F.relu, (val(op.inputs[0]),))
            out_nchw = nchw[op.inputs[0]]
        elif k == "RELU6":
            y = graph.call_function(F.hardtanh, (val(op.inputs[0]), 0.0, 6.0))
            out_nchw = nchw[op.inputs[0]]
        elif k == "LOGISTIC":
            y = graph.call_function(torch.sigmoid, (val(op.inputs[0]),))
            out_nchw = nchw[op.inputs[0]]
        elif k == "TANH":
            y = graph.call_function(torch.tanh, (val(op.inputs[0]),))
            out_nchw = nchw[op.inputs[0]]
        elif k == "PRELU":
            x = val(op.inputs[0])
            alpha = T[op.inputs[1]]
            c = T[op.inputs[0]].shape[-1]
            per_channel = int(np.prod(alpha.shape)) == c and alpha.shape[-1] == c
            if per_channel and nchw[op.inputs[0]]:
                m = nn.PReLU(c)
                a = None if isinstance(alpha.data, _Lazy) else np.asarray(alpha.data).reshape(-1)
                m.weight = _param(a, (c,))
                root.add_module(name, m)
                y = graph.call_function(torch.prelu, (x, graph.get_attr(f"{name}.weight")))
            else:
                a = val(op.inputs[1], nchw[op.inputs[0]])
                y = graph.call_function(torch.where, (graph.call_function(torch.gt, (x, 0)), x, graph.call_function(torch.mul, (x, a))))
            out_nchw = nchw[op.inputs[0]]
        elif k == "PAD":
            x = val(op.inputs[0])
            pads = np.asarray(T[op.inputs[1]].data).reshape(-1, 2).astype(int)
            if nchw[op.inputs[0]]:
                p = (pads[2, 0], pads[2, 1], pads[1, 0], pads[1, 1], pads[3, 0], pads[3, 1], pads[0, 0], pads[0, 1])
            else:
                p = tuple(int(v) for row in pads[::-1] for v in row)
            while len(p) > 2 and p[-1] == 0 and p[-2] == 0:
                p = p[:-2]
            y = graph.call_function(F.pad, (x, tuple(int(v) for v in p)))
            out_nchw = nchw[op.inputs[0]]
        elif k in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            x = val(op.inputs[0])
            in_shape = T[op.inputs[0]].shape
            fh, fw, sh, sw = o["FilterHeight"], o["FilterWidth"], o["StrideH"], o["StrideW"]
            ph = pw = (0, 0)
            if o["Padding"] == _SAME:
                ph = _same_pads(in_shape[1], fh, sh, 1)
                pw = _same_pads(in_shape[2], fw, sw, 1)
            if k == "MAX_POOL_2D":
                if any(ph) or any(pw):
                    x = graph.call_function(F.pad, (x, (pw[0], pw[1], ph[0], ph[1])), {"value": float("-inf")})
                y = graph.call_function(F.max_pool2d, (x, (fh, fw), (sh, sw)))
            else:
                if any(ph) or any(pw):
                    if ph[0] == ph[1] and pw[0] == pw[1] and ph[0] <= fh // 2 and pw[0] <= fw // 2:
                        y = graph.call_function(F.avg_pool2d, (x, (fh, fw), (sh, sw), (ph[0], pw[0])), {"count_include_pad": False})
                    else:
                        raise NotImplementedError("asymmetric SAME average pooling")
                else:
                    y = graph.call_function(F.avg_pool2d, (x, (fh, fw), (sh, sw)))
            y = _act(graph, y, o.get("FusedActivationFunction", 0))
        elif k == "RESHAPE":
            x = val(op.inputs[0])
            if nchw[op.inputs[0]]:
                x = graph.call_function(torch.permute, (x, (0, 2, 3, 1)))
            shape = T[out_idx].shape
            y = graph.call_function(torch.reshape, (x, (-1,) + tuple(shape[1:])))
            if len(shape) == 4:
                y = graph.call_function(torch.permute, (y, (0, 3, 1, 2)))
        elif k == "CONCATENATION":
            ins = op.inputs
            like = nchw.get(ins[0], False)
            axis = o["Axis"] % len(T[out_idx].shape)
            if like:
                axis = _NHWC_TO_NCHW_AXIS[axis]
            y = graph.call_function(torch.cat, ([val(i, like) for i in ins], axis))
            y = _act(graph, y, o.get("FusedActivationFunction", 0))
            out_nchw = like
        elif k == "RESIZE_BILINEAR":
            x = val(op.inputs[0])
            size = tuple(T[out_idx].shape[1:3])
            if o.get("HalfPixelCenters") or o.get("AlignCorners"):
                y = graph.call_function(F.interpolate, (x,), {"size": size, "mode": "bilinear", "align_corners": bool(o.get("AlignCorners"))})
            else:
                raise NotImplementedError("legacy (non half-pixel) RESIZE_BILINEAR")
        elif k == "DEPTH_TO_SPACE":
            x = val(op.inputs[0])
            bs = o["BlockSize"]
            _, h, w, c = T[op.inputs[0]].shape
            cout = c // (bs * bs)
            # TF DCR ordering: channel = (i * bs + j) * cout + c
            y = graph.call_function(torch.reshape, (x, (-1, bs, bs, cout, h, w)))
            y = graph.call_function(torch.permute, (y, (0, 3, 4, 1, 5, 2)))
            y = graph.call_function(torch.reshape, (y, (-1, cout, h * bs, w * bs)))
        elif k == "MEAN":
            x = val(op.inputs[0])
            axes = [int(a) % len(T[op.inputs[0]].shape) for a in np.asarray(T[op.inputs[1]].data).reshape(-1)]
            keep = bool(o.get("KeepDims"))
            if nchw[op.inputs[0]]:
                if not keep and sorted(axes) != [1, 2]:
                    x = graph.call_function(torch.permute, (x, (0, 2, 3, 1)))
                    out_nchw = False
                else:
                    axes = [_NHWC_TO_NCHW_AXIS[a] for a in axes]
                    out_nchw = keep
            y = graph.call_function(torch.mean, (x, tuple(axes)), {"keepdim": keep})
        elif k == "FULLY_CONNECTED":
            x = val(op.inputs[0])
            if nchw[op.inputs[0]]:
                x = graph.call_function(torch.permute, (x, (0, 2, 3, 1)))
            wt = T[op.inputs[1]]
            nout, nin = wt.shape
            if not o.get("KeepNumDims"):
                x = graph.call_function(torch.reshape, (x, (-1, nin)))
            has_bias = len(op.inputs) > 2 and op.inputs[2] >= 0
            lin = nn.Linear(nin, nout, bias=has_bias)
            lin.weight = _param(wt.data, (nout, nin))
            if has_bias:
                lin.bias = _param(T[op.inputs[2]].data, (nout,))
            root.add_module(name, lin)
            b_node = graph.get_attr(f"{name}.bias") if has_bias else None
            y = graph.call_function(F.linear, (x, graph.get_attr(f"{name}.weight"), b_node))
            y = _act(graph, y, o.get("FusedActivationFunction", 0))
            out_nchw = False
        else:
            raise NotImplementedError(f"TFLite op {k} (op #{op.index})")
        env[out_idx] = y
        nchw[out_idx] = out_nchw and len(T[out_idx].shape) == 4

    outs = []
    for idx in tg.outputs:
        n = env[idx]
        if nchw[idx]:
            n = graph.call_function(torch.permute, (n, (0, 2, 3, 1)))
        outs.append(n)
    graph.output(tuple(outs))
    gm = fx.GraphModule(root, graph, class_name=class_name)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    gm.eval()
    return gm
