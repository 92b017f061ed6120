"""Lambert shading of the flat-coloured mesh markers (mesh_colours_from_image: false): the shape reads in RViz."""
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels not installed (make ros)")
pytest.importorskip("occface_msgs.msg", reason="interfaces not built (tools/build_interfaces.sh)")

from rclpy.serialization import deserialize_message  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from occface_ros.ros import messages as M  # noqa: E402

pytestmark = pytest.mark.unit


def _sphere(centre, radius=0.1, n_lat=24, n_lon=48):
    """A closed UV sphere: (V, 3) vertices, (T, 3) triangles wound outwards (counter-clockwise seen from outside)."""
    lat = np.linspace(0, np.pi, n_lat + 1)[1:-1]
    lon = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    ring = np.stack([np.sin(la) * np.cos(lo), np.sin(la) * np.sin(lo), np.cos(la)], -1).reshape(-1, 3)
    verts = np.concatenate([[[0, 0, 1]], ring, [[0, 0, -1]]]) * radius + np.asarray(centre)
    idx = lambda i, j: 1 + i * n_lon + j % n_lon  # noqa: E731
    tris = [(0, idx(0, j), idx(0, j + 1)) for j in range(n_lon)]
    for i in range(n_lat - 2):
        for j in range(n_lon):
            tris += [(idx(i, j), idx(i + 1, j), idx(i + 1, j + 1)), (idx(i, j), idx(i + 1, j + 1), idx(i, j + 1))]
    last = len(verts) - 1
    tris += [(idx(n_lat - 2, j), last, idx(n_lat - 2, j + 1)) for j in range(n_lon)]
    return verts, np.asarray(tris)


def test_lambert_shading_follows_the_light_whatever_the_winding():
    centre = np.array([0.0, 0.0, 0.6])
    verts, tris = _sphere(centre)
    rgb = np.asarray(M.MESH_RGB)
    light = np.asarray(M.MESH_LIGHT_DIR) / np.linalg.norm(M.MESH_LIGHT_DIR)
    colours = M.lambert_colours(verts, tris)
    assert colours.shape == (len(verts), 3) and colours.dtype == np.float32
    shade = colours / rgb  # one grey level per vertex, the base colour's hue kept
    assert np.allclose(shade, shade[:, :1], atol=1e-5)
    normal = (verts - centre) / np.linalg.norm(verts - centre, axis=1, keepdims=True)  # the exact outward normal
    expected = M.MESH_AMBIENT + (1 - M.MESH_AMBIENT) * np.clip(normal @ light, 0, 1)
    assert np.abs(shade[:, 0] - expected).max() < 0.03  # area-weighted normals of a 24x48 sphere
    lit, dark = np.argmax(normal @ light), np.argmin(normal @ light)
    assert shade[lit, 0] > 0.99 and shade[dark, 0] == pytest.approx(M.MESH_AMBIENT)
    # the side facing the camera (and the light, which is behind it) is the lit one
    assert shade[verts[:, 2] < 0.55, 0].mean() > 0.7 > 0.35 > shade[verts[:, 2] > 0.65, 0].mean()
    # reversed winding (a model with the other convention, a simplified mesh): the same shading
    assert np.allclose(M.lambert_colours(verts, tris[:, ::-1]), colours, atol=1e-6)
    # a vertex of no triangle (dropped by the LOD) gets the ambient term, not nan
    extra = M.lambert_colours(np.vstack([verts, [[0, 0, 2.0]]]), tris)
    assert np.isfinite(extra).all() and extra[-1] == pytest.approx(M.MESH_AMBIENT * rgb)


def test_flat_coloured_mesh_markers_carry_the_shading():
    from occface_ros.ros.bench import CannedPipeline
    from occface_ros.ros.outputs import OutputBuilder
    from occface_ros.ros.params import NODE_DEFAULTS

    pipe = CannedPipeline()
    builder = OutputBuilder(pipe)
    image = np.full((480, 640, 3), 90, np.uint8)
    frame = pipe.process(image, 0.0)
    options = {**NODE_DEFAULTS, "mesh_colours_from_image": False, "publish_debug_image": False}
    raw = dict(builder.build(Header(frame_id="cam"), frame, image, options))["mesh_markers"]
    (marker,) = deserialize_message(raw, MarkerArray).markers
    assert marker.type == marker.TRIANGLE_LIST and len(marker.colors) == len(marker.points) > 0
    got = np.array([[c.r, c.g, c.b] for c in marker.colors])
    (verts, tris, _), = builder.meshes(frame.faces, 640, 480, int(options["mesh_max_triangles"]))
    assert np.allclose(got, M.lambert_colours(verts, tris)[tris.reshape(-1)], atol=1e-6)
    shade = got[:, 0] / M.MESH_RGB[0]
    assert shade.min() >= M.MESH_AMBIENT - 1e-6 and shade.max() <= 1 + 1e-6
    assert np.percentile(shade, 90) - np.percentile(shade, 10) > 0.3  # shaded, not one flat colour
    # the default: colours sampled from the image (flat grey here), not shaded
    raw = dict(builder.build(Header(frame_id="cam"), frame, image, {**options, "mesh_colours_from_image": True}))
    (marker,) = deserialize_message(raw["mesh_markers"], MarkerArray).markers
    assert {round(c.r, 4) for c in marker.colors} == {round(90 / 255, 4)}
