"""A track's albedo texture in the model's UV layout, learned from confidently visible pixels (video)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["TrackTexture"]


class TrackTexture:
    """A track's albedo in the model's UV layout: (C, S, S) texels + (S, S) confidence.

    UV convention: u right, v up, [0, 1]^2 (ICT's face occupies UDIM tile 0); texel row 0 is
    v = 1, so `albedo` displays upright. `sample` is bilinear (grid_sample) and normalised by the
    confidence, so texels never seen do not darken their neighbours. `update` splats samples
    bilinearly (scatter-add), takes the per-texel weighted mean of this frame and blends it into
    the texture as a confidence-weighted running mean whose confidence saturates at
    `max_confidence` (then it is an EMA with rate w / (max_confidence + w)).
    """

    def __init__(self, size: int, max_confidence: float, scale_rate: float, channels: int = 3,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        """size, max_confidence, scale_rate: `AppearanceConfig.texture_size`, `texture_max_confidence`,
        `texture_scale_rate` (`AppearanceEvidence.new_texture` passes them)."""
        self.size = int(size)
        self.max_confidence = float(max_confidence)
        self.scale_rate = float(scale_rate)
        self.albedo = torch.zeros(channels, self.size, self.size, device=device, dtype=dtype)
        self.confidence = torch.zeros(self.size, self.size, device=device, dtype=dtype)
        self.frames = 0
        self.residual_scale: torch.Tensor | None = None  # (3,) robust log-residual scale of visible pixels

    def update_residual_scale(self, scale: torch.Tensor) -> None:
        """EMA (rate `scale_rate`) of the track's robust residual scale (3,) (luminance, red-green,
        yellow-blue log residuals of visible pixels against this texture)."""
        scale = scale.detach().to(self.albedo.device)
        if self.residual_scale is None:
            self.residual_scale = scale.clone()
        else:
            self.residual_scale = (1 - self.scale_rate) * self.residual_scale + self.scale_rate * scale

    @property
    def device(self) -> torch.device:
        return self.albedo.device

    def _grid(self, uv: torch.Tensor) -> torch.Tensor:
        return torch.stack((uv[..., 0] * 2.0 - 1.0, 1.0 - uv[..., 1] * 2.0), -1)

    def sample(self, uv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uv (..., 2) -> (albedo (..., C), confidence (...)); confidence 0 where nothing was learned."""
        shape = uv.shape[:-1]
        grid = self._grid(uv.reshape(1, -1, 1, 2).to(self.albedo.dtype))
        stacked = torch.cat([self.albedo * self.confidence, self.confidence.unsqueeze(0)], 0).unsqueeze(0)
        s = F.grid_sample(stacked, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0, :, :, 0]
        conf = s[-1]
        albedo = s[:-1] / conf.clamp_min(1e-6)
        return albedo.T.reshape(*shape, -1), conf.reshape(shape)

    def update(self, uv: torch.Tensor, albedo: torch.Tensor, weights: torch.Tensor) -> None:
        """Blend samples uv (N, 2), albedo (N, C), weights (N,) >= 0 into the texture (see class doc)."""
        s = self.size
        uv = uv.to(self.albedo.dtype)
        inside = (uv >= 0).all(-1) & (uv <= 1).all(-1) & (weights > 0)
        uv, albedo, weights = uv[inside], albedo[inside].to(self.albedo.dtype), weights[inside].to(self.albedo.dtype)
        c = self.albedo.shape[0]
        px = uv[:, 0] * s - 0.5  # continuous texel coordinates (texel centres at integers)
        py = (1.0 - uv[:, 1]) * s - 0.5
        x0, y0 = torch.floor(px), torch.floor(py)
        fx, fy = px - x0, py - y0
        acc = torch.zeros(c + 1, s * s, dtype=self.albedo.dtype, device=self.device)
        payload = torch.cat([albedo * weights.unsqueeze(1), weights.unsqueeze(1)], 1).T  # (C+1, N)
        for dx, dy, wk in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            xi, yi = (x0 + dx).long(), (y0 + dy).long()
            ok = (xi >= 0) & (xi < s) & (yi >= 0) & (yi < s)
            idx = (yi * s + xi).clamp(0, s * s - 1)
            acc.index_add_(1, idx, payload * (wk * ok).unsqueeze(0))
        w_new = acc[-1].view(s, s)
        mean_new = acc[:-1].view(c, s, s) / w_new.clamp_min(1e-8)
        conf = self.confidence
        total = conf + w_new
        blended = (self.albedo * conf + mean_new * w_new) / total.clamp_min(1e-8)
        self.albedo = torch.where(w_new > 0, blended, self.albedo)
        self.confidence = total.clamp_max(self.max_confidence)
        self.frames += 1
