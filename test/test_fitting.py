"""FaceFitter / IdentityAccumulator / camera conventions on exact synthetic data from the ICT model."""
from __future__ import annotations

import math

import pytest
import torch

from occface_ros.core.camera import (
    FRONTAL_ROTATION,
    intrinsics_from_fov,
    project_points,
    rotation_from_yaw_pitch_roll_deg,
    rotation_to_quaternion_xyzw,
    yaw_pitch_roll_deg,
)
from occface_ros.fitting import FaceFitter, FitConfig, FitState, IdentityAccumulator
from occface_ros.core.geometry import quaternion_xyzw_to_rotation, rotation_angle_deg, so3_exp, so3_log
from occface_ros.paths import shared_models_dir

MODEL_PATH = shared_models_dir() / "ict_face_light.npz"
pytestmark = pytest.mark.skipif(not MODEL_PATH.exists(), reason=f"{MODEL_PATH} missing")
pytestmark = [pytestmark, pytest.mark.unit]
N_DENSE = 300


@pytest.fixture(scope="module")
def model():
    from occface_ros.morphable.ict import load_ict_npz

    return load_ict_npz(MODEL_PATH)


@pytest.fixture(scope="module")
def vids(model):
    g = torch.Generator().manual_seed(0)
    dense = torch.randint(0, model.face_vertex_count, (N_DENSE,), generator=g)
    return torch.cat((model.landmarks68, dense))


@pytest.fixture(scope="module")
def fitter(model, vids):
    return FaceFitter.for_vertices(model, vids)


K640 = intrinsics_from_fov(640, 480, 60.0)


def sample_faces(model, vids, b, seed, same_identity=None):
    g = torch.Generator().manual_seed(seed)
    k, e = model.num_identity, model.num_expression
    if same_identity is None:
        ident = torch.randn(b, k, generator=g) * (0.5 + 0.5 * torch.rand(b, 1, generator=g))
    else:
        ident = same_identity.expand(b, k).clone()
    expr = torch.rand(b, e, generator=g) * (torch.rand(b, e, generator=g) < 0.15)
    yaw = (torch.rand(b, generator=g) * 2 - 1) * 40
    pitch = (torch.rand(b, generator=g) * 2 - 1) * 25
    roll = (torch.rand(b, generator=g) * 2 - 1) * 20
    rot = rotation_from_yaw_pitch_roll_deg(yaw, pitch, roll)
    depth = 0.4 + 1.1 * torch.rand(b, generator=g)
    xy = (torch.rand(b, 2, generator=g) * 2 - 1) * 0.12 * depth[:, None]
    t = torch.cat((xy, depth[:, None]), 1)
    pts = model.vertices(ident, expr, vids) @ rot.transpose(1, 2) + t[:, None]
    uv = project_points(pts, K640)
    return dict(identity=ident, expression=expr, rotation=rot, translation=t, uv=uv, g=g)


def errors(state, truth):
    rot = rotation_angle_deg(state.rotation, truth["rotation"])
    trans = (state.translation_m - truth["translation"]).norm(dim=1) / truth["translation"][:, 2]
    return rot, trans


# ---------------------------------------------------------------- camera / geometry conventions
def test_frontal_pose_and_angles():
    r = rotation_from_yaw_pitch_roll_deg(0.0, 0.0, 0.0)
    assert torch.allclose(r, FRONTAL_ROTATION)
    ang = torch.tensor([[30.0, -20.0, 10.0], [-40.0, 25.0, -20.0]])
    r = rotation_from_yaw_pitch_roll_deg(ang[:, 0], ang[:, 1], ang[:, 2])
    assert torch.allclose(yaw_pitch_roll_deg(r), ang, atol=1e-4)
    # yaw > 0: the nose (model +z) moves towards image right (camera +x)
    nose = rotation_from_yaw_pitch_roll_deg(20.0, 0.0, 0.0) @ torch.tensor([0.0, 0.0, 1.0])
    assert nose[0] > 0.2 and nose[2] < 0
    # pitch > 0: looks down (camera +y is down)
    nose = rotation_from_yaw_pitch_roll_deg(0.0, 20.0, 0.0) @ torch.tensor([0.0, 0.0, 1.0])
    assert nose[1] > 0.2
    q = rotation_to_quaternion_xyzw(r)
    assert torch.allclose(quaternion_xyzw_to_rotation(q), r, atol=1e-6)
    w = torch.tensor([[0.3, -0.2, 0.1], [1e-6, 0.0, 0.0]])
    assert torch.allclose(so3_log(so3_exp(w)), w, atol=1e-5)


def test_intrinsics():
    k = intrinsics_from_fov(640, 480, 60.0)
    assert math.isclose(float(k[0, 0]), 320.0 / math.tan(math.radians(30.0)), rel_tol=1e-6)
    assert float(k[0, 2]) == 319.5 and float(k[1, 2]) == 239.5


