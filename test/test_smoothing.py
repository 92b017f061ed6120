"""One-Euro filters and TrackSmoother."""
from __future__ import annotations

import math

import numpy as np
import torch

from occface_ros.core.camera import rotation_from_yaw_pitch_roll_deg
from occface_ros.core.geometry import rotation_angle_deg, rotation_to_quaternion_xyzw
from occface_ros.smoothing import OneEuroFilter, RotationFilter, SmoothingConfig, TrackSmoother

FPS = 30.0


def test_constant_passes_exactly():
    f = OneEuroFilter(min_cutoff=0.5, beta=0.1)
    x = torch.tensor([[1.25, -3.5], [100.0, 7.0]])
    for i in range(20):
        y = f(x, i / FPS)
    assert torch.equal(y, x)
    # also after a change, once settled, and with numpy in/out
    g = OneEuroFilter(1.0, 0.0)
    a = np.array([0.3, 0.7])
    for i in range(5):
        out = g(a, i / FPS)
    assert isinstance(out, np.ndarray) and np.array_equal(out, a)


def test_jitter_reduction_default_landmarks():
    gen = torch.Generator().manual_seed(0)
    truth = torch.rand(68, 2, generator=gen) * 300
    sm = TrackSmoother()
    raw, out = [], []
    for i in range(300):
        x = truth + torch.randn(68, 2, generator=gen)
        raw.append(x)
        out.append(sm(i / FPS, landmarks68=x).landmarks68)
    raw, out = torch.stack(raw)[30:], torch.stack(out)[30:]
    jit = lambda s: float(s.diff(dim=0).norm(dim=-1).pow(2).mean().sqrt())  # noqa: E731
    assert jit(raw) / jit(out) >= 5.0


def test_jitter_reduction_default_pose_channels():
    gen = torch.Generator().manual_seed(1)
    sm = TrackSmoother()
    rot0 = rotation_from_yaw_pitch_roll_deg(10.0, -5.0, 3.0)
    t0 = torch.tensor([0.02, -0.01, 0.6])
    rots, outs_r, trs, outs_t = [], [], [], []
    for i in range(300):
        noise = torch.randn(3, generator=gen) * math.radians(0.2)  # ~ the fitter at 1 px noise
        from occface_ros.core.geometry import so3_exp

        r = so3_exp(noise) @ rot0
        t = t0 + torch.randn(3, generator=gen) * torch.tensor([0.0005, 0.0005, 0.005])
        o = sm(i / FPS, rotation=r, translation_m=t)
        rots.append(r), outs_r.append(o.rotation), trs.append(t), outs_t.append(o.translation_m)
    rr, ro = torch.stack(rots)[30:], torch.stack(outs_r)[30:]
    jr = rotation_angle_deg(rr[1:], rr[:-1]).pow(2).mean().sqrt()
    jo = rotation_angle_deg(ro[1:], ro[:-1]).pow(2).mean().sqrt()
    assert float(jr / jo) >= 5.0
    tr, to = torch.stack(trs)[30:], torch.stack(outs_t)[30:]
    assert float(tr.diff(dim=0).norm(dim=-1).mean() / to.diff(dim=0).norm(dim=-1).mean()) >= 5.0


def test_step_is_followed():
    f = OneEuroFilter(min_cutoff=0.4, beta=0.15, d_cutoff=0.5)
    t_reach = None
    for i in range(90):
        t = i / FPS
        x = 0.0 if t < 1.0 else 50.0
        y = float(f(torch.tensor([x]), t))
        if t >= 1.0 and t_reach is None and y >= 45.0:
            t_reach = t - 1.0
    assert t_reach is not None and t_reach <= 0.2
    assert abs(y - 50.0) < 0.5  # converged 2 s after the step
    # with beta = 0 it is a plain first-order low-pass at min_cutoff: 90 % after ~ ln(10)*tau
    g = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    for i in range(200):
        y = float(g(torch.tensor([0.0 if i < 10 else 1.0]), i / FPS))
    assert abs(y - 1.0) < 1e-6


