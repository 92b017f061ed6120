"""Synthetic occluders pasted on real photos, with their exact pixel masks.

Every paster takes a BGR uint8 image and the 68 iBUG landmarks (0-based pixel (x, y)) of one face
and returns `(image_bgr, occluder_mask)`: a new image and the (H, W) bool mask of the pixels the
occluder replaced. Edges are hard (no blending), so the mask is exactly the set of pasted pixels.
Placement and colours are drawn from a `numpy.random.Generator`: `apply_occluder(kind, ..., seed)`
is deterministic.

Kinds (`OCCLUDER_KINDS`):
- `mask_black|blue|green|white`: insightface's flat face-mask textures (`mask_*.jpg`), warped
  piecewise-affinely (a 13 x 8 grid of quads rasterized with `render.rasterize`, texture coordinates
  interpolated per pixel) onto the lower face: top edge a curve from jaw point 1 over the nose bridge (between 28 and 29) to
  jaw point 15, bottom edge the jaw 2..14 (through the chin 8) pushed 6 % outwards; shaded darker
  towards the sides.
- `sunglasses`: two dark elliptic lenses over the eyes (with a highlight), frame, bridge and temples.
- `bar_a`, `bar_b`: opaque rectangles across the face at a random angle and offset.
- `hand`: a palm ellipse + four finger capsules + a thumb, filled with the face's own skin colour
  (median of two cheek patches) and shaded by the distance to the silhouette.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from ..app.samples import mask_texture

MASK_COLOURS = ("black", "blue", "green", "white")
OCCLUDER_KINDS: tuple[str, ...] = tuple(f"mask_{c}" for c in MASK_COLOURS) + ("sunglasses", "bar_a", "bar_b", "hand")


@dataclass
class Occlusion:
    kind: str
    image_bgr: np.ndarray  # (H, W, 3) uint8, the occluded photo
    occluder_mask: np.ndarray  # (H, W) bool, pixels replaced by the occluder (anywhere in the image)


def occluder_seed(*keys) -> int:
    """A stable seed from strings/ints (crc32; independent of PYTHONHASHSEED)."""
    return zlib.crc32("/".join(map(str, keys)).encode()) & 0x7FFFFFFF




# ---------------------------------------------------------------------------------------------
# face geometry helpers


def _face_frame(lm: np.ndarray):
    """(centre, up unit vector (image), right unit vector, face width px, face height px)."""
    brow_centre = 0.5 * (lm[19] + lm[24])
    up = brow_centre - lm[8]
    height = float(np.linalg.norm(up))
    up = up / max(height, 1e-9)
    right = np.array([-up[1], up[0]])  # perpendicular; points towards image right for an upright face
    if right[0] < 0:
        right = -right
    width = float(np.linalg.norm(lm[16] - lm[0]))
    centre = 0.5 * (brow_centre + lm[8])
    return centre, up, right, width, height


def _composite(image_bgr: np.ndarray, layer_bgr: np.ndarray, mask: np.ndarray):
    out = image_bgr.copy()
    out[mask] = layer_bgr[mask]
    return out, mask


def _resample_polyline(points: np.ndarray, n: int) -> np.ndarray:
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    s = np.linspace(0.0, arc[-1], n)
    return np.stack([np.interp(s, arc, points[:, k]) for k in range(2)], -1)


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples (N, C) float32 of an (H, W, C) image at pixel-centre coordinates (clamped)."""
    h, w = image.shape[:2]
    x = np.clip(x, 0, w - 1)
    y = np.clip(y, 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), w - 2 if w > 1 else 0)
    y0 = np.minimum(np.floor(y).astype(np.int64), h - 2 if h > 1 else 0)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    im = image.astype(np.float32)
    top = im[y0, x0] * (1 - fx) + im[y0, x1] * fx
    bottom = im[y1, x0] * (1 - fx) + im[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _warp_grid(grid_xy: np.ndarray, grid_uv: np.ndarray, height: int, width: int):
    """Piecewise-affine map of a (R, C) grid: image points `grid_xy` (R, C, 2) -> texture points `grid_uv`.

    Rasterizes the grid's quads (two triangles each) with `render.rasterize` (pixel centres; the
    grid drawn at depth 1 with K = I) -> (covered (H, W) bool, texture coordinates (H, W, 2))."""
    import torch

    from ..render import interpolate, rasterize

    rows, cols = grid_xy.shape[:2]
    idx = np.arange(rows * cols).reshape(rows, cols)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    tris = torch.from_numpy(np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)]).astype(np.int64))
    pts = torch.from_numpy(grid_xy.reshape(-1, 2).astype(np.float32))
    verts = torch.cat([pts, torch.ones(len(pts), 1)], 1)[None]
    frag = rasterize(verts, tris, torch.eye(3), height, width, backend="torch")
    coords = interpolate(frag, torch.from_numpy(grid_uv.reshape(-1, 2).astype(np.float32)), tris)[0]
    return (frag.triangle_id[0] >= 0).numpy(), coords.numpy()


