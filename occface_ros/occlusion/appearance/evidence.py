"""Appearance evidence, the stage: is a pixel of the rendered face explained by the face's appearance model?

The idea (FOCUS): the face model cannot explain an occluder. For every pixel that a fitted face
mesh covers we compare the image with what the face should look like there and turn the residual
into a likelihood in [0, 1] (1 = explained by the face model, i.e. visible face; 0 = occluder).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .cold_start import cold_start_z
from .config import AppearanceConfig
from .lighting import shade
from .pixels import gather_face_pixels
from .spatial import coherent_likelihood
from .texture import TrackTexture
from .texture_residual import texture_z

__all__ = ["AppearanceEvidence", "AppearanceResult"]


@dataclass
class AppearanceResult:
    """Output of `AppearanceEvidence` for F faces of one (H, W) frame."""

    # (F, H, W) float32 in [0, 1]: 1 = the face's appearance explains the pixel; 0 outside face_pixels
    face_likelihood: torch.Tensor
    # (F, H, W) bool: the pixels judged (face f's rendered face labels, whether or not another face is nearer)
    face_pixels: torch.Tensor
    lighting: torch.Tensor  # (F, 9, 3) SH lighting used for the face (eq. 11)
    textures: list  # per face: the updated TrackTexture (or None when not learning)
    used_texture: torch.Tensor  # (F,) bool: the face had a learned texture (video) this frame


class AppearanceEvidence:
    """Per-pixel evidence that a face's appearance model explains the image (a callable stage).

    For each face f and each pixel i of f's rendered face region (M_beta labels in FACE_LABELS) the
    image colour is compared with the colour the face model expects there, in log space:
    d_i = log(rgb_i + eps) - log(expected_i + eps), rotated to opponent components (luminance,
    red-green, yellow-blue; `_opponent`). The residual relative to the face's reference pixels is
    turned into a robust Mahalanobis distance z (`statistics.robust_mahalanobis`: covariance of the reference
    residuals, separately for darker / brighter than expected, diagonal floored, plus the image noise
    of dark pixels pixel_noise / (rgb + eps)), and

        likelihood = sigmoid((threshold_z - z) / softness_z)       (0.5 at z = threshold_z = 3.5)

    Cold start (no texture yet: a single image, a new track), from this frame alone:
    1. Skin reference. Candidate skin colours are the medians of the skin/nose pixels in each cell of
       a `seed_cells` x `seed_cells` UV grid. A candidate's score = (its skin-chroma prior) x (sum over
       skin pixels of a kernel around it (`seed_chroma_log`, `seed_luminance_log`) x the pixel's
       skin-chroma prior); the prior (colour faces only) is 1 inside `skin_chroma_box` (skin is
       red > green > blue: blue, green, white, grey and black occluders are outside) with a Gaussian
       margin `skin_prior_width_log`, times a penalty for seeds more than `seed_dark_log` darker
       than the brightest seed. So an occluder that covers more skin than is visible does not become
       "skin" unless it is skin-coloured.
    2. Shading. SH lighting (eq. 11, albedo 1) is fitted (IRLS) to the skin pixels near the reference,
       then `shading_passes` times to the skin pixels it explains (Cauchy weights of their z, width
       `membership_z`, cut at `membership_cut_z`): expected_i = shading(n_i) models the smooth shading.
    3. Skin and nose pixels: z of the residual relative to the reference pixels' median. Darker than
       expected is forgiven: the luminance residual is divided by `shadow_tolerance`
       (`shadow_tolerance_gray` for grayscale faces, where luminance is the only cue) and a chroma shift
       along the skin's own chroma of up to `shadow_saturation` x the darkening is removed (folds,
       eye sockets and nostrils are darker AND more saturated); brighter by `highlight_tolerance`.
    4. Features (brows, eyes, lips, inner mouth). Each region's median residual relative to skin is
       plausible when it lies in the region's box (`lips_box`, `brows_box`, `eyes_box`, `mouth_box`:
       (luminance, red-green, yellow-blue) ranges relative to skin: lips redder / darker, brows darker,
       eyes darker and bluer). A pixel's z is its distance outside the box (in units of
       `box_softness_log`); in a plausible region it is the smaller of that and its distance to the
       region's own median in the region's own robust scale (floors `feature_*_floor`). A blue, white
       or black mask that covers the whole mouth makes the lips' median implausible, so its pixels
       stay flagged.
    Video (the track has a TrackTexture): expected_i = albedo(uv_i) * shading(n_i) with SH lighting
    fitted (IRLS) to the texture-confident pixels that the cold model explains; once the track knows
    its residual scale (learned on earlier frames) the lighting is refitted to all texture-confident
    pixels within `texture_inlier_z` and z uses that scale (an occluder cannot inflate it). The texture
    z and the cold z are blended by the sampled texture confidence (texture only from
    `texture_full_confidence`).
    Spatial coherence (per face, on its bounding box): the logit is box-filtered inside the face
    region (radius `smooth_radius` x face size, face size = sqrt(face pixels)); the occluded mask
    (likelihood < 0.5) is closed with a disk of radius `closing_radius` x face size, and feature pixels
    (eyes, brows, lips, inner mouth) that the closing adds get likelihood `closed_likelihood` (the eyes
    behind sunglasses, whose dark colour is plausible for an eye, the mouth inside a mask).
    Pixels where another face is nearer and `prior_occluded` pixels (hands) get likelihood 0 and take
    no part in any statistic. Textures learn only pixels with likelihood > `learn_threshold`, not
    prior-occluded, view cosine > `learn_min_view_cosine`: albedo = rgb / shading, weight =
    likelihood x view cosine^2.
    Known limits: a skin-coloured occluder (a hand, a beige cup) is not separable by colour in a
    single image (use `prior_occluded` for hands; in video its shading/texture differs); in grayscale
    images only luminance separates, so white or grey occluders are missed there; facial hair, hair
    and glasses frames over the face region are flagged (they are not skin).
    """

    def __init__(self, config: AppearanceConfig | dict | None = None):
        """config: an AppearanceConfig, a complete dict of its fields, or None (config/occface.yaml's values)."""
        if config is None:
            config = AppearanceConfig.defaults()
        self.config = config if isinstance(config, AppearanceConfig) else AppearanceConfig.from_dict(config)

    def new_texture(self, device) -> TrackTexture:
        c = self.config
        return TrackTexture(c.texture_size, c.texture_max_confidence, c.texture_scale_rate, device=device)

    @torch.no_grad()
    def __call__(
        self,
        image: torch.Tensor,
        fragments,
        normals: torch.Tensor,
        uv: torch.Tensor,
        labels: torch.Tensor,
        textures: list | None = None,
        prior_occluded: torch.Tensor | None = None,
        view_cosine: torch.Tensor | None = None,
        update_textures: bool = True,
    ) -> AppearanceResult:
        """image (3, H, W) RGB [0, 1]; fragments of batch R (R faces, or 1 with merge_faces);
        normals (R, H, W, 3), uv (R, H, W, 2), view_cosine (R, H, W) from `surface_attributes`;
        labels (R, H, W) uint8 rendered parsing (M_beta); textures: one entry per face (TrackTexture
        or None; its length is the number of faces F); prior_occluded (H, W) bool.
        """
        cfg = self.config
        device = image.device
        tid = fragments.triangle_id
        _, H, W = tid.shape
        if textures is None:
            num_faces = int(fragments.face_index.max().item()) + 1 if bool((tid >= 0).any()) else 0
            textures = [None] * num_faces
        textures = list(textures)
        num_faces = len(textures)
        likelihood = torch.zeros(num_faces, H * W, device=device)
        face_pixels = torch.zeros(num_faces, H * W, dtype=torch.bool, device=device)
        lighting = torch.zeros(num_faces, 9, 3, device=device)
        used_texture = torch.zeros(num_faces, dtype=torch.bool, device=device)

        px = (gather_face_pixels(image, fragments, normals, uv, labels, num_faces, prior_occluded, view_cosine,
                                 cfg.log_epsilon, cfg.pixel_noise) if num_faces else None)
        if px is None:
            return _result(likelihood, face_pixels, lighting, textures, used_texture, H, W)
        face, usable = px.face, px.usable

        z_cold, gamma_cold = cold_start_z(px, cfg)
        z = z_cold
        gamma_face = gamma_cold
        have = [t is not None and t.frames > 0 for t in textures]
        rel_tex = None
        if any(have):
            z_tex, gamma_tex, tex_alpha, rel_tex = texture_z(px, textures, have, z_cold, cfg)
            z = tex_alpha * z_tex + (1.0 - tex_alpha) * z_cold
            have_t = torch.tensor(have, device=device)
            gamma_face = torch.where(have_t.view(-1, 1, 1), gamma_tex, gamma_cold)
            used_texture = have_t
        logit = ((cfg.threshold_z - z) / cfg.softness_z).clamp(-8.0, 8.0)
        logit = torch.where(usable, logit, torch.full_like(logit, -8.0))
        p = coherent_likelihood(logit, px, W, cfg)
        p = torch.where(usable, p, torch.zeros_like(p))
        likelihood[face, px.pixel] = p
        face_pixels[face, px.pixel] = True
        lighting = gamma_face

        if update_textures:
            self._learn(px, p, gamma_face, textures, have, rel_tex)
        return _result(likelihood, face_pixels, lighting, textures, used_texture, H, W)

    def _learn(self, px, p, gamma_face, textures, have, rel_tex) -> None:
        """Blend the confidently visible pixels into each face's texture (new textures where None)."""
        cfg = self.config
        face, cos_i = px.face, px.view_cosine
        expected = shade(px.normals, gamma_face[face]).clamp_min(1e-3)
        learn = px.usable & (p > cfg.learn_threshold) & (cos_i > cfg.learn_min_view_cosine)
        albedo = (px.rgb / expected).clamp(0.0, 4.0)
        for f in range(px.num_faces):
            sel = learn & (face == f)
            if textures[f] is None:
                textures[f] = self.new_texture(px.rgb.device)
            if bool(sel.any()):
                if have[f]:  # the track's residual scale against its texture, before this update
                    scale = (rel_tex[sel].abs().median(0).values * 1.4826)
                    textures[f].update_residual_scale(scale)
                textures[f].update(px.uv[sel], albedo[sel], (p[sel] * cos_i[sel] ** 2))


def _result(likelihood, face_pixels, lighting, textures, used_texture, H, W) -> AppearanceResult:
    n = likelihood.shape[0]
    return AppearanceResult(likelihood.view(n, H, W), face_pixels.view(n, H, W), lighting, textures, used_texture)
