"""Distributed helpers of the worker loop: gradients averaged over ranks, gathering, per-step seeds,
the host RNG state kept in checkpoints."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


def step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    """A 63-bit seed that depends on (seed, epoch, step, rank) only."""
    digest = hashlib.sha256(f"motrv3/{seed}/{epoch}/{step}/{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {key: (item if key == "meta" else to_device(item, device)) for key, item in value.items()}
    if isinstance(value, list):
        return [to_device(item, device) for item in value]
    return value


def rng_state() -> dict[str, Any]:
    legacy = np.random.get_state()
    return {
        "python": [list(item) if isinstance(item, tuple) else item for item in random.getstate()],
        "numpy": [legacy[0], legacy[1].tolist(), int(legacy[2]), int(legacy[3]), float(legacy[4])],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def all_reduce_gradients(model: torch.nn.Module, world_size: int) -> None:
    """Average gradients over workers in one flat all-reduce.

    Done by hand (the DDP module from `prepare_model` runs under `no_sync`) because a clip is
    several forward passes through the model with frame-dependent unused branches (track
    queries, TGD groups) and optional activation checkpointing, which DDP's per-forward reducer
    does not support; a parameter without a gradient on one rank counts as zero there.
    """
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


def gather(obj: Any, world_size: int) -> list[Any]:
    if world_size == 1:
        return [obj]
    gathered: list[Any] = [None] * world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def mean_terms(dicts: list[dict[str, float]]) -> dict[str, float]:
    keys = sorted({key for item in dicts for key in item})
    return {key: sum(item.get(key, 0.0) for item in dicts) / len(dicts) for key in keys}
