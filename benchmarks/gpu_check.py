"""One-command GPU check: the CUDA deformable-attention op, tracker FPS and a training step.

`python -m benchmarks.gpu_check` (or `make gpu-check`) on a CUDA machine:
1. builds the CUDA op as a first use does (`motrv3.ops.extension.load_cuda`), reporting the cache
   directory and the build time, and checks it against a float64 PyTorch reference at the paper's
   shapes (800×1440 input → levels at strides 8/16/32/64, 8 heads, 4 points, head dim 32; the
   encoder's one query per position and the decoder's 300 + 30 queries): forward and backward,
   max abs / relative differences with tolerances; `torch.autograd.gradcheck` in float64;
2. times the op, forward and forward + backward, CUDA kernel vs the grid_sample path (target ≥ 10×);
3. times `motrv3.Tracker.step` per 800×1440 frame, R50 and ConvNeXt-B at paper sizes, random
   weights, 300 detect + 30 track queries, in fp32 (TF32 off), TF32 and autocast bf16 → FPS;
4. times one 5-frame training step (batch 1 clip, R50, full MOTRv3 loss, AdamW) at the largest
   training scale, with and without activation checkpointing, fp32 and bf16, with peak memory;
5. writes one JSON (`benchmarks/results/gpu_check.json`, atomically), prints a short table and
   exits 1 if a numeric check failed (op parity, gradcheck, non-finite outputs or losses, a
   section that raised, a CUDA op that does not build). Speed targets are reported, not enforced.

Runs on a minimal machine: it imports only the model library and its direct dependencies (no
Ray, MLflow, DVC, TrackEval, pydantic or `pipeline`). A total time budget (default 480 s, the
op build included) bounds it: each section has its own share, timing loops stop early at their
deadline and a section with no time left is skipped (and listed as such).
Without CUDA it prints one line and exits 0. `--dry-run` runs every section at tiny sizes on the
PyTorch path on CPU and writes its JSON to the temp directory (or `--out`): the test of the script.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness import RESULTS_DIR, machine_info

RESULTS_PATH = RESULTS_DIR / "gpu_check.json"
DRY_RUN_PATH = Path(tempfile.gettempdir()) / "motrv3_gpu_check_dry_run.json"
TOTAL_BUDGET_S = 480.0  # the 8 minutes, op build included

# Max |candidate − reference| / max |reference| against the float64 reference; fp32 rounding is
# ~1e-7 of that, a wrong index or weight is ~1.
FORWARD_TOLERANCE = 1e-4
BACKWARD_TOLERANCE = 1e-3  # atomics sum gradient contributions in any order
OP_SPEEDUP_TARGET = 10.0
PAPER_FPS_R50 = 10.6  # MOTRv3 Table 6, on the paper's GPU
FPS_TARGET = 50.0  # H100/H200-class goal of the issue

# Share of the total budget each section may use (seconds); the op build comes first, unbounded.
SECTION_LIMITS_S = {
    "op_parity": 60.0,
    "op_gradcheck": 30.0,
    "op_timing": 45.0,
    "inference": 150.0,
    "training": 150.0,
    "compiled_inference": 120.0,
}
SECTIONS = tuple(["op_build", *SECTION_LIMITS_S])


@dataclass
class Plan:
    """Sizes and repeat counts of a run: the paper's on CUDA, tiny ones for `--dry-run` on CPU."""

    device: str
    impl: str  # deformable-attention implementation under test
    image: tuple[int, int]  # inference frame (h, w)
    train_image: tuple[int, int]  # training frame (h, w)
    det_queries: int
    track_queries: int
    heads: int
    points: int
    head_dim: int
    backbones: dict[str, str]  # role -> timm name
    model_overrides: dict[str, Any] = field(default_factory=dict)
    gradcheck_levels: tuple[tuple[int, int], ...] = ((3, 4), (2, 2))
    op_warmup: int = 5
    op_repeats: int = 50
    frame_warmup: int = 3
    frame_repeats: int = 30
    train_warmup: int = 1
    train_repeats: int = 3
    clip_frames: int = 5
    precisions: tuple[str, ...] = ("fp32", "tf32", "bf16")
    train_precisions: tuple[str, ...] = ("fp32", "bf16")


