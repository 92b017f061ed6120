"""Multi-face tracking: detect when needed, track ROIs from landmarks, stable track ids."""
from __future__ import annotations

import itertools

import torch

from ..contracts import TrackedFaces
from ..core.roi import rois_to_boxes
from ..core.timing import StageTimer
from ..detection.ssd import SsdDetector, rois_from_detections
from ..landmarks.facemesh import FaceLandmarker, LandmarkResult, merge_rows
from .rois import admit_detections, distinct_tracks


class FaceTracker:
    """Keeps up to `max_faces` tracks; re-detects only when a track is lost, or every N frames."""

    def __init__(
        self,
        detector: SsdDetector,
        landmarker: FaceLandmarker,
        fallback_detector: SsdDetector | None = None,
        max_faces: int = 4,
        redetect_every: int = 30,
        presence_threshold: float = 0.5,
        merge_iou: float = 0.5,
        refine_passes: int = 1,
        timer: StageTimer | None = None,
        low_score_detectors: list[SsdDetector] | None = None,
    ):
        self.detector = detector
        self.fallback_detector = fallback_detector
        self.low_score_detectors = low_score_detectors or []
        self.landmarker = landmarker
        self.max_faces = max_faces
        self.redetect_every = redetect_every
        self.presence_threshold = presence_threshold
        self.merge_iou = merge_iou
        self.refine_passes = refine_passes
        self.timer = timer or StageTimer()
        self._ids = itertools.count()
        self.reset()

    def reset(self) -> None:
        self._primary_detected = self._new_created = False
        self.track_ids: list[int] = []
        self.rois: torch.Tensor | None = None
        self.frames_since_detect = 0

    def set_landmarks(self, track_ids: list[int], landmarks468: torch.Tensor) -> None:
        """Next-frame ROIs of these live tracks from other landmarks of this frame (B, 468, 3)."""
        rows = [self.track_ids.index(t) for t in track_ids]
        if rows:
            rois = self.rois.clone()
            rois[rows] = self.landmarker.next_rois(landmarks468)
            self.rois = rois

    def relandmark(self, image, faces: TrackedFaces, rows: torch.Tensor, rois: torch.Tensor,
                   landmarker=None) -> torch.Tensor:
        """Landmarks again for the faces `rows` of `faces`, in `rois` (one per row), by `landmarker`
        (default the tracker's): where the presence passes they replace the faces' landmarks (and
        visibility) in `faces` and place the next ROIs. Returns the rows replaced."""
        again = (landmarker or self.landmarker)(image, rois)
        ok = again.presence >= self.presence_threshold
        rows = rows[ok]
        if rows.numel():
            vis = None if again.visibility468 is None else again.visibility468[ok]
            merged = merge_rows(LandmarkResult(faces.landmarks468, faces.presence, faces.visibility468), rows,
                                LandmarkResult(again.landmarks468[ok], again.presence[ok], vis))
            faces.landmarks468, faces.presence, faces.visibility468 = (merged.landmarks468, merged.presence,
                                                                      merged.visibility468)
            self.set_landmarks([faces.track_ids[i] for i in rows.tolist()], merged.landmarks468[rows])
        return rows

    def rename(self, mapping: dict[int, int]) -> None:
        """Give live tracks other ids (new id -> id of a track they resume)."""
        self.track_ids = [mapping.get(t, t) for t in self.track_ids]

    def _needs_detection(self) -> bool:
        if not self.track_ids:
            return True
        if len(self.track_ids) >= self.max_faces:
            return False
        return self.redetect_every > 0 and self.frames_since_detect >= self.redetect_every

    def _detect(self, image: torch.Tensor, fallback_only: bool = False) -> torch.Tensor:
        with self.timer("detection"):
            det = None if fallback_only else self.detector(image)
            self._primary_detected = det is not None and len(det) > 0
            if not self._primary_detected and self.fallback_detector is not None:
                det = self.fallback_detector(image)
            rois = rois_from_detections(det, self.landmarker.roi_scale)
            for detector in self.low_score_detectors:
                rois = torch.cat([rois, self._outside(rois_from_detections(detector(image), self.landmarker.roi_scale),
                                                      rois)])
        return rois

    def _outside(self, candidates: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
        """The candidate ROIs whose centre lies outside every found ROI and every track's ROI: a
        low-score detection is a face the other detections missed, not a second box on one."""
        taken = found if self.rois is None else torch.cat([found, self.rois])
        if not candidates.shape[0] or not taken.shape[0]:
            return candidates
        boxes = rois_to_boxes(taken)
        x, y = candidates[:, 0:1], candidates[:, 1:2]
        inside = (x >= boxes[:, 0]) & (x <= boxes[:, 2]) & (y >= boxes[:, 1]) & (y <= boxes[:, 3])
        return candidates[~inside.any(1)]

    @torch.inference_mode()
    def __call__(self, image: torch.Tensor) -> TrackedFaces:
        """Track faces in one frame (3, H, W) float [0, 1]."""
        result = self._step(image, force_detect=False)
        if result.lost_ids and not result.detected:
            # a track was lost this frame: look for faces again now rather than one frame late
            again = self._step(image, force_detect=True)
            again.lost_ids = result.lost_ids + again.lost_ids
            result = again
        if (result.detected and self._primary_detected and self._new_created and not result.new_ids
                and self.fallback_detector is not None):
            # the primary model's detections were all rejected by FaceMesh's presence score (e.g. the
            # short-range model's coarse box around a small, distant face): try the full-range model
            again = self._step(image, force_detect=True, fallback_only=True)
            again.lost_ids = result.lost_ids + again.lost_ids
            result = again
        return result

    def _step(self, image: torch.Tensor, force_detect: bool, fallback_only: bool = False) -> TrackedFaces:
        new_ids: list[int] = []
        detected = False
        self._new_created = False
        if force_detect or self._needs_detection():
            detected = True
            self.frames_since_detect = 0
            det_rois = self._detect(image, fallback_only)
            if det_rois.shape[0]:
                det_rois = admit_detections(self.rois, det_rois, self.merge_iou, self.max_faces - len(self.track_ids))
                new_ids = [next(self._ids) for _ in range(det_rois.shape[0])]
                self._new_created = bool(new_ids)
                self.rois = det_rois if self.rois is None else torch.cat([self.rois, det_rois])
                self.track_ids = self.track_ids + new_ids
        else:
            self.frames_since_detect += 1
        if not self.track_ids:
            empty = image.new_zeros(0, 468, 3)
            return TrackedFaces([], image.new_zeros(0, 4), empty, image.new_zeros(0), [], [], detected)

        rois_used = self.rois
        with self.timer("landmarks"):
            result = self.landmarker(image, rois_used)
            # a detection box is a coarse crop: re-crop new faces from their own landmarks, as
            # tracking would on the next frame, so that the first frame of a track is as accurate
            for _ in range(self.refine_passes if new_ids else 0):
                rois_used = self.landmarker.next_rois(result.landmarks468)
                result = self.landmarker(image, rois_used)
        alive = result.presence >= self.presence_threshold
        lost_ids = [t for t, a in zip(self.track_ids, alive.tolist()) if not a]
        keep_ids = [t for t, a in zip(self.track_ids, alive.tolist()) if a]
        landmarks = result.landmarks468[alive]
        presence = result.presence[alive]
        visibility = result.visibility468[alive] if result.visibility468 is not None else None
        rois_used = rois_used[alive]
        with self.timer("tracking"):
            next_rois = self.landmarker.next_rois(landmarks) if landmarks.shape[0] else landmarks.new_zeros(0, 4)
            keep = distinct_tracks(next_rois, self.merge_iou)
            if not bool(keep.all()):
                lost_ids += [t for t, k in zip(keep_ids, keep.tolist()) if not k]
                keep_ids = [t for t, k in zip(keep_ids, keep.tolist()) if k]
                landmarks, presence = landmarks[keep], presence[keep]
                visibility = visibility[keep] if visibility is not None else None
                rois_used, next_rois = rois_used[keep], next_rois[keep]
        self.track_ids, self.rois = keep_ids, next_rois
        new_ids = [t for t in new_ids if t in keep_ids]
        return TrackedFaces(list(keep_ids), rois_used, landmarks, presence, new_ids, lost_ids, detected, visibility)
