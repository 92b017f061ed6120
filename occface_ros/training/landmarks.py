"""`occface train landmarks`: the occlusion-robust landmark network (landmarks/occnet.py) trained on
the sample engine (training/samples.py), starting from FaceMesh's converted weights.

Losses per sample: smooth-L1 on the 468 landmarks (x, y in units of the crop side; z down-weighted)
against the teacher's landmarks of the unoccluded face, binary cross-entropy on per-landmark
visibility and on face presence (negatives: presence only). Validation on `train`-split identities
held out by a seeded hash (the eval photos never enter: training/photo_pool.py refuses them):
NME of the 68 points (outer-eye-corner normaliser) on occluded and clean crops, beside FaceMesh's own.

A run directory holds `checkpoint.pt` (model, optimiser, step, history: resumable, also after
Ctrl-C), `curves.png`, `history.json`, and at the end `occnet_landmarks.pt` + `.json` (provenance:
command, config, data manifest digest, figures); all written atomically.
"""
from __future__ import annotations

import io
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from ..landmarks.correspondence import landmarks68_from_mp468, load_correspondences
from ..landmarks.occnet import OccLandmarkNet, build_occnet
from ..paths import atomic_write_bytes
from .samples import INPUT_SIZE, SampleConfig, SampleEngine, TeacherFace, collate, validation_identity

@dataclass
class LandmarkTrainConfig:
    """One training configuration (config/training/landmarks.yaml)."""

    steps: int = 6000
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    loss_xy: float = 1.0
    loss_z: float = 0.1
    loss_visibility: float = 0.05
    loss_presence: float = 0.05
    val_identity_fraction: float = 0.15
    val_samples: int = 256
    val_every: int = 250
    checkpoint_every: int = 250
    num_threads: int = 2
    workers: int = 1
    seed: int = 0
    samples: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> LandmarkTrainConfig:
        data = yaml.safe_load(Path(path).read_text()) or {}
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        cfg = cls(**data)
        SampleConfig.from_dict(cfg.samples)  # validated here: a typo fails before any work
        return cfg


def _worker_init(_worker_id: int) -> None:
    import cv2

    cv2.setNumThreads(1)  # OpenCV's own threads only add overhead beside torch's in a sample worker
    torch.set_num_threads(1)


class _Samples(torch.utils.data.Dataset):
    def __init__(self, engine: SampleEngine):
        self.engine = engine

    def __len__(self) -> int:
        return 1 << 40

    def __getitem__(self, index: int):
        return self.engine.sample(int(index))


class _From(torch.utils.data.Sampler):
    """Indices start, start + 1, ...: a resumed run continues the same sample stream."""

    def __init__(self, start: int, count: int):
        self.start, self.count = start, count

    def __iter__(self):
        return iter(range(self.start, self.start + self.count))

    def __len__(self) -> int:
        return self.count


