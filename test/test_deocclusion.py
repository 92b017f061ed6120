"""De-occlusion: the hidden-pixel PSNR / SSIM and the cv2.inpaint baseline on real photos, the FISN
generator's contract (seen pixels kept, parsing maps used), and its training loop on the pool's
`train` photos: the engine's clean/occluded pairs with whole-face parsing, a loop that learns,
a run that resumes with its discriminators, weights that load by themselves."""
from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest
import torch

from occface_ros.core.labels import FACE_LABELS, OCCLUDER
from occface_ros.deocclusion.fisn import FISNGenerator, MultiScaleDiscriminator, composite, load_fisn
from occface_ros.evaluation.deocclusion import (deocclusion_scores, inpaint_baseline, masked_psnr_db,
                                                masked_ssim)
from occface_ros.paths import MissingModelError


@pytest.fixture(scope="module")
def astronaut():
    from occface_ros.app.samples import sample_path

    return cv2.resize(cv2.imread(str(sample_path("skimage", "astronaut.png"))), (256, 256), interpolation=cv2.INTER_AREA)


def test_scores_on_a_real_photo(astronaut):
    mask = np.zeros(astronaut.shape[:2], bool)
    mask[100:140, 90:170] = True
    assert masked_psnr_db(astronaut, astronaut, mask) == float("inf")
    assert masked_ssim(astronaut, astronaut, mask) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    noisy = np.clip(astronaut + rng.normal(0, 8, astronaut.shape), 0, 255).astype(np.uint8)
    # PSNR of sigma-8 noise: 10 log10(255^2 / 64) = 30.1 dB (a little more after clipping)
    assert 29.5 < masked_psnr_db(astronaut, noisy, mask) < 31.5
    assert masked_ssim(astronaut, noisy, mask) < 0.95
    # only the masked pixels count: damage outside the mask changes nothing
    damaged = astronaut.copy()
    damaged[:50] = 0
    assert masked_psnr_db(astronaut, damaged, mask) == float("inf")
    # inpainting beats a hole filled with grey, on both scores
    holed = astronaut.copy()
    holed[mask] = 128
    filled = inpaint_baseline(holed, mask)
    assert np.array_equal(filled[~mask], astronaut[~mask])
    ours, grey = deocclusion_scores(astronaut, filled, mask), deocclusion_scores(astronaut, holed, mask)
    assert ours["psnr_db"] > grey["psnr_db"] + 1 and ours["ssim"] > grey["ssim"]


def test_generator_keeps_seen_pixels_and_reads_the_parsing_maps():
    torch.manual_seed(0)
    net = FISNGenerator(base_channels=8, res_blocks=1, style_channels=8, input_size=64).eval()
    for p in net.parameters():  # the modulation starts at zero: wake it for the test
        torch.nn.init.normal_(p, 0, 0.2)
    image = torch.rand(2, 3, 64, 64)
    hidden = torch.zeros(2, 1, 64, 64)
    hidden[:, :, 20:40, 20:40] = 1
    m_gamma = torch.full((2, 64, 64), FACE_LABELS[0])
    m_alpha = m_gamma.clone()
    m_alpha[:, 20:40, 20:40] = OCCLUDER
    with torch.no_grad():
        out = net(image, hidden, m_alpha, m_gamma)
        other = m_gamma.clone()
        other[:, 24:36, 24:36] = FACE_LABELS[5]
        out2 = net(image, hidden, m_alpha, other)
    assert out.shape == image.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    done = composite(out, image, hidden)
    assert torch.equal(done[:, :, :20], image[:, :, :20]) and not torch.equal(done, image)
    assert float((out2 - out)[:, :, 24:36, 24:36].abs().mean()) > 1e-4  # M_gamma steers the hidden region
    disc = MultiScaleDiscriminator(8)
    outs = disc(done, m_gamma)
    assert len(outs) == 2 and outs[1][-1].shape[-1] < outs[0][-1].shape[-1]


