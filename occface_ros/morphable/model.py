"""The one MorphableModel interface every loader returns.

A face shape is `mean + identity @ identity_basis + expression @ expression_basis`, in metres,
model space: x right, y up, z towards the viewer (the face looks along +z).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class MorphableModel:
    name: str
    mean_m: torch.Tensor  # (V, 3) float32, metres
    identity_basis_m: torch.Tensor  # (K, V, 3) offsets per unit coefficient (coefficients ~ N(0, 1))
    expression_basis_m: torch.Tensor  # (E, V, 3) offsets per unit weight
    expression_names: list[str]
    expression_bounds: tuple[float, float] | None  # (0, 1) for blendshapes; None for PCA (~N(0,1))
    triangles: torch.Tensor  # (T, 3) int64
    landmarks68: torch.Tensor  # (68,) int64 vertex indices (iBUG order)
    uv: np.ndarray | None = None  # (Nuv, 2) texture coordinates, or None
    triangle_uv: np.ndarray | None = None  # (T, 3) per-corner indices into uv, or None
    face_vertex_count: int | None = None  # vertices [0, n) are the face area, when known
    source: str = ""
    extras: dict = field(default_factory=dict)

    @property
    def num_vertices(self) -> int:
        return int(self.mean_m.shape[0])

    @property
    def num_identity(self) -> int:
        return int(self.identity_basis_m.shape[0])

    @property
    def num_expression(self) -> int:
        return int(self.expression_basis_m.shape[0])

    def to(self, device: torch.device | str) -> "MorphableModel":
        """Copy with all tensors on `device`."""
        out = MorphableModel(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        for k in ("mean_m", "identity_basis_m", "expression_basis_m", "triangles", "landmarks68"):
            setattr(out, k, getattr(self, k).to(device))
        return out

    def vertices(
        self, identity: torch.Tensor, expression: torch.Tensor, index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Model-space vertices (B, V or len(index), 3) for (B, K) identity and (B, E) expression."""
        mean, idb, exb = self.mean_m, self.identity_basis_m, self.expression_basis_m
        if index is not None:
            mean, idb, exb = mean[index], idb[:, index], exb[:, index]
        shape = mean.unsqueeze(0) + torch.einsum("bk,kvc->bvc", identity, idb)
        return shape + torch.einsum("be,evc->bvc", expression, exb)


class VertexSubset:
    """Vertices (B, len(index), 3) of a fixed subset of a model's vertices, for (B, K) identity and
    (B, E) expression: the model's `vertices(..., index=index)` with the bases gathered once (one
    GEMM per call; gathering them at each call costs ~6 ms for the ICT face part)."""

    def __init__(self, model: MorphableModel, index: torch.Tensor):
        self.index = index
        self.mean = model.mean_m[index].reshape(1, -1)
        self.basis = torch.cat([model.identity_basis_m[:, index], model.expression_basis_m[:, index]]).reshape(
            model.num_identity + model.num_expression, -1)

    def __call__(self, identity: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        coefficients = torch.cat([identity, expression], 1).to(self.basis.dtype)
        return torch.addmm(self.mean, coefficients, self.basis).view(identity.shape[0], -1, 3)
