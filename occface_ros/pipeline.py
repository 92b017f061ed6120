"""The ROS-free core's data path: detect -> track -> landmarks -> fit -> occlusion -> smooth -> result.

Each stage lives in its own package (docs/architecture.md); this module only wires them and
keeps the per-track state between frames.
"""
from __future__ import annotations

import numpy as np
import torch

from . import nets
from .config import load_config
from .contracts import FaceResult, FrameResult, TrackedFaces, TrackState
from .core.camera import camera_intrinsics, project_points
from .core.roi import FrameImage
from .core.timing import StageTimer
from .detection.ssd import SsdDetector
from .fitting.fitter import FitState
from .fitting.stage import FitStage
from .landmarks.correspondence import load_correspondences
from .landmarks.stage import build_landmarker
from .morphable import load_morphable_model
from .occlusion.background import ReasoningOutcome
from .occlusion.stage import OcclusionStage
from .smoothing import SmoothingConfig, TrackSmoother
from .smoothing.stage import smoothed_face
from .tracking.tracker import FaceTracker
from .tracking.tracks import TrackRegistry

__all__ = ["FacePipeline", "FaceResult", "FrameResult"]


class FacePipeline:
    """Camera frames -> per-face landmarks68, 3DMM pose/identity/expression, occlusion; keeps per-track state.

    `process(image_bgr, timestamp_s)`; `reset()` forgets all tracks (e.g. between unrelated images).
    `config` has the shape of config/occface.yaml (`config.load_config`).
    """

    def __init__(self, config: dict | None = None, camera_matrix: np.ndarray | None = None):
        self.config = cfg = config if config is not None else load_config()
        if cfg["runtime"]["num_threads"]:
            torch.set_num_threads(int(cfg["runtime"]["num_threads"]))
        self.device = torch.device(cfg["runtime"]["device"])
        self.timer = StageTimer(sync_cuda=self.device.type == "cuda")
        self.tracker = self._build_tracker(cfg)
        self.model = load_morphable_model(cfg["model"]["name"], cfg["model"]["path"]).to(self.device)
        self.fitting = FitStage(self.model, load_correspondences(), cfg["fitting"])
        self.occlusion = (OcclusionStage(cfg["occlusion"], self.model, self.device, cfg["runtime"], self.timer,
                                         cfg["detection"]["max_faces"]) if cfg["occlusion"]["enabled"] else None)
        self.tracks = TrackRegistry(self._new_track, cfg["landmarks"]["reacquire_s"], cfg["landmarks"]["reacquire_iou"])
        self.camera_matrix: np.ndarray | None = None
        self.set_camera_matrix(camera_matrix)

    def _build_tracker(self, cfg: dict) -> FaceTracker:
        det, lm, backend = cfg["detection"], cfg["landmarks"], cfg["runtime"]["backend"]
        load = lambda name: nets.load_detector(name, backend=backend, device=self.device,  # noqa: E731
                                               precision=cfg["runtime"]["precision"])
        fallback = None
        if det["model"] == "short" and det["fallback_full"]:
            fallback = SsdDetector(load("face_detector_full"), det["fallback_min_score"], det["nms_iou"])
        landmarker = build_landmarker(lm, backend, self.device, det["max_faces"], cfg["runtime"]["precision"])
        primary = SsdDetector(load(f"face_detector_{det['model']}"), det["min_score"], det["nms_iou"])
        low = ([SsdDetector(d.detector, det["low_min_score"], det["nms_iou"]) for d in (primary, fallback) if d is not None]
               if det["low_min_score"] is not None else None)
        return FaceTracker(primary, landmarker, fallback_detector=fallback,
                           max_faces=det["max_faces"], redetect_every=det["redetect_every"],
                           presence_threshold=lm["presence_threshold"], merge_iou=lm["track_iou_merge"],
                           refine_passes=lm["refine_passes"], timer=self.timer, low_score_detectors=low)

    def _new_track(self) -> TrackState:
        return TrackState(self.fitting.new_identity(), TrackSmoother(self._smoothing_config()))

    def _smoothing_config(self) -> SmoothingConfig:
        sm = self.config["smoothing"]
        return SmoothingConfig.from_single(sm["min_cutoff"], sm["beta"], sm["d_cutoff"], enabled=sm["enabled"],
                                           noise_deadzone=sm["noise_deadzone"])

    @property
    def occlusion_enabled(self) -> bool:
        return self.occlusion is not None

    def set_camera_matrix(self, camera_matrix: np.ndarray | None) -> None:
        """The camera's 3x3 intrinsics (e.g. from CameraInfo); None: config/occface.yaml's `camera`."""
        self.camera_matrix = None if camera_matrix is None else np.asarray(camera_matrix, np.float64).reshape(3, 3)

    def set_smoothing(self, min_cutoff: float, beta: float, d_cutoff: float, noise_deadzone: float | None = None,
                      enabled: bool | None = None) -> None:
        """Change the One-Euro parameters at run time (all tracks, state kept)."""
        self.config["smoothing"].update(min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff)
        optional = {"noise_deadzone": noise_deadzone, "enabled": None if enabled is None else bool(enabled)}
        self.config["smoothing"].update({k: v for k, v in optional.items() if v is not None})
        config = self._smoothing_config()
        for state in self.tracks.live.values():
            state.smoother.configure(config)

    def intrinsics(self, width: int, height: int) -> torch.Tensor:
        return camera_intrinsics(self.config["camera"], self.camera_matrix, width, height).to(self.device)

    def reset(self) -> None:
        self.tracker.reset()
        self.tracks.reset()
        if self.occlusion is not None:
            self.occlusion.reset()

    def set_maps_listener(self, listener) -> bool:
        """True when each frame's FrameMaps go to `listener(maps)` (reasoning thread) instead of FrameResult."""
        return self.occlusion is not None and self.occlusion.set_maps_listener(listener)

    def close(self) -> None:
        """Stop the background reasoning thread (occlusion.background); process() must not run after."""
        if self.occlusion is not None:
            self.occlusion.close()

    @torch.inference_mode()
    def process(self, image_bgr: np.ndarray, timestamp_s: float) -> FrameResult:
        self.timer.new_frame()
        height, width = image_bgr.shape[:2]
        with self.timer("preprocess"):
            image = FrameImage(image_bgr, self.device)  # validates; the float tensor is made on first use
            if self.device.type != "cpu":
                image.tensor  # noqa: B018 - upload once; every crop samples the tensor there
        faces = self.tracker(image)
        ended, resumed = self.tracks.update(faces, timestamp_s)
        if resumed:
            self.tracker.rename(resumed)
        if self.occlusion is not None:
            self.occlusion.forget(ended)
        if not faces.track_ids:
            return FrameResult([], width, height, timestamp_s, ended, dict(self.timer.last))
        face_results, new_occlusion = self._faces(image, faces, self.intrinsics(width, height), timestamp_s)
        result = FrameResult(face_results, width, height, timestamp_s, ended)
        if self.occlusion is not None:
            self.occlusion.fill_maps(result, new_occlusion)
        result.stage_ms = dict(self.timer.last)
        return result

    def _faces(self, image: FrameImage, faces: TrackedFaces, K: torch.Tensor,
               timestamp_s: float) -> tuple[list[FaceResult], ReasoningOutcome | None]:
        """Fit, reason and smooth the tracked faces; also the reasoning outcome of this call, if any."""
        states = self.tracks.states(faces.track_ids)
        points = self.fitting.points(faces.landmarks468)
        occlusion, new = self.occlusion, None
        if occlusion is not None:
            new = occlusion.collect(self.tracks.live)
        # the tracks' visibility from the occlusion stage, and this frame's from the landmark network (occnet)
        net_visible = None if faces.visibility468 is None else self.fitting.points_visible(faces.visibility468)
        with_net = lambda v: v if net_visible is None else v & net_visible  # noqa: E731
        track_visible = OcclusionStage.visibility(states, self.fitting.num_points, self.device)
        visible = with_net(track_visible)
        priors = self.fitting.priors([s.identity for s in states])
        init = FitState.cat([s.fit_state for s in states]) if all(s.fit_state is not None for s in states) else None
        with self.timer("fit"):
            fit = self.fitting(points, visible, K, priors, init)
        if occlusion is not None:
            if occlusion.due(states):
                job = occlusion.job(image, fit, K, faces, points, timestamp_s)
                if occlusion.background is not None:
                    occlusion.submit(job)
                else:
                    with self.timer("occlusion"):
                        new = occlusion.reason(job)
                    with self.timer("relandmark"):
                        relandmarked = occlusion.occnet_again(new, faces, self.tracker, image)
                        if occlusion.relandmark_inline:
                            relandmarked = occlusion.relandmark(new, faces, self.tracker) or relandmarked
                    if relandmarked:
                        points = self.fitting.points(faces.landmarks468)
                        new = new.with_points(points.points)
                        if faces.visibility468 is not None:
                            net_visible = self.fitting.points_visible(faces.visibility468)
                    if relandmarked or occlusion.refit_needed(with_net(new.points_visible), visible):
                        with self.timer("refit"):
                            fit = self.fitting(points, with_net(new.points_visible), K, priors, init=fit,
                                               iterations=self.config["fitting"]["iterations_warm"])
                    occlusion.apply(new, states)
                    track_visible, visible = new.points_visible, with_net(new.points_visible)
        seen68 = visible[:, :68]  # the 68 landmarks' visibility: each track's reasoning and the network's
        landmarks68 = points.landmarks68  # hidden ones from the fitted model (fitted with them down-weighted)
        if occlusion is not None or net_visible is not None:
            landmarks68 = torch.where(seen68.unsqueeze(-1), landmarks68, self.fitting.model_landmarks68(fit, K))
        with self.timer("smoothing"):
            boxes = faces.boxes()
            for i, state in enumerate(states):
                state.fit_state, state.points_visible, state.bbox = fit[i], track_visible[i], boxes[i]
            self.fitting.update_identities([s.identity for s in states], fit, priors)
            return [smoothed_face(faces, i, fit, landmarks68[i], seen68[i], s, timestamp_s)
                    for i, s in enumerate(states)], new

    def mesh_vertices(self, face: FaceResult) -> np.ndarray:
        """(V, 3) mesh of a face in the camera frame, metres."""
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float32, device=self.device)  # noqa: E731
        verts = self.model.vertices(as_t(face.identity)[None], as_t(face.expression)[None])[0]
        return (verts @ as_t(face.rotation).T + as_t(face.translation_m)).cpu().numpy()

    def project(self, points_cam: np.ndarray, width: int, height: int) -> np.ndarray:
        """(N, 3) camera-frame points -> (N, 2) pixels with this pipeline's intrinsics."""
        K = self.intrinsics(width, height).double().cpu()
        return project_points(torch.as_tensor(np.asarray(points_cam, np.float64)), K).numpy()