def paper_plan() -> Plan:
    # Training frame: the largest training scale (short side 800, long side ≤ 1536) of a
    # 1920×1080 DanceTrack frame.
    return Plan(
        device="cuda",
        impl="cuda",
        image=(800, 1440),
        train_image=(800, 1422),
        det_queries=300,
        track_queries=30,
        heads=8,
        points=4,
        head_dim=32,
        backbones={"r50": "resnet50", "convnext_b": "convnext_base"},
    )


def dry_run_plan() -> Plan:
    return Plan(
        device="cpu",
        impl="pytorch",
        image=(64, 96),
        train_image=(64, 96),
        det_queries=8,
        track_queries=3,
        heads=8,
        points=4,
        head_dim=32,
        backbones={"r50": "resnet10t", "convnext_b": "convnext_atto"},
        model_overrides=dict(
            d_model=32,
            nheads=2,
            enc_layers=1,
            dec_layers=2,
            dim_feedforward=64,
            enc_n_points=2,
            dec_n_points=2,
        ),
        op_warmup=1,
        op_repeats=2,
        frame_warmup=1,
        frame_repeats=2,
        train_warmup=0,
        train_repeats=1,
        clip_frames=2,  # the second frame carries track queries
        # CPU bf16 autocast cannot feed the inference copy's oneDNN linears (CUDA copies have
        # none), and trains a CPU step several times slower than fp32.
        precisions=("fp32",),
        train_precisions=("fp32",),
    )


class Budget:
    """Wall-clock deadlines: the whole run's, and each section's share of what is left."""

    def __init__(self, total_s: float):
        self.start = time.perf_counter()
        self.end = self.start + total_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def section_deadline(self, limit_s: float) -> float:
        return min(time.perf_counter() + limit_s, self.end)


def share(deadline: float, parts_left: int) -> float:
    """Deadline for the next of `parts_left` parts that split the time until `deadline` evenly."""
    now = time.perf_counter()
    return now + max(0.0, deadline - now) / max(1, parts_left)


def summarise(times: list[float], planned: int) -> dict[str, Any]:
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "repeats": len(times),
        "repeats_planned": planned,
        "times_s": times,
    }


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str, warmup: int, repeats: int, deadline: float) -> dict[str, Any]:
    """Wall time per call (synchronised), `warmup` calls first; at least one timed call, more until
    `repeats` or the deadline."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times: list[float] = []
    while len(times) < repeats and (not times or time.perf_counter() < deadline):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return summarise(times, repeats)


def timed_op(
    fn: Callable[[], Any], device: str, warmup: int, repeats: int, deadline: float
) -> dict[str, Any]:
    """Op time from CUDA events around each call, calls queued back to back (perf_counter on CPU)."""
    if device != "cuda":
        return timed(fn, device, warmup, repeats, deadline)
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    events = []
    while len(events) < repeats and (not events or time.perf_counter() < deadline):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        events.append((start, end))
    torch.cuda.synchronize()
    return summarise([start.elapsed_time(end) / 1000.0 for start, end in events], repeats)


@contextlib.contextmanager
def precision(name: str, device: str) -> Iterator[None]:
    """fp32: TF32 off for matmuls and convolutions; tf32: on; bf16: autocast (TF32 settings as given)."""
    if device != "cuda":
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if name == "bf16" else contextlib.nullcontext()
        with ctx:
            yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if name in ("fp32", "tf32"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = name == "tf32"
    try:
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if name == "bf16" else contextlib.nullcontext()
        with ctx:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def free_memory(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory(device: str) -> dict[str, float]:
    if device == "cuda":
        return {
            "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
            "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
        }
    import resource

    return {"peak_rss_gib_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


# --- 1. the op: build, parity, gradcheck ---------------------------------------------------------
CUDA_EXTENSION = "motrv3_msda_cuda"  # the name motrv3.ops.extension builds the CUDA kernel under


def op_build(plan: Plan) -> dict[str, Any]:
    """Load the CUDA kernel as `impl='auto'` would on first use (building it if not cached)."""
    from torch.utils import cpp_extension

    from motrv3.ops import extension

    result: dict[str, Any] = {
        "nvcc_cuda_home": cpp_extension.CUDA_HOME,
        "ninja": cpp_extension.is_ninja_available(),
        "torch_cuda_arch_list": os.environ.get("TORCH_CUDA_ARCH_LIST"),
    }
    if plan.device != "cuda":
        result.update(note="dry run: the PyTorch path on CPU, nothing to build", ok=True)
        return result
    directory = extension.build_directory(CUDA_EXTENSION)
    library = directory / f"{CUDA_EXTENSION}.so"
    result.update(cache_dir=str(directory), library_present_before=library.exists())
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ops = extension.load_cuda()
    result["seconds"] = time.perf_counter() - start
    result["warnings"] = [str(w.message) for w in caught]
    result["ok"] = ops is not None
    if ops is None:
        result["error"] = "the CUDA kernel did not build: " + "; ".join(result["warnings"] or ["no message"])
    return result


def decoder_inputs(plan: Plan, shapes: torch.Tensor, seed: int = 0) -> list[torch.Tensor]:
    """Decoder-like inputs: 300 + 30 queries, each sampling around its own reference box; some
    points fall outside the map (zero padding) as they do near image borders."""
    gen = torch.Generator().manual_seed(seed)
    queries = plan.det_queries + plan.track_queries
    levels = shapes.shape[0]
    sizes = shapes[:, 0] * shapes[:, 1]
    starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    value = torch.randn(1, int(sizes.sum()), plan.heads, plan.head_dim, generator=gen)
    centres = torch.rand(1, queries, 1, 1, 1, 2, generator=gen)
    spread = torch.rand(1, queries, 1, 1, 1, 2, generator=gen) * 0.3
    offsets = torch.randn(1, queries, plan.heads, levels, plan.points, 2, generator=gen)
    locations = centres + spread * offsets
    weights = torch.randn(1, queries, plan.heads, levels * plan.points, generator=gen).softmax(-1)
    return [value, shapes, starts, locations, weights.view(1, queries, plan.heads, levels, plan.points)]


def op_cases(plan: Plan) -> dict[str, list[torch.Tensor]]:
    """The two shapes of the model's op calls: encoder (one query per position) and decoder."""
    from benchmarks.bench_deform_attn import HEAD_DIM, HEADS, POINTS, encoder_inputs, level_shapes

    assert (plan.heads, plan.points, plan.head_dim) == (HEADS, POINTS, HEAD_DIM)
    shapes = level_shapes(*plan.image)
    return {"encoder": list(encoder_inputs(*plan.image)), "decoder": decoder_inputs(plan, shapes)}


