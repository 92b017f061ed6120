"""occface_ros launch: one occface node per camera.

    ros2 launch occface_ros occface.launch.py                                  # camera "camera"
    ros2 launch occface_ros occface.launch.py cameras:=front,rear \
        image:=image_raw camera_info:=camera_info config:=/path/my.yaml

For every camera name C in `cameras` (comma separated) a node `occface` is started in namespace
`<namespace>/C` (namespace defaults to empty), subscribing `/C/<image>` and `/C/<camera_info>`
(remapped; give absolute topics for a single camera to point anywhere), publishing
`<namespace>/C/occface/{faces,head_poses,mesh_markers,occlusion_mask,parsing,debug_image}`, /tf and
/diagnostics. `config` is a YAML file in the shape of config/occface.yaml (or a ROS parameter file),
passed as the node's `config_file` parameter; `params_file` (optional) is a standard ROS 2
parameter file applied on top. The executable is `occface-node`: installed by colcon under
lib/occface_ros when setup.cfg routes scripts there, else found on PATH (pip/venv installs).

    ros2 launch occface_ros occface.launch.py rviz:=true                       # and RViz2

`rviz:=true` also starts rviz2 with `rviz_config` (default config/occface.rviz, installed under
share/occface_ros/config). For that default, the topics are rewritten for the first camera of
`cameras` (namespace, image topic), the fixed frame is set to `rviz_fixed_frame` (default
`<first camera>_optical_frame`: set it to the frame_id of your camera driver's images) and the
debug image display follows `debug_image`; a config of your own is used as it is.
"""
import copy
import os
import shutil
import tempfile

import yaml

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _default_config() -> str:
    try:
        from ament_index_python.packages import get_package_share_directory

        path = os.path.join(get_package_share_directory("occface_ros"), "config", "occface.yaml")
        if os.path.exists(path):
            return path
    except Exception:  # noqa: BLE001 - not installed through ament
        pass
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "config", "occface.yaml")


def _default_rviz_config() -> str:
    return os.path.join(os.path.dirname(_default_config()), "occface.rviz")


