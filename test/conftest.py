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


def _train_photos(count: int):
    from occface_ros.training import photo_pool as pp

    try:
        photos = pp.training_photos()
    except pp.PoolNotFetchedError as exc:
        pytest.skip(f"photo pool not fetched: {exc}")
    # a fixed, varied handful: one single-face photo per identity
    chosen, seen = [], set()
    for p in photos:
        if len(p.identities) == 1 and p.identities[0] not in seen:
            chosen.append(p)
            seen.add(p.identities[0])
    return chosen[:count]


@pytest.fixture(scope="session")
def teacher():
    """Teacher faces (FaceMesh on clean photos) of a fixed handful of the pool's `train` photos."""
    from occface_ros.training.samples import teacher_faces

    faces = teacher_faces(_train_photos(12), progress=False)
    assert len(faces) >= 10  # FaceMesh finds the faces of clean photos
    return faces


CATEGORY_MARKERS = ("unit", "integration", "slow")  # pytest.ini


def pytest_collection_modifyitems(config, items):
    """A test file that sets none of the category markers counts as unit (say so with `pytestmark`)."""
    for item in items:
        if not any(item.get_closest_marker(name) for name in CATEGORY_MARKERS):
            item.add_marker(pytest.mark.unit)