def _sub(points: np.ndarray) -> np.ndarray:
    """Float pixel coordinates -> int32 with 4 fractional bits (OpenCV `shift=4`)."""
    return np.round(np.asarray(points) * 16.0).astype(np.int32)


# ---------------------------------------------------------------------------------------------
# pasters


def paste_face_mask(image_bgr: np.ndarray, landmarks68: np.ndarray, texture_bgr: np.ndarray,
                    columns: int = 13, rows: int = 8, margin_fraction: float = 0.02):
    """Warp a flat face-mask texture onto the lower face (see the module docstring)."""
    lm = np.asarray(landmarks68, dtype=np.float64)
    h, w = image_bgr.shape[:2]
    anchor = lm[33]
    bottom = lm[2:15] + 0.06 * (lm[2:15] - anchor)
    bottom = _resample_polyline(bottom, columns)
    top_left = lm[1] + 0.04 * (lm[1] - anchor)
    top_right = lm[15] + 0.04 * (lm[15] - anchor)
    top_centre = 0.5 * (lm[28] + lm[29])
    s = np.linspace(0.0, 1.0, columns)[:, None]
    top = (top_left * (2 * (s - 0.5) * (s - 1)) + top_centre * (-4 * s * (s - 1))
           + top_right * (2 * s * (s - 0.5)))  # quadratic through the three points
    t = np.linspace(0.0, 1.0, rows)[:, None, None]
    grid = (1 - t) * top[None] + t * bottom[None]  # (rows, columns, 2)

    th, tw = texture_bgr.shape[:2]
    mu, mv = margin_fraction * (tw - 1), margin_fraction * (th - 1)
    uu, vv = np.meshgrid(np.linspace(mu, tw - 1 - mu, columns), np.linspace(mv, th - 1 - mv, rows))
    uv = np.stack([uu, vv], -1)

    covered, coords = _warp_grid(grid, uv, h, w)
    mask = covered
    layer = np.zeros_like(image_bgr)
    ys, xs = np.nonzero(covered)
    coords = coords[ys, xs]
    colours = _bilinear(texture_bgr, coords[:, 0], coords[:, 1])
    s_px = (coords[:, 0] - mu) / max(tw - 1 - 2 * mu, 1.0)
    shade = 0.72 + 0.28 * np.sqrt(np.clip(np.sin(np.pi * s_px), 0.0, 1.0))
    layer[ys, xs] = np.clip(colours * shade[:, None], 0, 255).astype(np.uint8)
    return _composite(image_bgr, layer, mask)


