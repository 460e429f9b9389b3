"""The track step: a trained checkpoint over every sequence of a split (`pipeline.inference.split_tracking`).

Writes one MOTChallenge result file per sequence and `fps.json`: the steady-state speed as Table 6
measures it, the warm-up apart, and the training run behind the checkpoint (its MLflow run id,
where the evaluate step logs the scores).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.inference.split_tracking import settings_from_params, track_split
from pipeline.params import Params
from pipeline.paths import MODELS_DIR


def training_record(checkpoint: str | Path) -> dict[str, Any]:
    """What the train stage recorded about the run behind `checkpoint` ({} if none, e.g. an
    import): method, Ray Train run and MLflow run id, so evaluations land on that MLflow run.

    An official checkpoint not yet imported raises `ForeignCheckpointError` naming `motrv3 import`.
    """
    from motrv3.checkpoint import FORMAT, ForeignCheckpointError, foreign_message, torch_load

    checkpoint = Path(checkpoint)
    if checkpoint.suffix.lower() == ".onnx" or not checkpoint.is_file():
        return {}
    payload = torch_load(checkpoint, mmap=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ForeignCheckpointError(foreign_message(checkpoint, payload))
    record = payload.get("training")
    return dict(record) if isinstance(record, dict) else {}


def default_checkpoint(params: Params, method: str) -> Path:
    """`track.checkpoint`, else `models/<method>/checkpoint.pt`."""
    return Path(params.track.checkpoint or MODELS_DIR / method / "checkpoint.pt")


def run(
    params: Params,
    checkpoint: str | Path,
    dataset_dir: str | Path,
    out_dir: str | Path,
    extra_info: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Track every sequence of `dataset_dir` with `checkpoint` as the params say; returns fps.json's content."""
    return track_split(
        settings_from_params(params, checkpoint),
        dataset_dir,
        out_dir,
        workers=params.track.workers,
        ray_address=params.ray.address,
        save_video=params.track.save_video,
        extra_info=extra_info,
        progress=progress,
    )
