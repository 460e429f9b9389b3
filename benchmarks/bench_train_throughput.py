"""Training throughput (5-frame clips/s) of stage train: the previous CPU profile against today's, in one run.

Every case trains MOTR (the baseline path) for the same number of optimiser steps of
`train.batch_size` 2 five-frame clips, on the same synthetic data, in one Ray instance, with
validation off. Throughput is clips per second of optimiser steps (Ray start-up and checkpoint
export excluded; `wall_s` includes them). Cases:

- `before`: the CPU profile as it was (ResNet-18 at 192×320, 20 queries, frozen BN, 2 DDP
  workers × 1 thread, every frame on its own through the whole network);
- `after`: today's CPU profile (ResNet-10t at 128×213, 40 queries, trainable BN, 2 DDP workers ×
  1 thread, a clip's frames batched through the backbone);
- the levers one at a time on today's profile: `after_1_worker` (1 worker × 2 threads, the
  profile's layout until 2026-11-29) and `after_per_frame` (`train.batch_frames=false`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.harness import measure, record, synthetic_dataset
from pipeline.paths import REPO_ROOT

# The CPU profile before the throughput work (git history of params.yaml).
BEFORE = [
    "data.train_scales=[192]",
    "data.train_max_size=320",
    "model.backbone=resnet18",
    "model.frozen_bn=true",
    "model.num_queries=20",
    "train.workers=2",
    "train.cpus_per_worker=1",
    "train.batch_frames=false",
]
AFTER = ["train.workers=2", "train.cpus_per_worker=1", "train.batch_frames=true"]
CASES = {
    "before": BEFORE,
    "after": AFTER,
    "after_1_worker": [*AFTER, "train.workers=1", "train.cpus_per_worker=2"],
    "after_per_frame": [*AFTER, "train.batch_frames=false"],
}


def run(args) -> dict:
    from pipeline.params import load_params
    from pipeline.ray_utils import init_ray
    from pipeline.steps.train import run as train

    quick = getattr(args, "quick", False)
    steps = 3 if quick else 20
    with tempfile.TemporaryDirectory(prefix="bench-train-") as name:
        tmp = Path(name)
        _, clips = synthetic_dataset(tmp, {"train": 2, "val": 1}, frames=40)
        ray = init_ray(num_cpus=2)
        cases, throughput = {}, {}
        try:
            for case, settings in CASES.items():
                overrides = [
                    *settings,
                    "data.clip_length=5",
                    "train.clip_lengths=[]",
                    "train.batch_size=2",
                    "train.epochs=1",
                    f"train.max_steps_per_epoch={steps}",
                    "train.validate_every_epochs=0",
                    "train.init_checkpoint=null",
                    f"train.storage_path={tmp / f'ray_{case}'}",
                    f"mlflow.tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
                    "mlflow.experiment=bench_train_throughput",
                ]
                params = load_params(REPO_ROOT / "params.yaml", overrides)
                results = []

                def once(params=params, case=case, results=results):
                    results.append(
                        train(
                            params, "motr", tmp / f"out_{case}", clips_dir=clips, fresh=True, progress=False
                        )
                    )

                timing = measure(once, repeats=1, warmup=0)
                metrics = results[-1]
                throughput[case] = metrics["clips_per_s"]
                cases[case] = {
                    **timing,
                    "overrides": settings,
                    "steps": metrics["global_steps"],
                    "clips": metrics["clips"],
                    "clips_per_s": metrics["clips_per_s"],
                    "train_s": metrics["train_seconds"],
                    "wall_s": metrics["wall_seconds"],
                }
        finally:
            ray.shutdown()
    before = throughput["before"]
    summary = {f"clips_per_s_{case}": value for case, value in throughput.items()}
    summary.update({f"speedup_{case}": value / before for case, value in throughput.items() if before > 0})
    return record(
        "train_throughput",
        __doc__.splitlines()[0],
        cases,
        summary=summary,
        speedup=summary.get("speedup_after", 0.0),
        quick=quick,
    )
