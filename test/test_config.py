import pytest

from occface_ros.config import ConfigError, load_config

pytestmark = pytest.mark.unit


def test_defaults_load_and_validate():
    cfg = load_config()
    assert cfg["runtime"]["backend"] in ("auto", "eager", "compile", "tensorrt", "onnxruntime")
    assert cfg["detection"]["max_faces"] >= 1


def test_user_file_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("smoothing:\n  beta: 0.5\n")
    assert load_config(p)["smoothing"]["beta"] == 0.5


def test_ros_parameter_file_shape_is_accepted(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("occface:\n  ros__parameters:\n    detection:\n      max_faces: 2\n")
    assert load_config(p)["detection"]["max_faces"] == 2


@pytest.mark.parametrize("text, fragment", [
    ("detection:\n  model: huge\n", "detection.model"),
    ("detection:\n  nope: 1\n", "unknown config key 'detection.nope'"),
    ("smoothing:\n  beta: fast\n", "smoothing.beta"),
    ("camera:\n  fx: 500\n", "intrinsics"),
    ("camera:\n  hfov_deg: 200\n", "hfov_deg"),
    ("runtime:\n  device: tpu\n", "runtime.device"),
    ("- a\n- b\n", "mapping"),
    ("a: [unclosed\n", "cannot read config"),
])
def test_invalid_configs_are_rejected_with_a_reason(tmp_path, text, fragment):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        load_config(p)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")


def test_every_shipped_configuration_loads():
    """The YAML files beside config/occface.yaml are partial configurations that load over it."""
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "config"
    files = [p for p in folder.glob("*.yaml") if p.name != "occface.yaml"]
    assert any(p.name == "occluded_scenes.yaml" for p in files)
    for path in files:
        cfg = load_config(path)
        assert cfg["runtime"]["device"]  # the defaults are filled in
    scenes = load_config(folder / "occluded_scenes.yaml")
    assert scenes["landmarks"]["model"] == "facemesh+occnet" and scenes["detection"]["low_min_score"] == 0.2
