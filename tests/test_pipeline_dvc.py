"""The whole default pipeline under real DVC (issue 9): `dvc repro`, a no-op re-run, `dvc exp run`.

The project's tracked (and untracked, not ignored) files are copied into a fresh git + DVC repo
whose params.yaml selects a `tiny` profile: the `cpu` profile shrunk to a few frames of 128×80 and
a two-step training schedule, so every stage runs its real code (Ray Train, Ray-backed pseudo
labels, TrackEval, MLflow) in a few minutes on 2 cores. The same runs show what a user sees of a
training stage (its console) and that the ablation is comparable in MLflow (scores beside params).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.params import deep_merge, load_params
from pipeline.paths import REPO_ROOT

pytestmark = pytest.mark.slow

# Layered over the `cpu` profile of the real params.yaml (names as in pipeline/params.py).
TINY_OVERLAY = {
    "synthetic": {
        "sequences": {"train": 2, "val": 1, "test": 1},
        "frames": 12,
        "width": 128,
        "height": 80,
        "min_objects": 2,
        "max_objects": 3,
    },
    "data": {
        "clip_length": 2,
        "sample_interval_max": 2,
        "train_scales": [80],
        "train_max_size": 128,
        "eval_size": 80,
        "eval_max_size": 128,
    },
    "model": {
        "backbone": "resnet10t",
        "d_model": 32,
        "nheads": 2,
        "enc_layers": 1,
        "dec_layers": 2,
        "dim_feedforward": 64,
        "num_queries": 10,
    },
    "train": {"workers": 1, "batch_size": 1, "epochs": 1, "lr_drop": 1, "max_steps_per_epoch": 2},
    # 2 frames a step (the cpu profile's 2 items × 4 frames took 13 s of the 2 steps here)
    "detector": {"epochs": 1, "lr_drop": 1, "max_steps_per_epoch": 2, "frames": 2, "batch_size": 1},
    "pseudo_labels": {"workers": 1},
    "track": {"workers": 1},
}
MOTRV3_STAGES = {"train_motrv3", "track@motrv3", "evaluate@motrv3", "tables"}
ALL_STAGES = {
    "generate",
    "convert",
    "train_detector",
    "train_teacher",
    "pseudo_labels",
    "train_motr",
    *MOTRV3_STAGES,
    "track@motr",
    "evaluate@motr",
    "baselines",
}
REPRO_OUTPUT = "repro_output.txt"  # beside the repo: what the first `dvc repro` printed
STAGE_TIMEOUT_S = 600  # per dvc command: a hang fails the test instead of the whole suite


def project_files() -> list[str]:
    """What a clone of the project holds: tracked files plus untracked ones git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [name for name in listed.split("\0") if name and (REPO_ROOT / name).is_file()]


def write_tiny_params(repo: Path) -> None:
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["profiles"]["tiny"] = deep_merge(raw["profiles"]["cpu"], TINY_OVERLAY)
    raw["profile"] = "tiny"
    # The top-level sections outrank the profile: drop the keys the tiny profile sets.
    for section, values in TINY_OVERLAY.items():
        for key in values:
            (raw.get(section) or {}).pop(key, None)
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(repo / "params.yaml")  # the real schema accepts it
    assert params.profile == "tiny"
    for section, values in TINY_OVERLAY.items():
        for key, value in values.items():
            assert getattr(getattr(params, section), key) == value, f"{section}.{key}"


def tool_env(repo: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # always a fresh local Ray, never someone else's cluster
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        DVC_NO_ANALYTICS="1",
        MLFLOW_TRACKING_URI=f"sqlite:///{repo / 'mlflow.db'}",
        MLFLOW_DISABLE_TELEMETRY="true",
        MOTRV3_LOG_DIR=str(repo.parent / "logs"),  # the stages' full logs, outside the repo
        GIT_AUTHOR_NAME="pipeline test",
        GIT_AUTHOR_EMAIL="pipeline-test@example.invalid",
        GIT_COMMITTER_NAME="pipeline test",
        GIT_COMMITTER_EMAIL="pipeline-test@example.invalid",
    )
    return env


