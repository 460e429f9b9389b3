"""`params.yaml` → one validated, typed `Params` object: the single source of every hyperparameter.

Layering, lowest to highest precedence:
  1. schema defaults: the paper's settings (MOTRv3 §4.2; MOTR/Deformable-DETR for inherited ones);
  2. the active profile, `profiles[<profile>]` in params.yaml (e.g. `cpu`, the embedded default);
  3. keys written in the top-level sections of params.yaml (what `dvc exp run -S a.b=v` edits);
  4. `overrides` given on a command line (`a.b=v`, YAML-typed values).
Unknown keys and wrong types are errors naming the dotted key (`ParamsError`).
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from motrv3.config import (
    LossConfig,
    ModelConfig,
    MOTRv3Config,
    PLDConfig,
    RFSConfig,
    TGDConfig,
    TrackingConfig,
)
from pipeline.baseline_trackers import TRACKER_NAMES
from pipeline.datasets import DATASET_NAMES, check_dataset_classes
from pipeline.params_overrides import ParamsError, deep_merge, parse_override, with_sections  # re-exported
from pipeline.params_overrides import format_errors as _format_errors

DEFAULT_PARAMS_FILE = Path("params.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)


def _section_from_dataclass(cls: type) -> type[_Section]:
    """A strict pydantic section mirroring a `motrv3.config` dataclass; `to_config()` gives it back."""
    hints = typing.get_type_hints(cls)
    definitions: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        factory = item.default_factory
        default = item.default if factory is dataclasses.MISSING else Field(default_factory=factory)
        definitions[item.name] = (hints[item.name], default)

    def to_config(self):
        return cls(**{name: getattr(self, name) for name in definitions})

    def dataclass_checks(self):
        to_config(self)  # the dataclass's own __post_init__ checks (e.g. rfs.reading) at load time
        return self

    section = create_model(
        f"{cls.__name__}Section",
        __base__=_Section,
        __doc__=cls.__doc__,
        __validators__={"dataclass_checks": model_validator(mode="after")(dataclass_checks)},
        **definitions,
    )
    section.to_config = to_config
    return section


ModelSection = _section_from_dataclass(ModelConfig)
LossSection = _section_from_dataclass(LossConfig)
TrackingSection = _section_from_dataclass(TrackingConfig)
RFSSection = _section_from_dataclass(RFSConfig)
PLDSection = _section_from_dataclass(PLDConfig)
TGDSection = _section_from_dataclass(TGDConfig)


class DatasetParams(_Section):
    """Which data the pipeline runs on."""

    name: Literal[DATASET_NAMES] = "synthetic"  # a key of pipeline.datasets.DATASETS
    root: str | None = None  # MOTChallenge-layout root of real data; synthetic data is generated
    crowdhuman_root: str | None = None  # joint training with CrowdHuman (MOT17 recipe)
    train_split: str = "train"
    eval_split: str = "val"
    test_split: str | None = "test"
    split_mode: Literal["full", "half"] = "full"  # half: train_split cut in train/eval halves (docs/data.md)
    lenient: bool = False  # skip and report bad input instead of failing
    # gt class id (MOTChallenge's class column) → name, in training-label order (0..C-1); gt rows of
    # other classes are ignored. None: the dataset's one class ({1: pedestrian}); only `custom`
    # data takes others (docs/data.md). `model.num_classes` follows.
    classes: dict[int, str] | None = None

    @field_validator("classes", mode="before")
    @classmethod
    def _class_ids(cls, value):
        # JSON keys are text (a checkpoint's or a Ray worker's copy of the params): read back as ids.
        if isinstance(value, dict):
            return {int(k) if isinstance(k, str) and k.strip().isdigit() else k: v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _classes_rule(self):
        # Filled in without re-validation, so `motrv3 params` shows the effective classes.
        self.__dict__["classes"] = check_dataset_classes(self.name, self.classes)
        return self


class SyntheticParams(_Section):
    """The embedded benchmark (DanceTrack-like: uniform appearance, non-linear motion; docs/data.md).

    Sizes and speeds are fractions of the image height, so one setting works at any resolution.
    """

    seed: int = 0
    sequences: dict[str, int] = Field(default_factory=lambda: {"train": 6, "val": 3, "test": 2})
    frames: int = Field(60, ge=1)
    frame_rate: int = 20
    width: int = 640
    height: int = 384
    min_objects: int = 5
    max_objects: int = 8
    object_size: list[float] = Field(default_factory=lambda: [0.12, 0.3])  # min/max box height / image height
    aspect: float = 0.5  # box width / box height
    speed: float = 0.012  # mean speed, image heights per frame
    turn_rate: float = 0.25  # max change of heading per frame, radians (non-linear motion)
    sway: float = 0.08  # amplitude of the dancing side-to-side oscillation, box heights
    occlusion_rate: float = 0.4  # share of targets steered to cross another target
    entry_exit_rate: float = 0.005  # per-frame chance of a target entering late / leaving early
    appearance_jitter: float = 0.08  # how much target appearances differ (small = DanceTrack-like)
    jpeg_quality: int = 92
    det_miss_rate: float = 0.1  # public detections (det/det.txt): share of visible targets missed
    det_false_positives: float = 0.5  # mean false positives per frame
    det_jitter: float = 0.05  # box noise, share of the box size


class DataParams(_Section):
    """Clip sampling and augmentation (§4.2: 5-frame clips, sampling interval 1..10)."""

    clip_length: int = Field(5, ge=1)
    sample_interval_min: int = Field(1, ge=1)
    sample_interval_max: int = Field(10, ge=1)
    train_scales: list[int] = Field(default_factory=lambda: [608, 640, 672, 704, 736, 768, 800])
    train_max_size: int = 1536
    random_crop: bool = True
    flip_prob: float = 0.5
    eval_size: int = 800
    eval_max_size: int = 1536
    static_shift: float = 0.05  # CrowdHuman images → clips by random shifts of this fraction
    row_group_frames: int = Field(16, ge=1)


class TrainParams(_Section):
    """Optimisation (§4.2) and the Ray Train job."""

    workers: Annotated[int, Field(ge=1)] | Literal["auto"] = 1  # auto: 1 per GPU (driver.resolve_scaling)
    use_gpu: bool | Literal["auto"] = False  # auto: true when the Ray cluster has a GPU
    cpus_per_worker: int = Field(1, ge=1)
    batch_size: int = Field(8, ge=1)  # clips per optimiser step, over all workers
    epochs: int = Field(5, ge=1)  # DanceTrack 5, MOT17 50
    lr_drop: int = Field(4, ge=1)  # epoch at which the lr is divided by 10 (DanceTrack 4, MOT17 40)
    lr: float = 2.0e-4
    lr_backbone: float = 2.0e-5
    weight_decay: float = 1.0e-4
    clip_max_norm: float = 0.1
    bf16: bool = True  # autocast on GPU only
    max_steps_per_epoch: int | None = None
    checkpoint_every_steps: int = 0  # 0: only at epoch ends
    max_failures: int = 1
    loader_workers: int = Field(2, ge=0)  # clip-loading processes per train worker (MOTR's 2); 0: none
    loader_prefetch: int = Field(2, ge=1)  # clips each loading process keeps ready (torch prefetch_factor)
    # Deformable DETR's lr_linear_proj_mult (MOTR/MOTRv2 too): sampling offsets/reference points at lr × this.
    lr_linear_proj_mult: float = Field(0.1, gt=0)
    warmup_steps: int = Field(0, ge=0)  # linear lr warm-up over the first steps (short CPU runs)
    # MOTR's sampler_lengths: clip length per epoch (the last repeats); empty: data.clip_length.
    clip_lengths: list[int] = Field(default_factory=list)
    batch_frames: bool = True  # a clip's frames share one batched backbone pass (false: per frame)
    validate_every_epochs: int = Field(1, ge=0)  # val-split metrics (learning curve); 0: never
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0)  # weight EMA (timm ModelEmaV3) validated+exported; 0: off
    # Weights to start from (§4.2: a COCO-pretrained Deformable-DETR; the cpu profile: our detector).
    init_checkpoint: str | None = None
    storage_path: str | None = None  # Ray Train runs (shared FS/URI on a cluster); None: models/.ray_train


class DetectorParams(_Section):
    """The in-pipeline pseudo-label detector: our Deformable-DETR in detection-only mode."""

    epochs: int = Field(5, ge=1)
    lr_drop: int = Field(4, ge=1)
    max_steps_per_epoch: int | None = None
    init_checkpoint: str | None = None  # e.g. a Deformable-DETR COCO checkpoint
    # A detector needs no clips: each training item is `frames` frames of one sequence (one
    # augmentation), forwarded as one batch; `train.batch_size` items make a step.
    frames: int = Field(1, ge=1)
    batch_size: int | None = Field(None, ge=1)  # items per step; None: train.batch_size
    query_groups: int = Field(1, ge=1)  # Group DETR detect-query groups (model.detect_query_groups)
    lr: float | None = None  # None: train.lr
    lr_backbone: float | None = None  # None: train.lr_backbone
    warmup_steps: int | None = None  # None: train.warmup_steps
    ema_decay: float | None = Field(None, ge=0.0, lt=1.0)  # None: train.ema_decay


class DetfileSpec(_Section):
    """Detections produced elsewhere (e.g. YOLOX, Sparse R-CNN, MOT17's public DPM/FRCNN/SDP)."""

    path: str | None = (
        None  # a JSON db (MOTRv2 `det_db` form), a MOTChallenge split dir, None: the dataset's det.txt
    )
    format: Literal["auto", "motchallenge", "json", "dataset"] = "auto"  # auto: by path (None → dataset)
    key_prefix: str | None = None  # json: only keys under this prefix (e.g. "DanceTrack/train/") are read
    det_file: str = "det/det.txt"  # motchallenge: the file inside each sequence directory
    det_source: str | None = None  # MOT17's public detector to take: DPM, FRCNN or SDP


class TorchvisionSpec(_Section):
    """A torchvision detection model with weights from a local checkpoint (never downloaded)."""

    arch: str = (
        "fasterrcnn_resnet50_fpn"  # any torchvision.models.detection builder: fcos_*, retinanet_*, ...
    )
    checkpoint: str = ""  # a state_dict file (torch.save), read with weights_only=True
    num_classes: int = 91  # COCO with background
    person_class: int = 1  # COCO person
    min_size: int | None = None  # None: the architecture's own test scale
    max_size: int | None = None


class PseudoLabelsParams(_Section):
    """Offline pseudo labels of PLD (§3.3, appendix C): the stage writes `sources` ∪ `pld.sources`,
    training reads `pld.sources` (so Table 4's rows select among labels generated once)."""

    sources: list[str] = Field(default_factory=lambda: ["detector", "detfile", "gt"])  # Table 4's sources
    detector_checkpoint: str = "models/detector/checkpoint.pt"  # source `detector`
    teacher_checkpoint: str = "models/teacher/checkpoint.pt"  # source `teacher` (stages.train_teacher)
    detfile: dict[str, DetfileSpec] = Field(default_factory=dict)  # source `detfile:<name>`
    torchvision: dict[str, TorchvisionSpec] = Field(default_factory=dict)  # source `torchvision:<name>`
    workers: int | None = None  # Ray Data workers; None: one per GPU, else one per CPU; 1: in-process
    batch_size: int = Field(4, ge=1)  # frames per Ray Data batch


class TrackParams(_Section):
    """Running a checkpoint over a split (`stages/track.py`)."""

    workers: int = Field(1, ge=1)  # > 1: sequences in parallel on Ray actors
    cpus_per_worker: int = Field(2, ge=1)  # torch threads per worker
    device: str = "auto"  # auto | cpu | cuda[:N]
    checkpoint: str | None = None  # None: models/<method>/checkpoint.pt
    save_video: bool = False  # also write an annotated <seq>.mp4 per sequence


class EvaluateParams(_Section):
    """TrackEval scoring (`stages/evaluate.py`)."""

    # MOT17/MOT16/MOT20 (distractor preprocessing) | DanceTrack | synthetic | custom (class 1 only);
    # None: dataset.name's (pipeline.datasets)
    benchmark: str | None = None


class BaselinesParams(_Section):
    """Tracking-by-detection rows of Table 1 (`stages/baselines.py`): the trackers of
    `pipeline.baseline_trackers` (the `trackers` package's) on our detector's boxes
    (`pseudo_labels.detector_checkpoint`) of the eval split."""

    trackers: list[Literal[TRACKER_NAMES]] = Field(default_factory=lambda: list(TRACKER_NAMES))
    det_threshold: float = Field(0.1, ge=0.0, le=1.0)  # boxes the trackers see (ByteTrack's low τ = 0.1)
    # Constructor keywords per tracker over the package's defaults, e.g. {bytetrack: {high_conf_det_threshold: 0.5}};
    # those of a tracker not in `trackers` are unused (a profile may set all three).
    tracker_args: dict[Literal[TRACKER_NAMES], dict[str, float | int]] = Field(default_factory=dict)


class MLflowParams(_Section):
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else the repo-local store
    experiment: str = "motrv3"
    ui_host: str = "127.0.0.1"  # `python -m pipeline.mlflow_ui` binds here (loopback only by default)
    ui_port: int = 5000


class RayParams(_Section):
    address: str | None = None  # None: a fresh local instance on 127.0.0.1
    num_cpus: int | None = None


class SweepParams(_Section):
    """Ray Tune ablations (Tables 3-5): every row a trial of train → track → evaluate."""

    seeds: list[int] = Field(default_factory=lambda: [0])  # one trial per (row, seed)
    max_concurrent_trials: int = Field(1, ge=1)
    trial_cpus: float = 0.01  # the trial driver only waits; the TorchTrainer workers hold the CPUs
    storage_path: str = "ray_results"  # Tune experiment dirs (relative to the repo root)
    split: str | None = None  # split the rows are evaluated on; None = dataset.eval_split (§4.4: val)
    # Table 4's pseudo-label sources; "a+b" trains on both sources in parallel (pld.combine).
    pld_sources: list[str] = Field(default_factory=lambda: ["detector", "detfile", "gt", "detector+detfile"])
    # Each trial also tracks its split at these birth thresholds (tracking.new_track_score; keep
    # moved by the same amount): one shared grid, so no single threshold decides a comparison
    # (pipeline/studies/operating_points.py). Empty: only the profile's thresholds.
    birth_thresholds: list[Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=list)


class ScalingParams(_Section):
    """Backbone scaling study (§4.4 "Model scaling up", Fig. 4): baseline and MOTRv3 per backbone.

    The paper's backbones by default; the `cpu` profile scales over small ResNets 2 cores can train.
    """

    backbones: list[str] = Field(
        default_factory=lambda: ["resnet50", "convnext_tiny", "convnext_small", "convnext_base"]
    )
    methods: list[str] = Field(default_factory=lambda: ["motr", "motrv3"])


class Params(BaseModel):
    """Every hyperparameter of the project. Section names are the top-level keys of params.yaml."""

    # Not strict itself (sections arrive as mappings); every section and field inside is.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    profile: str = "paper"
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    seed: int = 0
    dataset: DatasetParams = Field(default_factory=DatasetParams)
    synthetic: SyntheticParams = Field(default_factory=SyntheticParams)
    data: DataParams = Field(default_factory=DataParams)
    model: ModelSection = Field(default_factory=ModelSection)
    loss: LossSection = Field(default_factory=LossSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    rfs: RFSSection = Field(default_factory=RFSSection)
    pld: PLDSection = Field(default_factory=PLDSection)
    tgd: TGDSection = Field(default_factory=TGDSection)
    train: TrainParams = Field(default_factory=TrainParams)
    detector: DetectorParams = Field(default_factory=DetectorParams)
    # PLD's teacher (§3.3; stages.train_teacher): the detector's recipe with these sections changed.
    teacher: dict[Literal["model", "data", "detector"], dict[str, Any]] = Field(default_factory=dict)
    pseudo_labels: PseudoLabelsParams = Field(default_factory=PseudoLabelsParams)
    track: TrackParams = Field(default_factory=TrackParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    baselines: BaselinesParams = Field(default_factory=BaselinesParams)
    mlflow: MLflowParams = Field(default_factory=MLflowParams)
    ray: RayParams = Field(default_factory=RayParams)
    sweep: SweepParams = Field(default_factory=SweepParams)
    scaling: ScalingParams = Field(default_factory=ScalingParams)

    @model_validator(mode="after")
    def _num_classes_follow(self):
        """`model.num_classes` = len(`dataset.classes`); a conflicting explicit value is an error."""
        wanted = len(self.dataset.classes)
        if self.model.num_classes != wanted:
            if "num_classes" in self.model.model_fields_set:
                raise ValueError(
                    f"model.num_classes: {self.model.num_classes} conflicts with dataset.classes "
                    f"({wanted} class{'es' if wanted > 1 else ''}: {self.dataset.classes}); "
                    "leave model.num_classes out, it follows dataset.classes"
                )
            self.model.__dict__["num_classes"] = wanted  # derived, not "set": re-validation agrees
        return self

    def as_dict(self) -> dict[str, Any]:
        """The effective values, without the profile table (for logging and checkpoints)."""
        return self.model_dump(mode="json", exclude={"profiles"})

    def library_config(self) -> MOTRv3Config:
        """The model library's config of these params: what `motrv3.build` composes from."""
        sections = ("model", "loss", "tracking", "rfs", "pld", "tgd")
        return MOTRv3Config(**{name: getattr(self, name).to_config() for name in sections})


# The ablations' baseline (Table 3 row 1, the `motr` method): MOTR with anchor queries, i.e. the
# three MOTRv3 supervisions off. The one definition; trainers and sweeps derive from it.
BASELINE_OFF = ("rfs", "pld", "tgd")


def baseline(params: Params) -> Params:
    """A copy of `params` with RFS, PLD and TGD off."""
    effective = params.model_copy(deep=True)
    for section in BASELINE_OFF:
        getattr(effective, section).enabled = False
    return effective


def teacher_params(params: Params, source: str = "params") -> Params:
    """`params` with the `teacher` sections merged in: the teacher's own model, data and schedule."""
    return with_sections(params, params.teacher, source, key_prefix="teacher.")


def switch_overrides(rfs: bool, pld: bool, tgd: bool) -> tuple[str, ...]:
    """`--set` overrides that turn each supervision on or off (`switch_overrides(False, False, False)`: the baseline)."""
    return tuple(
        f"{section}.enabled={str(flag).lower()}"
        for section, flag in zip(BASELINE_OFF, (rfs, pld, tgd), strict=True)
    )


def resolve(
    raw: dict[str, Any], overrides: list[str] | tuple[str, ...] = (), source: str = "params"
) -> Params:
    """Apply the profile and overrides to a raw params mapping and validate it."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: top level must be a mapping of sections, got {type(raw).__name__}")
    for text in overrides:
        raw = deep_merge(raw, parse_override(text))
    profile = raw.get("profile", Params.model_fields["profile"].default)
    profiles = raw.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise ParamsError(f"{source}: profiles: must be a mapping of profile name to sections")
    if profile != Params.model_fields["profile"].default and profile not in profiles:
        raise ParamsError(
            f"{source}: profile: unknown profile {profile!r}; defined: {sorted(profiles) or 'none'}"
        )
    overlay = profiles.get(profile) or {}
    if "profile" in overlay or "profiles" in overlay:
        raise ParamsError(f"{source}: profiles.{profile}: a profile cannot set 'profile' or 'profiles'")
    try:
        # Validate the overlay alone first so an error in a profile names the profile.
        Params.model_validate(overlay)
    except ValidationError as error:
        raise ParamsError(_format_errors(f"{source}: profiles.{profile}", error)) from None
    merged = deep_merge(overlay, raw)
    try:
        params = Params.model_validate(merged)
    except ValidationError as error:
        raise ParamsError(_format_errors(source, error)) from None
    teacher_params(params, source)  # a wrong key in `teacher` fails at load too
    return params


def load_params(
    path: str | Path = DEFAULT_PARAMS_FILE, overrides: list[str] | tuple[str, ...] = ()
) -> Params:
    """Load and validate a params file; errors name the file and the dotted key."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such params file") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ParamsError(f"{path}{where}: not valid YAML: {error}") from None
    return resolve(raw, overrides, source=str(path))
