"""Process start-up: seconds to import what a pipeline step loads, each in a fresh Python process.

Every DVC stage and every Ray worker is a new process, so its imports are paid once per stage or
worker. Cases (median over repeats, cold interpreter each time, bytecode as installed):
  python          the interpreter alone
  params          `pipeline.params`: what generate, convert, evaluate and tables need (`motrv3`
                  loads its names on first use, so its config comes without torch)
  params_model    `pipeline.params` + `motrv3.model`: the same with the model library, which the
                  eager `motrv3/__init__.py` of commit 4347a91 loaded for every step
  train_worker    `pipeline.steps.train.worker`: a Ray Train worker's train function (no mlflow)
Ratio `params_model_over_params`: what a step that only reads params saves.
"""

from __future__ import annotations

import subprocess
import sys

from benchmarks.harness import compare, measure, record
from pipeline.paths import REPO_ROOT

CASES = {
    "python": "pass",
    "params": "import pipeline.params",
    "params_model": "import pipeline.params, motrv3.model",
    "train_worker": "import pipeline.steps.train.worker",
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
    summary = {
        "params_s": cases["params"]["median_s"],
        "params_model_s": cases["params_model"]["median_s"],
        "train_worker_s": cases["train_worker"]["median_s"],
        "params_model_over_params": compare(cases["params_model"], cases["params"]),
        "train_worker_loads_mlflow": "mlflow" in cases["train_worker"]["loads"],
    }
    return record("startup", __doc__.strip().splitlines()[0], cases, summary=summary)
