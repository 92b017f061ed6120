"""Mesh level of detail for ~/mesh_markers: vertex clustering, computed once per (mesh, budget).

A TRIANGLE_LIST marker carries 3 points and 3 colours per triangle, so the full ICT face
(~20k triangles) is ~60k points per face per frame; `mesh_max_triangles` bounds that. Vertices are
clustered on a regular grid (cell size found by bisection so the simplified mesh has at most the
budget), each cluster becomes its mean vertex, and degenerate / duplicate triangles are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LodMesh:
    cluster_of_vertex: np.ndarray  # (V,) int: cluster id of each original vertex
    counts: np.ndarray  # (C,) float: vertices per cluster
    triangles: np.ndarray  # (T', 3) int cluster ids

    @property
    def num_clusters(self) -> int:
        return len(self.counts)

    def vertices(self, vertices: np.ndarray) -> np.ndarray:
        """(V, 3) full-resolution vertices -> (C, 3) cluster means."""
        if self.counts.size == len(vertices) and np.array_equal(self.cluster_of_vertex, np.arange(len(vertices))):
            return vertices
        out = np.empty((self.num_clusters, 3), np.float64)
        for k in range(3):
            out[:, k] = np.bincount(self.cluster_of_vertex, vertices[:, k], self.num_clusters) / self.counts
        return out


def _cluster(vertices: np.ndarray, triangles: np.ndarray, cell: float):
    keys = np.floor((vertices - vertices.min(0)) / cell).astype(np.int64)
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    tris = inverse[triangles]
    keep = (tris[:, 0] != tris[:, 1]) & (tris[:, 1] != tris[:, 2]) & (tris[:, 0] != tris[:, 2])
    tris = tris[keep]
    _, first = np.unique(np.sort(tris, axis=1), axis=0, return_index=True)
    tris = tris[np.sort(first)]
    # renumber clusters that are still used so the mean covers only referenced clusters
    return inverse, tris


def simplify(vertices: np.ndarray, triangles: np.ndarray, max_triangles: int) -> LodMesh:
    """Simplified mesh with at most `max_triangles` triangles (0 or >= len(triangles): unchanged)."""
    vertices = np.asarray(vertices, np.float64)
    triangles = np.asarray(triangles, np.int64)
    n = len(vertices)
    if max_triangles <= 0 or len(triangles) <= max_triangles:
        return LodMesh(np.arange(n), np.ones(n), triangles)
    extent = float(np.ptp(vertices, axis=0).max()) or 1.0
    lo, hi = extent * 1e-4, extent  # lo: (almost) no merging, hi: everything in one cell
    best = None
    for _ in range(18):
        mid = (lo * hi) ** 0.5
        inverse, tris = _cluster(vertices, triangles, mid)
        if len(tris) <= max_triangles:
            best, hi = (inverse, tris), mid
        else:
            lo = mid
    if best is None:
        best = _cluster(vertices, triangles, hi)
    inverse, tris = best
    counts = np.bincount(inverse).astype(np.float64)
    return LodMesh(inverse, counts, tris)
