"""Shared test setup: loopback-only, quiet tools; the `gpu` marker skips without CUDA."""

from __future__ import annotations

import os
import tempfile

import pytest

# Set before Ray/MLflow/DVC are imported by any test module.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Stage logs (pipeline/console.py) of tests go to a temp dir, not the repo's logs/.
os.environ.setdefault("MOTRV3_LOG_DIR", tempfile.mkdtemp(prefix="motrv3-test-logs-"))


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _torch_threads():
    """Two cores: keep each test's torch to the machine's size and deterministic."""
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