def outputs_and_grads(op: Callable, inputs: list[torch.Tensor], grad_seed: int = 1) -> list[torch.Tensor]:
    value, shapes, starts, locations, weights = inputs
    leaves = [t.detach().clone().requires_grad_() for t in (value, locations, weights)]
    out = op(leaves[0], shapes, starts, leaves[1], leaves[2])
    gen = torch.Generator().manual_seed(grad_seed)
    grad_out = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out)
    return [out.detach(), *torch.autograd.grad(out, leaves, grad_out)]


def differences(reference: torch.Tensor, candidate: torch.Tensor) -> dict[str, float]:
    """max |a − b| and that over max |reference| (the relative difference the tolerances apply to)."""
    diff = float((candidate.double() - reference.double()).abs().max())
    scale = float(reference.abs().max())
    return {"max_abs": diff, "max_rel": diff / scale if scale > 0 else diff}


def op_parity(plan: Plan, candidate: Callable, deadline: float) -> dict[str, Any]:
    """Candidate op (float32) and the grid_sample path (float32) against grid_sample in float64."""
    from motrv3.ops import ms_deform_attn_pytorch

    names = ["output", "grad_value", "grad_locations", "grad_weights"]
    result: dict[str, Any] = {
        "ok": True,
        "tolerances": {"forward": FORWARD_TOLERANCE, "backward": BACKWARD_TOLERANCE},
    }
    for case, inputs in op_cases(plan).items():
        if time.perf_counter() > deadline:
            result[case] = {"skipped": "time budget"}
            continue
        on_device = [t.to(plan.device) for t in inputs]
        as_float64 = [t.double() if t.is_floating_point() else t for t in on_device]
        reference = outputs_and_grads(ms_deform_attn_pytorch, as_float64)
        got = outputs_and_grads(candidate, on_device)
        baseline = outputs_and_grads(ms_deform_attn_pytorch, on_device)
        rows: dict[str, Any] = {"queries": int(inputs[3].shape[1]), "shapes": inputs[1].tolist()}
        for name, ref, cand, base in zip(names, reference, got, baseline, strict=True):
            tolerance = FORWARD_TOLERANCE if name == "output" else BACKWARD_TOLERANCE
            row = differences(ref, cand)
            row["finite"] = bool(torch.isfinite(cand).all())
            row["ok"] = row["finite"] and row["max_rel"] <= tolerance
            row["pytorch_fp32"] = differences(ref, base)  # the reference path's own fp32 rounding
            rows[name] = row
            result["ok"] = result["ok"] and row["ok"]
        result[case] = rows
    return result


