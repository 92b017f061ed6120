"""Rendering: triangle rasterizer (torch / nvdiffrast), face-region labels of a morphable model, parsing maps.

    frags = rasterize(vertices_cam (B, V, 3), triangles (T, 3), K, height, width)   # raster.py
    regions = face_regions(model)                 # labelled face triangles (regions.py)
    m_beta = render_parsing(frags, regions.triangle_labels)   # (B, H, W) uint8 (parsing.py)
    m_beta = landmark_parsing([lm68, ...], height, width)     # (H, W) uint8 from landmarks
"""
from .parsing import landmark_parsing, render_parsing
from .raster import (
    Fragments,
    interpolate,
    nvdiffrast_available,
    rasterize,
)
from .regions import FaceRegions, face_polygons, face_regions

__all__ = [
    "FaceRegions",
    "Fragments",
    "face_polygons",
    "face_regions",
    "interpolate",
    "landmark_parsing",
    "nvdiffrast_available",
    "rasterize",
    "render_parsing",
]
