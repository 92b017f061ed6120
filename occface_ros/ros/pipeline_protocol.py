"""What the ROS layer needs from the core: `FacePipelineLike`, the part of `FacePipeline` that the
node, `occface bag` and `occface bench-ros` call, and nothing else (no attribute is written, no
member is probed with getattr). `FacePipeline` satisfies it; so do `ros.bench.CannedPipeline` and
the test fake (test/fakes.py). test/test_ros_pure.py checks the signatures against FacePipeline.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np

if TYPE_CHECKING:  # the core imports torch and the networks: only for type checkers here
    from ..morphable.model import MorphableModel
    from ..contracts import FaceResult, FrameMaps, FrameResult


class FacePipelineLike(Protocol):
    """One camera's faces: image in, FrameResult out; run-time settings through methods."""

    model: MorphableModel  # expression_names (Face.msg), triangles (mesh markers)

    @property
    def occlusion_enabled(self) -> bool:
        """True when occlusion reasoning runs (masks and M_gamma parsing come from it)."""

    def process(self, image_bgr: np.ndarray, timestamp_s: float) -> FrameResult:
        """Faces of one (H, W, 3) uint8 BGR frame taken at `timestamp_s` (seconds, increasing)."""

    def reset(self) -> None:
        """Forget every track (time went backwards)."""

    def close(self) -> None:
        """Stop background work; process() is not called after."""

    def set_maps_listener(self, listener: Callable[[FrameMaps], None] | None) -> bool:
        """True when the occlusion maps come to `listener` (another thread, each frame's own, once
        ready) instead of on FrameResult."""

    def set_camera_matrix(self, camera_matrix: np.ndarray | None) -> None:
        """Intrinsics (3, 3) from camera_info; None = from camera.hfov_deg."""

    def set_smoothing(self, min_cutoff: float, beta: float, d_cutoff: float, noise_deadzone: float | None = None,
                      enabled: bool | None = None) -> None:
        """One-Euro parameters at run time (all tracks); None leaves a value as it is."""

    def mesh_vertices(self, face: FaceResult) -> np.ndarray:
        """(V, 3) mesh of a face in the camera frame, metres."""

    def project(self, points_cam: np.ndarray, width: int, height: int) -> np.ndarray:
        """(N, 3) camera-frame points -> (N, 2) pixels with this pipeline's intrinsics."""


# config (occface_ros.config.load_config) -> pipeline; OccfaceNode, replay_bag and main() take one
PipelineFactory = Callable[[dict], FacePipelineLike]


def default_pipeline_factory() -> PipelineFactory:
    """occface_ros.pipeline.FacePipeline (imported here, late: torch and the networks load with it)."""
    from ..pipeline import FacePipeline

    return FacePipeline
