"""Where one training step of the CPU profile spends its time (MOTR, one DDP rank's share).

One rank of the cpu profile's tracker training (`train.workers` 2 × `cpus_per_worker` 1): one
5-frame clip per rank and step, 1 torch thread, MOTR from random weights (the components cost
the same from any weights). Each component is timed by wrapping the function the worker calls
(inclusive times, nested ones subtracted where named), after warm-up steps:

- `load`: `ClipDataset[index]` (Parquet read, JPEG decode, augmentation) and `to_device`;
- `backbone`: the batched backbone pass over the clip's frames (forward only);
- `transformer`: `forward_frame` per frame (input projection, encoder, decoder, heads);
- `matching`: the Hungarian solves inside the criterion (`HungarianMatcher.solve`: cost to numpy
  and scipy's `linear_sum_assignment`);
- `criterion`: `frame_loss` without its matching;
- `track_update`: Ψ of Eq. 2 in training (`training_track_update`);
- `clip_forward_rest`: the rest of `clip_forward` (target checks, clip loss);
- `backward`, `optimizer` (gradient clipping + AdamW step);
- `all_reduce`: the step's collectives between 2 processes over gloo on 127.0.0.1 (the used-flag
  and the flat-gradient all-reduce of `all_reduce_gradients`, and the `gather` of the step's loss
  terms), measured in two processes of 1 thread each;
- `report`: one `send` of the step's event to a Ray queue actor (what rank 0 does per step).
"""

from __future__ import annotations

import functools
import os
import socket
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from benchmarks.harness import record, synthetic_dataset
from pipeline.paths import REPO_ROOT