def op_gradcheck(plan: Plan, candidate: Callable) -> dict[str, Any]:
    """torch.autograd.gradcheck of the candidate op in float64 on a small shape (two levels)."""
    gen = torch.Generator().manual_seed(3)
    shapes = torch.tensor(plan.gradcheck_levels)
    sizes = shapes[:, 0] * shapes[:, 1]
    starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    heads, dim, queries, points, levels = 2, 3, 2, 2, shapes.shape[0]
    value = torch.randn(1, int(sizes.sum()), heads, dim, generator=gen, dtype=torch.float64)
    locations = (
        torch.rand(1, queries, heads, levels, points, 2, generator=gen, dtype=torch.float64) * 1.3 - 0.15
    )
    weights = torch.rand(1, queries, heads, levels, points, generator=gen, dtype=torch.float64)
    args = [
        value.to(plan.device).requires_grad_(),
        shapes.to(plan.device),
        starts.to(plan.device),
        locations.to(plan.device).requires_grad_(),
        weights.to(plan.device).requires_grad_(),
    ]
    from torch.autograd.gradcheck import GradcheckError

    start = time.perf_counter()
    try:
        passed = torch.autograd.gradcheck(candidate, args)
        error = None
    except GradcheckError as failure:
        passed, error = False, str(failure).strip().splitlines()[0]
    result = {"ok": bool(passed), "seconds": time.perf_counter() - start, "levels": shapes.tolist()}
    if error:
        result["error"] = error
    return result


# --- 2. op timing ----------------------------------------------------------------------------
def op_timing(plan: Plan, deadline: float) -> dict[str, Any]:
    """Forward and forward + backward of the op under test vs the grid_sample path, float32
    (the calls of benchmarks/bench_deform_attn.py)."""
    from benchmarks.bench_deform_attn import op_calls

    impls = [plan.impl] if plan.impl == "pytorch" else [plan.impl, "pytorch"]
    cases = op_cases(plan)
    result: dict[str, Any] = {"target_speedup": OP_SPEEDUP_TARGET}
    parts = len(cases) * len(impls) * 2
    for case, inputs in cases.items():
        on_device = [t.to(plan.device) for t in inputs]
        rows: dict[str, Any] = {"queries": int(inputs[3].shape[1])}
        for impl in impls:
            forward, forward_backward = op_calls(impl, *on_device)
            for phase, fn in (("forward", forward), ("forward_backward", forward_backward)):
                rows[f"{impl}/{phase}"] = timed_op(
                    fn, plan.device, plan.op_warmup, plan.op_repeats, share(deadline, parts)
                )
                parts -= 1
        if plan.impl != "pytorch":
            for phase in ("forward", "forward_backward"):
                speedup = rows[f"pytorch/{phase}"]["median_s"] / rows[f"{plan.impl}/{phase}"]["median_s"]
                rows[f"speedup/{phase}"] = speedup
                rows[f"target_met/{phase}"] = speedup >= OP_SPEEDUP_TARGET
        result[case] = rows
    return result


# --- 3. tracker inference ------------------------------------------------------------------------
def model_config(plan: Plan, backbone: str, **overrides: Any):
    from motrv3 import ModelConfig

    values = dict(backbone=backbone, num_queries=plan.det_queries, deform_attn_impl="auto")
    if plan.impl == "pytorch":
        values["deform_attn_impl"] = "pytorch"
    values.update(plan.model_overrides)
    values.update(overrides)
    return ModelConfig(**values)


def fixed_tracks(plan: Plan, d_model: int, seed: int = 2):
    """`track_queries` live tracks (random content, plausible boxes), as after a few frames of video."""
    from motrv3 import TrackState

    gen = torch.Generator().manual_seed(seed)
    n = plan.track_queries
    boxes = torch.cat(
        [torch.rand(n, 2, generator=gen) * 0.8 + 0.1, torch.rand(n, 2, generator=gen) * 0.1 + 0.02], -1
    )
    state = TrackState(
        content=torch.randn(n, d_model, generator=gen),
        boxes=boxes,
        ids=torch.arange(1, n + 1),
        scores=torch.full((n,), 0.9),
        misses=torch.zeros(n, dtype=torch.long),
    )
    return TrackState(
        *(getattr(state, f).to(plan.device) for f in ("content", "boxes", "ids", "scores", "misses"))
    )


