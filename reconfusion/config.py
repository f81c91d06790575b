"""Model and optimization settings (dataclasses) with the ``tiny`` (CPU) and ``base`` (GPU) presets.

``base`` follows Zip-NeRF's published settings (Barron et al., ICCV 2023); where it departs, the
field says so in its comment (and the README lists it).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass
from dataclasses import field as dc_field

from rfkernels import BACKENDS  # rfkernels' backend names; Config.backend None = its process default


class ConfigError(ValueError):
    """A config value or key the model or loop cannot use (the CLI reports it in one line)."""


SPACINGS = ("auto", "linear", "inverse", "power")  # "auto": linear in NDC, power elsewhere


@dataclass
class GridConfig:
    """Hash-grid encoding (see ``rfkernels.HashGridEncoding``)."""

    n_levels: int = 10
    n_features_per_level: int = 4
    log2_hashmap_size: int = 21
    base_resolution: int = 16
    max_resolution: int = 8192


@dataclass
class FieldConfig:
    """The NeRF field: grid -> density MLP (-> bottleneck) -> view-dependent colour MLP."""

    grid: GridConfig = dc_field(default_factory=GridConfig)
    density_width: int = 64
    density_depth: int = 1
    bottleneck: int = 256
    color_width: int = 256
    color_depth: int = 3
    dir_degree: int = 4  # positional encoding of view directions (Zip-NeRF: IDE-free, degree 4)
    view_dependent: bool = True  # False: colour from the bottleneck alone (no view direction input)


@dataclass
class ProposalConfig:
    grid: GridConfig = dc_field(default_factory=lambda: GridConfig(10, 1, 21, 16, 512))
    width: int = 64
    depth: int = 1


@dataclass
class Config:
    preset: str = "base"
    field: FieldConfig = dc_field(default_factory=FieldConfig)
    proposals: list = dc_field(
        default_factory=lambda: [
            ProposalConfig(GridConfig(10, 1, 21, 16, 512)),
            ProposalConfig(GridConfig(10, 1, 21, 16, 2048)),
        ]
    )
    n_samples: tuple = (64, 64, 32)  # per proposal round, then the NeRF round
    sampler: str = "proposal"  # reconfusion.field.samplers: "proposal" (Zip-NeRF) or "uniform" (proposals=[])
    spacing: str = "auto"  # s-space curve; "auto" = "linear" in NDC, "power" elsewhere (see resolve)
    histogram_padding: float = 0.01
    backend: str | None = None  # rfkernels backend for every op; None = rfkernels' default (RFKERNELS_BACKEND)
    torch_compile: bool = False  # rfkernels.use_torch_compile while rendering: the torch backend's CPU speed path
    # losses
    data_loss: str = "charbonnier"  # or "mse" (tiny: short runs on dark backgrounds collapse under L1-like losses)
    charbonnier_eps: float = 1e-3
    interlevel_weight: float = 0.01
    interlevel_blurs: tuple = (0.03, 0.003)  # one blur half-width per proposal level
    distortion_weight: float = 0.01
    # few-view regularizers (no learned prior)
    entropy_weight: float = 0.0  # binary entropy of the rendered opacity
    freq_reg_fraction: float = 0.0  # FreeNeRF: fraction of the run over which grid levels unmask
    occlusion_weight: float = 0.0  # FreeNeRF occlusion: density in the first s < occlusion_s
    occlusion_s: float = 0.08
    depth_smoothness_weight: float = 0.0  # RegNeRF: depth smoothness on patches from unseen viewpoints
    depth_smoothness_patches: int = 16  # patches per iteration (each patch_size^2 extra rays)
    depth_smoothness_patch_size: int = 8
    sample_anneal_steps: int = 0  # RegNeRF: the sampled s-range grows from around sample_anneal_mid to [0, 1]
    sample_anneal_mid: float = 1.0  # over this many steps (RegNeRF LLFF: 256 steps, from the far plane)
    grid_decay_weight: float = 0.1  # Zip-NeRF's hash decay (0.1): sum over grid levels of the mean squared entry
    # Captures on a removed background (scene background "white"/"black" decided from the images):
    # mean opacity of the batch's rays whose target pixel shows the backdrop (they are empty space).
    backdrop_opacity_weight: float = 0.0
    # rendered weight on samples inside fewer than covisibility_min_views training frusta
    # (reconfusion.losses.covisibility): views far apart must not each explain their image in front of
    # their own camera
    covisibility_weight: float = 0.0
    covisibility_min_views: int = 2
    # sparse depth from the training views' triangulated features (reconfusion.losses.sparse_depth)
    sparse_depth_weight: float = 0.0  # 0 = off (no matching); x min(1, points / sparse_depth_full_points)
    sparse_depth_loss: str = "kl"  # "kl": cross-entropy of the rendered weights; "l2": expected depth
    sparse_depth_rays: int = 128  # target rays per step, in place of random ones (at most half of batch_rays)
    sparse_depth_min_sigma: float = 0.02  # floor of a target's standard deviation, in s units (0.005: worse on horns)
    sparse_depth_full_points: int = 100  # fewer triangulated points fade the weight out linearly
    sparse_depth_proposals: bool = True  # "kl" also on the proposal histograms
    sparse_depth_stop: float = 1.0  # fraction of the run after which the term is off
    # drop targets within this many pixels of a white/black backdrop (silhouette keypoints); 0 = keep all
    sparse_depth_backdrop_margin_px: int = 0
    sparse_depth_max_reprojection_px: float = 1.5  # triangulation: rejection rules
    sparse_depth_min_angle_deg: float = 1.0
    sparse_depth_upsample: int = 2  # SIFT on images enlarged by this factor: ~6x the points on 504x378 LLFF
    sparse_depth_epipolar_px: float = 1.0  # matches only within this many px of the cameras' epipolar lines; 0 = off
    # optimization
    iterations: int = 25000
    batch_rays: int = 16384  # departs: Zip-NeRF uses 65536 rays per step (on 8 accelerators)
    lr_init: float = 1e-2
    lr_final: float = 1e-3
    warmup_steps: int = 2500  # capped at a tenth of `iterations` (at least 1) by resolve()
    beta1: float = 0.9
    beta2: float = 0.99
    adam_eps: float = 1e-15
    grad_max_norm: float = 0.0  # 0 = off
    mixed_precision: bool = True  # bf16 autocast of the MLPs on CUDA only
    # evaluation / bookkeeping
    eval_every: int = 5000
    checkpoint_every: int = 5000
    eval_chunk: int = 8192
    seed: int = 0

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field with a value the model or loop cannot use."""

        def need(ok: bool, name: str, what: str):
            if not ok:
                raise ConfigError(f"config `{name}` must be {what}, got {getattr(self, name)!r}")

        for name in (
            "iterations",
            "batch_rays",
            "eval_chunk",
            "depth_smoothness_patches",
            "depth_smoothness_patch_size",
            "sparse_depth_rays",
        ):
            v = getattr(self, name)
            need(isinstance(v, int) and not isinstance(v, bool) and v >= 1, name, "an integer >= 1")
        for name in (
            "warmup_steps",
            "eval_every",
            "checkpoint_every",
            "seed",
            "sample_anneal_steps",
            "sparse_depth_full_points",
            "sparse_depth_backdrop_margin_px",
        ):
            v = getattr(self, name)
            need(isinstance(v, int) and not isinstance(v, bool) and v >= 0, name, "an integer >= 0")
        need(
            isinstance(self.grid_decay_weight, (int, float))
            and math.isfinite(self.grid_decay_weight)
            and self.grid_decay_weight >= 0,
            "grid_decay_weight",
            "a finite number >= 0",
        )
        for name in ("lr_init", "lr_final"):
            need(
                isinstance(getattr(self, name), (int, float))
                and math.isfinite(getattr(self, name))
                and getattr(self, name) > 0,
                name,
                "a finite number > 0",
            )
        need(
            isinstance(self.sample_anneal_mid, (int, float)) and 0.0 <= self.sample_anneal_mid <= 1.0,
            "sample_anneal_mid",
            "a number in [0, 1]",
        )
        need(self.backend is None or self.backend in BACKENDS, "backend", f"None or one of {BACKENDS}")
        need(self.spacing in SPACINGS, "spacing", f"one of {SPACINGS}")
        need(isinstance(self.torch_compile, bool), "torch_compile", "a bool")
        need(self.data_loss in ("charbonnier", "mse"), "data_loss", "'charbonnier' or 'mse'")
        need(self.sparse_depth_loss in ("kl", "l2"), "sparse_depth_loss", "'kl' or 'l2'")
        need(isinstance(self.sparse_depth_proposals, bool), "sparse_depth_proposals", "a bool")
        for name in ("backdrop_opacity_weight", "covisibility_weight"):
            v = getattr(self, name)
            need(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0, name, "a finite number >= 0")
        v = self.covisibility_min_views
        need(isinstance(v, int) and not isinstance(v, bool) and v >= 1, "covisibility_min_views", "an integer >= 1")
        for name in (
            "sparse_depth_weight",
            "sparse_depth_max_reprojection_px",
            "sparse_depth_min_angle_deg",
            "sparse_depth_epipolar_px",
        ):
            v = getattr(self, name)
            need(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0, name, "a finite number >= 0")
        need(
            isinstance(self.sparse_depth_min_sigma, (int, float)) and 0 < self.sparse_depth_min_sigma < 1,
            "sparse_depth_min_sigma",
            "a number in (0, 1)",
        )
        need(
            isinstance(self.sparse_depth_upsample, int) and 1 <= self.sparse_depth_upsample <= 4,
            "sparse_depth_upsample",
            "an integer in [1, 4]",
        )
        need(
            isinstance(self.sparse_depth_stop, (int, float)) and 0 <= self.sparse_depth_stop <= 1,
            "sparse_depth_stop",
            "a number in [0, 1]",
        )
        need(
            len(self.n_samples) == len(self.proposals) + 1
            and all(isinstance(n, int) and n >= 1 for n in self.n_samples),
            "n_samples",
            f"{len(self.proposals) + 1} integers >= 1 (one per proposal round, then the NeRF round)",
        )
        # Each proposal level gets its own blur: a level without one would silently get an unblurred loss.
        need(
            len(self.interlevel_blurs) == len(self.proposals),
            "interlevel_blurs",
            f"{len(self.proposals)} half-width(s), one per proposal level",
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        """Inverse of ``json.loads(cfg.to_json())``; an unknown key (at any level) is a ``ValueError``."""
        d = dict(d)
        f = d.pop("field", None)
        p = d.pop("proposals", None)
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in _known(cls, d, "config").items()}
        if f is not None:
            kw["field"] = FieldConfig(
                **{
                    **_known(FieldConfig, f, "config.field"),
                    "grid": GridConfig(**_known(GridConfig, f.get("grid", {}), "config.field.grid")),
                }
            )
        if p is not None:
            kw["proposals"] = [
                ProposalConfig(
                    **{
                        **_known(ProposalConfig, q, f"config.proposals[{i}]"),
                        "grid": GridConfig(**_known(GridConfig, q.get("grid", {}), f"config.proposals[{i}].grid")),
                    }
                )
                for i, q in enumerate(p)
            ]
        return cls(**kw)

    def replace(self, **kw) -> Config:
        unknown = [k for k in kw if k not in {f.name for f in dataclasses.fields(self)}]
        if unknown:
            raise ConfigError(f"unknown config field(s): {unknown}")
        return dataclasses.replace(self, **kw)


