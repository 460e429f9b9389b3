"""The project's MLflow tracking store: one resolution rule for every stage, test and UI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipeline.paths import REPO_ROOT

DEFAULT_DB = "mlflow.db"  # sqlite backend, repo-local, ignored by git
DEFAULT_ARTIFACTS = "mlruns"  # artifact root, repo-local, ignored by git


def tracking_uri(configured: str | None = None, root: Path | None = None) -> str:
    """params `mlflow.tracking_uri`, else $MLFLOW_TRACKING_URI, else sqlite in the repo root."""
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    root = Path(root or REPO_ROOT).resolve()
    return f"sqlite:///{root / DEFAULT_DB}"


def artifact_location(root: Path | None = None) -> str:
    return (Path(root or REPO_ROOT).resolve() / DEFAULT_ARTIFACTS).as_uri()


def setup_experiment(name: str, configured_uri: str | None = None, root: Path | None = None) -> str:
    """Point mlflow at the store and make sure `name` exists there; returns the experiment id."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    uri = tracking_uri(configured_uri, root)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        kwargs = {"artifact_location": artifact_location(root)} if uri.startswith("sqlite:") else {}
        experiment_id = mlflow.create_experiment(name, **kwargs)
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict → {'a.b.c': value} (MLflow params)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def log_scores(
    run_id: str, scores: dict[str, Any], configured_uri: str | None = None, prefix: str = "", files=()
) -> bool:
    """An evaluation's numbers (HOTA, AssA, ..., FPS) onto the MLflow run of the training it scored.

    The training run carries the params, so MLflow's Compare shows the scores beside them (an
    ablation's `tgd.groups` beside its HOTA). Non-numeric and non-finite values are skipped;
    `files` become artifacts under `evaluation/`. Returns False when the store has no such run.
    """
    import math
    import time

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri(configured_uri))
    try:
        client.get_run(run_id)
    except MlflowException:
        return False
    now = int(time.time() * 1000)
    metrics = [
        Metric(f"{prefix}{metric_name(key)}", float(value), now, 0)  # "HOTA(0)" → "HOTA_0"
        for key, value in scores.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ]
    for start in range(0, len(metrics), 500):  # MLflow's limit per batch is 1000 metrics
        client.log_batch(run_id, metrics=metrics[start : start + 500])
    for path in files:
        client.log_artifact(run_id, str(path), "evaluation")
    return True


def metric_name(*parts: str) -> str:
    """A metric name MLflow accepts from labels such as "MOTR (baseline)" → `MOTR_baseline`."""
    import re

    return "/".join(re.sub(r"[^A-Za-z0-9\-.]+", "_", part).strip("_") or "_" for part in parts)
