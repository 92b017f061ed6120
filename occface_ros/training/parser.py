"""`occface train parser`: the paper's N_alpha, a U-Net (occlusion/parser.py) that labels the visible
face on the tracker's face crop, trained on the sample engine with `parsing_labels`.

Labels (core/labels.py): the face's regions where the face shows, OCCLUDER wherever an occluder
covers it, BACKGROUND elsewhere; rendered heads give exact regions, photo composites the regions
drawn from the teacher's 68 points (training/samples.py). Loss: cross-entropy per pixel. No
pretrained parsing weights exist offline: the network starts from random weights (seeded).
Validation on `train` identities held out by a seeded hash: pixel accuracy, mean IoU over the
labels present, F1 of "visible face" (any face label) and of OCCLUDER on occluded crops.

A run directory holds `checkpoint.pt` (resumable, also after Ctrl-C), `curves.png`,
`history.json`, and at the end `parser.pt` + `.json` (provenance); all written atomically.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..core.labels import FACE_LABELS, LABELS, OCCLUDER, label_mask
from ..occlusion.parser import ParsingUNet
from ..paths import atomic_write_bytes
from .common import (
    cosine_lr,
    head_renderer,
    load_train_config,
    plot_curves,
    sample_loader,
    save_atomic,
    split_faces,
)
from .samples import SampleConfig, SampleEngine, TeacherFace


@dataclass
class ParserTrainConfig:
    """One parser training configuration (config/training/parser.yaml)."""

    steps: int = 3000
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    input_size: int = 128  # the parser's crop side (pixels)
    base_channels: int = 8
    val_identity_fraction: float = 0.15
    val_samples: int = 192
    val_every: int = 250
    checkpoint_every: int = 250
    num_threads: int = 2
    workers: int = 1
    seed: int = 0
    render_textures: int = 0
    samples: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> ParserTrainConfig:
        return load_train_config(cls, path)


class ParsingCollate:
    """Samples -> (B, 3, S, S) float RGB [0, 1] crops and (B, S, S) int64 labels at the parser's size."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, samples) -> dict[str, torch.Tensor]:
        s = self.size
        images = np.stack([cv2.resize(x.image, (s, s), interpolation=cv2.INTER_AREA) for x in samples])[..., ::-1]
        labels = np.stack([cv2.resize(x.parsing, (s, s), interpolation=cv2.INTER_NEAREST) for x in samples])
        return {"image": torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0,
                "parsing": torch.from_numpy(labels.astype(np.int64)),
                "occluded": torch.tensor([bool(x.kinds) and x.presence > 0 for x in samples])}


def _f1(pred: torch.Tensor, truth: torch.Tensor) -> float:
    tp = float((pred & truth).sum())
    denom = float(pred.sum() + truth.sum())
    return 2 * tp / denom if denom else float("nan")


@torch.no_grad()
def evaluate_parser(net: ParsingUNet, val: dict) -> dict[str, float]:
    """Validation figures (see the module docstring)."""
    net.eval()
    pred = torch.cat([net(val["image"][i:i + 32]).argmax(1) for i in range(0, len(val["image"]), 32)])
    truth = val["parsing"]
    ious = []
    for k in LABELS:
        p, t = pred == k, truth == k
        if bool(t.any()):
            ious.append(float((p & t).sum()) / float((p | t).sum()))
    occ = val["occluded"]
    face_ids = torch.tensor(FACE_LABELS, device=pred.device)
    return {"pixel_accuracy": float((pred == truth).float().mean()),
            "mean_iou": float(np.mean(ious)),
            "face_f1": _f1(label_mask(pred, face_ids), label_mask(truth, face_ids)),
            "occluder_f1": _f1(pred[occ] == OCCLUDER, truth[occ] == OCCLUDER) if bool(occ.any()) else float("nan")}


@dataclass
class ParserTrainResult:
    weights: Path | None
    step: int
    figures: dict