# ---------------------------------------------------------------- fitting accuracy
def test_noise_free_accuracy(model, vids):
    truth = sample_faces(model, vids, 12, seed=1)
    # exact data: a weak population prior (the prior weight ~ assumed pixel noise variance)
    f = FaceFitter.for_vertices(model, vids, FitConfig(identity_prior_weight=0.1, iterations_cold=20))
    w = torch.ones(truth["uv"].shape[:2])
    st = f(truth["uv"], w, K640)
    rot, trans = errors(st, truth)
    assert float(st.reprojection_error_px.max()) < 0.5
    assert float(rot.max()) < 2.0
    assert float(trans.max()) < 0.03
    assert float(st.expression.min()) >= 0.0 and float(st.expression.max()) <= 1.0


def test_default_config_noise_free_and_warm(fitter, model, vids):
    truth = sample_faces(model, vids, 8, seed=2)
    w = torch.ones(truth["uv"].shape[:2])
    st = fitter(truth["uv"], w, K640)
    rot, trans = errors(st, truth)
    assert float(st.reprojection_error_px.max()) < 0.5
    assert float(rot.max()) < 2.0
    # absolute depth is limited by the identity-scale / depth ambiguity (see docs/fitting.md)
    assert float(trans.median()) < 0.02 and float(trans.max()) < 0.06
    # warm start from the solution stays there
    st2 = fitter(truth["uv"], w, K640, init=st)
    assert float(st2.reprojection_error_px.max()) < 0.5
    assert float(rotation_angle_deg(st2.rotation, st.rotation).max()) < 0.5


def test_warm_start_tracks_motion(fitter, model, vids):
    truth = sample_faces(model, vids, 4, seed=3)
    w = torch.ones(truth["uv"].shape[:2])
    st = fitter(truth["uv"], w, K640)
    # next frame: head turned by 3 degrees and moved 1 cm, expression changed
    d_rot = so3_exp(torch.tensor([[0.0, math.radians(3.0), 0.0]]).expand(4, 3))
    rot2 = truth["rotation"] @ d_rot
    t2 = truth["translation"] + torch.tensor([0.01, 0.0, 0.0])
    e2 = (truth["expression"] + 0.2 * torch.rand(truth["expression"].shape, generator=truth["g"])).clamp(0, 1)
    uv2 = project_points(model.vertices(truth["identity"], e2, vids) @ rot2.transpose(1, 2) + t2[:, None], K640)
    st2 = fitter(uv2, w, K640, init=st)
    assert float(st2.reprojection_error_px.max()) < 0.5
    assert float(rotation_angle_deg(st2.rotation, rot2).max()) < 2.0


def test_noise_1px(fitter, model, vids):
    truth = sample_faces(model, vids, 12, seed=4)
    uv = truth["uv"] + torch.randn(truth["uv"].shape, generator=truth["g"])
    w = torch.ones(uv.shape[:2])
    st = fitter(uv, w, K640)
    rot, trans = errors(st, truth)
    assert float(st.reprojection_error_px.max()) < 1.6  # ~ sqrt(2) px of 2D noise
    assert float(rot.max()) < 3.0 and float(rot.median()) < 1.0
    assert float(trans.median()) < 0.03 and float(trans.max()) < 0.08


def test_batched_equals_single(fitter, model, vids):
    truth = sample_faces(model, vids, 4, seed=5)
    uv = truth["uv"] + 0.5 * torch.randn(truth["uv"].shape, generator=truth["g"])
    w = torch.rand(uv.shape[:2], generator=truth["g"]) + 0.1
    st = fitter(uv, w, K640)
    for i in range(4):
        si = fitter(uv[i : i + 1], w[i : i + 1], K640)
        assert torch.allclose(si.rotation, st.rotation[i : i + 1], atol=1e-4)
        assert torch.allclose(si.translation_m, st.translation_m[i : i + 1], atol=1e-4)
        assert torch.allclose(si.expression, st.expression[i : i + 1], atol=2e-3)
        assert torch.allclose(si.reprojection_error_px, st.reprojection_error_px[i : i + 1], atol=1e-3)
    # per-face K gives the same as a shared K
    st_k = fitter(uv, w, K640.expand(4, 3, 3))
    assert torch.allclose(st_k.rotation, st.rotation, atol=1e-5)


def test_occluder_downweighting(fitter, model, vids):
    truth = sample_faces(model, vids, 8, seed=6)
    uv = truth["uv"].clone()
    # simulated occluder (a hand over the lower face): the mouth/jaw landmarks (iBUG 5-11,
    # 48-67) and the dense points below the nose tip are dragged 25 px sideways and down
    lm = torch.cat((torch.arange(5, 12), torch.arange(48, 68)))
    nose_y = uv[:, 30:31, 1]
    occ = torch.zeros(uv.shape[:2], dtype=torch.bool)
    occ[:, lm] = True
    occ[:, 68:] = uv[:, 68:, 1] > nose_y + 10
    uv[occ] += torch.tensor([25.0, 15.0])
    w1 = torch.ones(uv.shape[:2])
    w01 = torch.where(occ, 0.1, 1.0)
    rot1, tr1 = errors(fitter(uv, w1, K640), truth)
    rot01, tr01 = errors(fitter(uv, w01, K640), truth)
    assert float(rot01.mean()) < 0.75 * float(rot1.mean())  # measured: 2.5 vs 4.0 deg
    assert float(tr01.mean()) < float(tr1.mean())