class Timers:
    """Inclusive seconds per named component, accumulated while `active`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.active = False

    def wrap(self, name: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if not self.active:
                return fn(*args, **kwargs)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start

        return timed


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _collectives(rank: int, world_size: int, port: int, numel: int, repeats: int, out) -> None:
    import torch.distributed as dist

    from pipeline.steps.train.distributed import gather

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    flags, flat = torch.ones(200), torch.randn(numel)
    terms = {f"term_{k}": float(k) for k in range(12)}
    times = []
    for index in range(repeats + 2):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(flags)
        dist.all_reduce(flat)
        gather(terms, world_size)
        if index >= 2:
            times.append(time.perf_counter() - start)
    if rank == 0:
        out.put(times)
    dist.destroy_process_group()


def collective_seconds(numel: int, repeats: int) -> list[float]:
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    queue = context.Queue()
    port = _free_port()
    processes = [
        context.Process(target=_collectives, args=(rank, 2, port, numel, repeats, queue)) for rank in range(2)
    ]
    for process in processes:
        process.start()
    times = queue.get(timeout=300)
    for process in processes:
        process.join(timeout=60)
    return times


def report_seconds(repeats: int) -> list[float]:
    from ray.util.queue import Queue

    from pipeline.ray_utils import init_ray
    from pipeline.steps.train.telemetry import send

    ray = init_ray(num_cpus=2)
    try:
        queue = Queue(actor_options={"num_cpus": 0})
        event = {"kind": "step", "terms": {f"term_{k}": float(k) for k in range(12)}, "lrs": [1e-4, 1e-5]}
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            send(queue, event)
            times.append(time.perf_counter() - start)
        return times
    finally:
        ray.shutdown()


def run(args) -> dict:
    import motrv3
    import motrv3.matcher
    import motrv3.runner
    from pipeline.params import load_params
    from pipeline.steps.train.distributed import to_device
    from pipeline.steps.train.methods import method_params
    from pipeline.steps.train.optim import build_optimizer
    from pipeline.steps.train.worker import open_dataset

    quick = getattr(args, "quick", False)
    warmup, steps = (1, 2) if quick else (3, 12)
    torch.set_num_threads(1)  # one DDP rank of the cpu profile
    with tempfile.TemporaryDirectory(prefix="bench-step-") as name:
        tmp = Path(name)
        _, clips = synthetic_dataset(tmp, {"train": 2, "val": 1}, frames=40)
        params = method_params(
            load_params(REPO_ROOT / "params.yaml", ["data.clip_length=5", "train.clip_lengths=[]"]), "motr"
        )
        torch.manual_seed(0)
        components = motrv3.build(params.library_config())  # the one build path, as the worker
        model, criterion = components.model, components.criterion
        optimizer, _ = build_optimizer(
            model,
            params.train.lr,
            params.train.lr_backbone,
            params.train.weight_decay,
            params.train.lr_drop,
            params.train.lr_linear_proj_mult,
        )
        dataset = open_dataset(params, str(clips), None)
        dataset.set_epoch(0)
        timers = Timers()
        # Wrap what the worker calls; restored below so nothing leaks into other benchmarks.
        originals = {
            "backbone": (model.backbone, "forward", model.backbone.forward),
            "transformer": (model, "forward_frame", model.forward_frame),
            "criterion": (criterion, "frame_loss", criterion.frame_loss),
            "matching": (motrv3.matcher.HungarianMatcher, "solve", motrv3.matcher.HungarianMatcher.solve),
            "track_update": (motrv3.runner, "training_track_update", motrv3.runner.training_track_update),
        }
        for component, (owner, attribute, fn) in originals.items():
            wrapped = timers.wrap(component, fn)
            setattr(owner, attribute, staticmethod(wrapped) if isinstance(owner, type) else wrapped)
        per_step: list[dict[str, float]] = []
        try:
            model.train()
            for step in range(warmup + steps):
                timers.seconds.clear()
                timers.active = step >= warmup
                times: dict[str, float] = {}
                start = time.perf_counter()
                clip = to_device(dataset[step % len(dataset)], torch.device("cpu"))
                times["load"] = time.perf_counter() - start
                start = time.perf_counter()
                result = motrv3.clip_forward(model, criterion, clip, params.tracking.to_config())
                times["clip_forward"] = time.perf_counter() - start
                start = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                result.loss.backward()
                times["backward"] = time.perf_counter() - start
                start = time.perf_counter()
                torch.nn.utils.clip_grad_norm_(model.parameters(), params.train.clip_max_norm)
                optimizer.step()
                times["optimizer"] = time.perf_counter() - start
                if timers.active:
                    per_step.append({**times, **timers.seconds})
        finally:
            for owner, attribute, fn in originals.values():
                setattr(owner, attribute, staticmethod(fn) if isinstance(owner, type) else fn)
        numel = sum(p.numel() for p in model.parameters() if p.requires_grad)

    def median(key: str) -> float:
        return statistics.median(step.get(key, 0.0) for step in per_step)

    components = {
        "load": median("load"),
        "backbone": median("backbone"),
        "transformer": median("transformer"),
        "matching": median("matching"),
        "criterion": median("criterion") - median("matching"),
        "track_update": median("track_update"),
        "backward": median("backward"),
        "optimizer": median("optimizer"),
    }
    components["clip_forward_rest"] = max(
        0.0,
        median("clip_forward")
        - components["backbone"]
        - components["transformer"]
        - median("criterion")
        - components["track_update"],
    )
    components["all_reduce"] = statistics.median(collective_seconds(numel, 4 if quick else 20))
    components["report"] = statistics.median(report_seconds(5 if quick else 50))
    total = sum(components.values())
    cases = {
        name: {"median_s": seconds, "share": seconds / total if total > 0 else 0.0}
        for name, seconds in sorted(components.items(), key=lambda item: -item[1])
    }
    return record(
        "train_step",
        __doc__.splitlines()[0],
        cases,
        summary={
            "step_s": total,
            "clips_per_s_per_rank": 1.0 / total if total > 0 else 0.0,
            "parameters": numel,
            "steps_measured": len(per_step),
            "clip_frames": 5,
        },
        quick=quick,
    )
