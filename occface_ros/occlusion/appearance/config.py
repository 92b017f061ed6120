"""The tunables of `AppearanceEvidence`; their values (defaults included) live in config/occface.yaml."""
from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["AppearanceConfig"]


@dataclass(frozen=True)
class AppearanceConfig:
    """Tunables of `AppearanceEvidence` (config key `occlusion.appearance`, every key required).

    The defaults are only in config/occface.yaml (`AppearanceConfig.defaults()` reads them), which
    also says what each one does; config.py validates their types and ranges.
    Units: colours are in [0, 1]; "log" quantities are natural-log colour ratios in the opponent
    space (luminance = mean log ratio, red-green, yellow-blue chroma); "z" values are residuals in
    units of their robust scale; radii are fractions of the face size (sqrt of its pixel count).
    """

    log_epsilon: float  # added to colours before the log: bounds the log noise of dark pixels
    pixel_noise: float  # image noise std ([0, 1] units); inflates the scale of dark pixels
    # cold start: skin reference
    seed_cells: int  # UV grid cells per side: skin seeds = per-cell medians
    seed_min_fraction: float  # a cell needs this fraction of the face's skin pixels to seed
    seed_chroma_log: float  # kernel width (chroma) counting the support of a seed
    seed_luminance_log: float  # kernel width (luminance) counting the support of a seed
    colour_image_chroma_log: float  # median |chroma| under which a face is treated as grayscale
    # plausible skin (red-green, yellow-blue) log chroma in colour images: red > green > blue
    skin_chroma_box: tuple[tuple[float, float], ...]
    skin_prior_width_log: float  # soft margin of the skin chroma box
    seed_dark_log: float  # seeds this much darker (log) than the brightest seed are unlikely skin
    sh_ridge: float  # ridge of the SH lighting fits, relative to the total weight (bands 1-2)
    shading_passes: int  # refits of the shading to the skin pixels it explains
    membership_z: float  # Cauchy width (in residual z) of the skin pixels' weights in those refits
    membership_cut_z: float  # skin pixels with a larger residual z do not refit the shading
    split_luminance: bool  # separate skin residual covariances for darker / brighter than expected
    skin_luminance_floor: float  # minimum robust scale of skin luminance residuals (log)
    skin_chroma_floor: float  # minimum robust scale of skin chroma residuals (log)
    shadow_tolerance: float  # darker-than-expected skin residuals are divided by this (cast shadows, stubble)
    shadow_saturation: float  # chroma shift along the skin's chroma forgiven per unit of darkening (log)
    shadow_tolerance_gray: float  # the same for grayscale faces (luminance is the only cue there)
    highlight_tolerance: float  # brighter-than-expected skin residuals are divided by this (specular)
    # cold start: facial features, plausible (luminance, red-green, yellow-blue) residual vs skin
    lips_box: tuple[tuple[float, float], ...]
    brows_box: tuple[tuple[float, float], ...]
    eyes_box: tuple[tuple[float, float], ...]
    mouth_box: tuple[tuple[float, float], ...]
    feature_luminance_floor: float  # minimum own-scale of a feature region (luminance, log)
    feature_chroma_floor: float  # minimum own-scale of a feature region (chroma, log)
    box_softness_log: float  # distance outside a plausibility box per unit of z
    # video: residual against the track texture
    texture_size: int
    texture_max_confidence: float
    texture_full_confidence: float  # sampled confidence at which the texture fully replaces the cold model
    texture_inlier_z: float  # with a known track residual scale: pixels within this z refit the lighting
    texture_scale_rate: float  # EMA rate of the track's residual scale
    texture_luminance_floor: float
    texture_chroma_floor: float
    learn_threshold: float  # pixels with likelihood above this (and not prior-occluded) update the texture
    learn_min_view_cosine: float
    # decision
    threshold_z: float  # residual z at which the likelihood is 0.5
    softness_z: float  # logistic width of the soft threshold
    smooth_radius: float  # box filter of the occlusion logit (fraction of the face size)
    closing_radius: float  # disk closing of the occluded mask; adds feature pixels only (eyes in sunglasses)
    closed_likelihood: float  # likelihood given to pixels the closing adds

    @classmethod
    def from_dict(cls, values: dict) -> AppearanceConfig:
        """Build from a complete dict such as config['occlusion']['appearance'] without `enabled`;
        missing and unknown keys are an error. Lists (YAML) become tuples."""
        names = {f.name for f in fields(cls)}
        unknown, missing = set(values) - names, names - set(values)
        if unknown or missing:
            raise ValueError(f"appearance config: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
        return cls(**{k: tuple(map(tuple, v)) if isinstance(v, list) and v and isinstance(v[0], list) else
                      (tuple(v) if isinstance(v, list) else v) for k, v in values.items()})

    @classmethod
    def defaults(cls) -> AppearanceConfig:
        """The values of config/occface.yaml (the only place that states them)."""
        from ...config import load_config

        section = load_config()["occlusion"]["appearance"]
        return cls.from_dict({k: v for k, v in section.items() if k != "enabled"})
