"""Batched 2D-correspondence fitting of a MorphableModel: pose, expression and identity.

Problem (per face b, all faces solved together, vectorised in torch):

    minimise  1/2 sum_n w_n |pi(K, R X_n(e, a) + t) - u_n|^2          (data, pixels^2)
            + 1/2 (a - mu)^T W_id (a - mu)                             (identity prior)
            + 1/2 lambda_e |e|^2 + l1_e * sum(e)                       (expression prior)
    subject to  lo <= e <= hi                                          (blendshape bounds)

with X_n = sum_j bary_nj * (mean + a @ identity_basis + e @ expression_basis)[ids_nj]
(barycentric model points), R in SO(3), t in R^3 (see ``camera.py`` for the pose convention:
``p_cam = R p_model + t``; frontal face: R = diag(1, -1, -1)), pi the pinhole projection.

Method: Levenberg-Marquardt (Marquardt diagonal scaling, per-face accept/reject and damping)
on the unknowns ``[omega (3), t (3), e (E), a (K)]`` where ``omega`` is a left-multiplicative
axis-angle increment, ``R <- exp(omega) R``. Jacobians are analytic:
``d pi / d p`` (2x3) times ``[-[R X]_x, I, R B_n]`` where ``B_n`` (3, E+K) are the basis
columns restricted to the N model points (precomputed once: nothing on the hot path touches
the full mesh). The normal matrix J^T W J is formed with one batched matmul.

Bounds on the expression weights: projected Newton (Bertsekas 1982): weights that sit on a
bound with the gradient pushing outwards are held fixed for the step (their rows/columns are
removed from the system), the step is solved for the free variables and the result is clamped
to the box. Unlike plain clamping after an unconstrained step, this does not let the pinned
variables distort the step of the free ones (an unconstrained step would "spend" the
correlated directions on weights that then get clipped), and it costs only masking.

Cold start (no ``init``): a weighted weak-perspective (affine) fit of the mean shape gives
rotation, depth and centre in closed form, then ``pose_iterations`` LM iterations on the 6
pose unknowns (cheap), then ``iterations_cold`` full iterations. Warm start (``init`` = the
previous frame of the track): ``iterations_warm`` full iterations from ``init``.

Identity over a track: ``IdentityAccumulator`` (``identity.py``) fuses the per-frame identity
information (Gauss-Newton information marginalised over pose and expression) into a running
Gaussian estimate that is fed back as ``identity_prior_mean`` / ``identity_prior_weight``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from ..core.camera import project_points, transform_points
from ..core.geometry import so3_exp
from ..morphable.model import MorphableModel

__all__ = ["FitConfig", "FitState", "FaceFitter"]


@dataclass
class FitConfig:
    """Settings of ``FaceFitter``. Weights are in pixels^2 (the data term is a sum of squared
    pixel residuals times the per-point weights), so a prior weight w on a coefficient with
    prior std 1 corresponds to assuming about sqrt(w) px of independent noise per point."""

    iterations_cold: int = 12
    """Full LM iterations (pose + expression + identity) for a face without ``init``."""
    iterations_warm: int = 3
    """LM iterations when warm-started from the previous frame's ``FitState``."""
    warm_identity_iterations: int = 1
    """How many of the warm iterations also solve the identity (the others solve pose and
    expression only, ~3x cheaper). Identity changes slowly along a track, so one Gauss-Newton
    step per frame keeps it converged; 0 = identity fixed at its warm-start value."""
    pose_iterations: int = 5
    """Pose-only LM iterations on the (prior-mean) shape before the full cold solve."""
    identity_prior_weight: float = 1.0
    """Weight of the population prior identity ~ N(0, I) (used when no identity_prior_mean is
    given, or as the default weight for a given mean). 1.0 ~ 1 px noise per point."""
    expression_prior_weight: float = 0.05
    """L2 weight pulling the expression weights towards 0 (keeps unobserved ones at rest)."""
    expression_l1_weight: float = 0.0
    """Optional L1 (sparsity) weight on the expression weights (exact with the [0, 1] bounds)."""
    damping: float = 1e-3
    """Initial LM damping lambda (relative to the diagonal of the normal matrix)."""
    damping_up: float = 10.0
    """Damping multiplier after a rejected step (cost did not decrease)."""
    damping_down: float = 0.3
    """Damping multiplier after an accepted step."""
    damping_min: float = 1e-7
    damping_max: float = 1e7
    min_depth_m: float = 0.05
    """Depths are clamped to at least this (metres) inside the projection."""
    bound_tolerance: float = 1e-6
    """An expression weight this close to a bound counts as "on" the bound (active set)."""
    solve_in_float64: bool = True
    """Factorise the (6+E+K)^2 normal matrix in float64 (costs ~0.03 ms per face, safer)."""
    cpu_syrk: bool = False
    """On CPU, form J^T J with numpy/BLAS syrk (half the flops). Off by default: numpy's
    OpenBLAS thread pool competes with torch's OpenMP threads (catastrophic slow-downs under
    load); enable only with OPENBLAS_NUM_THREADS=1."""


