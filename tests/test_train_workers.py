"""`train.workers: auto` (the paper profile): resolved against the Ray cluster the train stage joins."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.params import load_params, resolve
from pipeline.steps.train import driver
from pipeline.steps.train.methods import TrainingError, method_params

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("gpus", "workers", "use_gpu"), [(0, 1, False), (4, 4, True)])
def test_paper_profile_resolves_its_workers_on_a_local_ray(gpus, workers, use_gpu):
    import ray

    from pipeline.ray_utils import init_ray

    params = method_params(load_params(REPO_ROOT / "params.yaml", ["profile=paper"]), "motrv3")
    assert (params.train.workers, params.train.use_gpu, params.train.batch_size) == ("auto", "auto", 8)
    assert not ray.is_initialized()
    # Ray accepts GPUs a CPU machine lacks: enough to resolve a worker count, not to run CUDA.
    init_ray(num_cpus=1, num_gpus=gpus)
    try:
        assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
        line = driver.resolve_scaling(params.train)
    finally:
        ray.shutdown()
    assert (params.train.workers, params.train.use_gpu) == (workers, use_gpu)
    assert line.startswith(
        f"Ray cluster: {gpus} GPUs, 1 CPUs → {workers} {'GPU' if use_gpu else 'CPU'} worker"
    )
    assert f"{8 // workers} clip(s) each of the batch of 8" in line
    assert ("no GPU: training on the CPU" in line) == (not use_gpu)
    # The resolved values are what the run is named and logged with.
    assert params.as_dict()["train"]["workers"] == workers


def test_auto_takes_the_largest_even_split_and_refuses_gpus_it_cannot_find(monkeypatch):
    monkeypatch.setattr(driver.ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 3.0})
    train = resolve({}, ["train.workers=auto", "train.use_gpu=auto"]).train
    assert "1 GPUs idle" in driver.resolve_scaling(train) and train.workers == 2  # batch 8 over 3 GPUs
    monkeypatch.setattr(driver.ray, "cluster_resources", lambda: {"CPU": 2.0})
    train = resolve({}, ["train.workers=auto", "train.use_gpu=true"]).train
    with pytest.raises(TrainingError, match="train.workers: auto found no GPU"):
        driver.resolve_scaling(train)
    train = resolve({}, ["train.workers=2", "train.batch_size=2"]).train  # explicit: kept, only reported
    assert driver.resolve_scaling(train).endswith("2 CPU workers × 1 CPU, 1 clip(s) each of the batch of 2")