def _known(cls, d: dict, where: str) -> dict:
    if not isinstance(d, dict):
        raise ConfigError(f"{where} must be a JSON object, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; known: {sorted(names)}")
    return d


def resolve(cfg: Config, space: str) -> Config:
    """The concrete config a model is built and trained with (every derived setting decided here):

    - ``spacing="auto"``: ``"linear"`` for NDC scenes (NDC depth is already disparity-like),
      ``"power"`` (Zip-NeRF's ladder) for metric ones; any other curve in NDC is an error.
    - ``warmup_steps`` is capped at a tenth of ``iterations`` (at least 1), so a short run is not
      all warm-up.
    """
    spacing = cfg.spacing
    if spacing == "auto":
        spacing = "linear" if space == "ndc" else "power"
    elif space == "ndc" and spacing != "linear":
        raise ConfigError(f"config `spacing` {spacing!r} does not apply to NDC scenes: use 'auto' or 'linear'")
    warmup = min(cfg.warmup_steps, max(cfg.iterations // 10, 1))
    if (spacing, warmup) == (cfg.spacing, cfg.warmup_steps):
        return cfg
    return cfg.replace(spacing=spacing, warmup_steps=warmup)


def parse_overrides(items: list[str]) -> dict:
    """``["key=value", ...]`` -> ``{key: value}``: values parse as JSON (numbers, booleans, null,
    lists -> tuples), anything else stays a string. Dotted keys reach nested settings."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set takes key=value, got {item!r}")
        try:
            v = json.loads(value)
        except json.JSONDecodeError:
            v = value
        out[key] = tuple(v) if isinstance(v, list) else v
    return out


def with_overrides(cfg: Config, overrides: dict) -> Config:
    """``cfg`` with ``overrides`` applied: dotted keys reach nested settings (``field.dir_degree``,
    ``proposals.0.width``); the result is validated like any config, and an unknown key or index is a
    :class:`ConfigError` that names it."""
    d = json.loads(cfg.to_json())
    for key, value in overrides.items():
        *path, last = key.split(".")
        node = d
        for depth, part in enumerate([*path, last]):
            where = ".".join([*path, last][: depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"config key {key!r}: {where!r} needs an index < {len(node)}")
                part = int(part)
            elif not isinstance(node, dict) or part not in node:
                known = sorted(node) if isinstance(node, dict) else []
                raise ConfigError(f"unknown config key {key!r}" + (f"; known here: {known}" if known else ""))
            if depth < len(path):
                node = node[part]
            else:
                node[part] = list(value) if isinstance(value, tuple) else value
    try:
        return Config.from_dict(d)
    except TypeError as exc:  # e.g. a nested value of the wrong kind reaching a dataclass constructor
        raise ConfigError(f"--set {', '.join(overrides)}: {exc}") from exc


def base() -> Config:
    return Config(preset="base")


def tiny() -> Config:
    """Minutes on a 2-core CPU for a ~126x94 3-view scene."""
    return Config(
        preset="tiny",
        field=FieldConfig(
            GridConfig(8, 2, 16, 16, 512),
            density_width=32,
            density_depth=1,
            bottleneck=15,
            color_width=32,
            color_depth=1,
            dir_degree=2,
        ),
        proposals=[ProposalConfig(GridConfig(5, 1, 14, 16, 128), width=16, depth=1)],
        n_samples=(32, 24),
        interlevel_blurs=(0.03,),
        data_loss="mse",
        iterations=1500,
        batch_rays=1024,
        warmup_steps=100,
        lr_init=1e-2,
        lr_final=1e-3,
        # FreeNeRF occlusion + RegNeRF depth smoothness: +0.7 / +0.2 / +0.05 dB on 3/6/9-view fern at
        # 504x378 (README, few-view ablation); entropy and frequency masking lowered it and stay off.
        # Zip-NeRF's grid decay, weaker than its 0.1: 3-view fern 20.30 -> 21.08 dB at 6500 it. (0.1: 20.76).
        entropy_weight=0.0,
        freq_reg_fraction=0.0,
        occlusion_weight=0.01,
        depth_smoothness_weight=0.1,
        depth_smoothness_patches=8,
        grid_decay_weight=0.03,
        mixed_precision=False,
        eval_every=0,
        checkpoint_every=500,
        eval_chunk=4096,
        torch_compile=True,  # ~1.6x faster training steps and ~3x faster hash-grid rendering on CPU (README)
    )


# The weight `--sparse-depth on` gives a preset that has the term off. 3-view horns at 1000 iterations
# (benchmarks/results/fewview_horns/notes.md): with the 0.02 sigma floor, 0.03 and 0.1 scored alike; the
# 0.005 floor scored lower at every weight. The presets keep the term off: with grid_decay_weight=0.1 it
# lifts 3-view horns to 17.18 dB and 3-view milk to 12.46, but costs 8-view lego 2-3 dB and 9-view milk 0.9.
SPARSE_DEPTH_WEIGHT = 0.03

PRESETS = {"tiny": tiny, "base": base}


def get_preset(name: str) -> Config:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()


__all__ = [
    "BACKENDS",
    "Config",
    "ConfigError",
    "FieldConfig",
    "GridConfig",
    "PRESETS",
    "ProposalConfig",
    "SPACINGS",
    "SPARSE_DEPTH_WEIGHT",
    "base",
    "get_preset",
    "parse_overrides",
    "resolve",
    "tiny",
    "with_overrides",
]
