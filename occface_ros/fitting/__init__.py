"""Fitting stage: the morphable model fitted to 2D points (docs/fitting.md)."""
from .fitter import FaceFitter, FitConfig, FitState
from .identity import IdentityAccumulator, IdentityAccumulatorConfig

__all__ = ["FaceFitter", "FitConfig", "FitState", "IdentityAccumulator", "IdentityAccumulatorConfig"]
