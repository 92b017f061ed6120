"""The colour space of the appearance residuals: log colours rotated to opponent components."""
from __future__ import annotations

import math

import torch

__all__ = ["opponent"]

_SQRT2 = math.sqrt(2.0)
_SQRT6 = math.sqrt(6.0)


def opponent(d: torch.Tensor) -> torch.Tensor:
    """Log colours (..., 3) -> (luminance, red-green, yellow-blue) (..., 3); an orthonormal rotation
    scaled so that luminance is the mean of the three log channels."""
    r, g, b = d.unbind(-1)
    return torch.stack(((r + g + b) / 3.0, (r - g) / _SQRT2, (r + g - 2.0 * b) / _SQRT6), -1)
