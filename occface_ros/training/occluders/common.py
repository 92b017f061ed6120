"""Shared pieces of the training occluders: the face frame from 68 landmarks, a premultiplied
paint canvas, procedural textures and colour palettes. Everything is vectorised over pixels."""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

SHIFT_BITS = 4  # cv2 drawing with 1/16-pixel coordinates
FIXED = float(1 << SHIFT_BITS)

# BGR skin tones from light to dark (a random point between two neighbours is drawn)
SKIN_TONES_BGR = np.array([[196, 214, 246], [168, 192, 232], [135, 165, 212], [108, 140, 190], [84, 115, 165],
                           [62, 88, 135], [44, 62, 98]], np.float32)
HAIR_BGR = np.array([[18, 18, 22], [30, 38, 52], [40, 62, 96], [60, 96, 140], [110, 160, 205], [60, 80, 150],
                     [150, 150, 155], [200, 200, 205]], np.float32)  # black .. blond, auburn, grey, white


def to_fixed(points) -> np.ndarray:
    """Float pixel coordinates -> int32 with SHIFT_BITS fractional bits (cv2 `shift=`)."""
    return np.round(np.asarray(points, np.float64) * FIXED).astype(np.int32)


def unit(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v / max(float(np.linalg.norm(v)), 1e-9)


def rotate(v, angle_deg: float) -> np.ndarray:
    """Rotate an image-plane vector by angle_deg (positive = clockwise on screen, y down)."""
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def pick(rng: np.random.Generator, items, weights=None):
    """One of `items` (optionally weighted); cheaper than Generator.choice for a handful."""
    if weights is None:
        return items[int(rng.integers(0, len(items)))]
    cdf = np.cumsum(weights, dtype=np.float64)
    return items[min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(items) - 1)]


