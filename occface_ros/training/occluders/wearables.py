"""Worn occluders: face masks (insightface textures and procedural), glasses, sunglasses, scarves, hair."""
from __future__ import annotations


import cv2
import numpy as np

from ...app.samples import mask_texture
from .common import (HAIR_BGR, SHIFT_BITS, Canvas, Face, as_alpha, chaikin, const, ellipse_points, fill_polys, grain,
                     mask_u8, pattern_colour, pick, planar, random_colour, rotate, smooth_noise, to_fixed)

MASK_TEXTURE_COLOURS = ("black", "blue", "green", "white")
MASK_VARIANTS = ("texture", "surgical", "n95", "cloth")
MASK_VARIANT_WEIGHTS = np.array([0.4, 0.25, 0.15, 0.2])
SURGICAL_BGR = np.array([[225, 200, 150], [220, 170, 90], [238, 238, 235], [170, 200, 150], [195, 180, 235],
                         [45, 45, 48], [160, 160, 160]], np.float32)


def _lookup(table: np.ndarray, x01: np.ndarray) -> np.ndarray:
    """table (N,) sampled on [0, 1], read at x01 (H, W) in [0, 1] (nearest): a 1-D profile per pixel
    without evaluating exp/sin per pixel."""
    idx = (x01 * np.float32(len(table) - 1) + np.float32(0.5)).astype(np.intp)
    return table.astype(np.float32)[idx]


