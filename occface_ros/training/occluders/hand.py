"""An articulated hand on MediaPipe's 21-point topology, posed in 3-D, projected and drawn as bone
capsules + a palm polygon + a forearm, skin-textured.

Hand frame (units of palm length = wrist -> middle MCP, ~10 cm on an adult): x across the palm
towards the thumb, y from the wrist towards the fingers, z out of the palm. Finger flexion turns a
finger from +y towards +z (into a fist). The palm length is 0.95-1.35 x the outer-eye-corner
distance (~9.5 cm): a hand at the face's depth or a little nearer the camera.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ...core.hand_topology import BONE_PARENTS, FINGERS, WRIST
from .common import (SHIFT_BITS, Canvas, Face, as_alpha, const, grain, mask_u8, pick, random_colour, rotate,
                     skin_tone, smooth_noise, to_fixed)

# Anatomy (fractions of palm length): MCP positions, phalanx lengths (proximal, middle, distal),
# rest spread of each finger (degrees towards the thumb), capsule radii per phalanx.
FINGER_MCP_XY = np.array([[0.30, 0.93], [0.08, 1.00], [-0.13, 0.95], [-0.31, 0.83]])
FINGER_PHALANGES = np.array([[0.36, 0.22, 0.18], [0.40, 0.25, 0.19], [0.37, 0.24, 0.18], [0.29, 0.18, 0.16]])
FINGER_SPREAD_DEG = np.array([7.0, 0.0, -7.0, -14.0])
FINGER_RADII = np.array([[0.105, 0.095, 0.085]] * 3 + [[0.092, 0.084, 0.076]])
THUMB_CMC_XYZ = np.array([0.22, 0.18, 0.0])
THUMB_BONES = np.array([0.36, 0.30, 0.25])  # metacarpal, proximal, distal
THUMB_RADII = np.array([0.15, 0.12, 0.105])
PALM_OUTLINE_XY = np.array([[0.20, -0.02], [0.33, 0.30], [0.36, 0.92], [0.10, 1.03], [-0.14, 0.99],
                            [-0.35, 0.85], [-0.37, 0.40], [-0.26, -0.02]])
FOREARM_RADIUS = 0.27

PLACEMENTS = ("mouth", "eyes", "eye", "cheek", "chin", "hold_chin")
PLACEMENT_WEIGHTS = np.array([0.3, 0.12, 0.14, 0.16, 0.12, 0.16])
POSES = ("flat", "relaxed", "open", "fist", "point")


def _rotation(pitch_deg: float, yaw_deg: float) -> np.ndarray:
    a, b = math.radians(pitch_deg), math.radians(yaw_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    return ry @ rx


def _pose_angles(rng: np.random.Generator, pose: str):
    """(spread factor, (4, 3) finger flexions deg, thumb (abduction, opposition, flexion) deg)."""
    j = lambda lo, hi, n=4: rng.uniform(lo, hi, n)  # noqa: E731
    if pose == "flat":
        flex = np.stack([j(-5, 8), j(0, 10), j(0, 8)], 1)
        return rng.uniform(0.0, 0.6), flex, (rng.uniform(20, 40), rng.uniform(0, 20), rng.uniform(0, 15))
    if pose == "open":
        flex = np.stack([j(-5, 25), j(0, 35), j(0, 25)], 1)
        return rng.uniform(1.2, 2.6), flex, (rng.uniform(45, 75), rng.uniform(0, 30), rng.uniform(0, 20))
    if pose == "relaxed":
        flex = np.stack([j(10, 45), j(20, 60), j(10, 40)], 1) * np.linspace(0.8, 1.2, 4)[:, None]
        return rng.uniform(0.4, 1.4), flex, (rng.uniform(30, 60), rng.uniform(15, 45), rng.uniform(10, 35))
    fist = np.stack([j(75, 95), j(95, 110), j(45, 70)], 1)
    if pose == "point":
        fist[0] = (rng.uniform(0, 15), rng.uniform(0, 15), rng.uniform(0, 10))
        return rng.uniform(0.3, 0.8), fist, (rng.uniform(60, 90), rng.uniform(40, 60), rng.uniform(20, 40))
    return rng.uniform(0.2, 0.5), fist, (rng.uniform(85, 105), rng.uniform(45, 65), rng.uniform(15, 35))


def hand_joints(rng: np.random.Generator, pose: str) -> np.ndarray:
    """(21, 3) joints in the hand frame (palm-length units), MediaPipe order."""
    spread, flex, (abd, opp, tflex) = _pose_angles(rng, pose)
    z = np.array([0.0, 0.0, 1.0])
    joints = np.zeros((21, 3))
    for f, idx in enumerate(FINGERS):
        phi = math.radians(spread * FINGER_SPREAD_DEG[f] + rng.normal(0, 2.0))
        d0 = np.array([math.sin(phi), math.cos(phi), 0.0])
        p = np.array([FINGER_MCP_XY[f, 0], FINGER_MCP_XY[f, 1], 0.0])
        joints[idx[0]] = p
        theta = np.cumsum(np.radians(flex[f]))
        for k in range(3):
            p = p + FINGER_PHALANGES[f, k] * (math.cos(theta[k]) * d0 + math.sin(theta[k]) * z)
            joints[idx[k + 1]] = p
    a, o = math.radians(abd), math.radians(opp)
    d = np.array([math.sin(a) * math.cos(o), math.cos(a) * math.cos(o), math.sin(o)])
    bend = np.array([-1.0, 0.3, 0.8])  # thumb flexion turns it across the palm, towards the palm side
    bend = bend - np.dot(bend, d) * d
    bend /= np.linalg.norm(bend)
    p = THUMB_CMC_XYZ.copy()
    joints[1] = p
    theta = np.cumsum([0.0, math.radians(tflex), math.radians(tflex * 1.2)])
    for k in range(3):
        p = p + THUMB_BONES[k] * (math.cos(theta[k]) * d + math.sin(theta[k]) * bend)
        joints[2 + k] = p
    return joints


def _anchor_and_direction(rng: np.random.Generator, face: Face, placement: str):
    """(image target point, hand-frame anchor point (x, y), finger direction angle from `up` deg, pose)."""
    lm, iod = face.lm, face.iod_px
    side = 1.0 if rng.random() < 0.5 else -1.0
    sideways = side * rng.uniform(65, 115)
    jitter = rng.normal(0, 0.07 * iod, 2)
    if placement == "mouth":
        pose = pick(rng, ["flat", "relaxed", "open"], [0.45, 0.4, 0.15])
        angle = sideways if rng.random() < 0.6 else rng.uniform(-35, 35)
        return face.mouth + jitter, (0.0, 0.6), angle, pose
    if placement == "eyes":
        pose = pick(rng, ["flat", "relaxed"])
        return 0.5 * (face.eye_r + face.eye_l) + jitter, (0.0, 0.85), side * rng.uniform(75, 105), pose
    if placement == "eye":
        eye = face.eye_r if side < 0 else face.eye_l
        pose = pick(rng, ["flat", "relaxed", "open"])
        return eye + jitter, (0.0, 0.6), side * rng.uniform(-20, 60), pose
    if placement == "cheek":
        jaw = lm[3] if side < 0 else lm[13]
        pose = pick(rng, ["flat", "relaxed", "open", "point"], [0.35, 0.4, 0.15, 0.1])
        return 0.5 * (jaw + lm[30]) + jitter, (0.0, 0.55), side * rng.uniform(-40, 25), pose
    if placement == "chin":
        pose = pick(rng, ["flat", "relaxed", "fist"], [0.4, 0.4, 0.2])
        return 0.55 * lm[8] + 0.45 * lm[57] + jitter, (0.0, 0.6), sideways, pose
    # hold_chin: a fist (knuckles up) or a cupped hand under the chin
    pose = pick(rng, ["fist", "relaxed"], [0.6, 0.4])
    target = lm[8] - face.up * rng.uniform(0.0, 0.12) * face.face_height_px + jitter
    anchor = (0.05, 1.15) if pose == "fist" else (0.0, 0.75)
    return target, anchor, rng.uniform(-30, 30), pose


def draw_hand(face: Face, rng: np.random.Generator, placement: str | None = None) -> tuple[Canvas, str]:
    """One posed hand over the face -> (canvas, variant 'placement/pose')."""
    if placement is None:
        placement = pick(rng, PLACEMENTS, PLACEMENT_WEIGHTS)
    target, anchor_xy, angle_deg, pose = _anchor_and_direction(rng, face, placement)
    joints = hand_joints(rng, pose)
    mirror = 1.0 if rng.random() < 0.5 else -1.0  # left or right hand
    facing = 1.0 if rng.random() < 0.55 else -1.0  # palm (+1) or back of the hand towards the camera
    rot = _rotation(rng.uniform(-30, 30), rng.uniform(-45, 45))
    palm_px = rng.uniform(0.95, 1.35) * face.iod_px

    finger_dir = rotate(face.up, angle_deg)  # image direction of hand +y
    across = np.array([-finger_dir[1], finger_dir[0]]) * mirror  # image direction of hand +x

    def project(p3):
        q = np.atleast_2d(p3) @ rot.T
        return q[:, :1] * across + q[:, 1:2] * finger_dir, q[:, 2] * facing

    anchor_img, _ = project(np.array([anchor_xy[0], anchor_xy[1], 0.0]))
    origin = target - palm_px * anchor_img[0]

    def image_xy(p3):
        xy, depth = project(p3)
        return origin + palm_px * xy, depth

    joints_xy, joints_depth = image_xy(joints)
    palm_xy, _ = image_xy(np.c_[PALM_OUTLINE_XY, np.zeros(len(PALM_OUTLINE_XY))])
    forearm_len = rng.uniform(1.2, 2.2)
    elbow_xy, _ = image_xy(np.array([rng.uniform(-0.3, 0.3), -forearm_len, rng.uniform(-0.5, 0.5)]))
    face, off = face.window(np.concatenate([joints_xy, palm_xy, elbow_xy]), 0.45 * palm_px + 3)
    joints_xy, palm_xy, elbow_xy, target = joints_xy - off, palm_xy - off, elbow_xy - off, target - off
    h, w = face.height, face.width

    # parts: forearm, palm, thumb, four fingers; painter's order (farthest first). Each part's
    # capsules are drawn outline-first, so parts (not phalanges) get an outline where they overlap.
    radii = {}
    for f, idx in enumerate(FINGERS):
        for k in range(3):
            radii[idx[k + 1]] = FINGER_RADII[f, k]
    for k in range(3):
        radii[2 + k] = THUMB_RADII[k]
    radii[1] = 0.17  # thenar eminence (wrist -> thumb CMC)
    parts = [(-9.0, "forearm", [(joints_xy[WRIST], elbow_xy[0], FOREARM_RADIUS * palm_px)]), (0.0, "palm", palm_xy)]
    for chain in ((1, 2, 3, 4),) + FINGERS:
        bones = [(joints_xy[BONE_PARENTS[c - 1]], joints_xy[c], radii[c] * palm_px) for c in chain
                 if BONE_PARENTS[c - 1] != WRIST or c == 1]  # metacarpals lie inside the palm polygon
        depth = float(np.mean(joints_depth[list(chain)])) + 0.01
        parts.append((depth, "finger", bones))
    parts.sort(key=lambda p: p[0])

    cover = mask_u8(h, w)
    shade = np.full((h, w), 255, np.uint8)
    sleeve = mask_u8(h, w)
    edge_px = max(1, int(round(0.025 * palm_px)))
    edge_value, body_value = 200, 255
    has_sleeve = rng.random() < 0.4

    def line(img, a, b, value, th):
        cv2.line(img, a, b, value, max(1, int(round(th))), cv2.LINE_AA, SHIFT_BITS)

    def fixed(p):
        return tuple(to_fixed(p).tolist())

    for _, kind, payload in parts:
        if kind == "palm":
            poly = [to_fixed(payload)]
            cv2.fillPoly(cover, poly, 255, cv2.LINE_AA, SHIFT_BITS)
            cv2.fillPoly(shade, poly, body_value, cv2.LINE_AA, SHIFT_BITS)
            cv2.polylines(shade, poly, True, edge_value, edge_px, cv2.LINE_AA, SHIFT_BITS)
            cv2.fillPoly(sleeve, poly, 0, cv2.LINE_AA, SHIFT_BITS)
            continue
        ends = to_fixed(np.array([[a, b] for a, b, _ in payload])).tolist()
        for (a, b), (_, _, r) in zip(ends, payload):
            line(cover, a, b, 255, 2 * r)
            line(sleeve, a, b, 0, 2 * r)
            line(shade, a, b, edge_value, 2 * r)
        for (a, b), (_, _, r) in zip(ends, payload):
            line(shade, a, b, body_value, 2 * r - 2 * edge_px)
        if kind == "forearm" and has_sleeve:  # a sleeve from a little above the wrist
            a, b, r = payload[0]
            s0 = a + rng.uniform(0.25, 0.6) * (b - a)
            line(sleeve, fixed(s0), fixed(b), 255, 2.5 * r)
            line(cover, fixed(s0), fixed(b), 255, 2.5 * r)
        if kind == "finger" and facing < 0:  # a nail on the back of an extended fingertip
            a, b, r = payload[-1]
            line(shade, fixed(b + 0.55 * (a - b)), fixed(b + 0.12 * (a - b)), 240, 0.9 * r)

    alpha = as_alpha(cover)
    skin = skin_tone(rng, face)
    # shading: rounded (distance to the silhouette), part outlines, a light gradient, blotches, grain
    dist = cv2.distanceTransform((cover > 127).astype(np.uint8), cv2.DIST_L2, 3)
    rounded = 0.8 + 0.22 * np.clip(dist / (0.12 * palm_px), 0.0, 1.0)
    light = rotate(face.up, rng.uniform(0, 360))
    ramp, _ = face.local(target, light)
    gradient = 1.0 + np.float32(rng.uniform(0.05, 0.2)) * np.clip(ramp / np.float32(palm_px), -1.5, 1.5)
    outline = cv2.GaussianBlur(shade, (0, 0), max(0.5, 0.01 * palm_px)).astype(np.float32) * np.float32(1.0 / 255.0)
    tone = rounded * outline * gradient
    blotch = smooth_noise(rng, h, w, 0.25 * palm_px) * const([0.02, 0.03, 0.045])  # redder blotches
    colour = const(skin) * (tone + blotch) + grain(rng, h, w) * np.float32(rng.uniform(1.5, 4.5))
    if has_sleeve:
        cloth = random_colour(rng, val=(0.1, 0.8))
        s = as_alpha(sleeve)
        colour = colour * (1 - s) + const(cloth) * (rounded * gradient * s)
    canvas = Canvas(face)
    canvas.paint(alpha, colour)
    return canvas, f"{placement}/{pose}"
