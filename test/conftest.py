import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def annotated_photos():
    from occface_ros.app.samples import load_annotated_photos

    return load_annotated_photos()


@pytest.fixture
def ros_env(monkeypatch, tmp_path) -> dict[str, str]:
    """Loopback-only DDS in a fresh random domain for one test (test/ros_support.py)."""
    from ros_support import use_loopback_dds

    return use_loopback_dds(monkeypatch, tmp_path)


CATEGORY_MARKERS = ("unit", "integration", "slow")  # pytest.ini


def pytest_collection_modifyitems(config, items):
    """A test file that sets none of the category markers counts as unit (say so with `pytestmark`)."""
    for item in items:
        if not any(item.get_closest_marker(name) for name in CATEGORY_MARKERS):
            item.add_marker(pytest.mark.unit)