def train_parser(cfg: ParserTrainConfig, faces: list[TeacherFace], run_dir: str | Path, *, resume: bool = True,
                 progress: bool = True, provenance: dict | None = None, device: str | None = None) -> ParserTrainResult:
    """Train (or resume) in `run_dir`; returns the final weights path."""
    from tqdm import tqdm

    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    train_faces, val_faces = split_faces(faces, cfg.val_identity_fraction, cfg.seed)
    sample_cfg = SampleConfig.from_dict({**cfg.samples, "seed": cfg.seed, "parsing_labels": True})
    heads = head_renderer(train_faces, cfg.render_textures, progress) if sample_cfg.render_fraction > 0 else None
    engine = SampleEngine(train_faces, sample_cfg, heads)
    val_cfg = {**cfg.samples, "seed": cfg.seed + 1_000_003, "render_fraction": 0.0, "parsing_labels": True}
    val_engine = SampleEngine(val_faces, SampleConfig.from_dict(val_cfg))
    collate = ParsingCollate(cfg.input_size)
    val = {k: v.to(dev) for k, v in collate([val_engine.sample(i) for i in range(cfg.val_samples)]).items()}

    net = ParsingUNet(cfg.base_channels, input_size=cfg.input_size).to(dev).train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: dict = {"step": [], "loss": [], "val_step": []}
    step = 0
    ckpt_path = run / "checkpoint.pt"
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location=dev, weights_only=True)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, history = int(state["step"]), state["history"]
        print(f"resumed {ckpt_path} at step {step}", file=sys.stderr)

    def save() -> None:
        save_atomic(ckpt_path, {"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                "history": history, "config": asdict(cfg)})
        (run / "history.json").write_text(json.dumps(history, indent=1))
        plot_curves(history, run / "curves.png", ("loss",), ("mean_iou", "face_f1", "occluder_f1"),
                    "validation (held-out identities)")

    loader = sample_loader(engine, collate, cfg.batch_size, step, cfg.steps, cfg.workers)
    running = None
    bar = tqdm(total=cfg.steps, initial=step, desc="train parser", unit="step", disable=not progress)
    started = time.perf_counter()
    try:
        for batch in loader:
            net.train()
            for group in opt.param_groups:
                group["lr"] = cosine_lr(step, cfg.lr, cfg.warmup_steps, cfg.steps)
            loss = F.cross_entropy(net(batch["image"].to(dev)), batch["parsing"].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            running = float(loss.detach()) if running is None else 0.95 * running + 0.05 * float(loss.detach())
            bar.update(1)
            bar.set_postfix(loss=f"{running:.4f}")
            if step % 25 == 0 or step == cfg.steps:
                history["step"].append(step)
                history["loss"].append(running)
            if step % cfg.val_every == 0 or step == cfg.steps:
                figures = evaluate_parser(net, val)
                history["val_step"].append(step)
                for k, v in figures.items():
                    history.setdefault("val_" + k, []).append(v)
                bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))
            if step % cfg.checkpoint_every == 0:
                save()
    except KeyboardInterrupt:
        bar.close()
        save()
        print(f"\nstopped at step {step}: resumable checkpoint {ckpt_path} (no weights written)", file=sys.stderr)
        raise
    bar.close()
    save()
    figures = evaluate_parser(net, val)
    weights = run / "parser.pt"
    record = {**(provenance or {}), "steps": step, "config": asdict(cfg), "validation": figures,
              "head_textures": len(heads.textures) if heads is not None else 0, "train_faces": len(train_faces),
              "val_faces": len(val_faces), "seconds_this_session": round(time.perf_counter() - started, 1),
              "device": str(dev), "torch": torch.__version__}
    save_atomic(weights, {k: v.detach().cpu() for k, v in net.state_dict().items()})
    atomic_write_bytes(weights.with_suffix(".json"), json.dumps(record, indent=1).encode())
    return ParserTrainResult(weights, step, figures)