def _tps_uv(src_xy: np.ndarray, dst_uv: np.ndarray, height: int, width: int, cells: int = 24):
    """Thin-plate spline image (x, y) -> (u, v) through the control pairs, evaluated on a coarse
    grid and resized (bilinear) to (H, W) -> (u, v) float32 maps."""
    centre = src_xy.mean(0)
    scale = max(float(np.ptp(src_xy, 0).max()), 1.0)
    p = (src_xy - centre) / scale
    n = len(p)
    d2 = ((p[:, None] - p[None]) ** 2).sum(-1)
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = d2 * np.log(d2 + 1e-12) + 1e-6 * np.eye(n)
    system[:n, n] = 1.0
    system[:n, n + 1:] = p
    system[n, :n] = 1.0
    system[n + 1:, :n] = p.T
    rhs = np.zeros((n + 3, 2))
    rhs[:n] = dst_uv
    coef = np.linalg.solve(system, rhs)
    gw, gh = min(width, cells), min(height, cells)
    gx = (np.arange(gw) + 0.5) * width / gw - 0.5  # cv2.resize's sample positions
    gy = (np.arange(gh) + 0.5) * height / gh - 0.5
    g = (np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2) - centre) / scale
    dg = ((g[:, None] - p[None]) ** 2).sum(-1)
    uv = (dg * np.log(dg + 1e-12)) @ coef[:n] + coef[n] + g @ coef[n + 1:]
    uv = cv2.resize(uv.reshape(gh, gw, 2).astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return uv[..., 0], uv[..., 1]


def _mask_geometry(face: Face, rng: np.random.Generator, variant: str):
    """Outline polygon (N, 2) and control pairs (image xy, mask uv) of a face mask from the jaw and nose."""
    lm, up, fh = face.lm, face.up, face.face_height_px
    anchor = lm[30]
    push = rng.uniform(0.02, 0.08)
    chin_drop = rng.uniform(0.08, 0.18) if variant == "n95" else rng.uniform(0.0, 0.1)
    idx = np.arange(2, 15)
    bump = np.cos(np.clip((idx - 8) / 5.0, -1, 1) * np.pi / 2)
    jaw = lm[idx] + push * (lm[idx] - anchor) - up * (chin_drop * fh * bump)[:, None]
    top_c = lm[27] + rng.uniform(0.15, 0.5) * (lm[30] - lm[27])
    side_t = rng.uniform(0.0, 0.6) if variant != "n95" else rng.uniform(0.5, 1.0)
    top_l = lm[1] + side_t * (lm[2] - lm[1]) * (1 if variant == "n95" else -1)
    top_r = lm[15] + side_t * (lm[14] - lm[15]) * (1 if variant == "n95" else -1)
    top_l = top_l + push * (top_l - anchor)
    top_r = top_r + push * (top_r - anchor)
    rise = rng.uniform(-0.03, 0.05) * fh
    mid_l = 0.5 * (top_l + top_c) + up * rise
    mid_r = 0.5 * (top_r + top_c) + up * rise
    top = np.stack([top_l, mid_l, top_c, mid_r, top_r])
    outline = chaikin(np.concatenate([top, jaw[::-1]]), 3)
    u_top = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    src = np.concatenate([top, jaw, lm[[30, 48, 54, 57]]])
    chin_v = np.dot(top_c - jaw[6], up)

    def v_of(pt):
        return float(np.clip(np.dot(top_c - pt, up) / max(chin_v, 1.0), 0.05, 0.95))

    interior = [(0.5, v_of(lm[30]) + 0.04), (0.3, v_of(lm[48])), (0.7, v_of(lm[54])), (0.5, v_of(lm[57]))]
    dst = np.concatenate([np.c_[u_top, np.zeros(5)], np.c_[(idx - 2) / 12.0, np.ones(13)], np.array(interior)])
    return outline, src, dst, top_l, top_r, jaw


def draw_mask(face: Face, rng: np.random.Generator, variant: str | None = None) -> tuple[Canvas, str]:
    """A face mask over nose, mouth and chin: an insightface texture or a procedural surgical,
    N95 or cloth mask, mapped by a thin-plate spline onto an outline from the jaw and nose."""
    if variant is None:
        variant = pick(rng, MASK_VARIANTS, MASK_VARIANT_WEIGHTS)
    outline, src, dst, top_l, top_r, jaw = _mask_geometry(face, rng, variant)
    ears = [ear + rng.uniform(0.1, 0.25) * (ear - face.lm[30]) for ear in (face.lm[0], face.lm[16])]
    thick = max(1, int(round(0.012 * face.face_width_px)))
    face, off = face.window(np.concatenate([outline, ears]), thick + 3)
    outline, src, top_l, top_r, jaw, ears = outline - off, src - off, top_l - off, top_r - off, jaw - off, [
        e - off for e in ears]
    h, w = face.height, face.width
    u, v = _tps_uv(src, dst, h, w)
    uc, vc = np.clip(u, 0, 1), np.clip(v, 0, 1)
    name = variant
    if variant == "texture":
        colour_name = MASK_TEXTURE_COLOURS[int(rng.integers(0, 4))]
        tex = mask_texture(colour_name)
        th, tw = tex.shape[:2]
        m0, m1 = rng.uniform(0.01, 0.05, 2)
        uu = uc if rng.random() < 0.5 else 1.0 - uc
        map_x = ((m0 + uu * (1 - m0 - m1)) * (tw - 1)).astype(np.float32)
        map_y = ((m0 + vc * (1 - m0 - m1)) * (th - 1)).astype(np.float32)
        colour = planar(cv2.remap(tex, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
        colour *= const(rng.uniform(0.85, 1.12, 3))
        name = f"texture_{colour_name}"
        strap_colour = colour[:, int(np.clip(face.mouth[1], 0, h - 1)), int(np.clip(face.mouth[0], 0, w - 1))]
    elif variant == "surgical":
        base = SURGICAL_BGR[int(rng.integers(0, len(SURGICAL_BGR)))] * rng.uniform(0.9, 1.08, 3).astype(np.float32)
        pleats = np.sort(rng.uniform(0.25, 0.8, int(rng.integers(2, 5))))
        vt = np.linspace(0, 1, 512)
        profile = 1.0 - 0.06 * ((vt < 0.05) | (vt > 0.95))  # the bound top and bottom edges
        for vk in pleats:  # a crease (dark) with the pleat's lit face above it
            profile += -0.16 * np.exp(-((vt - vk) / 0.015) ** 2) + 0.07 * np.exp(-((vt - vk + 0.045) / 0.03) ** 2)
        fold = _lookup(profile, vc) * (1.0 - 0.06 * ((uc < 0.035) | (uc > 0.965)))
        colour = const(base) * fold
        strap_colour = base
    elif variant == "n95":
        base = np.array([rng.uniform(200, 245)] * 3, np.float32) * rng.uniform(0.9, 1.05, 3).astype(np.float32)
        cup = 1.0 - 0.35 * ((uc - 0.5) ** 2 * 2.0 + (vc - 0.45) ** 2)
        seam = 1.0 - 0.25 * np.exp(-((uc - 0.5) / 0.008) ** 2)
        colour = const(base) * (cup * seam)
        if rng.random() < 0.4:  # exhalation valve: a disc between a mouth corner and the jaw
            corner, jaw_pt = (face.lm[48], face.lm[5]) if rng.random() < 0.5 else (face.lm[54], face.lm[11])
            disc = ellipse_points(0.5 * (corner + jaw_pt), (0.09 * face.face_width_px,) * 2, 0, 24)
            valve = fill_polys(h, w, [disc])
            colour = colour * (1 - valve) + const(random_colour(rng, val=(0.2, 0.7))) * valve
        strap_colour = random_colour(rng)
    else:  # cloth
        colour, pat = pattern_colour(rng, uc * 4.0, vc * 2.6, rng.uniform(0.15, 0.5), aa=4.0 / max(w, 1))
        colour = colour * (1.0 + 0.08 * smooth_noise(rng, h, w, 0.15 * face.face_width_px))
        strap_colour = colour[:, int(np.clip(face.mouth[1], 0, h - 1)), int(np.clip(face.mouth[0], 0, w - 1))]
        name = f"cloth_{pat}"
    # the mask curves away at the sides, a light from one side; fabric grain
    ut = np.linspace(0, 1, 512)
    side = (0.7 + 0.3 * np.sqrt(np.sin(np.pi * ut))) * (1.0 + rng.uniform(-0.12, 0.12) * (2 * ut - 1))
    colour = colour * _lookup(side, uc) + grain(rng, h, w) * np.float32(2.5)
    canvas = Canvas(face)
    # ear loops towards the ears beyond the jaw ends
    loops = mask_u8(h, w)
    for top, low, e in ((top_l, jaw[1], ears[0]), (top_r, jaw[-2], ears[1])):
        cv2.line(loops, tuple(to_fixed(top)), tuple(to_fixed(e)), 255, thick, cv2.LINE_AA, SHIFT_BITS)
        cv2.line(loops, tuple(to_fixed(low)), tuple(to_fixed(e)), 255, thick, cv2.LINE_AA, SHIFT_BITS)
    canvas.paint(as_alpha(loops), np.clip(np.asarray(strap_colour, np.float32) * 0.9, 0, 255))
    canvas.paint(fill_polys(h, w, [outline]), colour)
    return canvas, name


# ---------------------------------------------------------------------------------------------
# glasses

LENS_SHAPES = ("oval", "round", "rect", "aviator", "cateye")


def _lens_polygon(centre, right, up, half_w: float, half_h: float, shape: str, outer_sign: float) -> np.ndarray:
    """(48, 2) lens outline; `outer_sign` +1 when the temple side is along +right."""
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    n = {"oval": 2.0, "round": 2.0, "rect": 4.5, "aviator": 2.3, "cateye": 2.6}[shape]
    x = np.sign(c) * np.abs(c) ** (2 / n)
    y = np.sign(s) * np.abs(s) ** (2 / n)  # y > 0: down
    if shape == "aviator":
        y = np.where(y > 0, y * 1.3, y)
        x = x - 0.2 * np.clip(y, 0, None) * (-outer_sign) * np.clip(-x * outer_sign, 0, None)
    if shape == "cateye":
        y = y - 0.35 * np.clip(-y, 0, None) * np.clip(x * outer_sign, 0, None) ** 3
    hh = half_w if shape == "round" else half_h
    return centre + (x * half_w)[:, None] * right - (y * hh)[:, None] * up


def _draw_eyewear(face: Face, rng: np.random.Generator, style: str) -> tuple[Canvas, str]:
    ed = face.eye_distance_px
    right, up = face.right, face.up
    shape = LENS_SHAPES[int(rng.integers(0, len(LENS_SHAPES)))]
    half_w = rng.uniform(0.38, 0.5) * ed
    half_h = half_w * rng.uniform(0.6, 0.9)
    lift, outward = rng.uniform(-0.02, 0.1) * ed, rng.uniform(0.0, 0.06) * ed
    lenses = []
    for eye, outer in ((face.eye_r, -1.0), (face.eye_l, 1.0)):
        c = eye + up * lift + right * outer * outward
        lenses.append(_lens_polygon(c, right, up, half_w, half_h, shape, outer))
    inner_r = lenses[0][np.argmax(lenses[0] @ right)]
    inner_l = lenses[1][np.argmin(lenses[1] @ right)]
    arch = 0.5 * (inner_r + inner_l) + up * rng.uniform(0.05, 0.2) * ed
    bridge = chaikin(np.stack([inner_r, arch, inner_l]), 2, closed=False)
    temples = []
    for lens, ear, sign in ((lenses[0], face.lm[0], -1), (lenses[1], face.lm[16], 1)):
        outer = lens[np.argmax(sign * (lens @ right) + 0.3 * (lens @ up))]
        ear_top = ear + up * 0.15 * face.face_height_px
        temples.append(np.stack([outer, outer + rng.uniform(0.6, 1.0) * (ear_top - outer)]))
    thick = max(1, int(round(rng.uniform(0.02, 0.08) * ed)))
    win, off = face.window(np.concatenate(lenses + [bridge] + temples), thick + 3)
    lenses, bridge, temples = [p - off for p in lenses], bridge - off, [p - off for p in temples]
    h, w = win.height, win.width

    lens_alpha = fill_polys(h, w, lenses)
    s, _ = win.local(0.5 * (win.eye_r + win.eye_l), up)  # s along up
    gradient = np.clip(0.5 + s * np.float32(1 / (2.0 * half_h)), 0.0, 1.0)  # 1 at the lens tops
    canvas = Canvas(win)
    if style == "clear":
        opacity = rng.uniform(0.05, 0.2) * (0.7 + 0.3 * gradient)
        tint = np.float32(rng.uniform(200, 250)) * rng.uniform(0.9, 1.0, 3).astype(np.float32)
    elif style == "tinted":
        opacity = rng.uniform(0.35, 0.75) * (rng.uniform(0.5, 1.0) + rng.uniform(0.0, 0.5) * gradient)
        tint = random_colour(rng, sat=(0.2, 0.7), val=(0.2, 0.6))
    else:
        opacity = np.float32(rng.uniform(0.88, 1.0))
        tint = random_colour(rng, sat=(0.0, 0.5), val=(0.03, 0.2)) if rng.random() < 0.8 else \
            random_colour(rng, sat=(0.5, 1.0), val=(0.4, 0.9))  # mirrored
    lens_colour = const(tint) * (0.8 + 0.4 * gradient)
    # a reflection: a soft diagonal band across both lenses
    band_dir = rotate(right, -rng.uniform(20, 70))
    offs = rng.uniform(-0.4, 0.4) * half_w
    bs, _ = win.local(win.eye_r + right * offs, np.array([-band_dir[1], band_dir[0]]))
    period = np.float32(np.dot(win.eye_l - win.eye_r, np.array([-band_dir[1], band_dir[0]])))
    bs = np.minimum(np.abs(bs), np.abs(bs - period)) * np.float32(1 / (0.12 * half_w))
    band = np.float32(rng.uniform(0.2, 0.6)) / (1 + bs * bs * bs * bs)
    lens_colour = lens_colour * (1 - band) + np.float32(235) * band
    canvas.paint(lens_alpha * np.clip(opacity + 0.6 * band, 0, 1), lens_colour)
    # frame: rims, bridge, temples
    frame = mask_u8(h, w)
    if not (style == "clear" and rng.random() < 0.2):  # not rimless
        cv2.polylines(frame, [to_fixed(p) for p in lenses], True, 255, thick, cv2.LINE_AA, SHIFT_BITS)
    cv2.polylines(frame, [to_fixed(bridge)] + [to_fixed(t) for t in temples], False, 255, thick, cv2.LINE_AA,
                  SHIFT_BITS)
    frame_colour = (random_colour(rng, val=(0.05, 0.6)) if rng.random() < 0.6
                    else np.array([rng.uniform(120, 220)] * 3, np.float32) * np.array([0.8, 0.95, 1.0], np.float32))
    fc = const(frame_colour) * (0.85 + 0.3 * gradient) + grain(rng, h, w) * np.float32(3)
    canvas.paint(as_alpha(frame) * np.float32(rng.uniform(0.85, 1.0)), fc)
    return canvas, f"{style}_{shape}"


def draw_glasses(face: Face, rng: np.random.Generator, variant: str | None = None) -> tuple[Canvas, str]:
    """Clear or tinted (partially transparent) glasses: lenses of several shapes, frame, bridge, temples."""
    return _draw_eyewear(face, rng, variant or ("clear" if rng.random() < 0.6 else "tinted"))


def draw_sunglasses(face: Face, rng: np.random.Generator, variant: str | None = None) -> tuple[Canvas, str]:
    """Sunglasses: opaque dark (or mirrored) lenses of several shapes."""
    return _draw_eyewear(face, rng, "sun")


# ---------------------------------------------------------------------------------------------
# scarf, hair


def draw_scarf(face: Face, rng: np.random.Generator, variant: str | None = None) -> tuple[Canvas, str]:
    """A patterned cloth band pulled over nose and mouth ('nose') or the chin ('chin'), wider than
    the face, sagging towards the sides, with folds."""
    lm, up, fw, fh = face.lm, face.up, face.face_width_px, face.face_height_px
    variant = variant or ("nose" if rng.random() < 0.6 else "chin")
    if variant == "nose":
        top = lm[28] + rng.uniform(0.2, 0.7) * (lm[30] - lm[28])
    else:
        top = lm[57] + rng.uniform(-0.1, 0.5) * (lm[8] - lm[57])
    along = rotate(face.right, rng.uniform(-10, 10))
    half = rng.uniform(0.8, 1.1) * fw
    s = np.linspace(-1.0, 1.0, 33)
    sag = rng.uniform(0.03, 0.15) * fh * s ** 2
    wave = rng.uniform(0.0, 0.025) * fh * np.sin(s * rng.uniform(6, 14) + rng.uniform(0, 6))
    edge = top + (s * half)[:, None] * along - ((sag + wave)[:, None]) * up
    down = -up * 2.0 * fh
    poly = np.concatenate([edge, edge[-1:] + down, edge[:1] + down])
    face, off = face.window(poly, 3)
    h, w = face.height, face.width
    alpha = fill_polys(h, w, [poly - off])
    ss, tt = face.local(top - off, along)
    period = rng.uniform(0.06, 0.2) * fw
    pat = pick(rng, ["stripes", "checks", "dots", "noise", "solid"], [0.3, 0.3, 0.1, 0.15, 0.15])
    colour, pat = pattern_colour(rng, ss, tt, period, pattern=pat)
    # vertical folds, wandering: a sine of the along-band coordinate with a noisy phase
    phase = ss * np.float32(2 * np.pi / (rng.uniform(0.2, 0.5) * fw)) + 3 * smooth_noise(rng, h, w, 0.3 * fw)
    folds = 1.0 + np.float32(rng.uniform(0.1, 0.22)) * np.sin(phase)
    knit = grain(rng, h, w) * np.float32(rng.uniform(2, 7))
    colour = colour * folds + knit
    canvas = Canvas(face)
    canvas.paint(alpha, colour)
    return canvas, f"{variant}_{pat}"


HAIR_VARIANTS = ("fringe", "strands", "side")


def draw_hair(face: Face, rng: np.random.Generator, variant: str | None = None) -> tuple[Canvas, str]:
    """Hair strands (cubic Beziers of the hair's colour) over the forehead, brows and eyes:
    a dense fringe, a few loose strands, or a lock swept from one side."""
    lm, up, right, fw, fh = face.lm, face.up, face.right, face.face_width_px, face.face_height_px
    variant = variant or HAIR_VARIANTS[int(rng.integers(0, 3))]
    brow = 0.5 * (lm[19] + lm[24])
    sweep = rng.uniform(-35, 35)
    if variant == "fringe":
        n, spread, length, root_up = int(rng.integers(120, 260)), 0.6, (0.45, 0.85), (0.35, 0.7)
    elif variant == "strands":
        n, spread, length, root_up = int(rng.integers(12, 45)), 0.45, (0.6, 1.1), (0.3, 0.6)
    else:
        side = 1.0 if rng.random() < 0.5 else -1.0
        n, spread, length, root_up = int(rng.integers(60, 160)), 0.18, (0.6, 1.0), (0.4, 0.7)
        brow = brow - side * right * 0.3 * fw
        sweep = side * rng.uniform(25, 55)
    roots = (brow + up[None] * rng.uniform(*root_up, n)[:, None] * fh
             + right[None] * rng.uniform(-spread, spread, n)[:, None] * fw)
    angles = np.radians(sweep + rng.normal(0, 7, n))
    down = -up
    dirs = (np.cos(angles)[:, None] * down[None] + np.sin(angles)[:, None] * np.array([down[1], -down[0]])[None])
    perp = np.stack([-dirs[:, 1], dirs[:, 0]], -1)
    L = rng.uniform(*length, n)[:, None] * fh
    curl = (rng.uniform(-0.12, 0.12) + rng.normal(0, 0.05, (n, 2))) * L
    p0, p3 = roots, roots + dirs * L
    p1 = p0 + dirs * L / 3 + perp * curl[:, :1]
    p2 = p0 + dirs * 2 * L / 3 + perp * curl[:, 1:]
    t = np.linspace(0, 1, 12)[None, :, None]
    curves = ((1 - t) ** 3 * p0[:, None] + 3 * (1 - t) ** 2 * t * p1[:, None] + 3 * (1 - t) * t ** 2 * p2[:, None]
              + t ** 3 * p3[:, None])  # (n, 12, 2)
    base = HAIR_BGR[int(rng.integers(0, len(HAIR_BGR)))] * rng.uniform(0.85, 1.15, 3).astype(np.float32)
    thick = max(1, int(round(fw / 220)))
    groups = rng.integers(0, 5, n)
    face, off = face.window(curves, thick + 3)
    curves = curves - off
    h, w = face.height, face.width
    # strands in five shades, darker first: coverage drawn anti-aliased, the shade index drawn
    # aliased on top (the AA fringe keeps index 0, the middle shade)
    cover, shade_idx = mask_u8(h, w), mask_u8(h, w)
    for g in range(5):
        members = [to_fixed(c) for c in curves[groups == g]]
        if members:
            cv2.polylines(cover, members, False, 255, thick, cv2.LINE_AA, SHIFT_BITS)
            cv2.polylines(shade_idx, members, False, g + 1, thick, cv2.LINE_8, SHIFT_BITS)
    shades = np.concatenate([[1.0], 0.7 + 0.15 * np.arange(5)]).astype(np.float32)
    canvas = Canvas(face)
    canvas.paint(as_alpha(cover), const(base) * shades[shade_idx])
    return canvas, variant
