"""What every training loop shares: the endless, resumable sample stream and its loader, the
identity split for validation, the learning-rate schedule, the head renderer, atomic checkpoints, the configuration fields every trainer has.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
from dataclasses import dataclass, field
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


class Engines:
    """A run's sample engines: training faces (+ rendered heads) and validation faces (photo
    composites only: comparable across runs), split by identity; torch seeded, threads and device set."""

    def __init__(self, cfg, faces: list[TeacherFace], device: str | None, progress: bool, **sample_overrides):
        torch.manual_seed(cfg.seed)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.train_faces, self.val_faces = split_faces(faces, cfg.val_identity_fraction, cfg.seed)
        sample_cfg = SampleConfig.from_dict({**cfg.samples, **sample_overrides, "seed": cfg.seed})
        self.heads = (head_renderer(self.train_faces, cfg.render_textures, progress)
                      if sample_cfg.render_fraction > 0 else None)
        self.hard_negatives, scenes = [], []
        if sample_cfg.hard_negative_fraction > 0 or sample_cfg.scene_fraction > 0:
            from .photo_pool import scenes_without_faces

            scenes = scenes_without_faces(count=cfg.scene_count)
        if sample_cfg.hard_negative_fraction > 0:
            from .hard_negatives import detector_negatives

            self.hard_negatives = detector_negatives(faces, scenes, cfg.hard_negative_min_score, progress=progress)
        val_negative = [validation_identity(n.identity, cfg.val_identity_fraction, cfg.seed) for n in self.hard_negatives]
        val_scene = [validation_identity(i, cfg.val_identity_fraction, cfg.seed) for i, _ in scenes]
        self.train = SampleEngine(self.train_faces, sample_cfg, self.heads,
                                  [n for n, v in zip(self.hard_negatives, val_negative) if not v],
                                  [s for s, v in zip(scenes, val_scene) if not v])
        self.val = SampleEngine(self.val_faces, SampleConfig.from_dict(
            {**cfg.samples, **sample_overrides, "seed": cfg.seed + 1_000_003, "render_fraction": 0.0}),
            hard_negatives=[n for n, v in zip(self.hard_negatives, val_negative) if v],
            scenes=[s for s, v in zip(scenes, val_scene) if v])

    def provenance(self) -> dict:
        return {"head_textures": len(self.heads.textures) if self.heads is not None else 0,
                "hard_negatives": {"train": len(self.train.hard_negatives), "val": len(self.val.hard_negatives)},
                "scenes": {"train": len(self.train.scenes), "val": len(self.val.scenes)},
                "train_faces": len(self.train_faces), "val_faces": len(self.val_faces), "device": str(self.device),
                "torch": torch.__version__}


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


def load_init_weights(path: str, device) -> tuple[dict, Path, str]:
    """A run's `init_weights`: (state dict on `device`, loaded with weights_only=True; the file, as
    given or else relative to the repository (the shipped weights' path); its sha256 for the
    provenance)."""
    p = Path(path)
    if not p.is_file() and not p.is_absolute():
        p = Path(__file__).resolve().parents[2] / path
    if not p.is_file():
        raise FileNotFoundError(f"init_weights {path}: no such file")
    return torch.load(p, map_location=device, weights_only=True), p, hashlib.sha256(p.read_bytes()).hexdigest()


def save_atomic(path: Path, state: dict) -> None:
    """torch.save to `path` without ever leaving a half-written file."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


@dataclass
class TrainConfig:
    """The fields every trainer's YAML shares (config/training/*.yaml); each trainer's config class
    adds its own and changes defaults."""

    steps: int = 3000
    batch_size: int = 32
    lr: float = 1e-3  # AdamW, linear warm-up then cosine to 0
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    val_identity_fraction: float = 0.15  # `train` identities held out for validation (seeded hash)
    val_samples: int = 192
    val_every: int = 250
    checkpoint_every: int = 250
    num_threads: int = 2
    workers: int = 1  # spawned sample-loader processes (0: in the training process)
    seed: int = 0
    render_textures: int = 0  # textures (photos) of the head renderer; 0: no rendered heads
    hard_negative_min_score: float = 0.1  # detector score of the mined false alarms (samples.hard_negative_fraction > 0)
    # the first N of the pool's scenes without a face give negatives (null: all); the manifest's list
    # only grows at its end, and the shipped presence run saw the first 30
    scene_count: int | None = 30
    samples: dict = field(default_factory=dict)  # training/samples.py SampleConfig overrides

    @classmethod
    def load(cls, path: str | Path):
        return load_train_config(cls, path)


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


