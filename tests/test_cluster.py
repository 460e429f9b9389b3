"""cluster/: the configs parse and validate, and a real Ray head runs `stages.train` via `ray job submit`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
BIN = Path(sys.executable).parent


def test_ray_up_config_passes_rays_own_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    validate_config(prepare_config(config))  # what `ray up` does first: raises on a config it would reject
    gpu_nodes = [n for n in config["available_node_types"].values() if n.get("resources", {}).get("GPU")]
    assert gpu_nodes and config["head_node_type"] in config["available_node_types"]
    assert any("pip install" in cmd and "motrv3" in cmd for cmd in config["setup_commands"])


def test_rayjob_and_runtime_env_name_the_training_stage():
    job = yaml.safe_load((CLUSTER / "rayjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert job["spec"]["entrypoint"].startswith("python -m stages.train --method motrv3")
    assert "train.use_gpu=true" in job["spec"]["entrypoint"]
    workers = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert workers["resources"]["limits"]["nvidia.com/gpu"] == "1"
    runtime_env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    assert runtime_env["env_vars"]["MLFLOW_TRACKING_URI"].startswith("sqlite:///")
    env = yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())
    assert env["working_dir"] == "."
    assert {".venv/", "data/", "mlruns/"} <= set(env["excludes"])
    readme = (CLUSTER / "README.md").read_text()
    assert "ray job submit" in readme and "--runtime-env cluster/runtime_env.yaml" in readme


def _free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [s.getsockname()[1] for s in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _pids_of_session(pgid: int, temp_dir: str) -> list[int]:
    """Every process of our head: its process group, or a command line naming our temp dir."""
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,args="], capture_output=True, text=True, check=True).stdout
    pids = []
    for line in out.splitlines():
        pid, group, args = (
            line.strip().split(None, 2) if len(line.split(None, 2)) == 3 else (*line.split(), "")
        )
        if int(group) == pgid or temp_dir in args:
            pids.append(int(pid))
    return [p for p in pids if p != os.getpid()]


def _stop(process: subprocess.Popen, temp_dir: str) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    for pid in _pids_of_session(process.pid, temp_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def _start_head(env: dict[str, str]) -> tuple[subprocess.Popen, str, str]:
    temp_dir = tempfile.mkdtemp(prefix="rayc", dir="/tmp")  # short: Ray's unix sockets live under it
    gcs, dashboard, client, agent, agent_grpc, metrics, runtime_env_agent, node_manager, object_manager = (
        _free_ports(9)
    )
    command = [
        str(BIN / "ray"), "start", "--head", "--block", "--disable-usage-stats",
        "--node-ip-address=127.0.0.1", f"--port={gcs}", "--num-cpus=2", "--num-gpus=0",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={runtime_env_agent}", f"--node-manager-port={node_manager}",
        f"--object-manager-port={object_manager}", f"--temp-dir={temp_dir}",
    ]  # fmt: skip
    log_path = Path(temp_dir) / "head.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT
        )
    return process, temp_dir, f"http://127.0.0.1:{dashboard}"


@contextlib.contextmanager
def ray_head(env: dict[str, str], attempts: int = 3):
    """A Ray head on 127.0.0.1 with only free ports, stopped by killing exactly what it started.

    `ray stop` would stop every Ray instance of the machine; `ray start --block` in its own
    session stops its own children on SIGTERM, and the process group catches any stragglers.
    Ray gives its raylet a fixed 30 s to register; on an overloaded machine a start is retried.
    """
    for attempt in range(attempts):
        process, temp_dir, url = _start_head(env)
        log_path = Path(temp_dir) / "head.log"
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            if "Ray runtime started" in log_path.read_text(errors="replace"):
                break
            time.sleep(0.5)
        else:
            log = log_path.read_text(errors="replace")
            _stop(process, temp_dir)
            if attempt == attempts - 1:
                pytest.fail(f"Ray head did not start in {attempts} attempts:\n{log[-3000:]}")
            continue
        break
    try:
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"{url}/api/version", timeout=10).read()
        yield url
    finally:
        _stop(process, temp_dir)


TINY = [
    "synthetic.sequences={train: 1}",
    "synthetic.frames=4",
    "synthetic.width=96",
    "synthetic.height=64",
    "synthetic.min_objects=2",
    "synthetic.max_objects=3",
    "model.backbone=resnet18",
    "model.d_model=32",
    "model.nheads=2",
    "model.enc_layers=1",
    "model.dec_layers=2",
    "model.dim_feedforward=64",
    "model.enc_n_points=1",
    "model.dec_n_points=1",
    "model.num_queries=8",
    "data.clip_length=2",
    "data.train_scales=[64]",
    "data.train_max_size=96",
    "train.batch_size=1",
    "train.epochs=1",
    "train.lr_drop=1",
    "train.max_steps_per_epoch=1",
    "pld.enabled=false",  # no pseudo labels in this tiny job
]


@pytest.mark.slow
def test_ray_job_submit_runs_stages_train_and_logs_to_mlflow(tmp_path: Path):
    import mlflow

    from pipeline.data.synthetic import generate
    from pipeline.params import resolve
    from pipeline.steps.convert import convert_split

    params = resolve({}, TINY)
    generate(params.synthetic, tmp_path / "raw", progress=False)
    convert_split(
        tmp_path / "raw", "train", "synthetic", tmp_path / "clips" / "train", dataset="synthetic",
        row_group_frames=params.data.row_group_frames, lenient=False, progress=False,
    )  # fmt: skip
    # The job's working dir: this checkout's code (as cluster/runtime_env.yaml ships it) + its params.
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "params.yaml").write_text(yaml.safe_dump(params.as_dict()))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runtime_env = yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())
    runtime_env["working_dir"] = str(job_dir)
    runtime_env["env_vars"].update({"MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1"})
    env_file = tmp_path / "runtime_env.yaml"
    env_file.write_text(yaml.safe_dump(runtime_env))

    env = dict(os.environ)
    env.update(
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        PATH=f"{BIN}{os.pathsep}{env['PATH']}",  # the job's `python` is this environment's
    )
    env.pop("RAY_ADDRESS", None)
    with ray_head(env) as address:
        entrypoint = [
            "python", "-m", "stages.train", "--method", "motrv3", "--params", "params.yaml",
            "--set", "train.use_gpu=false", "--set", "train.workers=1",
            "--set", f"train.storage_path={tmp_path / 'ray_train'}",
            "--clips-dir", str(tmp_path / "clips"), "--output-dir", str(tmp_path / "models" / "motrv3"),
            "--no-progress",
        ]  # fmt: skip
        submit = subprocess.run(
            [str(BIN / "ray"), "job", "submit", "--address", address, "--submission-id", "motrv3-tiny",
             "--runtime-env", str(env_file), "--", *entrypoint],
            env=env, capture_output=True, text=True, timeout=480,
        )  # fmt: skip
        logs = submit.stdout + submit.stderr
        assert submit.returncode == 0, logs[-4000:]
        assert "Job 'motrv3-tiny' succeeded" in logs, logs[-4000:]
        with urllib.request.urlopen(f"{address}/api/jobs/motrv3-tiny", timeout=30) as response:
            job = json.loads(response.read())
        assert job["status"] == "SUCCEEDED" and job["entrypoint"].startswith("python -m stages.train")

    metrics = json.loads((tmp_path / "models" / "motrv3" / "metrics.json").read_text())
    assert metrics["method"] == "motrv3" and metrics["global_steps"] == 1
    assert (tmp_path / "models" / "motrv3" / "checkpoint.pt").stat().st_size > 0
    runs = mlflow.MlflowClient(uri).search_runs(
        [e.experiment_id for e in mlflow.MlflowClient(uri).search_experiments()]
    )
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert runs[0].data.tags["method"] == "motrv3" and runs[0].data.params["train.workers"] == "1"
