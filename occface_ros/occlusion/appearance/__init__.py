"""Appearance evidence (FOCUS-style): is a pixel of a rendered face explained by the face's appearance model?

Modules, each with one job (all torch, vectorised, any device):
- `lighting`: 2nd-order spherical-harmonics shading (the paper's eq. 11) and its robust (IRLS) fit.
- `surface`: per-vertex / per-pixel normals, UVs and view cosines of fitted meshes.
- `statistics`: quantiles, medians and robust Mahalanobis distances of many groups at once.
- `colour`: the opponent log-colour space of the residuals.
- `texture`: `TrackTexture`, a track's albedo in the model's UV layout (video).
- `config`: `AppearanceConfig`, the tunables (values in config/occface.yaml `occlusion.appearance`).
- `pixels`: `FacePixels`, the judged pixels of a frame, gathered from the rendered maps.
- `cold_start`, `texture_residual`: residual z without / with a learned texture.
- `spatial`: spatial coherence (box filter, disk closing) of the evidence.
- `evidence`: `AppearanceEvidence`, the stage (its docstring states the decision rule).
"""
from .config import AppearanceConfig
from .evidence import AppearanceEvidence, AppearanceResult
from .lighting import SH_BAND_FACTORS, SH_NORMALISATION, fit_sh_lighting, sh_basis, shade
from .statistics import group_quantile
from .surface import SurfaceAttributes, surface_attributes, vertex_normals
from .texture import TrackTexture

__all__ = [
    "SH_BAND_FACTORS",
    "SH_NORMALISATION",
    "AppearanceConfig",
    "AppearanceEvidence",
    "AppearanceResult",
    "SurfaceAttributes",
    "TrackTexture",
    "fit_sh_lighting",
    "group_quantile",
    "sh_basis",
    "shade",
    "surface_attributes",
    "vertex_normals",
]
