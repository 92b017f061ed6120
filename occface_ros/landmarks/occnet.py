"""The occlusion-robust landmark network (the paper's N_lmk): FaceMesh's converted graph, trained on
the project's occluded samples to give the landmarks of the whole face, plus a visibility head.

Same input and first three outputs as the converted FaceMesh (`nets.models.FaceLandmarkNet`), so it
drops into the landmark stage and every runner; a fourth output is the per-landmark visibility:

    forward(x: (B, 3, 192, 192) RGB in [0, 1]) ->
        landmarks (B, 468, 3) input pixels; presence_logit (B,); presence (B,);
        visibility_logit (B, 468): > 0 where the landmark is seen (not behind an occluder)

The visibility head is a 3x3 convolution on the 32-channel 3x3 feature map that FaceMesh's own
landmark regressor reads (`LANDMARK_FEATURE`), so it costs ~0.1 ms.

Weights: a state_dict (`torch.save`, loaded with `weights_only=True`) beside a JSON provenance file
(`load_occnet`); the graph itself is rebuilt from MediaPipe's .tflite by our converter.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import fx, nn

from ..paths import MissingModelError

LANDMARK_FEATURE = "prelu_22"  # (B, 32, 3, 3): the input of FaceMesh's 1404-output landmark conv
FEATURE_CHANNELS = 32
NUM_LANDMARKS = 468
VISIBLE_PRIOR_LOGIT = 2.0  # an untrained head says "visible" (p = 0.88): FaceMesh's own assumption
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "data" / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "occnet_landmarks.pt"


def _with_feature_output(core: fx.GraphModule, feature: str) -> fx.GraphModule:
    """A copy of the converted graph that also returns the named intermediate tensor."""
    gm = copy.deepcopy(core)
    nodes = {n.name: n for n in gm.graph.nodes}
    if feature not in nodes:
        raise ValueError(f"the converted FaceMesh graph has no node {feature!r}")
    out = next(n for n in gm.graph.nodes if n.op == "output")
    out.args = (tuple(out.args[0]) + (nodes[feature],),)
    gm.graph.lint()
    gm.recompile()
    return gm


class OccLandmarkNet(nn.Module):
    """FaceMesh + visibility head (see the module docstring)."""

    def __init__(self, facemesh: nn.Module):
        super().__init__()
        self.name = "occnet_landmarks"
        self.input_size = tuple(facemesh.input_size)
        self.order = list(facemesh.order)  # positions of (landmarks, presence) among the core's outputs
        self.core = _with_feature_output(facemesh.core, LANDMARK_FEATURE)
        self.visibility = nn.Conv2d(FEATURE_CHANNELS, NUM_LANDMARKS, 3)
        nn.init.zeros_(self.visibility.weight)
        nn.init.constant_(self.visibility.bias, VISIBLE_PRIOR_LOGIT)

    def forward(self, x: torch.Tensor):
        outs = self.core(x)
        landmarks, flag = outs[self.order[0]], outs[self.order[1]]
        logit = flag.reshape(-1)
        visibility = self.visibility(outs[-1]).flatten(1)  # the feature is NCHW inside the graph
        return landmarks.reshape(-1, NUM_LANDMARKS, 3), logit, torch.sigmoid(logit), visibility


def presence_branch(net: OccLandmarkNet) -> list[str]:
    """Names of the parameters that feed the presence output and no other (FaceMesh's face-flag
    branch): training only these leaves the landmarks and the visibility bit-exact."""
    nodes = list(net.core.graph.nodes)
    outputs = list(next(n for n in nodes if n.op == "output").args[0])

    def ancestors(node) -> set:
        seen, stack = set(), [node]
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(n.all_input_nodes)
        return seen

    flag = ancestors(outputs[net.order[1]])
    others = set().union(*(ancestors(o) for i, o in enumerate(outputs) if i != net.order[1]))
    params = dict(net.named_parameters())
    names = sorted(f"core.{n.target}" for n in flag - others if n.op == "get_attr" and f"core.{n.target}" in params)
    if not names:
        raise ValueError("the converted FaceMesh graph has no parameters of its own on the presence output")
    return names


def build_occnet() -> OccLandmarkNet:
    """The network initialised from FaceMesh's converted weights (the training start)."""
    from ..nets.models import build_network

    net = OccLandmarkNet(build_network("face_landmarks"))
    return net.eval().requires_grad_(False)


def weights_path(path: str | Path | None = None) -> Path:
    return Path(path) if path is not None else DEFAULT_WEIGHTS


def load_occnet(path: str | Path | None = None) -> OccLandmarkNet:
    """The trained network: FaceMesh's graph with the weights of `path` (default: the shipped ones)."""
    p = weights_path(path)
    if not p.is_file():
        raise MissingModelError(f"landmark weights {p} not found: train them with `occface train landmarks` "
                                f"or set landmarks.model: facemesh")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: one clear line
        raise MissingModelError(f"landmark weights {p} unreadable ({type(exc).__name__}): "
                                f"retrain with `occface train landmarks` or restore the file from git") from exc
    net = build_occnet()
    missing, unexpected = net.load_state_dict(state.get("model", state), strict=False)
    if missing or unexpected:
        raise MissingModelError(f"landmark weights {p} do not fit the network (missing {len(missing)}, "
                                f"unexpected {len(unexpected)} keys): retrain with `occface train landmarks`")
    return net.eval().requires_grad_(False)


def provenance(path: str | Path | None = None) -> dict:
    """The JSON written beside the weights: command, config, data manifest digest, figures."""
    p = weights_path(path).with_suffix(".json")
    return json.loads(p.read_text()) if p.is_file() else {}
