#!/usr/bin/env python3
"""Draw the face regions of a morphable model (occface_ros.render.regions) to check them visually.

    python tools/derive_regions.py docs/images/ict_regions.png            # ICT-FaceKit Light
    python tools/derive_regions.py /tmp/bfm_regions.png --model bfm       # BFM, when installed

Renders the labelled face triangles (region colours of occface_ros.core.labels) over the grey
full mesh, in a frontal, a 3/4 (yaw 40 deg), a profile and a from-below (pitch -25 deg) view, with
the 68 landmarks; hole-fill triangles (eyes, mouth) are included. Prints the triangle count per
label. The regions are derived at run time (deterministic, no data file); see docs/occlusion.md,
"Face regions".
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from occface_ros.core.camera import rotation_from_yaw_pitch_roll_deg
from occface_ros.morphable import load_morphable_model
from occface_ros.core.labels import LABEL_COLOURS_BGR, LABELS
from occface_ros.render import face_regions, interpolate, rasterize

VIEWS = ((0.0, 0.0, "frontal"), (40.0, 0.0, "yaw 40"), (80.0, 0.0, "yaw 80"), (0.0, -25.0, "pitch -25"))


def _vertex_normals(verts: torch.Tensor, tris: torch.Tensor) -> torch.Tensor:
    a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    fn = torch.cross(b - a, c - a, dim=1)
    n = torch.zeros_like(verts)
    for k in range(3):
        n.index_add_(0, tris[:, k], fn)
    return torch.nn.functional.normalize(n, dim=1)


def render_view(model, regions, yaw_deg: float, pitch_deg: float, size_px: int = 520) -> np.ndarray:
    """(size, size, 3) BGR image of the labelled mesh seen from (yaw, pitch)."""
    mean = model.mean_m
    lm = mean[model.landmarks68]
    extent = float((lm.max(0).values - lm.min(0).values)[:2].max())
    f = 1000.0
    distance = f * extent * 1.9 / size_px
    R = rotation_from_yaw_pitch_roll_deg(yaw_deg, pitch_deg, 0.0)
    t = torch.tensor([0.0, 0.0, distance]) - R @ lm.mean(0)
    cam = mean @ R.T + t
    K = torch.tensor([[f, 0.0, (size_px - 1) / 2], [0.0, f, (size_px - 1) / 2], [0.0, 0.0, 1.0]])
    # full mesh in grey plus the labelled face part: a face triangle repeats a model triangle at the
    # same depth, and on equal depth the later triangle wins (rasterize's tie rule)
    tris_all = torch.cat([model.triangles, regions.triangles])
    n_model = model.triangles.shape[0]
    pal = torch.tensor([LABEL_COLOURS_BGR[k] for k in range(len(LABEL_COLOURS_BGR))], dtype=torch.float32) / 255
    colour = torch.cat([torch.full((n_model, 3), 0.75), pal[regions.triangle_labels]])
    frags = rasterize(cam[None], tris_all, K, size_px, size_px, backend="torch")
    tid = frags.triangle_id[0]
    normals = _vertex_normals(cam, model.triangles)
    n_px = interpolate(frags, normals, tris_all)[0]
    shade = 0.35 + 0.65 * n_px[..., 2].abs()
    img = colour[tid.clamp_min(0)] * shade.unsqueeze(-1)
    img[tid < 0] = 1.0
    out = np.ascontiguousarray((img.numpy() * 255).astype(np.uint8))
    px = cam[model.landmarks68]
    px = (px[:, :2] / px[:, 2:3] * f + (size_px - 1) / 2).numpy()
    for p in px:
        cv2.circle(out, (round(p[0]), round(p[1])), 2, (0, 0, 0), -1, cv2.LINE_AA)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("output", help="PNG path")
    ap.add_argument("--model", default="ict", help="morphable model name (ict, bfm)")
    ap.add_argument("--model-path", default=None)
    args = ap.parse_args(argv)
    model = load_morphable_model(args.model, args.model_path)
    regions = face_regions(model)
    panels = []
    for yaw, pitch, name in VIEWS:
        img = render_view(model, regions, yaw, pitch)
        cv2.putText(img, name, (10, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
        panels.append(img)
    strip = np.concatenate(panels, 1)
    legend = np.full((40, strip.shape[1], 3), 255, np.uint8)
    x = 10
    for k, name in LABELS.items():
        if k == 0 or not (regions.triangle_labels == k).any():
            continue
        cv2.rectangle(legend, (x, 10), (x + 20, 30), LABEL_COLOURS_BGR[k], -1)
        cv2.putText(legend, name, (x + 26, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        x += 36 + 11 * len(name)
    out = np.concatenate([strip, legend], 0)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.output), out):
        raise SystemExit(f"could not write {args.output}")
    counts = {LABELS[k]: int((regions.triangle_labels == k).sum()) for k in LABELS if (regions.triangle_labels == k).any()}
    print(f"{model.name}: {regions.triangles.shape[0]} face triangles ({regions.num_fill} hole-fill) of "
          f"{model.triangles.shape[0]}; per label: {counts}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
