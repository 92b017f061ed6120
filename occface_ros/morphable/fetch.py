"""Download ICT-FaceKit's FaceXModel OBJs from GitHub and pack them (`occface models fetch`).

    fetch_ict(dest_dir)  ->  dest_dir/ict_face_light.npz   (default dest: cache_dir()/models)

Files come from the raw URLs of https://github.com/ICT-VGL/ICT-FaceKit (MIT license), folder
FaceXModel/: generic_neutral_mesh.obj, identity000..099.obj and the 53 expression OBJs. The
download goes to a temporary folder, the converter (`ict_obj.convert_ict_folder`) packs it and
writes the npz atomically; the OBJs are deleted afterwards.
"""
from __future__ import annotations

import shutil
import tempfile
import urllib.request
from pathlib import Path

from ..paths import cache_dir
from .ict_obj import NEUTRAL_NAME, convert_ict_folder, ict_tables

ICT_REPO = "ICT-VGL/ICT-FaceKit"
ICT_REF = "master"
RAW_BASE = f"https://raw.githubusercontent.com/{ICT_REPO}/{ICT_REF}/FaceXModel/"
LFS_BASE = f"https://media.githubusercontent.com/media/{ICT_REPO}/{ICT_REF}/FaceXModel/"
NUM_IDENTITY = 100
ICT_NPZ_NAME = "ict_face_light.npz"


def ict_file_names(num_identity: int = NUM_IDENTITY) -> list[str]:
    """The FaceXModel file names needed: neutral, identities, expressions (basis order)."""
    names = [NEUTRAL_NAME] + [f"identity{k:03d}.obj" for k in range(num_identity)]
    return names + [f"{n}.obj" for n in ict_tables()["expression_names"]]


def ict_urls(num_identity: int = NUM_IDENTITY, base: str = RAW_BASE) -> list[tuple[str, str]]:
    """[(file name, URL)] of every file `fetch_ict` downloads."""
    return [(n, base + n) for n in ict_file_names(num_identity)]


def download(url: str, dest: Path, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download one URL to dest (via dest.part, renamed when complete), with a tqdm bar.

    A Git-LFS pointer (the file is stored in LFS) is retried once from media.githubusercontent.com.
    """
    part = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as f:
        total = int(resp.headers.get("Content-Length") or 0) or None
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False)
        while chunk := resp.read(1 << 16):
            f.write(chunk)
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
    if url.startswith(RAW_BASE) and part.read_bytes()[:40].startswith(b"version https://git-lfs"):
        part.unlink()
        return download(LFS_BASE + url[len(RAW_BASE):], dest, progress, timeout)
    part.replace(dest)
    return dest


def pack_ict(obj_dir: str | Path, dest_dir: str | Path | None = None, progress: bool = True,
             num_identity: int | None = NUM_IDENTITY, **kwargs) -> Path:
    """Convert a folder of downloaded FaceXModel OBJs into dest_dir/ict_face_light.npz."""
    dest_dir = Path(dest_dir) if dest_dir is not None else cache_dir() / "models"
    return convert_ict_folder(obj_dir, dest_dir / ICT_NPZ_NAME, num_identity=num_identity,
                              progress=progress, **kwargs)


def fetch_ict(dest_dir: str | Path | None = None, progress: bool = True,
              num_identity: int = NUM_IDENTITY, keep_objs: bool = False) -> Path:
    """Download the ICT-FaceKit FaceXModel OBJs and pack them; returns the npz path.

    Default dest_dir: cache_dir()/models (where `load_morphable_model("ict")` looks).
    """
    dest_dir = Path(dest_dir) if dest_dir is not None else cache_dir() / "models"
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ict_objs.", dir=dest_dir))
    try:
        urls = ict_urls(num_identity)
        it = urls
        if progress:
            from tqdm import tqdm

            it = tqdm(urls, desc="ICT-FaceKit", unit="file")
        for name, url in it:
            download(url, tmp / name, progress=progress)
        out = pack_ict(tmp, dest_dir, progress=progress, num_identity=num_identity)
        if keep_objs:
            shutil.copytree(tmp, dest_dir / "FaceXModel", dirs_exist_ok=True)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
