"""occface-node's console entry under SIGINT/SIGTERM, as its own process on real rclpy (loopback DDS,
random domain) with the stand-in pipeline, frames arriving at 30 Hz: 20 signals at random times,
half during start-up (imports, rclpy.init, the managed node's autostart configure + activate:
parameters, pipeline) and half while frames flow, must all end in exit 0 within 1 s and without a
traceback (docs/ros.md, "Shutdown")."""
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels not installed (make ros)")
pytest.importorskip("occface_msgs.msg", reason="interfaces not built (tools/build_interfaces.sh)")

from ros_support import Collector  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# main() first, as the console script does: the stand-in (and torch with it) loads inside start-up
RUNNER = """
import sys
from occface_ros.ros.node import main

def fake_pipeline(config):
    from fakes import FakePipeline
    return FakePipeline(config)

sys.exit(main(pipeline_factory=fake_pipeline))
"""
CYCLES = 20  # SIGINT and SIGTERM alternate; cycles 0-1, 4-5, ... in start-up, 2-3, 6-7, ... under load
EXIT_WITHIN_S = 1.0
HANDLERS_AFTER_S = 0.25  # interpreter start-up (~0.15 s here) comes before any handler can exist
RATE_HZ = 30.0


class FramePump:
    """A tester node publishing a bright 80x64 image at RATE_HZ and collecting ~/faces."""

    def __init__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image
        from std_msgs.msg import Header

        from occface_msgs.msg import FaceArray
        from occface_ros.ros.image_conversion import fill_image_msg
        from occface_ros.ros.occface_node import OUTPUT_QOS

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("sig_tester", context=self.ctx)
        self.col = Collector(self.node, {"/sig/occface/faces": (FaceArray, OUTPUT_QOS)})
        self.pub = self.node.create_publisher(Image, "/sig/image", qos_profile_sensor_data)
        self.msg = fill_image_msg(Image(), np.full((64, 80, 3), 128, np.uint8), "bgr8", Header(frame_id="sig"))
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.spin = threading.Thread(target=self.executor.spin, daemon=True)
        self.spin.start()
        self.running = True
        self.pump = threading.Thread(target=self._publish, daemon=True)
        self.pump.start()

    def _publish(self):
        t_next = time.monotonic()
        while self.running:
            now = time.time()
            self.msg.header.stamp.sec, self.msg.header.stamp.nanosec = int(now), int((now % 1) * 1e9)
            self.pub.publish(self.msg)
            t_next += 1 / RATE_HZ
            time.sleep(max(0.0, t_next - time.monotonic()))

    def faces_since(self, t_wall: float) -> int:
        with self.col.cond:
            return sum(1 for _, t in self.col.messages["/sig/occface/faces"] if t >= t_wall)

    def close(self):
        import rclpy

        self.running = False
        self.pump.join(2)
        self.executor.shutdown()
        self.spin.join(5)  # a handler still running would use the destroyed node
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


def _one_cycle(env, sig, wait_for_frames: bool, delay_s: float) -> dict:
    launched_wall = time.time()
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, "--ros-args", "-r", "__ns:=/sig", "-r", "__node:=occface",
                             "-p", "use_camera_info:=false", "-p", "mesh_max_triangles:=100"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out: list[str] = []
    reader = threading.Thread(target=lambda: [out.append(ln) for ln in proc.stdout], daemon=True)
    reader.start()
    try:
        t0 = time.monotonic()
        if wait_for_frames:  # frames flow: faces from this process came back
            while PUMP.faces_since(launched_wall) < 3 and proc.poll() is None and time.monotonic() - t0 < 60:
                time.sleep(0.02)
        time.sleep(max(0.0, t0 + delay_s - time.monotonic()) if not wait_for_frames else delay_s)
        phase = "frames flowing" if PUMP.faces_since(launched_wall) else (
            "ready, no frame back yet" if any("ready:" in ln for ln in out) else "start-up")
        at_s = time.monotonic() - t0
        t_sig = time.monotonic()
        proc.send_signal(sig)
        try:
            rc = proc.wait(10)
        except subprocess.TimeoutExpired:
            rc = None
        exit_s = time.monotonic() - t_sig
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    reader.join(5)
    return {"signal": signal.Signals(sig).name, "phase": phase, "at_s": round(at_s, 2), "rc": rc,
            "exit_s": round(exit_s, 3), "out": "".join(out)}


PUMP: FramePump | None = None


def test_signals_at_random_times_exit_0_within_1s(ros_env):
    import os

    global PUMP
    env = dict(os.environ, **ros_env)
    seed = random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    PUMP = FramePump()
    results = []
    try:
        for i in range(CYCLES):
            sig = (signal.SIGINT, signal.SIGTERM)[i % 2]
            if i % 4 < 2:  # start-up: imports, rclpy.init, parameters, the pipeline (ready after ~1-4 s here)
                results.append(_one_cycle(env, sig, False, rng.uniform(HANDLERS_AFTER_S, 2.5)))
            else:  # while the 30 Hz frames are answered
                results.append(_one_cycle(env, sig, True, rng.uniform(0.0, 0.5)))
    finally:
        PUMP.close()
        PUMP = None
    table = "\n".join(f"{r['signal']:7s} at {r['at_s']:5.2f} s ({r['phase']}): rc {r['rc']}, exit after {r['exit_s']} s"
                      for r in results)
    print(f"seed {seed}\n{table}")
    bad = [r for r in results if r["rc"] != 0 or "Traceback" in r["out"] or r["exit_s"] > EXIT_WITHIN_S]
    assert not bad, f"seed {seed}\n{table}\n--- first failure's output:\n{bad[0]['out'] if bad else ''}"
    assert sum(r["phase"] == "frames flowing" for r in results) >= CYCLES // 2
    assert any(r["phase"] == "start-up" for r in results)