@contextlib.contextmanager
def deform_attn_paths() -> Iterator[dict[str, int] | None]:
    """Count the deformable-attention calls that run a compiled kernel vs the grid_sample path
    (which one `impl='auto'` picks depends on device and dtype)."""
    module = importlib.import_module("motrv3.ops.ms_deform_attn")
    kernel, reference = getattr(module, "_run_kernel", None), getattr(module, "ms_deform_attn_pytorch", None)
    if kernel is None or reference is None:
        yield None
        return
    counts = {"kernel": 0, "pytorch": 0}

    def counted(fn, key):
        def wrapper(*args, **kwargs):
            counts[key] += 1
            return fn(*args, **kwargs)

        return wrapper

    module._run_kernel, module.ms_deform_attn_pytorch = (
        counted(kernel, "kernel"),
        counted(reference, "pytorch"),
    )
    try:
        yield counts
    finally:
        module._run_kernel, module.ms_deform_attn_pytorch = kernel, reference


def tracker_inference(
    plan: Plan,
    role: str,
    deadline: float,
    compile_mode: str | None = None,
    precisions: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """`Tracker.step` on one uint8 frame (upload, normalisation, network, track update, results to
    the host) with `track_queries` live tracks restored before every frame."""
    import numpy as np

    from motrv3 import Tracker, TrackingConfig, build_model
    from motrv3.tracker import preprocess

    free_memory(plan.device)
    torch.manual_seed(0)
    cfg = model_config(plan, plan.backbones[role])
    build_start = time.perf_counter()
    model = build_model(cfg, TrackingConfig())
    height, width = plan.image
    tracker = Tracker(model, TrackingConfig(), size=height, max_size=width, device=plan.device)
    del model
    result: dict[str, Any] = {
        "backbone": cfg.backbone,
        "image": [height, width],
        "queries": {"detect": plan.det_queries, "track": plan.track_queries},
        "parameters_m": sum(p.numel() for p in tracker.model.parameters()) / 1e6,
        "build_s": time.perf_counter() - build_start,
    }
    if compile_mode:
        tracker.model.forward_frame = torch.compile(tracker.model.forward_frame, mode=compile_mode)
        result["compile_mode"] = compile_mode
    frame = np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    tracks = fixed_tracks(plan, cfg.d_model)

    def step():
        tracker.tracks = tracks
        return tracker.step(frame)

    variants = precisions or plan.precisions
    for index, name in enumerate(variants):
        variant_deadline = share(deadline, len(variants) - index)
        if time.perf_counter() > deadline:
            result[name] = {"skipped": "time budget"}
            continue
        with precision(name, plan.device):
            first = time.perf_counter()
            with deform_attn_paths() as paths:
                step()
            first_s = time.perf_counter() - first  # includes compilation with `compile_mode`
            with torch.inference_mode():
                tracker.tracks = tracks
                x, _ = preprocess(frame, height, width, plan.device)
                out = tracker.model.forward_frame(x, tracks)
            finite = bool(torch.isfinite(out.logits).all() and torch.isfinite(out.boxes).all())
            timing = timed(step, plan.device, plan.frame_warmup, plan.frame_repeats, variant_deadline)
        timing.update(
            fps=1.0 / timing["median_s"],
            first_frame_s=first_s,
            outputs_finite=finite,
            ok=finite,
            deform_attn_calls=paths,
            num_track_queries=out.num_track,
        )
        result[name] = timing
    result["best_fps"] = max(
        (v["fps"] for v in result.values() if isinstance(v, dict) and "fps" in v), default=None
    )
    result["goal_met"] = result["best_fps"] is not None and result["best_fps"] >= FPS_TARGET
    result.update(peak_memory(plan.device))
    return result


# --- 4. training step ----------------------------------------------------------------------------
def training_step(plan: Plan, checkpointing: bool, precision_name: str, deadline: float) -> dict[str, Any]:
    """One optimiser step on one clip: `clip_forward` (full MOTRv3 loss) + backward + AdamW."""
    from benchmarks.bench_model import synthetic_clip
    from motrv3 import (
        LossConfig,
        PLDConfig,
        RFSConfig,
        TGDConfig,
        TrackingConfig,
        build_criterion,
        build_model,
        clip_forward,
    )

    torch.manual_seed(0)
    cfg = model_config(plan, plan.backbones["r50"], activation_checkpointing=checkpointing)
    tgd_cfg, tracking_cfg = TGDConfig(), TrackingConfig()
    model = build_model(cfg, tracking_cfg, tgd_cfg).to(plan.device).train()
    criterion = build_criterion(cfg, LossConfig(), RFSConfig(), PLDConfig(), tgd_cfg)
    if hasattr(criterion, "to"):
        criterion.to(plan.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=1e-4)
    clip = synthetic_clip(plan.clip_frames, *plan.train_image)
    clip["images"] = clip["images"].to(plan.device)
    clip["targets"] = [
        {k: v.to(plan.device) if isinstance(v, torch.Tensor) else v for k, v in t.items()}
        for t in clip["targets"]
    ]
    losses: list[float] = []
    steps = 0

    def step():
        nonlocal steps
        generator = torch.Generator().manual_seed(steps)
        steps += 1
        optimizer.zero_grad(set_to_none=True)
        with precision(precision_name, plan.device):
            result = clip_forward(model, criterion, clip, tracking_cfg, generator=generator)
        result.loss.backward()
        optimizer.step()
        losses.append(float(result.loss.detach()))

    free_memory(plan.device)
    timing = timed(step, plan.device, plan.train_warmup, plan.train_repeats, deadline)
    finite = all(math.isfinite(loss) for loss in losses)
    timing.update(
        peak_memory(plan.device),
        checkpointing=checkpointing,
        precision=precision_name,
        image=list(plan.train_image),
        frames=plan.clip_frames,
        losses=losses,
        loss_finite=finite,
        ok=finite,
    )
    return timing


# --- the run ---------------------------------------------------------------------------------------
def environment(plan: Plan) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "machine": machine_info(),
    }
    try:
        import timm

        info["timm"] = timm.__version__
    except ImportError:
        pass
    if plan.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            gpu_capability=f"{props.major}.{props.minor}",
            gpu_memory_gib=props.total_memory / 2**30,
            gpu_count=torch.cuda.device_count(),
        )
    return info


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
    tmp.replace(path)


