"""Morphable model loaders, ICT OBJ converter, fetch packing, BFM loader."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from occface_ros.morphable import ict_candidate_paths, load_morphable_model, resolve_ict_path
from occface_ros.morphable.fetch import RAW_BASE, ict_file_names, ict_urls, pack_ict
from occface_ros.morphable.ict import load_ict_npz
from occface_ros.morphable.ict_obj import ObjError, convert_ict_folder, ict_tables
from occface_ros.paths import MissingModelError, shared_models_dir

pytestmark = pytest.mark.unit

NAMES = ["browDown_L", "jawOpen"]
TABLES = dict(landmarks68=[i % 6 for i in range(68)], jawline_right=[0] * 8, jawline_left=[1] * 8,
              face_vertex_count=5, narrow_face_vertex_count=4, kept_vertex_count=6)
# 7 vertices: 6 kept (two quads + a triangle) and one extra (like ICT's eyes) used by a dropped face
BASE = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [0, 1, 0], [1, 1, 0.5], [2, 1, 0], [5, 5, 5]], float)
FACES = "f 1/1/1 2/2/1 5/5/1 4/4/1\nf 2/2 3/3 6/6 5/5\nf 4/4 5/5 7/7\nf 1/1/1 3/3/1 6/6/1\n"


def write_obj(path, verts, faces=FACES, uv=True):
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts]
    if uv:
        lines += [f"vt {0.1 * i:.6f} {0.05 * i:.6f}" for i in range(len(verts))]
    lines += ["vn 0 0 1"]
    Path(path).write_text("\n".join(lines) + "\n" + faces)


def make_folder(root: Path, n_id=2):
    d = root / "FaceXModel"
    d.mkdir(parents=True)
    write_obj(d / "generic_neutral_mesh.obj", BASE)
    rng = np.random.default_rng(0)
    shapes = {}
    for k in range(n_id):
        shapes[f"identity{k:03d}"] = BASE + np.round(rng.normal(size=BASE.shape), 4)
    for n in NAMES:
        shapes[n] = BASE + np.round(rng.normal(size=BASE.shape), 4)
    for n, v in shapes.items():
        write_obj(d / f"{n}.obj", v, faces="f 1 2 3\n")
    return d, shapes


def test_convert_round_trip(tmp_path):
    d, shapes = make_folder(tmp_path)
    out = convert_ict_folder(tmp_path, tmp_path / "m.npz", expression_names=NAMES, tables=TABLES)
    with np.load(out, allow_pickle=False) as z:
        a = {k: z[k] for k in z.files}
    assert a["vertices"].dtype == np.float32 and a["triangles"].dtype == np.int32
    assert str(a["units"]) == "cm"
    np.testing.assert_array_equal(a["vertices"], BASE[:6].astype(np.float32))
    want_id = np.stack([(shapes[f"identity{k:03d}"] - BASE)[:6] for k in range(2)]).astype(np.float32)
    np.testing.assert_array_equal(a["identity_basis"], want_id)
    want_ex = np.stack([(shapes[n] - BASE)[:6] for n in NAMES]).astype(np.float32)
    np.testing.assert_array_equal(a["expression_basis"], want_ex)
    # quads split (a,b,c),(a,c,d); the face using vertex 7 is dropped; 0-based
    np.testing.assert_array_equal(a["triangles"], [[0, 1, 4], [0, 4, 3], [1, 2, 5], [1, 5, 4], [0, 2, 5]])
    assert a["triangle_uv"].shape == (5, 3) and a["uv"].dtype == np.float32
    m = load_ict_npz(out)
    assert m.num_identity == 2 and m.expression_names == NAMES and m.face_vertex_count == 5
    torch.testing.assert_close(m.mean_m, torch.from_numpy(BASE[:6].astype(np.float32)) * 0.01)
    # the per-corner uv of the kept faces is exact
    uv_full = np.array([[0.1 * i, 0.05 * i] for i in range(7)], np.float32)
    np.testing.assert_allclose(a["uv"][a["triangle_uv"]], uv_full[a["triangles"]], atol=1e-6)


def test_convert_corrupt_obj_writes_nothing(tmp_path):
    d, _ = make_folder(tmp_path)
    (d / "identity001.obj").write_text("v 1 2 3\nv 1 oops 3\n")
    out = tmp_path / "m.npz"
    with pytest.raises(ObjError, match=r"identity001.obj:2"):
        convert_ict_folder(d, out, expression_names=NAMES, tables=TABLES)
    assert not out.exists() and not list(tmp_path.glob(".m.npz*"))
    (d / "identity001.obj").write_text("v 1 2 3\n")  # topology mismatch
    with pytest.raises(ObjError, match="topology"):
        convert_ict_folder(d, out, expression_names=NAMES, tables=TABLES)
    (d / "jawOpen.obj").unlink()
    with pytest.raises(ObjError, match="missing expression"):
        convert_ict_folder(d, out, expression_names=NAMES, tables=TABLES)
    assert not out.exists()


def test_fetch_urls_and_pack(tmp_path):
    names = ict_file_names()
    assert len(names) == 1 + 100 + 53 and names[0] == "generic_neutral_mesh.obj"
    assert names[1] == "identity000.obj" and names[100] == "identity099.obj" and "browDown_L.obj" in names
    urls = ict_urls(2)
    assert urls[0] == ("generic_neutral_mesh.obj", RAW_BASE + "generic_neutral_mesh.obj")
    assert RAW_BASE.startswith("https://raw.githubusercontent.com/ICT-VGL/ICT-FaceKit/")
    d, _ = make_folder(tmp_path / "objs")
    out = pack_ict(d, tmp_path / "models", progress=False, num_identity=2, expression_names=NAMES, tables=TABLES)
    assert out == tmp_path / "models" / "ict_face_light.npz"
    assert load_ict_npz(out).num_identity == 2


def test_tables_match_shared_npz():
    p = shared_models_dir() / "ict_face_light.npz"
    if not p.exists():
        pytest.skip("shared ICT npz not present")
    t = ict_tables()
    with np.load(p, allow_pickle=False) as z:
        np.testing.assert_array_equal(t["landmarks68"], z["landmarks68"])
        assert t["expression_names"] == [str(n) for n in z["expression_names"]]
        assert t["face_vertex_count"] == int(z["face_vertex_count"])


def test_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("OCCFACE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OCCFACE_ICT_MODEL", raising=False)
    d, _ = make_folder(tmp_path / "src")
    a = convert_ict_folder(d, tmp_path / "a.npz", expression_names=NAMES, tables=TABLES)
    b = convert_ict_folder(d, tmp_path / "cache" / "models" / "ict_face_light.npz", expression_names=NAMES,
                           tables=TABLES)
    assert resolve_ict_path(a) == a  # explicit path first
    monkeypatch.setenv("OCCFACE_ICT_MODEL", str(a))
    assert resolve_ict_path() == a  # then the env var
    monkeypatch.delenv("OCCFACE_ICT_MODEL")
    assert resolve_ict_path() == b  # then the user cache
    b.unlink()
    assert ict_candidate_paths()[-1] == shared_models_dir() / "ict_face_light.npz"
    import occface_ros.morphable as mm

    monkeypatch.setattr(mm, "shared_models_dir", lambda: tmp_path / "nowhere")
    with pytest.raises(MissingModelError, match="occface models fetch"):
        mm.load_morphable_model("ict")
    with pytest.raises(MissingModelError):
        mm.load_morphable_model("ict", path=tmp_path / "missing.npz")


def test_load_shared_ict():
    if not (shared_models_dir() / "ict_face_light.npz").exists():
        pytest.skip("shared ICT npz not present")
    m = load_morphable_model("ict", path=shared_models_dir() / "ict_face_light.npz")
    lm = m.mean_m[m.landmarks68]
    assert 0.08 < float((lm[36] - lm[45]).norm()) < 0.10


def _bfm_folder():
    from occface_ros.morphable.bfm import BFM_FILES, default_bfm_dir

    for d in (os.environ.get("OCCFACE_BFM_MODEL"), default_bfm_dir()):
        if d and all((Path(d) / f).is_file() for f in BFM_FILES):
            return Path(d)
    pytest.skip("BFM 3DDFA files not fetched (occface_ros.morphable.bfm.fetch_bfm_3ddfa())")


def test_bfm_loader():
    folder = _bfm_folder()
    m = load_morphable_model("bfm", path=folder)
    assert m.mean_m.shape == (53215, 3) and m.identity_basis_m.shape == (40, 53215, 3)
    assert m.expression_basis_m.shape == (10, 53215, 3) and m.expression_bounds is None
    assert m.expression_names[0] == "bfm_exp_00" and m.landmarks68.shape == (68,)
    lm = m.mean_m[m.landmarks68]
    assert 0.08 <= float((lm[36] - lm[45]).norm()) <= 0.11  # metres
    assert lm[30, 2] > lm[[36, 45, 48, 54], 2].max()  # nose tip in front
    assert lm[27, 1] > lm[8, 1] and lm[45, 0] > lm[36, 0]  # y up; subject's left eye at +x (as ICT)
    # identity coefficients ~ N(0, 1): one unit of the first mode moves the face by millimetres
    rms = m.identity_basis_m[0].norm(dim=1).pow(2).mean().sqrt()
    assert 5e-4 < float(rms) < 1e-2
    t = m.triangles
    assert t.dtype == torch.int64 and int(t.max()) < 53215 and t.shape[0] > 90000
    e = (m.mean_m[t[:, 0]] - m.mean_m[t[:, 1]]).norm(dim=1)
    assert float(e.max()) < 0.02


def test_bfm_no_pickles():
    folder = _bfm_folder()
    from occface_ros.morphable.bfm import BFM_FILES

    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == sorted(BFM_FILES)
    for f in BFM_FILES:
        np.load(folder / f, allow_pickle=False)  # plain arrays, no object dtype


def test_bfm_missing(tmp_path):
    with pytest.raises(MissingModelError, match="fetch"):
        load_morphable_model("bfm", path=tmp_path)


def test_vertex_subset_equals_indexed_vertices():
    from occface_ros.morphable.model import VertexSubset

    model = load_morphable_model("ict")
    index = torch.tensor([0, 17, 4000, 9000, 11247])
    gen = torch.Generator().manual_seed(0)
    identity = torch.randn(3, model.num_identity, generator=gen)
    expression = torch.rand(3, model.num_expression, generator=gen)
    subset = VertexSubset(model, index)(identity, expression)
    assert subset.shape == (3, 5, 3)
    assert torch.allclose(subset, model.vertices(identity, expression, index=index), atol=1e-6)
    assert torch.allclose(subset[:, 2], model.vertices(identity, expression)[:, 4000], atol=1e-6)


def test_corrupt_or_missing_ict_file_says_what_it_found(tmp_path, monkeypatch):
    """A corrupt npz (random bytes, a broken zip) and a missing $OCCFACE_ICT_MODEL: one-line
    MissingModelError naming the file, the cause and the fix by where the path came from."""
    monkeypatch.delenv("OCCFACE_ICT_MODEL", raising=False)
    noise = tmp_path / "x.npz"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 65536, dtype=np.uint8).tobytes())
    broken_zip = tmp_path / "y.npz"
    broken_zip.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    for bad, cause in ((noise, "not an npz (zip) archive"), (broken_zip, "corrupt npz (BadZipFile")):
        with pytest.raises(MissingModelError) as exc:
            load_morphable_model("ict", path=bad)
        msg = str(exc.value)
        assert "\n" not in msg and str(bad) in msg and cause in msg and "allow_pickle" not in msg
        assert "Fix: point model.path at an intact ict_face_light.npz" in msg
    monkeypatch.setenv("OCCFACE_ICT_MODEL", str(noise))
    with pytest.raises(MissingModelError, match=r"Fix: point \$OCCFACE_ICT_MODEL at .*, or unset it\.$"):
        load_morphable_model("ict")
    monkeypatch.setenv("OCCFACE_ICT_MODEL", str(tmp_path / "absent.npz"))  # no longer skipped in silence
    with pytest.raises(MissingModelError, match=r"absent.npz \(from \$OCCFACE_ICT_MODEL\) not found"):
        load_morphable_model("ict")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))  # an npz without the ICT arrays
    with pytest.raises(MissingModelError, match="not an ICT-FaceKit npz, missing arrays"):
        load_morphable_model("ict", path=tmp_path / "other.npz")


def test_corrupt_bfm_file_is_one_line(tmp_path):
    from occface_ros.morphable.bfm import BFM_FILES

    for f in BFM_FILES:
        (tmp_path / f).write_bytes(b"\x00garbage" * 20)
    with pytest.raises(MissingModelError, match=r"not an intact \.npy .*Fix: run `occface data fetch --force`"):
        load_morphable_model("bfm", path=tmp_path)
