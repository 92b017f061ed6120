"""Loopback-only DDS for `occface bench-ros` and the ROS tests.

By default: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a Fast DDS profile whose only transports
are UDPv4 on 127.0.0.1 (discovery and small data; 4 MiB socket buffers) and shared memory
(host-local, no network interface; what carries the images between processes: best-effort 1 MB
images as ~15 UDP fragments are easily lost). The caller's environment is honoured: its
ROS_DOMAIN_ID (else a random one; the tests ask for a random one each), its
ROS_AUTOMATIC_DISCOVERY_RANGE (a range other than LOCALHOST also drops the loopback-only profile:
the caller asked for the network) and its RMW_IMPLEMENTATION. ROS_LOCALHOST_ONLY is left as it is.
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

FASTDDS_LOOPBACK_XML = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>udp_loopback</transport_id>
        <type>UDPv4</type>
        <interfaceWhiteList><address>127.0.0.1</address></interfaceWhiteList>
        <sendBufferSize>4194304</sendBufferSize>
        <receiveBufferSize>4194304</receiveBufferSize>
      </transport_descriptor>
      <transport_descriptor>
        <transport_id>shm_local</transport_id>
        <type>SHM</type>
        <segment_size>8388608</segment_size>
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="occface_loopback_only" is_default_profile="true">
      <rtps>
        <userTransports>
          <transport_id>shm_local</transport_id>
          <transport_id>udp_loopback</transport_id>
        </userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>
      </rtps>
    </participant>
  </profiles>
</dds>
"""


def random_domain_id() -> int:
    """A ROS domain id in 1..101 (0 is the default everyone shares; above 101 ports collide on Linux)."""
    return random.SystemRandom().randint(1, 101)  # not the global generator: test runners reseed it


DISCOVERY_RANGES = ("SUBNET", "LOCALHOST", "OFF", "SYSTEM_DEFAULT")  # rcl's values


class LoopbackEnvError(ValueError):
    """The caller's ROS environment has a value that DDS would reject or misread."""


def loopback_env(domain_id: int | None = None, folder: str | Path | None = None, apply: bool = True,
                 environ: dict[str, str] | None = None) -> dict[str, str]:
    """Environment variables for DDS on 127.0.0.1, honouring `environ` (default os.environ) as the
    module docstring says; `domain_id` overrides the environment's. Also set in os.environ unless
    `apply` is False. Set them before the process's first rclpy context: Fast DDS reads its profile
    once per process."""
    environ = os.environ if environ is None else environ
    if domain_id is None and environ.get("ROS_DOMAIN_ID", "").strip():
        text = environ["ROS_DOMAIN_ID"].strip()
        if not text.isdigit() or not 0 <= int(text) <= 232:
            raise LoopbackEnvError(f"ROS_DOMAIN_ID={text!r} is not a domain id (0..232)")
        domain_id = int(text)
    discovery = environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").strip().upper() or "LOCALHOST"
    if discovery not in DISCOVERY_RANGES:
        raise LoopbackEnvError(f"ROS_AUTOMATIC_DISCOVERY_RANGE={discovery!r} is not one of {', '.join(DISCOVERY_RANGES)}")
    env = {
        "ROS_DOMAIN_ID": str(domain_id if domain_id is not None else random_domain_id()),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": discovery,
        "RMW_IMPLEMENTATION": environ.get("RMW_IMPLEMENTATION", "").strip() or "rmw_fastrtps_cpp",
    }
    if discovery == "LOCALHOST":
        folder = Path(folder or tempfile.mkdtemp(prefix="occface_dds."))
        profile = folder / "fastdds_loopback.xml"
        profile.write_text(FASTDDS_LOOPBACK_XML)
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    if apply:
        os.environ.update(env)
    return env
