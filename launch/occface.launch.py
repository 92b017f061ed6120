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
"""
import os
import shutil

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
    actions = []
    exe = _executable_kwargs()
    for cam in cameras:
        ns = "/".join(p for p in (namespace, cam) if p)
        parameters = [{"config_file": config,
                       "publish_debug_image": LaunchConfiguration("debug_image").perform(context) == "true"}]
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
    return actions


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
        OpaqueFunction(function=_nodes),
    ])
