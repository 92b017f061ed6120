"""The paper's Algorithm 1: merge the visible parsing map M_alpha and the complete one M_beta into M_gamma.

Zhao & Qi, "Generative Face Parsing Map Guided 3D Face Reconstruction Under Occluded Scenes":
M_alpha is the parsing of what the image shows (occluders labelled as such), M_beta the complete
face parsing derived from the landmarks / fitted model (what the face would look like without the
occluder). Algorithm 1 builds the complete map M_gamma in two passes, first the face skin and
then the facial features, per class c and pixel p:

    M_gamma = M_alpha
    for c in (SKIN, then FEATURE_LABELS in labels.py order):
        for every pixel p:
            if   M_alpha[p] == c: M_gamma[p] = c      # what is visible wins
            elif M_beta[p]  == c: M_gamma[p] = c      # else the complete map fills it in
            # else: M_gamma[p] keeps its value (initially M_alpha[p])

So an occluder over the face becomes the face class behind it, features override skin, and
pixels that are neither face in M_alpha nor in M_beta keep M_alpha's label (background, hair,
occluders off the face). Per pixel the loop leaves the label of {M_alpha, M_beta} that comes last
in the class order (M_alpha when neither is a face class or both are the same): that is
`merge_parsing_maps`, a table lookup of each label's rank and one comparison, never a loop over
pixels; `merge_parsing_maps_reference` is the literal loop, for tests.
"""
from __future__ import annotations

import numpy as np
import torch

from ..core.labels import FACE_LABELS, SKIN, label_mask

MERGE_ORDER: tuple[int, ...] = FACE_LABELS
"""Class order of Algorithm 1: skin first, then the facial features."""
assert MERGE_ORDER[0] == SKIN


def merge_parsing_maps(m_alpha: torch.Tensor, m_beta: torch.Tensor) -> torch.Tensor:
    """M_gamma from M_alpha and M_beta (same shape, integer labels of labels.py); vectorised."""
    if m_alpha.shape != m_beta.shape:
        raise ValueError(f"M_alpha {tuple(m_alpha.shape)} and M_beta {tuple(m_beta.shape)} differ in shape")
    rank = torch.zeros(256, dtype=torch.uint8, device=m_alpha.device)  # 0: not a class of the loop
    rank[torch.tensor(MERGE_ORDER, device=m_alpha.device)] = torch.arange(1, len(MERGE_ORDER) + 1, dtype=torch.uint8,
                                                                         device=m_alpha.device)
    return torch.where(rank[m_beta.long()] > rank[m_alpha.long()], m_beta, m_alpha)


def occlusion_mask(m_alpha: torch.Tensor, m_beta: torch.Tensor) -> torch.Tensor:
    """Bool mask of face pixels hidden by something: face in M_beta, not face in M_alpha."""
    return label_mask(m_beta, FACE_LABELS) & ~label_mask(m_alpha, FACE_LABELS)


def merge_parsing_maps_reference(m_alpha: np.ndarray, m_beta: np.ndarray) -> np.ndarray:
    """Literal per-pixel transcription of Algorithm 1 (slow; the test oracle)."""
    m_gamma = m_alpha.copy()
    height, width = m_alpha.shape
    for label in MERGE_ORDER:
        for i in range(height):
            for j in range(width):
                if m_alpha[i, j] == label:  # noqa: SIM114 - the paper's two branches, kept literal
                    m_gamma[i, j] = label
                elif m_beta[i, j] == label:
                    m_gamma[i, j] = label
    return m_gamma
