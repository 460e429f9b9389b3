"""The train step: MOTR / MOTRv3 / the PLD detector with Ray Train (MOTRv3 §4.2), driven from here.

One code path for a laptop CPU, one GPU and a multi-node cluster: a `TorchTrainer` with
`train.workers` workers (`train.use_gpu`, `train.cpus_per_worker`; `auto`: every GPU of the Ray
cluster, `resolve_scaling`, the stage's first line), DDP over NCCL on GPU and gloo
on CPU (Ray Train picks the backend), a local Ray bound to 127.0.0.1 unless `ray.address` /
$RAY_ADDRESS names a cluster. The workers run `pipeline.steps.train.worker`.

Resume: the Ray Train run is named `<method>-<hash of the effective params and input data>`
(`pipeline.identity.work_key`) under `train.storage_path` (default `models/.ray_train/`).
Re-running with an unchanged config restores its latest checkpoint (Ray Train V2 semantics); a
changed config gets a new name and starts fresh. `FailureConfig(max_failures=train.max_failures)`
restarts a failed worker group from the latest checkpoint. A checkpoint holds which parameters
the run has frozen, so a restored run trains the same parameter groups as the one that wrote it.

Fault injection (tests, drills): `MOTRV3_FAULT_AT_STEP=k` makes rank 0 raise before global step
k (0-based) on the first attempt only (a marker file next to the run remembers it). Off by default.

Logging: rank 0 sends its per-step losses/lr/throughput and the per-epoch statistics to the driver
through a Ray queue; the driver (`pipeline.steps.train.telemetry`) draws the progress bar and is
the only writer to MLflow.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import ray
import torch
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.util.queue import Queue

import motrv3
from motrv3.backbone import WEIGHT_SOURCES, missing_weights_error
from pipeline import paths
from pipeline.console import say
from pipeline.identity import work_key
from pipeline.params import Params
from pipeline.ray_utils import init_ray
from pipeline.steps.train.checkpoints import load_state
from pipeline.steps.train.methods import TrainingError, check_inputs, method_params
from pipeline.steps.train.telemetry import ProgressConsumer, mlflow_run
from pipeline.steps.train.worker import FAULT_ENV, train_loop_per_worker

DEFAULT_STORAGE = paths.MODELS_DIR / ".ray_train"
# Sections that do not change the trained weights: changing them must not restart training.
IDENTITY_EXCLUDE = {
    "mlflow": None,
    "ray": None,
    "track": None,
    "evaluate": None,
    "sweep": None,
    "scaling": None,
    "profile": None,
    "train": {"max_failures", "storage_path", "checkpoint_every_steps"},
    # inference only (the other tracking keys also shape training)
    "tracking": {"birth_overlap", "track_overlap"},
}


def run_name(params: Params, method: str, inputs: list[Path] = ()) -> str:
    """`<method>-<12 hex>`: the effective params that change the weights, and the input files."""
    return work_key(method, params, inputs, exclude=IDENTITY_EXCLUDE)


def prepare_inputs(
    effective: Params, method: str, clips_dir: Path, pseudo_labels_dir: Path
) -> tuple[Path | None, list[Path]]:
    """Check the inputs; returns the PLD label folder (None without PLD) and every input of the run.

    `train.init_checkpoint` becomes absolute in `effective` (workers run elsewhere); a changed file
    means a fresh run.
    """
    # The pseudo_labels stage writes one folder per split: `<pseudo_labels_dir>/<split>/`.
    split = effective.dataset.train_split
    pld_dir = (Path(pseudo_labels_dir) / split).resolve() if effective.pld.enabled else None
    check_inputs(effective, method, clips_dir, pld_dir)
    inputs = [clips_dir / split] + ([pld_dir] if pld_dir else [])
    if effective.model.pretrained:
        backbone_file = Path(effective.model.pretrained).resolve()
        if not backbone_file.is_file():  # fail here, not in every Ray worker
            raise TrainingError(str(missing_weights_error("model.pretrained", backbone_file)))
        effective.model.pretrained = str(backbone_file)
        inputs.append(backbone_file)
    if effective.train.init_checkpoint:
        init = Path(effective.train.init_checkpoint).resolve()
        if not init.is_file():
            if init.name in WEIGHT_SOURCES:  # an official file: say where it comes from
                raise TrainingError(str(missing_weights_error("train.init_checkpoint", init)))
            raise TrainingError(f"train.init_checkpoint: {init} does not exist (run its stage first)")
        effective.train.init_checkpoint = str(init)
        inputs.append(init)
    return pld_dir, inputs


def resolve_scaling(train) -> str:
    """`train.workers: auto` / `train.use_gpu: auto` from the (started) Ray cluster's resources, in
    place: one worker per GPU, as many as split `train.batch_size` evenly; 1 worker without GPUs.
    Returns the line the stage prints first: what it found and what it will run."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    found = f"Ray cluster: {gpus} GPU{'' if gpus == 1 else 's'}, {cpus} CPUs"
    auto = train.workers == "auto"
    if train.use_gpu == "auto":
        train.use_gpu = gpus > 0
    if auto and train.use_gpu and not gpus:
        raise TrainingError(
            f"train.workers: auto found no GPU ({found}) but train.use_gpu is true; set train.use_gpu "
            "to auto or false, or connect to a GPU cluster (ray.address / $RAY_ADDRESS)"
        )
    if auto:  # the largest divisor of the batch that fits the GPUs (8 GPUs, batch 8: §4.2)
        fits = min(gpus, train.batch_size) if train.use_gpu else 1
        train.workers = max(n for n in range(1, fits + 1) if train.batch_size % n == 0)
    kind = "GPU" if train.use_gpu else "CPU"
    line = (
        f"{found} → {train.workers} {kind} worker{'' if train.workers == 1 else 's'} × "
        f"{train.cpus_per_worker} CPU, {train.batch_size // train.workers} clip(s) each of the batch of "
        f"{train.batch_size}"
    )
    if train.use_gpu and train.workers > gpus:
        line += f"; waits for {train.workers} GPUs (train.workers={train.workers})"
    elif auto and train.use_gpu and train.workers < gpus:
        line += f"; {gpus - train.workers} GPUs idle: train.batch_size={train.batch_size} does not split over more"
    elif auto and not train.use_gpu:
        line += "; no GPU: training on the CPU"
    return line


