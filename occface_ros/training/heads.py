"""Rendered heads for the sample engine: exact labels over a wider pose range than the photos have.

The ICT model with identity drawn around a `train` photo's fitted identity, expression blendshapes
and pose drawn from broad priors, a perspective camera of random focal length, textured from that
photo (render/texture.py: the photo projected into the UV layout), lit by 9-coefficient spherical
harmonics per colour channel, over a background cut from a `train` photo away from its faces (or a
procedural one). Labels are exact: the 468 FaceMesh points are the ICT surface points matched to
them (landmarks/correspondence.py), projected; a point is self-hidden when the z-buffer is nearer;
the parsing map is the mesh's region label per pixel (render/texture.py).

    renderer = HeadRenderer.from_faces(pipeline, train_faces, count=40)
    head = renderer.render(rng, background)     # a RenderedHead: image, ROI, labels
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..landmarks.correspondence import ict_points_from_mp468, load_correspondences
from ..landmarks.facemesh import MP_LEFT_EYE_OUTER, MP_RIGHT_EYE_OUTER
from ..render import interpolate, rasterize, render_parsing
from ..render.texture import VISIBILITY_TOLERANCE_M, build_texture, render_mesh, sample_bilinear, uv_to_texel, vertex_normals

RENDER_SIZE = 256  # the rendered image; the engine then crops it like a photo
ROI_FRACTION = 0.7  # the tracker's ROI side / RENDER_SIZE, before the engine's jitter
TEXTURE_SIZE = 256
INVALID_LABEL_WEIGHT = 0.5  # FaceMesh points whose ICT match is looser than 0.3 cm


@dataclass
class HeadTexture:
    texture_bgr: np.ndarray  # (S, tiles*S, 3) uint8
    identity: np.ndarray  # (K,) float32, the photo's fitted identity
    photo_id: str


@dataclass
class RenderedHead:
    image_bgr: np.ndarray  # (RENDER_SIZE, RENDER_SIZE, 3) uint8
    roi: np.ndarray  # (4,) cx, cy, side, angle as the tracker would take it from the landmarks
    landmarks468: np.ndarray  # (468, 3) float32 pixels; z in pixels, negative towards the camera
    self_visible468: np.ndarray  # (468,) bool, not hidden by the head itself
    label_weight468: np.ndarray  # (468,) float32
    parsing: np.ndarray  # (RENDER_SIZE, RENDER_SIZE) uint8 labels of core/labels.py (exact, amodal)


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """Real spherical harmonics up to band 2 of unit normals (..., 3) -> (..., 9)."""
    x, y, z = normals.unbind(-1)
    one = torch.ones_like(x)
    return torch.stack([0.282095 * one, 0.488603 * y, 0.488603 * z, 0.488603 * x, 1.092548 * x * y,
                        1.092548 * y * z, 0.315392 * (3 * z * z - 1), 1.092548 * x * z, 0.546274 * (x * x - y * y)], -1)


def random_sh(rng: np.random.Generator) -> np.ndarray:
    """(9, 3) SH coefficients: a tinted ambient term, one main light from the camera's side of the
    face, small second-band terms."""
    tint = rng.uniform(0.85, 1.15, 3)
    c = np.zeros((9, 3))
    c[0] = rng.uniform(0.7, 1.1) / 0.282095 * tint
    d = rng.normal(size=3)
    d[2] = -abs(d[2]) - 0.5  # towards the camera (camera looks along +z)
    d /= np.linalg.norm(d)
    c[[3, 1, 2], :] = (d * rng.uniform(0.2, 0.8) / 0.488603)[:, None] * tint
    c[4:] = rng.normal(0.0, 0.15, (5, 3))
    return c


class HeadRenderer:
    """Renders random heads (see the module docstring); a pure function of the rng it is given."""

    def __init__(self, model, textures: list[HeadTexture], roi_scale: float = 1.5):
        if not textures:
            raise ValueError("the head renderer needs at least one texture")
        self.model = model.to("cpu")
        self.mesh = render_mesh(self.model, torch.device("cpu"))
        self.textures = textures
        self.roi_scale = roi_scale
        self.corr = load_correspondences()
        self.label_weight468 = np.where(self.corr.mp_to_ict_valid.numpy(), 1.0, INVALID_LABEL_WEIGHT).astype(np.float32)
        self._tex = [torch.from_numpy(t.texture_bgr).permute(2, 0, 1).float() for t in textures]
        self._texel_corners = None
        self._expr_index = {n: i for i, n in enumerate(self.model.expression_names)}

    @classmethod
    def from_faces(cls, pipeline, faces, count: int = 40, progress: bool = True) -> HeadRenderer:
        """Textures from up to `count` distinct photos of `faces` (TeacherFace; `train` photos only)."""
        from tqdm import tqdm

        seen, photos = set(), []
        for f in faces:
            if f.photo_id not in seen:
                seen.add(f.photo_id)
                photos.append(f)
        photos = photos[:count]
        mesh = render_mesh(pipeline.model, pipeline.device)
        textures = []
        for f in tqdm(photos, desc="head textures", unit="photo", disable=not progress):
            try:
                tex, _valid, fitted = build_texture(pipeline, f.image_bgr, mesh, TEXTURE_SIZE)
            except RuntimeError:  # no face fitted on this photo: it gives no texture
                continue
            textures.append(HeadTexture(tex, np.asarray(fitted.identity, np.float32), f.photo_id))
        return cls(pipeline.model, textures, float(pipeline.config["landmarks"]["roi_scale"]))

    def _expression(self, rng: np.random.Generator) -> np.ndarray:
        e = np.zeros(self.model.num_expression, np.float32)
        active = rng.random(len(e)) < 0.12
        e[active] = rng.uniform(0.0, 0.7, int(active.sum()))
        names = self._expr_index
        if rng.random() < 0.5 and "jawOpen" in names:
            e[names["jawOpen"]] = rng.uniform(0.0, 0.8)
        if rng.random() < 0.15:
            v = rng.uniform(0.5, 1.0)
            for side in ("L", "R"):
                if f"eyeBlink_{side}" in names:
                    e[names[f"eyeBlink_{side}"]] = v
        return e

    @torch.inference_mode()
    def render(self, rng: np.random.Generator, background_bgr: np.ndarray | None = None,
               pose_deg: tuple[float, float, float] | None = None) -> RenderedHead:
        """One head; `pose_deg` (yaw, pitch, roll) replaces the drawn pose (the draws still happen,
        so the rest of the head is the same)."""
        from ..core.camera import rotation_from_yaw_pitch_roll_deg
        from ..core.roi import roi_from_points

        size = RENDER_SIZE
        k = int(rng.integers(len(self.textures)))
        identity = self.textures[k].identity + rng.normal(0.0, 0.5, self.textures[k].identity.shape)
        expression = self._expression(rng)
        verts = self.model.vertices(torch.as_tensor(identity, dtype=torch.float32)[None],
                                    torch.as_tensor(expression)[None])[0]
        yaw = float(np.clip(rng.normal(0, 30), -75, 75))
        pitch = float(np.clip(rng.normal(0, 12), -35, 35))
        roll = float(rng.normal(0, 10))
        if pose_deg is not None:
            yaw, pitch, roll = (float(v) for v in pose_deg)
        rot = rotation_from_yaw_pitch_roll_deg(np.array([yaw]), np.array([pitch]), np.array([roll]))[0]
        pts_model = ict_points_from_mp468(verts[None], self.corr)[0]
        centre = pts_model.mean(0)
        extent_m = float((pts_model.amax(0) - pts_model.amin(0))[:2].max())
        focal = size * rng.uniform(0.8, 3.0)
        z_m = focal * extent_m * self.roi_scale / (ROI_FRACTION * size)
        trans = torch.tensor([0.0, 0.0, z_m]) - centre @ rot.T
        verts_cam = verts @ rot.T + trans
        K = torch.tensor([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]])
        frag = rasterize(verts_cam[None], self.mesh.triangles, K, size, size, backend="torch")
        covered = frag.triangle_id[0] >= 0
        if self._texel_corners is None:
            self._texel_corners = uv_to_texel(self.mesh.uv, TEXTURE_SIZE)[self.mesh.triangle_uv]
        uv_px = interpolate(frag, self._texel_corners, self.mesh.triangle_uv)[0]
        normals = interpolate(frag, vertex_normals(verts_cam, self.mesh.triangles), self.mesh.triangles)[0]
        normals = normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        shade = (sh_basis(normals) @ torch.as_tensor(random_sh(rng), dtype=torch.float32)).clamp(0.1, 2.0)
        colour = (sample_bilinear(self._tex[k], uv_px) * shade).clamp(0, 255).numpy()
        if background_bgr is None:
            low = rng.uniform(0, 255, (4, 4, 3)).astype(np.float32)
            background_bgr = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
        image = np.where(covered.numpy()[..., None], colour, background_bgr.astype(np.float32))
        image = np.clip(image + 0.5, 0, 255).astype(np.uint8)

        pts_cam = ict_points_from_mp468(verts_cam[None], self.corr)[0]
        xy = pts_cam[:, :2] / pts_cam[:, 2:3] * focal + size / 2
        z_px = (pts_cam[:, 2] - z_m) * focal / z_m
        landmarks = torch.cat([xy, z_px[:, None]], 1).numpy().astype(np.float32)
        ix = xy[:, 0].round().long().clamp(0, size - 1)
        iy = xy[:, 1].round().long().clamp(0, size - 1)
        self_visible = (pts_cam[:, 2] <= frag.depth[0][iy, ix] + VISIBILITY_TOLERANCE_M).numpy()
        roi = roi_from_points(xy[None].double(), MP_RIGHT_EYE_OUTER, MP_LEFT_EYE_OUTER, self.roi_scale)[0]
        parsing = render_parsing(frag, self.mesh.triangle_labels)[0].numpy()
        return RenderedHead(image, roi.numpy(), landmarks, self_visible, self.label_weight468.copy(), parsing)

