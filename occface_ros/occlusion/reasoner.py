"""OcclusionReasoner: fitted faces + image -> M_beta, M_alpha, M_gamma, occlusion mask, visibility.

One callable stage per frame, batched over the faces of the frame (docs/occlusion.md):

1. M_beta (complete parsing): the fitted meshes' labelled face triangles (render/regions.py)
   rasterized together with one z-buffer (faces may hide each other). When the parser's weights
   have a complete-face head, `parser.face_region` says which pixels are face: `fit` (the
   rendered faces), `parser` (the pixels whose complete-face probability reaches
   `parser.complete_face_threshold`, as SKIN of the face most likely there where the fit is not:
   under an occluder the fit is often smaller than the face, and the occluder beyond its rim is
   then in no mask; a fitted pixel off it that the parser does not see as face is no face either:
   the fit's rim beyond the face, over background or hair) or `both` (as `parser`, but such a
   fitted pixel stays face, occluded, where the parser sees an occluder on it or where they form
   a region wider than the rim band, `parser.rim_fraction` of the face size: an occluder the
   parser took for the face's edge).
2. Evidence that a rendered face pixel shows the face, each a likelihood in [0, 1]:
   hands (palm detection + hand landmarks -> hand silhouettes: likelihood 0 inside),
   appearance (the track's texture x SH lighting explains the pixel, FOCUS-style),
   the learned parser's face probability when weights are configured.
3. M_alpha (visible parsing), the combination rule: a pixel of M_beta's face region keeps its
   M_beta label when the PRODUCT of the enabled likelihoods is >= `visible_threshold`, else it is
   OCCLUDER; a hand pixel anywhere is OCCLUDER; the parser's hair off the face is HAIR; the rest
   is BACKGROUND. (A product = every piece of evidence must agree the face is seen: each source
   detects occluders the others miss: skin-coloured hands for the hand model, glasses/masks/
   cups for appearance.)
4. M_gamma = Algorithm 1 (algorithm1.py); occlusion mask = face in M_beta and not in M_alpha.
5. Visibility of 2-D points (landmarks, dense fitting points): occluded when the occlusion mask
   is within `probe_radius_px` of the point (points on the face rim are tested too).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import torch
import torch.nn.functional as F

from ..core.camera import project_points, transform_points
from ..core.roi import resize_area, rois_to_boxes
from .hand_silhouettes import hand_mask as hand_silhouettes, palm_size_px
from ..morphable.model import VertexSubset
from ..render.parsing import render_parsing
from ..render.raster import rasterize
from ..render.regions import face_regions
from ..core import labels as L
from .algorithm1 import merge_parsing_maps, occlusion_mask
from .appearance.lighting import shade
from .appearance.surface import surface_attributes


def _morphology(mask: torch.Tensor, radius: int, opening: bool = False) -> torch.Tensor:
    """(H, W) bool dilated (or opened: eroded, then dilated) by a (2 radius + 1) square; outside the
    image counts as neither. cv2 on the CPU (~20x faster than max_pool2d there)."""
    if mask.device.type == "cpu":
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * radius + 1, 2 * radius + 1))
        out = cv2.morphologyEx(mask.to(torch.uint8).numpy(), cv2.MORPH_OPEN if opening else cv2.MORPH_DILATE, kernel)
        return torch.from_numpy(out).bool()
    pool = lambda x: F.max_pool2d(x[None, None], 2 * radius + 1, stride=1, padding=radius)[0, 0]  # noqa: E731
    x = mask.float()
    if opening:
        x = 1.0 - pool(1.0 - x)
    return pool(x) > 0


@dataclass
class OcclusionResult:
    """Per-frame output of OcclusionReasoner (tensors on the pipeline's device).

    The reasoning runs in a window of the input image (`window`, input pixels x0, y0, x1, y1)
    resampled by `scale`; `upsample` brings the maps to the whole input image (the work maps stay
    in `work_*`)."""

    m_alpha: torch.Tensor  # (H, W) uint8 visible parsing
    m_beta: torch.Tensor  # (H, W) uint8 complete parsing of the fitted faces
    m_gamma: torch.Tensor  # (H, W) uint8 Algorithm 1
    occlusion_mask: torch.Tensor  # (H, W) bool
    face_index: torch.Tensor  # (H, W) int64: which face (row of the batch) a face pixel belongs to, -1 none
    face_likelihood: torch.Tensor  # (h, w) float combined evidence in the window (1 off the face)
    hand_mask: torch.Tensor | None  # (H, W) bool or None when hands are off
    occlusion_ratio: torch.Tensor  # (B,) occluded / face pixels per face
    region_pixels: torch.Tensor  # (B, R, 2) int64 (occluded, total) per FACE_LABELS region
    deoccluded: torch.Tensor | None = None  # (3, H, W) float RGB when requested
    deoccluded_learned: torch.Tensor | None = None  # (B,) when requested: fraction of each face's occluded
    # pixels the track's texture has learned (confidence >= texture_full_confidence); the rest of the
    # de-occluded face shows only the shaded skin reference
    scale: tuple[float, float] = (1.0, 1.0)  # work window pixels per input pixel (x, y)
    window: tuple[int, int, int, int] = (0, 0, 0, 0)  # x0, y0, x1, y1 of the work window in input pixels
    work_occlusion_mask: torch.Tensor | None = None  # the mask in the work window
    _dilated: dict = field(default_factory=dict)

    def upsample(self, height: int, width: int) -> None:
        """Bring the maps from the work window to the whole (height, width) input image (nearest
        neighbour inside the window; background, no face, no occlusion outside)."""
        self.work_occlusion_mask = self.occlusion_mask
        x0, y0, x1, y1 = self.window
        if self.occlusion_mask.shape == (height, width) and (x0, y0, x1, y1) == (0, 0, width, height):
            return

        # one resample and one paste for all maps: as uint8 planes whose fill value is 0 (BACKGROUND,
        # False, and face_index + 1 for "no face")
        planes = [self.m_alpha, self.m_beta, self.m_gamma, self.occlusion_mask, self.face_index + 1]
        if self.hand_mask is not None:
            planes.append(self.hand_mask)
        stack = torch.stack([m.to(torch.uint8) for m in planes], -1)  # (h, w, K)
        if stack.shape[:2] != (y1 - y0, x1 - x0):
            if stack.device.type == "cpu":  # cv2: ~5x faster than F.interpolate on uint8, same floor rule
                stack = torch.from_numpy(cv2.resize(stack.numpy(), (x1 - x0, y1 - y0),
                                                    interpolation=cv2.INTER_NEAREST).reshape(y1 - y0, x1 - x0, -1))
            else:
                stack = F.interpolate(stack.permute(2, 0, 1)[None], size=(y1 - y0, x1 - x0),
                                      mode="nearest")[0].permute(1, 2, 0)
        full = torch.zeros((len(planes), height, width), dtype=torch.uint8, device=stack.device)
        full[:, y0:y1, x0:x1] = stack.permute(2, 0, 1)
        self.m_alpha, self.m_beta, self.m_gamma = full[0], full[1], full[2]
        self.occlusion_mask = full[3].bool()
        self.face_index = full[4].long() - 1
        if self.hand_mask is not None:
            self.hand_mask = full[5].bool()

    def points_visible(self, points_px: torch.Tensor, radius_px: float) -> torch.Tensor:
        """(B, N, 2) input-pixel positions -> (B, N) bool: no occluded face pixel within `radius_px`
        (points off the image are tested at its border, as the mask is 0 off the face)."""
        sx, sy = self.scale
        x0, y0, x1, y1 = self.window
        radius = max(1, round(radius_px * sx)) if radius_px > 0 else 0
        occ = self._dilated.get(radius)
        if occ is None:
            occ = self.work_occlusion_mask
            occ = self._dilated[radius] = _morphology(occ, radius) if radius > 0 else occ
        h, w = occ.shape
        height, width = self.occlusion_mask.shape
        px = points_px[..., 0].clamp(0, width - 1)
        py = points_px[..., 1].clamp(0, height - 1)
        x = ((px + 0.5 - x0) * sx - 0.5).round().long()
        y = ((py + 0.5 - y0) * sy - 0.5).round().long()
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        return ~(occ[y.clamp(0, h - 1), x.clamp(0, w - 1)] & inside)


class OcclusionReasoner:
    """Callable stage; keeps per-track appearance state (textures) keyed by track id."""

    def __init__(self, config: dict, model, device: torch.device, hands=None, appearance=None, parser=None,
                 deoccluder=None):
        self.config = config
        self.device = device
        regions = face_regions(model).to(device)
        self.triangle_labels = regions.triangle_labels
        used = torch.unique(regions.triangles)
        remap = torch.full((model.num_vertices,), -1, dtype=torch.int64, device=device)
        remap[used] = torch.arange(len(used), device=device)
        self.face_part = VertexSubset(model, used)  # the vertices the face part uses (the others are never computed)
        self.triangles = remap[regions.triangles]
        self.regions = regions
        self.model = model
        self.hands = hands
        self.appearance = appearance
        self.parser = parser
        self.deoccluder = deoccluder  # deocclusion.stage.FaceDeoccluder (FISN) or None: the texture renders
        self.region_labels = torch.tensor(L.FACE_LABELS, device=device)
        self.uv = None if model.uv is None else torch.as_tensor(model.uv, dtype=torch.float32, device=device)
        self.triangle_uv = (None if regions.triangle_uv is None
                            else torch.as_tensor(regions.triangle_uv, dtype=torch.int64, device=device))
        self.textures: dict[int, object] = {}  # track id -> appearance.TrackTexture

    def reset(self) -> None:
        self.textures.clear()
        if self.hands is not None:
            self.hands.reset()

    def forget(self, track_ids) -> None:
        """Drop the state (textures) of lost tracks."""
        for tid in track_ids:
            self.textures.pop(tid, None)

    def _learned_fraction(self, uv, face_index, pixels, track_ids) -> torch.Tensor:
        """(B,): per face, the fraction of `pixels` (H, W) bool of that face whose texel its track's
        texture has learned (sampled confidence >= texture_full_confidence)."""
        full = self.appearance.config.texture_full_confidence
        owner, uv = face_index[pixels], uv[pixels]
        learned = torch.zeros_like(owner, dtype=torch.float32)
        for f, tid in enumerate(track_ids):
            texture = self.textures.get(tid)
            mine = owner == f
            if texture is not None and texture.frames > 0 and bool(mine.any()):
                learned[mine] = (texture.sample(uv[mine])[1] >= full).float()
        b = len(track_ids)
        return torch.bincount(owner, weights=learned, minlength=b) / torch.bincount(owner, minlength=b).clamp_min(1)

    def _expected_image(self, image, frags, attrs, app, face_index, on_face, track_ids) -> torch.Tensor:
        """(3, H, W): the image with every face pixel replaced by its expected appearance
        (track texture x SH shading; the shading alone, i.e. the skin reference, where the
        texture has not learned the texel)."""
        sel = face_index.clamp_min(0)
        normals, uv = attrs.normals[0], attrs.uv[0]
        lighting = app.lighting[sel]  # (H, W, 9, 3)
        shading = shade(normals.reshape(-1, 3), lighting.reshape(-1, 9, 3)).view(*normals.shape[:2], 3)
        albedo = torch.ones_like(shading)
        for f, tid in enumerate(track_ids):
            texture = self.textures.get(tid)
            if texture is None or texture.frames == 0:
                continue
            mask = on_face & (face_index == f)
            tex_albedo, confidence = texture.sample(uv[mask])
            known = (confidence > 0).unsqueeze(-1)
            albedo[mask] = torch.where(known, tex_albedo, albedo[mask])
        expected = (albedo * shading).clamp(0, 1).permute(2, 0, 1)
        return torch.where(on_face[None], expected, image)

    def face_vertices(self, fit) -> torch.Tensor:
        """(B, V', 3) camera-frame vertices of the labelled face part of each fitted face."""
        verts = self.face_part(fit.identity, fit.expression)
        return transform_points(fit.rotation, fit.translation_m, verts)

    @staticmethod
    def _window(extent: torch.Tensor, rois: torch.Tensor | None, hands, margin_px: float, width: int,
                height: int) -> tuple[int, int, int, int]:
        """x0, y0, x1, y1 (input pixels, inside the image, at least 1x1): the box around the faces'
        projected vertices (B, V, 2), their ROIs and the hands' silhouettes, plus `margin_px`."""
        boxes = [torch.cat([extent.amin(1), extent.amax(1)], -1)]  # (N, 4) rows x0, y0, x1, y1
        if rois is not None and len(rois):
            boxes.append(rois_to_boxes(rois))
        if hands is not None and len(hands):
            xy = hands.landmarks21[..., :2]
            reach = (palm_size_px(hands.landmarks21) * 0.6)[:, None]  # the wrist capsule beyond the landmarks
            boxes.append(torch.cat([xy.amin(1) - reach, xy.amax(1) + reach], -1))
        box = torch.cat([b.to(extent.dtype) for b in boxes])
        lo = (box[:, :2].amin(0) - margin_px).floor().clamp_min(0)
        hi = (box[:, 2:].amax(0) + margin_px).ceil() + 1
        x0, y0 = (int(v) for v in lo.tolist())
        x1, y1 = min(width, int(hi[0])), min(height, int(hi[1]))
        x0, y0 = min(x0, width - 1), min(y0, height - 1)
        return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)

    @torch.inference_mode()
    def __call__(self, image: torch.Tensor, fit, K: torch.Tensor, track_ids: list[int],
                 rois: torch.Tensor | None = None, deocclude: bool = False,
                 deocclude_when: tuple[float, float] | None = None) -> OcclusionResult:
        """Maps, evidence and occlusion of one frame's fitted faces. The de-occluded image is rendered
        with `deocclude`, or with `deocclude_when` = (min_ratio, min_learned) only when a face is
        occluded by at least min_ratio of its pixels of which its texture has learned at least
        min_learned (`deoccluded_learned` is then set either way)."""
        cfg = self.config
        full_image, full_rois = image, rois
        full_h, full_w = image.shape[1:]
        verts = self.face_vertices(fit)
        extent = project_points(verts, K, min_depth_m=None)  # (B, V, 2) input pixels
        hands = self.hands(full_image) if self.hands is not None else None
        # the work window: the faces, their ROIs (hair) and the hands, at a resolution where the
        # largest face spans at most max_face_px pixels (the evidence is per pixel: a 1080p close-up
        # has 30x more face pixels than it needs, and most of a frame is no face)
        face_px = float((extent.amax(1) - extent.amin(1)).amax())
        scale = min(1.0, cfg["max_face_px"] / max(face_px, 1.0))
        x0, y0, x1, y1 = self._window(extent, rois, hands, 4.0 / scale, full_w, full_h)
        width, height = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
        sx, sy = width / (x1 - x0), height / (y1 - y0)
        image = full_image[:, y0:y1, x0:x1]
        image = (resize_area(image, height, width) if (height, width) != (y1 - y0, x1 - x0)
                 else image.permute(1, 2, 0).contiguous().permute(2, 0, 1))  # channels-last: cv2 crops
        to_work = lambda x, y: ((x + 0.5 - x0) * sx - 0.5, (y + 0.5 - y0) * sy - 0.5)  # noqa: E731
        K = K.clone()  # the camera of the work window: scaled focal lengths, principal point moved like a pixel
        K[..., 0, 0] *= sx
        K[..., 1, 1] *= sy
        K[..., 0, 2], K[..., 1, 2] = to_work(K[..., 0, 2], K[..., 1, 2])
        if rois is not None:
            cx, cy = to_work(rois[:, 0:1], rois[:, 1:2])
            rois = torch.cat([cx, cy, rois[:, 2:3] * sx, rois[:, 3:]], 1)
        parsed = None
        if self.parser is not None and rois is not None and len(rois):
            parsed = self.parser.submit(image, rois)  # (B, 2 or 4, H, W): runs beside the rasterizer
        frags = rasterize(verts, self.triangles, K, height, width, backend=cfg["render_backend"], merge_faces=True,
                          attributes=self.appearance is not None)  # barycentrics: the appearance evidence
        m_beta = render_parsing(frags, self.triangle_labels)[0]
        face_index = frags.face_index[0]
        on_mesh = on_face = frags.triangle_id[0] >= 0
        probs = parsed.result() if parsed is not None else None
        region = cfg["parser"]["face_region"]
        if probs is not None and probs.shape[1] > 2 and region != "fit":
            complete, owner = probs[:, 2].max(0)
            complete = complete >= cfg["parser"]["complete_face_threshold"]
            beyond = complete & ~on_mesh
            m_beta = torch.where(beyond, torch.full_like(m_beta, L.SKIN), m_beta)
            face_index = torch.where(beyond, owner, face_index)
            on_face = on_mesh | beyond
            # the fit's pixels off the parser's complete face that it does not see as face either are no
            # face ("both": unless it sees an occluder there)
            seen = probs.gather(0, face_index.clamp_min(0)[None, None].expand(1, probs.shape[1], -1, -1))[0]
            off = on_mesh & ~complete & (seen[0] < cfg["visible_threshold"])
            if region == "both":  # a wide region the parser does not explain stays: an occluder it
                # took for the face's edge; a sliver along the fit's rim goes: the fit's error
                off = off & (seen[3] < 0.5)
                radius = max(1, round(cfg["parser"]["rim_fraction"] * face_px * scale))
                off = off & ~_morphology(off, radius, opening=True)
            m_beta = torch.where(off, torch.full_like(m_beta, L.BACKGROUND), m_beta)
            face_index = torch.where(off, torch.full_like(face_index, -1), face_index)
            on_face = on_face & ~off

        likelihood = torch.ones((height, width), device=image.device)
        hand_mask = None
        if hands is not None:
            hx, hy = to_work(hands.landmarks21[..., 0], hands.landmarks21[..., 1])
            hand_mask = hand_silhouettes(replace(hands, landmarks21=torch.stack(
                [hx, hy, hands.landmarks21[..., 2] * sx], -1)), height, width)
            likelihood = likelihood * (~hand_mask).float()
        hair = None
        if probs is not None:
            sel = face_index.clamp_min(0)
            face_p = probs[:, 0].gather(0, sel[None])[0]
            likelihood = torch.where(on_face, likelihood * face_p, likelihood)
            hair = probs[:, 1].amax(0) > 0.5
        deoccluded = attrs = app = None
        if self.appearance is not None:
            attrs = surface_attributes(frags, verts, self.triangles, self.triangles, uv=self.uv,
                                       triangle_uv=self.triangle_uv)
            textures = [self.textures.get(tid) for tid in track_ids]
            app = self.appearance(image, frags, attrs.normals, attrs.uv, m_beta[None], textures,
                                  prior_occluded=hand_mask, view_cosine=attrs.view_cosine)
            self.textures.update(zip(track_ids, app.textures))
            face_p = app.face_likelihood.gather(0, frags.face_index[0].clamp_min(0)[None])[0]
            likelihood = torch.where(on_mesh, likelihood * face_p, likelihood)

        visible = likelihood >= cfg["visible_threshold"]
        m_alpha = torch.full_like(m_beta, L.BACKGROUND)
        if hair is not None:
            m_alpha[hair & ~on_face] = L.HAIR
        m_alpha = torch.where(on_face & visible, m_beta, m_alpha)
        m_alpha[on_face & ~visible] = L.OCCLUDER
        if hand_mask is not None:
            m_alpha[hand_mask] = L.OCCLUDER
        m_gamma = merge_parsing_maps(m_alpha, m_beta)
        occluded = occlusion_mask(m_alpha, m_beta)

        b = len(track_ids)
        region = torch.searchsorted(self.region_labels, m_beta.long().clamp(max=int(self.region_labels[-1])))
        is_region = on_face & L.label_mask(m_beta, L.FACE_LABELS)
        key = (face_index * len(self.region_labels) + region)[is_region]
        total = torch.bincount(key, minlength=b * len(self.region_labels))
        occ = torch.bincount(key, weights=occluded[is_region].float(), minlength=b * len(self.region_labels))
        region_pixels = torch.stack([occ.long(), total], -1).view(b, len(self.region_labels), 2)
        sums = region_pixels.sum(1)
        ratio = sums[:, 0].float() / sums[:, 1].clamp_min(1).float()
        result = OcclusionResult(m_alpha, m_beta, m_gamma, occluded, face_index, likelihood, hand_mask,
                                 ratio, region_pixels, None, scale=(sx, sy), window=(x0, y0, x1, y1))
        texture_deocclude = deocclude and self.deoccluder is None
        if app is not None and (texture_deocclude or deocclude_when is not None):
            result.deoccluded_learned = self._learned_fraction(attrs.uv[0], frags.face_index[0], occluded & on_mesh,
                                                               track_ids)
            render = texture_deocclude
            if not render:
                min_ratio, min_learned = deocclude_when
                render = bool(((ratio >= min_ratio) & (result.deoccluded_learned >= min_learned)).any())
            if render:
                deoccluded = self._expected_image(image, frags, attrs, app, frags.face_index[0], on_mesh, track_ids)
        result.upsample(full_h, full_w)
        if deoccluded is not None:
            if deoccluded.shape[1:] != (y1 - y0, x1 - x0):
                deoccluded = F.interpolate(deoccluded.unsqueeze(0), size=(y1 - y0, x1 - x0), mode="bilinear",
                                           align_corners=False)[0]
            window = full_image.clone()
            window[:, y0:y1, x0:x1] = deoccluded
            result.deoccluded = torch.where(result.occlusion_mask[None], window, full_image)
        if deocclude and self.deoccluder is not None:
            result.deoccluded = self.deoccluder(full_image, full_rois, result.m_alpha, result.m_gamma,
                                                result.occlusion_mask)
        return result

    def region_dicts(self, result: OcclusionResult, i: int) -> tuple[dict[str, float], dict[str, tuple[int, int]]]:
        """(ratio per region name, (occluded, total) pixels per region name) of face i."""
        counts = result.region_pixels[i].cpu().numpy()
        names = [L.LABELS[int(k)] for k in self.region_labels]
        ratios = {n: float(o) / float(t) if t else 0.0 for n, (o, t) in zip(names, counts)}
        return ratios, {n: (int(o), int(t)) for n, (o, t) in zip(names, counts)}
