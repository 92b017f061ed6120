"""Converted MediaPipe networks: parity with LiteRT on real photos, export, cache, decoding."""
from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest
import torch

from occface_ros import nets
from occface_ros.nets import models as nm

pytestmark = pytest.mark.slow

REL_TOL = 1e-4  # max |ours - LiteRT| / output scale; achieved ~1e-6


def _rgb(path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, path
    return img[:, :, ::-1].copy()


def _square_crop(img: np.ndarray, cx: float, cy: float, side: float, size: int) -> np.ndarray:
    """Square crop (zero-padded outside the image) resized to size x size, float [0, 1]."""
    x0, y0 = cx - side / 2, cy - side / 2
    s = size / side
    m = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]], dtype=np.float64)
    out = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    return out.astype(np.float32) / 255.0


def _letterbox(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    return _square_crop(img, w / 2, h / 2, max(h, w), size)


@pytest.fixture(scope="module")
def photos(annotated_photos):
    """Real photos: list of (name, RGB uint8 image, face box (cx, cy, side) or None)."""
    from occface_ros.app.samples import sample_path

    out = [
        ("astronaut", _rgb(sample_path("skimage", "astronaut.png")), (225.0, 125.0, 140.0)),
        ("t1", _rgb(sample_path("insightface", "t1.jpg")), None),
    ]
    for p in annotated_photos:
        lm = p.landmarks68
        lo, hi = lm.min(0), lm.max(0)
        c = (lo + hi) / 2
        out.append((p.name, p.image_bgr[:, :, ::-1].copy(), (float(c[0]), float(c[1]), float((hi - lo).max()))))
    return out


def _inputs(name: str, photos) -> np.ndarray:
    """(N, H, W, 3) float [0, 1] model inputs built from the real photos."""
    h, w = nets.MODELS[name].input_size
    kind = nets.MODELS[name].kind
    batch = []
    for _, img, box in photos:
        if kind == "detector" or box is None:
            batch.append(_letterbox(img, h))
            if box is not None:  # and a loose face crop
                batch.append(_square_crop(img, box[0], box[1], box[2] * 2.5, h))
        else:
            batch.append(_square_crop(img, box[0], box[1] - 0.1 * box[2], box[2] * 1.5, h))
    return np.stack(batch)


def _litert(name: str, batch_nhwc01: np.ndarray) -> list[np.ndarray]:
    """Run the original .tflite (one image at a time), outputs in ModelSpec.outputs order."""
    from ai_edge_litert.interpreter import Interpreter

    spec = nets.MODELS[name]
    it = Interpreter(model_path=str(nm.model_path(name)), num_threads=2)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    by_name = {d["name"]: d["index"] for d in it.get_output_details()}
    res = {n: [] for n in spec.outputs}
    for img in batch_nhwc01:
        x = (img * spec.norm[0] + spec.norm[1]).astype(np.float32)[None]
        it.set_tensor(inp["index"], x)
        it.invoke()
        for n in spec.outputs:
            res[n].append(it.get_tensor(by_name[n])[0])
    return [np.stack(res[n]) for n in spec.outputs]


def _to_torch(batch_nhwc01: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(batch_nhwc01.transpose(0, 3, 1, 2)))


def _rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64).reshape(ours.shape)
    scale = max(float(np.ptp(ref)), float(np.abs(ref).max()), 1e-6)
    return float(np.abs(ours.astype(np.float64) - ref).max() / scale)


@pytest.mark.parametrize("name", list(nets.MODELS))
@pytest.mark.parametrize("backend", ["eager", "none", "onnxruntime"])
def test_parity_with_litert(name, backend, photos):
    batch = _inputs(name, photos)
    refs = _litert(name, batch)
    x = _to_torch(batch)
    if backend == "eager":  # batches of 2 and a last one of 1: the frozen fast paths run
        net = nets.make_runner(nets.build_network(name), backend, max_batch=2, strict=True)
        fast = net.module.__dict__.get("_fast")
        assert fast is not None and {k[0][0] for k in fast} == {1, 2}
        parts = [net(x[i : i + 2]) for i in range(0, len(x), 2)]
        outs = [torch.cat(o) for o in zip(*parts)]
    else:  # the whole batch at once (the ONNX graph has a dynamic batch)
        outs = nets.make_runner(nets.build_network(name), backend, strict=True)(x)
    kind = nets.MODELS[name].kind
    if kind == "detector":
        ours = [outs[0].numpy(), outs[1].numpy()]
    elif kind == "face_landmarks":
        ours = [outs[0].numpy(), outs[1].numpy()]
    else:
        ours = [outs[0].numpy(), outs[1].numpy(), outs[2].numpy(), outs[3].numpy()]
    errs = [_rel_err(o, r) for o, r in zip(ours, refs)]
    print(name, backend, "relative errors", errs)
    assert max(errs) < REL_TOL, (name, errs)


