"""Held or floating objects: bars, cups, phones, microphones, random textured shapes."""
from __future__ import annotations

import math

import cv2
import numpy as np

from .common import (SHIFT_BITS, Canvas, Face, as_alpha, const, pick, ellipse_points, fill_polys, grain, image_patch,
                     mask_u8, pattern_colour, random_colour, rotate, rounded_rect, smooth_noise, to_fixed, unit)


def _face_point(face: Face, rng: np.random.Generator, spread: float = 0.5) -> np.ndarray:
    """A random point on the face: the face centre plus up to `spread` face sizes along each axis."""
    centre = 0.5 * (0.5 * (face.lm[19] + face.lm[24]) + face.lm[8])
    return (centre + face.right * rng.uniform(-spread, spread) * face.face_width_px
            + face.up * rng.uniform(-spread, spread) * face.face_height_px)


def _texture(face: Face, rng: np.random.Generator, s: np.ndarray, t: np.ndarray, period: float):
    """A random surface: a two-colour pattern, or a piece of the image itself (real texture)."""
    if rng.random() < 0.25:
        return image_patch(rng, face), "photo"
    return pattern_colour(rng, s, t, period)


def draw_bar(face: Face, rng: np.random.Generator, variant: str | None = None) -> tuple[Canvas, str]:
    """A textured rectangle of random size and angle anywhere over the face."""
    centre = _face_point(face, rng, 0.4)
    along = rotate(face.right, rng.uniform(0, 180))
    half_len = rng.uniform(0.3, 1.0) * face.face_width_px
    half_wid = rng.uniform(0.04, 0.2) * face.face_height_px
    poly = rounded_rect(centre, along, half_len, half_wid, rng.uniform(0, 0.3) * half_wid)
    win, off = face.window(poly, 3)
    s, t = win.local(centre - off, along)
    colour, pat = _texture(win, rng, s, t, rng.uniform(0.1, 0.5) * half_len)
    shade = 1.0 - rng.uniform(0, 0.35) * np.minimum(t * t * np.float32(1 / half_wid ** 2), 1)  # a rounded bar
    canvas = Canvas(win)
    canvas.paint(fill_polys(win.height, win.width, [poly - off]), colour * shade)
    return canvas, pat


def draw_cup(face: Face, rng: np.random.Generator, variant: str | None = None) -> tuple[Canvas, str]:
    """A cup or mug (tapered cylinder, rim, handle) held at the mouth, tilted as when drinking."""
    radius = rng.uniform(0.32, 0.48) * face.iod_px  # ~8 cm across
    height = radius * rng.uniform(2.0, 3.0)
    axis = rotate(face.up, rng.uniform(-40, 40))  # bottom -> rim
    rim = face.mouth + rng.normal(0, 0.08 * face.iod_px, 2) + axis * rng.uniform(0.05, 0.35) * height
    bottom = rim - axis * height
    across = np.array([-axis[1], axis[0]])
    across_deg = math.degrees(math.atan2(across[1], across[0]))
    taper = rng.uniform(0.75, 1.0)
    rim_ratio = rng.uniform(0.15, 0.35)  # rim ellipse minor/major (the cup seen from a little above)
    rim_poly = ellipse_points(rim, (radius, radius * rim_ratio), across_deg)
    bottom_arc = ellipse_points(bottom, (radius * taper, radius * taper * rim_ratio), across_deg, 24, 0, 180)
    if np.dot(bottom_arc[0] - bottom, across) < 0:
        bottom_arc = bottom_arc[::-1]
    body = np.concatenate([[rim + across * radius], bottom_arc, [rim - across * radius]])
    side = 1.0 if rng.random() < 0.5 else -1.0
    handle_c = bottom + axis * 0.55 * height + across * side * radius * 1.05
    handle_axes = (0.35 * radius, 0.28 * height)
    handle_th = max(2, int(0.22 * radius))
    win, off = face.window(np.concatenate([body, rim_poly, [handle_c]]), max(handle_axes) + handle_th + 3)
    h, w = win.height, win.width
    s, t = win.local(bottom - off, axis)  # s along the axis, t across
    colour, pat = pattern_colour(rng, s, t, rng.uniform(0.3, 1.0) * radius,
                                 pattern=pick(rng, ["solid", "stripes", "dots", "noise"], [0.5, 0.2, 0.15, 0.15]))
    x = np.clip(t * np.float32(1 / radius), -1, 1)
    light = np.float32(rng.uniform(-0.6, 0.6))
    d = (x - light) * np.float32(1 / 0.12)
    cyl = 0.55 + 0.45 * np.sqrt(1 - x * x) + 0.5 / (1 + d * d)  # cylinder shading + a specular streak
    canvas = Canvas(win)
    handle = mask_u8(h, w)
    ang = math.degrees(math.atan2(axis[1], axis[0]))
    cv2.ellipse(handle, tuple(to_fixed(handle_c - off)), tuple(int(v * 16) for v in handle_axes), ang + 90, 0, 360,
                255, handle_th, cv2.LINE_AA, SHIFT_BITS)
    rim_w = rim - off
    base = colour[:, int(np.clip(rim_w[1], 0, h - 1)), int(np.clip(rim_w[0], 0, w - 1))]
    canvas.paint(as_alpha(handle), base * 0.85)
    canvas.paint(fill_polys(h, w, [body - off, rim_poly - off]), colour * cyl)
    inside = ellipse_points(rim_w, (radius * 0.9, radius * rim_ratio * 0.8), across_deg)
    canvas.paint(fill_polys(h, w, [inside]), random_colour(rng, sat=(0.3, 0.9), val=(0.1, 0.5)))
    return canvas, pat


