"""Distributed training of MOTR / MOTRv3 / the PLD detector with Ray Train (MOTRv3 §4.2).

One code path for a laptop CPU, one GPU and a multi-node cluster: a `TorchTrainer` with
`train.workers` workers (`train.use_gpu`, `train.cpus_per_worker`), DDP over NCCL on GPU and gloo
on CPU (Ray Train picks the backend), a local Ray bound to 127.0.0.1 unless `ray.address` /
$RAY_ADDRESS names a cluster.

Resume: the Ray Train run is named `<method>-<hash of the effective params and input data>` under
`train.storage_path` (default `models/.ray_train/`). Re-running with an unchanged config restores
its latest checkpoint (Ray Train V2 semantics); a changed config gets a new name and starts fresh.
`FailureConfig(max_failures=train.max_failures)` restarts a failed worker group from the latest
checkpoint. Every random draw of a step (clip sampling/augmentation in the loader, dropout,
track-query augmentation in `clip_forward`) is seeded from (seed, epoch, step, rank) only, so a
resumed run reaches the same weights as an uninterrupted one.

Fault injection (tests, drills): `MOTRV3_FAULT_AT_STEP=k` makes rank 0 raise before global step
k (0-based) on the first attempt only (a marker file next to the run remembers it). Off by default.

Logging: rank 0 sends its per-step losses/lr/throughput and the per-epoch label-assignment
statistics (merged over workers) to the driver through a Ray queue; the driver draws the progress
bar and is the only writer to MLflow.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from pipeline import paths
from pipeline.params import Params

METHODS = ("motr", "motrv3", "detector")
FAULT_ENV = "MOTRV3_FAULT_AT_STEP"
STATE_FILE = "state.pt"  # inside a Ray Train checkpoint directory
RNG_FILE = "rng.json"
DEFAULT_STORAGE = paths.MODELS_DIR / ".ray_train"
# Sections that do not change the trained weights: changing them must not restart training.
_IDENTITY_EXCLUDE = {
    "mlflow": None,
    "ray": None,
    "track": None,
    "evaluate": None,
    "sweep": None,
    "scaling": None,
    "profile": None,
    "train": {"max_failures", "storage_path", "checkpoint_every_steps"},
}


class TrainingError(RuntimeError):
    """A training run that cannot start (missing input, inconsistent params) or failed."""


# --------------------------------------------------------------------------- params per method


def method_params(params: Params, method: str) -> Params:
    """The effective params of one training stage.

    `motr`: the baseline, MOTR with anchor queries (RFS, PLD and TGD off); `motrv3`: the
    rfs/pld/tgd sections as configured; `detector`: the PLD detector, detection-only with clips
    of one frame and the `detector.*` schedule.
    """
    if method not in METHODS:
        raise TrainingError(f"method: expected one of {METHODS}, got {method!r}")
    effective = params.model_copy(deep=True)
    if method in ("motr", "detector"):
        effective.rfs.enabled = False
        effective.pld.enabled = False
        effective.tgd.enabled = False
    if method == "detector":
        effective.data.clip_length = 1
        effective.train.epochs = params.detector.epochs
        effective.train.lr_drop = params.detector.lr_drop
        effective.train.max_steps_per_epoch = params.detector.max_steps_per_epoch
        effective.train.init_checkpoint = params.detector.init_checkpoint
    return effective


def _identity_view(params: Params) -> dict[str, Any]:
    view = params.as_dict()
    for section, keys in _IDENTITY_EXCLUDE.items():
        if keys is None:
            view.pop(section, None)
        elif isinstance(view.get(section), dict):
            for key in keys:
                view[section].pop(key, None)
    return view


def _fingerprint_dir(root: Path) -> list[tuple[str, int, str]]:
    """(relative path, size, digest of small files) of every file: changes when the data changes."""
    entries = []
    if not root.exists():
        return entries
    if root.is_file():
        return [(root.name, root.stat().st_size, hashlib.sha256(root.read_bytes()).hexdigest()[:16])]
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".tmp")):
        size = path.stat().st_size
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if size <= 1 << 20 else ""
        entries.append((str(path.relative_to(root)), size, digest))
    return entries


def run_name(params: Params, method: str, inputs: list[Path] = ()) -> str:
    """`<method>-<12 hex>`: a hash of the effective params and the input files (not their mtimes)."""
    blob = json.dumps(
        {"method": method, "params": _identity_view(params), "inputs": [_fingerprint_dir(p) for p in inputs]},
        sort_keys=True,
    )
    return f"{method}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict → {'a.b.c': value} (MLflow params)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    """A 63-bit seed that depends on (seed, epoch, step, rank) only."""
    digest = hashlib.sha256(f"motrv3/{seed}/{epoch}/{step}/{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


# --------------------------------------------------------------------------- data


def _open_dataset(params: Params, clips_dir: str, pseudo_labels_dir: str | None):
    from pipeline.data.loader import ClipDataset

    return ClipDataset(
        Path(clips_dir) / params.dataset.train_split,
        params.data,
        seed=params.seed,
        train=True,
        pseudo_labels=pseudo_labels_dir,
        pld_threshold=params.pld.threshold,
        pld_sources=list(params.pld.sources),
    )


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {key: (item if key == "meta" else _to_device(item, device)) for key, item in value.items()}
    if isinstance(value, list):
        return [_to_device(item, device) for item in value]
    return value


# --------------------------------------------------------------------------- checkpoint state


def _rng_state() -> dict[str, Any]:
    import numpy as np

    legacy = np.random.get_state()
    return {
        "python": [list(item) if isinstance(item, tuple) else item for item in random.getstate()],
        "numpy": [legacy[0], legacy[1].tolist(), int(legacy[2]), int(legacy[3]), float(legacy[4])],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def _stats_state(stats) -> dict[str, Any]:
    return {"counts": dict(stats.counts), "slots": stats.slots.clone()}


def _load_stats_state(stats, state: dict[str, Any]) -> None:
    stats.counts = {key: float(value) for key, value in state["counts"].items()}
    stats.slots = state["slots"].clone()


def save_state(directory: Path, state: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(state, directory / STATE_FILE)
    (directory / RNG_FILE).write_text(json.dumps(_rng_state()))


def load_state(directory: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    state = torch.load(Path(directory) / STATE_FILE, map_location=map_location, weights_only=True)
    rng_file = Path(directory) / RNG_FILE
    if rng_file.exists():
        state["rng_python_numpy"] = json.loads(rng_file.read_text())
    return state


# --------------------------------------------------------------------------- per-worker loop


def _load_init_checkpoint(model: torch.nn.Module, path: str) -> None:
    """`train.init_checkpoint`: one of ours, or an official Deformable-DETR/MOTR checkpoint (§4.2)."""
    import motrv3
    from motrv3.checkpoint import read_checkpoint

    try:
        payload = read_checkpoint(path)
    except ValueError:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        motrv3.import_state_dict(model, raw.get("model", raw), "deformable_detr")
        return
    model.load_state_dict(payload["model"], strict=False)


def _all_reduce_gradients(model: torch.nn.Module, world_size: int) -> None:
    """Average gradients over workers in one flat all-reduce.

    Done by hand (the DDP module from `prepare_model` runs under `no_sync`) because a clip is
    several forward passes through the model with frame-dependent unused branches (track
    queries, TGD groups) and optional activation checkpointing, which DDP's per-forward reducer
    does not support; a parameter without a gradient on one rank counts as zero there.
    """
    import torch.distributed as dist

    parameters = [p for p in model.parameters() if p.requires_grad]
    # Which parameters got a gradient on any rank: those unused everywhere stay None, as in
    # single-worker training (AdamW then skips them instead of decaying them).
    used = torch.tensor(
        [p.grad is not None for p in parameters], dtype=torch.float32, device=parameters[0].device
    )
    dist.all_reduce(used)
    parameters = [p for p, flag in zip(parameters, used.tolist(), strict=True) if flag > 0]
    if not parameters:
        return
    for parameter in parameters:
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
    flat = torch.cat([p.grad.reshape(-1) for p in parameters])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for parameter in parameters:
        count = parameter.numel()
        parameter.grad.copy_(flat[offset : offset + count].view_as(parameter.grad))
        offset += count


def _gather(obj: Any, world_size: int) -> list[Any]:
    if world_size == 1:
        return [obj]
    import torch.distributed as dist

    gathered: list[Any] = [None] * world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def _mean_terms(dicts: list[dict[str, float]]) -> dict[str, float]:
    keys = sorted({key for item in dicts for key in item})
    return {key: sum(item.get(key, 0.0) for item in dicts) / len(dicts) for key in keys}


def _send(queue, event: dict[str, Any]) -> None:
    if queue is not None:
        queue.put(event)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """The Ray Train worker: build, restore, train epochs, checkpoint, report."""
    import ray.train
    import ray.train.torch

    import motrv3
    from motrv3.stats import AssignmentStats
    from pipeline.optim import build_optimizer, current_lrs

    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    params = Params.model_validate(config["params"])
    train_cfg = params.train
    queue = config.get("queue")
    detection_only = config["method"] == "detector"
    torch.set_num_threads(max(1, train_cfg.cpus_per_worker))
    motrv3.retain_freed_memory()
    device = ray.train.torch.get_device()

    torch.manual_seed(params.seed)  # the same initial weights on every rank
    model_cfg, tracking_cfg = params.model.to_config(), params.tracking.to_config()
    model = motrv3.build_model(model_cfg, tracking_cfg, params.tgd.to_config())
    criterion = motrv3.build_criterion(
        model_cfg,
        params.loss.to_config(),
        params.rfs.to_config(),
        params.pld.to_config(),
        params.tgd.to_config(),
    )
    if train_cfg.init_checkpoint and ray.train.get_checkpoint() is None:
        _load_init_checkpoint(model, train_cfg.init_checkpoint)
    optimizer, scheduler = build_optimizer(
        model, train_cfg.lr, train_cfg.lr_backbone, train_cfg.weight_decay, train_cfg.lr_drop
    )
    wrapped = ray.train.torch.prepare_model(model)
    module = getattr(wrapped, "module", wrapped)
    if hasattr(criterion, "to"):
        criterion.to(device)

    epoch_stats = AssignmentStats(model_cfg.num_queries)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "global_step": 0, "history": [], "train_seconds": 0.0}
    state.update(clips=0, epoch_terms=[])  # epoch_terms: rank-averaged losses of this epoch's steps so far
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            saved = load_state(Path(directory))  # CPU; load_state_dict copies onto the device
        module.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        for key in ("epoch", "step", "global_step", "history", "train_seconds", "clips", "epoch_terms"):
            state[key] = saved[key]
        if rank == 0 and saved.get("epoch_stats") is not None:
            _load_stats_state(epoch_stats, saved["epoch_stats"])  # merged partial epoch of every rank
        torch.set_rng_state(saved["rng_torch"])
        if "rng_python_numpy" in saved:
            _set_rng_state(saved["rng_python_numpy"])

    dataset = _open_dataset(params, config["clips_dir"], config.get("pseudo_labels_dir"))
    per_worker = train_cfg.batch_size // world_size
    steps_per_epoch = max(1, len(dataset) // train_cfg.batch_size)
    if train_cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, train_cfg.max_steps_per_epoch)
    use_bf16 = device.type == "cuda" and train_cfg.bf16
    fault = config.get("fault") or {}

    if rank == 0:
        start = {"kind": "start", "epoch": state["epoch"], "step": state["step"], "epochs": train_cfg.epochs}
        start.update(global_step=state["global_step"], steps_per_epoch=steps_per_epoch, world_size=world_size)
        _send(queue, start)

    def make_checkpoint_state(next_epoch: int, next_step: int) -> dict[str, Any]:
        return {
            "model": module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": next_epoch,
            "step": next_step,
            "global_step": state["global_step"],
            "history": state["history"],
            "train_seconds": state["train_seconds"],
            "clips": state["clips"],
            "epoch_terms": state["epoch_terms"],
            "rng_torch": torch.get_rng_state(),
            "epoch_stats": None,
        }

    def report_checkpoint(next_epoch: int, next_step: int, metrics: dict[str, Any], merged_stats) -> None:
        # Every rank calls report (it is a barrier); only rank 0 writes the directory.
        if rank == 0:
            with tempfile.TemporaryDirectory(prefix="motrv3-ckpt-") as directory:
                payload = make_checkpoint_state(next_epoch, next_step)
                payload["epoch_stats"] = None if merged_stats is None else _stats_state(merged_stats)
                save_state(Path(directory), payload)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
            _send(queue, {"kind": "checkpoint", "global_step": state["global_step"], "epoch": next_epoch})
        else:
            ray.train.report(metrics, checkpoint=None)

    def merged_epoch_stats():
        parts = _gather(epoch_stats, world_size)
        merged = AssignmentStats(model_cfg.num_queries)
        for part in parts:
            merged.merge(part)
        return merged

    for epoch in range(state["epoch"], train_cfg.epochs):
        dataset.set_epoch(epoch)  # which clips, their intervals and augmentations: (seed, epoch) only
        # Fewer clips than workers (tiny data, overfitting tests): such a rank cycles through all clips.
        indices = dataset.shard(rank, world_size) or dataset.shard(0, 1)
        if not indices:
            raise TrainingError(f"{config['clips_dir']}: no training clips in epoch {epoch}")
        step_terms: list[dict[str, float]] = list(state["epoch_terms"])
        for step in range(state["step"], steps_per_epoch):
            if fault.get("at_step") == state["global_step"] and rank == 0:
                marker = Path(fault["marker"])
                if not marker.exists():
                    marker.parent.mkdir(parents=True, exist_ok=True)
                    marker.write_text(f"fault injected before global step {state['global_step']}\n")
                    raise RuntimeError(
                        f"{FAULT_ENV}: injected fault before global step {state['global_step']}"
                    )
            started = time.perf_counter()
            seed = step_seed(params.seed, epoch, step, rank)
            torch.manual_seed(seed)  # dropout and anything else drawing from the global generator
            generator = torch.Generator().manual_seed(seed)  # track-query augmentation
            batch = [indices[(step * per_worker + k) % len(indices)] for k in range(per_worker)]
            optimizer.zero_grad(set_to_none=True)
            terms: dict[str, float] = {}
            loss_value = 0.0
            sync = wrapped.no_sync() if hasattr(wrapped, "no_sync") else contextlib.nullcontext()
            with sync:
                for index in batch:
                    clip = _to_device(dataset[index], device)
                    autocast = (
                        torch.autocast(device_type="cuda", dtype=torch.bfloat16)
                        if use_bf16
                        else contextlib.nullcontext()
                    )
                    with autocast:
                        result = motrv3.clip_forward(
                            module,
                            criterion,
                            clip,
                            tracking_cfg,
                            generator=generator,
                            detection_only=detection_only,
                        )
                    (result.loss / per_worker).backward()
                    loss_value += float(result.loss.detach()) / per_worker
                    for key, value in result.terms.items():
                        terms[key] = terms.get(key, 0.0) + float(value) / per_worker
                    epoch_stats.update(result.stats)
            if world_size > 1:
                _all_reduce_gradients(module, world_size)
            if train_cfg.clip_max_norm > 0:
                torch.nn.utils.clip_grad_norm_(module.parameters(), train_cfg.clip_max_norm)
            optimizer.step()
            elapsed = time.perf_counter() - started
            terms["loss"] = loss_value
            all_terms = _gather(terms, world_size)
            mean = _mean_terms(all_terms)
            step_terms.append(mean)
            state["global_step"] += 1
            state["train_seconds"] += elapsed
            state["clips"] += train_cfg.batch_size
            state["epoch_terms"] = step_terms
            if rank == 0:
                _send(
                    queue,
                    {
                        "kind": "step",
                        "epoch": epoch,
                        "step": step,
                        "global_step": state["global_step"],
                        "terms": mean,
                        "lrs": current_lrs(optimizer),
                        "clips_per_s": train_cfg.batch_size / elapsed if elapsed > 0 else 0.0,
                    },
                )
            last_step = step + 1 == steps_per_epoch
            every = train_cfg.checkpoint_every_steps
            if every and state["global_step"] % every == 0 and not last_step:
                merged = merged_epoch_stats()
                report_checkpoint(
                    epoch, step + 1, {"epoch": epoch, "global_step": state["global_step"]}, merged
                )
        # End of epoch: merged statistics, lr schedule step, checkpoint.
        merged = merged_epoch_stats()
        epoch_record = {
            "epoch": epoch,
            "global_step": state["global_step"],
            "losses": _mean_terms(step_terms),
            "lrs": current_lrs(optimizer),
            "assignment": merged.summary(),
            "slot_histogram": merged.slot_histogram(),
        }
        state["history"] = [*state["history"], epoch_record]
        scheduler.step()
        epoch_stats.reset()
        state["step"] = 0
        state["epoch_terms"] = []
        metrics = {
            "epoch": epoch,
            "global_step": state["global_step"],
            **{f"loss/{k}": v for k, v in epoch_record["losses"].items()},
        }
        report_checkpoint(epoch + 1, 0, metrics, None)
        if rank == 0:
            _send(queue, {"kind": "epoch", **epoch_record})


# --------------------------------------------------------------------------- driver


def _configure_env() -> None:
    # Faster, quieter Ray Train start-up (shared stack notes); must precede ray.init.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def check_inputs(params: Params, method: str, clips_dir: Path, pseudo_labels_dir: Path | None) -> None:
    split_dir = clips_dir / params.dataset.train_split
    if not split_dir.exists():
        raise TrainingError(
            f"{split_dir}: no training clips (run the `convert` stage first: python -m stages.convert)"
        )
    if pseudo_labels_dir is not None and not pseudo_labels_dir.exists():
        raise TrainingError(
            f"{pseudo_labels_dir}: no pseudo labels, but pld.enabled is true for method {method!r} "
            "(run `python -m stages.pseudo_labels`, or --set pld.enabled=false)"
        )
    train = params.train
    if train.workers < 1:
        raise TrainingError(f"train.workers: must be ≥ 1, got {train.workers}")
    if train.batch_size % train.workers:
        raise TrainingError(
            f"train.batch_size: {train.batch_size} clips do not split evenly over train.workers={train.workers}"
        )
    if train.epochs < 1:
        raise TrainingError(f"train.epochs: must be ≥ 1, got {train.epochs}")


class _ProgressConsumer(threading.Thread):
    """Driver side of the worker queue: progress bar + MLflow logging (the only MLflow writer)."""

    def __init__(self, queue, client, run_id: str, show: bool) -> None:
        super().__init__(daemon=True)
        self.queue, self.client, self.run_id, self.show = queue, client, run_id, show
        self.stop_event = threading.Event()
        self.starts: list[dict[str, Any]] = []
        self.epochs: list[dict[str, Any]] = []
        self.last_step: dict[str, Any] | None = None
        self.bar = None
        self.errors: list[str] = []

    def run(self) -> None:
        from queue import Empty

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
        from tqdm.auto import tqdm

        if self.bar is not None:
            self.bar.close()
        self.bar = tqdm(
            total=total, initial=initial, desc=f"epoch {epoch + 1}/{epochs}", disable=not self.show
        )
        self.bar_epoch = epoch

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
            self.bar.set_postfix(loss=f"{event['terms']['loss']:.3f}", clips_s=f"{event['clips_per_s']:.2f}")
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


def _mlflow_run(params: Params, method: str, name: str, id_file: Path, fresh: bool):
    """The MLflow run of this Ray Train run: resumed runs continue the same MLflow run."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from pipeline.mlflow_utils import setup_experiment, tracking_uri

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
    from mlflow.entities import Param

    for start in range(0, len(items), 100):
        client.log_batch(
            run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in items[start : start + 100]]
        )
    id_file.parent.mkdir(parents=True, exist_ok=True)
    paths.write_text_atomic(id_file, run.info.run_id)
    return client, run.info.run_id