def test_face_landmarks_on_annotated_faces(photos):
    """FaceMesh on real face crops: present, and landmarks inside the crop around the face."""
    batch = _inputs("face_landmarks", photos)
    net = nets.load_network("face_landmarks", max_batch=len(batch))
    lm, logit, presence = net(_to_torch(batch))
    assert lm.shape == (len(batch), 468, 3) and presence.shape == (len(batch),)
    annotated = [i for i, (_, _, box) in enumerate(photos) if box is not None]
    assert (presence[annotated] > 0.5).all(), presence
    xy = lm[annotated, :, :2]
    assert (xy.mean(1) > 60).all() and (xy.mean(1) < 132).all()  # centred in the 192 crop


def test_anchor_counts_match_outputs():
    for name, spec in nets.MODELS.items():
        if spec.kind != "detector":
            continue
        from occface_ros.nets.tflite_import import read_tflite

        tg = read_tflite(nm.model_path(name), with_weights=False)
        n_out = tg.tensors[tg.outputs[0]].shape[1]
        assert len(nets.ssd_anchors(spec.anchors)) == n_out, name
    assert len(nets.ssd_anchors(nets.MODELS["face_detector_short"].anchors)) == 896
    assert len(nets.ssd_anchors(nets.MODELS["face_detector_full"].anchors)) == 2304
    assert len(nets.ssd_anchors(nets.MODELS["palm_detector"].anchors)) == 2016


@pytest.mark.parametrize("name", ["face_detector_short", "face_detector_full"])
def test_detector_finds_astronaut_face(name, photos):
    det = nets.load_detector(name)
    _, img, (cx, cy, side) = photos[0]
    size = det.input_size[0]
    x = _to_torch(_letterbox(img, size)[None])
    scores, boxes, kps = det(x)
    assert scores.shape == (1, len(det.anchors)) and boxes.shape == (1, len(det.anchors), 4)
    assert kps.shape == (1, len(det.anchors), 6, 2)
    i = int(scores[0].argmax())
    assert float(scores[0, i]) > det.min_score
    b = boxes[0, i].numpy() * 512  # astronaut.png is 512x512: letterbox is a plain resize
    bcx, bcy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    assert abs(bcx - cx) < 30 and abs(bcy - cy) < 30, b
    assert 70 < b[2] - b[0] < 170, b
    # keypoints (eyes, nose, mouth, ears) inside the box
    kp = kps[0, i].numpy() * 512
    assert (kp[:4, 0] > b[0]).all() and (kp[:4, 0] < b[2]).all()


def test_decode_matches_reference_formula():
    det = nets.Detector("face_detector_short", net=None)
    n = len(det.anchors)
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(2, n, 16, generator=g) * 20
    raw_s = torch.randn(2, n, generator=g) * 200
    s, b, k = det.decode(raw, raw_s)
    a = det.anchors.numpy()
    r = raw.numpy().astype(np.float64)
    xc = r[..., 0] / 128 * a[:, 2] + a[:, 0]
    yc = r[..., 1] / 128 * a[:, 3] + a[:, 1]
    w = r[..., 2] / 128 * a[:, 2]
    h = r[..., 3] / 128 * a[:, 3]
    np.testing.assert_allclose(b.numpy(), np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], -1), atol=1e-5)
    np.testing.assert_allclose(k[..., 5, 1].numpy(), r[..., 15] / 128 * a[:, 3] + a[:, 1], atol=1e-5)
    np.testing.assert_allclose(s.numpy(), 1 / (1 + np.exp(-np.clip(raw_s.numpy().astype(np.float64), -100, 100))), atol=1e-6)
    # first anchors of the 16x16 layer: 2 per cell at cell centres
    np.testing.assert_allclose(a[:3, :2], [[0.5 / 16, 0.5 / 16]] * 2 + [[1.5 / 16, 0.5 / 16]])


@pytest.mark.parametrize("name", list(nets.NETWORK_NAMES))
def test_torch_export(name):
    net = nets.load_network(name)
    x = nets.example_input(name)
    ep = torch.export.export(net.module, (x,))
    with torch.no_grad():
        ref = net(x)
        got = ep.module()(x)
    for r, g in zip(ref, got):
        assert r.shape == g.shape
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)


def test_batch_matches_single():
    name = "face_landmarks"
    net = nets.load_network(name, max_batch=3)
    x = torch.rand(3, 3, 192, 192, generator=torch.Generator().manual_seed(1))
    lm3 = net(x)[0]
    lm1 = net(x[1:2])[0]
    torch.testing.assert_close(lm3[1:2], lm1, rtol=1e-5, atol=1e-4)