@dataclass
class Face:
    """One face's frame in the (sub-)image being occluded; lengths in pixels."""

    image: np.ndarray  # (H, W, 3) uint8
    lm: np.ndarray  # (68, 2) float64 pixel (x, y)
    right: np.ndarray  # unit, subject's right eye -> left eye (image left -> right for a frontal face)
    up: np.ndarray  # unit, perpendicular to `right`, chin -> brows
    eye_r: np.ndarray  # subject's right eye centre (36-41)
    eye_l: np.ndarray  # subject's left eye centre (42-47)
    iod_px: float  # outer eye corners 36-45 (the 300-W normaliser; ~9.5 cm on an adult)
    eye_distance_px: float  # eye centres (~6.3 cm)
    face_width_px: float  # jaw ends 0-16
    face_height_px: float  # brow centre -> chin along `up`
    mouth: np.ndarray  # centre of 48-67
    skin_bgr: np.ndarray  # (3,) float32 median of cheek samples
    origin: tuple[int, int] = (0, 0)  # (x, y) of this frame's pixel (0, 0) in the occluded region

    def window(self, points, pad_px: float) -> tuple["Face", np.ndarray]:
        """The same face seen through the bounding box of `points` grown by pad_px (clipped to the
        image): generators draw in the window of their occluder, not the whole image. Returns the
        windowed face (landmarks etc. in window pixels) and the (x, y) offset to subtract."""
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        h, w = self.height, self.width
        x0 = int(np.clip(np.floor(pts[:, 0].min() - pad_px), 0, w - 1))
        y0 = int(np.clip(np.floor(pts[:, 1].min() - pad_px), 0, h - 1))
        x1 = int(np.clip(np.ceil(pts[:, 0].max() + pad_px) + 1, x0 + 1, w))
        y1 = int(np.clip(np.ceil(pts[:, 1].max() + pad_px) + 1, y0 + 1, h))
        off = np.array([x0, y0], np.float64)
        sub = dataclasses.replace(self, image=self.image[y0:y1, x0:x1], lm=self.lm - off, eye_r=self.eye_r - off,
                                  eye_l=self.eye_l - off, mouth=self.mouth - off,
                                  origin=(self.origin[0] + x0, self.origin[1] + y0))
        return sub, off

    @property
    def height(self) -> int:
        return self.image.shape[0]

    @property
    def width(self) -> int:
        return self.image.shape[1]

    def local(self, origin, along) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel coordinates (s along `along`, t across it; pixels) in a frame at `origin`."""
        a = unit(along)
        dx = np.arange(self.width, dtype=np.float32) - np.float32(origin[0])
        dy = np.arange(self.height, dtype=np.float32)[:, None] - np.float32(origin[1])
        return dx * np.float32(a[0]) + dy * np.float32(a[1]), dx * np.float32(-a[1]) + dy * np.float32(a[0])


def face_frame(image_bgr: np.ndarray, landmarks68: np.ndarray) -> Face:
    lm = np.asarray(landmarks68, np.float64).reshape(68, 2)
    eye_r, eye_l = lm[36:42].mean(0), lm[42:48].mean(0)
    right = unit(eye_l - eye_r)
    up = np.array([right[1], -right[0]])
    brow = 0.5 * (lm[19] + lm[24])
    if np.dot(up, brow - lm[8]) < 0:
        up = -up
    face_height = max(float(np.dot(brow - lm[8], up)), 1.0)
    return Face(image=image_bgr, lm=lm, right=right, up=up, eye_r=eye_r, eye_l=eye_l,
                iod_px=max(float(np.linalg.norm(lm[45] - lm[36])), 1.0),
                eye_distance_px=max(float(np.linalg.norm(eye_l - eye_r)), 1.0),
                face_width_px=max(float(np.linalg.norm(lm[16] - lm[0])), 1.0), face_height_px=face_height,
                mouth=lm[48:68].mean(0), skin_bgr=cheek_skin_bgr(image_bgr, lm))


_LATTICE5 = np.stack(np.meshgrid(np.arange(-2, 3), np.arange(-2, 3)), -1).reshape(-1, 2).astype(np.float64)


def cheek_skin_bgr(image_bgr: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Median colour of a 5 x 5 lattice of pixels on each cheek (between jaw 2/14, nose 31/35 and the
    mouth corners), the face's own skin for hands and skin-coloured shapes."""
    h, w = image_bgr.shape[:2]
    centres = np.stack([0.4 * lm[2] + 0.4 * lm[31] + 0.2 * lm[48], 0.4 * lm[14] + 0.4 * lm[35] + 0.2 * lm[54]])
    step = 0.035 * float(np.linalg.norm(lm[16] - lm[0]))
    pts = (centres[:, None] + _LATTICE5[None] * step).reshape(-1, 2)
    x = np.clip(np.round(pts[:, 0]).astype(int), 0, w - 1)
    y = np.clip(np.round(pts[:, 1]).astype(int), 0, h - 1)
    px = np.sort(image_bgr[y, x], axis=0)
    return px[len(px) // 2].astype(np.float32)


def planar(image) -> np.ndarray:
    """(H, W, 3) -> (3, H, W) float32. Colour fields are planar here: numpy broadcasts an (H, W)
    field over a leading channel axis ~25x faster than over a trailing one."""
    return np.stack(cv2.split(np.asarray(image))).astype(np.float32, copy=False)


def const(colour) -> np.ndarray:
    """A (3,) BGR colour as (3, 1, 1), to broadcast against (H, W) fields."""
    return np.asarray(colour, np.float32).reshape(3, 1, 1)


class Canvas:
    """A premultiplied planar BGR layer over a face window: `paint` puts paint over what is there
    ('over' operator). `origin` places the window in the occluded region."""

    def __init__(self, face: Face):
        self.origin = face.origin
        self.premult = np.zeros((3, face.height, face.width), np.float32)
        self.alpha = np.zeros((face.height, face.width), np.float32)

    def paint(self, alpha: np.ndarray, colour) -> None:
        """alpha (H, W) in [0, 1]; colour (3,) or (3, H, W) (or (1, H, W), grey) BGR 0..255."""
        colour = np.asarray(colour, np.float32)
        if colour.ndim == 1:
            colour = colour.reshape(3, 1, 1)
        self.premult *= 1.0 - alpha
        self.premult += colour * alpha
        self.alpha *= 1.0 - alpha
        self.alpha += alpha


def mask_u8(height: int, width: int) -> np.ndarray:
    return np.zeros((height, width), np.uint8)


def as_alpha(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.float32) * np.float32(1.0 / 255.0)


def fill_polys(height: int, width: int, polys) -> np.ndarray:
    """Anti-aliased coverage (H, W) float32 of filled polygons (list of (N, 2) float arrays)."""
    m = mask_u8(height, width)
    cv2.fillPoly(m, [to_fixed(p) for p in polys], 255, cv2.LINE_AA, SHIFT_BITS)
    return as_alpha(m)


def ellipse_points(centre, half_axes, angle_deg: float, n: int = 48, start_deg: float = 0.0,
                   end_deg: float = 360.0) -> np.ndarray:
    t = np.radians(np.linspace(start_deg, end_deg, n, endpoint=end_deg - start_deg < 360.0))
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    x, y = half_axes[0] * np.cos(t), half_axes[1] * np.sin(t)
    return np.stack([centre[0] + c * x - s * y, centre[1] + s * x + c * y], -1)


def rounded_rect(centre, along, half_len: float, half_wid: float, radius: float, n_arc: int = 6) -> np.ndarray:
    """Polygon of a rounded rectangle, long axis `along` (unit image vector)."""
    radius = min(radius, half_len, half_wid)
    a = unit(along)
    b = np.array([-a[1], a[0]])
    corners = [(1, 1, 0), (-1, 1, 90), (-1, -1, 180), (1, -1, 270)]
    pts = []
    for sa, sb, start in corners:
        t = np.radians(start + np.linspace(0, 90, n_arc))
        cx, cy = sa * (half_len - radius), sb * (half_wid - radius)
        pts.append(np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], -1))
    local = np.concatenate(pts)
    return np.asarray(centre) + local[:, :1] * a + local[:, 1:] * b


