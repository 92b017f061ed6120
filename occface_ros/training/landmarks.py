"""`occface train landmarks`: the occlusion-robust landmark network (landmarks/occnet.py) trained on
the sample engine (training/samples.py), starting from FaceMesh's converted weights or a previous run's
(`init_weights`).

Losses per sample: smooth-L1 on the 468 landmarks (x, y in units of the crop side; z down-weighted;
each point weighted by its label confidence, the points that make the 68 iBUG landmarks by
1 + `loss_ibug68`) against the teacher's landmarks of the unoccluded face or a rendered head's exact
ones, smooth-L1 on the 68 iBUG points against a public dataset's human annotation where a face has
one (`--data`), binary cross-entropy on per-landmark visibility and on face presence (negatives: presence
only). Rendered heads (`samples.render_fraction`, `render_textures` textures from `train` photos of
training identities) carry no z label: their depth origin differs from FaceMesh's. Validation on `train`-split identities
held out by a seeded hash (the eval photos never enter: training/photo_pool.py refuses them):
NME of the 68 points (outer-eye-corner normaliser) on occluded and clean crops, beside FaceMesh's own.

A run directory holds `checkpoint.pt` (model, optimiser, step, history: resumable, also after
Ctrl-C), `curves.png`, `history.json`, and at the end `occnet_landmarks.pt` + `.json` (provenance:
command, config, data manifest digest, figures); all written atomically.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..landmarks.correspondence import landmarks68_from_mp468, load_correspondences
from ..landmarks.occnet import OccLandmarkNet, build_occnet, presence_branch
from .common import Engines, TrainConfig, TrainingRun, plot_curves, load_init_weights, sample_loader
from .samples import INPUT_SIZE, TeacherFace, collate

@dataclass
class LandmarkTrainConfig(TrainConfig):
    """One training configuration (config/training/landmarks.yaml)."""

    steps: int = 6000
    lr: float = 3e-4
    val_samples: int = 256
    loss_xy: float = 1.0
    loss_z: float = 0.1
    loss_visibility: float = 0.05
    loss_presence: float = 0.05
    loss_ibug68: float = 0.0  # extra weight of the FaceMesh points behind the 68 iBUG landmarks
    loss_human68: float = 1.0  # smooth-L1 of the 68 points against a dataset's human annotation (--data)
    init_weights: str | None = None  # start from these OccLandmarkNet weights instead of FaceMesh's
    trainable: str = "all"  # all | presence: only the face-flag branch learns (landmarks, visibility bit-exact)


def point_weights(batch: dict, cfg: LandmarkTrainConfig) -> torch.Tensor:
    """(B, 468) loss weight per point: label confidence x (1 + loss_ibug68 on the 68 iBUG sources)."""
    weight = batch.get("landmark_weight468")
    if weight is None:
        weight = torch.ones(batch["landmarks468"].shape[:2], device=batch["landmarks468"].device)
    if cfg.loss_ibug68:
        ids = torch.unique(load_correspondences().ibug68_from_mp_ids.reshape(-1)).to(weight.device)
        boost = torch.ones(weight.shape[1], device=weight.device)
        boost[ids] += cfg.loss_ibug68
        weight = weight * boost
    return weight


def _weighted_mean(loss: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (loss * weight).sum() / weight.sum().clamp_min(1e-6)


def landmark_loss(out, batch: dict, cfg: LandmarkTrainConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts for one batch (see the module docstring)."""
    landmarks, presence_logit, _presence, visibility_logit = out
    pos = batch["presence"] > 0.5
    parts = {"presence": F.binary_cross_entropy_with_logits(presence_logit, batch["presence"])}
    if bool(pos.any()):
        target = batch["landmarks468"][pos]
        pred = landmarks[pos]
        weight = point_weights(batch, cfg)[pos]
        xy = F.smooth_l1_loss(pred[..., :2] / INPUT_SIZE, target[..., :2] / INPUT_SIZE, beta=0.01, reduction="none")
        parts["xy"] = _weighted_mean(xy.mean(-1), weight)
        z = F.smooth_l1_loss(pred[..., 2] / INPUT_SIZE, target[..., 2] / INPUT_SIZE, beta=0.01, reduction="none")
        depth = batch.get("depth_weight", torch.ones(len(pos), device=pos.device))[pos]
        parts["z"] = _weighted_mean(z, depth[:, None].expand_as(z))
        human = batch.get("has_landmarks68", torch.zeros(len(pos), dtype=torch.bool, device=pos.device))[pos]
        if bool(human.any()):
            pred68 = landmarks68_from_mp468(pred[human][..., :2])
            parts["human68"] = F.smooth_l1_loss(pred68 / INPUT_SIZE, batch["landmarks68"][pos][human] / INPUT_SIZE,
                                                beta=0.01)
        parts["visibility"] = F.binary_cross_entropy_with_logits(visibility_logit[pos],
                                                                 batch["visible468"][pos].float())
    else:
        parts.update(xy=landmarks.sum() * 0, z=landmarks.sum() * 0, visibility=visibility_logit.sum() * 0)
    total = (cfg.loss_xy * parts["xy"] + cfg.loss_z * parts["z"] + cfg.loss_visibility * parts["visibility"]
             + cfg.loss_presence * parts["presence"] + cfg.loss_human68 * parts.get("human68", 0.0))
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