def paste_sunglasses(image_bgr: np.ndarray, landmarks68: np.ndarray, rng: np.random.Generator):
    """Dark lenses over both eyes, a frame, a bridge and the temples towards the jaw ends."""
    lm = np.asarray(landmarks68, dtype=np.float64)
    h, w = image_bgr.shape[:2]
    eye_r, eye_l = lm[36:42].mean(0), lm[42:48].mean(0)  # subject's right eye is on the image left
    axis = eye_l - eye_r
    d = float(np.linalg.norm(axis))
    angle = math.degrees(math.atan2(axis[1], axis[0]))
    _, up, _, _, _ = _face_frame(lm)
    scale = rng.uniform(0.95, 1.15)
    half = (0.44 * d * scale, 0.32 * d * scale)
    lens_centres = [eye_r - 0.06 * d * up, eye_l - 0.06 * d * up]
    thickness = max(1, int(round(0.05 * d)))
    frame_colour = tuple(int(v) for v in rng.integers(0, 70, 3))
    lens_colour = np.array(rng.integers(10, 45, 3), dtype=np.float32)

    mask8 = np.zeros((h, w), np.uint8)
    lens8 = np.zeros((h, w), np.uint8)
    layer = np.zeros_like(image_bgr)
    for c in lens_centres:
        cv2.ellipse(lens8, (_sub(c)[0], _sub(c)[1]), (int(half[0] * 16), int(half[1] * 16)), angle, 0, 360, 1,
                    -1, cv2.LINE_8, 4)
    # lenses: a vertical gradient plus a diagonal highlight
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rel_up = -((xx - lens_centres[0][0]) * up[0] + (yy - lens_centres[0][1]) * up[1]) / max(half[1], 1.0)
    grad = np.clip(1.0 - 0.25 * rel_up, 0.6, 1.5)
    lens_px = lens_colour[None, None] * grad[..., None]
    layer[:] = np.clip(lens_px, 0, 255).astype(np.uint8)
    highlight = np.zeros((h, w), np.uint8)
    for c in lens_centres:
        a = c + 0.35 * half[0] * (axis / d) + 0.45 * half[1] * (up)
        b = c + 0.05 * half[0] * (axis / d) + 0.1 * half[1] * (up)
        cv2.line(highlight, tuple(_sub(a)), tuple(_sub(b)), 1, max(1, int(0.04 * d)), cv2.LINE_8, 4)
    layer[(highlight > 0) & (lens8 > 0)] = (120, 120, 125)
    mask8 |= lens8
    # frame: lens rims, bridge, temples
    frame8 = np.zeros((h, w), np.uint8)
    for c in lens_centres:
        cv2.ellipse(frame8, (_sub(c)[0], _sub(c)[1]), (int(half[0] * 16), int(half[1] * 16)), angle, 0, 360, 1,
                    thickness, cv2.LINE_8, 4)
    u = axis / d
    inner_r, inner_l = lens_centres[0] + u * half[0], lens_centres[1] - u * half[0]
    cv2.line(frame8, tuple(_sub(inner_r)), tuple(_sub(inner_l)), 1, thickness, cv2.LINE_8, 4)
    outer_r, outer_l = lens_centres[0] - u * half[0], lens_centres[1] + u * half[0]
    cv2.line(frame8, tuple(_sub(outer_r)), tuple(_sub(outer_r + 0.7 * (lm[0] - outer_r))), 1, thickness,
             cv2.LINE_8, 4)
    cv2.line(frame8, tuple(_sub(outer_l)), tuple(_sub(outer_l + 0.7 * (lm[16] - outer_l))), 1, thickness,
             cv2.LINE_8, 4)
    layer[frame8 > 0] = frame_colour
    mask8 |= frame8
    return _composite(image_bgr, layer, mask8 > 0)


def paste_bar(image_bgr: np.ndarray, landmarks68: np.ndarray, rng: np.random.Generator):
    """An opaque bar (rectangle longer than the face is wide) across the face at a random angle."""
    lm = np.asarray(landmarks68, dtype=np.float64)
    h, w = image_bgr.shape[:2]
    centre, up, right, width, height = _face_frame(lm)
    angle = math.radians(rng.uniform(-60.0, 60.0))
    along = math.cos(angle) * right + math.sin(angle) * up
    across = np.array([-along[1], along[0]])
    c = centre + up * rng.uniform(-0.3, 0.3) * height + right * rng.uniform(-0.15, 0.15) * width
    half_len, half_thick = 0.9 * max(width, height), rng.uniform(0.08, 0.15) * height
    corners = np.array([c + sa * half_len * along + sb * half_thick * across
                        for sa, sb in ((-1, -1), (1, -1), (1, 1), (-1, 1))])
    mask8 = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask8, _sub(corners), 1, cv2.LINE_8, 4)
    colour = rng.integers(0, 256, 3).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = ((xx - c[0]) * across[0] + (yy - c[1]) * across[1]) / max(half_thick, 1.0)  # -1..1 across the bar
    shade = 1.0 - 0.25 * np.abs(t)
    layer = np.clip(colour[None, None] * shade[..., None] + 8.0, 0, 255).astype(np.uint8)
    return _composite(image_bgr, layer, mask8 > 0)