def test_variable_rate_and_duplicate_timestamps():
    f = OneEuroFilter(1.0, 0.0)
    a = f(torch.tensor([0.0]), 0.0)
    b = f(torch.tensor([1.0]), 0.1)
    c = f(torch.tensor([5.0]), 0.1)  # same timestamp: ignored
    assert torch.equal(b, c) and float(a) == 0.0
    # a longer gap moves further towards the input than a short one
    f1, f2 = OneEuroFilter(1.0, 0.0), OneEuroFilter(1.0, 0.0)
    f1(torch.tensor([0.0]), 0.0), f2(torch.tensor([0.0]), 0.0)
    assert float(f1(torch.tensor([1.0]), 0.5)) > float(f2(torch.tensor([1.0]), 0.01))


def test_runtime_parameters():
    f = OneEuroFilter(1.0, 0.0)
    f(torch.tensor([0.0]), 0.0)
    slow = float(f(torch.tensor([1.0]), 1 / FPS))
    f.reset()
    f.min_cutoff = 10.0
    f(torch.tensor([0.0]), 0.0)
    fast = float(f(torch.tensor([1.0]), 1 / FPS))
    assert fast > slow


def test_quaternion_sign_flips_do_not_jump():
    rf = RotationFilter(min_cutoff=0.5, beta=30.0)
    r = rotation_from_yaw_pitch_roll_deg(30.0, 10.0, -5.0)
    q = rotation_to_quaternion_xyzw(r)
    out = []
    for i in range(40):
        qi = q if i % 2 == 0 else -q  # same rotation, alternating sign
        out.append(rf(qi, i / FPS))
    out = torch.stack(out)
    # the output is the same rotation (up to sign) every frame
    dots = (out * q).sum(-1).abs()
    assert float(dots.min()) > 1 - 1e-9
    # rotation-matrix interface near 180 degrees about x (FRONTAL_ROTATION) where sign flips occur
    rf2 = RotationFilter(0.5, 30.0)
    gen = torch.Generator().manual_seed(2)
    from occface_ros.core.geometry import so3_exp

    base = rotation_from_yaw_pitch_roll_deg(0.0, 0.0, 0.0).double()
    prev = None
    for i in range(60):
        r = so3_exp(torch.randn(3, generator=gen, dtype=torch.float64) * 0.01) @ base
        o = rf2(r, i / FPS)
        if prev is not None:
            assert float(rotation_angle_deg(o, prev)) < 1.0
        prev = o


def test_vectorized_equals_per_element():
    gen = torch.Generator().manual_seed(3)
    T = 50
    xs = torch.cumsum(torch.randn(T, 5, 2, generator=gen), 0)
    times = np.cumsum(np.random.default_rng(0).uniform(0.02, 0.05, T))
    fv = OneEuroFilter(0.7, 0.2, 1.0)
    fe = [[OneEuroFilter(0.7, 0.2, 1.0) for _ in range(2)] for _ in range(5)]
    for k in range(T):
        yv = fv(xs[k], times[k])
        for i in range(5):
            for j in range(2):
                ye = fe[i][j](xs[k, i, j : j + 1], times[k])
                assert torch.allclose(yv[i, j : j + 1], ye, atol=1e-12)
    # norm speed over the last axis equals filtering each point on its own
    fn = OneEuroFilter(0.7, 0.2, 1.0, speed_dims=-1)
    fp = [OneEuroFilter(0.7, 0.2, 1.0, speed_dims=-1) for _ in range(5)]
    for k in range(T):
        yn = fn(xs[k], times[k])
        for i in range(5):
            assert torch.allclose(yn[i], fp[i](xs[k, i], times[k]), atol=1e-12)


def test_track_smoother_reset_and_disabled():
    sm = TrackSmoother()
    sm(0.0, landmarks68=torch.zeros(68, 2), expression=torch.zeros(53))
    sm.reset()
    o = sm(0.1, landmarks68=torch.ones(68, 2), expression=torch.ones(53))
    assert torch.equal(o.landmarks68, torch.ones(68, 2)) and torch.equal(o.expression, torch.ones(53))
    off = TrackSmoother(SmoothingConfig(enabled=False))
    x = torch.randn(68, 2)
    assert off(0.0, landmarks68=x).landmarks68 is x


def test_from_single_maps_defaults():
    d = SmoothingConfig()
    c = SmoothingConfig.from_single(d.landmarks.min_cutoff, d.landmarks.beta, 1.0)
    assert c.rotation.beta == d.rotation.beta and c.translation.beta == d.translation.beta
    c2 = SmoothingConfig.from_single(2 * d.landmarks.min_cutoff, 2 * d.landmarks.beta, 1.0, noise_deadzone=2.0)
    assert c2.rotation.min_cutoff == 2 * d.rotation.min_cutoff and c2.expression.beta == 2 * d.expression.beta
    assert {c2.landmarks.noise_deadzone, c2.rotation.noise_deadzone, c2.translation.noise_deadzone,
            c2.expression.noise_deadzone} == {2.0}
    TrackSmoother(c2)(0.0, translation_m=torch.zeros(3))