def _plot(history: dict, path: Path) -> None:
    plot_curves(history, path, ("loss", "xy", "visibility", "presence"), ("nme_occluded", "nme_clean"),
                "validation NME (68 points, IOD)", baseline=history.get("facemesh"), baseline_name="FaceMesh")


@dataclass
class TrainResult:
    weights: Path | None
    step: int
    figures: dict
    facemesh: dict


def train_landmarks(cfg: LandmarkTrainConfig, faces: list[TeacherFace], run_dir: str | Path, *, resume: bool = True,
                    progress: bool = True, provenance: dict | None = None, device: str | None = None) -> TrainResult:
    """Train (or resume) in `run_dir`; returns the final weights path (None when stopped early)."""
    engines = Engines(cfg, faces, device, progress)
    dev, engine, val_engine = engines.device, engines.train, engines.val
    val_samples = [val_engine.sample(i) for i in range(cfg.val_samples)]
    val = {k: v.to(dev) for k, v in collate(val_samples).items()}
    val_occluded = torch.tensor([bool(s.kinds) for s in val_samples], device=dev)

    net: OccLandmarkNet = build_occnet().to(dev).train().requires_grad_(True)
    init_sha256 = None
    if cfg.init_weights:
        state, _, init_sha256 = load_init_weights(cfg.init_weights, dev)
        net.load_state_dict(state)
    if cfg.trainable not in ("all", "presence"):
        raise ValueError(f"trainable must be 'all' or 'presence', not {cfg.trainable!r}")
    if cfg.trainable == "presence":
        branch = set(presence_branch(net))
        for name, param in net.named_parameters():
            param.requires_grad_(name in branch)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    training = TrainingRun(run_dir, net, opt, cfg, dev, _plot, resume)
    history = training.history
    if "facemesh" not in history:
        from ..nets.models import build_network

        history["facemesh"] = evaluate(build_network("face_landmarks").to(dev), val, val_occluded)

    loader = sample_loader(engine, collate, cfg.batch_size, training.step, cfg.steps, cfg.workers)
    elapsed = training.loop(loader, lambda batch: landmark_loss(net(batch["image"]), batch, cfg),
                            lambda: evaluate(net, val, val_occluded), "train landmarks", progress,
                            note=lambda: (f" (FaceMesh: occluded {history['facemesh']['nme_occluded']:.4f}, "
                                          f"clean {history['facemesh']['nme_clean']:.4f})"))
    figures = evaluate(net, val, val_occluded)
    record = {**(provenance or {}), "steps": training.step, "config": asdict(cfg), "init_weights_sha256": init_sha256,
              "validation": figures, "validation_facemesh": history["facemesh"], **engines.provenance(),
              "seconds_this_session": round(elapsed, 1)}
    weights = training.finish("occnet_landmarks.pt", record)
    return TrainResult(weights, training.step, figures, history["facemesh"])
