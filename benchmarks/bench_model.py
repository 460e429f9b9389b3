"""Full-model speed: per-frame inference latency and one 5-frame training step, before vs after.

The full configuration (`ModelConfig` defaults: ResNet-50, 6+6 layers, 4 levels, box refinement,
d_model 256), random weights, CPU, 10 anchor queries (MOTRv2's setting; 300 queries is a secondary
case). Each case runs in its own process (its
peak memory is its own) with the same seed, hence the same weights and inputs.
Inference, `forward_frame` on one image without track queries: `before` is the network as trained
with the default allocator; `after` runs, in alternation so both see the same load, the same
network (`reference`) and its `motrv3.optimize_for_inference` copy (`optimized`: batch norm
folded, channels_last, oneDNN linears), with `pipeline.runtime.retain_freed_memory()` as the
pipeline's entry points call it. `pytorch_op` cases use the grid_sample deformable attention (the
public MOTRv2 code's formulation): the like-for-like reference, measured in the same run, that the
ratios compare against (never times measured elsewhere).
Training: the full MOTRv3 loss (RFS, PLD, TGD defaults) on a 5-frame 320×576 clip, forward +
backward + AdamW step, with and without activation checkpointing.
`roofline`: dense FLOPs of each measurement over this machine's best GEMM/convolution throughput,
the time no implementation of this network can beat here at fp32.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from benchmarks.harness import load_average, machine_info, record

INFERENCE_SIZES = [(320, 576), (800, 1440)]
TRAIN_SIZE = (320, 576)
REFERENCE_QUERIES = 10  # MOTRv2's anchor-query count
SECONDARY_QUERIES = 300
CLIP_FRAMES = 5
INFERENCE_ROUNDS = 2
OBJECTS = 8
# Ratios within one run against the grid_sample formulation (`pytorch_op`, the same network).
TARGETS = {"inference_speedup_optimized_over_pytorch_op": 2.0, "train_time_ratio_vs_pytorch_op": 0.7}


def synthetic_clip(frames: int, height: int, width: int, seed: int = 0) -> dict:
    """A clip of the data contract: OBJECTS boxes drifting across frames, pseudo labels near them."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    centres = torch.rand(OBJECTS, 2, generator=gen) * 0.6 + 0.2
    sizes = torch.rand(OBJECTS, 2, generator=gen) * 0.15 + 0.05
    velocity = (torch.rand(OBJECTS, 2, generator=gen) - 0.5) * 0.02
    targets = []
    for t in range(frames):
        boxes = torch.cat([(centres + t * velocity).clamp(0.1, 0.9), sizes], -1)
        targets.append(
            {
                "boxes": boxes,
                "labels": torch.zeros(OBJECTS, dtype=torch.long),
                "obj_ids": torch.arange(OBJECTS, dtype=torch.long),
                "pseudo_boxes": boxes + 0.005 * torch.randn(boxes.shape, generator=gen),
                "pseudo_scores": torch.rand(OBJECTS, generator=gen) * 0.9 + 0.1,
            }
        )
    return {
        "images": torch.randn(frames, 3, height, width, generator=gen),
        "targets": targets,
        "meta": {
            "sequence": "bench",
            "frames": list(range(frames)),
            "orig_size": (height, width),
            "size": (height, width),
        },
    }


def run_case(case: dict) -> dict:
    """One case in this process (its peak memory is its own).

    kind 'inference': the variants of `case['variants']` ('reference' = the network as trained,
    'optimized' = `motrv3.optimize_for_inference`) timed in alternation, so both see the same
    machine load; kind 'train': one 5-frame training step; kind 'roofline': FLOP counts and GEMM /
    convolution throughput of this machine.
    """
    import torch

    from motrv3.ops import available_impls

    torch.set_num_threads(case["threads"])
    if case.get("retain_freed_memory"):
        from pipeline.runtime import retain_freed_memory

        retain_freed_memory()
    if case["kind"] == "roofline":
        return {**case, **roofline()}
    if case["impl"] != "pytorch" and case["impl"] not in available_impls():
        raise RuntimeError(f"bench_model: impl {case['impl']!r} unavailable here ({available_impls()})")
    if case["kind"] == "inference":
        return {**case, **_inference(case)}
    return {**case, **_train_step(case)}