def _listening_addresses(pids: list[int]) -> set[str]:
    import psutil

    addresses = set()
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            for conn in psutil.Process(pid).net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    addresses.add(conn.laddr.ip)
    return addresses


def train(
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
    _configure_env()
    started = time.perf_counter()
    effective = method_params(params, method)
    output_dir = Path(output_dir or paths.MODELS_DIR / method)
    clips_dir = Path(clips_dir).resolve()
    # The pseudo_labels stage writes one folder per split: `<pseudo_labels_dir>/<split>/`.
    split = effective.dataset.train_split
    pld_dir = (Path(pseudo_labels_dir) / split).resolve() if effective.pld.enabled else None
    check_inputs(effective, method, clips_dir, pld_dir)
    inputs = [clips_dir / split] + ([pld_dir] if pld_dir else [])
    if effective.train.init_checkpoint:
        # Workers run elsewhere: hand them an absolute path; a changed file means a fresh run.
        init = Path(effective.train.init_checkpoint).resolve()
        if not init.is_file():
            raise TrainingError(f"train.init_checkpoint: {init} does not exist (run its stage first)")
        effective.train.init_checkpoint = str(init)
        inputs.append(init)
    name = run_name(effective, method, inputs)
    storage = Path(effective.train.storage_path or DEFAULT_STORAGE)
    storage = storage if "://" in str(storage) else storage.resolve()
    run_dir = Path(storage) / name
    if fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    fault_marker = Path(storage) / f"{name}.fault_injected"
    if fresh and fault_marker.exists():
        fault_marker.unlink()

    client, run_id = _mlflow_run(effective, method, name, Path(storage) / f"{name}.mlflow_run_id", fresh)

    from pipeline.ray_utils import init_ray

    ray = init_ray(effective.ray.address, effective.ray.num_cpus)
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Queue

    queue = Queue(actor_options={"num_cpus": 0})
    config = {
        "params": effective.model_dump(mode="json"),
        "method": method,
        "clips_dir": str(clips_dir),
        "pseudo_labels_dir": str(pld_dir) if pld_dir else None,
        "queue": queue,
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
    consumer = _ProgressConsumer(queue, client, run_id, progress)
    consumer.start()
    try:
        result = trainer.fit()
    except Exception:
        client.set_terminated(run_id, status="FAILED")
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

    metrics = _export(effective, method, name, result.checkpoint, output_dir, consumer, run_id, started)
    client.log_artifact(run_id, str(output_dir / "checkpoint.pt"), "model")
    client.log_artifact(run_id, str(output_dir / "metrics.json"), "model")
    client.log_dict(run_id, effective.as_dict(), "model/params.json")
    client.log_metric(run_id, "wall_seconds", metrics["wall_seconds"])
    client.set_terminated(run_id, status="FINISHED")
    return metrics


@contextlib.contextmanager
def _checkpoint_dir(checkpoint) -> Iterator[Path]:
    with checkpoint.as_directory() as directory:
        yield Path(directory)


def _export(effective, method, name, checkpoint, output_dir, consumer, run_id, started) -> dict[str, Any]:
    """Ray Train checkpoint → our checkpoint format and the stage's JSON outputs (all atomic)."""
    import motrv3

    with _checkpoint_dir(checkpoint) as directory:
        state = load_state(directory)
    torch.manual_seed(effective.seed)
    model = motrv3.build_model(
        effective.model.to_config(), effective.tracking.to_config(), effective.tgd.to_config()
    )
    model.load_state_dict(state["model"])
    config = {**effective.as_dict(), "method": method}
    output_dir.mkdir(parents=True, exist_ok=True)
    with paths.atomic_path(output_dir / "checkpoint.pt") as tmp:
        motrv3.save_checkpoint(tmp, model, config, epoch=state["epoch"], global_step=state["global_step"])
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
    }
    paths.write_text_atomic(output_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    stats = {
        "method": method,
        "epochs": [
            {"epoch": item["epoch"], **item["assignment"], "slot_histogram": item["slot_histogram"]}
            for item in history
        ],
    }
    paths.write_text_atomic(output_dir / "assignment_stats.json", json.dumps(stats, indent=2) + "\n")
    return metrics


# --------------------------------------------------------------------------- stage entry points


def stage_parser(prog: str, description: str, methods: tuple[str, ...] | None) -> argparse.ArgumentParser:
    """The shared command line of `stages.train` and `stages.train_detector`."""
    from pipeline.params import add_params_arguments

    parser = argparse.ArgumentParser(prog=prog, description=description)
    if methods:
        parser.add_argument("--method", choices=methods, required=True, help="what to train")
    add_params_arguments(parser)
    parser.add_argument("--output-dir", default=None, help="default: models/<method>")
    parser.add_argument("--clips-dir", default=str(paths.CLIPS_DIR), help="default: %(default)s")
    parser.add_argument(
        "--pseudo-labels-dir", default=str(paths.PSEUDO_LABELS_DIR), help="PLD labels (default: %(default)s)"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="discard this config's checkpoints and start over"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def stage_main(args: argparse.Namespace, method: str) -> dict[str, Any]:
    from pipeline.params import params_from_args

    params = params_from_args(args)
    try:
        metrics = train(
            params,
            method,
            args.output_dir,
            clips_dir=args.clips_dir,
            pseudo_labels_dir=args.pseudo_labels_dir,
            fresh=args.fresh,
            progress=not args.no_progress,
        )
    except TrainingError as error:
        sys.exit(f"error: {error}")
    summary = {k: metrics[k] for k in ("method", "epochs", "global_steps", "clips_per_s", "wall_seconds")}
    print(json.dumps({**summary, "loss": metrics["final_losses"].get("loss")}))
    return metrics