def run_sections(plan: Plan, args: argparse.Namespace) -> dict[str, Any]:
    from motrv3.ops import ms_deform_attn

    budget = Budget(args.budget)
    result: dict[str, Any] = {
        "check": "gpu_check",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dry_run": args.dry_run,
        "plan": asdict(plan),
        "budget_s": args.budget,
        "environment": environment(plan),
        "sections": {},
    }
    sections = result["sections"]
    failures: list[str] = []
    skipped: list[str] = []
    wanted = set(args.sections or SECTIONS)
    if not args.compile and "compiled_inference" not in (args.sections or ()):
        wanted.discard("compiled_inference")

    def candidate(v, s, i, loc, w):
        return ms_deform_attn(v, s, i, loc, w, impl=plan.impl)

    def run(name: str, fn: Callable[[float], dict[str, Any]]) -> None:
        if name not in wanted:
            return
        limit = SECTION_LIMITS_S.get(name, math.inf)
        if time.perf_counter() >= budget.end:
            sections[name] = {"skipped": "time budget"}
            skipped.append(name)
            if name in ("op_parity", "op_gradcheck"):  # an unverified kernel is no pass
                failures.append(f"{name}: not checked (time budget)")
            return
        started = time.perf_counter()
        try:
            outcome = fn(budget.section_deadline(limit))
        except Exception as error:  # a section that raises is a failed check; the rest still run
            outcome = {
                "ok": False,
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(),
            }
        outcome["section_s"] = time.perf_counter() - started
        sections[name] = outcome
        for label, ok in section_checks(name, outcome):
            if not ok:
                failures.append(label)
        free_memory(plan.device)

    run("op_build", lambda deadline: op_build(plan))
    if plan.device == "cuda" and not sections.get("op_build", {"ok": True}).get("ok"):
        # Without the kernel the op checks have nothing to test; the model still runs on grid_sample.
        for name in ("op_parity", "op_gradcheck", "op_timing"):
            if name in wanted:
                sections[name] = {"skipped": "the CUDA kernel did not build"}
                skipped.append(name)
                wanted.discard(name)
    run("op_parity", lambda deadline: op_parity(plan, candidate, deadline))
    run("op_gradcheck", lambda deadline: op_gradcheck(plan, candidate))
    run("op_timing", lambda deadline: op_timing(plan, deadline))

    def inference(deadline: float) -> dict[str, Any]:
        roles = list(plan.backbones)
        rows: dict[str, Any] = {"targets": {"paper_table6_fps_r50": PAPER_FPS_R50, "goal_fps": FPS_TARGET}}
        for i, role in enumerate(roles):
            if time.perf_counter() > deadline:
                rows[role] = {"skipped": "time budget"}
                continue
            rows[role] = tracker_inference(plan, role, share(deadline, len(roles) - i))
        return rows

    def training(deadline: float) -> dict[str, Any]:
        variants = [(ckpt, p) for p in plan.train_precisions for ckpt in (False, True)]
        rows: dict[str, Any] = {}
        for i, (ckpt, p) in enumerate(variants):
            name = f"{p}/{'checkpointing' if ckpt else 'no_checkpointing'}"
            if time.perf_counter() > deadline:
                rows[name] = {"skipped": "time budget"}
                continue
            try:
                rows[name] = training_step(plan, ckpt, p, share(deadline, len(variants) - i))
            except torch.cuda.OutOfMemoryError as error:  # a size limit of this GPU, not a fault
                rows[name] = {"out_of_memory": str(error).strip().splitlines()[0]}
            free_memory(plan.device)
        return rows

    def compiled(deadline: float) -> dict[str, Any]:
        # bf16 first: the likeliest to reach the FPS goal; each precision compiles anew.
        return {
            "r50": tracker_inference(
                plan,
                "r50",
                deadline,
                compile_mode=args.compile_mode,
                precisions=tuple(p for p in ("bf16", "fp32") if p in plan.precisions),
            )
        }

    run("inference", inference)
    run("training", training)
    run("compiled_inference", compiled)
    for name, outcome in sections.items():
        if "skipped" in outcome and name not in skipped:
            skipped.append(name)
        for key, part in outcome.items():
            if isinstance(part, dict) and "skipped" in part:
                skipped.append(f"{name}/{key}")
    result.update(failures=failures, skipped=skipped, passed=not failures, elapsed_s=budget.elapsed())
    return result