def _still_and_moving(noise_px: float, seed: int):
    """(T, 68, 2) still landmarks with white noise, and the same points moving at 60 px/s from t = 2 s."""
    gen = torch.Generator().manual_seed(seed)
    truth = torch.rand(68, 2, generator=gen, dtype=torch.float64) * 300
    t = torch.arange(150, dtype=torch.float64) / FPS
    shift = (60.0 * (t - 2.0)).clamp_min(0.0)
    moving = truth + torch.stack((shift, torch.zeros_like(shift)), -1)[:, None]
    return t, truth + noise_px * torch.randn(150, 68, 2, generator=gen, dtype=torch.float64), moving


def _run(f, t, x):
    return torch.stack([f(x[i], float(t[i])) for i in range(len(t))])


def test_noise_deadzone_keeps_a_still_signal_near_min_cutoff():
    for noise_px in (0.2, 1.0, 3.0):
        t, still, _ = _still_and_moving(noise_px, seed=3)
        classic = _run(OneEuroFilter(0.25, 0.3, 0.5, speed_dims=-1), t, still)
        dead = _run(OneEuroFilter(0.25, 0.3, 0.5, speed_dims=-1, noise_deadzone=3.0), t, still)
        lowpass = _run(OneEuroFilter(0.25, 0.0, 0.5, speed_dims=-1), t, still)  # the best a still head can get
        spread = lambda y: float((y[30:] - y[30:].mean(0)).norm(dim=-1).pow(2).mean().sqrt())  # noqa: E731
        assert spread(dead) < 0.6 * spread(classic)  # classic: 1.9x (0.2 px) to 4.6x (3 px) the low-pass
        if noise_px <= 1.0:  # FaceMesh on a still face: 0.1-0.3 px; 3 px: 1.6x (the noise's tail opens it)
            assert spread(dead) < 1.25 * spread(lowpass)
        f = OneEuroFilter(0.25, 0.3, 0.5, speed_dims=-1, noise_deadzone=3.0)
        _run(f, t, still)
        assert f.noise_std.shape == (68, 1)  # one estimate per landmark (speed group)
        assert abs(float(f.noise_std.median()) / noise_px - 1.0) < 0.3  # the third-difference estimate


def test_noise_deadzone_does_not_slow_motion_above_the_noise():
    t, _, moving = _still_and_moving(0.0, seed=4)
    noisy = moving + 0.5 * torch.randn(moving.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for beta in (0.15, 0.3):
        classic = _run(OneEuroFilter(0.25, beta, 0.5, speed_dims=-1), t, noisy)
        dead = _run(OneEuroFilter(0.25, beta, 0.5, speed_dims=-1, noise_deadzone=3.0), t, noisy)
        lag = lambda y: float((moving[90:, :, 0] - y[90:, :, 0]).mean())  # noqa: E731 - px behind, last 2 s
        assert 0.0 < lag(dead) < 1.2 * lag(classic)  # the dead zone costs at most 20 % more lag at 60 px/s
    # 0 = the classic filter exactly
    a = _run(OneEuroFilter(0.25, 0.3, 0.5, speed_dims=-1), t, noisy)
    b = _run(OneEuroFilter(0.25, 0.3, 0.5, speed_dims=-1, noise_deadzone=0.0), t, noisy)
    assert torch.equal(a, b)


def test_per_channel_parameters_follow_the_values_device():
    """Per-channel min_cutoff and beta given as CPU tensors filter values on another device (the
    pipeline on CUDA; the meta device stands in for it here): no device mismatch, the output stays
    on the values' device."""
    f = OneEuroFilter(min_cutoff=torch.tensor([0.25, 0.5, 1.0], dtype=torch.float64),
                      beta=torch.tensor([0.3, 0.3, 0.1], dtype=torch.float64), noise_deadzone=3.0)
    for i in range(5):
        out = f(torch.zeros(3, dtype=torch.float64, device="meta"), i / 30.0)
    assert out.device.type == "meta" and out.shape == (3,)
