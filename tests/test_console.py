"""A stage's console: its own lines only, everything else (Ray, warnings, library logs) in logs/<stage>.log;
a failure shows its root cause and the log's path; FPS is steady-state, the first frame's warm-up apart.

The failing-stage test runs the real train stage (a local Ray on 127.0.0.1, Ray Train, MLflow) in
a subprocess, as `dvc repro` does, on the tiny model and data of tests/test_train.py. A successful
training stage's console is checked on the real `dvc repro` of tests/test_pipeline_dvc.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import console
from pipeline.paths import REPO_ROOT

# What Ray prints on a driver's console when nothing filters it (issue 16).
RAY_NOISE = re.compile(
    r"pid=\d+|TrainController|PlacementGroupCleaner|TrainingReport|RayTrainWorker|GetTimeoutError"
    r"|Started a local Ray instance|Traceback|raylet"
)


@pytest.fixture
def log_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(console.LOG_DIR_ENV, str(tmp_path / "logs"))
    monkeypatch.delenv(console.VERBOSE_ENV, raising=False)
    return tmp_path / "logs"


def test_stage_console_keeps_only_the_stage_lines_on_the_console(log_dir, capfd):
    with console.stage_console("demo_stage") as path:
        console.say("step 1 of 1")
        print("a library's print")
        print("a library's complaint", file=sys.stderr)
        os.write(2, b"C++ log line on fd 2\n")
        with console.Progress("epoch 1/1", 3, "steps", live=False) as bar:
            for _ in range(3):
                bar.update()
            bar.set_postfix(loss="1.234")
    out, err = capfd.readouterr()
    lines = out.splitlines()
    assert lines[0] == "▶ demo_stage" and lines[1] == "step 1 of 1"
    assert re.fullmatch(r"epoch 1/1: 3/3 steps, loss 1\.234 \(\d+\.\d s\)", lines[2])
    assert re.fullmatch(rf"demo_stage done in \d+ s · log: {re.escape(str(path))}", lines[3])
    assert len(lines) == 4 and err == ""
    log = path.read_text()
    for text in ("a library's print", "a library's complaint", "C++ log line on fd 2"):
        assert text in log
    assert "step 1 of 1" in log and "epoch 1/1: 3/3 steps" in log  # the console's lines are kept too
    # Everything is restored afterwards.
    print("after")
    os.write(2, b"fd 2 after\n")
    out, err = capfd.readouterr()
    assert out == "after\n" and err == "fd 2 after\n"


def test_failure_shows_the_root_cause_and_the_log(log_dir, capfd):
    def load():
        raise FileNotFoundError("clips/train/manifest.json: no such file")

    with pytest.raises(SystemExit) as caught, console.stage_console("failing"):
        print("noise before the failure")
        try:
            load()
        except FileNotFoundError as error:
            raise RuntimeError("worker group failed") from error
    message = str(caught.value.code)
    assert message.splitlines()[0] == (
        "error: failing failed: FileNotFoundError: clips/train/manifest.json: no such file"
    )
    assert f"full log: {log_dir / 'failing.log'}" in message
    out, err = capfd.readouterr()
    assert "noise" not in out + err and "Traceback" not in out + err
    log = (log_dir / "failing.log").read_text()
    assert "Traceback" in log and "worker group failed" in log and "noise before the failure" in log


def test_root_cause_unwraps_ray_trains_worker_failures():
    """Ray Train V2 raises WorkerGroupError → {rank: UserExceptionWithTraceback(the worker's error)}."""
    from ray.train.v2._internal.exceptions import UserExceptionWithTraceback
    from ray.train.v2.api.exceptions import ControllerError, WorkerGroupError

    inner = RuntimeError("injected fault before global step 0")
    wrapped = UserExceptionWithTraceback(inner, "Traceback (most recent call last):\n...")
    error = WorkerGroupError("Training failed due to worker errors", {1: ValueError("other"), 0: wrapped})
    assert console.root_cause(error) is inner
    assert console.describe(console.root_cause(ControllerError(error))) == (
        "RuntimeError: injected fault before global step 0"
    )


def test_a_stage_exit_message_keeps_its_text(log_dir):
    expected = r"error: data/clips: no converted split\n  full log: "
    with pytest.raises(SystemExit, match=expected), console.stage_console("exit"):
        sys.exit("error: data/clips: no converted split")


def test_verbose_leaves_the_console_alone(log_dir, capfd, monkeypatch):
    monkeypatch.setenv(console.VERBOSE_ENV, "1")
    with console.stage_console("loud") as path:
        print("a library's print")
    assert path is None and not log_dir.exists()
    assert capfd.readouterr().out == "a library's print\n"


# --------------------------------------------------------------------------- FPS and warm-up


def test_fps_is_steady_state_and_the_warm_up_is_apart(tmp_path):
    """A tracker whose first step pays a one-time cost: the FPS leaves it out, the results do not change."""
    import motrv3
    from pipeline.inference import split_tracking as track
    from tests.test_track import make_checkpoint, make_synthetic_split, tiny_params

    params = tiny_params()
    _, clips = make_synthetic_split(tmp_path, params)
    checkpoint = make_checkpoint(tmp_path / "checkpoint.pt", params)
    settings = track.settings_from_params(params, checkpoint)
    sequence = track.list_sequences(clips)[0]
    one_time = 0.5

    class FirstStepPaysOnce(motrv3.Tracker):
        steps = 0

        def step(self, image):
            FirstStepPaysOnce.steps += 1
            if FirstStepPaysOnce.steps == 1:
                time.sleep(one_time)  # what lazy initialisation costs a fresh tracker
            return super().step(image)

    plain = track.build_tracker(settings)
    slow = FirstStepPaysOnce(plain.model, settings.tracking, settings.size, settings.max_size, "cpu")
    warmup = track._warm_up_on(slow, clips, sequence)
    assert FirstStepPaysOnce.steps == 1
    warm = track.track_sequence(slow, clips, sequence)  # the timed frames: steps 2 to 6
    reference = track.track_sequence(track.build_tracker(settings), clips, sequence)
    assert warmup >= one_time and FirstStepPaysOnce.steps == 1 + 5  # the costly step was the warm-up's
    assert warm.frames == 5 and warm.timing()["fps"] == pytest.approx(5 / warm.model_seconds)
    assert (warm.rows == reference.rows).all()  # the warm-up step left no track behind

    summary = track.track_split(settings, clips, tmp_path / "results", progress=False)
    first, *others = track.list_sequences(clips)
    assert summary["warmup_seconds"] > 0 and summary["sequences"][first]["warmup_seconds"] > 0
    assert all(summary["sequences"][name]["warmup_seconds"] == 0 for name in others)
    model_seconds = sum(s["model_seconds"] for s in summary["sequences"].values())
    assert summary["fps"] == pytest.approx(summary["frames"] / model_seconds)
    on_disk = json.loads((tmp_path / "results" / "fps.json").read_text())
    assert on_disk["warmup_seconds"] == summary["warmup_seconds"]


# --------------------------------------------------------------------------- the train stage, for real


def _train_stage(tmp: Path, clips: Path, *extra: str, env: dict | None = None):
    from tests.test_train import TINY

    settings = [
        *TINY,
        "train.workers=1",
        "train.batch_size=1",
        "train.epochs=2",
        "train.max_steps_per_epoch=2",
        "train.validate_every_epochs=0",
        "pld.enabled=false",
        f"train.storage_path={tmp / 'ray'}",
        f"mlflow.tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
        *extra,
    ]
    command = [sys.executable, "-m", "stages.train", "--method", "motrv3", "--no-progress"]
    command += ["--clips-dir", str(clips), "--output-dir", str(tmp / "models" / "motrv3")]
    for item in settings:
        command += ["--set", item]
    run_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), console.LOG_DIR_ENV: str(tmp / "logs")}
    run_env.pop(console.VERBOSE_ENV, None)
    run_env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        command, cwd=REPO_ROOT, env={**run_env, **(env or {})}, capture_output=True, text=True, timeout=900
    )


@pytest.mark.slow
def test_failing_train_stage_shows_its_real_error_first(tmp_path):
    from pipeline.steps.train.worker import FAULT_ENV
    from tests.test_train import make_data

    clips = make_data(tmp_path, frames=3)
    done = _train_stage(tmp_path, clips, "train.max_failures=0", env={FAULT_ENV: "0"})
    assert done.returncode != 0
    shown = (done.stdout + done.stderr).splitlines()
    error = next(i for i, line in enumerate(shown) if line.startswith("error:"))
    assert "RuntimeError: MOTRV3_FAULT_AT_STEP: injected fault before global step 0" in shown[error]
    assert not [line for line in shown if RAY_NOISE.search(line)], shown
    log = tmp_path / "logs" / "train_motrv3.log"
    assert shown[error + 1].strip() == f"full log: {log}"
    assert "Traceback" in log.read_text()
