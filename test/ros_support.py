"""ROS test support: loopback-only DDS for a test or a module, and `Collector` (keeps what a node publishes)."""
from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

TEST_DIR = Path(__file__).resolve().parent


def use_loopback_dds(monkeypatch, folder: Path) -> dict[str, str]:
    """Loopback-only DDS in a fresh random domain, set in os.environ through `monkeypatch` (restored
    when it undoes) and returned for the node processes a test starts, with test/ (fakes.py) and the
    repository on their PYTHONPATH."""
    from occface_ros.ros.loopback import loopback_env, random_domain_id

    # a domain of its own even when the shell has ROS_DOMAIN_ID (bench-ros would join that one)
    env = loopback_env(domain_id=random_domain_id(), folder=folder, apply=False)
    env["PYTHONPATH"] = os.pathsep.join([str(TEST_DIR), str(TEST_DIR.parent), *sys.path])
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


class Collector:
    """Subscribes to topics on a node and keeps (message, receipt wall time) per topic."""

    def __init__(self, node, topics: dict[str, tuple[type, object]]):
        self.node = node
        self.messages: dict[str, list] = {t: [] for t in topics}
        self.cond = threading.Condition()
        self.subs = [node.create_subscription(typ, topic, self._cb(topic), qos) for topic, (typ, qos) in topics.items()]

    def _cb(self, topic):
        def cb(msg):
            with self.cond:
                self.messages[topic].append((msg, time.time()))
                self.cond.notify_all()
        return cb

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.1))
        return True

    def clear(self):
        with self.cond:
            for v in self.messages.values():
                v.clear()
