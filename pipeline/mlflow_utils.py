"""The project's MLflow tracking store: one resolution rule for every stage, test and UI."""

from __future__ import annotations

import os
from pathlib import Path

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