def draw_phone(face: Face, rng: np.random.Generator, variant: str | None = None) -> tuple[Canvas, str]:
    """A phone (rounded rectangle; screen or back with camera) at the ear ('ear') or held in front
    of the mouth or a cheek ('front')."""
    variant = variant or ("ear" if rng.random() < 0.5 else "front")
    length = rng.uniform(1.1, 1.4) * face.iod_px * 1.55  # ~15 cm
    width = length * rng.uniform(0.45, 0.52)
    if variant == "ear":
        side = 1.0 if rng.random() < 0.5 else -1.0
        ear = face.lm[1] if side < 0 else face.lm[15]
        mouth_corner = face.lm[48] if side < 0 else face.lm[54]
        along = unit(mouth_corner - ear + face.up * rng.uniform(-0.3, 0.5) * face.face_height_px)
        centre = ear + along * length * rng.uniform(0.2, 0.4) + face.right * side * rng.uniform(0.0, 0.15) * length
        width *= rng.uniform(0.35, 0.7)  # seen edge-on-ish
    else:
        target = face.mouth if rng.random() < 0.6 else 0.5 * (face.lm[3 if rng.random() < 0.5 else 13] + face.lm[30])
        centre = target + rng.normal(0, 0.15 * face.iod_px, 2) - face.up * rng.uniform(0.0, 0.4) * length
        along = rotate(face.up, rng.uniform(-30, 30) + (90 if rng.random() < 0.25 else 0))
        width *= rng.uniform(0.8, 1.0)
    corner = rng.uniform(0.08, 0.2) * width
    outline = rounded_rect(centre, along, 0.5 * length, 0.5 * width, corner)
    win, off = face.window(outline, 3)
    h, w = win.height, win.width
    c = centre - off
    canvas = Canvas(win)
    body = random_colour(rng, sat=(0.0, 0.5), val=(0.05, 0.9))
    s, t = win.local(c, along)
    sheen = 1.0 + np.clip(s * np.float32(0.15 / length), -0.075, 0.075) + 0.02 * grain(rng, h, w)
    canvas.paint(fill_polys(h, w, [outline - off]), const(body) * sheen)
    bezel = rng.uniform(0.04, 0.08) * width
    if rng.random() < 0.5:  # screen facing the camera: dark glass with a glare
        screen = rounded_rect(c, along, 0.5 * length - bezel, 0.5 * width - bezel, max(corner - bezel, 0))
        g = (s * 0.6 + t) * np.float32(1 / (0.25 * width)) - np.float32(rng.uniform(-1.5, 1.5))
        glass = np.float32(rng.uniform(5, 40)) + np.float32(rng.uniform(30, 90)) / (1 + g * g)
        canvas.paint(fill_polys(h, w, [screen]), const([1.1, 1.0, 0.95]) * glass)
        name = "screen"
    else:  # the back: camera lenses near one corner
        lens_r = 0.1 * width
        c0 = c + along * (0.5 * length - 2.2 * lens_r) + np.array([-along[1], along[0]]) * (0.5 * width - 2.2 * lens_r)
        lenses = [ellipse_points(c0 - along * k * 2.4 * lens_r, (lens_r, lens_r), 0, 20)
                  for k in range(int(rng.integers(1, 4)))]
        canvas.paint(fill_polys(h, w, lenses), np.float32([25, 25, 28]))
        name = "back"
    return canvas, f"{variant}_{name}"


