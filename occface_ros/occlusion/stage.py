"""Occlusion stage: when to reason, inline or in the background, and what its outcome changes
(visibility, landmarks taken again on the de-occluded face, refit, the frame's maps)."""
from __future__ import annotations

from typing import Callable

import cv2
import torch

from ..contracts import FittingPoints, FrameMaps, FrameResult, TrackedFaces, TrackState
from ..core.roi import FrameImage
from ..core.timing import StageTimer
from ..fitting.fitter import FitState
from ..tracking.hands import HandTracker
from ..tracking.tracker import FaceTracker
from .appearance.config import AppearanceConfig
from .appearance.evidence import AppearanceEvidence
from .background import BackgroundReasoner, ReasoningJob, ReasoningOutcome, reason
from .parser import DEFAULT_WEIGHTS as DEFAULT_PARSER_WEIGHTS, FaceParser, load_parser
from .reasoner import OcclusionReasoner


class OcclusionStage:
    """`config` is config/occface.yaml's `occlusion` section (docs/occlusion.md)."""

    def __init__(self, config: dict, model, device: torch.device, runtime: dict, timer: StageTimer,
                 max_faces: int = 1):
        """`runtime`: config/occface.yaml's `runtime` (backend and precision of the networks);
        `max_faces`: the most faces a frame holds (the parser's batch)."""
        self.config = config
        self.device = device
        self.timer = timer
        hands = parser = appearance = None
        if config["hands"]["enabled"]:
            hands = HandTracker(config["hands"], backend=runtime["backend"], device=device,
                                precision=runtime["precision"], timer=timer)
        if config["appearance"]["enabled"]:
            appearance = AppearanceEvidence(AppearanceConfig.from_dict(
                {k: v for k, v in config["appearance"].items() if k != "enabled"}))
        if config["parser"]["enabled"]:
            parser = FaceParser(load_parser(config["parser"]["weights"] or DEFAULT_PARSER_WEIGHTS, device),
                                backend=runtime["backend"], max_batch=max_faces,
                                precision=runtime["precision"])
        deoccluder = None
        if config["fisn"]["enabled"]:
            from ..deocclusion.fisn import load_fisn
            from ..deocclusion.stage import FaceDeoccluder

            deoccluder = FaceDeoccluder(load_fisn(config["fisn"]["weights"] or None, device), backend=runtime["backend"],
                                        max_batch=max_faces, precision=runtime["precision"])
        self.reasoner = OcclusionReasoner(config, model, device, hands=hands, appearance=appearance, parser=parser,
                                          deoccluder=deoccluder)
        self.background = (BackgroundReasoner(self.reasoner, every_frame=config["background_maps"] == "own_frame")
                           if config["background"] else None)
        self.last: ReasoningOutcome | None = None  # the newest outcome: its maps go with later frames
        self._frames_since_reasoning = 0

    @property
    def own_frame_maps(self) -> bool:
        """Background reasoning on every frame, its maps handed over by set_maps_listener."""
        return self.background is not None and self.background.every_frame

    @property
    def relandmark_inline(self) -> bool:
        """Landmarks again on the de-occluded frame (inline only: a background one is frames old)."""
        return bool(self.config["relandmark"]) and self.background is None

    def reset(self) -> None:
        if self.background is not None:
            self.background.reset()
        else:
            self.reasoner.reset()
        self.last = None

    def close(self) -> None:
        if self.background is not None:
            self.background.close()
        if self.reasoner.parser is not None:
            self.reasoner.parser.close()

    def forget(self, track_ids: list[int]) -> None:
        if track_ids:
            (self.background or self.reasoner).forget(track_ids)

    def collect(self, live: dict[int, TrackState]) -> ReasoningOutcome | None:
        """A frame reasoned in the background, applied to the tracks still live; None if none finished."""
        outcome = self.background.collect() if self.background is not None else None
        if outcome is not None:
            self.timer.add("occlusion", outcome.elapsed_ms)
            for i, tid in enumerate(outcome.job.track_ids):
                if tid in live:
                    self._apply_face(live[tid], outcome, i)
            self.last = outcome
        return outcome

    def due(self, states: list[TrackState]) -> bool:
        """Reason on this frame? Every `every_n_frames` frames, and always when a track has no
        reasoning yet; in the background only when the worker is free."""
        if self.background is not None and not self.background.accepts():
            return False
        self._frames_since_reasoning += 1
        every = int(self.config["every_n_frames"])
        if every <= 1 or any(s.occlusion is None for s in states) or self._frames_since_reasoning >= every:
            self._frames_since_reasoning = 0
            return True
        return False

    def job(self, image: FrameImage, fit: FitState, K: torch.Tensor, faces: TrackedFaces, points: FittingPoints,
            timestamp_s: float) -> ReasoningJob:
        cfg = self.config
        when = ((float(cfg["relandmark_min_ratio"]), float(cfg["relandmark_min_learned"]))
                if self.relandmark_inline else None)
        return ReasoningJob(image.tensor, fit.clone(), K, list(faces.track_ids), faces.rois, points.points, timestamp_s,
                            cfg["probe_radius_px"], cfg["deocclude"], when)

    def submit(self, job: ReasoningJob) -> None:
        self.background.submit(job)

    def reason(self, job: ReasoningJob) -> ReasoningOutcome:
        outcome = reason(self.reasoner, job)
        self.last = outcome
        return outcome

    def relandmark(self, outcome: ReasoningOutcome, faces: TrackedFaces, tracker: FaceTracker) -> bool:
        """FaceMesh again on the de-occluded frame (the paper's I_out: the track's texture rendered
        into the occluded pixels) for faces occluded by `relandmark_min_ratio` or more whose texture
        has learned at least `relandmark_min_learned` of what it renders there (a face never seen
        unoccluded has nothing to render). Replaces those faces' landmarks in `faces` and the
        tracker's next ROIs; True when any face changed."""
        res = outcome.result
        if res.deoccluded is None or res.deoccluded_learned is None:
            return False
        idx = torch.nonzero((res.occlusion_ratio >= float(self.config["relandmark_min_ratio"]))
                            & (res.deoccluded_learned >= float(self.config["relandmark_min_learned"]))).squeeze(1)
        if idx.numel() == 0:
            return False
        rois = tracker.landmarker.next_rois(faces.landmarks468[idx])
        return tracker.relandmark(res.deoccluded, faces, idx, rois).numel() > 0

    def occnet_again(self, outcome: ReasoningOutcome, faces: TrackedFaces, tracker: FaceTracker,
                     image: FrameImage) -> bool:
        """With `landmarks.model: facemesh+occnet`: the faces this reasoning finds occluded by
        `occnet_min_ratio` or more are landmarked again by occnet, in the same crops and then in the
        crops its landmarks give (FaceMesh's landmarks under an occluder are made up and drag the
        fit; occnet's are trained for it).
        Replaces their landmarks and visibility in `faces`; True when any face changed."""
        occnet = getattr(tracker.landmarker, "occnet", None)
        if occnet is None:
            return False
        rows = torch.nonzero(outcome.result.occlusion_ratio >= float(self.config["occnet_min_ratio"])).squeeze(1)
        if rows.numel() == 0:
            return False
        rows = tracker.relandmark(image, faces, rows, faces.rois[rows], occnet)
        if rows.numel():  # once more in the crop its own landmarks give, as the tracker refines a new face
            tracker.relandmark(image, faces, rows, occnet.next_rois(faces.landmarks468[rows]), occnet)
        return rows.numel() > 0

    def refit_needed(self, visible_now: torch.Tensor, visible_used: torch.Tensor) -> bool:
        """The visibility changed by `refit_min_change` or more of some face's points since the fit."""
        changed = (visible_now != visible_used).float().mean(1)
        return bool(self.config["refit"]) and bool((changed > float(self.config["refit_min_change"])).any())

    def apply(self, outcome: ReasoningOutcome, states: list[TrackState]) -> None:
        for i, state in enumerate(states):
            self._apply_face(state, outcome, i)

    @staticmethod
    def _apply_face(state: TrackState, outcome: ReasoningOutcome, i: int) -> None:
        state.points_visible = outcome.points_visible[i]
        state.occlusion = outcome.faces[i]

    @staticmethod
    def visibility(states: list[TrackState], num_points: int, device) -> torch.Tensor:
        """(B, P) bool: each track's last visibility of the fitting points (all visible before any)."""
        return torch.stack([s.points_visible if s.points_visible is not None
                            else torch.ones(num_points, dtype=torch.bool, device=device) for s in states])

    def set_maps_listener(self, listener: Callable[[FrameMaps], None] | None) -> bool:
        """With `background_maps: own_frame`, `listener(FrameMaps)` gets each reasoned frame's maps in
        the reasoning thread as soon as they are ready, and FrameResult carries none; True then.
        False (listener unused): the maps come on FrameResult."""
        if not self.own_frame_maps:
            return False
        self.background.listener = None if listener is None else (lambda outcome: listener(self.frame_maps(outcome)))
        return True

    def frame_maps(self, outcome: ReasoningOutcome) -> FrameMaps:
        res = outcome.result
        return FrameMaps(outcome.job.timestamp_s, res.occlusion_mask.cpu().numpy(), res.m_gamma.cpu().numpy(),
                         self._deoccluded_bgr(outcome), outcome.elapsed_ms)

    def _deoccluded_bgr(self, outcome: ReasoningOutcome):
        if outcome.result.deoccluded is None or not self.config["deocclude"]:
            return None
        rgb = (outcome.result.deoccluded.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)

    def fill_maps(self, result: FrameResult, new: ReasoningOutcome | None) -> None:
        """The newest maps on `result` (between reasoning frames: the last ones), and the
        de-occluded image of a frame reasoned now; none with own-frame maps (set_maps_listener)."""
        if self.own_frame_maps:
            return
        last = self.last
        if last is not None and last.result.occlusion_mask.shape == (result.height, result.width):
            result.occlusion_mask = last.result.occlusion_mask.cpu().numpy()
            result.parsing = last.result.m_gamma.cpu().numpy()
            result.occlusion_timestamp_s = last.job.timestamp_s
        if new is not None:
            result.deoccluded_bgr = self._deoccluded_bgr(new)
