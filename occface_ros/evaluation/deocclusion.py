"""De-occlusion figures: PSNR and SSIM on the hidden pixels only, and OpenCV's inpainting
(Telea) on the same mask as the baseline every learned result is compared with.

PSNR: 10 log10(255^2 / MSE) over the masked pixels, all three channels. SSIM (Wang et al. 2004):
the usual map (Gaussian window sigma 1.5, K1 0.01, K2 0.03, on each channel) averaged over the
masked pixels; the window reads the pixels around the hole too, as a viewer does."""
from __future__ import annotations

import cv2
import numpy as np

INPAINT_RADIUS_PX = 3


def inpaint_baseline(image_bgr: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """cv2.inpaint (Telea) of the masked pixels."""
    return cv2.inpaint(image_bgr, mask.astype(np.uint8) * 255, INPAINT_RADIUS_PX, cv2.INPAINT_TELEA)


def masked_psnr_db(reference_bgr: np.ndarray, output_bgr: np.ndarray, mask: np.ndarray) -> float:
    m = mask.astype(bool)
    if not m.any():
        return float("nan")
    diff = reference_bgr[m].astype(np.float64) - output_bgr[m].astype(np.float64)
    mse = float(np.mean(diff ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


def ssim_map(reference_bgr: np.ndarray, output_bgr: np.ndarray) -> np.ndarray:
    """(H, W) SSIM, the mean over channels."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x, y = reference_bgr.astype(np.float64), output_bgr.astype(np.float64)

    def blur(a):
        return cv2.GaussianBlur(a, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(-1) if s.ndim == 3 else s


def masked_ssim(reference_bgr: np.ndarray, output_bgr: np.ndarray, mask: np.ndarray) -> float:
    m = mask.astype(bool)
    return float(ssim_map(reference_bgr, output_bgr)[m].mean()) if m.any() else float("nan")


def deocclusion_scores(reference_bgr: np.ndarray, output_bgr: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """{"psnr_db", "ssim"} of `output_bgr` against the clean `reference_bgr` on the masked pixels."""
    return {"psnr_db": masked_psnr_db(reference_bgr, output_bgr, mask),
            "ssim": masked_ssim(reference_bgr, output_bgr, mask)}
