"""Bounded fuzz of occface-node's image input, as its own process on real rclpy (loopback DDS, random
domain) with the stand-in pipeline: hundreds of malformed sensor_msgs/Image messages (unsupported
encodings, steps shorter than a row, truncated buffers, zero sizes, huge claimed sizes, random
fields and bytes) interleaved with valid frames. The node stays up, never hands a malformed image
to the pipeline, logs one line per cause (not per frame), and answers every valid frame after the
fuzz on ~/faces; SIGINT still exits 0. The seed is printed (`-s`) and names a failing run."""
import os
import random
import signal
import string
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 wheels not installed (make ros)")
pytest.importorskip("occface_msgs.msg", reason="interfaces not built (tools/build_interfaces.sh)")

from ros_support import Collector  # noqa: E402

pytestmark = pytest.mark.integration

RUNNER = """
import sys
from occface_ros.ros.node import main

def fake_pipeline(config):
    from fakes import FakePipeline
    return FakePipeline(config)

sys.exit(main(pipeline_factory=fake_pipeline))
"""
NS = "/fz"
FACES = f"{NS}/occface/faces"
MALFORMED = 400
VALID_EVERY = 8  # a valid frame after every this many malformed ones
VALID_AFTER = 20  # valid frames after the fuzz, one at a time: every one must be answered
PACE_S = 0.004  # between two fuzz messages (~250 Hz)
ANSWER_WITHIN_S = 5.0
# image_conversion.py's causes -> the start of their messages (in the log line)
CAUSES = {"unsupported_encoding": "unsupported image encoding", "empty_image": "empty image", "wrong_step": "step ",
          "truncated_buffer": "data has "}
MAX_LOG_LINES = 12  # start-up, one line per cause, shutdown: never one per frame
SUPPORTED = {"rgb8": (3, 1), "bgr8": (3, 1), "rgba8": (4, 1), "bgra8": (4, 1), "mono8": (1, 1), "8UC1": (1, 1),
             "8UC3": (3, 1), "mono16": (1, 2), "16UC1": (1, 2)}  # encoding -> (channels, bytes per channel)
BOGUS = ["yuv422", "bayer_rggb8", "32FC1", "16UC3", "rgb16", "", "BGR8", "bgr8 ", "jpeg", "8UC4", "64FC1"]
U32 = 2 ** 32 - 1


def _image(h, w, enc, step, data, bigendian=0):
    from sensor_msgs.msg import Image

    return Image(height=h, width=w, encoding=enc, step=step, data=data, is_bigendian=bigendian)


def malformed(rng: random.Random):
    """(kind, Image) that no valid conversion exists for (kind "random": arbitrary fields, usually malformed)."""
    kind = rng.choice(["encoding", "zero_size", "short_step", "truncated", "huge", "random"])
    enc = rng.choice(list(SUPPORTED))
    ch, size = SUPPORTED[enc]
    h, w = rng.randint(1, 48), rng.randint(1, 48)
    row = w * ch * size
    if kind == "encoding":
        bad = rng.choice(BOGUS + ["".join(rng.choices(string.printable[:94], k=rng.randint(1, 24)))])
        return kind, _image(h, w, bad, w * 3, rng.randbytes(h * w * 3))
    if kind == "zero_size":
        h, w = rng.choice([(0, w), (h, 0), (0, 0)])
        return kind, _image(h, w, enc, rng.choice([0, row]), rng.randbytes(rng.randint(0, 64)))
    if kind == "short_step":
        return kind, _image(h, w, enc, rng.randint(0, row - 1), rng.randbytes(h * row))
    if kind == "truncated":
        step = row + rng.randint(0, 8)
        return kind, _image(h, w, enc, step, rng.randbytes(rng.randint(0, step * (h - 1) + row - 1)),
                            rng.randint(0, 1))
    if kind == "huge":
        hh, ww = rng.choice([(rng.randint(1 << 16, U32), w), (h, rng.randint(1 << 16, U32)),
                             (rng.randint(1 << 16, U32), rng.randint(1 << 16, U32))])
        step = rng.choice([ww * ch * size % (U32 + 1), U32, rng.randint(0, U32)])
        return kind, _image(hh, ww, enc, step, rng.randbytes(rng.randint(0, 256)))
    return kind, _image(rng.randint(0, 64), rng.randint(0, 64), rng.choice(list(SUPPORTED) + BOGUS),
                        rng.randint(0, 512), rng.randbytes(rng.randint(0, 8192)), rng.randint(0, 1))


def valid(rng: random.Random):
    """A bright 80x64 frame in one of the supported encodings (FakePipeline finds one face in it)."""
    from sensor_msgs.msg import Image

    from occface_ros.ros.image_conversion import fill_image_msg

    enc = rng.choice(["bgr8", "rgb8", "bgra8", "mono8", "mono16"])
    ch, size = SUPPORTED[enc]
    dtype = np.uint16 if size == 2 else np.uint8
    array = np.full((64, 80, ch) if ch > 1 else (64, 80), 128 * (257 if size == 2 else 1), dtype)
    return fill_image_msg(Image(), array, enc)


