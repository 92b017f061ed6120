"""occface_ros: ament_python package (also pip-installable for use without a ROS workspace)."""
from glob import glob

from setuptools import find_packages, setup

package_name = "occface_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=[package_name, f"{package_name}.*"]),
    package_data={package_name: ["data/*.npz", "data/*.md", "data/*.json", "data/weights/*.pt", "data/weights/*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/config", glob("config/*.yaml") + glob("config/*.rviz")),
        (f"share/{package_name}/launch", glob("launch/*.py")),
    ],
    install_requires=["numpy", "PyYAML", "tqdm", "tflite", "opencv-python-headless", "scipy"],
    zip_safe=False,
    maintainer="occface_ros developers",
    maintainer_email="occface@example.invalid",
    description="Real-time occlusion-robust 3D face reconstruction for ROS 2",
    license="Apache-2.0",
    entry_points={"console_scripts": ["occface = occface_ros.cli:main",
                                    "occface-node = occface_ros.ros.node:main"]},
)
