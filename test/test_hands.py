"""Hands: palm detection, hand landmarks, tracking and the silhouette mask on real photos.

test/data/hand_annotations.json holds annotations drawn by eye on sample photos (see its
"_about"): ultralytics' zidane.jpg (a pointing left hand) and bus.jpg (a hand on a chest), and
insightface's t1.jpg (a card table with seven visible hands; the polygon is the hand holding a chip).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from occface_ros import nets
from occface_ros.detection.ssd import Detections
from occface_ros.app.samples import sample_path
from occface_ros.contracts import Hands
from occface_ros.occlusion.hand_silhouettes import _capsules, _triangles, hand_mask, palm_size_px
from occface_ros.tracking.hands import TRACK_ROI_LANDMARKS, HandTracker, rois_from_hand_landmarks, rois_from_palms

pytestmark = pytest.mark.unit

ANNOTATIONS = json.loads((Path(__file__).parent / "data" / "hand_annotations.json").read_text())


def _image(name: str) -> tuple[np.ndarray, torch.Tensor]:
    bgr = cv2.imread(str(sample_path(*ANNOTATIONS[name]["sample"])), cv2.IMREAD_COLOR)
    return bgr, _to_tensor(bgr)


def _to_tensor(bgr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float() / 255.0


def _polygon_mask(points, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(np.asarray(points, np.float64) * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    return mask.astype(bool)


def _select(hands: Hands, i: int) -> Hands:
    return Hands(hands.landmarks21[i : i + 1], hands.score[i : i + 1], hands.handedness[i : i + 1])


def _in_box(point, box) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


@pytest.fixture(scope="module")
def detector():
    return HandTracker({"enabled": True, "max_hands": 8, "redetect_every": 0})  # off in the default config


def _detect(detector: HandTracker, image: torch.Tensor, max_hands: int = 8) -> Hands:
    """Hands in a single photo (no tracking history)."""
    detector.max_hands, detector.redetect_every = max_hands, 0
    detector.reset()
    return detector(image)


_FOUND: dict[str, Hands] = {}


def _photo_hands(detector: HandTracker, name: str) -> Hands:
    """Hands in an annotated photo, detected once per test session."""
    if name not in _FOUND:
        _FOUND[name] = _detect(detector, _image(name)[1])
    return _FOUND[name]


def test_palm_detector_is_mediapipe_palm_detection_full(detector):
    palm = detector.palm_detector.detector
    assert palm.input_size == (192, 192)
    assert palm.anchors.shape == (2016, 4) and palm.num_keypoints == 7
    assert palm.scale.tolist() == [192.0, 192.0]  # x/y/w/h_scale 192
    spec = nets.MODELS["palm_detector"]
    assert spec.anchors.strides == (8, 16, 16, 16) and spec.anchors.fixed_anchor_size
    assert detector.palm_detector.nms_iou == 0.3


def test_hands_are_found_where_they_are(detector):
    for name, needed in [("t1", {"ross_raised", "chandler_chip"}), ("zidane", {"pointing_left_hand"}),
                         ("bus", {"hand_on_chest"})]:
        hands = _photo_hands(detector, name)
        boxes = ANNOTATIONS[name]["hand_boxes"]
        found = set()
        for i in range(len(hands)):
            centre = hands.landmarks21[i, :, :2].mean(0).tolist()
            inside = [k for k, box in boxes.items() if _in_box(centre, box)]
            assert inside, f"{name}: a hand at {centre} where no hand is"
            found.update(inside)
            assert float(hands.score[i]) >= 0.5
        assert needed <= found, f"{name}: found {found}, expected {needed}"
    # Zidane points with his left hand, the index fingertip at the annotated point
    hands = _photo_hands(detector, "zidane")
    assert len(hands) == 1 and float(hands.handedness[0]) < 0.5
    tip = hands.landmarks21[0, 8, :2].numpy()
    assert np.linalg.norm(tip - ANNOTATIONS["zidane"]["index_tip"]) < 8.0


@pytest.mark.parametrize("name", ["zidane", "t1"])
def test_hand_mask_covers_the_hand_drawn_polygon(detector, name):
    height, width = _image(name)[0].shape[:2]
    truth = _polygon_mask(ANNOTATIONS[name]["hand"], height, width)
    counted = ~_polygon_mask(ANNOTATIONS[name]["ignore"], height, width)
    hands = _photo_hands(detector, name)
    masks = [hand_mask(_select(hands, i), height, width).numpy() for i in range(len(hands))]
    mask = max(masks, key=lambda m: (m & truth).sum())  # the hand this polygon annotates
    inter = (mask & truth & counted).sum()
    iou = inter / ((mask | truth) & counted).sum()
    precision, recall = inter / (mask & counted).sum(), inter / (truth & counted).sum()
    assert iou > 0.75 and precision > 0.8 and recall > 0.8, (iou, precision, recall)
    # all hands together: no other hand's silhouette spills onto this one
    both = hand_mask(hands, height, width).numpy()
    assert (both & truth).sum() == (mask & truth).sum()
    assert both.dtype == bool and both.shape == (height, width)


def test_no_hands_on_face_photos_without_hands(detector, annotated_photos):
    for photo in annotated_photos:  # breakingbad, einstein, lenna, takeo
        hands = _detect(detector, _to_tensor(photo.image_bgr), max_hands=2)
        assert len(hands) == 0, photo.name
        assert hand_mask(hands, *photo.image_bgr.shape[:2]).sum() == 0


def test_tracking_follows_a_moving_hand_without_palm_detection(detector):
    bgr, _ = _image("zidane")
    step = np.array([9, 5])
    frames = [bgr[40 + k * step[1] : 520 + k * step[1], 600 + k * step[0] : 1240 + k * step[0]] for k in range(5)]
    # frame k shows the scene moved by -k * step: a hand tracked from landmarks must follow it
    detector.max_hands, detector.redetect_every = 2, 0  # palm detection only while no hand is tracked
    detector.reset()
    before = detector.palm_detections
    first = None
    for k, frame in enumerate(frames):
        hands = detector(_to_tensor(frame))
        assert len(hands) == 1 and float(hands.score[0]) > 0.9, k
        scene = hands.landmarks21[0, :, :2].numpy() + k * step  # back into frame-0 coordinates
        first = scene if first is None else first
        # the crop changes from frame to frame (palm ROI, then landmark ROIs): ~2 px of jitter
        assert np.abs(scene - first).mean() < 0.05 * float(palm_size_px(hands.landmarks21)[0]), k
    assert detector.palm_detections - before == 1
    # with fewer hands than max_hands, the palm detector runs again every `redetect_every` frames
    detector.redetect_every = 2
    detector.reset()
    before = detector.palm_detections
    for frame in frames:
        assert len(detector(_to_tensor(frame))) == 1
    assert detector.palm_detections - before == 2  # frames 0 and 3 (2 frames between detections)


def test_rois_follow_mediapipe_rect_calculators(detector):
    hands = _photo_hands(detector, "zidane")
    height, width = _image("zidane")[0].shape[:2]
    # literal transcription of HandLandmarksToRectCalculator + RectTransformationCalculator
    lm = hands.landmarks21[0, list(TRACK_ROI_LANDMARKS), :2].double().numpy()
    n = (lm + 0.5) / [width, height]  # normalised, pixel centres at +0.5
    x0, y0 = n[0, 0] * width, n[0, 1] * height
    x1 = ((n[4, 0] + n[8, 0]) / 2 + n[6, 0]) / 2 * width
    y1 = ((n[4, 1] + n[8, 1]) / 2 + n[6, 1]) / 2 * height
    rotation = math.pi / 2 - math.atan2(-(y1 - y0), x1 - x0)
    rotation -= 2 * math.pi * math.floor((rotation + math.pi) / (2 * math.pi))
    acx, acy = (n[:, 0].max() + n[:, 0].min()) / 2, (n[:, 1].max() + n[:, 1].min()) / 2
    ox, oy = (n[:, 0] - acx) * width, (n[:, 1] - acy) * height
    c, s = math.cos(-rotation), math.sin(-rotation)
    px, py = ox * c - oy * s, ox * s + oy * c
    pcx, pcy = (px.max() + px.min()) / 2, (py.max() + py.min()) / 2
    cx = pcx * math.cos(rotation) - pcy * math.sin(rotation) + width * acx
    cy = pcx * math.sin(rotation) + pcy * math.cos(rotation) + height * acy
    w, h = (px.max() - px.min()), (py.max() - py.min())  # pixels
    cx += -h * -0.1 * math.sin(rotation)
    cy += h * -0.1 * math.cos(rotation)
    expected = [cx - 0.5, cy - 0.5, max(w, h) * 2.0, rotation]
    assert np.allclose(rois_from_hand_landmarks(hands.landmarks21[:1])[0].double().numpy(), expected, atol=1e-3)

    # palm ROI: wrist -> middle MCP pointing up gives no rotation; the box moves up by half its height
    box = torch.tensor([[100.0, 200.0, 140.0, 250.0]])
    up = torch.zeros(1, 7, 2)
    up[0, 0], up[0, 2] = torch.tensor([120.0, 245.0]), torch.tensor([120.0, 205.0])
    roi = rois_from_palms(Detections(torch.ones(1), box, up))[0]
    assert torch.allclose(roi, torch.tensor([120.0, 200.0, 50 * 2.6, 0.0]), atol=1e-4)
    # fingers pointing right (+x): rotation +90 deg, the box moves right (towards the fingers)
    right = torch.zeros(1, 7, 2)
    right[0, 0], right[0, 2] = torch.tensor([100.0, 225.0]), torch.tensor([140.0, 225.0])
    roi = rois_from_palms(Detections(torch.ones(1), box, right))[0]
    assert torch.allclose(roi, torch.tensor([145.0, 225.0, 130.0, math.pi / 2]), atol=1e-4)


def test_hand_mask_matches_a_per_pixel_reference(detector):
    hands = _photo_hands(detector, "zidane")
    # the real hand, scaled into a small image and cut by its left border
    lm = hands.landmarks21.clone()
    lm[..., :3] = (lm[..., :3] - lm[:, :1, :3]) * 0.5
    lm[..., 0] += 8.0
    lm[..., 1] += 40.0
    small = Hands(lm, hands.score, hands.handedness)
    height, width = 72, 96
    mask = hand_mask(small, height, width).numpy()
    xy = lm[..., :2]
    a, b, r = (t.double().numpy() for t in _capsules(xy, palm_size_px(lm)))
    tri = _triangles(xy, palm_size_px(lm)).double().numpy()
    # reference: every pixel centre tested against every shape (numpy over the pixel grid)
    gy, gx = np.mgrid[0:height, 0:width]
    p = np.stack([gx, gy], -1).astype(float)
    reference = np.zeros((height, width), bool)
    for ai, bi, ri in zip(a, b, r):
        t = np.clip(((p - ai) @ (bi - ai)) / max(np.dot(bi - ai, bi - ai), 1e-12), 0, 1)
        reference |= np.linalg.norm(p - ai - t[..., None] * (bi - ai), axis=-1) <= ri
    for v in tri:
        cross = []
        for i in range(3):
            e = v[(i + 1) % 3] - v[i]
            cross.append(e[0] * (p[..., 1] - v[i, 1]) - e[1] * (p[..., 0] - v[i, 0]))
        cross = np.stack(cross, -1)
        reference |= (cross >= 0).all(-1) | (cross <= 0).all(-1)
    assert reference[:, 0].any() and reference.sum() > 500  # the hand crosses the border
    differ = mask ^ reference
    # only edge pixels may differ (cv2 rounds shape edges): each within one pixel of the reference boundary
    grown = cv2.dilate(reference.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    shrunk = cv2.erode(reference.astype(np.uint8), np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE).astype(bool)
    assert not (differ & ~(grown & ~shrunk)).any()
    assert (mask & reference).sum() / (mask | reference).sum() > 0.93
    # every landmark inside the image lies in the silhouette
    for x, y in np.round(xy[0].numpy()).astype(int):
        if 0 <= x < width and 0 <= y < height:
            assert mask[y, x]


def test_config_keys_and_disabled_stage():
    with pytest.raises(ValueError, match="unknown hand config"):
        HandTracker({"max_hand": 2})
    off = HandTracker({"enabled": False})
    assert off.palm_detector is None and off.landmarker is None
    hands = off(torch.rand(3, 48, 64))
    assert len(hands) == 0 and hands.landmarks21.shape == (0, 21, 3)
    assert hand_mask(hands, 48, 64).shape == (48, 64) and not hand_mask(hands, 48, 64).any()