def chaikin(points: np.ndarray, iterations: int = 2, closed: bool = True) -> np.ndarray:
    """Corner-cutting smoothing of a polyline (vectorised per iteration)."""
    p = np.asarray(points, np.float64)
    for _ in range(iterations):
        q = np.roll(p, -1, 0) if closed else p[1:]
        a = p if closed else p[:-1]
        new = np.empty((2 * len(a), 2))
        new[0::2], new[1::2] = 0.75 * a + 0.25 * q, 0.25 * a + 0.75 * q
        p = new if closed else np.concatenate([p[:1], new, p[-1:]])
    return p


# ---------------------------------------------------------------------------------------------
# textures


@functools.lru_cache(maxsize=1)
def _grain_tile() -> np.ndarray:
    """A fixed 512 x 512 N(0, 1) float32 tile; random crops of it are fast per-pixel grain."""
    tile = np.random.default_rng(20240612).standard_normal((512, 512)).astype(np.float32)
    tile.setflags(write=False)
    return tile


def grain(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W) float32 ~N(0, 1) pixel noise: a random crop (or tiling) of the fixed grain tile."""
    tile = _grain_tile()
    reps = (-(-height // 256) + 1, -(-width // 256) + 1)
    if reps[0] > 2 or reps[1] > 2:
        tile = np.tile(tile, reps)
    oy = int(rng.integers(0, tile.shape[0] - height + 1))
    ox = int(rng.integers(0, tile.shape[1] - width + 1))
    return tile[oy:oy + height, ox:ox + width]


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell_px: float) -> np.ndarray:
    """(H, W) float32 low-frequency noise (~unit amplitude) with features ~cell_px wide."""
    gh = max(2, int(math.ceil(height / max(cell_px, 1.0))) + 1)
    gw = max(2, int(math.ceil(width / max(cell_px, 1.0))) + 1)
    coarse = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def random_colour(rng: np.random.Generator, sat=(0.2, 0.9), val=(0.15, 0.95)) -> np.ndarray:
    """A BGR float32 colour from a random hue, saturation and value."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*sat) * 255, rng.uniform(*val) * 255]]], np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def skin_tone(rng: np.random.Generator, face: Face, own_probability: float = 0.6) -> np.ndarray:
    """The face's own cheek colour (jittered) or a random tone between two neighbouring skin tones."""
    if rng.random() < own_probability:
        base = face.skin_bgr
    else:
        i = int(rng.integers(0, len(SKIN_TONES_BGR) - 1))
        base = SKIN_TONES_BGR[i] + rng.random() * (SKIN_TONES_BGR[i + 1] - SKIN_TONES_BGR[i])
    return np.clip(base * rng.uniform(0.9, 1.1, 3).astype(np.float32), 8, 250).astype(np.float32)


