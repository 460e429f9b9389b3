"""Training telemetry: the driver-side consumer of the workers' queue (progress bar + MLflow, the
only MLflow writer) and the MLflow run a Ray Train run logs to."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from queue import Empty
from typing import Any

from pipeline import paths
from pipeline.console import Progress, say
from pipeline.mlflow_utils import flatten, setup_experiment, tracking_uri
from pipeline.params import Params

# mlflow is imported where the driver uses it: every Ray Train worker imports this package (for
# `send`), and mlflow would add ~1 s to each worker's start.


def send(queue, event: dict[str, Any]) -> None:
    """A worker's event to the driver (None: no queue, e.g. a worker run outside Ray Train)."""
    if queue is not None:
        queue.put(event)


class ProgressConsumer(threading.Thread):
    """Driver side of the worker queue: progress bar + MLflow logging (the only MLflow writer)."""

    def __init__(self, queue, client, run_id: str, show: bool) -> None:
        """`show`: a live bar per epoch on a terminal; False: one plain line per epoch."""
        super().__init__(daemon=True)
        self.queue, self.client, self.run_id, self.show = queue, client, run_id, show
        self.stop_event = threading.Event()
        self.starts: list[dict[str, Any]] = []
        self.epochs: list[dict[str, Any]] = []
        self.last_step: dict[str, Any] | None = None
        self.bar = None
        self.errors: list[str] = []

    def run(self) -> None:
        while True:
            try:
                event = self.queue.get(timeout=0.2)
            except Empty:
                if self.stop_event.is_set():
                    break
                continue
            except Exception as error:  # the queue actor is gone: nothing more to read
                self.errors.append(repr(error))
                break
            try:
                self.handle(event)
            except Exception as error:  # never let logging kill training
                self.errors.append(repr(error))
        if self.bar is not None:
            self.bar.close()

    def _new_bar(self, epoch: int, epochs: int, total: int, initial: int) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = Progress(
            f"epoch {epoch + 1}/{epochs}", total, unit="steps", initial=initial, live=self.show
        )
        self.bar_epoch = epoch
        self.bar_losses: list[float] = []
        self.bar_step_seconds = 0.0  # per clip: 1 / clips_per_s summed, for the epoch's overall rate

    def handle(self, event: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        kind = event["kind"]
        if kind == "start":
            self.starts.append(event)
            self.epochs_total, self.steps_per_epoch = event["epochs"], event["steps_per_epoch"]
            if event["epoch"] < event["epochs"]:
                self._new_bar(event["epoch"], event["epochs"], event["steps_per_epoch"], event["step"])
        elif kind == "step":
            self.last_step = event
            if self.bar is None or self.bar_epoch != event["epoch"]:
                self._new_bar(event["epoch"], self.epochs_total, self.steps_per_epoch, event["step"])
            self.bar.update(1)
            self.bar_losses.append(event["terms"]["loss"])
            self.bar_step_seconds += 1.0 / event["clips_per_s"] if event["clips_per_s"] > 0 else 0.0
            rate = len(self.bar_losses) / self.bar_step_seconds if self.bar_step_seconds > 0 else 0.0
            mean_loss = sum(self.bar_losses) / len(self.bar_losses)
            self.bar.set_postfix(loss=f"{mean_loss:.3f}", clips_s=f"{rate:.2f}")
            if self.bar.count >= self.steps_per_epoch:
                self.bar.close()  # the epoch's line is printed when its last step arrives
            now = int(time.time() * 1000)
            step = event["global_step"]
            values = {f"train/{k}": v for k, v in event["terms"].items()}
            values.update(event["lrs"])
            values["train/clips_per_s"] = event["clips_per_s"]
            values["epoch"] = event["epoch"]
            self.client.log_batch(
                self.run_id,
                metrics=[Metric(k, float(v), now, step) for k, v in values.items() if math.isfinite(v)],
            )
        elif kind == "epoch":
            self.epochs.append(event)
            now = int(time.time() * 1000)
            values = {**event["assignment"], **{f"epoch/{k}": v for k, v in event["losses"].items()}}
            values.update({f"val/{k}": v for k, v in event.get("val", {}).items()})  # learning curve
            if "val" in event:
                shown = "  ".join(f"{k} {v:.1f}" for k, v in event["val"].items())
                say(f"epoch {event['epoch'] + 1} validation: {shown}")
            self.client.log_batch(
                self.run_id,
                metrics=[
                    Metric(k, float(v), now, event["epoch"]) for k, v in values.items() if math.isfinite(v)
                ],
            )
            self.client.log_dict(
                self.run_id,
                {
                    "epoch": event["epoch"],
                    "assignment": event["assignment"],
                    "slot_histogram": event["slot_histogram"],
                },
                f"assignment/epoch_{event['epoch']:03d}.json",
            )


def mlflow_run(params: Params, method: str, name: str, id_file: Path, fresh: bool):
    """The MLflow run of this Ray Train run: resumed runs continue the same MLflow run."""
    import mlflow
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(params.mlflow.tracking_uri)
    # A sqlite store keeps its artifacts next to the database (the repo root for the default store).
    root = Path(uri[len("sqlite:///") :]).parent if uri.startswith("sqlite:///") else None
    experiment_id = setup_experiment(params.mlflow.experiment, uri, root)
    client = MlflowClient()
    if id_file.exists() and not fresh:
        run_id = id_file.read_text().strip()
        try:
            client.get_run(run_id)
            client.update_run(run_id, status="RUNNING")
            return client, run_id
        except mlflow.exceptions.MlflowException:
            pass  # the store was reset: start a new MLflow run
    run = client.create_run(experiment_id, run_name=name, tags={"method": method, "ray_train_run": name})
    flat = {
        k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in flatten(params.as_dict()).items()
    }
    items = list(flat.items())
    for start in range(0, len(items), 100):
        client.log_batch(
            run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in items[start : start + 100]]
        )
    id_file.parent.mkdir(parents=True, exist_ok=True)
    paths.write_text_atomic(id_file, run.info.run_id)
    return client, run.info.run_id
