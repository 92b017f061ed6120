"""Every output message of one processed frame, shared by the node (publishes) and `occface bag` (writes)."""
from __future__ import annotations

import numpy as np

from . import messages as M
from .pipeline_protocol import FacePipelineLike
from .mesh_lod import simplify
from .parsing import occlusion_mask_image, parsing_image

try:  # system ROS, or the vendored build of tools/build_interfaces.sh (tf2_msgs is not on PyPI)
    from tf2_msgs.msg import TFMessage
except ImportError:  # pragma: no cover
    TFMessage = None

# output key -> (topic relative to the node namespace, or absolute; ROS type name)
OUTPUTS = {
    "faces": ("~/faces", "occface_msgs/msg/FaceArray"),
    "head_poses": ("~/head_poses", "geometry_msgs/msg/PoseArray"),
    "tf": ("/tf", "tf2_msgs/msg/TFMessage"),
    "occlusion_mask": ("~/occlusion_mask", "sensor_msgs/msg/Image"),
    "parsing": ("~/parsing", "sensor_msgs/msg/Image"),
    "mesh_markers": ("~/mesh_markers", "visualization_msgs/msg/MarkerArray"),
    "debug_image": ("~/debug_image", "sensor_msgs/msg/Image"),
    "deoccluded_image": ("~/deoccluded_image", "sensor_msgs/msg/Image"),
}


class OutputBuilder:
    """Builds the messages of a frame from a FrameResult. `options` is read at every frame (a dict or
    any mapping-like with the node parameter names: tf_prefix, publish_tf, publish_mesh_markers,
    mesh_max_triangles, mesh_colours_from_image, mesh_marker_lifetime_s, publish_debug_image,
    publish_deoccluded_image)."""

    def __init__(self, pipeline: FacePipelineLike):
        self.pipeline = pipeline
        self.expression_names = [str(n) for n in pipeline.model.expression_names]
        self.triangles = pipeline.model.triangles.detach().cpu().numpy().astype(np.int64)  # (T, 3)
        self._lods: dict[tuple[int, int], object] = {}
        self._meshes_shown: set[int] = set()  # track ids whose mesh marker is up

    def build(self, header, result, bgr: np.ndarray, options, with_maps: bool = True):
        """Yield (key, message) in publishing order (cheapest and most wanted first); mesh markers come
        serialized (bytes, see messages.mesh_marker_array_cdr), which publish() and bag writers take as is.
        `with_maps=False`: no occlusion mask, parsing or de-occluded image (they go out on their own, see
        `maps()`)."""
        prefix = options["tf_prefix"]
        yield "faces", M.face_array_msg(header, result, self.expression_names, prefix)
        yield "head_poses", M.pose_array_msg(header, result.faces)
        if TFMessage is not None and options["publish_tf"] and result.faces:
            yield "tf", TFMessage(transforms=M.transforms(header, result.faces, prefix))
        h, w = bgr.shape[:2]
        if with_maps:
            mask, _ = occlusion_mask_image(result, h, w)
            yield "occlusion_mask", M.image_msg(header, mask, "mono8")
            labels, _ = parsing_image(result, h, w)
            yield "parsing", M.image_msg(header, labels, "mono8")
        meshes = None
        if options["publish_mesh_markers"]:
            meshes = self.meshes(result.faces, w, h, int(options["mesh_max_triangles"]))
            # colours sampled from the image, or the flat mesh colour Lambert-shaded so the shape reads in RViz
            from_image = options["mesh_colours_from_image"]
            items = [(face.track_id, verts, tris,
                      M.sample_colours(bgr, px) if from_image else M.lambert_colours(verts, tris))
                     for face, (verts, tris, px) in zip(result.faces, meshes)]
            # a face hidden this frame (its track held for re-acquisition) or ended: its marker goes
            shown = {face.track_id for face in result.faces}
            deleted = sorted((self._meshes_shown - shown) | set(result.lost_track_ids))
            self._meshes_shown = shown
            yield "mesh_markers", M.mesh_marker_array_cdr(header, items, deleted,
                                                         lifetime_s=float(options["mesh_marker_lifetime_s"]))
        if options["publish_debug_image"]:
            from ..app.output import draw_overlay

            if meshes is None:
                meshes = self.meshes(result.faces, w, h, int(options["mesh_max_triangles"]))
            projected = [px for _, _, px in meshes]
            tris = meshes[0][1] if meshes else None
            overlay = draw_overlay(bgr, result.faces, projected if projected else None, tris)
            yield "debug_image", M.image_msg(header, overlay, "bgr8")
        if with_maps and options["publish_deoccluded_image"]:  # the frame itself when nothing was filled
            filled = result.deoccluded_bgr if result.deoccluded_bgr is not None else bgr
            yield "deoccluded_image", M.image_msg(header, filled, "bgr8")

    @staticmethod
    def maps(header, maps, bgr: np.ndarray, options):
        """Yield (key, message) for one frame's FrameMaps handed over by the background reasoning
        (`occlusion.background_maps: own_frame`); `header` and `bgr` are that frame's."""
        mask, _ = occlusion_mask_image(maps, *bgr.shape[:2])
        yield "occlusion_mask", M.image_msg(header, mask, "mono8")
        yield "parsing", M.image_msg(header, np.asarray(maps.parsing, np.uint8), "mono8")
        if options["publish_deoccluded_image"]:
            filled = maps.deoccluded_bgr if maps.deoccluded_bgr is not None else bgr
            yield "deoccluded_image", M.image_msg(header, filled, "bgr8")

    def meshes(self, faces, width: int, height: int, budget: int):
        """[(vertices (N, 3) camera frame m, triangles (T, 3), projected (N, 2) px)] per face."""
        out = []
        for face in faces:
            v = np.asarray(self.pipeline.mesh_vertices(face), np.float64)
            key = (budget, len(v))
            lod = self._lods.get(key)
            if lod is None:
                lod = self._lods[key] = simplify(v, self.triangles, budget)
            vl = lod.vertices(v)
            px = np.asarray(self.pipeline.project(vl, width, height))
            out.append((vl, lod.triangles, px))
        return out
