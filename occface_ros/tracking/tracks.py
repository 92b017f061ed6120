"""The live tracks' state between frames, and lost tracks held for re-acquisition."""
from __future__ import annotations

from typing import Callable

import torch

from ..contracts import TrackedFaces, TrackState
from ..core.roi import box_iou


class TrackRegistry:
    """Live tracks by id, and lost ones held for `hold_s`: a new face whose landmark box overlaps a
    held track's last box by `reacquire_iou` or more resumes it (id, identity, texture, pose and
    filters), e.g. after an occluder hid the whole face for a moment."""

    def __init__(self, new_state: Callable[[], TrackState], hold_s: float, reacquire_iou: float):
        self.new_state = new_state
        self.hold_s = float(hold_s)
        self.reacquire_iou = float(reacquire_iou)
        self.live: dict[int, TrackState] = {}
        self.held: dict[int, TrackState] = {}

    def reset(self) -> None:
        self.live.clear()
        self.held.clear()

    def states(self, track_ids: list[int]) -> list[TrackState]:
        """The states of these tracks, in order; a new state for a new track."""
        for tid in track_ids:
            if tid not in self.live:
                self.live[tid] = self.new_state()
        return [self.live[t] for t in track_ids]

    def update(self, faces: TrackedFaces, timestamp_s: float) -> tuple[list[int], dict[int, int]]:
        """Hold this frame's lost tracks, resume held ones under new faces, end those held too long.
        Returns (the ids that ended, {new id: resumed id}); `faces` carries the resumed ids."""
        ended = []
        for tid in faces.lost_ids:
            state = self.live.pop(tid, None)
            if state is not None and self.hold_s > 0 and state.bbox is not None:
                state.lost_at_s = timestamp_s
                self.held[tid] = state
            else:
                ended.append(tid)
        renamed = self._reacquire(faces) if self.held and faces.new_ids else {}
        for tid in [t for t, s in self.held.items()
                    if timestamp_s - s.lost_at_s > self.hold_s or timestamp_s < s.lost_at_s]:
            del self.held[tid]
            ended.append(tid)
        return ended, renamed

    def _reacquire(self, faces: TrackedFaces) -> dict[int, int]:
        held_ids = list(self.held)
        held_boxes = torch.stack([self.held[t].bbox for t in held_ids])
        boxes = faces.boxes()
        renamed: dict[int, int] = {}
        for new_id in faces.new_ids:
            iou = box_iou(boxes[faces.track_ids.index(new_id)][None], held_boxes)[0]
            iou[[j for j, t in enumerate(held_ids) if t in renamed.values()]] = -1.0
            best = int(iou.argmax())
            if float(iou[best]) >= self.reacquire_iou:
                renamed[new_id] = held_ids[best]
        for new_id, old_id in renamed.items():
            state = self.held.pop(old_id)
            state.lost_at_s = None
            state.smoother.reset()  # the filters restart at the face as it is now, not as it was
            self.live[old_id] = state
        if renamed:
            faces.track_ids = [renamed.get(t, t) for t in faces.track_ids]
            faces.new_ids = [t for t in faces.new_ids if t not in renamed]
        return renamed
