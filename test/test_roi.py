import math

import numpy as np
import pytest
import torch

from occface_ros.core.roi import box_iou, crop_rois, crop_to_image, roi_from_points, rois_to_boxes

pytestmark = pytest.mark.unit


def test_crop_samples_the_rotated_square():
    image = torch.zeros(3, 100, 200)
    image[:, 40, 60] = 1.0
    roi = torch.tensor([[60.0, 40.0, 21.0, 0.7]])
    crop = crop_rois(image, roi, (21, 21))
    assert crop.shape == (1, 3, 21, 21)
    flat = int(crop[0, 0].argmax())
    assert (flat // 21, flat % 21) == (10, 10)
    assert abs(float(crop.max()) - 1.0) < 1e-5


def test_crop_to_image_inverts_the_crop_for_any_rotation():
    rois = torch.tensor([[120.0, 80.0, 64.0, 0.0], [50.0, 60.0, 30.0, math.radians(35)]])
    pts_img = torch.tensor([[[110.0, 90.0]], [[52.0, 57.0]]])
    image = torch.zeros(3, 160, 240)
    for b in range(2):
        x, y = pts_img[b, 0].round().long().tolist()
        image[:, y, x] = 1.0
    crops = crop_rois(image, rois, (64, 64))
    for b in range(2):
        flat = int(crops[b, 0].argmax())
        v, u = flat // 64, flat % 64
        back = crop_to_image(torch.tensor([[[u + 0.5, v + 0.5]]]), rois[b:b + 1], (64, 64))
        assert torch.allclose(back[0, 0], pts_img[b, 0].round(), atol=1.0)


def test_roi_from_points_is_rotation_equivariant():
    square = torch.tensor([[[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]]) * 10 + 50
    roi0 = roi_from_points(square, 0, 1, 1.5)
    assert torch.allclose(roi0[0], torch.tensor([50.0, 50.0, 30.0, 0.0]), atol=1e-4)
    a = math.radians(30)
    rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    turned = (square - 50) @ rot.T + 50
    roi1 = roi_from_points(turned, 0, 1, 1.5)
    assert torch.allclose(roi1[0], torch.tensor([50.0, 50.0, 30.0, a]), atol=1e-4)


def test_box_iou_and_roi_boxes():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    assert torch.allclose(box_iou(a, b), torch.tensor([[1 / 3, 0.0]]))
    box = rois_to_boxes(torch.tensor([[10.0, 10.0, 4.0, math.pi / 4]]))
    half = 2 * math.sqrt(2)
    assert torch.allclose(box, torch.tensor([[10 - half, 10 - half, 10 + half, 10 + half]]), atol=1e-5)


def test_cpu_channels_last_crops_match_the_grid_sample_path():
    """FacePipeline.to_tensor's channels-last CPU images are cropped with cv2.warpAffine; the result
    must equal affine_grid + grid_sample (pixel centres, zero border), also for rotated ROIs that
    leave the image."""
    import cv2
    import numpy as np

    from occface_ros.app.samples import sample_path

    bgr = cv2.imread(str(sample_path("skimage", "astronaut.png")))
    channels_last = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).float().div(255).permute(2, 0, 1)
    contiguous = channels_last.contiguous()
    rois = torch.tensor([[256.0, 200.0, 180.0, 0.3], [20.0, 30.0, 150.0, -1.0], [500.0, 490.0, 300.0, 2.5]])
    fast = crop_rois(channels_last, rois, (192, 160))
    reference = crop_rois(contiguous, rois, (192, 160))
    assert fast.shape == reference.shape == (3, 3, 192, 160)
    assert fast.is_contiguous(memory_format=torch.channels_last)
    diff = (fast - reference).abs()
    # OpenCV quantizes sub-pixel positions to 1/32 px: errors of a fraction of a grey level at edges
    assert float(diff.mean()) < 1e-4 and float(diff.max()) < 0.05
    outside = reference[2] == 0  # the third ROI reaches past the image corner: zero border
    assert float(outside.float().mean()) > 0.1 and float((fast[2] == 0)[outside].float().mean()) > 0.99
    assert np.isclose(float(fast.sum()), float(reference.sum()), rtol=1e-4)


def test_frame_image_crops_from_uint8_match_the_float_image():
    """A FrameImage is cropped from its uint8 BGR array (no full-frame float conversion); the crops
    equal the float image's up to uint8 rounding, and the float tensor is only made on demand."""
    import cv2

    from occface_ros.core.roi import FrameImage
    from occface_ros.app.samples import sample_path

    bgr = cv2.imread(str(sample_path("skimage", "astronaut.png")))
    frame = FrameImage(bgr)
    rois = torch.tensor([[256.0, 200.0, 180.0, 0.3], [500.0, 490.0, 300.0, 2.5]])
    fast = crop_rois(frame, rois, (192, 192))
    assert frame._tensor is None  # cropping did not convert the frame
    reference = crop_rois(frame.tensor.contiguous(), rois, (192, 192))  # grid_sample on the float image
    diff = (fast - reference).abs()
    assert float(diff.mean()) < 2e-3 and float(diff.max()) < 0.05
    assert frame.shape == (3, 512, 512) and frame.new_zeros(2, 4).shape == (2, 4)
    with pytest.raises(ValueError, match="uint8 BGR"):
        FrameImage(bgr.astype(np.float32))


def test_cpu_uncrop_matches_the_grid_sample_path():
    """uncrop_to_image puts CPU float32 crops back with cv2.warpAffine; the result must equal the
    grid_sample path (float64 input takes it), also for rotated ROIs that leave the image."""
    import cv2

    from occface_ros.app.samples import sample_path
    from occface_ros.core.roi import uncrop_to_image

    bgr = cv2.imread(str(sample_path("skimage", "astronaut.png")))
    image = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).float().div(255).permute(2, 0, 1).contiguous()
    rois = torch.tensor([[256.0, 200.0, 180.0, 0.3], [20.0, 30.0, 150.0, -1.0], [500.0, 490.0, 300.0, 2.5]])
    crops = crop_rois(image, rois, (96, 112))
    for channels in (1, 2, 4):
        maps = crops.repeat(1, 2, 1, 1)[:, :channels].contiguous()
        fast = uncrop_to_image(maps, rois, 400, 520)
        reference = uncrop_to_image(maps.double(), rois.double(), 400, 520).float()
        assert fast.shape == reference.shape == (3, channels, 400, 520)
        diff = (fast - reference).abs()
        assert float(diff.mean()) < 1e-4 and float(diff.max()) < 0.05
        assert float((reference > 0).float().mean()) > 0.05  # the crops cover part of the image ...
        assert bool((fast[reference == 0] == 0).float().mean() > 0.99)  # ... and zero elsewhere
