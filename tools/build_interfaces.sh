#!/usr/bin/env bash
# Build the project's ROS 2 interfaces (msg/occface_msgs) with cmake + rosidl from the ROS 2 PyPI
# wheels installed in a venv (requirements/ros.txt), and install them into that venv.
#
#   tools/build_interfaces.sh [VENV]        (default: .venv)
#
# Also builds msg/tf2_msgs_vendor (tf2_msgs/TFMessage only, for /tf) when the venv cannot import a
# tf2_msgs of its own, and msg/hri_msgs_vendor (the REP-155 face messages of hri_msgs) when it cannot
# import an hri_msgs: neither is published on PyPI. On a machine with system ROS use colcon
# instead (docs/ros.md); this script is for the wheel venv.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
V="$(cd "${1:-$ROOT/.venv}" && pwd)"
PY="$V/bin/python"
BUILD="$ROOT/build/interfaces"

"$PY" -c "import rclpy, rosidl_generator_py" 2>/dev/null || {
  echo "build_interfaces: $V has no ROS 2 wheels; run: $PY -m pip install --no-deps -r requirements/ros.txt" >&2
  exit 1
}

# The wheels' exported CMake files hard-code the wheel builder's Python/numpy include paths.
PYINC="$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")"
NPINC="$("$PY" -c "import numpy; print(numpy.get_include())")"
{ grep -rl "/opt/python/cp311-cp311" "$V/share" --include="*.cmake" 2>/dev/null || true; } | while read -r f; do
  sed -i "s#/opt/python/cp311-cp311/include/python3.11#$PYINC#g; \
s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NPINC#g" "$f"
done

build_pkg() {  # build_pkg <source dir> <name>
  local src="$1" name="$2"
  echo "build_interfaces: $name -> $V" >&2
  AMENT_PREFIX_PATH="$V${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" \
  CMAKE_PREFIX_PATH="$V${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}" \
    cmake -S "$src" -B "$BUILD/$name" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$V" -DPython3_EXECUTABLE="$PY" -DCMAKE_INSTALL_PREFIX="$V" \
      -DBUILD_TESTING=OFF >"$BUILD/$name.cmake.log" 2>&1 || { cat "$BUILD/$name.cmake.log" >&2; exit 1; }
  AMENT_PREFIX_PATH="$V${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" \
    cmake --build "$BUILD/$name" -j"${JOBS:-2}" >"$BUILD/$name.build.log" 2>&1 || { tail -50 "$BUILD/$name.build.log" >&2; exit 1; }
  cmake --install "$BUILD/$name" >"$BUILD/$name.install.log" 2>&1 || { cat "$BUILD/$name.install.log" >&2; exit 1; }
}

mkdir -p "$BUILD"
if ! "$PY" -c "import tf2_msgs.msg" 2>/dev/null || [ -f "$BUILD/tf2_msgs_vendor.installed" ]; then
  # vendored only when no tf2_msgs exists (or when we installed it ourselves before: rebuild it)
  build_pkg "$ROOT/msg/tf2_msgs_vendor" tf2_msgs
  touch "$BUILD/tf2_msgs_vendor.installed"
fi
if ! "$PY" -c "import hri_msgs.msg" 2>/dev/null || [ -f "$BUILD/hri_msgs_vendor.installed" ]; then
  build_pkg "$ROOT/msg/hri_msgs_vendor" hri_msgs  # same rule as tf2_msgs
  touch "$BUILD/hri_msgs_vendor.installed"
fi
build_pkg "$ROOT/msg/occface_msgs" occface_msgs

"$PY" -c "
from occface_msgs.msg import Face, FaceArray
from tf2_msgs.msg import TFMessage
from hri_msgs.msg import FacialLandmarks, IdsList, NormalizedPointOfInterest2D, NormalizedRegionOfInterest2D
print('build_interfaces: ok (occface_msgs.msg.Face, FaceArray; tf2_msgs.msg.TFMessage; '
      'hri_msgs.msg.IdsList, NormalizedRegionOfInterest2D, NormalizedPointOfInterest2D, FacialLandmarks)')
"
