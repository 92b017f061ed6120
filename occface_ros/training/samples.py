"""The training-data engine's samples: face crops at the landmark network's input size, occluded,
with the labels of the whole face.

Sources (`SampleConfig.sources`):
- `composite`: a `train` photo of the pool (training/photo_pool.py) cropped around one of its faces
  with a jittered ROI (rotation, scale, shift), photometrically augmented, with 0..n occluders of
  training/occluders.py. Labels come from the teacher: FaceMesh on the CLEAN photo (the tracker's
  refined ROI), mapped into the crop by the crop's affine map, so the label of an occluded sample
  is what FaceMesh says of the unoccluded face;
- `render`: a head rendered by training/heads.py (ICT model, textures from `train` photos, wide
  pose range) cropped like a photo; labels exact (`render_fraction` of the face samples, when the
  engine is given a renderer);
- `negative`: a crop without a face (photo regions away from every face, or a face detector's false
  alarm there: training/hard_negatives.py; occluders on them): presence 0, no landmark loss.

With `parsing_labels`, each sample also carries the visible face's parsing (core/labels.py): the
regions of the face from its 68 points (composites: a geometric estimate, render/parsing.py) or of
the rendered mesh (exact), OCCLUDER wherever an occluder covers, BACKGROUND elsewhere.

Every sample is a function of (seed, index): `SampleEngine(faces, config).sample(index)` is
reproducible and independent of worker count or order.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from ..landmarks.correspondence import landmarks68_from_mp468

INPUT_SIZE = 192
IBUG_RIGHT_EYE_OUTER, IBUG_LEFT_EYE_OUTER = 36, 45  # NME normaliser: outer eye corners


@dataclass
class TeacherFace:
    """One face of a training photo as FaceMesh sees it unoccluded."""

    photo_id: str
    identity: str
    image_bgr: np.ndarray  # the whole photo
    roi: np.ndarray  # (4,) cx, cy, side, angle: the tracker's refined ROI
    landmarks468: np.ndarray  # (468, 3) image pixels
    presence: float
    faces_in_photo: int  # faces the manifest counts in the photo (the teacher may find fewer)
    landmarks68_label: np.ndarray | None = None  # (68, 2) a dataset's human annotation (image pixels)


@dataclass
class SampleConfig:
    """Augmentation and mixing of the engine (one YAML under config/training/ sets it)."""

    seed: int = 0
    negative_fraction: float = 0.08
    clean_fraction: float = 0.2  # samples without any occluder (keep the clean behaviour)
    max_occluders: int = 3
    scale_range: tuple[float, float] = (0.85, 1.25)  # ROI side x this
    shift_fraction: float = 0.08  # ROI centre moved by up to this x side
    angle_std_deg: float = 12.0
    grey_fraction: float = 0.1
    blur_fraction: float = 0.15
    noise_std_max: float = 6.0
    jpeg_fraction: float = 0.3
    visibility_threshold: float = 0.5  # a landmark under occluder alpha >= this is hidden
    render_fraction: float = 0.0  # face samples from rendered heads (needs a HeadRenderer)
    hard_negative_fraction: float = 0.0  # negatives cut at a detector's false alarm (training/hard_negatives.py)
    scene_fraction: float = 0.0  # of the other negatives: a random crop of a scene without a face
    parsing_labels: bool = False  # also label each pixel (core/labels.py) for the parser

    @classmethod
    def from_dict(cls, d: dict) -> SampleConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown sample config keys {sorted(unknown)}; known: {sorted(known)}")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**d)


@dataclass
class Sample:
    image: np.ndarray  # (192, 192, 3) uint8 BGR, the network input (occluded)
    clean: np.ndarray  # (192, 192, 3) uint8 BGR, the same crop without occluders
    landmarks468: np.ndarray  # (468, 3) float32 crop pixels (teacher, whole face)
    visible468: np.ndarray  # (468,) bool
    occluder_alpha: np.ndarray  # (192, 192) float32
    presence: float  # 1 face, 0 no face
    kinds: list[str] = field(default_factory=list)
    landmark_weight468: np.ndarray | None = None  # (468,) float32 label confidence (None: all 1)
    depth_label: bool = True  # z is the teacher's (rendered heads: a different depth origin, not trained)
    source: str = "composite"  # composite | render | negative
    parsing: np.ndarray | None = None  # (192, 192) uint8 labels of the visible face (`parsing_labels`)
    landmarks68: np.ndarray | None = None  # (68, 2) float32 crop pixels: a human annotation, when the face has one
    parsing_complete: np.ndarray | None = None  # (192, 192) uint8 labels of the whole face, occluders ignored


def crop_affine(roi: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """(2, 3) map from image pixels to crop pixels for an ROI (cx, cy, side, angle) (core/roi.py's
    convention: the crop's unit square maps to the rotated square)."""
    cx, cy, side, angle = (float(v) for v in roi)
    c, s = math.cos(angle), math.sin(angle)
    # image = centre + side * R(angle) (q - 0.5), q = crop / size  ->  crop = size * (R^T (image - centre) / side + 0.5)
    k = size / side
    m = np.array([[c * k, s * k, 0.0], [-s * k, c * k, 0.0]])
    m[:, 2] = size * 0.5 - m[:, :2] @ np.array([cx, cy])
    return m


def _to_crop(points: np.ndarray, affine: np.ndarray, side: float, size: int) -> np.ndarray:
    xy = points[:, :2] @ affine[:, :2].T + affine[:, 2]
    out = np.concatenate([xy, points[:, 2:3] * (size / side)], 1) if points.shape[1] > 2 else xy
    return out.astype(np.float32)


def _visible_parsing(parsing: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The visible face's labels: OCCLUDER wherever an occluder covers (alpha >= 0.5)."""
    from ..core.labels import OCCLUDER

    out = parsing.copy()
    out[alpha >= 0.5] = OCCLUDER
    return out


def faces_by_photo(faces: list[TeacherFace]) -> list[list[TeacherFace]]:
    """The faces grouped by photo, in first-seen order."""
    by_photo: dict[str, list[TeacherFace]] = {}
    for f in faces:
        by_photo.setdefault(f.photo_id, []).append(f)
    return list(by_photo.values())


def complete_photos(faces: list[TeacherFace]) -> list[list[TeacherFace]]:
    """`faces_by_photo` for the photos whose every face the teacher found: anything else in them is
    not a face."""
    return [fs for fs in faces_by_photo(faces) if len(fs) >= fs[0].faces_in_photo]


def iod_px(landmarks68: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks68[IBUG_LEFT_EYE_OUTER] - landmarks68[IBUG_RIGHT_EYE_OUTER]))


class SampleEngine:
    """Training samples from teacher faces (see the module docstring)."""

    def __init__(self, faces: list[TeacherFace], config: SampleConfig | None = None, heads=None,
                 hard_negatives: list | None = None, scenes: list | None = None):
        if not faces:
            raise ValueError("the sample engine needs at least one teacher face")
        self.faces = faces
        self.config = config or SampleConfig()
        self.heads = heads  # training/heads.HeadRenderer, or None: no rendered samples
        self.hard_negatives = hard_negatives or []  # training/hard_negatives.NegativeRoi
        self.scenes = scenes or []  # (id, BGR image) without a face: photo_pool.scenes_without_faces
        # where a face's 68 points sit in its own (unjittered) crop, on average: occluders of the
        # negatives are placed as if a face were there
        self.complete_photos = complete_photos(faces)  # negatives are cut from these only
        self.mean_landmarks68 = np.mean([landmarks68_from_mp468(
            _to_crop(f.landmarks468, crop_affine(f.roi), f.roi[2], INPUT_SIZE)[:, :2]) for f in faces], 0)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, index])

    def sample(self, index: int) -> Sample:
        rng = self.rng(index)
        cfg = self.config
        if rng.random() < cfg.negative_fraction:
            return self._negative(rng)
        head = None
        if self.heads is not None and rng.random() < cfg.render_fraction:
            from .heads import RENDER_SIZE

            head = self.heads.render(rng, self._background(rng, RENDER_SIZE))
            source_image, source_roi, source_lm = head.image_bgr, head.roi, head.landmarks468
        else:
            face = self.faces[int(rng.integers(len(self.faces)))]
            source_image, source_roi, source_lm = face.image_bgr, face.roi, face.landmarks468
        roi = self._jittered_roi(source_roi, rng)
        affine = crop_affine(roi)
        clean = cv2.warpAffine(source_image, affine, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT101)
        lm468 = _to_crop(source_lm, affine, roi[2], INPUT_SIZE)
        clean = self._photometric(clean, rng)
        image, alpha, kinds = clean, np.zeros((INPUT_SIZE, INPUT_SIZE), np.float32), []
        if rng.random() >= cfg.clean_fraction:
            from .occluders import occlude

            occ = occlude(clean, landmarks68_from_mp468(lm468[:, :2]), rng, max_occluders=cfg.max_occluders)
            image, alpha, kinds = occ.image_bgr, occ.alpha, list(occ.kinds)
        image = self._degrade(image, rng)
        visible = self._visible(lm468, alpha)
        parsing = None
        if cfg.parsing_labels:
            if head is None:  # the face's regions from its 68 points: a geometric estimate
                from ..render.parsing import landmark_parsing

                parsing = landmark_parsing([landmarks68_from_mp468(lm468[:, :2])], INPUT_SIZE, INPUT_SIZE)
            else:  # exact: the rendered mesh's regions
                parsing = cv2.warpAffine(head.parsing, affine, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_NEAREST,
                                         borderMode=cv2.BORDER_REFLECT101)
            complete, parsing = parsing, _visible_parsing(parsing, alpha)
        else:
            complete = None
        if head is None:
            human68 = (_to_crop(face.landmarks68_label, affine, roi[2], INPUT_SIZE)
                       if face.landmarks68_label is not None else None)
            return Sample(image, clean, lm468, visible, alpha, 1.0, kinds, parsing=parsing, landmarks68=human68,
                          parsing_complete=complete)
        return Sample(image, clean, lm468, visible & head.self_visible468, alpha, 1.0, kinds,
                      head.label_weight468, depth_label=False, source="render", parsing=parsing,
                      parsing_complete=complete)

    def _jittered_roi(self, roi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        cx, cy, side, angle = (float(v) for v in roi)
        side *= rng.uniform(*cfg.scale_range)
        cx += rng.uniform(-1, 1) * cfg.shift_fraction * side
        cy += rng.uniform(-1, 1) * cfg.shift_fraction * side
        angle += math.radians(rng.normal(0.0, cfg.angle_std_deg))
        return np.array([cx, cy, side, angle])

    def _visible(self, lm468: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        xy = np.clip(np.round(lm468[:, :2]).astype(int), 0, INPUT_SIZE - 1)
        inside = ((lm468[:, 0] >= 0) & (lm468[:, 0] < INPUT_SIZE) & (lm468[:, 1] >= 0) & (lm468[:, 1] < INPUT_SIZE))
        return inside & (alpha[xy[:, 1], xy[:, 0]] < self.config.visibility_threshold)

    def _negative(self, rng: np.random.Generator) -> Sample:
        """A crop with no face (presence 0; occluders on it half the time): a detector's false alarm,
        a random crop of a scene without a face, or a region of a photo whose faces the teacher all
        found, inside the image and clear of every face; else a procedural texture."""
        size = INPUT_SIZE
        if self.hard_negatives and rng.random() < self.config.hard_negative_fraction:
            negative = self.hard_negatives[int(rng.integers(len(self.hard_negatives)))]
            crop = cv2.warpAffine(negative.image_bgr, crop_affine(self._jittered_roi(negative.roi, rng), size),
                                  (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        elif self.scenes and self.config.scene_fraction > 0 and rng.random() < self.config.scene_fraction:
            crop = self._scene_crop(rng, size)
        else:
            crop = self._background(rng, size)
        crop = self._photometric(crop, rng)
        alpha = np.zeros((size, size), np.float32)
        kinds: list[str] = []
        if rng.random() < 0.5:  # occluders without a face (a hand alone is not a face)
            from .occluders import occlude

            centre = self.mean_landmarks68.mean(0)
            fake68 = (self.mean_landmarks68 - centre) * rng.uniform(0.6, 1.0) + centre
            occ = occlude(crop, fake68, rng, max_occluders=1)
            crop, alpha, kinds = occ.image_bgr, occ.alpha, list(occ.kinds)
        crop = self._degrade(crop, rng)
        zeros = np.zeros((468, 3), np.float32)
        parsing = _visible_parsing(np.zeros((size, size), np.uint8), alpha) if self.config.parsing_labels else None
        return Sample(crop, crop.copy(), zeros, np.zeros(468, bool), alpha, 0.0, kinds, source="negative",
                      parsing=parsing, parsing_complete=np.zeros((size, size), np.uint8) if parsing is not None else None)

    def _scene_crop(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """A (size, size) crop of a scene without a face: 10-70 % of its short side, turned as the
        face crops are (`angle_std_deg`), inside the image."""
        image = self.scenes[int(rng.integers(len(self.scenes)))][1]
        h, w = image.shape[:2]
        side = float(rng.uniform(0.1, 0.7) * min(h, w))
        half = side / math.sqrt(2.0)  # a turned square stays inside the image
        roi = np.array([rng.uniform(half, w - half), rng.uniform(half, h - half), side,
                        math.radians(rng.normal(0.0, self.config.angle_std_deg))])
        return cv2.warpAffine(image, crop_affine(roi, size), (size, size), flags=cv2.INTER_AREA,
                              borderMode=cv2.BORDER_REFLECT101)

    def _background(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """A (size, size) crop without a face: a region of a photo whose faces the teacher all found,
        inside the image and clear of every face; else smooth coloured noise."""
        if self.complete_photos:
            faces = self.complete_photos[int(rng.integers(len(self.complete_photos)))]
            image = faces[0].image_bgr
            h, w = image.shape[:2]
            side = float(rng.uniform(0.5, 1.5) * faces[0].roi[2])
            for _ in range(20):
                half = side / math.sqrt(2.0)  # a rotated square stays inside the image
                if w < 2 * half or h < 2 * half:
                    side *= 0.7
                    continue
                cx, cy = rng.uniform(half, w - half), rng.uniform(half, h - half)
                if all(math.hypot(cx - f.roi[0], cy - f.roi[1]) > 0.75 * (side + f.roi[2]) for f in faces):
                    roi = np.array([cx, cy, side, rng.uniform(-math.pi, math.pi)])
                    return cv2.warpAffine(image, crop_affine(roi, size), (size, size), borderMode=cv2.BORDER_REFLECT101)
        low = rng.uniform(0, 255, (4, 4, 3)).astype(np.float32)
        crop = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
        return np.clip(crop + rng.normal(0, 12, crop.shape), 0, 255).astype(np.uint8)

    def _photometric(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Exposure, contrast, white balance, gamma (the clean and occluded images share it)."""
        img = image.astype(np.float32) / 255.0
        img = img * rng.uniform(0.6, 1.4) * rng.uniform(0.85, 1.15, size=3)
        mean = img.mean()
        img = (img - mean) * rng.uniform(0.7, 1.3) + mean
        img = np.clip(img, 0, 1) ** rng.uniform(0.7, 1.4)
        if rng.random() < self.config.grey_fraction:
            img = np.repeat(img.mean(-1, keepdims=True), 3, -1)
        return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)

    def _degrade(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sensor and transport: blur, noise, JPEG."""
        cfg = self.config
        if rng.random() < cfg.blur_fraction:
            image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.8))
        sigma = rng.uniform(0, cfg.noise_std_max)
        if sigma > 0.5:
            noise = rng.normal(0, sigma, image.shape).astype(np.float32)
            image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        if rng.random() < cfg.jpeg_fraction:
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])
            image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return image


def teacher_faces(photos, config: dict | None = None, progress: bool = True) -> list[TeacherFace]:
    """FaceMesh (the project's tracker, refined ROIs, no occlusion stage) on each clean photo."""
    from tqdm import tqdm

    from ..config import load_config
    from ..core.roi import FrameImage
    from ..pipeline import FacePipeline

    cfg = config or load_config(overrides={"occlusion": {"enabled": False}, "detection": {"max_faces": 8}})
    pipe = FacePipeline(cfg)
    faces = []
    for photo in tqdm(photos, desc="teacher (FaceMesh on clean photos)", unit="photo", disable=not progress):
        pipe.reset()
        tracked = pipe.tracker(FrameImage(photo.image_bgr, pipe.device))
        for i in range(len(tracked.track_ids)):
            identity = photo.identities[i] if i < len(photo.identities) else photo.identities[0]
            faces.append(TeacherFace(photo.id, identity, photo.image_bgr, tracked.rois[i].numpy().astype(np.float64),
                                     tracked.landmarks468[i].numpy().astype(np.float32), float(tracked.presence[i]),
                                     max(len(photo.identities), 1)))
    return faces


def annotated_teacher_faces(annotated, config: dict | None = None, progress: bool = True,
                            max_nme: float = 0.25) -> tuple[list[TeacherFace], int]:
    """Teacher faces for a public dataset's annotated faces (training/datasets.py): FaceMesh on the
    image gives the ROI and the 468 points, the dataset's 68 points ride along as a human label.
    A face the teacher does not find within `max_nme` (IOD-normalised) of its annotation is left
    out. Returns (faces, number left out)."""
    from tqdm import tqdm

    from ..config import load_config
    from ..core.roi import FrameImage
    from ..pipeline import FacePipeline

    cfg = config or load_config(overrides={"occlusion": {"enabled": False}, "detection": {"max_faces": 8}})
    pipe = FacePipeline(cfg)
    faces, left_out = [], 0
    for a in tqdm(annotated, desc="teacher (FaceMesh on dataset images)", unit="face", disable=not progress):
        if a.landmarks68 is None:
            left_out += 1
            continue
        image = a.load_image()
        pipe.reset()
        tracked = pipe.tracker(FrameImage(image, pipe.device))
        best, best_err = None, max_nme
        for i in range(len(tracked.track_ids)):
            lm468 = tracked.landmarks468[i].numpy().astype(np.float32)
            err = float(np.linalg.norm(landmarks68_from_mp468(lm468[:, :2]) - a.landmarks68, axis=1).mean()
                        / max(iod_px(a.landmarks68), 1.0))
            if err < best_err:
                best, best_err = i, err
        if best is None:
            left_out += 1
            continue
        faces.append(TeacherFace(f"{a.source}:{a.image_path.name}", f"{a.source}:{a.identity}", image,
                                 tracked.rois[best].numpy().astype(np.float64),
                                 tracked.landmarks468[best].numpy().astype(np.float32),
                                 float(tracked.presence[best]), len(tracked.track_ids),
                                 a.landmarks68.astype(np.float32)))
    return faces, left_out


def validation_identity(identity: str, fraction: float, seed: int = 0) -> bool:
    """Whether a `train` identity is held out for validation (seeded hash: stable across runs)."""
    h = int(hashlib.sha256(f"{seed}:{identity}".encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


def collate(samples: list[Sample]) -> dict[str, torch.Tensor]:
    """Samples -> the network's batch: (B, 3, 192, 192) float RGB [0, 1] and the targets."""
    images = np.stack([s.image for s in samples])[..., ::-1]
    return {
        "image": torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0,
        "landmarks468": torch.from_numpy(np.stack([s.landmarks468 for s in samples])),
        "visible468": torch.from_numpy(np.stack([s.visible468 for s in samples])),
        "presence": torch.tensor([s.presence for s in samples], dtype=torch.float32),
        "landmark_weight468": torch.from_numpy(np.stack([
            s.landmark_weight468 if s.landmark_weight468 is not None else np.ones(468, np.float32) for s in samples])),
        "depth_weight": torch.tensor([float(s.depth_label) for s in samples], dtype=torch.float32),
        "landmarks68": torch.from_numpy(np.stack([
            s.landmarks68 if s.landmarks68 is not None else np.zeros((68, 2), np.float32) for s in samples])),
        "has_landmarks68": torch.tensor([s.landmarks68 is not None for s in samples]),
    }
