"""What every training loop shares: the endless, resumable sample stream and its loader, the
identity split for validation, the learning-rate schedule, the head renderer, atomic checkpoints.
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path

import torch

from ..paths import atomic_write_bytes
from .samples import SampleConfig, SampleEngine, TeacherFace, validation_identity


def worker_init(_worker_id: int) -> None:
    import cv2

    cv2.setNumThreads(1)  # OpenCV's own threads only add overhead beside torch's in a sample worker
    torch.set_num_threads(1)


class SampleStream(torch.utils.data.Dataset):
    """The engine's samples by index (an endless stream)."""

    def __init__(self, engine: SampleEngine):
        self.engine = engine

    def __len__(self) -> int:
        return 1 << 40

    def __getitem__(self, index: int):
        return self.engine.sample(int(index))


class StreamFrom(torch.utils.data.Sampler):
    """Indices start, start + 1, ...: a resumed run continues the same sample stream."""

    def __init__(self, start: int, count: int):
        self.start, self.count = start, count

    def __iter__(self):
        return iter(range(self.start, self.start + self.count))

    def __len__(self) -> int:
        return self.count


def sample_loader(engine: SampleEngine, collate_fn, batch_size: int, step: int, steps: int, workers: int):
    """Batches for steps `step`..`steps` (the same samples whether resumed or not)."""
    return torch.utils.data.DataLoader(
        SampleStream(engine), batch_size=batch_size, sampler=StreamFrom(step * batch_size, max(0, steps - step) * batch_size),
        num_workers=workers, collate_fn=collate_fn, worker_init_fn=worker_init if workers else None,
        prefetch_factor=4 if workers else None,
        # spawned, not forked: a forked worker that runs torch ops (the head renderer) can hang on the
        # parent's OpenMP state
        multiprocessing_context="spawn" if workers else None, persistent_workers=bool(workers))


def cosine_lr(step: int, lr: float, warmup_steps: int, steps: int) -> float:
    """Linear warm-up, then cosine to 0 at `steps`."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    return lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))))


def split_faces(faces: list[TeacherFace], fraction: float, seed: int) -> tuple[list[TeacherFace], list[TeacherFace]]:
    """(training, validation) faces: `train` identities held out by a seeded hash."""
    val = [f for f in faces if validation_identity(f.identity, fraction, seed)]
    train = [f for f in faces if not validation_identity(f.identity, fraction, seed)]
    if not train or not val:
        raise ValueError(f"identity split gave {len(train)} training and {len(val)} validation faces; "
                         "need both (more photos, or another val_identity_fraction)")
    return train, val


def head_renderer(faces: list[TeacherFace], count: int, progress: bool = True):
    """The head renderer with textures from up to `count` photos of `faces` (training identities)."""
    from ..config import load_config
    from ..pipeline import FacePipeline
    from .heads import HeadRenderer

    if count <= 0:
        raise ValueError("samples.render_fraction > 0 needs render_textures > 0")
    pipeline = FacePipeline(load_config(overrides={"occlusion": {"enabled": False}}))
    return HeadRenderer.from_faces(pipeline, faces, count, progress)


def resolve_init_weights(path: str) -> Path:
    """`init_weights` as given, else relative to the repository (the shipped weights' path)."""
    p = Path(path)
    if not p.is_file() and not p.is_absolute():
        p = Path(__file__).resolve().parents[2] / path
    if not p.is_file():
        raise FileNotFoundError(f"init_weights {path}: no such file")
    return p


def save_atomic(path: Path, state: dict) -> None:
    """torch.save to `path` without ever leaving a half-written file."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_train_config(cls, path: str | Path):
    """A training config dataclass from its YAML; unknown keys (and unknown `samples` keys) fail here,
    before any work."""
    import yaml

    data = yaml.safe_load(Path(path).read_text()) or {}
    unknown = set(data) - set(cls.__dataclass_fields__)
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
    cfg = cls(**data)
    SampleConfig.from_dict(cfg.samples)
    return cfg


def plot_curves(history: dict, path: Path, loss_keys, val_keys, val_title: str, baseline: dict | None = None,
                baseline_name: str = "") -> None:
    """curves.png: running training losses (log) and validation figures, a baseline's as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key in loss_keys:
        if history.get(key):
            axes[0].plot(history["step"], history[key], label=key)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_title("training loss (running mean)")
    for k, key in enumerate(val_keys):
        style = ("-", "--", ":", "-.")[k % 4]
        if history.get("val_" + key):
            axes[1].plot(history["val_step"], history["val_" + key], style, label=f"trained: {key}")
        if baseline and key in baseline:
            axes[1].axhline(baseline[key], ls=style, color="grey", label=f"{baseline_name}: {key}")
    axes[1].set_xlabel("step")
    axes[1].set_title(val_title)
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
