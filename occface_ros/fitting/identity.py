"""One track's identity: per-frame identity information fused into a running Gaussian estimate."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .fitter import FitState

__all__ = ["IdentityAccumulator", "IdentityAccumulatorConfig"]


@dataclass
class IdentityAccumulatorConfig:
    """Settings of ``IdentityAccumulator``.

    information_scale: each frame's identity information is multiplied by this before it is
        added. 1.0 treats frames as independent evidence (exact recursive least squares: the
        running estimate then equals a joint fit of all frames' identity); consecutive video
        frames have correlated errors (same detector bias, similar pose), which
        ``max_information`` and ``freeze_after`` bound; < 1 discounts each frame instead (slower
        convergence, more shrinkage towards the population mean);
    max_information: cap on the mean eigen-information (trace / K) of the accumulated estimate,
        px^2 units; when reached, older information is scaled down (a forgetting factor), so
        the estimate keeps adapting slowly instead of locking in;
    freeze_after: after this many frames ``frozen`` becomes True (callers may then pass
        fit_identity=False with prior mean = ``mean``, which also makes the fit ~3x faster);
        0 = never freeze;
    min_reprojection_px / max_reprojection_px: frames whose weighted RMS reprojection error is
        above max are skipped (bad fits, tracking failures).
    """

    information_scale: float = 1.0
    max_information: float = 1e4
    freeze_after: int = 60
    max_reprojection_px: float = 6.0
    prior_weight: float = 1.0  # population prior precision (the fitter's identity_prior_weight)


class IdentityAccumulator:
    """Running Gaussian estimate N(mean, precision^-1) of one track's identity coefficients.

    Each ``update(state, prior_mean, prior_precision)`` takes a FitState of ONE face fitted with
    ``identity_prior_mean=self.mean`` / ``identity_prior_weight=self.precision`` (or the
    population prior for the first frame) and adds that frame's evidence in information form:
    the data information on the identity H_a (the fit's J^T W J marginalised over pose and
    expression, a Schur complement) and the information vector implied by the fit,
    ``eta_t = (H_a + W_prior) a_t - W_prior mu_prior`` (so the prior used in the fit is not
    counted twice). precision = prior_weight I + sum_t c H_a,t, mean = precision^-1 (sum_t c eta_t).
    Use: ``fitter(..., identity_prior_mean=acc.mean[None], identity_prior_weight=acc.precision[None])``.
    """

    def __init__(self, num_identity: int, config: IdentityAccumulatorConfig | None = None,
                 expression_prior_weight: float = 0.05, device=None):
        self.config = config or IdentityAccumulatorConfig()
        self.num_identity = num_identity
        self.expression_prior_weight = expression_prior_weight
        self.device = device
        self.reset()

    def reset(self) -> None:
        k = self.num_identity
        self.info = torch.zeros(k, k, dtype=torch.float64, device=self.device)
        self.eta = torch.zeros(k, dtype=torch.float64, device=self.device)
        self.frames = 0

    @property
    def precision(self) -> torch.Tensor:
        """(K, K) float32 precision (prior weight for the fitter), px^2 units."""
        eye = torch.eye(self.num_identity, dtype=torch.float64, device=self.info.device)
        return (self.config.prior_weight * eye + self.info).float()

    @property
    def mean(self) -> torch.Tensor:
        """(K,) float32 current identity estimate."""
        eye = torch.eye(self.num_identity, dtype=torch.float64, device=self.info.device)
        return torch.linalg.solve(self.config.prior_weight * eye + self.info, self.eta).float()

    @property
    def frozen(self) -> bool:
        return self.config.freeze_after > 0 and self.frames >= self.config.freeze_after

    def identity_information(self, information: torch.Tensor, num_expression: int) -> torch.Tensor:
        """Schur complement of a (P, P) fit information onto its identity block (K, K)."""
        h = information.double()
        o = 6 + num_expression
        hoo = h[:o, :o].clone()
        hoo.diagonal()[6:] += self.expression_prior_weight
        hoo.diagonal().add_(1e-9 * hoo.diagonal().abs().max())
        hoi, hii = h[:o, o:], h[o:, o:]
        s = hii - hoi.T @ torch.linalg.solve(hoo, hoi)
        return 0.5 * (s + s.T)

    def update(self, state: FitState, prior_mean: torch.Tensor | None = None,
               prior_precision: torch.Tensor | None = None) -> bool:
        """Add one frame (``state`` of a single face, B=1). ``prior_mean`` (K,) / ``prior_precision``
        (K, K) are the identity prior the fit used (default: this accumulator's state before the
        update, i.e. what you passed to the fitter). Returns whether the frame was used."""
        if state.information is None or len(state) != 1:
            return False
        if not bool(state.reprojection_error_px[0] <= self.config.max_reprojection_px):
            return False
        k = self.num_identity
        e = state.expression.shape[1]
        if prior_mean is None:
            prior_mean = self.mean
        if prior_precision is None:
            prior_precision = self.precision
        mu = prior_mean.double().reshape(k)
        wp = prior_precision.double()
        if wp.ndim == 0 or wp.numel() == 1:
            wp = wp.reshape(()) * torch.eye(k, dtype=torch.float64, device=mu.device)
        elif wp.ndim == 1:
            wp = torch.diag(wp)
        ha = self.identity_information(state.information[0], e)
        a = state.identity[0].double()
        eta = (ha + wp) @ a - wp @ mu
        c = self.config.information_scale
        self.info = self.info + c * ha
        self.eta = self.eta + c * eta
        level = float(torch.trace(self.info)) / k
        if level > self.config.max_information:
            shrink = self.config.max_information / level
            self.info *= shrink
            self.eta *= shrink
        self.frames += 1
        return True
