"""Algorithm 1 (parsing-map merge): vectorised form against the literal per-pixel loop."""
import numpy as np
import pytest
import torch

from occface_ros.core import labels
from occface_ros.occlusion.algorithm1 import merge_parsing_maps, merge_parsing_maps_reference, occlusion_mask

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_equals_literal_loop_on_random_maps(seed):
    rng = np.random.default_rng(seed)
    shape = (23, 31)
    alpha = rng.integers(0, len(labels.LABELS), shape).astype(np.uint8)
    beta = rng.integers(0, len(labels.LABELS), shape).astype(np.uint8)
    if seed % 2:  # structured maps: large constant regions, as real parsings have
        alpha[:, : shape[1] // 2] = labels.OCCLUDER
        beta[5:15, 5:25] = labels.SKIN
    expected = merge_parsing_maps_reference(alpha, beta)
    got = merge_parsing_maps(torch.from_numpy(alpha), torch.from_numpy(beta)).numpy()
    np.testing.assert_array_equal(got, expected)


def test_occluder_over_face_takes_the_complete_maps_class():
    beta = torch.full((4, 6), labels.SKIN, dtype=torch.uint8)
    beta[1, 1:3] = labels.LEFT_EYE
    beta[:, 5] = labels.BACKGROUND
    alpha = beta.clone()
    alpha[:, :3] = labels.OCCLUDER  # a hand over the left half, eye included
    alpha[0, 5] = labels.HAIR
    gamma = merge_parsing_maps(alpha, beta)
    assert torch.equal(gamma[:, :5], beta[:, :5])  # the face behind the occluder is restored
    assert gamma[0, 5] == labels.HAIR and gamma[1, 5] == labels.BACKGROUND  # off the face: M_alpha
    mask = occlusion_mask(alpha, beta)
    assert mask[:, :3].all() and not mask[:, 3:].any()


def test_visible_feature_wins_over_complete_skin():
    beta = torch.full((2, 2), labels.SKIN, dtype=torch.uint8)
    alpha = torch.tensor([[labels.NOSE, labels.OCCLUDER], [labels.BACKGROUND, labels.SKIN]], dtype=torch.uint8)
    gamma = merge_parsing_maps(alpha, beta)
    assert gamma.tolist() == [[labels.NOSE, labels.SKIN], [labels.SKIN, labels.SKIN]]


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        merge_parsing_maps(torch.zeros(2, 3, dtype=torch.uint8), torch.zeros(3, 2, dtype=torch.uint8))


def test_label_mask_equals_isin():
    gen = torch.Generator().manual_seed(1)
    maps = torch.randint(0, len(labels.LABELS), (2, 37, 53), generator=gen, dtype=torch.uint8)
    for ids in (labels.FACE_LABELS, (labels.HAIR,), (), (labels.BACKGROUND, labels.OCCLUDER)):
        expected = torch.isin(maps, torch.tensor(ids, dtype=torch.uint8))
        assert torch.equal(labels.label_mask(maps, ids), expected)
        assert torch.equal(labels.label_mask(maps.long(), ids), expected)


@pytest.mark.parametrize("radius", [1, 4])
@pytest.mark.parametrize("opening", [False, True])
def test_mask_morphology_with_cv2_equals_max_pooling(radius, opening):
    """The reasoner's dilation and opening (cv2 on the CPU) equal the max-pooling form the GPU runs,
    image borders included."""
    import torch.nn.functional as F

    from occface_ros.occlusion.reasoner import _morphology

    torch.manual_seed(radius)
    mask = torch.rand(61, 75) > 0.75
    mask[10:40, 0:30] = True  # a block touching the border
    pool = lambda x: F.max_pool2d(x[None, None], 2 * radius + 1, stride=1, padding=radius)[0, 0]  # noqa: E731
    x = mask.float()
    if opening:
        x = 1.0 - pool(1.0 - x)
    expected = pool(x) > 0
    got = _morphology(mask, radius, opening)
    assert got.dtype == torch.bool and torch.equal(got, expected)
    assert bool(got[12:38, 0:28].all())  # the block survives an opening
