"""FaceDeoccluder: FISN on each face's crop of a frame, pasted back where the occlusion mask is.

Per face: the tracker's ROI crop of the image, and of M_alpha, M_gamma and the occlusion mask
(nearest), at the generator's size; the generated crop keeps its seen pixels (fisn.composite);
back in the image it replaces only occlusion-mask pixels inside that face's ROI (faces whose ROIs
overlap are averaged by coverage). The generator runs behind a Runner (nets/runners.py, `backend` as
`runtime.backend`: ONNX Runtime ~1.6x faster than eager PyTorch on the CPU)."""
from __future__ import annotations

import torch

from ..core.roi import crop_rois, uncrop_to_image
from ..nets.runners import make_runner
from .fisn import FISNGenerator, PackedFISN, composite


class FaceDeoccluder:
    """Callable stage: image (3, H, W) RGB [0, 1], face ROIs (B, 4), M_alpha, M_gamma (H, W) labels,
    occlusion mask (H, W) bool -> the de-occluded image (3, H, W)."""

    def __init__(self, net: FISNGenerator, backend: str = "eager", max_batch: int = 1, precision: str = "fp32"):
        self.net = net
        self.runner = make_runner(PackedFISN(net), backend, next(net.parameters()).device, max_batch, precision)

    @torch.inference_mode()
    def __call__(self, image: torch.Tensor, rois: torch.Tensor, m_alpha: torch.Tensor, m_gamma: torch.Tensor,
                 occlusion_mask: torch.Tensor) -> torch.Tensor:
        if rois is None or not len(rois) or not bool(occlusion_mask.any()):
            return image
        size = self.net.input_size
        height, width = image.shape[1:]
        crops = crop_rois(image, rois, (size, size))
        maps = torch.stack([m_alpha.float(), m_gamma.float(), occlusion_mask.float()])
        crop_maps = crop_rois(maps, rois, (size, size), mode="nearest")
        hidden = crop_maps[:, 2:3]
        filled = composite(self.runner(torch.cat([crops, crop_maps[:, 2:3], crop_maps[:, 0:2]], 1)), crops, hidden)
        back = uncrop_to_image(torch.cat([filled, torch.ones_like(hidden)], 1), rois, height, width)
        coverage = back[:, 3:4].sum(0)
        rgb = (back[:, :3] * back[:, 3:4]).sum(0) / coverage.clamp_min(1e-6)
        return torch.where(occlusion_mask[None] & (coverage > 0.5), rgb, image)