def run(
    params: Params,
    method: str,
    output_dir: str | Path | None = None,
    *,
    clips_dir: str | Path = paths.CLIPS_DIR,
    pseudo_labels_dir: str | Path = paths.PSEUDO_LABELS_DIR,
    fresh: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train `method` with Ray Train; write checkpoint.pt, metrics.json (+ assignment_stats.json).

    Returns the metrics written to `metrics.json`.
    """
    started = time.perf_counter()
    effective = method_params(params, method)
    output_dir = Path(output_dir or paths.MODELS_DIR / method)
    clips_dir = Path(clips_dir).resolve()
    pld_dir, inputs = prepare_inputs(effective, method, clips_dir, Path(pseudo_labels_dir))
    init_ray(effective.ray.address, effective.ray.num_cpus)
    say(resolve_scaling(effective.train))  # before naming the run: the resolved count is part of it
    name = run_name(effective, method, inputs)
    storage = Path(effective.train.storage_path or DEFAULT_STORAGE)
    storage = storage if "://" in str(storage) else storage.resolve()
    run_dir = Path(storage) / name
    if fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    fault_marker = Path(storage) / f"{name}.fault_injected"
    if fresh and fault_marker.exists():
        fault_marker.unlink()

    client, run_id = mlflow_run(effective, method, name, Path(storage) / f"{name}.mlflow_run_id", fresh)
    queue = Queue(actor_options={"num_cpus": 0})
    config = {
        "params": effective.model_dump(mode="json"),
        "method": method,
        "clips_dir": str(clips_dir),
        "pseudo_labels_dir": str(pld_dir) if pld_dir else None,
        "queue": queue,
        "run": name,
        "storage": str(run_dir),
    }
    if os.environ.get(FAULT_ENV):
        config["fault"] = {"at_step": int(os.environ[FAULT_ENV]), "marker": str(fault_marker)}
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(
            num_workers=effective.train.workers,
            use_gpu=effective.train.use_gpu,
            resources_per_worker={"CPU": effective.train.cpus_per_worker},
        ),
        run_config=RunConfig(
            name=name,
            storage_path=str(storage),
            failure_config=FailureConfig(max_failures=effective.train.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    consumer = ProgressConsumer(queue, client, run_id, progress)
    consumer.start()
    try:
        result = trainer.fit()
    except Exception as error:
        client.set_terminated(run_id, status="FAILED")
        ours = worker_training_error(error)
        if ours is not None:  # the workers' own diagnosis (a restore or a write that cannot work)
            raise TrainingError(str(ours)) from error
        raise
    finally:
        consumer.stop_event.set()
        consumer.join(timeout=30)
        with contextlib.suppress(Exception):
            ray.kill(queue.actor)
    if result.error is not None:
        client.set_terminated(run_id, status="FAILED")
        raise TrainingError(f"training {name} failed: {result.error}") from result.error
    if result.checkpoint is None:
        raise TrainingError(f"training {name} finished without a checkpoint")

    try:
        metrics = export(effective, method, name, result.checkpoint, output_dir, consumer, run_id, started)
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.log_artifact(run_id, str(output_dir / "checkpoint.pt"), "model")
    client.log_artifact(run_id, str(output_dir / "metrics.json"), "model")
    client.log_dict(run_id, effective.as_dict(), "model/params.json")
    client.log_metric(run_id, "wall_seconds", metrics["wall_seconds"])
    client.set_terminated(run_id, status="FINISHED")
    return metrics


def worker_training_error(error: BaseException) -> TrainingError | None:
    """A `TrainingError` a worker raised, from Ray Train's `WorkerGroupError`, else None."""
    failures = getattr(error, "worker_failures", None) or {}
    for rank in sorted(failures):
        if isinstance(failures[rank], TrainingError):
            return failures[rank]
    return None


def write_outputs(output_dir: Path, writers: dict[str, Any]) -> None:
    """Write each `name: write(path)` to a temp sibling, then rename them all: a failed write (a full
    disk) replaces none of the outputs, and the error names the file being written."""
    with contextlib.ExitStack() as stack:
        for file_name, write in writers.items():
            final = output_dir / file_name
            try:
                write(stack.enter_context(paths.atomic_path(final)))
            except OSError as err:  # ENOSPC, EDQUOT, EIO: what the OS said, with the file
                raise TrainingError(
                    f"{final}: cannot write it ({err.strerror or err}); none of the outputs in "
                    f"{output_dir} was replaced. Free space there and run the stage again (the "
                    "finished training's checkpoints are kept)"
                ) from err


def export(effective, method, name, checkpoint, output_dir, consumer, run_id, started) -> dict[str, Any]:
    """Ray Train checkpoint → our checkpoint format and the stage's JSON outputs (all atomic)."""
    with checkpoint.as_directory() as directory:
        state = load_state(Path(directory))
    torch.manual_seed(effective.seed)
    model = motrv3.build(effective.library_config()).model
    model.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
    config = {**effective.as_dict(), "method": method}
    output_dir.mkdir(parents=True, exist_ok=True)

    def write_checkpoint(tmp: Path) -> None:
        motrv3.save_checkpoint(
            tmp,
            model,
            config,
            epoch=state["epoch"],
            global_step=state["global_step"],
            # The track/evaluate stages log their scores onto this MLflow run (`training_record`).
            training={"method": method, "ray_train_run": name, "mlflow_run_id": run_id},
        )

    history = state["history"]
    last = history[-1] if history else {}
    starts = consumer.starts
    metrics = {
        "method": method,
        "ray_train_run": name,
        "mlflow_run_id": run_id,
        "epochs": state["epoch"],
        "global_steps": state["global_step"],
        "final_losses": last.get("losses", {}),
        "loss_per_epoch": [item["losses"].get("loss") for item in history],
        "clips": state["clips"],
        "train_seconds": state["train_seconds"],
        "clips_per_s": state["clips"] / state["train_seconds"] if state["train_seconds"] > 0 else 0.0,
        "wall_seconds": time.perf_counter() - started,
        "resumed_from_step": starts[0]["global_step"] if starts and starts[0]["global_step"] > 0 else None,
        "worker_group_starts": len(starts),
        "world_size": starts[0]["world_size"] if starts else effective.train.workers,
        "val": last.get("val", {}),  # the last validation: detector AP50/recall, tracker HOTA/…
    }
    stats = {
        "method": method,
        "epochs": [
            {"epoch": item["epoch"], **item["assignment"], "slot_histogram": item["slot_histogram"]}
            for item in history
        ],
    }
    write_outputs(
        output_dir,
        {
            "checkpoint.pt": write_checkpoint,
            "metrics.json": lambda tmp: tmp.write_text(json.dumps(metrics, indent=2) + "\n"),
            LEARNING_CURVE: lambda tmp: tmp.write_text(learning_curve_text(history)),
            "assignment_stats.json": lambda tmp: tmp.write_text(json.dumps(stats, indent=2) + "\n"),
        },
    )
    return metrics


LEARNING_CURVE = "learning_curve.csv"  # DVC plots: models/<method>/learning_curve.csv


def learning_curve_text(history: list[dict[str, Any]]) -> str:
    """One row per epoch: global step, mean loss, the label-assignment and tracking statistics
    (`motrv3.stats`: Fig. 2(d) shares, Fig. 6 misalignment, tracks per label, duplicates, track
    scores) and the validation metrics when the epoch had them."""
    keys = sorted({key for item in history for key in item.get("val", {})})
    assign_keys = sorted({key for item in history for key in item.get("assignment", {})})
    names = [key.removeprefix("assign/") for key in assign_keys]
    lines = [",".join(["epoch", "global_step", "clip_length", "loss", *names, *keys])]
    for item in history:
        val, assignment = item.get("val", {}), item.get("assignment", {})
        values = [
            item["epoch"] + 1,
            item["global_step"],
            item.get("clip_length", ""),
            item["losses"].get("loss"),
        ]
        values += [round(assignment[key], 4) if key in assignment else "" for key in assign_keys]
        values += [round(val[key], 3) if key in val else "" for key in keys]
        lines.append(",".join("" if v is None else str(v) for v in values))
    return "\n".join(lines) + "\n"
