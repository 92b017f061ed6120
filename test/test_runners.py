"""Runners: batch ranges, fallback with one warning, strict mode, TensorRT cache keys (CPU-testable)."""
from __future__ import annotations

import importlib.util
import logging
import shutil

import cv2
import numpy as np
import pytest
import torch

from occface_ros import nets
from occface_ros.nets import runners
from occface_ros.nets.models import _digest

pytestmark = pytest.mark.unit

HAVE_TRT = importlib.util.find_spec("torch_tensorrt") is not None and torch.cuda.is_available()


@pytest.fixture(scope="module")
def face_crops() -> torch.Tensor:
    """Five real 192x192 crops of the astronaut's face (shifted and zoomed), (5, 3, 192, 192) in [0, 1]."""
    from occface_ros.app.samples import sample_path

    img = cv2.imread(str(sample_path("skimage", "astronaut.png")))[:, :, ::-1]
    crops = []
    for dx, dy, side in ((0, 0, 210), (12, -8, 230), (-10, 6, 190), (5, 10, 250), (-6, -12, 200)):
        cx, cy = 225 + dx, 125 + dy
        s = 192 / side
        m = np.array([[s, 0, -(cx - side / 2) * s], [0, s, -(cy - side / 2) * s]])
        crops.append(cv2.warpAffine(np.ascontiguousarray(img), m, (192, 192), flags=cv2.INTER_LINEAR))
    return torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32) / 255.0)


def _warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("backend", ["eager", "onnxruntime"])
def test_runner_matches_the_module_at_every_batch(backend, face_crops):
    """Batches 1, 2, 3 (the face counts of one frame) and 0 give the plain module's outputs per image."""
    ref = nets.load_network("face_landmarks", backend="none")(face_crops)
    net = nets.load_network("face_landmarks", backend=backend, max_batch=3, strict=True)
    assert (net.backend, net.max_batch, net.input_size, net.device) == (backend, 3, (192, 192), torch.device("cpu"))
    assert float(ref[2].min()) > 0.5  # real faces: FaceMesh's presence is high
    for batch in (1, 2, 3):
        for start in range(0, len(face_crops) - batch + 1, batch):
            got = net(face_crops[start : start + batch])
            for g, r in zip(got, ref):
                assert g.shape[0] == batch
                torch.testing.assert_close(g, r[start : start + batch], rtol=1e-4, atol=2e-3)
    empty = net(face_crops[:0])
    assert [tuple(t.shape) for t in empty] == [(0, 468, 3), (0,), (0,)]


def test_chunked_runner_splits_batches_above_max_batch(face_crops):
    """A runner built for 1..max_batch (compile, tensorrt) never sees a larger batch."""

    class Chunked(runners.EagerRunner):
        chunked = True
        seen: list[int] = []

        def _forward(self, x):
            self.seen.append(x.shape[0])
            return super()._forward(x)

    ref = nets.load_network("face_landmarks", backend="none")(face_crops)
    net = Chunked(nets.build_network("face_landmarks"), torch.device("cpu"), 2, "fp32")
    got = net(face_crops)
    assert net.seen == [2, 2, 1]
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=2e-3)


def test_tensorrt_on_cpu_falls_back_with_one_warning(caplog):
    with caplog.at_level(logging.INFO, logger="occface_ros.nets"):
        det = nets.load_detector("face_detector_short", backend="tensorrt", device="cpu", max_batch=2)
    assert isinstance(det.net, runners.EagerRunner) and det.net.max_batch == 2
    (warning,) = _warnings(caplog)
    text = warning.getMessage()
    assert "tensorrt" in text and "CUDA" in text and "running on eager" in text and "\n" not in text
    scores, boxes, _ = det(torch.rand(2, 3, 128, 128))
    assert scores.shape == (2, 896) and boxes.shape == (2, 896, 4)


def test_compile_without_a_compiler_falls_back_or_raises_when_strict(monkeypatch, caplog):
    monkeypatch.setenv("PATH", "")  # no gcc / g++ / clang: inductor cannot build CPU kernels
    with caplog.at_level(logging.INFO, logger="occface_ros.nets"):
        net = nets.load_network("face_detector_short", backend="compile", max_batch=3)
    assert isinstance(net, runners.EagerRunner)
    (warning,) = _warnings(caplog)
    assert "compile" in warning.getMessage() and "C++ compiler" in warning.getMessage()
    with pytest.raises(nets.BackendUnavailable, match="C\\+\\+ compiler"):
        nets.load_network("face_detector_short", backend="compile", strict=True)


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT runs here")
def test_strict_raises_backend_unavailable():
    with pytest.raises(nets.BackendUnavailable, match="tensorrt.*CUDA"):
        nets.load_network("face_landmarks", backend="tensorrt", max_batch=4, strict=True)
    with pytest.raises(nets.BackendUnavailable, match="onnxruntime"):
        nets.load_network("face_landmarks", backend="onnxruntime", device="meta", strict=True)


