"""Loopback-only DDS for `occface bench-ros` and the ROS tests.

Loopback only: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, a random ROS_DOMAIN_ID and a Fast DDS
profile whose only transports are UDPv4 on 127.0.0.1 (discovery and small data; 4 MiB socket
buffers) and shared memory (host-local, no network interface; what carries the images between
processes: best-effort 1 MB images as ~15 UDP fragments are easily lost).
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


def loopback_env(domain_id: int | None = None, folder: str | Path | None = None, apply: bool = True) -> dict[str, str]:
    """Environment variables that keep DDS on 127.0.0.1 in a (random) domain; also set in os.environ
    unless `apply` is False. Set them before the process's first rclpy context: Fast DDS reads its
    profile once per process."""
    folder = Path(folder or tempfile.mkdtemp(prefix="occface_dds."))
    profile = folder / "fastdds_loopback.xml"
    profile.write_text(FASTDDS_LOOPBACK_XML)
    env = {
        "ROS_DOMAIN_ID": str(domain_id if domain_id is not None else random_domain_id()),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_LOCALHOST_ONLY": "0",  # deprecated in Kilted; the range above replaces it
        "FASTDDS_DEFAULT_PROFILES_FILE": str(profile),
        "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
    }
    if apply:
        os.environ.update(env)
    return env
