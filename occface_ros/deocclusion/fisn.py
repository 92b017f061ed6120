"""FISN, the paper's face-inpainting generator: the de-occluded face from the occluded crop, the
visible parsing M_alpha and the merged complete parsing M_gamma.

Pix2PixHD's global generator shape (conv 7x7, strided downsampling, residual blocks at the
bottleneck, upsampling, conv 7x7 out) with every block modulated by the parsing maps:

* SFT (spatial feature transform, Wang et al. 2018): per-pixel scale and shift predicted from
  M_gamma's one-hot map, so each region is drawn where the complete parsing puts it.
* SEAN (Zhu et al. 2020): a style encoder on the visible pixels, average-pooled per region of
  M_alpha into one style code per label, broadcast back over M_gamma's regions and turned into
  a second per-pixel scale and shift; a learned per-block blend mixes the two. A hidden region
  borrows the style of the same region's visible part (the visible cheek for the hidden cheek).

No normalisation layer: the paper's point is that instance normalisation washes out the style
codes; the modulation acts on the raw features. `MultiScaleDiscriminator` is pix2pixHD's: two
PatchGANs, at the crop's scale and at half of it, conditioned on M_gamma, returning every
layer's features for the feature-matching loss.

    generator(image (B, 3, S, S) RGB [0, 1], hidden (B, 1, S, S) {0, 1}, m_alpha (B, S, S) labels,
              m_gamma (B, S, S) labels) -> (B, 3, S, S) RGB [0, 1]; `composite` keeps the seen pixels.

Weights: a state_dict (`torch.save`, loaded with `weights_only=True`) whose buffers record the crop
size and width (`load_fisn`), beside a JSON provenance file (training/deocclude.py).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..core.labels import LABELS
from ..paths import MissingModelError

NUM_LABELS = len(LABELS)
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "data" / "weights" / "fisn.pt"


def one_hot(labels: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """(B, S, S) integer labels -> (B, NUM_LABELS, S', S') float one-hot (nearest resize to `size`)."""
    onehot = F.one_hot(labels.long().clamp(0, NUM_LABELS - 1), NUM_LABELS).permute(0, 3, 1, 2).float()
    if size is not None and tuple(onehot.shape[-2:]) != tuple(size):
        onehot = F.interpolate(onehot, size=size, mode="nearest")
    return onehot


class StyleEncoder(nn.Module):
    """SEAN's style encoder: image features, then one average per label over that label's visible
    pixels -> (B, NUM_LABELS, style_channels); labels with no visible pixel get zeros."""

    def __init__(self, style_channels: int = 32):
        super().__init__()
        c = style_channels
        self.net = nn.Sequential(  # at half the crop's resolution: codes are region averages
            nn.Conv2d(4, c, 3, stride=2, padding=1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(c, c, 3, padding=1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(c, c, 3, padding=1), nn.Tanh())

    def forward(self, image: torch.Tensor, hidden: torch.Tensor, m_alpha: torch.Tensor) -> torch.Tensor:
        feats = self.net(torch.cat([image * (1 - hidden), hidden], 1))  # (B, C, S/2, S/2)
        seen = F.interpolate(1 - hidden, size=feats.shape[-2:], mode="nearest")
        regions = one_hot(m_alpha, feats.shape[-2:]) * seen  # visible pixels per label
        area = regions.sum((2, 3))  # (B, K)
        codes = torch.einsum("bkhw,bchw->bkc", regions, feats)
        return codes / area.clamp_min(1.0).unsqueeze(-1)


class SeanSft(nn.Module):
    """Per-pixel modulation x * (1 + gamma) + beta, gamma/beta a learned blend of SFT's (from M_gamma)
    and SEAN's (the region style codes broadcast over M_gamma)."""

    def __init__(self, channels: int, style_channels: int, hidden_channels: int = 16):
        super().__init__()
        self.shared = nn.Sequential(nn.Conv2d(NUM_LABELS, hidden_channels, 3, padding=1), nn.LeakyReLU(0.2, True))
        self.sft = nn.Conv2d(hidden_channels, 2 * channels, 3, padding=1)
        self.sean = nn.Conv2d(style_channels, 2 * channels, 3, padding=1)
        self.blend = nn.Parameter(torch.zeros(1))  # sigmoid(0) = an even blend at the start
        for conv in (self.sft, self.sean):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, seg: torch.Tensor, style_map: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        seg = F.interpolate(seg, size=size, mode="nearest")
        style_map = F.interpolate(style_map, size=size, mode="nearest")
        a = torch.sigmoid(self.blend)
        gamma_beta = a * self.sean(style_map) + (1 - a) * self.sft(self.shared(seg))
        gamma, beta = gamma_beta.chunk(2, 1)
        return x * (1 + gamma) + beta


class ModulatedResBlock(nn.Module):
    """Residual block: (modulate -> LeakyReLU -> conv) twice, plus the input."""

    def __init__(self, channels: int, style_channels: int):
        super().__init__()
        self.mod1, self.mod2 = SeanSft(channels, style_channels), SeanSft(channels, style_channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, seg, style_map):
        y = self.conv1(F.leaky_relu(self.mod1(x, seg, style_map), 0.2))
        y = self.conv2(F.leaky_relu(self.mod2(y, seg, style_map), 0.2))
        return x + y