class TrainingRun:
    """The loop every trainer shares, in a run folder: resume from `checkpoint.pt`, warm-up + cosine
    learning rate, gradient clipping, running means of the loss parts (history every 25 steps),
    validation every `val_every` steps, a checkpoint every `checkpoint_every` steps and on Ctrl-C
    (then no weights are written and KeyboardInterrupt goes on), `history.json` and `curves.png`
    with each checkpoint; `finish` writes the weights and their provenance JSON.

    `cfg` needs steps, lr, warmup_steps, val_every, checkpoint_every; `plot(history, path)` draws.
    `extra`: more state in the checkpoint (e.g. a discriminator and its optimizer), objects with
    state_dict / load_state_dict; only `net` is written as the weights."""

    def __init__(self, run_dir: str | Path, net: torch.nn.Module, opt: torch.optim.Optimizer, cfg, device,
                 plot, resume: bool = True, extra: dict | None = None):
        import sys

        self.run = Path(run_dir)
        self.run.mkdir(parents=True, exist_ok=True)
        self.net, self.opt, self.cfg, self.device, self.plot = net, opt, cfg, device, plot
        self.extra = dict(extra or {})
        self.step, self.history = 0, {"step": [], "val_step": []}
        self.checkpoint = self.run / "checkpoint.pt"
        if resume and self.checkpoint.is_file():
            state = torch.load(self.checkpoint, map_location=device, weights_only=True)
            net.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            for key, obj in self.extra.items():
                obj.load_state_dict(state["extra"][key])
            self.step, self.history = int(state["step"]), state["history"]
            print(f"resumed {self.checkpoint} at step {self.step}", file=sys.stderr)

    def save(self) -> None:
        import json
        from dataclasses import asdict

        save_atomic(self.checkpoint, {"model": self.net.state_dict(), "optimizer": self.opt.state_dict(),
                                      "step": self.step, "history": self.history, "config": asdict(self.cfg),
                                      "extra": {k: v.state_dict() for k, v in self.extra.items()}})
        (self.run / "history.json").write_text(json.dumps(self.history, indent=1))
        self.plot(self.history, self.run / "curves.png")

    def loop(self, loader, step_loss, evaluate, desc: str, progress: bool = True, note=lambda: "",
             max_grad_norm: float = 1.0) -> float:
        """Train over `loader`'s batches: `step_loss(batch) -> (loss, {part: float})`, `evaluate() ->
        {figure: float}`, `note()` appended to each validation line. Returns the seconds it ran."""
        import sys
        import time

        from tqdm import tqdm

        cfg, history = self.cfg, self.history
        running: dict[str, float] = {}
        bar = tqdm(total=cfg.steps, initial=self.step, desc=desc, unit="step", disable=not progress)
        started = time.perf_counter()
        try:
            for batch in loader:
                self.net.train()
                for group in self.opt.param_groups:
                    group["lr"] = cosine_lr(self.step, cfg.lr, cfg.warmup_steps, cfg.steps)
                loss, parts = step_loss({k: v.to(self.device) for k, v in batch.items()})
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), max_grad_norm)
                self.opt.step()
                self.step += 1
                for k, v in {"loss": float(loss.detach()), **parts}.items():
                    running[k] = v if k not in running else 0.95 * running[k] + 0.05 * v
                bar.update(1)
                bar.set_postfix(loss=f"{running['loss']:.4f}")
                if self.step % 25 == 0 or self.step == cfg.steps:
                    history["step"].append(self.step)
                    for k, v in running.items():
                        history.setdefault(k, []).append(v)
                if self.step % cfg.val_every == 0 or self.step == cfg.steps:
                    figures = evaluate()
                    history["val_step"].append(self.step)
                    for k, v in figures.items():
                        history.setdefault("val_" + k, []).append(v)
                    bar.write(f"step {self.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()) + note())
                if self.step % cfg.checkpoint_every == 0:
                    self.save()
        except KeyboardInterrupt:
            bar.close()
            self.save()
            print(f"\nstopped at step {self.step}: resumable checkpoint {self.checkpoint} (no weights written)",
                  file=sys.stderr)
            raise
        bar.close()
        self.save()
        return time.perf_counter() - started

    def finish(self, name: str, record: dict) -> Path:
        """Write the weights `name` (state dict) and `name`.json (provenance) atomically; return the path."""
        import json

        weights = self.run / name
        save_atomic(weights, {k: v.detach().cpu() for k, v in self.net.state_dict().items()})
        atomic_write_bytes(weights.with_suffix(".json"), json.dumps(record, indent=1).encode())
        return weights
