"""Training throughput (clips/s) of stage train with 1 and 2 CPU workers on the CPU profile.

Both cases train MOTR (the baseline path; MOTRv3 adds TGD groups and RFS matching) with the
same global batch (`train.batch_size` 2 of the CPU profile) and one CPU per worker, on
CPU-profile synthetic data, in one Ray instance. Throughput is clips per second of optimiser
steps (Ray start-up and checkpoint export excluded; `wall_s` includes them).
Scaling efficiency = throughput_2 / (2 × throughput_1): 1.0 is perfect data-parallel scaling.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.harness import measure, record
from pipeline.paths import REPO_ROOT


def _data(tmp: Path, sequences: int, frames: int) -> Path:
    from pipeline.data.convert import convert
    from pipeline.data.synthetic import generate
    from pipeline.params import load_params

    params = load_params(
        REPO_ROOT / "params.yaml",
        [
            f"synthetic.sequences={{train: {sequences}, val: 1}}",
            f"synthetic.frames={frames}",
            f"dataset.root={tmp / 'raw'}",
            "dataset.test_split=null",
        ],
    )
    generate(params.synthetic, tmp / "raw", progress=False)
    convert(params, tmp / "clips", progress=False)
    return tmp / "clips"


def run(args) -> dict:
    from pipeline.params import load_params
    from pipeline.ray_utils import init_ray
    from pipeline.training import train

    quick = getattr(args, "quick", False)
    steps = 3 if quick else 8
    with tempfile.TemporaryDirectory(prefix="bench-train-") as name:
        tmp = Path(name)
        clips = _data(tmp, sequences=2, frames=30)
        ray = init_ray(num_cpus=2)
        cases, throughput = {}, {}
        try:
            for workers in (1, 2):
                overrides = [
                    f"train.workers={workers}",
                    "train.cpus_per_worker=1",
                    "train.batch_size=2",
                    "train.epochs=1",
                    f"train.max_steps_per_epoch={steps}",
                    f"train.storage_path={tmp / f'ray{workers}'}",
                    f"mlflow.tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
                    "mlflow.experiment=bench_train_throughput",
                ]
                params = load_params(REPO_ROOT / "params.yaml", overrides)
                results = []

                def once(params=params, workers=workers, results=results):
                    results.append(
                        train(
                            params, "motr", tmp / f"out{workers}", clips_dir=clips, fresh=True, progress=False
                        )
                    )

                timing = measure(once, repeats=1, warmup=0)
                metrics = results[-1]
                throughput[workers] = metrics["clips_per_s"]
                cases[f"workers_{workers}"] = {
                    **timing,
                    "workers": workers,
                    "steps": metrics["global_steps"],
                    "clips": metrics["clips"],
                    "clips_per_s": metrics["clips_per_s"],
                    "train_s": metrics["train_seconds"],
                    "wall_s": metrics["wall_seconds"],
                }
        finally:
            ray.shutdown()
    efficiency = throughput[2] / (2 * throughput[1]) if throughput[1] > 0 else 0.0
    summary = {
        "clips_per_s_1_worker": throughput[1],
        "clips_per_s_2_workers": throughput[2],
        "scaling_efficiency": efficiency,
    }
    return record(
        "train_throughput",
        __doc__.splitlines()[0],
        cases,
        summary=summary,
        scaling_efficiency=efficiency,
        quick=quick,
    )