class FISNGenerator(nn.Module):
    """See the module docstring. `base_channels` c: widths c, 2c, 4c, 4c over 3 downsamplings;
    modulated blocks at the bottleneck and the two coarser decoder levels (the full-resolution
    level only sharpens: its modulation cost most of the time for nothing measurable)."""

    def __init__(self, base_channels: int = 24, res_blocks: int = 3, style_channels: int = 32, input_size: int = 128):
        super().__init__()
        c = base_channels
        self.input_size = input_size
        self.register_buffer("input_size_px", torch.tensor(input_size, dtype=torch.int64))
        self.register_buffer("shape", torch.tensor([base_channels, res_blocks, style_channels], dtype=torch.int64))
        self.style = StyleEncoder(style_channels)
        # input: the seen pixels, the hidden mask, M_gamma one-hot
        self.stem = nn.Conv2d(4 + NUM_LABELS, c, 5, padding=2)
        widths = [c, 2 * c, 4 * c, 4 * c]
        self.down = nn.ModuleList([nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1) for i in range(3)])
        self.blocks = nn.ModuleList([ModulatedResBlock(widths[-1], style_channels) for _ in range(res_blocks)])
        self.up = nn.ModuleList([nn.Conv2d(widths[3 - i] + widths[2 - i], widths[2 - i], 3, padding=1)
                                 for i in range(3)])
        self.up_mod = nn.ModuleList([SeanSft(widths[2 - i], style_channels) for i in range(2)])
        self.out = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, image: torch.Tensor, hidden: torch.Tensor, m_alpha: torch.Tensor,
                m_gamma: torch.Tensor) -> torch.Tensor:
        seg = one_hot(m_gamma, image.shape[-2:])
        codes = self.style(image, hidden, m_alpha)  # (B, K, Cs)
        style_map = torch.einsum("bkhw,bkc->bchw", one_hot(m_gamma, codes_size(image)), codes)
        x = F.leaky_relu(self.stem(torch.cat([image * (1 - hidden), hidden, seg], 1)), 0.2)
        skips = [x]
        for down in self.down:
            x = F.leaky_relu(down(x), 0.2)
            skips.append(x)
        for block in self.blocks:
            x = block(x, seg, style_map)
        for i, conv in enumerate(self.up):
            x = conv(torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skips[2 - i]], 1))
            if i < len(self.up_mod):
                x = self.up_mod[i](x, seg, style_map)
            x = F.leaky_relu(x, 0.2)
        return torch.sigmoid(self.out(x))


class PackedFISN(nn.Module):
    """The generator behind one input tensor, as Runners call networks (nets/runners.py):
    x (B, 6, S, S) = RGB, hidden mask, M_alpha, M_gamma (labels as floats) -> (B, 3, S, S)."""

    name = "fisn"
    input_channels = 6

    def __init__(self, generator: FISNGenerator):
        super().__init__()
        self.generator = generator
        self.input_size = (generator.input_size, generator.input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        labels = x[:, 4:6].round().long()
        return self.generator(x[:, :3], x[:, 3:4], labels[:, 0], labels[:, 1])


def codes_size(image: torch.Tensor) -> tuple[int, int]:
    """Resolution of the style map (half the crop's: the finest modulated level)."""
    return image.shape[-2] // 2, image.shape[-1] // 2


def composite(generated: torch.Tensor, image: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """The de-occluded crop: generated pixels where hidden, the input's elsewhere."""
    return hidden * generated + (1 - hidden) * image


class PatchDiscriminator(nn.Module):
    """pix2pixHD's PatchGAN (70x70 receptive field at 4 layers); returns every layer's output."""

    def __init__(self, in_channels: int, base_channels: int = 32, layers: int = 3):
        super().__init__()
        c, convs = base_channels, []
        cin = in_channels
        for i in range(layers):
            cout = c * 2 ** i
            convs.append(nn.Sequential(nn.Conv2d(cin, cout, 4, stride=2 if i < layers - 1 else 1, padding=2),
                                       nn.LeakyReLU(0.2, True)))
            cin = cout
        convs.append(nn.Conv2d(cin, 1, 4, padding=2))
        self.layers = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class MultiScaleDiscriminator(nn.Module):
    """Two PatchGANs on (image, M_gamma one-hot): at the crop's scale and at half of it."""

    def __init__(self, base_channels: int = 32, scales: int = 2):
        super().__init__()
        self.nets = nn.ModuleList([PatchDiscriminator(3 + NUM_LABELS, base_channels) for _ in range(scales)])

    def forward(self, image: torch.Tensor, m_gamma: torch.Tensor) -> list[list[torch.Tensor]]:
        x = torch.cat([image, one_hot(m_gamma, image.shape[-2:])], 1)
        outs = []
        for i, net in enumerate(self.nets):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outs.append(net(x))
        return outs


def load_fisn(path: str | Path | None = None, device="cpu") -> FISNGenerator:
    """The generator with the weights at `path` (default: the shipped ones); one clear line when the
    file is missing, unreadable or not FISN's."""
    p = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not p.is_file():
        raise MissingModelError(f"de-occlusion weights {p} not found: train them with `occface train deocclude`")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: one clear line
        raise MissingModelError(f"de-occlusion weights {p} unreadable ({type(exc).__name__}): retrain with "
                                f"`occface train deocclude` or restore the file from git") from exc
    if not isinstance(state, dict) or "shape" not in state or "input_size_px" not in state:
        raise MissingModelError(f"de-occlusion weights {p}: not a FISNGenerator state_dict (deocclusion/fisn.py)")
    base, blocks, style = (int(v) for v in state["shape"])
    net = FISNGenerator(base, blocks, style, int(state["input_size_px"]))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise MissingModelError(f"de-occlusion weights {p} do not fit FISNGenerator: {exc}") from exc
    return net.eval().requires_grad_(False).to(device)
