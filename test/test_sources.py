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


def _broken_png(path):
    """A PNG whose header is intact and whose data is cut off and scrambled (OpenCV and libpng both
    have something to say about it on fd 2)."""
    ok, data = cv2.imencode(".png", np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    raw = bytearray(data.tobytes()[:8]) + bytearray(np.random.default_rng(2).integers(0, 256, 500, np.uint8).tobytes())
    path.write_bytes(bytes(raw))


def test_folder_whose_first_file_is_broken_skips_it(tmp_path):
    img = np.full((48, 64, 3), 127, np.uint8)
    _broken_png(tmp_path / "000.png")
    (tmp_path / "001.jpg").write_bytes(b"not a jpeg")
    cv2.imwrite(str(tmp_path / "002.png"), img)
    cv2.imwrite(str(tmp_path / "003.png"), img)
    src = FrameSource(tmp_path)
    assert len(src) == 2 and len(src.skipped) == 2 and "000.png" in src.skipped[0]
    frames = list(src)
    assert [f.index for f in frames] == [0, 1] and frames[0].source.endswith("002.png")
    assert len(src.skipped) == 2  # the ones found at validation are not listed twice


def test_folder_of_broken_files_only_is_one_error(tmp_path):
    _broken_png(tmp_path / "a.png")
    (tmp_path / "b.jpg").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"holds no readable image \(2 broken files, e.g. a.png\)"):
        FrameSource(tmp_path)


def test_broken_png_prints_nothing_from_native_code(tmp_path, capfd):
    _broken_png(tmp_path / "x.png")
    with pytest.raises(InputError, match="cannot read image"):
        read_image(tmp_path / "x.png")
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # no OpenCV [ WARN ]/[ERROR] or libpng lines on fd 1 or 2
