"""Serve the project's MLflow tracking store on loopback: `python -m pipeline.mlflow_ui` (`make mlflow-ui`).

Runs `mlflow server` against `pipeline.mlflow_utils.tracking_uri()` (the repo's sqlite store
unless params or $MLFLOW_TRACKING_URI say otherwise) with the repo's `mlruns/` as artifact root,
one worker, bound to 127.0.0.1. Open http://127.0.0.1:5000, pick the "motrv3" experiment.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from pipeline.entry import command_parser, params_from_args
from pipeline.mlflow_utils import DEFAULT_ARTIFACTS, tracking_uri
from pipeline.paths import REPO_ROOT


def server_command(
    backend_uri: str, artifacts: str | Path, host: str = "127.0.0.1", port: int = 5000
) -> list[str]:
    """The `mlflow server` command line (the `mlflow` next to this Python, else on PATH)."""
    local = Path(sys.executable).with_name("mlflow")
    executable = str(local) if local.exists() else shutil.which("mlflow") or "mlflow"
    return [
        executable, "server",
        "--backend-store-uri", backend_uri,
        "--artifacts-destination", str(artifacts),
        "--host", host,
        "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip


def server_env() -> dict[str, str]:
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    # The GenAI job runner forks ~8 huey consumers; a tracking UI needs none of them.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return env


def main(argv: list[str] | None = None) -> None:
    parser = command_parser("python -m pipeline.mlflow_ui", __doc__, console=False)
    parser.add_argument(
        "--host", default=None, help="bind address (default: params mlflow.ui_host, 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=None, help="port (default: params mlflow.ui_port, 5000)")
    parser.add_argument("--backend-store-uri", default=None, help="tracking store (default: the project's)")
    parser.add_argument(
        "--artifacts", default=str(REPO_ROOT / DEFAULT_ARTIFACTS), help="artifact root (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    params = params_from_args(args)
    host = args.host or params.mlflow.ui_host
    port = args.port or params.mlflow.ui_port
    backend = args.backend_store_uri or tracking_uri(params.mlflow.tracking_uri)
    print(f"MLflow UI: http://{host}:{port}  (store {backend}; Ctrl-C stops it)", flush=True)
    # Become the server: this pid and process group are the server's, so signals reach all of it.
    command = server_command(backend, args.artifacts, host, port)
    os.execvpe(command[0], command, server_env())


if __name__ == "__main__":
    main()
