"""launch/occface.launch.py with stand-in launch/launch_ros modules (they are not on PyPI)."""
import importlib.util
import sys
import types
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

LAUNCH = Path(__file__).resolve().parent.parent / "launch" / "occface.launch.py"


class _Obj:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _Config:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context[self.name]


@pytest.fixture()
def launch_module(monkeypatch):
    fakes = {
        "launch": types.SimpleNamespace(LaunchDescription=lambda actions: list(actions)),
        "launch.actions": types.SimpleNamespace(DeclareLaunchArgument=_Obj, LogInfo=_Obj, OpaqueFunction=_Obj),
        "launch.substitutions": types.SimpleNamespace(LaunchConfiguration=_Config),
        "launch_ros": types.SimpleNamespace(),
        "launch_ros.actions": types.SimpleNamespace(Node=_Obj),
    }
    for name, mod in fakes.items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location("occface_launch", LAUNCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_launch_description_one_node_per_camera(launch_module):
    desc = launch_module.generate_launch_description()
    args = {a.args[0]: a.kwargs["default_value"] for a in desc if a.args}
    assert {"cameras", "namespace", "image", "camera_info", "config", "params_file", "debug_image"} <= set(args)
    assert args["config"].endswith("occface.yaml") and Path(args["config"]).exists()
    (opaque,) = [a for a in desc if "function" in a.kwargs]
    context = dict(args, cameras="front, rear", namespace="robot", log_level="info", params_file="/p.yaml",
                   camera_info="/calib/info")
    nodes = [a for a in opaque.kwargs["function"](context) if "remappings" in a.kwargs]
    assert [n.kwargs["namespace"] for n in nodes] == ["robot/front", "robot/rear"]
    front = nodes[0].kwargs
    assert front["name"] == "occface" and front["executable"].endswith("occface-node")
    assert dict(front["remappings"]) == {"image": "/front/image_raw", "camera_info": "/calib/info"}
    assert front["parameters"][0]["config_file"] == args["config"] and front["parameters"][1] == "/p.yaml"
    assert front["parameters"][0]["publish_debug_image"] is False


def _rviz_nodes(actions):
    return [a for a in actions if a.kwargs.get("executable") == "rviz2"]


def test_rviz_argument_starts_rviz2_with_the_config_for_the_first_camera(launch_module, monkeypatch):
    import yaml

    desc = launch_module.generate_launch_description()
    args = {a.args[0]: a.kwargs["default_value"] for a in desc if a.args}
    assert args["rviz"] == "false" and args["rviz_fixed_frame"] == ""
    assert Path(args["rviz_config"]).resolve() == (LAUNCH.parent.parent / "config" / "occface.rviz").resolve()
    (opaque,) = [a for a in desc if "function" in a.kwargs]
    run = opaque.kwargs["function"]
    assert _rviz_nodes(run(dict(args))) == []  # off by default

    monkeypatch.setattr(launch_module, "_rviz2_installed", lambda: True)
    # the defaults: the installed config is already right, no rewritten copy
    (rviz,) = _rviz_nodes(run(dict(args, rviz="true")))
    assert rviz.kwargs["package"] == "rviz2" and rviz.kwargs["arguments"] == ["-d", args["rviz_config"]]

    (rviz,) = _rviz_nodes(run(dict(args, rviz="true", cameras="front,rear", namespace="robot", debug_image="true")))
    flag, path = rviz.kwargs["arguments"]
    assert flag == "-d" and path != args["rviz_config"]
    config = yaml.safe_load(Path(path).read_text())
    Path(path).unlink()
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "front_optical_frame"
    displays = {d["Name"]: d for d in manager["Displays"]}
    assert displays["Face mesh"]["Topic"]["Value"] == "/robot/front/occface/mesh_markers"
    assert displays["Camera image"]["Topic"]["Value"] == "/front/image_raw"
    assert displays["Debug image"]["Enabled"] is True
    assert displays["Debug image"]["Topic"]["Value"] == "/robot/front/occface/debug_image"

    (rviz,) = _rviz_nodes(run(dict(args, rviz="true", rviz_fixed_frame="usb_cam", image="/cam/image")))
    config = yaml.safe_load(Path(rviz.kwargs["arguments"][1]).read_text())
    Path(rviz.kwargs["arguments"][1]).unlink()
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] == "usb_cam"
    assert {d["Name"]: d for d in config["Visualization Manager"]["Displays"]}["Camera image"]["Topic"]["Value"] == \
        "/cam/image"

    (rviz,) = _rviz_nodes(run(dict(args, rviz="true", rviz_config="/my/own.rviz", cameras="front")))
    assert rviz.kwargs["arguments"] == ["-d", "/my/own.rviz"]  # a config of one's own is used as it is

    monkeypatch.setattr(launch_module, "_rviz2_installed", lambda: False)
    actions = run(dict(args, rviz="true"))
    assert _rviz_nodes(actions) == [] and any("rviz2 is not installed" in a.kwargs.get("msg", "") for a in actions)


def test_rviz_config_shows_the_node_outputs_in_the_camera_frame():
    """config/occface.rviz: every display names a topic the node (launched with the defaults) publishes."""
    import yaml

    pytest.importorskip("occface_msgs.msg", reason="interfaces not built (tools/build_interfaces.sh)")
    from occface_ros.ros.messages import MESH_NS
    from occface_ros.ros.outputs import OUTPUTS

    config = yaml.safe_load((LAUNCH.parent.parent / "config" / "occface.rviz").read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "camera_optical_frame"
    displays = {d["Name"]: d for d in manager["Displays"]}
    node_topics = {f"/camera/occface/{t[2:]}" for t, _ in OUTPUTS.values() if t.startswith("~/")}
    by_class = {}
    for d in displays.values():
        by_class.setdefault(d["Class"], []).append(d)
    assert len(by_class["rviz_default_plugins/TF"]) == 1
    (markers,) = by_class["rviz_default_plugins/MarkerArray"]
    assert markers["Topic"]["Value"] == "/camera/occface/mesh_markers" and markers["Namespaces"] == {MESH_NS: True}
    images = {d["Topic"]["Value"] for d in by_class["rviz_default_plugins/Image"]}
    assert images == {"/camera/image_raw"} | {f"/camera/occface/{k}" for k in ("debug_image", "occlusion_mask", "parsing")}
    assert images - {"/camera/image_raw"} <= node_topics
    # best effort: the camera drivers' sensor-data QoS, and the node's reliable outputs, both match it
    assert {d["Topic"]["Reliability Policy"] for d in by_class["rviz_default_plugins/Image"]} == {"Best Effort"}
    assert displays["Debug image"]["Enabled"] is False  # publish_debug_image is off by default
