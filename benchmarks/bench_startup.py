"""Process start-up: seconds to import what a pipeline step loads, each in a fresh Python process.

Every DVC stage and every Ray worker is a new process, so its imports are paid once per stage or
worker. Cases (median over repeats, cold interpreter each time, bytecode as installed):
  python          the interpreter alone
  params          `pipeline.params`, validating params.yaml: what generate, convert, evaluate and
                  tables need (`motrv3` loads its names on first use, and the strategies' reading
                  names are checked without importing them, so its config comes without torch)
  params_model    the same with the model library, which the eager `motrv3/__init__.py` of commit
                  4347a91 loaded for every step, and validating params loaded until 2026-12-07
  train_worker    `pipeline.steps.train.worker`: a Ray Train worker's train function (no mlflow)
  ray_train_start, ray_train_start_eager_hook
                  a training stage's fixed cost before its first step: a local Ray (`init_ray`) and
                  a 2-worker `TorchTrainer` whose train function imports the worker module, in a
                  fresh process, seconds from `fit()` to both workers inside the train function.
                  The eager case's loopback hook imports torch.distributed in every Ray worker
                  process (as `pipeline.ray_utils` did before 2026-12-07); ours waits for the import.
Ratios: `params_model_over_params` (what a step that only reads params saves) and
`eager_hook_over_lazy` (what the lazy loopback hook saves every training start).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile

from benchmarks.harness import compare, measure, record
from pipeline.paths import REPO_ROOT

CASES = {
    "python": "pass",
    "params": "import pipeline.params; pipeline.params.load_params('params.yaml')",
    "params_model": "import pipeline.params, motrv3.model; pipeline.params.load_params('params.yaml')",
    "train_worker": "import pipeline.steps.train.worker",
}


RAY_TRAIN_START = """
import sys, time
from pipeline.ray_utils import init_ray
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
init_ray(None, 2, runtime_env={"worker_process_setup_hook": sys.argv[1]})
def train_function(config):
    import pipeline.steps.train.worker  # noqa: F401  (what a training worker imports first)
    print("INSIDE", time.time() - config["fit_called"], flush=True)
called = time.time()
TorchTrainer(
    train_function,
    train_loop_config={"fit_called": called},
    scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
    run_config=RunConfig(name=f"startup-{int(called)}", storage_path=sys.argv[2]),
).fit()
"""


def eager_loopback_hook() -> None:
    """The loopback hook as it was: torch.distributed imported in every Ray worker process."""
    import torch.distributed.rendezvous  # noqa: F401

    from pipeline.ray_utils import bind_rendezvous_to_loopback

    bind_rendezvous_to_loopback()


def _ray_train_start(hook: str, repeats: int) -> dict:
    """Seconds from `fit()` to the last worker inside its train function, one fresh process each."""
    times = []
    with tempfile.TemporaryDirectory(prefix="motrv3-bench-startup-") as storage:
        for _ in range(repeats):
            done = subprocess.run(
                [sys.executable, "-c", RAY_TRAIN_START, hook, storage],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            inside = [float(line.split("INSIDE")[1]) for line in done.stdout.splitlines() if "INSIDE" in line]
            times.append(max(inside))
    return {
        "repeats": repeats,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "times_s": times,
        "hook": hook,
    }


def _loaded(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in ('torch', 'timm', 'mlflow', 'ray') if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def run(args) -> dict:
    repeats = 2 if args.quick else 5
    cases = {}
    for name, code in CASES.items():
        command = [sys.executable, "-c", code]
        timing = measure(lambda c=command: subprocess.run(c, cwd=REPO_ROOT, check=True), repeats=repeats)
        cases[name] = {**timing, "code": code, "loads": _loaded(code)}
    ray_repeats = 1 if args.quick else 3
    cases["ray_train_start"] = _ray_train_start("pipeline.ray_utils.bind_rendezvous_to_loopback", ray_repeats)
    cases["ray_train_start_eager_hook"] = _ray_train_start(
        "benchmarks.bench_startup.eager_loopback_hook", ray_repeats
    )
    summary = {
        "params_s": cases["params"]["median_s"],
        "params_model_s": cases["params_model"]["median_s"],
        "train_worker_s": cases["train_worker"]["median_s"],
        "params_model_over_params": compare(cases["params_model"], cases["params"]),
        "train_worker_loads_mlflow": "mlflow" in cases["train_worker"]["loads"],
        "ray_train_start_s": cases["ray_train_start"]["median_s"],
        "ray_train_start_eager_hook_s": cases["ray_train_start_eager_hook"]["median_s"],
        "eager_hook_over_lazy": compare(cases["ray_train_start_eager_hook"], cases["ray_train_start"]),
    }
    return record("startup", __doc__.strip().splitlines()[0], cases, summary=summary)