def _build(case: dict, **overrides):
    import torch

    import motrv3
    from motrv3.config import ModelConfig, TGDConfig, TrackingConfig

    torch.manual_seed(0)
    model_cfg = ModelConfig(
        deform_attn_impl=case["impl"], num_queries=case.get("num_queries", REFERENCE_QUERIES), **overrides
    )
    return motrv3.build_model(model_cfg, TrackingConfig(), TGDConfig()), model_cfg


def _inference(case: dict) -> dict:
    import torch

    import motrv3

    model, _ = _build(case)
    model.eval()
    models = {
        name: motrv3.optimize_for_inference(model) if name == "optimized" else model
        for name in case["variants"]
    }
    height, width = case["size"]
    image = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(1))
    times = {name: [] for name in models}
    cpu_times = {name: [] for name in models}
    outputs = {}
    with torch.inference_mode():
        for name, variant in models.items():  # warm-up (kernel build, oneDNN primitive caches)
            outputs[name] = variant.forward_frame(image)
        for _ in range(case["repeats"]):
            for name, variant in models.items():
                start, cpu_start = time.perf_counter(), time.process_time()
                variant.forward_frame(image)
                times[name].append(time.perf_counter() - start)
                cpu_times[name].append(time.process_time() - cpu_start)
    result = {
        "variants": {
            name: {
                "times_s": times[name],
                "cpu_times_s": cpu_times[name],
                "median_s": statistics.median(times[name]),
                "min_s": min(times[name]),
            }
            for name in models
        },
        "peak_rss_mib": _peak_rss_mib(),
    }
    if "reference" in outputs and "optimized" in outputs:
        ref, opt = outputs["reference"], outputs["optimized"]
        result["optimized_max_abs_difference"] = {
            "logits": float((ref.logits - opt.logits).abs().max()),
            "boxes": float((ref.boxes - opt.boxes).abs().max()),
        }
    return result


def _train_step(case: dict) -> dict:
    import torch

    import motrv3
    from motrv3.config import LossConfig, PLDConfig, RFSConfig, TGDConfig, TrackingConfig

    model, model_cfg = _build(case, activation_checkpointing=case["checkpointing"])
    model.train()
    tgd_cfg, tracking_cfg = TGDConfig(), TrackingConfig()
    criterion = motrv3.build_criterion(model_cfg, LossConfig(), RFSConfig(), PLDConfig(), tgd_cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=1e-4)
    clip = synthetic_clip(CLIP_FRAMES, *TRAIN_SIZE)
    times, cpu_times = [], []
    for step in range(1 + case["repeats"]):  # the first step warms up
        generator = torch.Generator().manual_seed(step)
        start, cpu_start = time.perf_counter(), time.process_time()
        optimizer.zero_grad(set_to_none=True)
        result = motrv3.clip_forward(model, criterion, clip, tracking_cfg, generator=generator)
        result.loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    return {
        "times_s": times[1:],
        "warmup_s": times[0],
        "cpu_times_s": cpu_times[1:],
        "median_s": statistics.median(times[1:]),
        "min_s": min(times[1:]),
        "peak_rss_mib": _peak_rss_mib(),
    }


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def roofline() -> dict:
    """How fast could this machine possibly be? Dense FLOPs of the network / its best dense throughput.

    FLOPs are counted by `torch.utils.flop_counter` (convolutions and matrix products, forward
    and backward; deformable sampling and element-wise ops are not counted, so the floor is
    optimistic). Throughput is the best of the network's own GEMM and convolution shapes timed in
    isolation (MKL / oneDNN, this thread count).
    """
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    import motrv3
    from motrv3.config import LossConfig, ModelConfig, PLDConfig, RFSConfig, TGDConfig, TrackingConfig

    def best_rate(fn, flops: float, repeats: int = 10) -> float:
        fn()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        return flops / best / 1e9

    rates = {}
    tokens = 3825  # encoder tokens of a 320×576 frame
    with torch.inference_mode():
        for d_in, d_out in ((256, 1024), (1024, 256), (256, 256)):
            x, w, b = torch.randn(tokens, d_in), torch.randn(d_out, d_in), torch.randn(d_out)
            rates[f"linear_{tokens}x{d_in}x{d_out}"] = best_rate(
                lambda x=x, w=w, b=b: F.linear(x, w, b), 2 * tokens * d_in * d_out
            )
        for channels, (h, w) in ((256, (20, 36)), (128, (40, 72))):  # ResNet-50 layer3 / layer2 3×3
            x = torch.randn(1, channels, h, w).contiguous(memory_format=torch.channels_last)
            k = torch.randn(channels, channels, 3, 3).contiguous(memory_format=torch.channels_last)
            rates[f"conv3x3_{channels}c_{h}x{w}"] = best_rate(
                lambda x=x, k=k: F.conv2d(x, k, padding=1), 2 * channels * channels * 9 * h * w
            )
    peak = max(rates.values())

    counts = {}
    torch.manual_seed(0)
    model = motrv3.build_model(ModelConfig(deform_attn_impl="cpu", num_queries=REFERENCE_QUERIES)).eval()
    for height, width in INFERENCE_SIZES:
        with FlopCounterMode(display=False) as counter:  # grad mode stays on: the counter needs it
            model.forward_frame(torch.randn(1, 3, height, width))
        counts[f"inference_{height}x{width}"] = counter.get_total_flops()
    for checkpointing in (False, True):
        cfg = ModelConfig(
            deform_attn_impl="cpu", num_queries=REFERENCE_QUERIES, activation_checkpointing=checkpointing
        )
        tgd_cfg, tracking_cfg = TGDConfig(), TrackingConfig()
        model = motrv3.build_model(cfg, tracking_cfg, tgd_cfg).train()
        criterion = motrv3.build_criterion(cfg, LossConfig(), RFSConfig(), PLDConfig(), tgd_cfg)
        clip = synthetic_clip(CLIP_FRAMES, *TRAIN_SIZE)
        with FlopCounterMode(display=False) as counter:
            motrv3.clip_forward(model, criterion, clip, tracking_cfg).loss.backward()
        counts[f"train_{TRAIN_SIZE[0]}x{TRAIN_SIZE[1]}_{'ckpt' if checkpointing else 'no_ckpt'}"] = (
            counter.get_total_flops()
        )
    return {
        "dense_gflop": {k: round(v / 1e9, 1) for k, v in counts.items()},
        "throughput_gflops": {k: round(v, 1) for k, v in rates.items()},
        "peak_gflops": round(peak, 1),
        "floor_s": {k: round(v / 1e9 / peak, 3) for k, v in counts.items()},
    }


