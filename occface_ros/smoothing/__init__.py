"""Smoothing stage: One-Euro filters per track (docs/smoothing.md)."""
from .one_euro import OneEuroFilter, RotationFilter
from .track import OneEuroParams, SmoothedTrack, SmoothingConfig, TrackSmoother

__all__ = ["OneEuroFilter", "OneEuroParams", "RotationFilter", "SmoothedTrack", "SmoothingConfig", "TrackSmoother"]
