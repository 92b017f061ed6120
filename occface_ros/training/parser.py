"""`occface train parser`: the paper's N_alpha, a U-Net (occlusion/parser.py) that labels the visible
face on the tracker's face crop, trained on the sample engine with `parsing_labels`.

Labels (core/labels.py): the face's regions where the face shows, OCCLUDER wherever an occluder
covers it, BACKGROUND elsewhere; rendered heads give exact regions, photo composites the regions
drawn from the teacher's 68 points (training/samples.py). Loss: cross-entropy per pixel; with
`amodal`, plus `loss_amodal` x a per-pixel BCE of the complete-face head against the whole face's
region (`Sample.parsing_complete`, occluders ignored; real-dataset crops have none and are left out
of that term). No
pretrained parsing weights exist offline: the network starts from random weights (seeded).
Validation on `train` identities held out by a seeded hash: pixel accuracy, mean IoU over the
labels present, F1 of "visible face" (any face label) and of OCCLUDER on occluded crops; with
`amodal`, the F1 of the complete face and of the occlusion mask (complete face and not visible face,
what the occlusion stage publishes) on occluded crops.

Real labels (`datasets=`, training/parsing_datasets.py: CelebAMask-HQ, LaPa): `dataset_fraction` of
every batch are crops of those faces (`DatasetMix`), framed as the tracker frames a face, jittered
and mirrored like the engine's, with its photometric and sensor augmentation. Their faces are split
by the same identity hash; the held-out ones give the `dataset_*` validation figures.

A run directory holds `checkpoint.pt` (resumable, also after Ctrl-C), `curves.png`,
`history.json`, and at the end `parser.pt` + `.json` (provenance); all written atomically.
"""
from __future__ import annotations


from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..core.labels import FACE_LABELS, LABELS, OCCLUDER, label_mask
from ..occlusion.parser import ParsingUNet
from .common import Engines, TrainConfig, TrainingRun, plot_curves, load_init_weights, sample_loader
from .samples import INPUT_SIZE, Sample, SampleEngine, TeacherFace, validation_identity


@dataclass
class ParserTrainConfig(TrainConfig):
    """One parser training configuration (config/training/parser.yaml)."""

    lr: float = 2e-3
    input_size: int = 128  # the parser's crop side (pixels)
    base_channels: int = 8
    dataset_fraction: float = 0.5  # of each batch from real labelled faces, when `datasets` are given
    init_weights: str | None = None  # start from these ParsingUNet weights (any input size) instead of random
    amodal: bool = False  # also learn the complete (amodal) face region (ParsingUNet.amodal_head)
    loss_amodal: float = 1.0