def _spawn(case: dict) -> dict:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_model", json.dumps(case)], capture_output=True, text=True
    )
    if completed.returncode != 0:
        return {
            **case,
            "error": completed.stderr.strip().splitlines()[-1] if completed.stderr.strip() else "failed",
        }
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run(args) -> dict:
    from tqdm import tqdm

    quick = getattr(args, "quick", False)
    threads = getattr(args, "threads", 2)
    train = getattr(args, "train", True) and not quick
    plan = []
    for height, width in INFERENCE_SIZES[:1] if quick else INFERENCE_SIZES:
        size, small = f"{height}x{width}", height < 500
        base = {"kind": "inference", "size": [height, width], "impl": "cpu", "num_queries": REFERENCE_QUERIES}
        repeats = 1 if quick else (4 if small else 2)
        # before: the network as trained, default allocator; after: our inference path
        plan.append((f"inference_{size}/before", {**base, "repeats": repeats, "variants": ["reference"]}))
        plan.append(
            (
                f"inference_{size}/after",
                {
                    **base,
                    "repeats": repeats,
                    "variants": ["reference", "optimized"],
                    "retain_freed_memory": True,
                },
            )
        )
        if not quick:  # the grid_sample formulation of the public MOTRv2 code: like-for-like baseline
            plan.append(
                (
                    f"inference_{size}/pytorch_op",
                    {**base, "impl": "pytorch", "repeats": 2 if small else 1, "variants": ["reference"]},
                )
            )
        if small and not quick:
            plan.append(
                (
                    f"inference_{size}_q{SECONDARY_QUERIES}/after",
                    {
                        **base,
                        "num_queries": SECONDARY_QUERIES,
                        "repeats": 2,
                        "variants": ["optimized"],
                        "retain_freed_memory": True,
                    },
                )
            )
    for checkpointing in (True, False) if train else ():
        name = f"train_{TRAIN_SIZE[0]}x{TRAIN_SIZE[1]}_{'ckpt' if checkpointing else 'no_ckpt'}"
        base = {"kind": "train", "size": list(TRAIN_SIZE), "repeats": 2, "checkpointing": checkpointing}
        plan.append((f"{name}/pytorch_op", {**base, "impl": "pytorch"}))
        plan.append((f"{name}/cpu", {**base, "impl": "cpu", "retain_freed_memory": True}))
    if not quick:
        plan.append(("roofline", {"kind": "roofline"}))

    # Inference cases run in INFERENCE_ROUNDS alternating passes (before, after, before, after…):
    # a shared machine's slow spells then hit both sides, and the best time of each survives.
    rounds = 1 if quick else INFERENCE_ROUNDS
    schedule = [(name, case) for _ in range(rounds) for name, case in plan if case["kind"] == "inference"]
    schedule += [(name, case) for name, case in plan if case["kind"] != "inference"]
    cases, loads = {}, {"start": load_average()}
    for name, case in tqdm(schedule, desc="bench_model"):
        result = _spawn({**case, "threads": threads})
        result["load_average_after"] = load_average()
        cases[name] = _merge_rounds(cases[name], result) if name in cases else result
    loads["end"] = load_average()
    return record(
        "model",
        __doc__.strip().splitlines()[0],
        cases,
        summary=summarise(cases),
        load_average=loads,
        targets=TARGETS,
        config={
            "quick": quick,
            "clip_frames": CLIP_FRAMES,
            "objects": OBJECTS,
            "num_queries": REFERENCE_QUERIES,
        },
    )


