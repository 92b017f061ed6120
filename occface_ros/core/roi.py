"""Rotated square regions of interest and batched crops (cv2.warpAffine on the CPU, affine_grid + grid_sample elsewhere).

Pixel convention everywhere: OpenCV's, pixel (i, j) has its centre at x=j, y=i.
An ROI is (cx, cy, size, angle_rad): a square of side `size` pixels centred at (cx, cy),
rotated by `angle` (counter-clockwise on screen is negative, as in MediaPipe's rects).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def roi_affine(rois: torch.Tensor) -> torch.Tensor:
    """(B, 4) ROIs -> (B, 2, 3) maps from unit crop coords q in [0,1]^2 to image pixels."""
    cx, cy, size, angle = rois.unbind(-1)
    cos, sin = torch.cos(angle) * size, torch.sin(angle) * size
    # p = c + size * R(angle) @ (q - 0.5)
    ox = cx - 0.5 * (cos - sin)
    oy = cy - 0.5 * (sin + cos)
    row0 = torch.stack([cos, -sin, ox], -1)
    row1 = torch.stack([sin, cos, oy], -1)
    return torch.stack([row0, row1], 1)


class FrameImage:
    """One camera frame for the cropping stages: the (H, W, 3) uint8 BGR array as given and the
    (3, H, W) float RGB [0, 1] tensor on `device`, made on first use (`tensor`).

    On the CPU `crop_rois` cuts its crops straight from the uint8 array (cv2.warpAffine, ~4x less
    memory traffic), so a tracking frame never converts the whole image: only detection and the
    occlusion reasoning need `tensor`. Stages that take an image tensor take a FrameImage too
    (`shape`, `device`, `dtype`, `new_zeros` as a tensor's).
    """

    def __init__(self, bgr: np.ndarray, device="cpu"):
        if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 BGR image, got {bgr.shape} {bgr.dtype}")
        self.bgr = bgr
        self.device = torch.device(device)
        self.dtype = torch.float32
        self.shape = torch.Size((3, *bgr.shape[:2]))
        self._tensor: torch.Tensor | None = None

    @property
    def tensor(self) -> torch.Tensor:
        if self._tensor is None:
            self._tensor = bgr_to_tensor(self.bgr, self.device)
        return self._tensor

    def new_zeros(self, *size) -> torch.Tensor:
        return torch.zeros(*size, device=self.device, dtype=self.dtype)


def bgr_to_tensor(bgr: np.ndarray, device) -> torch.Tensor:
    """(H, W, 3) uint8 BGR -> (3, H, W) float RGB in [0, 1] on `device`."""
    if torch.device(device).type == "cpu":
        # one pass each for the colour swap and the float conversion (~7x faster than a
        # permute/flip/div chain); the result is a channels-last strided (3, H, W) view
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return torch.from_numpy(rgb).float().mul_(1.0 / 255.0).permute(2, 0, 1)
    t = torch.from_numpy(bgr).to(device, non_blocking=True)
    return t.permute(2, 0, 1).flip(0).float().div_(255.0)


def resize_area(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(3, H, W) float image -> (3, height, width) by area averaging (downscaling). On the CPU
    cv2.INTER_AREA on the channels-last array (~10x faster than F.interpolate's adaptive pooling)
    and the result is channels-last, which `crop_rois` cuts with cv2 too."""
    if _cv2_can_take(image):
        hwc = cv2.resize(np.ascontiguousarray(image.permute(1, 2, 0).numpy()), (width, height),
                         interpolation=cv2.INTER_AREA)
        return torch.from_numpy(hwc.reshape(height, width, -1)).permute(2, 0, 1)
    return F.interpolate(image.unsqueeze(0), size=(height, width), mode="area")[0]


def crop_rois(image, rois: torch.Tensor, out_size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Crop (B, C, h, w) from a (C, H, W) float image (RGB [0, 1]) or a FrameImage, bilinear (or
    `mode="nearest"`: label maps), zero outside the image.

    On the CPU the crops come from cv2.warpAffine, one ROI at a time, from a FrameImage's uint8
    array or from a channels-last float32 tensor: ~0.05 ms per 192x192 crop against ~0.5 ms for
    affine_grid + grid_sample. Same sampling (pixel centres, zero border); OpenCV quantizes the
    sub-pixel position to 1/32 pixel, and a uint8 source rounds to grey levels (both tested
    against the grid_sample path).
    """
    if isinstance(image, FrameImage):
        if image.device.type == "cpu" and mode == "bilinear":
            crops = _warp_rois(image.bgr, rois, out_size)  # (B, h, w, 3) uint8 BGR
            rgb = cv2.cvtColor(crops.reshape(-1, out_size[1], 3), cv2.COLOR_BGR2RGB).reshape(crops.shape)
            return torch.from_numpy(rgb).float().mul_(1.0 / 255.0).permute(0, 3, 1, 2)
        image = image.tensor
    if mode == "bilinear" and _warp_on_cpu(image) and image.shape[0] <= 4:
        return torch.from_numpy(_warp_rois(image.permute(1, 2, 0).numpy(), rois, out_size)).permute(0, 3, 1, 2)
    _, height, width = image.shape
    b = rois.shape[0]
    aff = roi_affine(rois)  # unit crop -> pixels (centre convention)
    # grid_sample (align_corners=False): normalised n = (2 * (x + 0.5)) / W - 1
    to_norm = torch.tensor(
        [[2.0 / width, 0.0, 1.0 / width - 1.0], [0.0, 2.0 / height, 1.0 / height - 1.0]],
        dtype=image.dtype, device=image.device,
    )
    # output normalised o in [-1, 1] -> q = (o + 1) / 2, shifted so crop pixel centres sample correctly
    from_out = torch.tensor([[0.5, 0.0, 0.5], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]], dtype=image.dtype, device=image.device)
    aff3 = torch.cat([aff, torch.tensor([0.0, 0.0, 1.0], dtype=image.dtype, device=image.device).expand(b, 1, 3)], 1)
    theta = to_norm @ aff3 @ from_out
    grid = F.affine_grid(theta, [b, 3, out_size[0], out_size[1]], align_corners=False)
    return F.grid_sample(image.unsqueeze(0).expand(b, -1, -1, -1), grid, mode=mode,
                         padding_mode="zeros", align_corners=False)


def uncrop_to_image(maps: torch.Tensor, rois: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of crop_rois: (B, C, h, w) maps on ROI crops -> (B, C, H, W) in the image (0 outside),
    bilinear. On the CPU cv2.warpAffine per ROI (channels-last result; ~5x faster than grid_sample,
    sub-pixel positions quantized to 1/32 pixel as in crop_rois)."""
    b = maps.shape[0]
    if _cv2_can_take(maps) and maps.shape[1] <= 4:
        return torch.from_numpy(_unwarp_rois(maps.permute(0, 2, 3, 1).numpy(), rois, height, width)).permute(0, 3, 1, 2)
    aff = roi_affine(rois)  # unit crop -> pixels
    a, t = aff[:, :, :2], aff[:, :, 2]
    inv = torch.linalg.inv(a)  # pixels -> unit crop
    ys, xs = torch.meshgrid(torch.arange(height, device=maps.device, dtype=maps.dtype),
                            torch.arange(width, device=maps.device, dtype=maps.dtype), indexing="ij")
    pix = torch.stack([xs, ys], -1).view(1, -1, 2) - t.view(b, 1, 2)
    q = pix @ inv.transpose(1, 2)  # (B, HW, 2) in [0, 1] inside the ROI
    grid = (q * 2 - 1).view(b, height, width, 2)  # crop pixel centres at (k + 0.5) / s (align_corners=False)
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _cv2_can_take(t: torch.Tensor) -> bool:
    """A CPU float32 tensor outside autograd, tracing and compiling: its numpy view can go to cv2."""
    return (t.device.type == "cpu" and t.dtype == torch.float32 and not t.requires_grad
            and not torch.jit.is_tracing() and not torch.compiler.is_compiling())


def _warp_on_cpu(image: torch.Tensor) -> bool:
    return _cv2_can_take(image) and image.permute(1, 2, 0).is_contiguous()


def _warp_rois(hwc: np.ndarray, rois: torch.Tensor, out_size: tuple[int, int]) -> np.ndarray:
    """(B, h, w, C) crops of an (H, W, C) array (its dtype), cv2.warpAffine per ROI."""
    h, w = out_size
    aff = roi_affine(rois).double().cpu().numpy()  # unit crop -> pixels
    out = np.empty((rois.shape[0], h, w, hwc.shape[2]), hwc.dtype)
    for i, a in enumerate(aff):
        # crop pixel (x, y) -> unit q = ((x + 0.5) / w, (y + 0.5) / h) -> image pixels: a @ [q, 1]
        m = np.empty((2, 3))
        m[:, 0] = a[:, 0] / w
        m[:, 1] = a[:, 1] / h
        m[:, 2] = a[:, 0] * (0.5 / w) + a[:, 1] * (0.5 / h) + a[:, 2]
        cv2.warpAffine(hwc, m, (w, h), dst=out[i], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out


def _unwarp_rois(crops_hwc: np.ndarray, rois: torch.Tensor, height: int, width: int) -> np.ndarray:
    """(B, H, W, C) image-sized arrays of (B, h, w, C) crops put back where `rois` cut them (0 elsewhere)."""
    b, h, w, c = crops_hwc.shape
    aff = roi_affine(rois).double().cpu().numpy()  # unit crop -> pixels: a @ q + t
    inv, t = np.linalg.inv(aff[:, :, :2]), aff[:, :, 2]
    out = np.empty((b, height, width, c), crops_hwc.dtype)
    for i in range(b):
        # image pixel p -> unit q = inv @ (p - t) -> crop pixel (q_x w - 0.5, q_y h - 0.5)
        m = inv[i] * np.array([[w], [h]])
        m = np.concatenate([m, (-(m @ t[i]) - 0.5)[:, None]], 1)
        out[i] = cv2.warpAffine(np.ascontiguousarray(crops_hwc[i]), m, (width, height),
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=0).reshape(height, width, c)
    return out


def crop_to_image(points: torch.Tensor, rois: torch.Tensor, crop_size: tuple[int, int]) -> torch.Tensor:
    """Map (B, N, 2+) points in crop pixels (0..w, as the networks output them) to image pixels.

    A trailing z (crop pixel units) is scaled to image pixels.
    """
    h, w = crop_size
    aff = roi_affine(rois)
    q = torch.stack([points[..., 0] / w, points[..., 1] / h], -1)
    xy = q @ aff[:, :, :2].transpose(1, 2) + aff[:, :, 2].unsqueeze(1)
    if points.shape[-1] > 2:
        z = points[..., 2:] * (rois[:, 2] / w).view(-1, 1, 1)
        return torch.cat([xy, z], -1)
    return xy


def roi_from_points(
    points: torch.Tensor, left_idx: int, right_idx: int, scale: float, shift_y: float = 0.0,
    angle: torch.Tensor | None = None,
) -> torch.Tensor:
    """ROIs (B, 4) around (B, N, 2) points, rotated so the line left->right is horizontal.

    As MediaPipe's DetectionsToRects + RectTransformation: the box is taken in the rotated frame,
    shifted down by `shift_y` times its height (MediaPipe's shift_y), made square on its long side
    and scaled by `scale`. `angle` (B,) radians, when given, replaces the left->right rotation.
    """
    if angle is None:
        delta = points[:, right_idx] - points[:, left_idx]
        angle = torch.atan2(delta[:, 1], delta[:, 0])
    centre0 = 0.5 * (points.amin(1) + points.amax(1))
    cos, sin = torch.cos(angle), torch.sin(angle)
    rel = points - centre0.unsqueeze(1)
    # rotate into the face-aligned frame (by -angle)
    u = rel[..., 0] * cos.unsqueeze(1) + rel[..., 1] * sin.unsqueeze(1)
    v = -rel[..., 0] * sin.unsqueeze(1) + rel[..., 1] * cos.unsqueeze(1)
    umin, umax, vmin, vmax = u.amin(1), u.amax(1), v.amin(1), v.amax(1)
    size = torch.maximum(umax - umin, vmax - vmin) * scale
    cu, cv = 0.5 * (umin + umax), 0.5 * (vmin + vmax) + shift_y * (vmax - vmin)
    cx = centre0[:, 0] + cu * cos - cv * sin
    cy = centre0[:, 1] + cu * sin + cv * cos
    return torch.stack([cx, cy, size, angle], -1)


def roi_corners(rois: torch.Tensor) -> torch.Tensor:
    """(B, 4, 2) corners of the rotated squares in image pixels."""
    unit = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=rois.dtype, device=rois.device)
    aff = roi_affine(rois)
    return unit @ aff[:, :, :2].transpose(1, 2) + aff[:, :, 2].unsqueeze(1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix (Na, Nb) of axis-aligned boxes x0, y0, x1, y1."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def rois_to_boxes(rois: torch.Tensor) -> torch.Tensor:
    """Axis-aligned bounding boxes (B, 4) of rotated ROIs."""
    c = roi_corners(rois)
    return torch.cat([c.amin(1), c.amax(1)], -1)