@dataclass
class FitState:
    """Result of ``FaceFitter`` for B faces (all tensors on the fitter's device).

    rotation (B, 3, 3): model -> camera rotation (includes the model/camera flip, see camera.py);
    translation_m (B, 3): model origin in the camera frame, metres;
    expression (B, E): expression weights, within the model's bounds;
    identity (B, K): identity coefficients (~N(0, 1) for the population);
    reprojection_error_px (B,): weighted RMS reprojection error sqrt(sum w |r|^2 / sum w);
    iterations: LM iterations run in the final (full) stage;
    cost (B,): final objective value (data + priors), pixels^2 units;
    information (B, P, P) or None: data-term Gauss-Newton information J^T W J at the last
        linearisation point, P = 6 + E + K ordered [omega, t, expression, identity]
        (None when identity was not part of the solve); used by IdentityAccumulator.
    """

    rotation: torch.Tensor
    translation_m: torch.Tensor
    expression: torch.Tensor
    identity: torch.Tensor
    reprojection_error_px: torch.Tensor
    iterations: int = 0
    cost: torch.Tensor | None = None
    information: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.rotation.shape[0])

    def _map(self, fn) -> "FitState":
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            kw[f.name] = fn(v) if isinstance(v, torch.Tensor) else v
        return FitState(**kw)

    def __getitem__(self, index) -> "FitState":
        """Select faces: ``state[i:i+1]``, ``state[[0, 2]]``, ``state[mask]`` (int index keeps B=1)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return self._map(lambda v: v[index])

    def to(self, device) -> "FitState":
        return self._map(lambda v: v.to(device))

    def clone(self) -> "FitState":
        return self._map(lambda v: v.clone())

    @staticmethod
    def cat(states: list["FitState"]) -> "FitState":
        """Concatenate states along the batch (e.g. the previous states of several tracks)."""
        if not states:
            raise ValueError("FitState.cat needs at least one state")
        kw = {}
        for f in fields(FitState):
            vals = [getattr(s, f.name) for s in states]
            if f.name == "iterations":
                kw[f.name] = max(vals)
            elif any(v is None for v in vals):
                kw[f.name] = None
            else:
                kw[f.name] = torch.cat(vals, 0)
        return FitState(**kw)


@dataclass
class _Observations:
    """The 2D points of B faces, in both layouts the solver needs."""

    points_px: torch.Tensor  # (B, N, 2)
    weights: torch.Tensor  # (B, N) >= 0
    focal_px: torch.Tensor  # (B, 1, 2) fx, fy
    centre_px: torch.Tensor  # (B, 1, 2) cx, cy

    def __post_init__(self):
        # solver layout: coordinate-major (B, 2, N) residuals
        self.points_cn = self.points_px.transpose(1, 2).contiguous()
        self.sqrt_weight_cn = self.weights.sqrt().unsqueeze(1)  # (B, 1, N)
        self.focal_cn = self.focal_px.transpose(1, 2)  # (B, 2, 1)
        self.centre_cn = self.centre_px.transpose(1, 2)


@dataclass
class _IdentityPrior:
    """Gaussian identity prior: mean (B, K), precision (B, K) diagonal or (B, K, K) full."""

    mean: torch.Tensor
    precision: torch.Tensor

    @property
    def full(self) -> bool:
        return self.precision.ndim == 3

    def weighted(self, d: torch.Tensor) -> torch.Tensor:
        """precision @ d for d (B, K)."""
        return (self.precision @ d.unsqueeze(-1)).squeeze(-1) if self.full else self.precision * d


class FaceFitter:
    """Fit pose, expression and identity of a MorphableModel to 2D correspondences.

    ``correspondence_ids`` (N, 3) int and ``correspondence_bary`` (N, 3) float define the N
    model points as barycentric combinations of mesh vertices (a vertex v: ids [v, v, v],
    bary [1, 0, 0]). Only these N points are kept (restricted mean and bases).
    """

    def __init__(
        self,
        model: MorphableModel,
        correspondence_ids: torch.Tensor,
        correspondence_bary: torch.Tensor,
        config: FitConfig | None = None,
        device: torch.device | str | None = None,
    ):
        self.config = config or FitConfig()
        device = torch.device(device) if device is not None else model.mean_m.device
        ids = torch.as_tensor(correspondence_ids, dtype=torch.long).to(model.mean_m.device)
        bary = torch.as_tensor(correspondence_bary, dtype=torch.float32).to(model.mean_m.device)
        if ids.ndim != 2 or ids.shape[1] != 3 or bary.shape != ids.shape:
            raise ValueError(f"correspondences must be (N, 3); got ids {tuple(ids.shape)}, bary {tuple(bary.shape)}")
        if int(ids.min()) < 0 or int(ids.max()) >= model.num_vertices:
            raise ValueError("correspondence_ids out of range of the model's vertices")
        self.num_points = int(ids.shape[0])
        self.num_expression = model.num_expression
        self.num_identity = model.num_identity
        self.num_params = 6 + self.num_expression + self.num_identity
        self.expression_bounds = model.expression_bounds
        self.device = device

        def restrict(t):  # (..., V, 3) -> (..., N, 3), barycentric combination
            return (t[..., ids, :] * bary[:, :, None]).sum(-2)

        mean = restrict(model.mean_m.float())  # (N, 3)
        exb = restrict(model.expression_basis_m.float())  # (E, N, 3)
        idb = restrict(model.identity_basis_m.float())  # (K, N, 3)
        basis = torch.cat((exb, idb), 0)  # (P, N, 3), order [expression, identity]
        self.mean = mean.contiguous().to(device)
        # layouts: coordinate-major (P, 3N) with (coord, point) order for the solver's (B, 3, N)
        # layout; (3, N, P) for the rotated-basis GEMM of the Jacobian.
        self.basis_cn = basis.permute(0, 2, 1).reshape(basis.shape[0], -1).contiguous().to(device)
        self.basis_3np = basis.permute(2, 1, 0).contiguous().to(device)  # (3, N, P)
        self.mean_cn = mean.T.contiguous().to(device)  # (3, N)
        self._basis_cache: dict[int, torch.Tensor] = {basis.shape[0]: self.basis_3np.view(3, -1)}
        self.correspondence_ids = ids.to(device)
        self.correspondence_bary = bary.to(device)

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def for_vertices(cls, model: MorphableModel, vertex_ids, config: FitConfig | None = None, **kw) -> "FaceFitter":
        """Fitter whose model points are plain vertices (e.g. ``model.landmarks68``)."""
        v = torch.as_tensor(vertex_ids, dtype=torch.long).reshape(-1, 1).expand(-1, 3)
        bary = torch.zeros(v.shape, dtype=torch.float32)
        bary[:, 0] = 1.0
        return cls(model, v, bary, config, **kw)

    # ------------------------------------------------------------------ model evaluation
    def model_points(self, identity: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """Model-space positions (B, N, 3) of the N correspondence points."""
        s = torch.cat((expression, identity), -1).to(device=self.device, dtype=self.mean.dtype)
        return self._shape(s).transpose(1, 2)

    def project(self, state: FitState, K: torch.Tensor) -> torch.Tensor:
        """Pixel positions (B, N, 2) of the N model points for a fitted state."""
        x = self.model_points(state.identity, state.expression)
        p = transform_points(state.rotation, state.translation_m, x)
        return project_points(p, self._batch_k(K, p.shape[0]), self.config.min_depth_m)

    def _batch_k(self, K, b):
        K = torch.as_tensor(K, dtype=torch.float32, device=self.device)
        return K.expand(b, 3, 3) if K.ndim == 2 else K

    # ------------------------------------------------------------------ internals
    def _shape(self, s):
        """Model points in the solver layout (B, 3, N) for shape coefficients s (B, E+K)."""
        return torch.addmm(self.mean_cn.view(1, -1), s, self.basis_cn).view(s.shape[0], 3, self.num_points)

    def _forward(self, R, t, x, obs: _Observations):
        """Solver layout: points x (B, 3, N) -> Y = R X, P = Y + t (B, 3, N), weighted
        residuals (B, 2, N)."""
        y = torch.bmm(R, x)
        p = y + t[:, :, None]
        z = p[:, 2:3].clamp_min(self.config.min_depth_m)
        r = torch.addcmul(obs.centre_cn - obs.points_cn, p[:, :2] / z, obs.focal_cn) * obs.sqrt_weight_cn
        return y, p, r

    def _prior(self, s, prior: _IdentityPrior):
        """Prior gradient (B, E+K) and prior cost (B,) (expression L2/L1 + identity Gaussian)."""
        cfg, E = self.config, self.num_expression
        e = s[:, :E]
        d = s[:, E:] - prior.mean
        wd = prior.weighted(d)
        grad = torch.cat((cfg.expression_prior_weight * e + cfg.expression_l1_weight, wd), 1)
        cost = (0.5 * cfg.expression_prior_weight * e + cfg.expression_l1_weight).mul(e).sum(1) + 0.5 * (d * wd).sum(1)
        return grad, cost

    def _gram(self, a: torch.Tensor) -> torch.Tensor:
        """a^T a for (B, M, P) float32 -> (B, P, P). On CPU numpy's matmul recognises the
        transposed-self product and calls BLAS syrk (half the flops of a general matmul and,
        with OpenBLAS, ~2x faster than torch.bmm here)."""
        if a.device.type == "cpu" and self.config.cpu_syrk:
            an = a.numpy()
            out = np.empty((an.shape[0], an.shape[2], an.shape[2]), dtype=an.dtype)
            for i in range(an.shape[0]):
                np.matmul(an[i].T, an[i], out=out[i])
            return torch.from_numpy(out)
        return torch.bmm(a.transpose(1, 2), a)

    def _lm(self, R, t, s, obs: _Observations, prior: _IdentityPrior, schedule: list[int],
            free_fixed: torch.Tensor | None = None, want_info: bool = False):
        """LM iterations; ``schedule`` lists, per iteration, how many leading unknowns are solved
        (6: pose only, 6+E: pose + expression, 6+E+K: all). Returns R, t, s, residuals, cost and
        the data information of the last iteration that solved all unknowns (if want_info)."""
        cfg = self.config
        B, E, N = s.shape[0], self.num_expression, self.num_points
        P = 6 + E + self.num_identity
        bounds = self.expression_bounds
        sdt = torch.float64 if cfg.solve_in_float64 else torch.float32
        lam = torch.full((B,), cfg.damping, dtype=sdt, device=self.device)
        x = self._shape(s)
        y, p, r = self._forward(R, t, x, obs)
        pg, pc = self._prior(s, prior)
        cost = 0.5 * (r * r).sum((1, 2)) + pc
        info = None
        ab0 = obs.focal_cn * obs.sqrt_weight_cn  # (B, 2, N): sqrt(w) * (fx, fy)
        last_full = max((i for i, n in enumerate(schedule) if n == P), default=-1)
        for it, pcount in enumerate(schedule):
            ns = pcount - 6
            # --- Jacobian of the weighted residuals (closed form of d pi/d p [y x ., I, R B_n]),
            # rows ordered [all x rows; all y rows] like the residuals (B, 2, N)
            iz = 1.0 / p[:, 2].clamp_min(cfg.min_depth_m)  # (B, N)
            qx, qy = p[:, 0] * iz, p[:, 1] * iz
            ab = (ab0 * iz[:, None]).unsqueeze(-1)  # (B, 2, N, 1)
            y0, y1, y2 = y.unbind(1)
            one, zero = torch.ones_like(qx), torch.zeros_like(qx)
            jp = torch.stack(
                (
                    torch.stack((-qx * y1, y2 + qx * y0, -y1, one, zero, -qx), -1),
                    torch.stack((-qy * y1 - y2, qy * y0, y0, zero, one, -qy), -1),
                ),
                1,
            )  # (B, 2, N, 6)
            jpr = torch.cat((jp * ab, r.unsqueeze(-1)), -1).view(B, 2 * N, 7)
            hp = torch.bmm(jpr.transpose(1, 2), jpr)  # (B, 7, 7): [Hpp, gp; gp^T, |r|^2]
            H = torch.empty(B, pcount, pcount, dtype=sdt, device=self.device)
            g = torch.empty(B, pcount, dtype=sdt, device=self.device)
            H[:, :6, :6] = hp[:, :6, :6]
            g[:, :6] = hp[:, :6, 6]
            if ns > 0:
                rb = torch.matmul(R, self._basis_prefix(ns)).view(B, 3, N, ns)  # rotated basis
                js = torch.empty(B, 2, N, ns, dtype=rb.dtype, device=self.device)
                torch.addcmul(rb[:, 0], qx.unsqueeze(-1), rb[:, 2], value=-1.0, out=js[:, 0])
                torch.addcmul(rb[:, 1], qy.unsqueeze(-1), rb[:, 2], value=-1.0, out=js[:, 1])
                js *= ab
                js = js.view(B, 2 * N, ns)
                hps = torch.bmm(jpr.transpose(1, 2), js)  # (B, 7, ns): [Hps; gs]
                H[:, :6, 6:] = hps[:, :6]
                H[:, 6:, :6] = hps[:, :6].transpose(1, 2)
                H[:, 6:, 6:] = self._gram(js)
                g[:, 6:] = hps[:, 6]
            if want_info and it == last_full:
                # a copy: the priors are added to H in place below, and the information must be
                # the data term alone (H.to(float32) would alias H when solving in float32)
                info = H.to(torch.float32, copy=True)
            if ns > 0:
                g[:, 6:] += pg[:, :ns]
                dg = H.diagonal(dim1=1, dim2=2)
                dg[:, 6 : 6 + E] += cfg.expression_prior_weight
                if ns > E:
                    if prior.full:
                        H[:, 6 + E :, 6 + E :] += prior.precision
                    else:
                        dg[:, 6 + E :] += prior.precision
            # --- active set (projected Newton): pinned variables get no step
            if ns > 0 and (bounds is not None or (free_fixed is not None and ns > E)):
                free = torch.ones(B, pcount, dtype=torch.bool, device=self.device)
                if bounds is not None:
                    e = s[:, :E]
                    ge = g[:, 6 : 6 + E]
                    lo, hi = bounds
                    act = ((e <= lo + cfg.bound_tolerance) & (ge > 0)) | ((e >= hi - cfg.bound_tolerance) & (ge < 0))
                    free[:, 6 : 6 + E] = ~act
                if free_fixed is not None and ns > E:
                    free[:, 6 + E :] &= free_fixed[:, None]
                fm = free.to(sdt)
                H = H * fm[:, :, None] * fm[:, None, :] + torch.diag_embed(1.0 - fm)
                g = g * fm
            dgl = H.diagonal(dim1=1, dim2=2)
            dgl += lam[:, None] * dgl + 1e-9
            L, bad = torch.linalg.cholesky_ex(H)
            step = -torch.cholesky_solve(g.unsqueeze(-1), L).squeeze(-1)
            step = torch.where((bad == 0)[:, None], step, torch.zeros_like(step)).to(s.dtype)
            # --- candidate, evaluated; accepted per face where the cost does not increase
            Rn = so3_exp(step[:, :3]) @ R
            tn = t + step[:, 3:6]
            if ns > 0:
                sn = s.clone()
                sn[:, :ns] += step[:, 6:]
                if bounds is not None:
                    sn[:, :E].clamp_(bounds[0], bounds[1])
                pgn, pcn = self._prior(sn, prior)
                # incremental shape update: only the solved coefficients changed
                xn = torch.addmm(x.view(B, -1), sn[:, :ns] - s[:, :ns], self.basis_cn[:ns]).view_as(x)
            else:
                sn, pgn, pcn, xn = s, pg, pc, x
            yn, pn, rn = self._forward(Rn, tn, xn, obs)
            costn = 0.5 * (rn * rn).sum((1, 2)) + pcn
            acc = costn <= cost
            lam = torch.where(acc, lam * cfg.damping_down, lam * cfg.damping_up).clamp(cfg.damping_min, cfg.damping_max)
            a1, a2 = acc[:, None], acc[:, None, None]
            R = torch.where(a2, Rn, R)
            t = torch.where(a1, tn, t)
            y = torch.where(a2, yn, y)
            p = torch.where(a2, pn, p)
            r = torch.where(a2, rn, r)
            cost = torch.where(acc, costn, cost)
            if ns > 0:
                s = torch.where(a1, sn, s)
                x = torch.where(a2, xn, x)
                pg = torch.where(a1, pgn, pg)
                pc = torch.where(acc, pcn, pc)
        return R, t, s, r, cost, info

    def _basis_prefix(self, ns: int) -> torch.Tensor:
        """Contiguous (3, N*ns) basis restricted to the first ns shape unknowns (cached)."""
        b = self._basis_cache.get(ns)
        if b is None:
            b = self.basis_3np[:, :, :ns].contiguous().view(3, -1)
            self._basis_cache[ns] = b
        return b

    def _init_pose(self, x, obs, w, f, c):
        """Closed-form weak-perspective pose of model points x (B, N, 3) -> R (B,3,3), t (B,3)."""
        q = (obs - c) / f  # normalised image coordinates (B, N, 2)
        ws = w / w.sum(1, keepdim=True).clamp_min(1e-12)
        xm = (ws[..., None] * x).sum(1, keepdim=True)
        qm = (ws[..., None] * q).sum(1, keepdim=True)
        xc, qc = x - xm, q - qm
        wx = ws[..., None] * xc
        A = wx.transpose(1, 2) @ xc  # (B, 3, 3)
        rhs = wx.transpose(1, 2) @ qc  # (B, 3, 2)
        eye = torch.eye(3, device=x.device, dtype=x.dtype)
        A = A + 1e-9 * eye
        M = torch.linalg.solve(A, rhs).transpose(1, 2)  # (B, 2, 3): q ~ M x
        n1 = M[:, 0].norm(dim=-1).clamp_min(1e-9)
        n2 = M[:, 1].norm(dim=-1).clamp_min(1e-9)
        r1 = M[:, 0] / n1[:, None]
        r2 = M[:, 1] / n2[:, None]
        r3 = torch.linalg.cross(r1, r2, dim=-1)
        Rraw = torch.stack((r1, r2, r3), 1)
        u, _, vh = torch.linalg.svd(Rraw)
        dfix = torch.ones(x.shape[0], 3, device=x.device, dtype=x.dtype)
        dfix[:, 2] = torch.sign(torch.det(u @ vh))
        R = u @ torch.diag_embed(dfix) @ vh
        bad = ~torch.isfinite(R).all(-1).all(-1) | (torch.det(R) < 0.5)
        frontal = torch.diag(torch.tensor([1.0, -1.0, -1.0], device=x.device, dtype=x.dtype))
        R = torch.where(bad[:, None, None], frontal, R)
        scale = (0.5 * (n1 + n2)).clamp_min(1e-6)  # = 1 / depth of the centroid
        zc = (1.0 / scale).clamp(self.config.min_depth_m * 2, 100.0)
        pc = torch.cat((qm[:, 0] * zc[:, None], zc[:, None]), -1)  # centroid in camera frame
        t = pc - (R @ xm[:, 0, :, None]).squeeze(-1)
        return R, t

    # ------------------------------------------------------------------ main entry
    @torch.no_grad()
    def __call__(
        self,
        points2d: torch.Tensor,
        weights: torch.Tensor,
        K: torch.Tensor,
        init: FitState | None = None,
        identity_prior_mean: torch.Tensor | None = None,
        identity_prior_weight: torch.Tensor | float | None = None,
        fit_identity: bool | torch.Tensor = True,
        iterations: int | None = None,
    ) -> FitState:
        """Fit B faces.

        points2d (B, N, 2) pixels (x, y) of the N correspondences; weights (B, N) >= 0 (0 =
        ignore the point; occluded points e.g. 0.1); K (B, 3, 3) or (3, 3).
        init: previous FitState of the same faces (warm start), or None (cold start).
        identity_prior_mean (B, K): prior mean of the identity (e.g. from IdentityAccumulator);
        identity_prior_weight: its precision, px^2 units: a float, (B,), (B, K) diagonal or
        (B, K, K) full; default ``config.identity_prior_weight``. Without a mean, the prior is
        N(0, 1/config.identity_prior_weight).
        fit_identity: bool or (B,) bool; faces with False keep their identity fixed at
        identity_prior_mean if given, else init.identity, else 0. When False for all faces the
        solve drops the K identity unknowns (much faster).
        iterations: overrides the number of full LM iterations.
        """
        obs = self._observations(points2d, weights, K)
        B = obs.points_px.shape[0]
        prior = self._identity_prior(B, identity_prior_mean, identity_prior_weight)
        fid = torch.as_tensor(fit_identity, dtype=torch.bool, device=self.device).reshape(-1).expand(B)
        any_id, all_id = bool(fid.any()), bool(fid.all())
        R, t, s = self._start(obs, prior, init, fid if identity_prior_mean is not None else None)
        if init is None:
            n_iter = self.config.iterations_cold if iterations is None else iterations
        else:
            n_iter = self.config.iterations_warm if iterations is None else iterations
        schedule = self._schedule(n_iter, warm=init is not None, any_identity=any_id)
        free_fixed = None if (all_id or not any_id) else fid
        R, t, s, r, cost, info = self._lm(R, t, s, obs, prior, schedule, free_fixed, want_info=any_id)
        E = self.num_expression
        rms = ((r * r).sum((1, 2)) / obs.weights.sum(1).clamp_min(1e-12)).sqrt()
        return FitState(rotation=R, translation_m=t, expression=s[:, :E].clone(), identity=s[:, E:].clone(),
                        reprojection_error_px=rms, iterations=n_iter, cost=cost,
                        information=info if any_id else None)

    def _observations(self, points2d, weights, K) -> _Observations:
        obs = torch.as_tensor(points2d, dtype=torch.float32, device=self.device)
        if obs.shape[1] != self.num_points:
            raise ValueError(f"expected {self.num_points} points, got {obs.shape[1]}")
        Kb = self._batch_k(K, obs.shape[0])
        return _Observations(obs, torch.as_tensor(weights, dtype=torch.float32, device=self.device).clamp_min(0.0),
                             Kb[:, None, [0, 1], [0, 1]], Kb[:, None, [0, 1], [2, 2]])

    def _identity_prior(self, B: int, mean, weight) -> _IdentityPrior:
        """The prior as given, or N(0, 1 / config.identity_prior_weight)."""
        kw = dict(dtype=torch.float32, device=self.device)
        Kid = self.num_identity
        if mean is None:
            return _IdentityPrior(torch.zeros(B, Kid, **kw),
                                  torch.full((B, Kid), float(self.config.identity_prior_weight), **kw))
        mu = torch.as_tensor(mean, **kw).expand(B, Kid)
        wt = torch.as_tensor(self.config.identity_prior_weight if weight is None else weight, **kw)
        if wt.ndim == 3:
            return _IdentityPrior(mu, wt.expand(B, Kid, Kid))
        return _IdentityPrior(mu, wt.expand(B, Kid) if wt.ndim == 2 else wt.reshape(-1, 1).expand(B, Kid))

    def _start(self, obs: _Observations, prior: _IdentityPrior, init: FitState | None,
               fixed_to_prior: torch.Tensor | None):
        """Starting pose R, t and shape s = [expression, identity]: the warm state, or the prior
        mean with a closed-form pose refined by pose-only iterations. Faces with False in
        `fixed_to_prior` take the prior mean as identity."""
        E, dev, dt = self.num_expression, self.device, torch.float32
        if init is not None:
            R, t = init.rotation.to(dev, dt).clone(), init.translation_m.to(dev, dt).clone()
            e0, a0 = init.expression.to(dev, dt), init.identity.to(dev, dt)
        else:
            e0, a0 = torch.zeros(obs.points_px.shape[0], E, dtype=dt, device=dev), prior.mean.clone()
        if fixed_to_prior is not None:
            a0 = torch.where(fixed_to_prior[:, None], a0, prior.mean)
        s = torch.cat((e0, a0), 1).contiguous()
        if self.expression_bounds is not None:
            s[:, :E].clamp_(*self.expression_bounds)
        if init is None:
            x0 = self.model_points(s[:, E:], s[:, :E])
            R, t = self._init_pose(x0, obs.points_px, obs.weights, obs.focal_px, obs.centre_px)
            if self.config.pose_iterations > 0:
                R, t, s, *_ = self._lm(R, t, s, obs, prior, [6] * self.config.pose_iterations)
        return R, t, s

    def _schedule(self, n_iter: int, warm: bool, any_identity: bool) -> list[int]:
        """Unknowns solved per iteration: pose + expression (+ identity). Warm: identity in
        `warm_identity_iterations` of them, after one pose + expression step."""
        small, full = 6 + self.num_expression, 6 + self.num_expression + self.num_identity
        if not any_identity:
            return [small] * n_iter
        if not warm or n_iter < 2:
            return [full] * n_iter
        k = min(max(self.config.warm_identity_iterations, 0), n_iter - 1)
        return [small] + [full] * k + [small] * (n_iter - 1 - k)