def _merge_rounds(earlier: dict, later: dict) -> dict:
    """One inference case measured in two processes: pooled times, best and median over both."""
    if "error" in earlier or "error" in later:
        return earlier if "error" in earlier else later
    merged = {**later, "peak_rss_mib": max(earlier["peak_rss_mib"], later["peak_rss_mib"])}
    merged["rounds"] = earlier.get("rounds", 1) + 1
    merged["variants"] = {}
    for name, timing in later["variants"].items():
        times = earlier["variants"][name]["times_s"] + timing["times_s"]
        cpu_times = earlier["variants"][name]["cpu_times_s"] + timing["cpu_times_s"]
        merged["variants"][name] = {
            "times_s": times,
            "cpu_times_s": cpu_times,
            "median_s": statistics.median(times),
            "min_s": min(times),
        }
    return merged


def summarise(cases: dict) -> dict:
    """Headline numbers: best-of-repeats seconds (the least load-inflated), ratios within one run."""
    summary = {}
    for name, case in cases.items():
        if "error" in case:
            summary[f"{name}/error"] = case["error"]
        elif case["kind"] == "inference":
            for variant, timing in case["variants"].items():
                summary[f"{name}/{variant}/min_s"] = round(timing["min_s"], 3)
        elif case["kind"] == "train":
            summary[f"{name}/min_s"] = round(case["min_s"], 2)
            summary[f"{name}/peak_rss_gb"] = round(case["peak_rss_mib"] / 1024.0, 2)
    for height, width in INFERENCE_SIZES:
        size = f"{height}x{width}"
        before, after = cases.get(f"inference_{size}/before", {}), cases.get(f"inference_{size}/after", {})
        if "variants" in before and "variants" in after:
            best_before = before["variants"]["reference"]["min_s"]
            for variant, timing in after["variants"].items():
                summary[f"inference_{size}/speedup_{variant}_over_before"] = round(
                    best_before / timing["min_s"], 2
                )
            grid_sample = cases.get(f"inference_{size}/pytorch_op", {})
            if "variants" in grid_sample:
                summary[f"inference_{size}/speedup_optimized_over_pytorch_op"] = round(
                    grid_sample["variants"]["reference"]["min_s"] / after["variants"]["optimized"]["min_s"], 2
                )
    for name in ("ckpt", "no_ckpt"):
        fast = cases.get(f"train_{TRAIN_SIZE[0]}x{TRAIN_SIZE[1]}_{name}/cpu", {})
        grid_sample = cases.get(f"train_{TRAIN_SIZE[0]}x{TRAIN_SIZE[1]}_{name}/pytorch_op", {})
        if "min_s" in fast and "min_s" in grid_sample:
            summary[f"train_{name}/time_ratio_vs_pytorch_op"] = round(fast["min_s"] / grid_sample["min_s"], 2)
            summary[f"train_{name}/peak_ratio_vs_pytorch_op"] = round(
                fast["peak_rss_mib"] / grid_sample["peak_rss_mib"], 2
            )
    floor = cases.get("roofline", {}).get("floor_s")
    if floor:
        summary["roofline/peak_gflops"] = cases["roofline"]["peak_gflops"]
        for key, seconds in floor.items():
            summary[f"roofline/{key}/floor_s"] = seconds
    return summary


if __name__ == "__main__":
    # Child process: one case as JSON in, its result as JSON on the last line of stdout.
    result = run_case(json.loads(sys.argv[1]))
    result["machine"] = machine_info()
    print(json.dumps(result))
