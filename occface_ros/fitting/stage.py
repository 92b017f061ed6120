"""Fitting stage: FaceMesh landmarks -> fitting points -> the morphable model fitted per face
(weights of the paper's eq. 13, identity priors from each track)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..contracts import FittingPoints
from ..core.camera import project_points, transform_points
from ..landmarks.correspondence import Correspondences, landmarks68_from_mp468
from ..morphable.model import MorphableModel, VertexSubset
from .fitter import FaceFitter, FitConfig, FitState
from .identity import IdentityAccumulator, IdentityAccumulatorConfig

log = logging.getLogger(__name__)

IBUG_CONTOUR = slice(0, 17)  # the jaw line: silhouette points, not fixed vertices


@dataclass
class IdentityPriors:
    """The identity prior each face of a batch is fitted with (from its track's accumulator)."""

    mean: torch.Tensor  # (B, K)
    precision: torch.Tensor  # (B, K, K)
    fit_identity: torch.Tensor  # (B,) bool: False once the track's identity is frozen


class FitStage:
    """Builds the fitting points and fits B faces at once. `config` is config/occface.yaml's `fitting`."""

    def __init__(self, model: MorphableModel, correspondences: Correspondences, config: dict):
        self.model, self.config = model, config
        self.device = model.mean_m.device
        corr = correspondences.to(self.device)
        self.correspondences = corr
        valid = corr.mp_to_ict_valid
        self.dense_index = torch.nonzero(valid).squeeze(1)  # FaceMesh points with an ICT correspondence
        ids = torch.cat([model.landmarks68.view(-1, 1).expand(-1, 3), corr.mp_to_ict_vertex_ids[valid]])
        bary = torch.cat([torch.tensor([1.0, 0.0, 0.0], device=self.device).expand(68, 3),
                          corr.mp_to_ict_barycentric[valid]])
        self.fitter = FaceFitter(model, ids, bary, FitConfig(
            iterations_cold=config["iterations_cold"], iterations_warm=config["iterations_warm"],
            identity_prior_weight=config["identity_prior"], expression_prior_weight=config["expression_prior"]))
        w68 = torch.full((68,), float(config["landmark_weight"]), device=self.device)
        w68[IBUG_CONTOUR] = float(config["contour_weight"])
        self.base_weights = torch.cat([w68, torch.full((len(self.dense_index),), float(config["dense_weight"]),
                                                        device=self.device)])
        self.landmark_vertices = VertexSubset(model, model.landmarks68)

    @property
    def num_points(self) -> int:
        return int(self.base_weights.shape[0])

    def points(self, landmarks468: torch.Tensor) -> FittingPoints:
        """(B, 468, 3) FaceMesh landmarks -> the 68 iBUG landmarks and the dense fitting points."""
        lm68 = landmarks68_from_mp468(landmarks468[..., :2], self.correspondences)
        return FittingPoints(lm68, torch.cat([lm68, landmarks468[:, self.dense_index, :2]], 1))

    def points_visible(self, visibility468: torch.Tensor) -> torch.Tensor:
        """(B, P) bool: the fitting points a landmark network with visibility (B, 468) sees."""
        v68 = landmarks68_from_mp468(visibility468.unsqueeze(-1), self.correspondences)[..., 0]
        return torch.cat([v68, visibility468[:, self.dense_index]], 1) >= 0.5

    def new_identity(self) -> IdentityAccumulator:
        cfg = IdentityAccumulatorConfig(freeze_after=int(self.config["identity_freeze_frames"]),
                                        prior_weight=float(self.config["identity_prior"]))
        return IdentityAccumulator(self.model.num_identity, cfg, float(self.config["expression_prior"]),
                                   device=self.device)

    def priors(self, identities: list[IdentityAccumulator]) -> IdentityPriors:
        return IdentityPriors(torch.stack([a.mean for a in identities]), torch.stack([a.precision for a in identities]),
                              torch.tensor([not a.frozen for a in identities], device=self.device))

    def weights(self, visible: torch.Tensor) -> torch.Tensor:
        """Per-point weights (B, P): the configured weights where visible, times `occluded_weight`
        elsewhere (the paper's eq. 13: 1 on visible facial features, 0.1 on the rest)."""
        return self.base_weights * torch.where(visible, 1.0, float(self.config["occluded_weight"]))

    def __call__(self, points: FittingPoints, visible: torch.Tensor, K: torch.Tensor, priors: IdentityPriors,
                 init: FitState | None = None, iterations: int | None = None) -> FitState:
        """Fit B faces; `init` warm-starts them (None: cold start).

        Nothing non-finite leaves this call: non-finite points are ignored (weight 0), and a face
        whose fit is still not finite, or that has no finite point, keeps its previous fit
        (`init`); without one (cold start) it gets the pose-only fit of the prior-mean shape
        (closed-form pose, expression 0; frontal when nothing constrains it). See `fit_finite`."""
        finite_points = torch.isfinite(points.points).all(-1)
        xy = torch.where(finite_points.unsqueeze(-1), points.points, 0.0)
        weights = self.weights(visible) * finite_points
        fit = self.fitter(xy, weights, K, init=init, identity_prior_mean=priors.mean,
                          identity_prior_weight=priors.precision, fit_identity=priors.fit_identity,
                          iterations=iterations)
        bad = ~fit_finite(fit) | ~finite_points.any(1)  # no finite point: the priors alone would drift it
        if bad.any():
            log.warning("fit not finite for %d of %d face(s): %s", int(bad.sum()), len(bad),
                        "previous fit kept" if init is not None else "pose-only fit used")
            fallback = init if init is not None else self.fitter(
                xy, weights, K, identity_prior_mean=priors.mean, identity_prior_weight=priors.precision,
                fit_identity=False, iterations=0)
            fit = _where_faces(bad, fallback, fit)
        return fit

    def update_identities(self, identities: list[IdentityAccumulator], fit: FitState, priors: IdentityPriors) -> None:
        """Add this frame's identity evidence to each track that is not frozen yet."""
        for i, acc in enumerate(identities):
            if not acc.frozen:
                acc.update(fit[i], priors.mean[i], priors.precision[i])

    def model_landmarks68(self, fit: FitState, K: torch.Tensor) -> torch.Tensor:
        """(B, 68, 2) pixels: the fitted model's 68 landmark vertices, projected."""
        verts = self.landmark_vertices(fit.identity, fit.expression)
        return project_points(transform_points(fit.rotation, fit.translation_m, verts), K)


def fit_finite(fit: FitState) -> torch.Tensor:
    """(B,) bool: the face's pose, expression and identity are all finite."""
    parts = (fit.rotation.flatten(1), fit.translation_m, fit.expression, fit.identity)
    return torch.cat([torch.isfinite(p).all(1, keepdim=True) for p in parts], 1).all(1)


def _where_faces(take: torch.Tensor, other: FitState, fit: FitState) -> FitState:
    """`fit` with the faces in `take` (B,) replaced by `other`'s (tensors of per-face rows only)."""
    out = fit.clone()
    for name in ("rotation", "translation_m", "expression", "identity", "reprojection_error_px", "cost"):
        mine, theirs = getattr(out, name), getattr(other, name)
        if mine is not None and theirs is not None:
            mine[take] = theirs.to(mine)[take]
    if out.information is not None:
        out.information[take] = 0.0  # no identity evidence from a failed fit
    return out