def smoothstep_band(x: np.ndarray, width: float) -> np.ndarray:
    """0..1 with a soft edge ~width wide around x = 0 (an anti-aliased step)."""
    return np.clip(0.5 + x / max(width, 1e-6), 0.0, 1.0)


PATTERNS = ("solid", "stripes", "checks", "dots", "noise", "gradient")


def pattern_colour(rng: np.random.Generator, s: np.ndarray, t: np.ndarray, period: float,
                   base=None, pattern: str | None = None, aa: float = 1.0) -> tuple[np.ndarray, str]:
    """(3, H, W) float32 colour of a two-colour pattern in coordinates (s, t) (same units as
    period; aa is one pixel in those units), and the pattern's name."""
    pattern = pattern or PATTERNS[int(rng.integers(0, len(PATTERNS)))]
    c1 = random_colour(rng) if base is None else np.asarray(base, np.float32)
    c2 = random_colour(rng)
    phase = rng.uniform(0, 2 * math.pi)
    if pattern == "solid":
        return np.broadcast_to(const(c1), (3,) + s.shape).astype(np.float32), pattern
    if pattern == "stripes":
        ang = rng.uniform(0, math.pi)
        u = s * math.cos(ang) + t * math.sin(ang)
        w = np.sin(2 * math.pi * u / period + phase) - rng.uniform(-0.5, 0.5)
        m = smoothstep_band(w, 2 * math.pi * aa / period)
    elif pattern == "checks":
        m1 = smoothstep_band(np.sin(2 * math.pi * s / period + phase), 2 * math.pi * aa / period)
        m2 = smoothstep_band(np.sin(2 * math.pi * t / period + phase), 2 * math.pi * aa / period)
        m = 0.5 * (m1 + m2) if rng.random() < 0.5 else np.abs(m1 - m2)  # tartan or checkerboard
    elif pattern == "dots":
        fs = np.mod(s + phase * period, period) - 0.5 * period
        ft = np.mod(t + phase * period, period) - 0.5 * period
        m = smoothstep_band(rng.uniform(0.18, 0.35) * period - np.sqrt(fs * fs + ft * ft), aa)
    elif pattern == "noise":
        h, w = s.shape
        cell = max(2.0, period / max(aa, 1e-6))
        m = np.clip(0.5 + 0.8 * smooth_noise(rng, h, w, cell), 0.0, 1.0)
    else:  # gradient
        ang = rng.uniform(0, math.pi)
        u = s * math.cos(ang) + t * math.sin(ang)
        m = np.clip(0.5 + u / (4 * period), 0.0, 1.0)
    m = m.astype(np.float32)
    return const(c1) + const(c2 - c1) * m, pattern


def image_patch(rng: np.random.Generator, face: Face) -> np.ndarray:
    """(3, H, W) float32: the image itself, turned, shifted and rescaled (a real-world texture)."""
    h, w = face.height, face.width
    scale = rng.uniform(0.6, 1.6)
    angle = rng.uniform(-180, 180)
    centre = (rng.uniform(0, w), rng.uniform(0, h))
    m = cv2.getRotationMatrix2D(centre, angle, scale)
    m[:, 2] += (rng.uniform(-0.5, 0.5) * w, rng.uniform(-0.5, 0.5) * h)
    return planar(cv2.warpAffine(face.image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