def section_checks(name: str, outcome: dict[str, Any]) -> list[tuple[str, bool]]:
    """(label, passed) of every numeric check in a section's outcome; the compiled variant is a
    measurement only and fails nothing."""
    if name == "compiled_inference":
        return []
    if "error" in outcome and name != "op_build":
        return [(f"{name}: {outcome['error'].strip().splitlines()[0]}", False)]
    if name in ("op_build", "op_parity", "op_gradcheck"):
        return [(f"{name}: {outcome.get('error', 'out of tolerance')}", bool(outcome.get("ok", True)))]
    checks = []
    for key, part in outcome.items():
        if not isinstance(part, dict):
            continue
        rows = part.items() if name.endswith("inference") else [("", part)]
        for variant, row in rows:
            if isinstance(row, dict) and row.get("ok") is False:
                checks.append((f"{name}/{key}/{variant}".rstrip("/") + ": non-finite output or loss", False))
    return checks


def table(result: dict[str, Any]) -> str:
    """A short human summary of the JSON."""
    env, sections = result["environment"], result["sections"]
    lines = [
        f"gpu_check{' (dry run, CPU)' if result['dry_run'] else ''} on {env.get('gpu', 'CPU')}: "
        f"torch {env['torch']}, CUDA {env['torch_cuda']}, cuDNN {env['cudnn']}"
    ]

    def fmt_s(seconds: float) -> str:
        return f"{seconds * 1e3:8.2f} ms" if seconds < 1 else f"{seconds:8.2f} s "

    build = sections.get("op_build", {})
    if "cache_dir" in build:
        before = "a library was cached" if build["library_present_before"] else "nothing cached"
        lines.append(
            f"  op build      {build['seconds']:.1f} s ({before}): {build['cache_dir']}  {_ok(build)}"
        )
    elif build:
        lines.append(f"  op build      {build.get('note') or build.get('skipped') or build.get('error', '')}")
    parity = sections.get("op_parity", {})
    for case in ("encoder", "decoder"):
        rows = parity.get(case)
        if rows and "output" in rows:
            fwd = rows["output"]["max_rel"]
            bwd = max(rows[g]["max_rel"] for g in ("grad_value", "grad_locations", "grad_weights"))
            ok = all(rows[g]["ok"] for g in ("output", "grad_value", "grad_locations", "grad_weights"))
            lines.append(
                f"  op parity     {case:8s} fwd rel {fwd:.1e} (≤ {FORWARD_TOLERANCE:.0e}), "
                f"bwd rel {bwd:.1e} (≤ {BACKWARD_TOLERANCE:.0e})  {'ok' if ok else 'FAIL'}"
            )
    if "op_gradcheck" in sections:
        lines.append(
            f"  op gradcheck  float64 {sections['op_gradcheck'].get('levels')}  {_ok(sections['op_gradcheck'])}"
        )
    for case, rows in sections.get("op_timing", {}).items():
        if not isinstance(rows, dict):
            continue
        for phase in ("forward", "forward_backward"):
            cells = [
                f"{k.split('/')[0]} {fmt_s(v['median_s'])}"
                for k, v in rows.items()
                if k.endswith(f"/{phase}") and isinstance(v, dict)
            ]
            speedup = rows.get(f"speedup/{phase}")
            tail = f"  {speedup:.1f}× (target ≥ {OP_SPEEDUP_TARGET:.0f}×)" if speedup else ""
            lines.append(f"  op time       {case:8s} {phase:16s} " + ", ".join(cells) + tail)
    for section in ("inference", "compiled_inference"):
        for rows in sections.get(section, {}).values():
            if not isinstance(rows, dict) or "backbone" not in rows:
                continue
            for name, row in rows.items():
                if isinstance(row, dict) and "fps" in row:
                    paths = row.get("deform_attn_calls")
                    path = (
                        f" [{paths['kernel']} kernel / {paths['pytorch']} grid_sample op calls]"
                        if paths
                        else ""
                    )
                    lines.append(
                        f"  {'compiled' if section.startswith('compiled') else 'tracker '}      "
                        f"{rows['backbone']:14s} {name:5s} {fmt_s(row['median_s'])}/frame = {row['fps']:7.1f} FPS{path}"
                    )
    for name, row in sections.get("training", {}).items():
        if isinstance(row, dict) and "median_s" in row:
            memory = row.get("peak_allocated_gib", row.get("peak_rss_gib_process"))
            lines.append(f"  train step    {name:28s} {fmt_s(row['median_s'])}, peak {memory:.2f} GiB")
        elif isinstance(row, dict) and "out_of_memory" in row:
            lines.append(f"  train step    {name:28s} does not fit in this GPU's memory")
    for name, section in sections.items():
        if "error" in section:
            lines.append(f"  {name}: {section['error'].strip().splitlines()[0]}")
    if result["skipped"]:
        lines.append(f"  skipped: {', '.join(result['skipped'])}")
    lines.append(
        f"  {'PASSED' if result['passed'] else 'FAILED: ' + '; '.join(result['failures'])} "
        f"in {result['elapsed_s']:.0f} s (budget {result['budget_s']:.0f} s)"
    )
    return "\n".join(lines)


