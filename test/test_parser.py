"""Optional learned parser: weights loading (safe, clear errors) and the crop/uncrop geometry."""
import pytest
import torch

from occface_ros.core.labels import LABELS
from occface_ros.core.roi import uncrop_to_image
from occface_ros.occlusion.parser import FaceParser, ParsingUNet, load_parser
from occface_ros.paths import MissingModelError
from occface_ros.core.roi import crop_rois

pytestmark = pytest.mark.unit


def test_uncrop_inverts_crop_inside_the_roi():
    torch.manual_seed(0)
    image = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 16), size=(60, 80), mode="bilinear")[0]
    rois = torch.tensor([[40.0, 30.0, 36.0, 0.3]])
    crops = crop_rois(image, rois, (64, 64))
    back = uncrop_to_image(crops, rois, 60, 80)[0]
    inner = (slice(24, 37), slice(34, 47))  # well inside the rotated square
    err = (back[:, inner[0], inner[1]] - image[:, inner[0], inner[1]]).abs()
    assert err.mean() < 0.003 and err.max() < 0.05  # double bilinear resampling blurs only the kinks
    assert back[:, :5, :5].abs().max() == 0  # outside the ROI: zero


@pytest.mark.parametrize("amodal", [False, True])
def test_saved_weights_load_and_give_probabilities(tmp_path, amodal):
    """Face and hair probabilities (they sum to at most 1), plus the complete face's and the
    occluder's with an amodal head."""
    net = ParsingUNet(base_channels=4, input_size=64, amodal=amodal)
    path = tmp_path / "parser.pt"
    torch.save(net.state_dict(), path)
    loaded = load_parser(path)
    assert loaded.head.out_channels == len(LABELS) and (loaded.amodal_head is not None) == amodal
    probs = FaceParser(loaded)(torch.rand(3, 48, 64), torch.tensor([[32.0, 24.0, 40.0, 0.0]]))
    assert probs.shape == (1, 4 if amodal else 2, 48, 64)
    assert (probs >= 0).all() and (probs[:, :2].sum(1) <= 1 + 1e-5).all() and (probs <= 1).all()
    if amodal:  # visible face and occluder are classes of one softmax
        assert (probs[:, 0] + probs[:, 3] <= 1 + 1e-5).all()


def test_missing_corrupt_and_foreign_weights_are_clear_errors(tmp_path):
    with pytest.raises(MissingModelError, match="not found"):
        load_parser(tmp_path / "absent.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        load_parser(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="not a ParsingUNet"):
        load_parser(foreign)


def test_submitted_parse_equals_the_direct_call():
    """`submit` (the worker thread the occlusion stage overlaps with the rasterizer) gives exactly
    the direct call's probabilities, call after call, and close() ends the worker."""
    torch.manual_seed(0)
    parser = FaceParser(ParsingUNet(base_channels=4, input_size=48).eval())
    image = torch.rand(3, 60, 80)
    rois = torch.tensor([[40.0, 30.0, 36.0, 0.3], [30.0, 25.0, 20.0, -0.5]])
    direct = parser(image, rois)
    futures = [parser.submit(image, rois) for _ in range(3)]
    for future in futures:
        assert torch.equal(future.result(), direct)
    assert parser._worker is not None
    parser.close()
    assert parser._worker is None