def test_expression_bounds_and_zero_weights(fitter, model, vids):
    truth = sample_faces(model, vids, 4, seed=7)
    uv = truth["uv"] + 3.0 * torch.randn(truth["uv"].shape, generator=truth["g"])
    w = torch.ones(uv.shape[:2])
    w[:, 100:] = 0.0  # ignored points
    uv[:, 100:] = 1e4  # garbage where the weight is 0
    st = fitter(uv, w, K640)
    assert float(st.expression.min()) >= 0.0 and float(st.expression.max()) <= 1.0
    assert torch.isfinite(st.rotation).all() and torch.isfinite(st.translation_m).all()
    assert float(st.reprojection_error_px.max()) < 6.0


def test_fit_identity_false_keeps_prior(fitter, model, vids):
    truth = sample_faces(model, vids, 3, seed=8)
    w = torch.ones(truth["uv"].shape[:2])
    st = fitter(truth["uv"], w, K640, identity_prior_mean=truth["identity"], fit_identity=False)
    assert torch.equal(st.identity, truth["identity"])
    assert float(st.reprojection_error_px.max()) < 0.5
    mixed = torch.tensor([True, False, True])
    st2 = fitter(truth["uv"], w, K640, identity_prior_mean=truth["identity"], fit_identity=mixed)
    assert torch.equal(st2.identity[1], truth["identity"][1])
    assert float(st2.reprojection_error_px.max()) < 0.5


def test_fitstate_select_and_cat(fitter, model, vids):
    truth = sample_faces(model, vids, 3, seed=9)
    st = fitter(truth["uv"], torch.ones(truth["uv"].shape[:2]), K640)
    parts = [st[i] for i in range(3)]
    assert all(len(p) == 1 for p in parts)
    back = FitState.cat(parts)
    assert torch.equal(back.rotation, st.rotation) and torch.equal(back.identity, st.identity)


@pytest.mark.parametrize("seed", [10, 12, 14])
def test_identity_accumulator_converges(fitter, model, vids, seed):
    """Ten noisy frames (1 px) of one identity: the fused estimate is far better than a typical single
    frame and about as good as the luckiest one (measured over seeds 10-15 with the default 12 cold
    iterations: 0.33-1.32 mm fused, 0.61-1.47 mm best single frame, 1.59-2.24 mm mean single frame)."""
    g = torch.Generator().manual_seed(seed)
    true_id = torch.randn(1, model.num_identity, generator=g) * 0.8
    frames = sample_faces(model, vids, 10, seed=seed + 1, same_identity=true_id)
    noise = torch.randn(frames["uv"].shape, generator=g) * 1.0
    uv = frames["uv"] + noise
    w = torch.ones(1, uv.shape[1])
    acc = IdentityAccumulator(model.num_identity)
    idb = fitter.basis_3np[:, :, model.num_expression :]  # (3, N, K) identity basis at the points

    def shape_err_mm(a):  # RMS over the model points of the identity shape difference
        d = torch.einsum("cnk,k->cn", idb, (a - true_id[0]))
        return float(d.pow(2).sum(0).mean().sqrt()) * 1000

    single = []
    for i in range(10):
        st = fitter(uv[i : i + 1], w, K640, identity_prior_mean=acc.mean[None],
                    identity_prior_weight=acc.precision[None])
        single.append(shape_err_mm(fitter(uv[i : i + 1], w, K640).identity[0]))
        assert acc.update(st)
    err_acc = shape_err_mm(acc.mean)
    assert err_acc < 0.6 * sum(single) / len(single)
    assert err_acc < 1.1 * min(single)


def test_fit_information_is_the_data_term_alone_in_float32_too(model, vids):
    """FitState.information feeds IdentityAccumulator, which adds the prior itself: it must hold the
    data term J^T W J only. Solving in float32 once aliased it with the damped normal matrix, so the
    identity prior was counted twice."""
    truth = sample_faces(model, vids, 2, seed=11)
    weights = torch.ones(2, truth["uv"].shape[1])
    infos = {}
    for f64 in (True, False):
        fitter = FaceFitter.for_vertices(model, vids, FitConfig(solve_in_float64=f64, identity_prior_weight=50.0))
        infos[f64] = fitter(truth["uv"], weights, K640).information
    scale = float(infos[True].abs().max())
    assert float((infos[True] - infos[False]).abs().max()) < 1e-3 * scale
    o = 6 + model.num_expression
    identity_block = infos[False][:, o:, o:].diagonal(dim1=1, dim2=2)
    assert float((infos[True][:, o:, o:].diagonal(dim1=1, dim2=2) - identity_block).abs().max()) < 1.0  # not +50
