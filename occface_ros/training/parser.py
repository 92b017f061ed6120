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

from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..core.labels import FACE_LABELS, LABELS, OCCLUDER, label_mask
from ..occlusion.parser import ParsingUNet
from .common import Engines, TrainingRun, load_train_config, plot_curves, sample_loader
from .samples import TeacherFace


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


def _plot(history: dict, path: Path) -> None:
    plot_curves(history, path, ("loss",), ("mean_iou", "face_f1", "occluder_f1"), "validation (held-out identities)")


@dataclass
class ParserTrainResult:
    weights: Path | None
    step: int
    figures: dict


def train_parser(cfg: ParserTrainConfig, faces: list[TeacherFace], run_dir: str | Path, *, resume: bool = True,
                 progress: bool = True, provenance: dict | None = None, device: str | None = None) -> ParserTrainResult:
    """Train (or resume) in `run_dir`; returns the final weights path."""
    engines = Engines(cfg, faces, device, progress, parsing_labels=True)
    dev, engine, val_engine = engines.device, engines.train, engines.val
    collate = ParsingCollate(cfg.input_size)
    val = {k: v.to(dev) for k, v in collate([val_engine.sample(i) for i in range(cfg.val_samples)]).items()}

    net = ParsingUNet(cfg.base_channels, input_size=cfg.input_size).to(dev).train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    training = TrainingRun(run_dir, net, opt, cfg, dev, _plot, resume)
    loader = sample_loader(engine, collate, cfg.batch_size, training.step, cfg.steps, cfg.workers)

    def step_loss(batch):
        return F.cross_entropy(net(batch["image"]), batch["parsing"]), {}

    elapsed = training.loop(loader, step_loss, lambda: evaluate_parser(net, val), "train parser", progress)
    figures = evaluate_parser(net, val)
    record = {**(provenance or {}), "steps": training.step, "config": asdict(cfg), "validation": figures,
              **engines.provenance(), "seconds_this_session": round(elapsed, 1)}
    return ParserTrainResult(training.finish("parser.pt", record), training.step, figures)
