"""Standalone: time MediaPipe's legacy FaceMesh (LiteRT) per frame. Runs in .venv-ref only.

usage: python mp_legacy_facemesh.py FRAMES.npy OUT.json LANDMARKS.npy WARMUP [--static]
"""
import json
import sys
import time

import mediapipe as mp
import numpy as np


def main() -> None:
    frames_path, out_path, lms_path, warmup = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    static = "--static" in sys.argv[5:]
    frames = np.load(frames_path, allow_pickle=False)
    rgb = [np.ascontiguousarray(f[:, :, ::-1]) for f in frames]
    kwargs = dict(static_image_mode=static, max_num_faces=1, refine_landmarks=False,
                  min_detection_confidence=0.5, min_tracking_confidence=0.5)
    with mp.solutions.face_mesh.FaceMesh(**kwargs) as mesh:  # warm-up on a separate instance's worth of frames
        for f in rgb[:warmup]:
            mesh.process(f)
    times, landmarks = [], np.full((len(rgb), 468, 3), np.nan, dtype=np.float32)
    with mp.solutions.face_mesh.FaceMesh(**kwargs) as mesh:
        for i, f in enumerate(rgb):
            t0 = time.perf_counter()
            res = mesh.process(f)
            times.append((time.perf_counter() - t0) * 1e3)
            if res.multi_face_landmarks:
                h, w = f.shape[:2]
                pts = res.multi_face_landmarks[0].landmark
                landmarks[i] = np.array([[p.x * w - 0.5, p.y * h - 0.5, p.z * w] for p in pts], dtype=np.float32)
    with open(out_path, "w") as fh:
        json.dump({"name": f"mediapipe {mp.__version__} solutions.face_mesh (legacy, LiteRT)",
                   "per_frame_ms": times, "static_image_mode": static}, fh)
    np.save(lms_path, landmarks)


if __name__ == "__main__":
    main()