def test_fallback_chains():
    assert runners.fallback_chain("tensorrt", "cuda") == ("tensorrt", "compile", "eager")
    assert runners.fallback_chain("compile", "cuda") == ("compile", "eager")
    assert runners.fallback_chain("onnxruntime", "cpu") == ("onnxruntime", "eager")
    assert runners.fallback_chain("tensorrt", "cpu") == ("tensorrt", "eager")
    assert runners.fallback_chain("eager", "cpu") == ("eager",)


def test_engine_cache_key_changes_with_each_input():
    net = nets.build_network("face_landmarks")
    digest = _digest(net.state_dict())
    shapes = ((1, 3, 192, 192), (1, 3, 192, 192), (4, 3, 192, 192))
    versions = {"torch": "2.5.1", "torch_tensorrt": "2.5.0", "tensorrt": "10.3.0", "gpu": "H100 sm90", "format": "1"}
    key = runners.engine_cache_key(digest, "face_landmarks", shapes, "fp32", versions)
    assert key == runners.engine_cache_key(digest, "face_landmarks", shapes, "fp32", dict(reversed(versions.items())))
    with torch.no_grad():
        net.core.get_parameter(next(n for n, _ in net.core.named_parameters())).view(-1)[0] += 1e-3
    variants = [
        runners.engine_cache_key(_digest(net.state_dict()), "face_landmarks", shapes, "fp32", versions),  # weights
        runners.engine_cache_key(digest, "face_landmarks", shapes[:2] + ((2, 3, 192, 192),), "fp32", versions),
        runners.engine_cache_key(digest, "face_landmarks", shapes, "fp16", versions),
        runners.engine_cache_key(digest, "face_landmarks", shapes, "fp32", {**versions, "tensorrt": "10.4.0"}),
        runners.engine_cache_key(digest, "face_landmarks", shapes, "fp32", {**versions, "torch_tensorrt": "2.6.0"}),
        runners.engine_cache_key(digest, "face_landmarks", shapes, "fp32", {**versions, "gpu": "A100 sm80"}),
    ]
    assert len({key, *variants}) == len(variants) + 1


def test_tensorrt_versions_names_what_an_engine_depends_on():
    v = runners.tensorrt_versions("cpu")
    assert set(v) == {"torch", "torch_tensorrt", "tensorrt", "gpu", "format"}
    assert v["torch"] == torch.__version__ and v["gpu"] == "none"
    if importlib.util.find_spec("torch_tensorrt") is None:
        assert v["torch_tensorrt"] == "none"


def test_relative_error_measure():
    ref = torch.tensor([[0.0, 10.0], [5.0, 2.0]])
    assert runners.relative_error(ref, ref) == 0.0
    assert runners.relative_error(ref + torch.tensor([[0.0, 0.1], [0.0, 0.0]]), ref) == pytest.approx(0.01, rel=1e-5)
    assert runners.max_relative_error((ref, ref * 2), (ref, ref)) == pytest.approx(1.0)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("gcc") is None, reason="inductor needs a C++ compiler")
def test_compile_runner_never_recompiles_when_the_face_count_changes(face_crops):
    """Both graphs (batch 1, batches 2..max) are built at construction; later calls reuse them."""
    ref = nets.load_network("face_landmarks", backend="none")(face_crops)
    net = nets.load_network("face_landmarks", backend="compile", max_batch=3, strict=True)
    assert isinstance(net, runners.CompileRunner)
    with torch.compiler.set_stance("fail_on_recompile"):  # a recompile raises
        for batch in (1, 2, 3, 2, 1, 5):  # 5 > max_batch: split into 3 + 2
            got = net(face_crops[:batch])
            for g, r in zip(got, ref):
                torch.testing.assert_close(g, r[:batch], rtol=1e-3, atol=2e-2)


def _net_v1():
    class Net(torch.nn.Module):  # "Net" before an upgrade of its code ...
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 1)
            self.input_size = (8, 8)

        def forward(self, x):
            return self.conv(x)

    return Net()


def _net_v2():
    class Net(torch.nn.Module):  # ... and after: same name, same weights, another output
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 1)
            self.input_size = (8, 8)

        def forward(self, x):
            return torch.cat([self.conv(x), 2 * self.conv(x)], 1)

    return Net()


def test_a_cached_onnx_export_is_not_reused_after_the_code_changed(tmp_path, monkeypatch):
    """Same class name and weights, another forward: another cache file and the new code's outputs
    (a stale export of the old graph would give the old ones)."""
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("OCCFACE_CACHE", str(tmp_path))
    torch.manual_seed(0)
    old, new = _net_v1(), _net_v2()
    new.load_state_dict(old.state_dict())
    assert runners.code_digest(old) != runners.code_digest(new)
    x = torch.rand(1, 3, 8, 8)
    first = nets.make_runner(old, "onnxruntime", "cpu", 1, "fp32", strict=True)(x)
    second = nets.make_runner(new, "onnxruntime", "cpu", 1, "fp32", strict=True)(x)
    assert first.shape == (1, 2, 8, 8) and second.shape == (1, 4, 8, 8)
    torch.testing.assert_close(second, new(x), rtol=1e-4, atol=1e-5)
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 2