def skin_colour_bgr(image_bgr: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
    """Median colour (BGR float) of two cheek disks between the jaw and the nose tip."""
    lm = np.asarray(landmarks68, dtype=np.float64)
    h, w = image_bgr.shape[:2]
    width = float(np.linalg.norm(lm[16] - lm[0]))
    disk = np.zeros((h, w), np.uint8)
    for jaw in (lm[3], lm[13]):
        c = jaw + 0.5 * (lm[30] - jaw)
        cv2.circle(disk, tuple(_sub(c)), max(16, int(0.07 * width * 16)), 1, -1, cv2.LINE_8, 4)
    px = image_bgr[disk > 0]
    if len(px) == 0:
        return np.array([120.0, 150.0, 200.0])
    return np.median(px.astype(np.float64), axis=0)


def paste_hand(image_bgr: np.ndarray, landmarks68: np.ndarray, rng: np.random.Generator):
    """A hand silhouette (palm + 4 fingers + thumb) in the face's skin colour, shaded, over part of the face."""
    lm = np.asarray(landmarks68, dtype=np.float64)
    h, w = image_bgr.shape[:2]
    width = _face_frame(lm)[3]
    skin = skin_colour_bgr(image_bgr, lm)
    W = width
    # hand in its own frame (x right, y towards the fingertips), units of face width
    palm_half = (0.27 * W, 0.30 * W)
    fingers = [(-0.19, 0.34), (-0.065, 0.44), (0.065, 0.42), (0.19, 0.33)]  # base x, length
    finger_width = 0.11 * W
    # target: mouth, one eye or a cheek; the fingertips point across the face
    targets = [lm[62], lm[36:42].mean(0), lm[42:48].mean(0), 0.5 * (lm[3] + lm[30]), 0.5 * (lm[13] + lm[30])]
    target = targets[int(rng.integers(0, len(targets)))]
    direction = math.radians(rng.uniform(0, 360))
    fy = np.array([math.cos(direction), math.sin(direction)])  # fingertip direction (image)
    fx = np.array([-fy[1], fy[0]])
    palm_centre = target - fy * (0.35 * W) + rng.normal(0, 0.05 * W, 2)

    def to_image(x, y):
        return palm_centre + fx * x + fy * y

    mask8 = np.zeros((h, w), np.uint8)
    ang = math.degrees(math.atan2(fy[1], fy[0])) - 90.0
    pc = _sub(palm_centre)
    cv2.ellipse(mask8, (pc[0], pc[1]), (int(palm_half[0] * 16), int(palm_half[1] * 16)), ang, 0, 360, 1, -1,
                cv2.LINE_8, 4)
    thick = max(2, int(round(finger_width)))
    for (bx, length) in fingers:
        spread = rng.normal(0, 0.03)
        a = to_image(bx * W, 0.18 * W)
        b = to_image((bx + spread * 4) * W, (0.18 + length) * W)
        cv2.line(mask8, tuple(_sub(a)), tuple(_sub(b)), 1, thick, cv2.LINE_8, 4)
    side = 1.0 if rng.random() < 0.5 else -1.0
    a = to_image(side * 0.2 * W, -0.05 * W)
    b = to_image(side * 0.45 * W, 0.2 * W)
    cv2.line(mask8, tuple(_sub(a)), tuple(_sub(b)), 1, max(2, int(round(1.15 * finger_width))), cv2.LINE_8, 4)

    dist = cv2.distanceTransform(mask8, cv2.DIST_L2, 5)
    shade = 0.72 + 0.33 * np.clip(dist / (0.5 * finger_width), 0.0, 1.0)
    noise = rng.normal(0, 3.0, (h, w, 1))
    layer = np.clip(skin[None, None] * shade[..., None] + noise, 0, 255).astype(np.uint8)
    return _composite(image_bgr, layer, mask8 > 0)


def paste_occluder(kind: str, image_bgr: np.ndarray, landmarks68: np.ndarray, rng: np.random.Generator):
    """Dispatch one `OCCLUDER_KINDS` entry for one face -> (image_bgr, occluder_mask)."""
    if kind.startswith("mask_"):
        return paste_face_mask(image_bgr, landmarks68, mask_texture(kind[len("mask_"):]))
    if kind == "sunglasses":
        return paste_sunglasses(image_bgr, landmarks68, rng)
    if kind.startswith("bar"):
        return paste_bar(image_bgr, landmarks68, rng)
    if kind == "hand":
        return paste_hand(image_bgr, landmarks68, rng)
    raise ValueError(f"unknown occluder kind {kind!r}; expected one of {OCCLUDER_KINDS}")


def apply_occluder(kind: str, image_bgr: np.ndarray, faces_landmarks68: list[np.ndarray], seed: int) -> Occlusion:
    """Paste one occluder of `kind` on every face in `faces_landmarks68` (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    image = image_bgr
    mask = np.zeros(image_bgr.shape[:2], bool)
    for lm in faces_landmarks68:
        image, m = paste_occluder(kind, image, lm, rng)
        mask |= m
    if is_grayscale(image_bgr):  # a colour occluder on a grey photo would be trivially found by its chroma
        grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        image = image.copy()
        image[mask] = grey[mask]
    return Occlusion(kind, image, mask)


def is_grayscale(image_bgr: np.ndarray) -> bool:
    """True when the three channels are equal everywhere (a grey photo stored as BGR)."""
    return bool((image_bgr[..., 0] == image_bgr[..., 1]).all() and (image_bgr[..., 1] == image_bgr[..., 2]).all())