class ParsingCollate:
    """Samples -> (B, 3, S, S) float RGB [0, 1] crops, (B, S, S) int64 labels at the parser's size, and
    (B, S, S) bool complete-face masks with (B,) `has_complete` (False where a sample has none)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, samples) -> dict[str, torch.Tensor]:
        s = self.size
        images = np.stack([cv2.resize(x.image, (s, s), interpolation=cv2.INTER_AREA) for x in samples])[..., ::-1]
        labels = np.stack([cv2.resize(x.parsing, (s, s), interpolation=cv2.INTER_NEAREST) for x in samples])
        blank = np.zeros((s, s), np.uint8)
        complete = np.stack([blank if x.parsing_complete is None else
                             cv2.resize(x.parsing_complete, (s, s), interpolation=cv2.INTER_NEAREST) for x in samples])
        return {"image": torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0,
                "parsing": torch.from_numpy(labels.astype(np.int64)),
                "complete": label_mask(torch.from_numpy(complete), torch.tensor(FACE_LABELS)),
                "has_complete": torch.tensor([x.parsing_complete is not None for x in samples]),
                "occluded": torch.tensor([bool(x.kinds) and x.presence > 0 for x in samples])}


def _f1(pred: torch.Tensor, truth: torch.Tensor) -> float:
    tp = float((pred & truth).sum())
    denom = float(pred.sum() + truth.sum())
    return 2 * tp / denom if denom else float("nan")


@torch.no_grad()
def evaluate_parser(net: ParsingUNet, val: dict) -> dict[str, float]:
    """Validation figures (see the module docstring)."""
    net.eval()
    chunks = [val["image"][i:i + 32] for i in range(0, len(val["image"]), 32)]
    amodal = None
    if net.amodal_head is None:
        pred = torch.cat([net(x).argmax(1) for x in chunks])
    else:
        outputs = [net.forward_amodal(x) for x in chunks]
        pred = torch.cat([logits.argmax(1) for logits, _ in outputs])
        amodal = torch.cat([a[:, 0] > 0 for _, a in outputs])
    truth = val["parsing"]
    ious = []
    for k in LABELS:
        p, t = pred == k, truth == k
        if bool(t.any()):
            ious.append(float((p & t).sum()) / float((p | t).sum()))
    occ = val["occluded"]
    face_ids = torch.tensor(FACE_LABELS, device=pred.device)
    visible = label_mask(pred, face_ids)
    figures = {"pixel_accuracy": float((pred == truth).float().mean()),
               "mean_iou": float(np.mean(ious)),
               "face_f1": _f1(visible, label_mask(truth, face_ids)),
               "occluder_f1": _f1(pred[occ] == OCCLUDER, truth[occ] == OCCLUDER) if bool(occ.any()) else float("nan")}
    scored = occ & val["has_complete"]
    if amodal is not None and bool(scored.any()):
        complete = val["complete"][scored]
        figures["complete_face_f1"] = _f1(amodal[scored], complete)
        figures["occlusion_f1"] = _f1(amodal[scored] & ~visible[scored], complete & (truth[scored] == OCCLUDER))
    return figures


def _plot(history: dict, path: Path) -> None:
    plot_curves(history, path, ("loss",), ("mean_iou", "face_f1", "occluder_f1", "complete_face_f1", "occlusion_f1",
                                          "dataset_mean_iou"),
                "validation (held-out identities)")


class DatasetMix:
    """The engine's sample stream with the first round(fraction x batch_size) samples of every batch
    replaced by crops of real labelled faces (parsing_datasets.ParsingFace); like the engine's, each
    sample is a function of (seed, index), so a resumed run sees the same stream."""

    def __init__(self, engine: SampleEngine, faces: list, fraction: float, batch_size: int, roi_scale: float = 1.5):
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"dataset_fraction {fraction} is not in [0, 1]")
        self.engine, self.faces, self.batch_size, self.roi_scale = engine, faces, batch_size, roi_scale
        self.per_batch = round(fraction * batch_size) if faces else 0

    def sample(self, index: int) -> Sample:
        if index % self.batch_size >= self.per_batch:
            return self.engine.sample(index)
        rng = np.random.default_rng([self.engine.config.seed, 0x5EA1, index])  # apart from the engine's streams
        return self.dataset_sample(self.faces[int(rng.integers(len(self.faces)))], rng)

    def dataset_sample(self, face, rng: np.random.Generator) -> Sample:
        """A face crop at the engine's size with its labels; kinds ["dataset_occluder"] when an
        occluder (glasses, hat) shows in it."""
        from .parsing_datasets import face_roi, parsing_crop

        cfg = self.engine.config
        image, labels = face.load()
        roi, _ = face_roi(labels, self.roi_scale)
        crop, crop_labels = parsing_crop(image, labels, roi, INPUT_SIZE, rng, cfg.scale_range, cfg.shift_fraction,
                                         cfg.angle_std_deg)
        # the engine's own photometric and sensor augmentation: real and synthetic crops share them
        clean = self.engine._photometric(crop, rng)
        degraded = self.engine._degrade(clean, rng)
        kinds = ["dataset_occluder"] if bool((crop_labels == OCCLUDER).any()) else []
        return Sample(degraded, clean, np.zeros((468, 3), np.float32), np.zeros(468, bool),
                      np.zeros((INPUT_SIZE, INPUT_SIZE), np.float32), 1.0, kinds, depth_label=False,
                      source="dataset", parsing=crop_labels)


def split_dataset_faces(faces: list, fraction: float, seed: int) -> tuple[list, list]:
    """(training, validation) dataset faces by the seeded identity hash (their stems)."""
    val = [f for f in faces if validation_identity(f"{f.source}:{f.identity}", fraction, seed)]
    train = [f for f in faces if not validation_identity(f"{f.source}:{f.identity}", fraction, seed)]
    if not train:
        raise ValueError(f"the identity split left no dataset face for training ({len(val)} held out)")
    return train, val


@dataclass
class ParserTrainResult:
    weights: Path | None
    step: int
    figures: dict


def train_parser(cfg: ParserTrainConfig, faces: list[TeacherFace], run_dir: str | Path, *, resume: bool = True,
                 progress: bool = True, provenance: dict | None = None, device: str | None = None,
                 datasets: list | None = None) -> ParserTrainResult:
    """Train (or resume) in `run_dir`; returns the final weights path. `datasets`: ParsingFace records
    (parsing_datasets.load_parsing_dataset) mixed into every batch (see the module docstring)."""
    engines = Engines(cfg, faces, device, progress, parsing_labels=True)
    dev, engine, val_engine = engines.device, engines.train, engines.val
    collate = ParsingCollate(cfg.input_size)
    val = {k: v.to(dev) for k, v in collate([val_engine.sample(i) for i in range(cfg.val_samples)]).items()}
    mix, val_dataset, dataset_record = engine, None, None
    if datasets:
        from ..config import load_config

        roi_scale = float(load_config()["landmarks"]["roi_scale"])
        train_faces, val_faces = split_dataset_faces(list(datasets), cfg.val_identity_fraction, cfg.seed)
        mix = DatasetMix(engine, train_faces, cfg.dataset_fraction, cfg.batch_size, roi_scale)
        if val_faces:
            rngs = (np.random.default_rng([cfg.seed + 1_000_003, 0x5EA1, i]) for i in range(cfg.val_samples))
            val_dataset = {k: v.to(dev) for k, v in collate(
                [mix.dataset_sample(val_faces[i % len(val_faces)], rng) for i, rng in enumerate(rngs)]).items()}
        sources: dict[str, int] = {}
        for f in datasets:
            sources[f.source] = sources.get(f.source, 0) + 1
        dataset_record = {"fraction": cfg.dataset_fraction, "per_batch": mix.per_batch, "faces": sources,
                          "train_faces": len(train_faces), "val_faces": len(val_faces)}

    net = ParsingUNet(cfg.base_channels, input_size=cfg.input_size, amodal=cfg.amodal).to(dev)
    init_sha256 = None
    if cfg.init_weights:
        state, init_path, init_sha256 = load_init_weights(cfg.init_weights, dev)
        state.pop("input_size_px", None)  # fully convolutional: the crop size is this run's
        missing, unexpected = net.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"input_size_px", "amodal_head.weight", "amodal_head.bias"}:
            raise ValueError(f"init_weights {init_path}: not a ParsingUNet of base_channels {cfg.base_channels}")
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    training = TrainingRun(run_dir, net, opt, cfg, dev, _plot, resume)
    loader = sample_loader(mix, collate, cfg.batch_size, training.step, cfg.steps, cfg.workers)

    def step_loss(batch):
        if not cfg.amodal:
            return F.cross_entropy(net(batch["image"]), batch["parsing"]), {}
        logits, amodal = net.forward_amodal(batch["image"])
        visible_loss = F.cross_entropy(logits, batch["parsing"])
        has = batch["has_complete"]
        amodal_loss = (F.binary_cross_entropy_with_logits(amodal[has, 0], batch["complete"][has].float())
                       if bool(has.any()) else amodal.sum() * 0.0)
        return visible_loss + cfg.loss_amodal * amodal_loss, {"loss_amodal": float(amodal_loss)}

    def evaluate() -> dict[str, float]:
        figures = evaluate_parser(net, val)
        if val_dataset is not None:
            figures.update({f"dataset_{k}": v for k, v in evaluate_parser(net, val_dataset).items()})
        return figures

    elapsed = training.loop(loader, step_loss, evaluate, "train parser", progress)
    figures = evaluate()
    record = {**(provenance or {}), "steps": training.step, "config": asdict(cfg), "init_weights_sha256": init_sha256,
              "validation": figures,
              **engines.provenance(), "seconds_this_session": round(elapsed, 1)}
    if dataset_record is not None:
        record["parsing_datasets"] = dataset_record
    return ParserTrainResult(training.finish("parser.pt", record), training.step, figures)
