import numpy as np

from occface_ros.app.samples import read_ljson, read_pts, sample_path


def test_annotated_photos_have_68_points_inside_the_image(annotated_photos):
    assert [p.name for p in annotated_photos] == ["breakingbad", "einstein", "lenna", "takeo"]
    for p in annotated_photos:
        h, w = p.image_bgr.shape[:2]
        assert p.landmarks68.shape == (68, 2)
        assert (p.landmarks68 >= 0).all() and (p.landmarks68[:, 0] < w).all() and (p.landmarks68[:, 1] < h).all()
        # outer eye corners: subject's right (36) is left of the left (45) in an upright photo
        assert p.landmarks68[36, 0] < p.landmarks68[45, 0]


def test_pts_and_ljson_parsers(tmp_path):
    pts = tmp_path / "a.pts"
    pts.write_text("version: 1\nn_points: 2\n{\n1 2\n3.5 4\n}\n")
    assert np.allclose(read_pts(pts), [[0, 1], [2.5, 3]])
    lj = tmp_path / "a.ljson"
    lj.write_text('{"groups": {"LJSON": {"landmarks": {"points": [[10, 20], [30, 40]]}}}}')
    assert np.allclose(read_ljson(lj), [[20, 10], [40, 30]])


def test_registry_images_exist():
    for pkg, name in [("skimage", "astronaut.png"), ("insightface", "t1.jpg"), ("insightface", "mask_blue.jpg")]:
        assert sample_path(pkg, name).stat().st_size > 1000