def test_broken_weights_say_so_in_one_line(tmp_path):
    bad = tmp_path / "fisn.pt"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(MissingModelError, match="unreadable"):
        load_fisn(bad)
    with pytest.raises(MissingModelError, match="not found"):
        load_fisn(tmp_path / "none.pt")
    torch.save({"w": torch.zeros(1)}, bad)
    with pytest.raises(MissingModelError, match="not a FISNGenerator"):
        load_fisn(bad)


@pytest.mark.slow
def test_engine_pairs_hide_the_face_under_the_occluder(teacher):
    from occface_ros.training.deocclude import DeoccludeCollate
    from occface_ros.training.samples import SampleConfig, SampleEngine

    engine = SampleEngine(teacher, SampleConfig(seed=2, parsing_labels=True, negative_fraction=0.0,
                                                clean_fraction=0.0))
    samples = [engine.sample(i) for i in range(8)]
    for s in samples:
        covered = s.occluder_alpha >= 0.5
        assert np.all(s.parsing[covered] == OCCLUDER)
        # the complete parsing still shows the face there
        assert np.isin(s.parsing_complete[covered], FACE_LABELS).mean() > 0.2 or not covered.any()
    batch = DeoccludeCollate(64)(samples)
    assert batch["hidden"].shape == (8, 1, 64, 64) and float(batch["hidden"].mean()) > 0.02
    hidden = batch["hidden"][:, 0] > 0.5
    assert bool(torch.isin(batch["m_gamma"][hidden], torch.tensor(FACE_LABELS)).all())


@pytest.mark.slow
def test_a_few_deocclusion_steps_learn_and_resume(teacher, tmp_path):
    from occface_ros.training.deocclude import DeoccludeCollate, DeoccludeTrainConfig, train_deocclude
    from occface_ros.training.samples import SampleConfig, SampleEngine

    torch.manual_seed(0)
    engine = SampleEngine(teacher, SampleConfig(seed=4, parsing_labels=True, negative_fraction=0.0,
                                                clean_fraction=0.0))
    batch = DeoccludeCollate(64)([engine.sample(i) for i in range(6)])
    net = FISNGenerator(8, 1, 8, input_size=64).train()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    hidden = batch["hidden"]
    errors = []
    for _ in range(40):
        out = composite(net(batch["image"], hidden, batch["m_alpha"], batch["m_gamma"]), batch["image"], hidden)
        loss = (hidden * (out - batch["clean"]).abs()).sum() / hidden.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        errors.append(float(loss.detach()))
    assert errors[-1] < 0.6 * errors[0], errors

    cfg = DeoccludeTrainConfig(steps=2, batch_size=2, warmup_steps=1, val_samples=4, val_every=2, checkpoint_every=2,
                               workers=0, val_identity_fraction=0.4, seed=5, input_size=64, base_channels=8,
                               res_blocks=1, style_channels=8, discriminator_channels=8,
                               samples={"negative_fraction": 0.0, "clean_fraction": 0.0})
    first = train_deocclude(cfg, teacher, tmp_path / "run", progress=False)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2 and set(state["extra"]) == {"discriminator", "optimizer_discriminator"}
    cfg.steps = 3
    second = train_deocclude(cfg, teacher, tmp_path / "run", progress=False, provenance={"photo_manifest_sha256": "z"})
    assert first.step == 2 and second.step == 3
    record = json.loads(second.weights.with_suffix(".json").read_text())
    assert record["photo_manifest_sha256"] == "z" and record["validation_cv2_inpaint"]["psnr_db"] > 10
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    loaded = load_fisn(second.weights)
    assert loaded.input_size == 64

    # a fine-tuning run starts its generator from those weights (fresh discriminators)
    tuned = DeoccludeTrainConfig(**{**cfg.__dict__, "steps": 1, "init_weights": str(second.weights)})
    third = train_deocclude(tuned, teacher, tmp_path / "tuned", progress=False)
    record = json.loads(third.weights.with_suffix(".json").read_text())
    assert record["init_weights_sha256"] == hashlib.sha256(second.weights.read_bytes()).hexdigest()
    moved = [float((a - b).abs().max()) for a, b in zip(loaded.parameters(), load_fisn(third.weights).parameters())]
    assert max(moved) < 0.05  # one step from the initial weights, not a fresh generator
