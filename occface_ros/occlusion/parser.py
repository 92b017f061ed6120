"""The learned face parser (the paper's U-Net N_alpha): per-pixel labels of labels.py on a face crop.

Trained by `occface train parser` (training/parser.py); the shipped weights are
occface_ros/data/weights/parser.pt (config `occlusion.parser`: `enabled`, `weights` null = those).
Its face probability is the visibility evidence of the occlusion stage (reasoner.py).

Weights file: a `torch.save(model.state_dict())` of `ParsingUNet(base_channels=C)`, loaded with
`torch.load(weights_only=True)` (nothing executes); `base_channels` is inferred from the tensors.
Input: the face ROI of the tracker (rotated square, 1.5x the landmark extent) resampled to
`input_size` x `input_size`, RGB in [0, 1]. Output: logits over all labels (len(labels.LABELS)).
Weights with an `amodal_head` also give one logit per pixel of the *complete* face (the face's
region with its occluded part, the paper's M_beta predicted from the image: `forward_amodal`);
the occlusion stage adds it to the fitted face's region (reasoner.py).
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..nets.runners import make_runner
from ..paths import MissingModelError
from ..core.roi import crop_rois, uncrop_to_image
from ..core.labels import FACE_LABELS, HAIR, LABELS, OCCLUDER

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "data" / "weights" / "parser.pt"


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class ParsingUNet(nn.Module):
    """4-level U-Net (Ronneberger et al.), as in the paper's parsing network; static shapes."""

    name = "face_parser"

    def __init__(self, base_channels: int = 16, num_classes: int = len(LABELS), input_size: int = 256,
                 amodal: bool = False):
        super().__init__()
        c = base_channels
        self.input_size = (input_size, input_size)  # (H, W), as every network behind a Runner
        # saved with the weights: the crop size the network was trained at
        self.register_buffer("input_size_px", torch.tensor(input_size, dtype=torch.int64))
        self.down = nn.ModuleList([_block(3, c), _block(c, 2 * c), _block(2 * c, 4 * c), _block(4 * c, 8 * c)])
        self.bottom = _block(8 * c, 16 * c)
        self.up = nn.ModuleList([nn.ConvTranspose2d(16 * c >> i, 8 * c >> i, 2, stride=2) for i in range(4)])
        self.up_blocks = nn.ModuleList([_block(16 * c >> i, 8 * c >> i) for i in range(4)])
        self.head = nn.Conv2d(c, num_classes, 1)
        self.amodal_head = nn.Conv2d(c, 1, 1) if amodal else None  # complete-face logit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, num_classes, S, S) logits of the visible parsing."""
        return self.head(self._features(x))

    def forward_amodal(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(visible-parsing logits (B, L, S, S), complete-face logit (B, 1, S, S)); needs `amodal_head`."""
        features = self._features(x)
        return self.head(features), self.amodal_head(features)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, block, skip in zip(self.up, self.up_blocks, reversed(skips)):
            x = block(torch.cat([up(x), skip], 1))
        return x


def load_parser(path: str | Path, device="cpu") -> ParsingUNet:
    """ParsingUNet with the weights at `path`; clear errors for a missing, corrupt or foreign file."""
    path = Path(path)
    if not path.exists():
        raise MissingModelError(f"face-parser weights {path} not found (config occlusion.parser.weights)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling/zip error means the file is unusable
        raise ValueError(f"face-parser weights {path} are not a readable torch state_dict: {exc}") from exc
    if not isinstance(state, dict) or "head.weight" not in state or "down.0.0.weight" not in state:
        raise ValueError(f"face-parser weights {path}: not a ParsingUNet state_dict (see occlusion/parser.py)")
    net = ParsingUNet(base_channels=int(state["down.0.0.weight"].shape[0]),
                      num_classes=int(state["head.weight"].shape[0]),
                      input_size=int(state["input_size_px"]) if "input_size_px" in state else 256,
                      amodal="amodal_head.weight" in state)
    if net.head.out_channels != len(LABELS):
        raise ValueError(f"face-parser weights {path}: {net.head.out_channels} classes, expected {len(LABELS)}")
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"face-parser weights {path} do not match ParsingUNet: {exc}") from exc
    return net.eval().requires_grad_(False).to(device)


class FaceHairProbabilities(nn.Module):
    """The parser behind one output as the occlusion stage reads it: (B, 3, S, S) crops ->
    (B, 2, S, S) probabilities of the visible face (the FACE_LABELS summed) and hair; when the net
    has an amodal head also the complete face's and the occluder's (B, 4, S, S). The softmax and
    sigmoid run inside the compiled graph."""

    name = "face_parser"

    def __init__(self, net: ParsingUNet):
        super().__init__()
        self.net = net
        self.input_size = net.input_size
        self.register_buffer("face_labels", torch.tensor(FACE_LABELS), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.net.amodal_head is None:
            prob = self.net(x).softmax(1)
            return torch.stack([prob.index_select(1, self.face_labels).sum(1), prob[:, HAIR]], 1)
        logits, amodal = self.net.forward_amodal(x)
        prob = logits.softmax(1)
        return torch.stack([prob.index_select(1, self.face_labels).sum(1), prob[:, HAIR], amodal[:, 0].sigmoid(),
                            prob[:, OCCLUDER]], 1)


class FaceParser:
    """Callable stage: image (3, H, W) + face ROIs (B, 4) -> face and hair probabilities (B, 2, H, W)
    (B, 4, H, W with the complete face's and the occluder's when the weights have an amodal head).

    The network runs behind a Runner (nets/runners.py, `backend` as `runtime.backend`: ONNX Runtime
    runs it ~2x faster than eager PyTorch on the CPU). `submit` runs the same call in a worker
    thread, so that the occlusion stage rasterizes M_beta meanwhile: on the CPU the crop, the
    network and the uncrop (cv2, ONNX Runtime) release the GIL and use the second core."""

    def __init__(self, net: ParsingUNet, backend: str = "eager", max_batch: int = 1, precision: str = "fp32"):
        self.net = net
        self.runner = make_runner(FaceHairProbabilities(net), backend, next(net.parameters()).device, max_batch,
                                  precision)
        self._worker: ThreadPoolExecutor | None = None

    def submit(self, image: torch.Tensor, rois: torch.Tensor) -> Future:
        """The call's result as a Future (in a worker thread on the CPU; done at once elsewhere)."""
        if image.device.type != "cpu":  # a GPU overlaps the work by itself
            future: Future = Future()
            future.set_result(self(image, rois))
            return future
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="occface_parser")
        return self._worker.submit(self, image, rois)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None

    @torch.inference_mode()
    def __call__(self, image: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        crops = crop_rois(image, rois, self.net.input_size)
        return uncrop_to_image(self.runner(crops), rois, image.shape[1], image.shape[2])