def draw_microphone(face: Face, rng: np.random.Generator, variant: str | None = None) -> tuple[Canvas, str]:
    """A hand-held microphone: a meshed ball on a tapered handle, near the mouth."""
    r = rng.uniform(0.2, 0.3) * face.iod_px  # ~5 cm ball
    direction = rotate(-face.up, rng.uniform(-70, 70))  # from the mouth towards where the ball sits
    ball = face.mouth + direction * rng.uniform(0.0, 0.9) * face.iod_px
    handle_dir = (rotate(direction, rng.uniform(-30, 30)) if np.dot(direction, -face.up) > 0.3
                  else rotate(-face.up, rng.uniform(-30, 30)))
    end = ball + handle_dir * (r + r * rng.uniform(3.5, 5.5))
    across = np.array([-handle_dir[1], handle_dir[0]])
    start = ball + handle_dir * 0.7 * r
    handle = np.stack([start + across * 0.55 * r, end + across * 0.35 * r, end - across * 0.35 * r,
                       start - across * 0.55 * r])
    sphere_poly = ellipse_points(ball, (r, r), 0, 40)
    win, off = face.window(np.concatenate([handle, sphere_poly]), 3)
    h, w = win.height, win.width
    canvas = Canvas(win)
    s, t = win.local(ball - off, handle_dir)
    body_colour = random_colour(rng, sat=(0.0, 0.3), val=(0.05, 0.5))
    d = t * np.float32(1 / (0.35 * r)) - 0.5
    canvas.paint(fill_polys(h, w, [handle - off]), const(body_colour) * (0.7 + 0.5 / (1 + d * d)))
    d2 = (s * s + t * t) * np.float32(1 / r ** 2)
    sphere = np.sqrt(np.clip(1.0 - d2, 0, 1))
    period = np.float32(1 / (r * rng.uniform(0.18, 0.3)))
    # a diamond mesh: thin dark lines where either diagonal coordinate is near a half period
    fa = np.abs(np.mod((s + t) * period, 1.0) - 0.5)
    fb = np.abs(np.mod((s - t) * period, 1.0) - 0.5)
    mesh = np.float32(rng.uniform(130, 210)) * (0.45 + 0.55 * sphere) * (1.0 - 0.5 * (np.minimum(fa, fb) > 0.36))
    canvas.paint(fill_polys(h, w, [sphere_poly - off]), mesh[None])
    return canvas, "ball"


def draw_shape(face: Face, rng: np.random.Generator, variant: str | None = None) -> tuple[Canvas, str]:
    """1-3 random textured polygons or ellipses anywhere over the face."""
    shapes = []
    for _ in range(int(rng.integers(1, 4))):
        centre = _face_point(face, rng, 0.45)
        size = rng.uniform(0.12, 0.4) * face.face_width_px
        if rng.random() < 0.5:
            poly = ellipse_points(centre, (size, size * rng.uniform(0.3, 1.0)), rng.uniform(0, 180), 40)
            shapes.append(("ellipse", poly, centre, size))
        else:
            k = int(rng.integers(3, 10))
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            rad = size * rng.uniform(0.4, 1.0, k)
            shapes.append(("polygon", centre + np.stack([np.cos(ang) * rad, np.sin(ang) * rad], -1), centre, size))
    win, off = face.window(np.concatenate([p for _, p, _, _ in shapes]), 3)
    h, w = win.height, win.width
    canvas = Canvas(win)
    for _, poly, centre, size in shapes:
        s, t = win.local(centre - off, rotate(face.right, rng.uniform(0, 180)))
        colour, _ = _texture(win, rng, s, t, rng.uniform(0.1, 0.5) * size)
        colour = colour * (1.0 + 0.1 * smooth_noise(rng, h, w, size))
        canvas.paint(fill_polys(h, w, [poly - off]), colour)
    return canvas, "+".join(name for name, _, _, _ in shapes)