def landmark_loss(out, batch: dict, cfg: LandmarkTrainConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts for one batch (see the module docstring)."""
    landmarks, presence_logit, _presence, visibility_logit = out
    pos = batch["presence"] > 0.5
    parts = {"presence": F.binary_cross_entropy_with_logits(presence_logit, batch["presence"])}
    if bool(pos.any()):
        target = batch["landmarks468"][pos]
        pred = landmarks[pos]
        parts["xy"] = F.smooth_l1_loss(pred[..., :2] / INPUT_SIZE, target[..., :2] / INPUT_SIZE, beta=0.01)
        parts["z"] = F.smooth_l1_loss(pred[..., 2] / INPUT_SIZE, target[..., 2] / INPUT_SIZE, beta=0.01)
        parts["visibility"] = F.binary_cross_entropy_with_logits(visibility_logit[pos],
                                                                 batch["visible468"][pos].float())
    else:
        parts.update(xy=landmarks.sum() * 0, z=landmarks.sum() * 0, visibility=visibility_logit.sum() * 0)
    total = (cfg.loss_xy * parts["xy"] + cfg.loss_z * parts["z"] + cfg.loss_visibility * parts["visibility"]
             + cfg.loss_presence * parts["presence"])
    return total, {k: float(v.detach()) for k, v in parts.items()}


def nme68(pred468: torch.Tensor, target468: torch.Tensor) -> torch.Tensor:
    """(B,) NME of the 68 iBUG points from 468-point sets, outer-eye-corner normaliser."""
    corr = load_correspondences()
    p, t = landmarks68_from_mp468(pred468[..., :2], corr), landmarks68_from_mp468(target468[..., :2], corr)
    iod = (t[:, 45] - t[:, 36]).norm(dim=-1).clamp_min(1.0)
    return (p - t).norm(dim=-1).mean(-1) / iod


@torch.no_grad()
def evaluate(net, val: dict, occluded: torch.Tensor) -> dict[str, float]:
    """Validation figures of `net` (FaceMesh itself when it returns 3 outputs)."""
    net.eval()
    out = net(val["image"])
    pos = val["presence"] > 0.5
    err = nme68(out[0][pos], val["landmarks468"][pos])
    occ = occluded[pos]
    figures = {"nme_occluded": float(err[occ].mean()) if bool(occ.any()) else float("nan"),
               "nme_clean": float(err[~occ].mean()) if bool((~occ).any()) else float("nan"),
               "presence_recall": float((out[2][pos] >= 0.5).float().mean()),
               "presence_rejects": float((out[2][~pos] < 0.5).float().mean()) if bool((~pos).any()) else float("nan")}
    if len(out) > 3:
        seen = out[3][pos] > 0
        figures["visibility_accuracy"] = float((seen == val["visible468"][pos]).float().mean())
    return figures


def _save_atomic(path: Path, state: dict) -> None:
    """torch.save to `path` without ever leaving a half-written file."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _plot(history: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    steps = history["step"]
    for key in ("loss", "xy", "visibility", "presence"):
        if history.get(key):
            axes[0].plot(steps, history[key], label=key)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_title("training loss (running mean)")
    for key, style in (("nme_occluded", "-"), ("nme_clean", "--")):
        if history.get("val_" + key):
            axes[1].plot(history["val_step"], history["val_" + key], style, label=f"trained: {key}")
        if key in history.get("facemesh", {}):
            axes[1].axhline(history["facemesh"][key], ls=style, color="grey", label=f"FaceMesh: {key}")
    axes[1].set_xlabel("step")
    axes[1].set_title("validation NME (68 points, IOD)")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    buffer_path = path.with_suffix(".tmp.png")
    fig.savefig(buffer_path, dpi=90)
    plt.close(fig)
    os.replace(buffer_path, path)


@dataclass
class TrainResult:
    weights: Path | None
    step: int
    figures: dict
    facemesh: dict


def split_faces(faces: list[TeacherFace], cfg: LandmarkTrainConfig) -> tuple[list[TeacherFace], list[TeacherFace]]:
    val = [f for f in faces if validation_identity(f.identity, cfg.val_identity_fraction, cfg.seed)]
    train = [f for f in faces if not validation_identity(f.identity, cfg.val_identity_fraction, cfg.seed)]
    if not train or not val:
        raise ValueError(f"identity split gave {len(train)} training and {len(val)} validation faces; "
                         "need both (more photos, or another val_identity_fraction)")
    return train, val


def train_landmarks(cfg: LandmarkTrainConfig, faces: list[TeacherFace], run_dir: str | Path, *, resume: bool = True,
                    progress: bool = True, provenance: dict | None = None, device: str | None = None) -> TrainResult:
    """Train (or resume) in `run_dir`; returns the final weights path (None when stopped early)."""
    from tqdm import tqdm

    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    train_faces, val_faces = split_faces(faces, cfg)
    sample_cfg = SampleConfig.from_dict({**cfg.samples, "seed": cfg.seed})
    engine = SampleEngine(train_faces, sample_cfg)
    val_engine = SampleEngine(val_faces, SampleConfig.from_dict({**cfg.samples, "seed": cfg.seed + 1_000_003}))
    val_samples = [val_engine.sample(i) for i in range(cfg.val_samples)]
    val = {k: v.to(dev) for k, v in collate(val_samples).items()}
    val_occluded = torch.tensor([bool(s.kinds) for s in val_samples], device=dev)

    net: OccLandmarkNet = build_occnet().to(dev).train().requires_grad_(True)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: dict = {"step": [], "loss": [], "xy": [], "visibility": [], "presence": [], "val_step": []}
    step = 0
    ckpt_path = run / "checkpoint.pt"
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location=dev, weights_only=True)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, history = int(state["step"]), state["history"]
        print(f"resumed {ckpt_path} at step {step}", file=sys.stderr)
    if "facemesh" not in history:
        from ..nets.models import build_network

        history["facemesh"] = evaluate(build_network("face_landmarks").to(dev), val, val_occluded)

    def lr_at(s: int) -> float:
        if s < cfg.warmup_steps:
            return cfg.lr * (s + 1) / cfg.warmup_steps
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (s - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))))

    def save() -> None:
        _save_atomic(ckpt_path, {"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                      "history": history, "config": asdict(cfg)})
        (run / "history.json").write_text(json.dumps(history, indent=1))
        _plot(history, run / "curves.png")

    loader = torch.utils.data.DataLoader(
        _Samples(engine), batch_size=cfg.batch_size, sampler=_From(step * cfg.batch_size,
                                                                     max(0, cfg.steps - step) * cfg.batch_size),
        num_workers=cfg.workers, collate_fn=collate, worker_init_fn=_worker_init if cfg.workers else None,
        prefetch_factor=4 if cfg.workers else None)
    running: dict[str, float] = {}
    bar = tqdm(total=cfg.steps, initial=step, desc="train landmarks", unit="step", disable=not progress)
    started = time.perf_counter()
    try:
        for batch in loader:
            net.train()
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            batch = {k: v.to(dev) for k, v in batch.items()}
            loss, parts = landmark_loss(net(batch["image"]), batch, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            step += 1
            for k, v in {"loss": float(loss.detach()), **parts}.items():
                running[k] = v if k not in running else 0.95 * running[k] + 0.05 * v
            bar.update(1)
            bar.set_postfix(loss=f"{running['loss']:.4f}", xy=f"{running['xy']:.4f}")
            if step % 25 == 0 or step == cfg.steps:
                history["step"].append(step)
                for k in ("loss", "xy", "visibility", "presence"):
                    history[k].append(running[k])
            if step % cfg.val_every == 0 or step == cfg.steps:
                figures = evaluate(net, val, val_occluded)
                history["val_step"].append(step)
                for k, v in figures.items():
                    history.setdefault("val_" + k, []).append(v)
                bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items())
                          + f" (FaceMesh: occluded {history['facemesh']['nme_occluded']:.4f}, "
                            f"clean {history['facemesh']['nme_clean']:.4f})")
            if step % cfg.checkpoint_every == 0:
                save()
    except KeyboardInterrupt:
        bar.close()
        save()
        print(f"\nstopped at step {step}: resumable checkpoint {ckpt_path} (no weights written)", file=sys.stderr)
        raise
    bar.close()
    save()
    figures = evaluate(net, val, val_occluded)
    elapsed = time.perf_counter() - started
    weights = run / "occnet_landmarks.pt"
    record = {**(provenance or {}), "steps": step, "config": asdict(cfg), "validation": figures,
              "validation_facemesh": history["facemesh"], "train_faces": len(train_faces),
              "val_faces": len(val_faces), "seconds_this_session": round(elapsed, 1),
              "device": str(dev), "torch": torch.__version__}
    _save_atomic(weights, {k: v.detach().cpu() for k, v in net.state_dict().items()})
    atomic_write_bytes(weights.with_suffix(".json"), json.dumps(record, indent=1).encode())
    return TrainResult(weights, step, figures, history["facemesh"])
