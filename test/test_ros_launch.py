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
