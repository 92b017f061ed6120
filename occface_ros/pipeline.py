"""The ROS-free core: image in, tracked and fitted 3D faces out."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import torch

from . import nets
from .camera import (
    intrinsics_from_fov,
    intrinsics_from_values,
    project_points,
    transform_points,
    yaw_pitch_roll_deg,
)
from .config import load_config
from .correspondence import landmarks68_from_mp468, load_correspondences
from .detection import FaceDetector
from .fitting import (
    FaceFitter,
    FitConfig,
    FitState,
    IdentityAccumulator,
    IdentityAccumulatorConfig,
)
from .hands import HandDetector
from .landmarks import FaceLandmarker
from .morphable import load_morphable_model
from .morphable.model import VertexSubset
from .occlusion.appearance import AppearanceConfig, AppearanceEvidence
from .occlusion.background import (
    BackgroundReasoner,
    ReasoningJob,
    ReasoningOutcome,
    reason,
)
from .occlusion.parser import FaceParser, load_parser
from .occlusion.reasoner import OcclusionReasoner
from .roi import FrameImage, box_iou
from .smoothing import SmoothingConfig, TrackSmoother
from .timing import StageTimer
from .tracking import FaceTracker

IBUG_CONTOUR = slice(0, 17)


@dataclass
class FaceResult:
    """One face of one frame (numpy, what is published and written)."""

    track_id: int
    score: float
    bbox: np.ndarray  # (4,) x0, y0, x1, y1 pixels
    landmarks68: np.ndarray  # (68, 2) pixels, smoothed
    landmarks68_visible: np.ndarray  # (68,) bool
    landmarks468: np.ndarray  # (468, 3) raw FaceMesh, pixels
    rotation: np.ndarray  # (3, 3) model -> camera (OpenCV camera frame)
    translation_m: np.ndarray  # (3,) model origin in the camera frame, metres
    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    expression: np.ndarray  # (E,) weights
    identity: np.ndarray  # (K,) coefficients
    occlusion_ratio: float = 0.0  # occluded / all pixels of the face (rendered fitted face region)
    occlusion_by_region: dict[str, float] = field(default_factory=dict)  # labels.FACE_REGION_NAMES -> ratio
    region_pixels: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (occluded, total) pixels
    reprojection_error_px: float = 0.0


@dataclass
class FrameResult:
    faces: list[FaceResult]
    width: int
    height: int
    timestamp_s: float
    lost_track_ids: list[int] = field(default_factory=list)
    stage_ms: dict[str, float] = field(default_factory=dict)
    occlusion_mask: np.ndarray | None = None  # (H, W) bool, True = occluded face pixel (all faces)
    parsing: np.ndarray | None = None  # (H, W) uint8 M_gamma labels (occlusion/labels.py)
    deoccluded_bgr: np.ndarray | None = None  # (H, W, 3) uint8 when occlusion.deocclude is on
    occlusion_timestamp_s: float | None = None  # timestamp of the frame the maps were reasoned on
    # (this frame's when reasoning ran on it; older with occlusion.every_n_frames or .background)


def _with_points_visible(outcome: ReasoningOutcome, points_visible: torch.Tensor) -> ReasoningOutcome:
    """The outcome with the visibility of other points (the faces' landmarks moved after the reasoning)."""
    return replace(outcome, points_visible=points_visible, landmarks68_visible=points_visible[:, :68])


class _TrackState:
    def __init__(self, fit_state, accumulator, smoother):
        self.fit_state = fit_state
        self.identity = accumulator
        self.smoother = smoother
        self.point_visible: torch.Tensor | None = None  # (68 + dense,) bool from the last frame
        self.occlusion = None  # (landmarks68_visible, ratio, ratio per region, pixels per region), last reasoning
        self.bbox: torch.Tensor | None = None  # (4,) x0, y0, x1, y1 of the last frame's landmarks
        self.lost_at_s: float | None = None  # set while the track is held for re-acquisition

    def apply(self, outcome: ReasoningOutcome, i: int) -> None:
        """Take face i of a reasoning outcome as this track's visibility and occlusion."""
        ratios, pixels = outcome.regions[i]
        self.point_visible = outcome.points_visible[i]
        self.occlusion = (outcome.landmarks68_visible[i], float(outcome.result.occlusion_ratio[i]), ratios, pixels)


class FacePipeline:
    """Camera frames -> per-face landmarks68, 3DMM pose/identity/expression; keeps per-track state.

    `process(image_bgr, timestamp_s)`; `reset()` forgets all tracks (e.g. between unrelated images).
    """

    def __init__(self, config: dict | None = None, camera_matrix: np.ndarray | None = None):
        self.config = cfg = config if config is not None else load_config()
        rt = cfg["runtime"]
        if rt["num_threads"]:
            torch.set_num_threads(int(rt["num_threads"]))
        self.device = torch.device(rt["device"])
        self.timer = StageTimer(sync_cuda=self.device.type == "cuda")
        det_cfg, lm_cfg = cfg["detection"], cfg["landmarks"]
        backend = rt["backend"]
        primary = nets.load_detector(f"face_detector_{det_cfg['model']}", backend=backend, device=self.device)
        fallback = None
        if det_cfg["model"] == "short" and det_cfg["fallback_full"]:
            fallback = FaceDetector(nets.load_detector("face_detector_full", backend=backend, device=self.device),
                                    det_cfg["fallback_min_score"], det_cfg["nms_iou"])
        landmark_net = nets.load_network("face_landmarks", backend=backend, device=self.device)
        self.tracker = FaceTracker(
            FaceDetector(primary, det_cfg["min_score"], det_cfg["nms_iou"]),
            FaceLandmarker(landmark_net, lm_cfg["roi_scale"]),
            fallback_detector=fallback,
            max_faces=det_cfg["max_faces"],
            redetect_every=det_cfg["redetect_every"],
            presence_threshold=lm_cfg["presence_threshold"],
            merge_iou=lm_cfg["track_iou_merge"],
            refine_passes=lm_cfg["refine_passes"],
            timer=self.timer,
        )
        self.model = load_morphable_model(cfg["model"]["name"], cfg["model"]["path"]).to(self.device)
        self.landmark_vertices = VertexSubset(self.model, self.model.landmarks68)
        self.correspondences = load_correspondences().to(self.device)
        corr = self.correspondences
        fit_cfg = cfg["fitting"]
        valid = corr.mp_to_ict_valid
        self.dense_index = torch.nonzero(valid).squeeze(1)
        ids = torch.cat([self.model.landmarks68.view(-1, 1).expand(-1, 3), corr.mp_to_ict_vertex_ids[valid]])
        bary = torch.cat([
            torch.tensor([1.0, 0.0, 0.0], device=self.device).expand(68, 3),
            corr.mp_to_ict_barycentric[valid],
        ])
        self.fitter = FaceFitter(self.model, ids, bary, self._fit_config())
        w68 = torch.full((68,), float(fit_cfg["landmark_weight"]), device=self.device)
        w68[IBUG_CONTOUR] = float(fit_cfg["contour_weight"])
        self.base_weights = torch.cat([w68, torch.full((len(self.dense_index),), float(fit_cfg["dense_weight"]),
                                                        device=self.device)])
        self.camera_matrix = None if camera_matrix is None else np.asarray(camera_matrix, dtype=np.float64)
        self.tracks: dict[int, _TrackState] = {}
        self.held: dict[int, _TrackState] = {}  # lost tracks that a new face at their place may resume
        self.reasoner = self._build_reasoner(cfg["occlusion"], backend) if cfg["occlusion"]["enabled"] else None
        self.background = (BackgroundReasoner(self.reasoner)
                           if self.reasoner is not None and cfg["occlusion"]["background"] else None)
        self._frames_since_reasoning = 0
        self._last_occlusion: ReasoningOutcome | None = None

    def _build_reasoner(self, occ: dict, backend: str) -> OcclusionReasoner:
        hands = parser = appearance = None
        if occ["hands"]["enabled"]:
            hands = HandDetector(occ["hands"], backend=backend, device=self.device, timer=self.timer)
        if occ["appearance"]["enabled"]:
            appearance = AppearanceEvidence(AppearanceConfig.from_dict(
                {k: v for k, v in occ["appearance"].items() if k != "enabled"}))
        if occ["parser"]["weights"]:
            parser = FaceParser(load_parser(occ["parser"]["weights"], self.device))
        return OcclusionReasoner(occ, self.model, self.device, hands=hands, appearance=appearance, parser=parser)

    def _fit_config(self) -> FitConfig:
        f = self.config["fitting"]
        return FitConfig(
            iterations_cold=f["iterations_cold"],
            iterations_warm=f["iterations_warm"],
            identity_prior_weight=f["identity_prior"],
            expression_prior_weight=f["expression_prior"],
        )

    def set_smoothing(self, min_cutoff: float, beta: float, d_cutoff: float, noise_deadzone: float | None = None) -> None:
        """Change One-Euro parameters at run time (all tracks)."""
        self.config["smoothing"].update(min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff)
        if noise_deadzone is not None:
            self.config["smoothing"]["noise_deadzone"] = noise_deadzone
        config = self._smoothing_config()
        for state in self.tracks.values():
            state.smoother.configure(config)

    def reset(self) -> None:
        self.tracker.reset()
        self.tracks.clear()
        self.held.clear()
        if self.background is not None:
            self.background.reset()
        elif self.reasoner is not None:
            self.reasoner.reset()
        self._last_occlusion = None

    def close(self) -> None:
        """Stop the background reasoning thread (occlusion.background); process() must not run after."""
        if self.background is not None:
            self.background.close()

    def intrinsics(self, width: int, height: int) -> torch.Tensor:
        cam = self.config["camera"]
        if self.camera_matrix is not None:
            k = self.camera_matrix
            return intrinsics_from_values(k[0, 0], k[1, 1], k[0, 2], k[1, 2]).to(self.device)
        if cam["fx"] is not None:
            return intrinsics_from_values(cam["fx"], cam["fy"], cam["cx"], cam["cy"]).to(self.device)
        return intrinsics_from_fov(width, height, cam["hfov_deg"]).to(self.device)

    @torch.inference_mode()
    def process(self, image_bgr: np.ndarray, timestamp_s: float) -> FrameResult:
        self.timer.new_frame()
        height, width = image_bgr.shape[:2]
        with self.timer("preprocess"):
            image = FrameImage(image_bgr, self.device)  # validates; the float tensor is made on first use
            if self.device.type != "cpu":
                image.tensor  # noqa: B018 - upload once; every crop samples the tensor there
        tracked = self.tracker(image)
        ended = self._hold_and_reacquire(tracked, timestamp_s)
        if ended:
            if self.background is not None:
                self.background.forget(ended)
            elif self.reasoner is not None:
                self.reasoner.forget(ended)
        if not tracked.track_ids:
            return FrameResult([], width, height, timestamp_s, ended, dict(self.timer.last))

        faces, new = self._fit(image, tracked, self.intrinsics(width, height), timestamp_s)
        result = FrameResult(faces, width, height, timestamp_s, ended)
        if new is not None:
            self._last_occlusion = new
        last = self._last_occlusion  # between reasoning frames: the last maps (every_n_frames, background)
        if last is not None and last.result.occlusion_mask.shape == (height, width):
            result.occlusion_mask = last.result.occlusion_mask.cpu().numpy()
            result.parsing = last.result.m_gamma.cpu().numpy()
            result.occlusion_timestamp_s = last.job.timestamp_s
        if new is not None and new.result.deoccluded is not None and self.config["occlusion"]["deocclude"]:
            rgb = (new.result.deoccluded.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
            result.deoccluded_bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        result.stage_ms = dict(self.timer.last)
        return result

    def _hold_and_reacquire(self, tracked, timestamp_s: float) -> list[int]:
        """Hold lost tracks for `landmarks.reacquire_s`; a new face whose box overlaps a held track's
        last box by `landmarks.reacquire_iou` or more resumes it (its id, identity, texture, pose and
        filters), e.g. after an occluder hid the whole face for a moment. Returns the ids that ended
        (held too long, or not held), renaming the resumed ones in `tracked` and the tracker."""
        lm_cfg = self.config["landmarks"]
        window_s, min_iou = float(lm_cfg["reacquire_s"]), float(lm_cfg["reacquire_iou"])
        ended = []
        for tid in tracked.lost_ids:
            state = self.tracks.pop(tid, None)
            if state is not None and window_s > 0 and state.bbox is not None:
                state.lost_at_s = timestamp_s
                self.held[tid] = state
            else:
                ended.append(tid)
        if self.held and tracked.new_ids:
            held_ids = list(self.held)
            held_boxes = torch.stack([self.held[t].bbox for t in held_ids])
            renamed = {}
            for new_id in tracked.new_ids:
                i = tracked.track_ids.index(new_id)
                box = _landmark_boxes(tracked.landmarks468[i:i + 1])
                iou = box_iou(box, held_boxes)[0]
                iou[[j for j, t in enumerate(held_ids) if t in renamed.values()]] = -1.0
                best = int(iou.argmax())
                if float(iou[best]) >= min_iou:
                    renamed[new_id] = held_ids[best]
            for new_id, old_id in renamed.items():
                state = self.held.pop(old_id)
                state.lost_at_s = None
                state.smoother.reset()  # the filters restart at the face as it is now, not as it was
                self.tracks[old_id] = state
            if renamed:
                self.tracker.rename(renamed)
                tracked.track_ids = [renamed.get(t, t) for t in tracked.track_ids]
                tracked.new_ids = [t for t in tracked.new_ids if t not in renamed]
        for tid in [t for t, s in self.held.items() if timestamp_s - s.lost_at_s > window_s
                    or timestamp_s < s.lost_at_s]:
            del self.held[tid]
            ended.append(tid)
        return ended

    def _new_track(self) -> _TrackState:
        f = self.config["fitting"]
        acc_cfg = IdentityAccumulatorConfig(freeze_after=int(f["identity_freeze_frames"]),
                                            prior_weight=float(f["identity_prior"]))
        accumulator = IdentityAccumulator(self.model.num_identity, acc_cfg, float(f["expression_prior"]),
                                          device=self.device)
        return _TrackState(None, accumulator, TrackSmoother(self._smoothing_config()))

    def _smoothing_config(self) -> SmoothingConfig:
        sm = self.config["smoothing"]
        return SmoothingConfig.from_single(sm["min_cutoff"], sm["beta"], sm["d_cutoff"], enabled=sm["enabled"],
                                           noise_deadzone=sm.get("noise_deadzone", 0.0))

    def _fit(self, image: FrameImage, tracked, K: torch.Tensor, timestamp_s: float):
        lm68, points = self._fitting_points(tracked.landmarks468)
        states = []
        for tid in tracked.track_ids:
            if tid not in self.tracks:
                self.tracks[tid] = self._new_track()
            states.append(self.tracks[tid])
        new = self.background.collect() if self.background is not None else None
        if new is not None:  # a frame reasoned in the background: its visibility for the live tracks
            self.timer.add("occlusion", new.elapsed_ms)
            for i, tid in enumerate(new.job.track_ids):
                if tid in self.tracks:
                    self.tracks[tid].apply(new, i)
        visible = torch.stack([s.point_visible if s.point_visible is not None
                               else torch.ones(points.shape[1], dtype=torch.bool, device=self.device) for s in states])
        warm = all(s.fit_state is not None for s in states)
        init = FitState.cat([s.fit_state for s in states]) if warm else None
        prior_mean = torch.stack([s.identity.mean for s in states])
        prior_precision = torch.stack([s.identity.precision for s in states])
        fit_identity = torch.tensor([not s.identity.frozen for s in states], device=self.device)
        priors = dict(identity_prior_mean=prior_mean, identity_prior_weight=prior_precision, fit_identity=fit_identity)
        with self.timer("fit"):
            fit = self.fitter(points, self._weights(visible), K, init=init, **priors)
        if self.reasoner is not None:
            occ_cfg = self.config["occlusion"]
            inline_relandmark = occ_cfg["relandmark"] and self.background is None
            job = lambda: ReasoningJob(  # noqa: E731
                image.tensor, fit.clone(), K, list(tracked.track_ids), tracked.rois, points, timestamp_s,
                occ_cfg["probe_radius_px"], occ_cfg["deocclude"],
                (float(occ_cfg["relandmark_min_ratio"]), float(occ_cfg["relandmark_min_learned"]))
                if inline_relandmark else None)
            if self.background is not None:
                if self.background.idle() and self._reason_now(states):
                    self.background.submit(job())
            elif self._reason_now(states):
                with self.timer("occlusion"):
                    new = reason(self.reasoner, job())
                relandmarked = False
                if inline_relandmark:
                    with self.timer("relandmark"):
                        relandmarked = self._relandmark(new, tracked)
                    if relandmarked:
                        lm68, points = self._fitting_points(tracked.landmarks468)
                        new = _with_points_visible(new, new.result.points_visible(points, occ_cfg["probe_radius_px"]))
                changed = (new.points_visible != visible).float().mean(1)
                if relandmarked or (occ_cfg["refit"] and bool((changed > occ_cfg["refit_min_change"]).any())):
                    with self.timer("refit"):
                        fit = self.fitter(points, self._weights(new.points_visible), K, init=fit,
                                          iterations=self.config["fitting"]["iterations_warm"], **priors)
                for i, state in enumerate(states):
                    state.apply(new, i)
                visible = new.points_visible
            # landmarks predicted through the occlusion: hidden ones from the fitted model (fitted
            # with those points down-weighted), visible ones as FaceMesh saw them; a track not
            # reasoned on yet (background) counts as visible
            lm68_visible = torch.stack([s.occlusion[0] if s.occlusion is not None
                                        else torch.ones(68, dtype=torch.bool, device=self.device) for s in states])
            lm68 = torch.where(lm68_visible.unsqueeze(-1), lm68, self._model_landmarks68(fit, K))
        faces = []
        with self.timer("smoothing"):
            for i, tid in enumerate(tracked.track_ids):
                state = states[i]
                state.fit_state = fit[i]
                state.point_visible = visible[i]
                state.bbox = _landmark_boxes(tracked.landmarks468[i:i + 1])[0]
                if not state.identity.frozen:
                    state.identity.update(state.fit_state, prior_mean[i], prior_precision[i])
                face = self._face_result(tid, tracked, fit, i, lm68[i], state, timestamp_s)
                if state.occlusion is not None:
                    face.landmarks68_visible = state.occlusion[0].cpu().numpy()
                    face.occlusion_ratio, face.occlusion_by_region, face.region_pixels = state.occlusion[1:]
                faces.append(face)
        return faces, new

    def _fitting_points(self, lm468: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 468, 3) FaceMesh landmarks -> (landmarks68 (B, 68, 2), fitting points (B, 68 + dense, 2))."""
        lm68 = landmarks68_from_mp468(lm468[..., :2], self.correspondences)
        return lm68, torch.cat([lm68, lm468[:, self.dense_index, :2]], 1)

    def _relandmark(self, new: ReasoningOutcome, tracked) -> bool:
        """FaceMesh again on the de-occluded frame (the paper's I_out: the track's texture rendered into
        the occluded pixels) for faces occluded by `occlusion.relandmark_min_ratio` or more whose
        texture has learned at least `relandmark_min_learned` of what it renders there (a face never
        seen unoccluded, e.g. a single photo, or a forehead always under a hat, is left as it is):
        with the face complete, the visible landmarks are no longer dragged by the occluder.
        Replaces those faces' landmarks in `tracked` and the tracker's next ROIs; True when any
        face changed."""
        occ_cfg = self.config["occlusion"]
        res = new.result
        if res.deoccluded is None or res.deoccluded_learned is None:
            return False
        idx = torch.nonzero((res.occlusion_ratio >= float(occ_cfg["relandmark_min_ratio"]))
                            & (res.deoccluded_learned >= float(occ_cfg["relandmark_min_learned"]))).squeeze(1)
        if idx.numel() == 0:
            return False
        landmarker = self.tracker.landmarker
        again = landmarker(res.deoccluded, landmarker.next_rois(tracked.landmarks468[idx]))
        ok = again.presence >= self.tracker.presence_threshold
        if not bool(ok.any()):
            return False
        idx = idx[ok]
        lm468 = tracked.landmarks468.clone()
        lm468[idx] = again.landmarks468[ok]
        tracked.landmarks468 = lm468
        self.tracker.set_landmarks([tracked.track_ids[i] for i in idx.tolist()], lm468[idx])
        return True

    def _reason_now(self, states) -> bool:
        """Run the occlusion reasoning on this frame? Every `occlusion.every_n_frames` frames, and
        always when a track has none yet."""
        every = int(self.config["occlusion"]["every_n_frames"])
        self._frames_since_reasoning += 1
        if every <= 1 or any(s.occlusion is None for s in states) or self._frames_since_reasoning >= every:
            self._frames_since_reasoning = 0
            return True
        return False

    def _model_landmarks68(self, fit, K: torch.Tensor) -> torch.Tensor:
        """(B, 68, 2) pixels: the fitted model's 68 landmark vertices, projected."""
        verts = self.landmark_vertices(fit.identity, fit.expression)
        return project_points(transform_points(fit.rotation, fit.translation_m, verts), K)

    def _weights(self, visible: torch.Tensor) -> torch.Tensor:
        """Per-point fitting weights: the configured weights where visible, times `occluded_weight`
        elsewhere (the paper's eq. 13: 1 on visible facial features, 0.1 on the rest)."""
        occluded = float(self.config["fitting"]["occluded_weight"])
        return self.base_weights * torch.where(visible, 1.0, occluded)

    def _face_result(self, tid, tracked, fit, i, lm68, state, timestamp_s) -> FaceResult:
        sm = state.smoother(timestamp_s, landmarks68=lm68, rotation=fit.rotation[i],
                            translation_m=fit.translation_m[i], expression=fit.expression[i])
        rot = torch.as_tensor(sm.rotation)  # the smoother passes the fit through when disabled
        yaw, pitch, roll = (float(v) for v in yaw_pitch_roll_deg(rot.unsqueeze(0))[0])
        lm = tracked.landmarks468[i]
        as_np = lambda t: torch.as_tensor(t).detach().cpu().numpy().astype(np.float64)  # noqa: E731
        return FaceResult(
            track_id=tid,
            score=float(tracked.presence[i]),
            bbox=as_np(state.bbox),
            landmarks68=as_np(sm.landmarks68),
            landmarks68_visible=np.ones(68, dtype=bool),
            landmarks468=lm.cpu().numpy(),
            rotation=as_np(rot),
            translation_m=as_np(sm.translation_m),
            yaw_deg=yaw, pitch_deg=pitch, roll_deg=roll,
            expression=np.clip(as_np(sm.expression), 0.0, 1.0),
            identity=as_np(state.identity.mean),
            reprojection_error_px=float(fit.reprojection_error_px[i]),
        )

    def mesh_vertices(self, face: FaceResult) -> np.ndarray:
        """(V, 3) mesh of a face in the camera frame, metres."""
        ident = torch.as_tensor(face.identity, dtype=torch.float32, device=self.device).unsqueeze(0)
        expr = torch.as_tensor(face.expression, dtype=torch.float32, device=self.device).unsqueeze(0)
        verts = self.model.vertices(ident, expr)[0]
        rot = torch.as_tensor(face.rotation, dtype=torch.float32, device=self.device)
        trans = torch.as_tensor(face.translation_m, dtype=torch.float32, device=self.device)
        return (verts @ rot.T + trans).cpu().numpy()

    def project(self, points_cam: np.ndarray, width: int, height: int) -> np.ndarray:
        """(N, 3) camera-frame points -> (N, 2) pixels with this pipeline's intrinsics."""
        K = self.intrinsics(width, height).cpu().numpy()
        p = points_cam @ K.T
        return p[:, :2] / np.maximum(p[:, 2:3], 1e-6)


def _landmark_boxes(landmarks468: torch.Tensor) -> torch.Tensor:
    """(B, 4) x0, y0, x1, y1 around (B, N, 2+) landmarks."""
    xy = landmarks468[..., :2]
    return torch.cat([xy.amin(1), xy.amax(1)], -1)
