"""`python -m pipeline.mlflow_ui`: the real MLflow server over a real sqlite store with one run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.mlflow_ui import server_command


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, data: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url,
        data=None if data is None else json.dumps(data).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.read()


def test_server_command_binds_loopback_with_one_worker():
    cmd = server_command("sqlite:////tmp/x.db", "/tmp/art", port=5123)
    assert cmd[1] == "server"
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--port") + 1] == "5123"
    assert cmd[cmd.index("--workers") + 1] == "1"
    assert cmd[cmd.index("--backend-store-uri") + 1] == "sqlite:////tmp/x.db"


@pytest.mark.slow
def test_ui_serves_the_store_and_lists_the_run(tmp_path: Path):
    import mlflow

    from pipeline.mlflow_utils import setup_experiment

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = setup_experiment("motrv3", uri, root=tmp_path)
    with mlflow.start_run(run_name="table3-row1") as run:
        mlflow.log_metric("HOTA", 42.5)
    run_id = run.info.run_id

    port = _free_port()
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.mlflow_ui",
            "--port",
            str(port),
            "--artifacts",
            str(tmp_path / "mlruns"),
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = _get(f"{base}/health")
                if status == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not come up: {process.stdout.read().decode()[-2000:]}")
            time.sleep(0.5)
        assert body.strip() == b"OK"
        status, body = _get(f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment_id]})
        runs = json.loads(body)["runs"]
        assert [r["info"]["run_id"] for r in runs] == [run_id]
        assert runs[0]["info"]["run_name"] == "table3-row1"
        assert {m["key"]: m["value"] for m in runs[0]["data"]["metrics"]} == {"HOTA": 42.5}
    finally:
        # The wrapper and the server's workers share one process group: stop all of it.
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass
