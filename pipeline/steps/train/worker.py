"""The Ray Train worker loop: build the model and criterion, restore, train epochs, checkpoint, report.

Every random draw of a step (clip sampling/augmentation in the loader, dropout, track-query
augmentation in `clip_forward`) is seeded from (seed, epoch, step, rank) only, so a resumed run
reaches the same weights as an uninterrupted one. Rank 0 sends its per-step losses/lr/throughput
and the per-epoch label-assignment statistics (merged over workers) to the driver's queue.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch
from timm.utils import ModelEmaV3

import motrv3
from motrv3.stats import AssignmentStats
from pipeline.data.loader import ClipDataset, clip_stream
from pipeline.params import Params
from pipeline.runtime import configure_process
from pipeline.steps.train.checkpoints import (
    STATE_FILE,
    load_init_checkpoint,
    load_state,
    load_stats_state,
    save_state,
    stats_state,
)
from pipeline.steps.train.distributed import (
    all_reduce_gradients,
    gather,
    mean_terms,
    set_rng_state,
    step_seed,
    to_device,
)
from pipeline.steps.train.methods import DETECTION_ONLY, TrainingError
from pipeline.steps.train.optim import build_optimizer, current_lrs, set_warmup, warmup_factor
from pipeline.steps.train.telemetry import send
from pipeline.steps.train.validation import can_validate, validate

# Kept for runs where no test code can patch the worker: a drill of `train.max_failures` on a
# cluster, and the tests of the `stages.train` command itself (tests/test_console.py).
FAULT_ENV = "MOTRV3_FAULT_AT_STEP"
# Progress kept in a checkpoint besides the model/optimiser/schedule; `epoch_terms` holds the
# rank-averaged losses of the current epoch's steps so far.
PROGRESS_KEYS = ("epoch", "step", "global_step", "history", "train_seconds", "clips", "epoch_terms")


def frozen_record(model: torch.nn.Module, weights_from: str | None) -> dict[str, Any]:
    """What a run has frozen (kept in its checkpoints) and where its starting weights came from."""
    return {
        "parameters": sorted(name for name, p in model.named_parameters() if not p.requires_grad),
        "stem": model.backbone.stem_frozen,
        "weights_from": weights_from,
    }


def open_dataset(
    params: Params, clips_dir: str, pseudo_labels_dir: str | None, clip_length: int | None = None
) -> ClipDataset:
    data = params.data if clip_length is None else params.data.model_copy(update={"clip_length": clip_length})
    return ClipDataset(
        Path(clips_dir) / params.dataset.train_split,
        data,
        seed=params.seed,
        train=True,
        pseudo_labels=pseudo_labels_dir,
        pld_threshold=params.pld.threshold,
        pld_sources=list(params.pld.sources),
        classes=params.dataset.classes,
    )


class WorkerLoop:
    """One rank's training: `run()` trains from the restored position to `train.epochs`."""

    def __init__(self, config: dict[str, Any]):
        context = ray.train.get_context()
        self.rank, self.world_size = context.get_world_rank(), context.get_world_size()
        self.config = config
        self.params = params = Params.model_validate(config["params"])
        self.train_cfg = params.train
        self.queue = config.get("queue")
        self.detection_only = config["method"] in DETECTION_ONLY
        self.fault = config.get("fault") or {}
        configure_process(self.train_cfg.cpus_per_worker)
        self.device = ray.train.torch.get_device()

        torch.manual_seed(params.seed)  # the same initial weights on every rank
        self.model_cfg, self.tracking_cfg = params.model.to_config(), params.tracking.to_config()
        components = motrv3.build(params.library_config())
        model, self.criterion = components.model, components.criterion
        # A restored run takes what is frozen from its checkpoint (the init file is not read again):
        # it decides the optimiser's parameter groups, so it must come before the optimiser.
        checkpoint = ray.train.get_checkpoint()
        self.checkpoint_path = None if checkpoint is None else checkpoint.path
        saved = None if checkpoint is None else self.read_checkpoint(checkpoint)
        self.frozen = self.start_weights(model) if saved is None else self.restore_frozen(model, saved)
        if self.rank == 0:
            self.log_frozen(model, None if saved is None else saved.get("global_step"))
        self.optimizer, self.scheduler = build_optimizer(
            model,
            self.train_cfg.lr,
            self.train_cfg.lr_backbone,
            self.train_cfg.weight_decay,
            self.train_cfg.lr_drop,
            self.train_cfg.lr_linear_proj_mult,
        )
        self.wrapped = ray.train.torch.prepare_model(model)
        self.module = getattr(self.wrapped, "module", self.wrapped)
        # Every rank holds the same weights after the all-reduce, so only rank 0 (which validates
        # and checkpoints) keeps the average.
        self.ema = (
            ModelEmaV3(self.module, decay=self.train_cfg.ema_decay, use_warmup=True)
            if self.train_cfg.ema_decay > 0 and self.rank == 0
            else None
        )
        if hasattr(self.criterion, "to"):
            self.criterion.to(self.device)

        self.epoch_stats = AssignmentStats(self.model_cfg.num_queries)
        self.state: dict[str, Any] = {
            "epoch": 0,
            "step": 0,
            "global_step": 0,
            "history": [],
            "train_seconds": 0.0,
            "clips": 0,
            "epoch_terms": [],
        }
        if saved is not None:
            self.restore(saved)
        self.datasets: dict[int, ClipDataset] = {}
        self.dataset = self.dataset_for(0)
        self.per_worker = self.train_cfg.batch_size // self.world_size
        steps = max(1, len(self.dataset) // self.train_cfg.batch_size)
        if self.train_cfg.max_steps_per_epoch:
            steps = min(steps, self.train_cfg.max_steps_per_epoch)
        self.steps_per_epoch = steps
        self.use_bf16 = self.device.type == "cuda" and self.train_cfg.bf16

    @property
    def evaluated_model(self) -> torch.nn.Module:
        """What validation scores and the run exports: the weights' moving average when on."""
        return self.module if self.ema is None else self.ema.module

    def clip_length(self, epoch: int) -> int:
        """`train.clip_lengths[epoch]` (the last one repeats; MOTR's sampler lengths), else data.clip_length."""
        lengths = self.train_cfg.clip_lengths
        return lengths[min(epoch, len(lengths) - 1)] if lengths else self.params.data.clip_length

    def dataset_for(self, epoch: int) -> ClipDataset:
        length = self.clip_length(epoch)
        if length not in self.datasets:
            self.datasets[length] = open_dataset(
                self.params, self.config["clips_dir"], self.config.get("pseudo_labels_dir"), length
            )
        return self.datasets[length]

    # ---------------------------------------------------------------- checkpoints

    def start_weights(self, model: torch.nn.Module) -> dict[str, Any]:
        """A new run: load `train.init_checkpoint` (it freezes the stem if it held the backbone)."""
        if self.train_cfg.init_checkpoint:
            load_init_checkpoint(model, self.train_cfg.init_checkpoint)
        sources = [s for s in (self.model_cfg.pretrained, self.train_cfg.init_checkpoint) if s]
        return frozen_record(model, ", ".join(sources) or None)

    def restore_error(self, reason: str) -> TrainingError:
        return TrainingError(
            f"cannot resume training run {self.config.get('run', '')} from its checkpoint "
            f"{self.checkpoint_path}: {reason}. Run the stage again with --fresh to discard this "
            "run's checkpoints and start over."
        )

    def read_checkpoint(self, checkpoint) -> dict[str, Any]:
        try:
            with checkpoint.as_directory() as directory:
                return load_state(Path(directory))  # CPU; load_state_dict copies onto the device
        except Exception as err:  # noqa: BLE001 - any unreadable checkpoint: say which and what to do
            raise self.restore_error(f"it cannot be read ({type(err).__name__}: {err})") from err

    def restore_frozen(self, model: torch.nn.Module, saved: dict[str, Any]) -> dict[str, Any]:
        """Freeze exactly the parameters the checkpointed run had frozen."""
        record = saved.get("frozen")
        if record is None:  # written before the record existed: keep the model as built
            return frozen_record(model, self.model_cfg.pretrained)
        parameters = dict(model.named_parameters())
        unknown = sorted(set(record["parameters"]) - set(parameters))
        if unknown:
            raise self.restore_error(f"its frozen parameters {unknown[:4]} are not in the configured model")
        frozen = set(record["parameters"])
        for name, parameter in parameters.items():
            parameter.requires_grad_(name not in frozen)
        model.backbone.stem_frozen = record["stem"]
        return record

    def log_frozen(self, model: torch.nn.Module, restored_step: int | None) -> None:
        backbone, source = model.backbone, self.frozen["weights_from"]
        if backbone.stem_frozen:  # Deformable DETR's rule: only loaded (pretrained) stems are frozen
            what = f"stem frozen ({', '.join(backbone.stem_names)}; weights from {source})"
        elif source:
            what = f"no layer frozen ({source} held no backbone weights)"
        else:
            what = "trained from scratch, no layer frozen"
        if restored_step is not None:
            what += f"; restored from the checkpoint of global step {restored_step}"
        print(f"[train] backbone {self.model_cfg.backbone}: {what}", flush=True)

    def restore(self, saved: dict[str, Any]) -> None:
        """Continue from Ray Train's latest checkpoint (a restarted worker group or a resume)."""
        try:
            self.module.load_state_dict(saved["model"])
            if self.ema is not None and saved.get("ema") is not None:
                self.ema.module.load_state_dict(saved["ema"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
            for key in PROGRESS_KEYS:
                self.state[key] = saved[key]
        except (KeyError, RuntimeError, ValueError) as err:
            hint = "" if "frozen" in saved else " (the checkpoint predates the record of frozen layers)"
            raise self.restore_error(f"{type(err).__name__}: {err}{hint}") from err
        if self.rank == 0 and saved.get("epoch_stats") is not None:
            load_stats_state(self.epoch_stats, saved["epoch_stats"])  # merged partial epoch of every rank
        torch.set_rng_state(saved["rng_torch"])
        if "rng_python_numpy" in saved:
            set_rng_state(saved["rng_python_numpy"])

    def checkpoint_state(self, next_epoch: int, next_step: int, merged_stats) -> dict[str, Any]:
        return {
            "model": self.module.state_dict(),
            "ema": None if self.ema is None else self.ema.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "frozen": self.frozen,
            **{key: self.state[key] for key in PROGRESS_KEYS if key not in ("epoch", "step")},
            "epoch": next_epoch,
            "step": next_step,
            "rng_torch": torch.get_rng_state(),
            "epoch_stats": None if merged_stats is None else stats_state(merged_stats),
        }

    def report_checkpoint(
        self, next_epoch: int, next_step: int, metrics: dict[str, Any], merged_stats
    ) -> None:
        # Every rank calls report (it is a barrier); only rank 0 writes the directory.
        if self.rank != 0:
            ray.train.report(metrics, checkpoint=None)
            return
        with tempfile.TemporaryDirectory(prefix="motrv3-ckpt-") as directory:
            try:
                save_state(Path(directory), self.checkpoint_state(next_epoch, next_step, merged_stats))
            except OSError as err:  # disk full: the temp dir (and its partial file) goes with the context
                file = err.filename or Path(directory) / STATE_FILE
                raise TrainingError(
                    f"{file}: cannot write the training checkpoint ({err.strerror or err}); free space "
                    "there ($TMPDIR) and run the stage again: it resumes from the last checkpoint"
                ) from err
            try:
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
            except OSError as err:
                raise TrainingError(
                    f"{self.config.get('storage')}: cannot store the training checkpoint of global step "
                    f"{self.state['global_step']} ({err.strerror or err}); free space there and run the "
                    "stage again: it resumes from the last checkpoint"
                ) from err
        send(
            self.queue, {"kind": "checkpoint", "global_step": self.state["global_step"], "epoch": next_epoch}
        )

    def merged_epoch_stats(self) -> AssignmentStats:
        merged = AssignmentStats(self.model_cfg.num_queries)
        for part in gather(self.epoch_stats, self.world_size):
            merged.merge(part)
        return merged

    # ---------------------------------------------------------------- training

    def inject_fault(self) -> None:
        """`MOTRV3_FAULT_AT_STEP`: rank 0 fails once before that global step (a marker remembers it)."""
        if self.fault.get("at_step") != self.state["global_step"] or self.rank != 0:
            return
        marker = Path(self.fault["marker"])
        if marker.exists():
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"fault injected before global step {self.state['global_step']}\n")
        raise RuntimeError(f"{FAULT_ENV}: injected fault before global step {self.state['global_step']}")

    def train_step(self, epoch: int, step: int, clips) -> tuple[dict[str, float], float]:
        """One optimiser step over this rank's share of the batch (the next clips of the epoch's
        `clip_stream`); returns its loss terms and seconds."""
        started = time.perf_counter()
        seed = step_seed(self.params.seed, epoch, step, self.rank)
        torch.manual_seed(seed)  # dropout and anything else drawing from the global generator
        generator = torch.Generator().manual_seed(seed)  # track-query augmentation
        per_worker = self.per_worker
        scheduled = self.scheduler.get_last_lr()
        set_warmup(
            self.optimizer, scheduled, warmup_factor(self.state["global_step"], self.train_cfg.warmup_steps)
        )
        self.optimizer.zero_grad(set_to_none=True)
        terms: dict[str, float] = {}
        loss_value = 0.0
        sync = self.wrapped.no_sync() if hasattr(self.wrapped, "no_sync") else contextlib.nullcontext()
        with sync:
            for _ in range(per_worker):
                clip = to_device(next(clips), self.device)
                autocast = (
                    torch.autocast(device_type="cuda", dtype=torch.bfloat16)
                    if self.use_bf16
                    else contextlib.nullcontext()
                )
                with autocast:
                    result = motrv3.clip_forward(
                        self.module,
                        self.criterion,
                        clip,
                        self.tracking_cfg,
                        generator=generator,
                        detection_only=self.detection_only,
                        batch_frames=self.train_cfg.batch_frames,
                    )
                (result.loss / per_worker).backward()
                loss_value += float(result.loss.detach()) / per_worker
                for key, value in result.terms.items():
                    terms[key] = terms.get(key, 0.0) + float(value) / per_worker
                self.epoch_stats.update(result.stats)
        if self.world_size > 1:
            all_reduce_gradients(self.module, self.world_size)
        if self.train_cfg.clip_max_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.train_cfg.clip_max_norm)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.module, step=self.state["global_step"] + 1)
        set_warmup(self.optimizer, scheduled, 1.0)  # the epoch scheduler sees its own values
        terms["loss"] = loss_value
        return terms, time.perf_counter() - started

    def run_epoch(self, epoch: int) -> None:
        state, train_cfg = self.state, self.train_cfg
        self.dataset = self.dataset_for(epoch)
        self.dataset.set_epoch(epoch)  # which clips, their intervals and augmentations: (seed, epoch) only
        # Fewer clips than workers (tiny data, overfitting tests): such a rank cycles through all clips.
        indices = self.dataset.shard(self.rank, self.world_size) or self.dataset.shard(0, 1)
        if not indices:
            raise TrainingError(f"{self.config['clips_dir']}: no training clips in epoch {epoch}")
        step_terms: list[dict[str, float]] = list(state["epoch_terms"])
        # From the restored step on: a resumed epoch reads the clips the interrupted one had next.
        loader = {"workers": train_cfg.loader_workers, "prefetch": train_cfg.loader_prefetch}
        start, pin = state["step"], self.device.type == "cuda"
        clips = clip_stream(
            self.dataset, indices, self.per_worker, start, self.steps_per_epoch, **loader, pin_memory=pin
        )
        for step in range(state["step"], self.steps_per_epoch):
            self.inject_fault()
            terms, elapsed = self.train_step(epoch, step, clips)
            mean = mean_terms(gather(terms, self.world_size))
            step_terms.append(mean)
            state["global_step"] += 1
            state["train_seconds"] += elapsed
            state["clips"] += train_cfg.batch_size
            state["epoch_terms"] = step_terms
            if self.rank == 0:
                send(
                    self.queue,
                    {
                        "kind": "step",
                        "epoch": epoch,
                        "step": step,
                        "global_step": state["global_step"],
                        "terms": mean,
                        "lrs": current_lrs(self.optimizer),
                        "clips_per_s": train_cfg.batch_size / elapsed if elapsed > 0 else 0.0,
                    },
                )
            last_step = step + 1 == self.steps_per_epoch
            every = train_cfg.checkpoint_every_steps
            if every and state["global_step"] % every == 0 and not last_step:
                metrics = {"epoch": epoch, "global_step": state["global_step"]}
                self.report_checkpoint(epoch, step + 1, metrics, self.merged_epoch_stats())
        self.end_epoch(epoch, step_terms)

    def end_epoch(self, epoch: int, step_terms: list[dict[str, float]]) -> None:
        """Merged statistics, the lr schedule's step, the epoch's checkpoint and report."""
        state = self.state
        merged = self.merged_epoch_stats()
        record = {
            "epoch": epoch,
            "global_step": state["global_step"],
            "losses": mean_terms(step_terms),
            "lrs": current_lrs(self.optimizer),
            "assignment": merged.summary(),
            "slot_histogram": merged.slot_histogram(),
            "clip_length": self.clip_length(epoch),
        }
        every = self.train_cfg.validate_every_epochs
        last = epoch + 1 == self.train_cfg.epochs
        due = every and ((epoch + 1) % every == 0 or last)
        if self.rank == 0 and due and can_validate(self.params, self.config["clips_dir"]):
            started = time.perf_counter()
            record["val"] = validate(
                self.evaluated_model, self.params, self.config["clips_dir"], self.detection_only
            )
            record["val_seconds"] = time.perf_counter() - started
        state["history"] = [*state["history"], record]
        self.scheduler.step()
        self.epoch_stats.reset()
        state["step"] = 0
        state["epoch_terms"] = []
        metrics = {
            "epoch": epoch,
            "global_step": state["global_step"],
            **{f"loss/{k}": v for k, v in record["losses"].items()},
        }
        self.report_checkpoint(epoch + 1, 0, metrics, None)
        if self.rank == 0:
            send(self.queue, {"kind": "epoch", **record})

    def run(self) -> None:
        state = self.state
        if self.rank == 0:
            start = {
                "kind": "start",
                "epoch": state["epoch"],
                "step": state["step"],
                "epochs": self.train_cfg.epochs,
            }
            start.update(
                global_step=state["global_step"],
                steps_per_epoch=self.steps_per_epoch,
                world_size=self.world_size,
            )
            send(self.queue, start)
        for epoch in range(state["epoch"], self.train_cfg.epochs):
            self.run_epoch(epoch)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """The Ray Train worker entry point (`TorchTrainer(train_loop_per_worker, ...)`)."""
    WorkerLoop(config).run()
