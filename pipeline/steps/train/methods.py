"""Which params a training run uses: the baseline, MOTRv3 and the PLD detector, and the checks
before a run starts."""

from __future__ import annotations

from pathlib import Path

from pipeline.data.pseudo_label_store import MANIFEST, check_sources
from pipeline.params import Params, baseline, teacher_params

METHODS = ("motr", "motrv3", "detector", "teacher")
DETECTION_ONLY = ("detector", "teacher")  # trained without clips, tracks or track queries


class TrainingError(RuntimeError):
    """A training run that cannot start (missing input, inconsistent params) or failed."""


def method_params(params: Params, method: str) -> Params:
    """The effective params of one training stage.

    `motr`: the baseline, MOTR with anchor queries (RFS, PLD and TGD off); `motrv3`: the
    rfs/pld/tgd sections as configured; `detector`: the PLD detector, detection-only on items of
    `detector.frames` frames (one batch each) and the `detector.*` schedule; `teacher`: PLD's
    teacher, the detector's recipe with the `teacher` sections merged in (a bigger model, a longer
    schedule: §3.3's teacher is a detector stronger than the tracker's own).
    """
    if method not in METHODS:
        raise TrainingError(f"method: expected one of {METHODS}, got {method!r}")
    if method == "teacher":
        return method_params(teacher_params(params), "detector")
    effective = baseline(params) if method in ("motr", "detector") else params.model_copy(deep=True)
    if method == "detector":
        detector = params.detector
        effective.data.clip_length = detector.frames
        effective.train.clip_lengths = []
        effective.train.epochs = detector.epochs
        effective.train.lr_drop = detector.lr_drop
        effective.train.max_steps_per_epoch = detector.max_steps_per_epoch
        effective.train.init_checkpoint = detector.init_checkpoint
        effective.model.detect_query_groups = detector.query_groups
        for key in ("lr", "lr_backbone", "warmup_steps", "batch_size", "ema_decay"):
            if getattr(detector, key) is not None:
                setattr(effective.train, key, getattr(detector, key))
    return effective


def check_inputs(params: Params, method: str, clips_dir: Path, pseudo_labels_dir: Path | None) -> None:
    split_dir = clips_dir / params.dataset.train_split
    if not split_dir.exists():
        raise TrainingError(
            f"{split_dir}: no training clips (run the `convert` stage first: python -m stages.convert)"
        )
    if pseudo_labels_dir is not None and not pseudo_labels_dir.exists():
        raise TrainingError(
            f"{pseudo_labels_dir}: no pseudo labels, but pld.enabled is true for method {method!r} "
            "(run `python -m stages.pseudo_labels`, or --set pld.enabled=false)"
        )
    if pseudo_labels_dir is not None and (pseudo_labels_dir / MANIFEST).is_file():
        # Here, not only in the workers' loader: a missing source or a threshold below the store's
        # fails before Ray starts, as one clear error.
        check_sources(pseudo_labels_dir, list(params.pld.sources), threshold=params.pld.threshold)
    train = params.train  # workers, epochs ≥ 1: the schema's constraints
    if train.workers != "auto" and train.batch_size % train.workers:  # auto: resolved to a divisor
        raise TrainingError(
            f"train.batch_size: {train.batch_size} clips do not split evenly over train.workers={train.workers}"
        )