class Peer:
    """The test's node: publishes into the node's image topic, collects ~/faces and /diagnostics."""

    def __init__(self):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        from occface_msgs.msg import FaceArray
        from occface_ros.ros.occface_node import OUTPUT_QOS

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("fuzz_tester", context=self.ctx)
        self.col = Collector(self.node, {FACES: (FaceArray, OUTPUT_QOS), "/diagnostics": (DiagnosticArray, OUTPUT_QOS)})
        self.pub = self.node.create_publisher(Image, f"{NS}/image", qos_profile_sensor_data)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.spin = threading.Thread(target=self.executor.spin, daemon=True)
        self.spin.start()
        self.sec = 1000

    def publish(self, msg):
        self.sec += 1
        msg.header.stamp.sec, msg.header.frame_id = self.sec, "fz_optical"
        self.pub.publish(msg)
        return self.sec

    def answered(self, secs) -> set[int]:
        with self.col.cond:
            return {m.header.stamp.sec for m, _ in self.col.messages[FACES]} & set(secs)

    def wait_answer(self, sec, timeout_s=ANSWER_WITHIN_S) -> bool:
        return self.col.wait_for(lambda m: any(x.header.stamp.sec == sec for x, _ in m[FACES]), timeout_s)

    def close(self):
        import rclpy

        self.executor.shutdown()
        self.spin.join(5)  # a handler still running would use the destroyed node
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


def _values(diag_msgs) -> dict[str, str]:
    """The key/values of the newest `input` and `processing` statuses, merged."""
    for d in reversed(diag_msgs):
        names = {s.name.rsplit(": ", 1)[-1]: s for s in d.status}
        if {"input", "processing"} <= set(names):
            return {kv.key: kv.value for s in names.values() for kv in s.values}
    return {}


def test_malformed_images_interleaved_with_valid_ones(ros_env):
    seed = random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, "--ros-args", "-r", f"__ns:={NS}", "-r", "__node:=occface",
         "-p", "use_camera_info:=false", "-p", "mesh_max_triangles:=100", "-p", "diagnostics.period_s:=0.5",
         "-p", "diagnostics.input_rate_warn_hz:=0.0", "-p", "diagnostics.drop_ratio_warn:=0.0",
         "-p", "diagnostics.drop_ratio_error:=0.0"],
        env=dict(os.environ, **ros_env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out: list[str] = []
    threading.Thread(target=lambda: [out.append(ln) for ln in proc.stdout], daemon=True).start()
    tester = Peer()
    try:
        deadline = time.monotonic() + 60
        while tester.pub.get_subscription_count() == 0:
            assert proc.poll() is None and time.monotonic() < deadline, "node did not come up:\n" + "".join(out)
            time.sleep(0.05)
        assert any(tester.wait_answer(tester.publish(valid(rng))) for _ in range(3)), "".join(out)

        kinds: dict[str, int] = {}
        valid_during = []
        t_fuzz = time.time()
        t_next = time.monotonic()
        for k in range(MALFORMED):
            kind, msg = malformed(rng)
            kinds[kind] = kinds.get(kind, 0) + 1
            tester.publish(msg)
            if k % VALID_EVERY == VALID_EVERY - 1:
                valid_during.append(tester.publish(valid(rng)))
            t_next += PACE_S
            time.sleep(max(0.0, t_next - time.monotonic()))
        fuzz_s = time.time() - t_fuzz
        assert proc.poll() is None, "node died during the fuzz:\n" + "".join(out)

        time.sleep(0.5)
        unanswered = []
        for _ in range(VALID_AFTER):  # one at a time: each must come back
            sec = tester.publish(valid(rng))
            if not tester.wait_answer(sec):
                unanswered.append(sec)
        during = len(tester.answered(valid_during))
        time.sleep(1.0)  # one more /diagnostics period with the totals
        with tester.col.cond:
            diags = [(d, t) for d, t in tester.col.messages["/diagnostics"]]
        values = _values([d for d, _ in diags])
        sent = tester.sec - 1000
        in_fuzz = sum(1 for _, t in diags if t_fuzz <= t <= t_fuzz + fuzz_s)
        alive = proc.poll() is None
        t_sig = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(10)
        exit_s = time.monotonic() - t_sig
    finally:
        tester.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    log = [ln for ln in "".join(out).splitlines() if ln.strip()]
    image_lines = [ln.split(f"{NS}/image: ", 1)[-1] for ln in log if "cannot use image" in ln]
    cause_lines = {c: sum(ln.startswith(text) for ln in image_lines) for c, text in CAUSES.items()}
    print(f"seed {seed}: {MALFORMED} malformed {kinds} in {fuzz_s:.2f} s, {len(valid_during)} valid among them "
          f"({during} answered), {VALID_AFTER - len(unanswered)}/{VALID_AFTER} after; node counted "
          f"received {values.get('received_total')}/{sent}, image errors {values.get('image_errors_total')}, "
          f"dropped {values.get('dropped_total')}, processed {values.get('processed_total')}; "
          f"{in_fuzz} /diagnostics during the fuzz; {len(log)} log lines; exit {rc} after {exit_s:.2f} s")
    context = f"seed {seed}\n" + "\n".join(log)
    assert alive and rc == 0, context
    assert not unanswered, f"valid frames after the fuzz not answered: {unanswered}\n{context}"
    assert during >= 1, context  # valid frames amid the fuzz are served (newest frame wins: not all of them)
    # the frames reached the node; each one received was rejected, dropped (newest frame wins) or
    # processed: none lost inside it, and the malformed ones never got to the pipeline
    received, errors, dropped, processed = (int(values[k]) for k in (
        "received_total", "image_errors_total", "dropped_total", "processed_total"))
    # best-effort (sensor-data) DDS may lose messages before the node takes them when the CPU is busy
    # (measured: 59 % of them reached the node with a training job on the same 2 cores)
    assert received >= 0.3 * sent and errors >= MALFORMED // 10, (values, context)
    assert received == errors + dropped + processed, (values, context)
    assert len(image_lines) == len(CAUSES) and all(n == 1 for n in cause_lines.values()), (cause_lines, context)
    assert not any("failed in the pipeline" in ln or "Traceback" in ln for ln in log), context
    assert len(log) <= MAX_LOG_LINES, context
    assert in_fuzz <= fuzz_s / 0.5 + 3, f"{in_fuzz} /diagnostics in {fuzz_s:.1f} s\n{context}"  # no flood
