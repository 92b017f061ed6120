#!/usr/bin/env python3
"""Measure jitter reduction and lag of the TrackSmoother defaults (or given parameters).

Scenarios at --fps (default 30), all from the real ICT model projected with a 60 deg FOV,
640x480 camera, head at 0.6 m:
  1. landmarks, static head, Gaussian noise (--noise px per coordinate) on the 68 landmarks;
  2. landmarks, moving head (yaw sinusoid 30 deg amplitude, 0.5 Hz), noisy: lag by phase;
  3. landmarks, 5 cm sideways step of the head, noise-free: time to 90 % of the step;
  3b. landmarks, slow drift (x sinusoid 2 cm amplitude, 0.1 Hz; ~15 px/s at most), noisy: lag;
  3c. landmarks, talking (jawOpen 0.3 +- 0.3 at 2 Hz), noisy: lag and amplitude of the inner-lip gap;
  4. pose/expression from noisy per-frame fits (FaceFitter, warm start, 68 + 300 dense points
     with the same noise) of a static head: jitter of yaw/pitch/roll, translation, expression;
  5. pose from noisy fits of a moving head (yaw 30 deg and x 10 cm sinusoids, 0.5 Hz): lag;
  6. pose step (yaw 0 -> 20 deg and x + 5 cm at once), noise-free fits: time to 90 %.

Jitter: std of the frame-to-frame change ("jitter", what the eye sees) and RMS deviation from
the truth; both raw and smoothed, and their ratio. Lag: delay of the fitted 0.5 Hz sinusoid
(phase difference) and time to 90 % of a step, in ms.

Usage: python tools/measure_smoothing.py OUT.png [--fps 30] [--noise 1.0]
          [--landmarks MIN_CUTOFF,BETA[,D_CUTOFF[,NOISE_DEADZONE]]] [--rotation ..] [--translation ..]
          [--expression ..]
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from occface_ros.core.camera import (  # noqa: E402
    intrinsics_from_fov,
    project_points,
    rotation_from_yaw_pitch_roll_deg,
    yaw_pitch_roll_deg,
)
from occface_ros.fitting.fitter import FaceFitter  # noqa: E402
from occface_ros.morphable.ict import load_ict_npz  # noqa: E402
from occface_ros.paths import shared_models_dir  # noqa: E402
from occface_ros.smoothing import OneEuroParams, SmoothingConfig, TrackSmoother  # noqa: E402

FREQ = 0.5
DEPTH = 0.6


def jitter(x: np.ndarray) -> float:
    """RMS norm of the frame-to-frame change; x (T, ..., D) -> per-item norms over the last axis."""
    d = np.diff(x, axis=0)
    return float(np.sqrt((d**2).sum(-1).mean()))


def rms_dev(x: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(((x - truth) ** 2).sum(-1).mean()))


def sinus_lag_ms(t: np.ndarray, sig: np.ndarray, truth: np.ndarray, freq: float = FREQ) -> float:
    """Delay (ms) of sig relative to truth from the phase of a least-squares sinusoid fit."""
    w = 2 * math.pi * freq
    a = np.stack((np.sin(w * t), np.cos(w * t), np.ones_like(t)), 1)

    def phase(s):
        c, *_ = np.linalg.lstsq(a, s, rcond=None)
        return math.atan2(c[1], c[0])

    d = phase(truth) - phase(sig)
    d = (d + math.pi) % (2 * math.pi) - math.pi
    return 1000.0 * d / w


def time_to_90_ms(t: np.ndarray, sig: np.ndarray, t_step: float, start: float, end: float) -> float:
    frac = (sig - start) / (end - start)
    idx = np.nonzero((t >= t_step) & (frac >= 0.9))[0]
    return float("nan") if idx.size == 0 else 1000.0 * (t[idx[0]] - t_step)


def parse_params(s: str | None, default: OneEuroParams) -> OneEuroParams:
    if not s:
        return default
    v = [float(x) for x in s.split(",")]  # min_cutoff,beta[,d_cutoff[,noise_deadzone]]; scalar beta only
    return OneEuroParams(v[0], v[1], v[2] if len(v) > 2 else default.d_cutoff,
                         v[3] if len(v) > 3 else default.noise_deadzone)


class Scene:
    def __init__(self, noise: float, seed: int = 0):
        self.model = load_ict_npz(shared_models_dir() / "ict_face_light.npz")
        g = torch.Generator().manual_seed(seed)
        dense = torch.randint(0, self.model.face_vertex_count, (300,), generator=g)
        self.vids = torch.cat((self.model.landmarks68, dense))
        self.K = intrinsics_from_fov(640, 480, 60.0)
        self.identity = torch.randn(1, self.model.num_identity, generator=g) * 0.7
        self.expression = torch.zeros(1, self.model.num_expression)
        self.noise = noise
        self.g = g
        self.fitter = FaceFitter.for_vertices(self.model, self.vids)

    def project(self, yaw_deg: np.ndarray, tx: np.ndarray, jaw_open: np.ndarray | None = None) -> torch.Tensor:
        """(T,) yaw, x-translation (and jawOpen weight) -> noise-free pixels (T, N, 2)."""
        T = len(yaw_deg)
        rot = rotation_from_yaw_pitch_roll_deg(torch.tensor(yaw_deg, dtype=torch.float32), 0.0, 0.0)
        t = torch.zeros(T, 3)
        t[:, 0] = torch.tensor(tx, dtype=torch.float32)
        t[:, 2] = DEPTH
        expression = self.expression.expand(T, -1).clone()
        if jaw_open is not None:
            expression[:, self.model.expression_names.index("jawOpen")] = torch.tensor(jaw_open, dtype=torch.float32)
        pts = self.model.vertices(self.identity.expand(T, -1), expression, self.vids)
        return project_points(pts @ rot.transpose(1, 2) + t[:, None], self.K)

    def noisy(self, uv: torch.Tensor) -> torch.Tensor:
        return uv + self.noise * torch.randn(uv.shape, generator=self.g)

    def fit_sequence(self, uv: torch.Tensor):
        """Per-frame fits with warm start -> (yaw/pitch/roll deg (T,3), translation m (T,3),
        expression (T,E), rotation (T,3,3))."""
        w = torch.ones(1, uv.shape[1])
        state = None
        rots, trans, exprs = [], [], []
        for i in range(uv.shape[0]):
            state = self.fitter(uv[i : i + 1], w, self.K, init=state)
            rots.append(state.rotation[0])
            trans.append(state.translation_m[0])
            exprs.append(state.expression[0])
        rot = torch.stack(rots)
        return yaw_pitch_roll_deg(rot).numpy(), torch.stack(trans).numpy(), torch.stack(exprs).numpy(), rot


def smooth_pose(cfg: SmoothingConfig, t: np.ndarray, rot: torch.Tensor, trans: np.ndarray, expr: np.ndarray):
    sm = TrackSmoother(cfg)
    r_out, t_out, e_out = [], [], []
    for i in range(len(t)):
        o = sm(float(t[i]), rotation=rot[i], translation_m=trans[i], expression=expr[i])
        r_out.append(o.rotation)
        t_out.append(o.translation_m)
        e_out.append(o.expression)
    return yaw_pitch_roll_deg(torch.stack(r_out)).numpy(), np.stack(t_out), np.stack(e_out)


def smooth_landmarks(cfg: SmoothingConfig, t: np.ndarray, lm: np.ndarray) -> np.ndarray:
    sm = TrackSmoother(cfg)
    return np.stack([sm(float(t[i]), landmarks68=lm[i]).landmarks68 for i in range(len(t))])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_png", type=Path)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--noise", type=float, default=1.0, help="landmark noise std, px per coordinate")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--landmarks", help="min_cutoff,beta[,d_cutoff]")
    ap.add_argument("--rotation")
    ap.add_argument("--translation")
    ap.add_argument("--expression")
    ap.add_argument("--noise-deadzone", type=float, help="noise_deadzone of every channel not given explicitly")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    d = SmoothingConfig()
    cfg = SmoothingConfig(
        landmarks=parse_params(args.landmarks, d.landmarks),
        rotation=parse_params(args.rotation, d.rotation),
        translation=parse_params(args.translation, d.translation),
        expression=parse_params(args.expression, d.expression),
    )
    if args.noise_deadzone is not None:
        for name in ("landmarks", "rotation", "translation", "expression"):
            if getattr(args, name) is None:
                getattr(cfg, name).noise_deadzone = args.noise_deadzone
    scene = Scene(args.noise)
    T = int(args.seconds * args.fps)
    t = np.arange(T) / args.fps
    warm = int(args.fps)  # ignore the first second (filter warm-up) in the statistics
    rows = []

    # 1. static landmarks
    lm_truth = scene.project(np.zeros(T), np.zeros(T))[:, :68].numpy().astype(np.float64)
    lm_raw = scene.noisy(torch.from_numpy(lm_truth).float()).numpy().astype(np.float64)
    lm_s = smooth_landmarks(cfg, t, lm_raw)
    j_raw, j_s = jitter(lm_raw[warm:]), jitter(lm_s[warm:])
    e_raw, e_s = rms_dev(lm_raw[warm:], lm_truth[warm:]), rms_dev(lm_s[warm:], lm_truth[warm:])
    rows.append(("landmarks static: jitter px", j_raw, j_s))
    rows.append(("landmarks static: RMS error px", e_raw, e_s))

    # 2. moving landmarks (yaw sinusoid), noisy
    yaw_true = 30.0 * np.sin(2 * math.pi * FREQ * t)
    lm_mt = scene.project(yaw_true, np.zeros(T))[:, :68].numpy().astype(np.float64)
    lm_m = scene.noisy(torch.from_numpy(lm_mt).float()).numpy().astype(np.float64)
    lm_ms = smooth_landmarks(cfg, t, lm_m)
    lag_lm = np.median([sinus_lag_ms(t[warm:], lm_ms[warm:, i, 0], lm_mt[warm:, i, 0]) for i in range(68)])
    lag_lm_raw = np.median([sinus_lag_ms(t[warm:], lm_m[warm:, i, 0], lm_mt[warm:, i, 0]) for i in range(68)])
    rows.append(("landmarks yaw 30deg 0.5Hz: lag ms", lag_lm_raw, lag_lm))
    rows.append(("landmarks moving: RMS error px", rms_dev(lm_m[warm:], lm_mt[warm:]),
                 rms_dev(lm_ms[warm:], lm_mt[warm:])))

    # 3. landmark step (noise-free): 5 cm sideways
    ts = t[: int(3 * args.fps)]
    t_step = 1.0
    tx_step = np.where(ts >= t_step, 0.05, 0.0)
    lm_st = scene.project(np.zeros(len(ts)), tx_step)[:, :68].numpy().astype(np.float64)
    lm_sts = smooth_landmarks(cfg, ts, lm_st)
    x0, x1 = lm_st[0, 30, 0], lm_st[-1, 30, 0]
    rows.append(("landmarks 5 cm step: 90% time ms", time_to_90_ms(ts, lm_st[:, 30, 0], t_step, x0, x1),
                 time_to_90_ms(ts, lm_sts[:, 30, 0], t_step, x0, x1)))

    # 3b. slow drift: x sinusoid 2 cm at 0.1 Hz, noisy
    slow_x = 0.02 * np.sin(2 * math.pi * 0.1 * t)
    lm_dt = scene.project(np.zeros(T), slow_x)[:, :68].numpy().astype(np.float64)
    lm_ds = smooth_landmarks(cfg, t, scene.noisy(torch.from_numpy(lm_dt).float()).numpy().astype(np.float64))
    rows.append(("landmarks slow drift 0.1Hz: lag ms", 0.0,
                 np.median([sinus_lag_ms(t[warm:], lm_ds[warm:, i, 0], lm_dt[warm:, i, 0], 0.1) for i in range(68)])))

    # 3c. talking: jawOpen 0.3 +- 0.3 at 2 Hz; the inner-lip gap (iBUG 66 - 62)
    jaw = 0.3 + 0.3 * np.sin(2 * math.pi * 2.0 * t)
    lm_jt = scene.project(np.zeros(T), np.zeros(T), jaw)[:, :68].numpy().astype(np.float64)
    lm_j = scene.noisy(torch.from_numpy(lm_jt).float()).numpy().astype(np.float64)
    lm_js = smooth_landmarks(cfg, t, lm_j)
    gap_t, gap_s = lm_jt[:, 66, 1] - lm_jt[:, 62, 1], lm_js[:, 66, 1] - lm_js[:, 62, 1]
    rows.append(("landmarks jaw 2Hz: lip-gap lag ms", 0.0, sinus_lag_ms(t[warm:], gap_s[warm:], gap_t[warm:], 2.0)))
    rows.append(("landmarks jaw 2Hz: lip-gap amplitude", 1.0, float(np.std(gap_s[warm:]) / np.std(gap_t[warm:]))))

    # 4. static head through the fitter
    uv_static = scene.noisy(scene.project(np.zeros(T), np.zeros(T)))
    ang_raw, tr_raw, ex_raw, rot_raw = scene.fit_sequence(uv_static)
    ang_s, tr_s, ex_s = smooth_pose(cfg, t, rot_raw, tr_raw, ex_raw)
    rows.append(("fit static: yaw/pitch/roll jitter deg", jitter(ang_raw[warm:]), jitter(ang_s[warm:])))
    rows.append(("fit static: translation jitter mm", 1000 * jitter(tr_raw[warm:]), 1000 * jitter(tr_s[warm:])))
    rows.append(("fit static: expression jitter", jitter(ex_raw[warm:]), jitter(ex_s[warm:])))
    ang_truth = np.zeros_like(ang_raw)
    rows.append(("fit static: angle RMS error deg", rms_dev(ang_raw[warm:], ang_truth[warm:]),
                 rms_dev(ang_s[warm:], ang_truth[warm:])))

    # 5. moving head through the fitter: yaw and x sinusoids
    tx_true = 0.10 * np.sin(2 * math.pi * FREQ * t)
    uv_mov = scene.noisy(scene.project(yaw_true, tx_true))
    ang_mr, tr_mr, ex_mr, rot_mr = scene.fit_sequence(uv_mov)
    ang_ms, tr_ms, _ = smooth_pose(cfg, t, rot_mr, tr_mr, ex_mr)
    rows.append(("fit yaw 30deg 0.5Hz: lag ms", sinus_lag_ms(t[warm:], ang_mr[warm:, 0], yaw_true[warm:]),
                 sinus_lag_ms(t[warm:], ang_ms[warm:, 0], yaw_true[warm:])))
    rows.append(("fit x 10cm 0.5Hz: lag ms", sinus_lag_ms(t[warm:], tr_mr[warm:, 0], tx_true[warm:]),
                 sinus_lag_ms(t[warm:], tr_ms[warm:, 0], tx_true[warm:])))
    rows.append(("fit moving: yaw RMS error deg", rms_dev(ang_mr[warm:, :1], yaw_true[warm:, None]),
                 rms_dev(ang_ms[warm:, :1], yaw_true[warm:, None])))

    # 6. pose step through the fitter, noise-free
    yaw_step = np.where(ts >= t_step, 20.0, 0.0)
    uv_step = scene.project(yaw_step, tx_step)
    ang_sr, tr_sr, ex_sr, rot_sr = scene.fit_sequence(uv_step)
    ang_ss, tr_ss, _ = smooth_pose(cfg, ts, rot_sr, tr_sr, ex_sr)
    rows.append(("fit yaw 20deg step: 90% time ms", time_to_90_ms(ts, ang_sr[:, 0], t_step, 0.0, 20.0),
                 time_to_90_ms(ts, ang_ss[:, 0], t_step, 0.0, 20.0)))
    rows.append(("fit x 5cm step: 90% time ms", time_to_90_ms(ts, tr_sr[:, 0], t_step, tr_sr[0, 0], tr_sr[-1, 0]),
                 time_to_90_ms(ts, tr_ss[:, 0], t_step, tr_sr[0, 0], tr_sr[-1, 0])))

    print(f"fps {args.fps:g}, noise {args.noise:g} px, head at {DEPTH} m; parameters "
          "(min_cutoff, beta, d_cutoff, noise_deadzone):")
    for name in ("landmarks", "rotation", "translation", "expression"):
        p = getattr(cfg, name)
        print(f"  {name:12s} {p.min_cutoff}, {p.beta}, {p.d_cutoff}, {p.noise_deadzone}")
    print(f"{'quantity':40s} {'raw':>10s} {'smoothed':>10s} {'raw/smoothed':>13s}")
    for name, a, b in rows:
        ratio = a / b if (b and "lag" not in name and "time" not in name and "amplitude" not in name) else float("nan")
        print(f"{name:40s} {a:10.3f} {b:10.3f} {ratio:13.2f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(12, 8))
    ax[0, 0].plot(t, lm_raw[:, 30, 0] - lm_truth[0, 30, 0], lw=0.7, label="raw")
    ax[0, 0].plot(t, lm_s[:, 30, 0] - lm_truth[0, 30, 0], lw=1.2, label="smoothed")
    ax[0, 0].set(title="static head: nose-tip landmark x - truth", xlabel="s", ylabel="px")
    ax[0, 1].plot(t, ang_raw[:, 0], lw=0.7, label="raw fit yaw")
    ax[0, 1].plot(t, ang_s[:, 0], lw=1.2, label="smoothed yaw")
    ax[0, 1].plot(t, 1000 * (tr_raw[:, 2] - tr_raw[warm:, 2].mean()) / 10, lw=0.7, label="raw depth (cm)")
    ax[0, 1].plot(t, 1000 * (tr_s[:, 2] - tr_raw[warm:, 2].mean()) / 10, lw=1.2, label="smoothed depth (cm)")
    ax[0, 1].set(title="static head through the fitter", xlabel="s", ylabel="deg / cm")
    sel = t < 4
    ax[1, 0].plot(t[sel], yaw_true[sel], "k", lw=1, label="true yaw")
    ax[1, 0].plot(t[sel], ang_mr[sel, 0], lw=0.7, label="raw fit")
    ax[1, 0].plot(t[sel], ang_ms[sel, 0], lw=1.2, label="smoothed")
    ax[1, 0].set(title="moving head: yaw", xlabel="s", ylabel="deg")
    ax[1, 1].plot(ts, yaw_step, "k", lw=1, label="true yaw")
    ax[1, 1].plot(ts, ang_ss[:, 0], lw=1.2, label="smoothed yaw (deg)")
    ax[1, 1].plot(ts, (lm_sts[:, 30, 0] - x0) / (x1 - x0) * 20, lw=1.2, label="smoothed landmark x (scaled)")
    ax[1, 1].plot(ts, (tr_ss[:, 0] - tr_sr[0, 0]) / (tr_sr[-1, 0] - tr_sr[0, 0]) * 20, lw=1.2,
                  label="smoothed translation x (scaled)")
    ax[1, 1].set(title="step response", xlabel="s", xlim=(0.8, 2.0))
    for a in ax.flat:
        a.legend(fontsize=8)
        a.grid(alpha=0.3)
    fig.tight_layout()
    args.out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out_png, dpi=100)
    print(f"plot: {args.out_png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
