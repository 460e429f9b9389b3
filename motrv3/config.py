"""Configuration of the model library.

Plain dataclasses so that `motrv3/` stays free of pipeline imports: the pipeline's params
schema (`pipeline/params.py`) embeds these classes and validates them, library users may
build them directly. Defaults are the paper's settings (MOTRv3 §4.2, Deformable-DETR/MOTR for
what MOTRv3 inherits); the embedded CPU profile in `params.yaml` shrinks sizes only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Literal

# Read by pydantic if a dataclass is validated directly: unknown keys are errors.
_STRICT = {"extra": "forbid"}


@dataclass
class ModelConfig:
    """Deformable-DETR tracker architecture (MOTR with anchor queries, §2.1/§4.4)."""

    __pydantic_config__ = _STRICT

    # timm name: resnet50 (MOTR/MOTRv2, Table 6), convnext_base (§4.2, Table 1: the `paper` profile), ...
    backbone: str = "resnet50"
    # Local file of ImageNet backbone weights (timm's, .pth/.bin/.safetensors); never downloaded.
    # Given: the stem and the stages before stride 8 are frozen, as Deformable DETR freezes them.
    pretrained: str | None = None
    frozen_bn: bool = True
    num_feature_levels: int = 4  # strides 8/16/32 + an extra stride-64 level
    d_model: int = 256
    nheads: int = 8
    enc_layers: int = 6
    dec_layers: int = 6
    dim_feedforward: int = 1024
    dropout: float = 0.0
    enc_n_points: int = 4
    dec_n_points: int = 4
    num_queries: int = 300  # detect (anchor) queries
    num_classes: int = 1
    box_refine: bool = True  # iterative box refinement
    deform_attn_impl: Literal["auto", "pytorch", "cpu", "cuda"] = "auto"
    activation_checkpointing: bool = False  # recompute each frame of a clip in backward
    # Group DETR (Chen et al., the paper's [10]): extra groups of detect queries, each with its own
    # one-to-one matching, in detection-only training (the PLD detector); inference uses the first.
    detect_query_groups: int = 1


@dataclass
class LossConfig:
    """Per-frame detection loss L = λ_cls L_cls + λ_L1 L_L1 + λ_giou L_giou (§3.1, §4.2)."""

    __pydantic_config__ = _STRICT

    cls_weight: float = 2.0
    l1_weight: float = 5.0
    giou_weight: float = 2.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    aux_loss: bool = True  # the loss on every decoder layer


@dataclass
class TrackingConfig:
    """Track query life cycle. Inference: MOTRv2's `RuntimeTrackerBase` with its DanceTrack settings
    (`submit_dance.py`: score_threshold 0.5 for new and kept tracks, miss_tolerance 20); §4.2 gives
    the new-track threshold 0.5. Training: MOTRv2's track selection and MOTR's augmentations
    (`motrv3.runner.training_track_update`)."""

    __pydantic_config__ = _STRICT

    new_track_score: float = 0.5  # §4.2 / MOTRv2: detect query → track query when score ≥ this
    keep_track_score: float = 0.5  # MOTRv2: a track below this counts a miss and is not reported
    miss_tolerance: int = 20  # MOTRv2 (DanceTrack): consecutive misses before a track is dropped
    # Not in MOTR/MOTRv2 (None): no birth where the detect query's box overlaps a reported track or a
    # stronger birth by IoU ≥ this (motrv3.tracks.duplicate_births; the cpu profile, docs/training.md).
    birth_overlap: float | None = None
    # Not in MOTR/MOTRv2 (None): a track whose box overlaps an older reported track's by IoU ≥ this
    # is dropped (motrv3.tracks.duplicate_tracks, ByteTrack's duplicate removal; the cpu profile,
    # README "Dropping duplicate tracks at inference").
    track_overlap: float | None = None
    # MOTR's training augmentations of the track query set (MOTR's configs: 0.1 / 0.3)
    drop_track_prob: float = 0.1
    fp_track_prob: float = 0.3
    # Training (MOTRv2): an unmatched query scoring above this goes on as a track without identity.
    fp_score_threshold: float = 0.5


# The strategies' readings by name: checked here without importing torch (every step validates
# params); `motrv3.supervision.RFS_READINGS` / `PLD_READINGS` map them to their classes.
RFS_READING_NAMES = ("literal", "keep_identity")
PLD_READING_NAMES = ("literal", "track_aware", "consistent")


@dataclass
class RFSConfig:
    """Release-fetch supervision (§3.2): matching space 𝔖_a in the first L−1 decoder layers."""

    __pydantic_config__ = _STRICT

    enabled: bool = True
    layers: list[int] | None = None  # decoder layer indices using 𝔖_a; None = all but the last
    # What a track query with an identity is trained on where 𝔖_a gives its label to a detect
    # query (motrv3/supervision/rfs.py): `literal` background, `keep_identity` its Eq. 2 label.
    reading: str = "keep_identity"

    def __post_init__(self) -> None:
        if self.reading not in RFS_READING_NAMES:
            raise ValueError(f"rfs.reading = {self.reading!r}: expected one of {sorted(RFS_READING_NAMES)}")


@dataclass
class PLDConfig:
    """Pseudo label distillation (§3.3, Eq. 3)."""

    __pydantic_config__ = _STRICT

    enabled: bool = True
    threshold: float = 0.05  # pseudo labels below this confidence are discarded
    background_weight: float = 0.5  # ω for a query matched to no pseudo label
    sources: list[str] = field(
        default_factory=lambda: ["detector"]
    )  # detector, gt, detfile[:name], torchvision[:name]
    combine: Literal["parallel", "concat"] = "parallel"
    layers: list[int] | None = None  # decoder layers Eq. 3 supervises; None = all ("all 6 decoders")
    # Who may take a tracked target's pseudo label (motrv3/supervision/pld.py): `literal` any query
    # (Eq. 3 over all M+N), `track_aware` its track query (Eq. 2's rule carried to pseudo labels),
    # `consistent` as track_aware, with no ω background on a query the layer's ground truth trains.
    reading: str = "literal"

    def __post_init__(self) -> None:
        if self.reading not in PLD_READING_NAMES:
            raise ValueError(f"pld.reading = {self.reading!r}: expected one of {sorted(PLD_READING_NAMES)}")


TGDMask = Literal["eq4", "one_way", "replica"]  # motrv3.tgd.attention_mask's readings of Eq. 4


@dataclass
class TGDConfig:
    """Track group denoising (§3.4, appendix B, Eq. 4)."""

    __pydantic_config__ = _STRICT

    enabled: bool = True
    # G of Eq. 4 (S = G·N + M): track query groups *including* the originals, so G − 1 noisy copy
    # groups are added (§4.2 "4 track query groups", Table 5 "Group Num"; motrv3.tgd).
    groups: int = 4
    noise: bool = True
    noise_scale: float = 0.4  # width/height scaled by a factor in [1 − s, 1 + s]; centres untouched
    # The copies' targets (motrv3/supervision/tgd.py): the original's `last`-layer assignment, or
    # its assignment in the same `layer`; copy-group losses `sum`med or averaged (`mean`).
    follow: Literal["last", "layer"] = "last"
    reduce: Literal["sum", "mean"] = "sum"
    # Eq. 4 (`eq4`: a copy sees its own group only), DN-DETR's one-way mask (`one_way`: copies
    # also see the detect and original track queries; originals never see copies) or `replica`
    # (copies also see the detect queries, not the originals): motrv3.tgd.attention_mask.
    mask: TGDMask = "eq4"


def to_dict(cfg: Any) -> Any:
    """Nested dataclasses → plain dicts (for checkpoints and logging)."""
    if is_dataclass(cfg):
        return asdict(cfg)
    return cfg


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build a config dataclass from a dict, rejecting unknown keys by name."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown key(s) {unknown}; expected a subset of {sorted(names)}")
    return cls(**data)


@dataclass
class MOTRv3Config:
    """One configuration of the whole library: what `motrv3.build` composes model, criterion and
    tracker from. The pipeline's params sections `model`, `loss`, `tracking`, `rfs`, `pld`, `tgd`."""

    __pydantic_config__ = _STRICT

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    rfs: RFSConfig = field(default_factory=RFSConfig)
    pld: PLDConfig = field(default_factory=PLDConfig)
    tgd: TGDConfig = field(default_factory=TGDConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MOTRv3Config:
        """From nested plain dicts (e.g. a checkpoint's config); unknown keys are errors by name."""
        sections = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(data) - set(sections))
        if unknown:
            raise ValueError(f"MOTRv3Config: unknown section(s) {unknown}; expected {sorted(sections)}")
        types = {
            "model": ModelConfig,
            "loss": LossConfig,
            "tracking": TrackingConfig,
            "rfs": RFSConfig,
            "pld": PLDConfig,
            "tgd": TGDConfig,
        }
        return cls(**{name: from_dict(types[name], dict(value)) for name, value in data.items()})