def _rviz2_installed():
    """True / False when the ament index can tell whether rviz2 is installed, None when it cannot."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError:
        return None
    try:
        get_package_prefix("rviz2")
        return True
    except PackageNotFoundError:
        return False
    except (OSError, ValueError):  # AMENT_PREFIX_PATH unset: not an ament environment
        return None


# RViz display name in config/occface.rviz -> the node output it shows (None: the camera image)
RVIZ_TOPICS = {"Face mesh": "mesh_markers", "Camera image": None, "Debug image": "debug_image",
               "Occlusion mask": "occlusion_mask", "Parsing labels": "parsing"}


def rviz_config_for(config: dict, node_ns: str, image_topic: str, fixed_frame: str, debug_image: bool) -> dict:
    """config/occface.rviz (loaded) with the topics of the node in `node_ns`, the camera image
    `image_topic`, `fixed_frame` and the debug image display on or off."""
    manager = config["Visualization Manager"]
    manager["Global Options"]["Fixed Frame"] = fixed_frame
    for display in manager["Displays"]:
        name = display.get("Name")
        if name not in RVIZ_TOPICS:
            continue
        output = RVIZ_TOPICS[name]
        display["Topic"]["Value"] = image_topic if output is None else f"/{node_ns}/occface/{output}"
        if name == "Debug image":
            display["Enabled"] = display["Value"] = debug_image
    return config


def _rviz(context, cameras: list[str], namespace: str, image: str, debug_image: bool) -> list:
    if LaunchConfiguration("rviz").perform(context).lower() != "true":
        return []
    if _rviz2_installed() is False:
        return [LogInfo(msg="occface: rviz:=true but rviz2 is not installed (apt install ros-$ROS_DISTRO-rviz2)")]
    path = LaunchConfiguration("rviz_config").perform(context)
    if path == _default_rviz_config() and cameras:
        cam = cameras[0]
        fixed_frame = LaunchConfiguration("rviz_fixed_frame").perform(context) or f"{cam}_optical_frame"
        with open(path) as f:
            original = yaml.safe_load(f)
        config = rviz_config_for(copy.deepcopy(original), "/".join(p for p in (namespace, cam) if p),
                                 image if image.startswith("/") else f"/{cam}/{image}", fixed_frame, debug_image)
        if config != original:
            fd, path = tempfile.mkstemp(prefix=f"occface_{cam.replace('/', '_')}_", suffix=".rviz")
            with os.fdopen(fd, "w") as f:
                yaml.safe_dump(config, f, sort_keys=False)
    return [Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", path], output="screen")]


def _executable_kwargs() -> dict:
    """package + executable when colcon installed lib/occface_ros/occface-node, else PATH lookup."""
    try:
        from ament_index_python.packages import get_package_prefix

        if os.path.exists(os.path.join(get_package_prefix("occface_ros"), "lib", "occface_ros", "occface-node")):
            return {"package": "occface_ros", "executable": "occface-node"}
    except Exception:  # noqa: BLE001
        pass
    return {"executable": shutil.which("occface-node") or "occface-node"}


def _nodes(context, *args, **kwargs):
    cameras = [c.strip().strip("/") for c in LaunchConfiguration("cameras").perform(context).split(",") if c.strip()]
    namespace = LaunchConfiguration("namespace").perform(context).strip("/")
    image = LaunchConfiguration("image").perform(context)
    camera_info = LaunchConfiguration("camera_info").perform(context)
    config = LaunchConfiguration("config").perform(context)
    params_file = LaunchConfiguration("params_file").perform(context)
    log_level = LaunchConfiguration("log_level").perform(context)
    debug_image = LaunchConfiguration("debug_image").perform(context) == "true"
    actions = []
    exe = _executable_kwargs()
    for cam in cameras:
        ns = "/".join(p for p in (namespace, cam) if p)
        parameters = [{"config_file": config, "publish_debug_image": debug_image}]
        if params_file:
            parameters.append(params_file)
        actions.append(Node(
            **exe,
            name="occface",
            namespace=ns,
            output="screen",
            emulate_tty=True,
            parameters=parameters,
            remappings=[
                ("image", image if image.startswith("/") else f"/{cam}/{image}"),
                ("camera_info", camera_info if camera_info.startswith("/") else f"/{cam}/{camera_info}"),
            ],
            ros_arguments=["--log-level", log_level],
        ))
        actions.append(LogInfo(msg=f"occface: camera '{cam}' -> /{ns}/occface/*"))
    return actions + _rviz(context, cameras, namespace, image, debug_image)


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("cameras", default_value="camera",
                              description="comma-separated camera names; one node per camera"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace above the camera namespaces"),
        DeclareLaunchArgument("image", default_value="image_raw",
                              description="image topic, relative to /<camera>/ unless absolute"),
        DeclareLaunchArgument("camera_info", default_value="camera_info",
                              description="camera_info topic, relative to /<camera>/ unless absolute"),
        DeclareLaunchArgument("config", default_value=_default_config(),
                              description="occface YAML config (config/occface.yaml shape or ROS parameter file)"),
        DeclareLaunchArgument("params_file", default_value="", description="optional ROS 2 parameter file on top"),
        DeclareLaunchArgument("debug_image", default_value="false", description="publish ~/debug_image overlays"),
        DeclareLaunchArgument("log_level", default_value="info"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start rviz2 (config: rviz_config)"),
        DeclareLaunchArgument("rviz_config", default_value=_default_rviz_config(),
                              description="RViz2 config; the default one is set up for the first camera"),
        DeclareLaunchArgument("rviz_fixed_frame", default_value="",
                              description="RViz fixed frame: the images' frame_id (default <first camera>_optical_frame)"),
        OpaqueFunction(function=_nodes),
    ])
