"""Hard negatives for the face-presence score: what the face detectors fire on in `train` photos
away from every face.

The engine's plain negatives (photo regions, procedural textures) are easy; the crops a tracker
really has to reject are the detectors' own false alarms, at the low scores that occluded faces
also get. Each `train` photo whose every face the teacher found (`samples.complete_photos`) is
searched by the short- and full-range detectors at `min_score`, on the whole photo and on four
overlapping windows of `window_fraction` of its size (the detectors letterbox, so a window is
another scale). A detection is a negative when it lies clear of every teacher face (its box
overlaps no face box by more than `max_overlap` of its own area) and converted FaceMesh, on the
tracker's crop of it, does not call it a face (presence < `facemesh_max_presence`: a face the
manifest does not count, in the background of a photo, stays out). In the pool's scenes without a
human face (photo_pool.scenes_without_faces) every detection is a negative, animal faces included.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .samples import TeacherFace, complete_photos


@dataclass
class NegativeRoi:
    """A detector's false alarm in a `train` photo, as the tracker would crop it."""

    photo_id: str
    identity: str  # the photo's first face: the validation split follows the photo
    image_bgr: np.ndarray
    roi: np.ndarray  # (4,) cx, cy, side, angle in image pixels (rois_from_detections)
    score: float  # the detector's


def _face_boxes(faces: list[TeacherFace]) -> torch.Tensor:
    """(N, 4) boxes of the teacher faces' 468 points, grown by a quarter on each side (hair, chin)."""
    boxes = []
    for f in faces:
        lo, hi = f.landmarks468[:, :2].min(0), f.landmarks468[:, :2].max(0)
        pad = 0.25 * (hi - lo)
        boxes.append(np.r_[lo - pad, hi + pad])
    return torch.tensor(np.array(boxes), dtype=torch.float32)


def _windows(height: int, width: int, fraction: float) -> list[tuple[int, int, int, int]]:
    """The whole image and its four corner windows (x0, y0, x1, y1) of `fraction` of each side."""
    out = [(0, 0, width, height)]
    if fraction < 1.0:
        ww, wh = int(round(width * fraction)), int(round(height * fraction))
        out += [(x0, y0, x0 + ww, y0 + wh) for y0 in (0, height - wh) for x0 in (0, width - ww)]
    return out


def _detections(image: np.ndarray, detectors, window_fraction: float, roi_scale: float):
    """(boxes (N, 4), ROIs (N, 4), scores (N,)) of every detector on the image and its windows."""
    from ..core.roi import FrameImage
    from ..detection.ssd import rois_from_detections

    boxes, rois, scores = [], [], []
    height, width = image.shape[:2]
    for x0, y0, x1, y1 in _windows(height, width, window_fraction):
        window = FrameImage(np.ascontiguousarray(image[y0:y1, x0:x1])).tensor
        for detector in detectors:
            det = detector(window)
            if len(det):
                det.boxes = det.boxes + torch.tensor([x0, y0, x0, y0], dtype=det.boxes.dtype)
                det.keypoints = det.keypoints + torch.tensor([x0, y0], dtype=det.keypoints.dtype)
                boxes.append(det.boxes)
                rois.append(rois_from_detections(det, roi_scale))
                scores.append(det.scores)
    if not boxes:
        return torch.zeros(0, 4), torch.zeros(0, 4), torch.zeros(0)
    return torch.cat(boxes), torch.cat(rois), torch.cat(scores)


def detector_negatives(faces: list[TeacherFace], scenes: list[tuple[str, np.ndarray]] = (), min_score: float = 0.1,
                       max_overlap: float = 0.1, window_fraction: float = 0.6, facemesh_max_presence: float = 0.1,
                       progress: bool = True) -> list[NegativeRoi]:
    """The detectors' false alarms in the photos of `faces` and in `scenes` ((id, BGR image) without
    a human face: photo_pool.scenes_without_faces, where every detection is one); see the module
    docstring."""
    from tqdm import tqdm

    from .. import nets
    from ..core.roi import FrameImage
    from ..detection.ssd import SsdDetector
    from ..landmarks.facemesh import FaceLandmarker

    detectors = [SsdDetector(nets.load_detector(name, backend="eager"), min_score, 0.3)
                 for name in ("face_detector_short", "face_detector_full")]
    facemesh = FaceLandmarker(nets.load_network("face_landmarks", backend="eager"))
    out: list[NegativeRoi] = []
    # only photos whose every face the teacher found: a face it missed could be called a negative
    for photo_faces in tqdm(complete_photos(faces), desc="hard negatives (detector false alarms)", unit="photo",
                            disable=not progress):
        image = photo_faces[0].image_bgr
        boxes, rois, scores = _detections(image, detectors, window_fraction, facemesh.roi_scale)
        if not len(boxes):
            continue
        face_boxes = _face_boxes(photo_faces)
        lt = torch.maximum(boxes[:, None, :2], face_boxes[None, :, :2])
        rb = torch.minimum(boxes[:, None, 2:], face_boxes[None, :, 2:])
        inter = (rb - lt).clamp(min=0).prod(-1)
        area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1).prod(-1)
        clear = (inter / area[:, None]).amax(1) <= max_overlap
        rois, scores = rois[clear], scores[clear]
        if len(rois):
            keep = facemesh(FrameImage(image), rois).presence < facemesh_max_presence
            out += [NegativeRoi(photo_faces[0].photo_id, photo_faces[0].identity, image,
                                roi.numpy().astype(np.float64), float(score)) for roi, score in zip(rois[keep], scores[keep])]
    for scene_id, image in tqdm(list(scenes), desc="hard negatives (scenes without faces)", unit="scene",
                                disable=not progress):
        _, rois, scores = _detections(image, detectors, window_fraction, facemesh.roi_scale)
        out += [NegativeRoi(scene_id, scene_id, image, roi.numpy().astype(np.float64), float(score))
                for roi, score in zip(rois, scores)]
    return out
