import cv2
import numpy as np
import pytest

from occface_ros.app.sources import FrameSource, InputError, read_image

pytestmark = pytest.mark.unit


def test_image_folder_and_video_sources(tmp_path):
    img = np.full((48, 64, 3), 127, np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    assert read_image(tmp_path / "a.png").shape == (48, 64, 3)
    folder = tmp_path / "seq"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), img)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    src = FrameSource(folder)
    frames = list(src)
    assert [f.index for f in frames] == [0, 1, 2] and len(src.skipped) == 1
    video = tmp_path / "v.mp4"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 48))
    for _ in range(5):
        w.write(img)
    w.release()
    assert len(list(FrameSource(video))) == 5


def test_grey_and_16_bit_images_become_bgr8(tmp_path):
    cv2.imwrite(str(tmp_path / "g.png"), np.full((8, 8), 65535, np.uint16))
    out = read_image(tmp_path / "g.png")
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8 and out.max() == 255


@pytest.mark.parametrize("name, data", [("x.jpg", b"garbage"), ("x.png", b""), ("x.mp4", b"\x00" * 100)])
def test_unreadable_inputs_raise(tmp_path, name, data):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(InputError):
        FrameSource(tmp_path / name)


def test_missing_and_empty_inputs(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        FrameSource(tmp_path / "nope.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        FrameSource(tmp_path / "empty")