def test_weight_cache_roundtrip_and_corruption(tmp_path, monkeypatch):
    monkeypatch.setenv("OCCFACE_CACHE", str(tmp_path))
    name = "face_detector_full"  # the sparse + float16 model
    x = nets.example_input(name)
    fresh = nets.build_network(name, use_cache=False)
    ref_sd = fresh.state_dict()
    ref = fresh(x)
    net = nets.build_network(name)

    def same(m):
        sd = m.state_dict()
        assert sd.keys() == ref_sd.keys()
        for k in sd:
            assert torch.equal(sd[k], ref_sd[k]), k
        for r, g in zip(ref, m(x)):
            torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-4)

    files = list((tmp_path / "weights").glob(f"{name}-*.pt"))
    assert len(files) == 1
    path = files[0]
    assert not list((tmp_path / "weights").glob(".*tmp*"))  # atomic write left nothing behind

    # a second load reads the cache, never decodes weights
    real_read = nm.read_tflite

    def no_weights(data, with_weights=True):
        assert not with_weights, "weights were reconverted although the cache is valid"
        return real_read(data, with_weights=False)

    monkeypatch.setattr(nm, "read_tflite", no_weights)
    same(nets.build_network(name))
    monkeypatch.setattr(nm, "read_tflite", real_read)

    good = path.read_bytes()
    for corrupt in (b"garbage", good[: len(good) // 2], None):
        if corrupt is None:  # flip bytes inside the stored tensor data
            data = bytearray(good)
            mid = len(data) // 2
            data[mid : mid + 64] = bytes(255 - v for v in data[mid : mid + 64])
            corrupt = bytes(data)
        path.write_bytes(corrupt)
        same(nets.build_network(name))
        assert path.read_bytes() != corrupt  # rewritten
        blob = torch.load(path, weights_only=True)
        assert blob["sha256"] and blob["format"] == nm.CACHE_FORMAT
    del net


def test_tensorrt_backend_unavailable_is_clear():
    if importlib.util.find_spec("torch_tensorrt") is not None and torch.cuda.is_available():
        pytest.skip("tensorrt is available here")
    with pytest.raises(nets.BackendUnavailable, match="tensorrt"):
        nets.load_network("face_detector_short", backend="tensorrt", strict=True)


def test_unknown_names():
    with pytest.raises(KeyError):
        nets.load_network("nope")
    with pytest.raises(ValueError, match="backend"):
        nets.make_runner(nets.build_network("face_detector_short"), "jit")
    with pytest.raises(ValueError, match="precision"):
        nets.make_runner(nets.build_network("face_detector_short"), "eager", precision="int8")
    with pytest.raises(ValueError, match="max_batch"):
        nets.make_runner(nets.build_network("face_detector_short"), "eager", max_batch=0)


def test_onnxruntime_backend_batches_caches_and_rebuilds_a_corrupt_export(tmp_path, monkeypatch):
    """The exported graph takes any batch (faces of a frame), is cached per weights, and a broken
    cache file is exported again rather than failing."""
    monkeypatch.setenv("OCCFACE_CACHE", str(tmp_path))
    name = "face_landmarks"
    x = nets.example_input(name, batch=3)
    ref = nets.load_network(name, backend="none")(x)
    net = nets.load_network(name, backend="onnxruntime", strict=True)
    assert net.input_size == (192, 192) and net.backend == "onnxruntime"
    for r, g in zip(ref, net(x)):  # batch 3 through a graph exported with batch 1
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-3)
    (path,) = (tmp_path / "onnx").glob(f"{name}-*.onnx")
    stamp = path.stat().st_mtime_ns
    nets.load_network(name, backend="onnxruntime")
    assert path.stat().st_mtime_ns == stamp  # reused, not exported again
    path.write_bytes(b"not an onnx graph")
    again = nets.load_network(name, backend="onnxruntime")
    assert path.read_bytes() != b"not an onnx graph"
    for r, g in zip(ref, again(x)):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-3)


def test_auto_backend_picks_onnxruntime_on_cpu_when_installed(monkeypatch, caplog):
    from occface_ros.nets import runners

    have = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
    assert runners.resolve_auto("cpu") == ("onnxruntime" if have else "eager")
    net = nets.load_network("face_detector_short", backend="auto")
    assert isinstance(net, runners.OnnxRuntimeRunner) == have
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a))
    assert runners.resolve_auto("cpu") == "eager"
    with pytest.raises(nets.BackendUnavailable, match="onnxruntime"):
        nets.load_network("face_detector_short", backend="onnxruntime", strict=True)
    with caplog.at_level("WARNING", logger="occface_ros.nets"):
        net = nets.load_network("face_detector_short", backend="onnxruntime")
    assert isinstance(net, runners.EagerRunner)
    (record,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "onnxruntime" in record.getMessage() and "eager" in record.getMessage()
