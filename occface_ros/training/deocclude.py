"""`occface train deocclude`: the paper's FISN (deocclusion/fisn.py) on the sample engine's
clean / occluded pairs.

Each sample: the occluded crop, the hidden mask (occluder over the whole face's regions), M_alpha
(the visible parsing) and M_gamma (the whole face's parsing; at run time Algorithm 1's merge).
Losses, as pix2pixHD and the paper: least-squares adversarial over the two discriminator scales,
feature matching over the discriminators' layers (lambda_fm = 10) and a perceptual loss
(lambda_perceptual = 10). No VGG weights exist offline: the perceptual features are the converted
FaceMesh network's own (frozen; four stages from 96x96 to 12x12 at its 192x192 input), a face
network pretrained on real faces. An L1 term on the hidden pixels (lambda_l1) steadies the first
steps on a CPU budget. The discriminators see the composite (seen pixels kept, hidden ones
generated) against the same crop with the true hidden pixels.

Validation on held-out identities (photo composites): PSNR and SSIM on the hidden pixels against
the clean crop, beside cv2.inpaint (Telea) on the same crops and masks (evaluation/deocclusion.py).
A run directory holds `checkpoint.pt` (generator, discriminators, both optimizers; resumable),
`curves.png`, `history.json`, and at the end `fisn.pt` + `.json` (provenance).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.labels import FACE_LABELS
from ..deocclusion.fisn import FISNGenerator, MultiScaleDiscriminator, composite
from ..evaluation.deocclusion import deocclusion_scores, inpaint_baseline
from .common import Engines, TrainConfig, TrainingRun, cosine_lr, plot_curves, load_init_weights, sample_loader
from .samples import TeacherFace

PERCEPTUAL_LAYERS = ("prelu_2", "prelu_5", "prelu_8", "prelu_11")  # FaceMesh at 96, 48, 24, 12 px
PERCEPTUAL_INPUT_PX = 192


@dataclass
class DeoccludeTrainConfig(TrainConfig):
    """One FISN training configuration (config/training/deocclude.yaml)."""

    batch_size: int = 8
    lr: float = 2e-4  # generator; the discriminators use lr_discriminator
    lr_discriminator: float = 2e-4
    betas: tuple = (0.5, 0.999)  # pix2pixHD's
    weight_decay: float = 0.0
    input_size: int = 128
    base_channels: int = 24
    res_blocks: int = 3
    style_channels: int = 32
    discriminator_channels: int = 32
    lambda_fm: float = 10.0
    lambda_perceptual: float = 10.0
    lambda_l1: float = 1.0
    val_samples: int = 64
    init_weights: str | None = None  # start the generator from these FISN weights (fresh discriminators)


class DeoccludeCollate:
    """Samples -> tensors at the generator's size: image (occluded) and clean RGB [0, 1], hidden
    (B, 1, S, S), m_alpha and m_gamma (B, S, S) int64."""

    def __init__(self, size: int):
        self.size = size
        self.face_table = np.zeros(256, bool)
        self.face_table[list(FACE_LABELS)] = True

    def __call__(self, samples) -> dict[str, torch.Tensor]:
        s = self.size

        def rgb(images):
            stack = np.stack([cv2.resize(x, (s, s), interpolation=cv2.INTER_AREA) for x in images])[..., ::-1]
            return torch.from_numpy(np.ascontiguousarray(stack)).permute(0, 3, 1, 2).float() / 255.0

        def labels(maps):
            return np.stack([cv2.resize(m, (s, s), interpolation=cv2.INTER_NEAREST) for m in maps])

        m_alpha, m_gamma = labels([x.parsing for x in samples]), labels([x.parsing_complete for x in samples])
        alpha = np.stack([cv2.resize(x.occluder_alpha, (s, s), interpolation=cv2.INTER_LINEAR) for x in samples])
        hidden = (alpha >= 0.5) & self.face_table[m_gamma]
        return {"image": rgb([x.image for x in samples]), "clean": rgb([x.clean for x in samples]),
                "hidden": torch.from_numpy(hidden[:, None].astype(np.float32)),
                "m_alpha": torch.from_numpy(m_alpha.astype(np.int64)),
                "m_gamma": torch.from_numpy(m_gamma.astype(np.int64))}


class FaceMeshFeatures(nn.Module):
    """Frozen perceptual features: the converted FaceMesh graph returning PERCEPTUAL_LAYERS."""

    def __init__(self):
        super().__init__()
        from ..nets.models import build_network

        gm = copy.deepcopy(build_network("face_landmarks").core)
        nodes = {n.name: n for n in gm.graph.nodes}
        out = next(n for n in gm.graph.nodes if n.op == "output")
        out.args = (tuple(nodes[name] for name in PERCEPTUAL_LAYERS),)
        gm.graph.eliminate_dead_code()
        gm.recompile()
        self.net = gm.eval().requires_grad_(False)

    def forward(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        x = F.interpolate(rgb, size=(PERCEPTUAL_INPUT_PX, PERCEPTUAL_INPUT_PX), mode="bilinear", align_corners=False)
        return list(self.net(x))


def _lsgan(outputs: list[list[torch.Tensor]], target: float) -> torch.Tensor:
    return sum(F.mse_loss(o[-1], torch.full_like(o[-1], target)) for o in outputs) / len(outputs)


def _feature_matching(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]]) -> torch.Tensor:
    total = 0.0
    for f_scale, r_scale in zip(fake, real):
        for f, r in zip(f_scale[:-1], r_scale[:-1]):
            total = total + F.l1_loss(f, r.detach())
    return total / len(fake)


def _to_bgr_u8(rgb: torch.Tensor) -> np.ndarray:
    """(B, 3, S, S) RGB [0, 1] -> (B, S, S, 3) uint8 BGR."""
    return np.ascontiguousarray((rgb.clamp(0, 1) * 255 + 0.5).byte().permute(0, 2, 3, 1).cpu().numpy()[..., ::-1])


def hidden_scores(output_rgb: torch.Tensor, batch: dict) -> dict[str, float]:
    """Mean PSNR / SSIM on the hidden pixels over the crops that have any."""
    out, clean = _to_bgr_u8(output_rgb), _to_bgr_u8(batch["clean"])
    masks = batch["hidden"][:, 0].cpu().numpy() > 0.5
    scores = [deocclusion_scores(c, o, m) for c, o, m in zip(clean, out, masks) if m.sum() >= 16]
    return {k: float(np.mean([s[k] for s in scores])) for k in ("psnr_db", "ssim")} if scores else {}


def inpaint_scores(batch: dict) -> dict[str, float]:
    """The cv2.inpaint baseline on the same crops and masks."""
    image, masks = _to_bgr_u8(batch["image"]), batch["hidden"][:, 0].cpu().numpy() > 0.5
    filled = np.stack([inpaint_baseline(i, m) for i, m in zip(image, masks)])
    rgb = torch.from_numpy(np.ascontiguousarray(filled[..., ::-1])).permute(0, 3, 1, 2).float() / 255.0
    return hidden_scores(rgb, batch)


@torch.no_grad()
def evaluate_deocclusion(generator: FISNGenerator, val: dict) -> dict[str, float]:
    generator.eval()
    outs = []
    for i in range(0, len(val["image"]), 16):
        part = {k: v[i:i + 16] for k, v in val.items()}
        gen = generator(part["image"], part["hidden"], part["m_alpha"], part["m_gamma"])
        outs.append(composite(gen, part["image"], part["hidden"]))
    return hidden_scores(torch.cat(outs), val)


def _plot(history: dict, path: Path) -> None:
    plot_curves(history, path, ("loss", "adv", "fm", "perceptual", "l1", "d"), ("psnr_db", "ssim"),
                "validation (held-out identities): hidden pixels")


@dataclass
class DeoccludeTrainResult:
    weights: Path | None
    step: int
    figures: dict
    inpaint: dict


def train_deocclude(cfg: DeoccludeTrainConfig, faces: list[TeacherFace], run_dir: str | Path, *, resume: bool = True,
                    progress: bool = True, provenance: dict | None = None,
                    device: str | None = None) -> DeoccludeTrainResult:
    """Train (or resume) FISN in `run_dir` (see the module docstring)."""
    engines = Engines(cfg, faces, device, progress, parsing_labels=True)
    dev, engine, val_engine = engines.device, engines.train, engines.val
    collate = DeoccludeCollate(cfg.input_size)
    # validation: occluded composites only (a crop with nothing hidden has no score)
    val_samples, i = [], 0
    while len(val_samples) < cfg.val_samples and i < 20 * cfg.val_samples:
        s = val_engine.sample(i)
        i += 1
        if s.presence > 0 and s.kinds:
            val_samples.append(s)
    val = {k: v.to(dev) for k, v in collate(val_samples).items()}
    inpaint = inpaint_scores(val)

    generator = FISNGenerator(cfg.base_channels, cfg.res_blocks, cfg.style_channels, cfg.input_size).to(dev)
    init_sha256 = None
    if cfg.init_weights:
        state, init_path, init_sha256 = load_init_weights(cfg.init_weights, dev)
        try:
            generator.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"init_weights {init_path}: not a FISNGenerator of this config's widths") from exc
    disc = MultiScaleDiscriminator(cfg.discriminator_channels).to(dev).train()
    features = FaceMeshFeatures().to(dev)
    opt_g = torch.optim.AdamW(generator.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    opt_d = torch.optim.AdamW(disc.parameters(), lr=cfg.lr_discriminator, betas=tuple(cfg.betas),
                              weight_decay=cfg.weight_decay)
    training = TrainingRun(run_dir, generator, opt_g, cfg, dev, _plot, resume,
                           extra={"discriminator": disc, "optimizer_discriminator": opt_d})
    loader = sample_loader(engine, collate, cfg.batch_size, training.step, cfg.steps, cfg.workers)

    def step_loss(batch):
        image, hidden, m_alpha, m_gamma = batch["image"], batch["hidden"], batch["m_alpha"], batch["m_gamma"]
        real = composite(batch["clean"], image, hidden)
        fake = composite(generator(image, hidden, m_alpha, m_gamma), image, hidden)
        # discriminators
        for group in opt_d.param_groups:
            group["lr"] = cosine_lr(training.step, cfg.lr_discriminator, cfg.warmup_steps, cfg.steps)
        loss_d = 0.5 * (_lsgan(disc(real, m_gamma), 1.0) + _lsgan(disc(fake.detach(), m_gamma), 0.0))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        # generator (its step is the training loop's)
        disc.requires_grad_(False)
        out_fake, out_real = disc(fake, m_gamma), disc(real, m_gamma)
        disc.requires_grad_(True)
        adv = _lsgan(out_fake, 1.0)
        fm = _feature_matching(out_fake, out_real)
        with torch.no_grad():
            feats_real = features(real)
        perceptual = sum(F.l1_loss(f, r) for f, r in zip(features(fake), feats_real)) / len(PERCEPTUAL_LAYERS)
        l1 = (hidden * (fake - real).abs()).sum() / (3 * hidden.sum()).clamp_min(1.0)
        loss = adv + cfg.lambda_fm * fm + cfg.lambda_perceptual * perceptual + cfg.lambda_l1 * l1
        return loss, {"adv": float(adv.detach()), "fm": float(fm.detach()), "perceptual": float(perceptual.detach()),
                      "l1": float(l1.detach()),
                      "d": float(loss_d)}

    def note() -> str:
        return f" (cv2.inpaint psnr_db {inpaint.get('psnr_db', float('nan')):.2f}, ssim {inpaint.get('ssim', float('nan')):.4f})"

    elapsed = training.loop(loader, step_loss, lambda: evaluate_deocclusion(generator, val), "train deocclude",
                            progress, note)
    figures = evaluate_deocclusion(generator, val)
    record = {**(provenance or {}), "steps": training.step, "config": asdict(cfg), "init_weights_sha256": init_sha256,
              "validation": figures,
              "validation_cv2_inpaint": inpaint, "perceptual_features": f"FaceMesh (converted) {PERCEPTUAL_LAYERS}",
              **engines.provenance(), "seconds_this_session": round(elapsed, 1)}
    return DeoccludeTrainResult(training.finish("fisn.pt", record), training.step, figures, inpaint)