def _ok(section: dict[str, Any]) -> str:
    return "ok" if section.get("ok") else "FAIL"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="every section at tiny sizes, PyTorch path, CPU"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"JSON result (default {RESULTS_PATH.relative_to(RESULTS_DIR.parent.parent)}; dry run: {DRY_RUN_PATH})",
    )
    parser.add_argument(
        "--budget", type=float, default=TOTAL_BUDGET_S, help="total seconds (default %(default)s)"
    )
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="build the CUDA op afresh in a temporary directory (times a first build even if one is cached)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time R50 inference under torch.compile (measurement only)",
    )
    parser.add_argument(
        "--compile-mode", default="reduce-overhead", help="torch.compile mode (reduce-overhead: CUDA graphs)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print(
            f"gpu_check: no CUDA device visible to torch {torch.__version__} "
            f"(CUDA build {torch.version.cuda or 'none'}); nothing to check (--dry-run tests the script on CPU)"
        )
        return 0
    plan = dry_run_plan() if args.dry_run else paper_plan()
    out = args.out or (DRY_RUN_PATH if args.dry_run else RESULTS_PATH)
    if args.rebuild and not args.dry_run:
        os.environ["MOTRV3_EXTENSIONS_DIR"] = tempfile.mkdtemp(prefix="motrv3-gpu-check-build-")
    result = run_sections(plan, args)
    write_json(out, result)
    print(table(result))
    print(f"  → {out}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