def run(repo: Path, *command: str) -> str:
    """Run a command in the test repo; on failure the assertion shows its output."""
    done = subprocess.run(
        command,
        cwd=repo,
        env=tool_env(repo),
        capture_output=True,
        text=True,
        timeout=STAGE_TIMEOUT_S,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{output[-6000:]}"
    return output


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def commit(repo: Path, message: str) -> None:
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", message)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A fresh project repo with the tiny profile, committed, after one full `dvc repro`."""
    root = tmp_path_factory.mktemp("pipeline") / "motrv3"
    for name in project_files():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    assert (root / "dvc.yaml").is_file() and (root / ".dvc" / "config").is_file()
    write_tiny_params(root)
    run(root, "git", "init", "-q")
    commit(root, "project with the tiny profile")
    output = run(root, "dvc", "repro")
    assert stages_run(output) == ALL_STAGES, output[-4000:]
    (root.parent / REPRO_OUTPUT).write_text(output)
    return root


@pytest.fixture(scope="module")
def experiment(repo: Path) -> str:
    """`dvc exp run -S tgd.groups=5` on top of the committed first run; returns its output."""
    commit(repo, "first pipeline run")
    return run(repo, "dvc", "exp", "run", "-S", "tgd.groups=5")


def test_repro_writes_table1_and_metrics(repo: Path):
    metrics = json.loads((repo / "metrics" / "motrv3.json").read_text())
    for key in ("HOTA", "AssA", "DetA", "MOTA", "IDF1", "FPS"):
        assert isinstance(metrics[key], int | float), key
    assert 0.0 <= metrics["HOTA"] <= 100.0 and metrics["FPS"] > 0.0

    with open(repo / "reports" / "table1.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    measured = {row["label"]: row for row in rows if row["section"] == "measured"}
    assert {"MOTR (baseline)", "MOTRv3"} <= set(measured)
    assert float(measured["MOTRv3"]["HOTA"]) == pytest.approx(metrics["HOTA"], abs=0.01)
    assert any(row["section"] == "reported" for row in rows)

    table = (repo / "reports" / "table1.md").read_text()
    measured_part, reported_part = table.split("## Reported in the paper")
    assert "## Measured here (synthetic val, profile tiny)" in measured_part
    assert re.search(r"^\| MOTRv3 \|", measured_part, re.M) and re.search(
        r"^\| MOTR \(baseline\) \|", measured_part, re.M
    )
    assert "not measured here" in reported_part and re.search(r"^\| MOTRv3\b", reported_part, re.M)


def stage_console(output: str, stage: str) -> list[str]:
    """The lines a stage printed under `dvc repro`: after DVC's `Running stage` and `> command`."""
    lines = output.splitlines()
    start = lines.index(f"Running stage '{stage}':") + 1
    shown = []
    for line in lines[start:]:
        if line.startswith(("Running stage ", "Updating lock file", "Generating lock file")):
            break
        if line.strip() and not line.startswith("> "):
            shown.append(line)
    return shown


def test_training_stage_console_is_clean_and_its_log_is_full(repo: Path):
    """What a user sees of a training stage under `dvc repro`: a few lines, none of Ray's noise;
    Ray's output is kept in the stage's log, which the last line names."""
    from tests.test_console import RAY_NOISE

    shown = stage_console((repo.parent / REPRO_OUTPUT).read_text(), "train_motr")
    assert not [line for line in shown if RAY_NOISE.search(line)], shown
    assert shown[0] == "▶ train_motr", shown
    epochs = [line for line in shown if re.match(r"epoch \d+/\d+: ", line)]
    assert len(epochs) == 1 and re.search(r"2/2 steps, loss \d+\.\d+, clips_s \d+\.\d+", epochs[0])
    assert any(line.startswith("epoch 1 validation: HOTA ") for line in shown)
    assert any(re.match(r"motr: 1 epochs, 2 steps, final loss \d+\.\d+", line) for line in shown)
    log = repo.parent / "logs" / "train_motr.log"
    assert shown[-1].endswith(f"log: {log}") and len(shown) <= 7, shown
    text = log.read_text()
    assert "RayTrainWorker" in text or "TrainController" in text


def test_second_repro_changes_nothing(repo: Path):
    output = run(repo, "dvc", "repro")
    assert stages_run(output) == set(), output
    assert json.loads(run(repo, "dvc", "status", "--json").strip().splitlines()[-1]) == {}


def _experiments(shown: list[dict]) -> list[dict]:
    """The experiment records of `dvc exp show --json` (baselines and the workspace left out)."""
    found = []
    for baseline in shown:
        for group in baseline.get("experiments") or []:
            found += group["revs"]
    return found


def test_exp_run_reruns_only_motrv3_stages(repo: Path, experiment: str):
    assert stages_run(experiment) == MOTRV3_STAGES, experiment[-4000:]

    shown = json.loads(run(repo, "dvc", "exp", "show", "--json"))
    groups = [rev["data"]["params"]["params.yaml"]["data"]["tgd"]["groups"] for rev in _experiments(shown)]
    assert groups == [5]
    assert load_params(repo / "params.yaml").tgd.groups == 5  # applied to the workspace
    checkpoint = json.loads((repo / "models" / "motrv3" / "metrics.json").read_text())
    assert checkpoint["ray_train_run"].startswith("motrv3-")


def test_mlflow_holds_training_runs(repo: Path, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name(
        load_params(repo / "params.yaml").mlflow.experiment
    ).experiment_id
    runs = client.search_runs([experiment_id], max_results=100)
    finished = [found for found in runs if found.info.status == "FINISHED" and "method" in found.data.tags]
    by_method: dict[str, list] = {}
    for found in finished:
        by_method.setdefault(found.data.tags["method"], []).append(found)
    assert {"detector", "motr", "motrv3"} <= set(by_method)
    assert len(by_method["detector"]) == 1 and len(by_method["motr"]) == 1  # the experiment reused them
    assert sorted(found.data.params["tgd.groups"] for found in by_method["motrv3"]) == ["4", "5"]
    # The ablation is comparable in MLflow's Compare: each evaluation's scores sit on the training
    # run it scored, beside that run's params and its own loss curve.
    scores = {
        "4": json.loads(run(repo, "git", "show", "HEAD:metrics/motrv3.json")),
        "5": json.loads((repo / "metrics" / "motrv3.json").read_text()),
    }
    for training in by_method["motrv3"]:
        logged = training.data.metrics
        for key in ("HOTA", "AssA", "DetA", "MOTA", "IDF1", "IDS", "FPS"):
            assert logged[key] == pytest.approx(scores[training.data.params["tgd.groups"]][key]), key
        assert 0.0 <= logged["HOTA"] <= 100.0 and logged["FPS"] > 0 and "train/loss" in logged
    for method in ("detector", "motr", "motrv3"):
        run_id = json.loads((repo / "models" / method / "metrics.json").read_text())["mlflow_run_id"]
        assert run_id in {found.info.run_id for found in by_method[method]}
        if method != "detector":  # the track stage names the training run its results came from
            fps = json.loads((repo / "results" / method / "val" / "fps.json").read_text())
            assert fps["training"]["mlflow_run_id"] == run_id, method
        assert "model/checkpoint.pt" in {item.path for item in client.list_artifacts(run_id, "model")}
