"""Run the pipeline over a FrameSource and write the output contract (see README)."""
from __future__ import annotations

import time
from pathlib import Path

import cv2

from ..config import for_files
from .output import draw_overlay, encode_image, face_to_json, frame_masks, frame_name, write_json, write_obj
from ..paths import atomic_write_bytes
from ..pipeline import FacePipeline
from .sources import FrameSource


def run_on_source(source: FrameSource, out_dir: Path, config: dict, write_overlay: bool = False,
                  write_meshes: bool = False, write_masks: bool = False, write_deoccluded: bool = False,
                  sequence: bool = False, progress=None) -> dict:
    """Process every frame; returns the summary (also written to out_dir/summary.json).

    The images of a folder are unrelated photos unless `sequence`: the pipeline is reset before
    each (no tracking, smoothing or identity carried from one photo to the next). With `sequence`
    (a folder of video frames) and for a video, faces are tracked across frames."""
    photos = source.kind == "folder" and not sequence
    if write_deoccluded:
        config = {**config, "occlusion": {**config["occlusion"], "deocclude": True}}
    pipeline = FacePipeline(for_files(config))
    out_dir = Path(out_dir)
    (out_dir / "frames").mkdir(parents=True, exist_ok=True)
    triangles = pipeline.model.triangles.cpu().numpy()
    video_writer, video_tmp = None, None
    frames = frames_with_faces = 0
    track_ids: set[int] = set()
    start = time.perf_counter()
    iterable = source if progress is None else progress(source, source.length)
    try:
        for frame in iterable:
            if photos:
                pipeline.reset()
            result = pipeline.process(frame.image_bgr, frame.timestamp_s)
            name = frame_name(frame.index)
            faces_json, meshes = [], []
            for face in result.faces:
                mesh_rel = None
                if write_meshes or write_overlay:
                    verts = pipeline.mesh_vertices(face)
                    meshes.append(pipeline.project(verts, result.width, result.height))
                    if write_meshes:
                        mesh_rel = f"meshes/{name}_{face.track_id}.obj"
                        write_obj(out_dir / mesh_rel, verts, triangles)
                faces_json.append(face_to_json(face, pipeline.model.expression_names, mesh_rel))
                track_ids.add(face.track_id)
            if write_overlay:
                overlay = draw_overlay(frame.image_bgr, result.faces, meshes, triangles)
                if source.kind == "video":
                    if video_writer is None:
                        video_tmp = out_dir / ".overlay.tmp.mp4"
                        video_writer = cv2.VideoWriter(str(video_tmp), cv2.VideoWriter_fourcc(*"mp4v"),
                                                       source.fps, (result.width, result.height))
                    video_writer.write(overlay)
                else:
                    atomic_write_bytes(out_dir / "overlay" / f"{name}.jpg", encode_image(overlay))
            frame_json = {
                "frame": frame.index,
                "source": frame.source,
                "image": {"width": result.width, "height": result.height},
                "faces": faces_json,
            }
            if write_masks:
                mask, parsing = frame_masks(result)
                frame_json["occlusion_mask"] = f"masks/{name}.png"
                frame_json["parsing"] = f"parsing/{name}.png"
                atomic_write_bytes(out_dir / frame_json["occlusion_mask"], encode_image(mask, ".png"))
                atomic_write_bytes(out_dir / frame_json["parsing"], encode_image(parsing, ".png"))
            if write_deoccluded:
                image = result.deoccluded_bgr if result.deoccluded_bgr is not None else frame.image_bgr
                frame_json["deoccluded"] = f"deoccluded/{name}.png"
                atomic_write_bytes(out_dir / frame_json["deoccluded"], encode_image(image, ".png"))
            write_json(out_dir / "frames" / f"{name}.json", frame_json)
            frames += 1
            frames_with_faces += bool(result.faces)
    finally:
        if video_writer is not None:
            video_writer.release()
            video_tmp.replace(out_dir / "overlay.mp4")
    elapsed = time.perf_counter() - start
    summary = {
        "input": str(source.path),
        "kind": source.kind,
        "sequence": not photos,
        "frames": frames,
        "frames_with_faces": frames_with_faces,
        "tracks": len(track_ids),
        "track_ids": sorted(track_ids),
        "skipped_inputs": source.skipped,
        "fps": frames / elapsed if elapsed > 0 else 0.0,
        "stages": pipeline.timer.summary(),
        "model": pipeline.model.name,
        "expression_names": pipeline.model.expression_names,
        "config": config,
    }
    write_json(out_dir / "summary.json", summary)
    return summary
