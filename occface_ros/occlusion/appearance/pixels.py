"""The pixels the appearance evidence judges: every face's rendered face-region pixels, flattened."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...core import labels as labels_mod

__all__ = ["NUM_LABELS", "FacePixels", "gather_face_pixels"]

NUM_LABELS = max(labels_mod.LABELS) + 1


@dataclass
class FacePixels:
    """Per-pixel inputs of the evidence for N judged pixels (one row per pixel of one face)."""

    num_faces: int
    pixel: torch.Tensor  # (N,) int64 flat index in the (H, W) frame
    face: torch.Tensor  # (N,) int64 face in [0, num_faces)
    labels: torch.Tensor  # (N,) int64 rendered parsing label (M_beta) in [0, NUM_LABELS)
    normals: torch.Tensor  # (N, 3) unit camera-frame normals
    uv: torch.Tensor  # (N, 2) texture coordinates
    view_cosine: torch.Tensor  # (N,)
    rgb: torch.Tensor  # (N, 3) image colour in [0, 1]
    log_rgb: torch.Tensor  # (N, 3) log(rgb + log_epsilon)
    noise: torch.Tensor  # (N, 3) image-noise std of the (luminance, red-green, yellow-blue) log residual
    usable: torch.Tensor  # (N,) bool: no other face nearer and not prior-occluded (takes part in statistics)


def gather_face_pixels(image: torch.Tensor, fragments, normals: torch.Tensor, uv: torch.Tensor,
                       labels: torch.Tensor, num_faces: int, prior_occluded: torch.Tensor | None,
                       view_cosine: torch.Tensor | None, log_epsilon: float,
                       pixel_noise: float) -> FacePixels | None:
    """The face-label pixels of rasterized faces (arguments as `AppearanceEvidence.__call__`); None when
    there are none. The noise of a log residual is pixel_noise / (colour + log_epsilon): dark pixels
    are noisy in log space (luminance: the mean channel; chroma: the darkest channel)."""
    device = image.device
    tid = fragments.triangle_id
    R, H, W = tid.shape
    lab = labels.to(device).long()
    domain = (tid >= 0) & labels_mod.label_mask(lab, labels_mod.FACE_LABELS)
    idx = torch.nonzero(domain.reshape(-1)).squeeze(1)
    if idx.numel() == 0:
        return None
    pix = idx % (H * W)
    face = fragments.face_index.reshape(-1)[idx].clamp(0, num_faces - 1)
    if R > 1:
        nearest = fragments.depth.amin(0, keepdim=True)
        hidden = (fragments.depth > nearest + 1e-4).reshape(-1)[idx]
    else:
        hidden = torch.zeros_like(idx, dtype=torch.bool)
    lab_i = lab.reshape(-1)[idx]
    n_i = F.normalize(normals.reshape(-1, 3)[idx].float(), dim=-1, eps=1e-12)
    uv_i = uv.reshape(-1, 2)[idx].float()
    cos_i = view_cosine.reshape(-1)[idx].float() if view_cosine is not None else (-n_i[:, 2]).abs()
    rgb = image.reshape(3, -1)[:, pix].T.float().clamp(0, 1)
    prior_i = (prior_occluded.to(device).reshape(-1)[pix].bool() if prior_occluded is not None
               else torch.zeros_like(hidden))
    eps = log_epsilon
    noise_lum = pixel_noise / (rgb.mean(1) + eps)
    noise_chroma = pixel_noise / (rgb.amin(1) + eps)
    return FacePixels(
        num_faces=num_faces, pixel=pix, face=face, labels=lab_i, normals=n_i, uv=uv_i, view_cosine=cos_i, rgb=rgb,
        log_rgb=torch.log(rgb + eps), noise=torch.stack((noise_lum, noise_chroma, noise_chroma), 1),
        usable=~hidden & ~prior_i)
