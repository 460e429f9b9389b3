"""Full-model speed: per-frame inference latency and one 5-frame training step, reference vs fast path.

The full configuration (`ModelConfig` defaults: ResNet-50, 6+6 layers, 4 levels, box refinement,
d_model 256), random weights, CPU. Headline cases use 10 anchor queries, the setting of the public
MOTRv2 measurement the targets come from (like with like); 300 queries (our config default) is a
secondary case. Each case runs in its own process (so its peak memory is its own) with the same
seed, hence the same weights and inputs; the reference path is `deform_attn_impl=pytorch`
(grid_sample), the fast path `cpu` (C++ kernel). `batch_norm=torchvision` cases swap the backbone's
fused frozen BN back to torchvision's two-pass FrozenBatchNorm2d: the before-state of that change.
Inference: `forward_frame` on one image with no track queries (eval, inference_mode). Training: the full
MOTRv3 loss (RFS, PLD, TGD defaults) on a 5-frame 320×576 clip, forward + backward + Adam step,
with and without activation checkpointing (`ModelConfig.activation_checkpointing`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from benchmarks.harness import load_average, machine_info, record

INFERENCE_SIZES = [(320, 576), (800, 1440)]
TRAIN_SIZE = (320, 576)
REFERENCE_QUERIES = 10  # MOTRv2's anchor-query count, used in its measurement below
SECONDARY_QUERIES = 300
CLIP_FRAMES = 5
OBJECTS = 8
# Public MOTRv2 code on this machine class (docs: shared stack facts), for context in the JSON:
# R50, 6+6 layers, 4 levels, box refine, 10 anchor queries, PyTorch deformable path, 2 threads.
MOTRV2_REFERENCE = {
    "inference_320x576_s": 0.97,
    "inference_800x1440_s": 7.0,
    "train_step_checkpointing_s": 12.9,
    "train_step_checkpointing_peak_gb": 4.1,
    "train_step_s": 10.1,
    "train_step_peak_gb": 10.0,
}
TARGETS = {"inference_320x576_s": 0.48, "inference_800x1440_s": 3.5, "train_step_time_ratio_vs_motrv2": 0.7}


def _rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


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
    """One case in this process: {'kind': 'inference'|'train', 'impl', 'size', 'repeats', 'checkpointing'}."""
    import resource

    import torch

    import motrv3
    from motrv3.config import LossConfig, ModelConfig, PLDConfig, RFSConfig, TGDConfig, TrackingConfig
    from motrv3.ops import available_impls

    torch.set_num_threads(case["threads"])
    if case["impl"] != "pytorch" and case["impl"] not in available_impls():
        raise RuntimeError(f"bench_model: impl {case['impl']!r} unavailable here ({available_impls()})")
    torch.manual_seed(0)
    model_cfg = ModelConfig(
        deform_attn_impl=case["impl"],
        activation_checkpointing=case.get("checkpointing", False),
        num_queries=case.get("num_queries", REFERENCE_QUERIES),
    )
    tgd_cfg = TGDConfig()
    tracking_cfg = TrackingConfig()
    model = motrv3.build_model(model_cfg, tracking_cfg, tgd_cfg)
    if case.get("batch_norm") == "torchvision":
        _use_torchvision_frozen_bn(model)
    height, width = case["size"]
    times, cpu_times = [], []
    rss_before = _rss_mib()
    if case["kind"] == "inference":
        model.eval()
        image = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            for _ in range(1 + case["repeats"]):  # first call warms up
                start, cpu_start = time.perf_counter(), time.process_time()
                model.forward_frame(image)
                times.append(time.perf_counter() - start)
                cpu_times.append(time.process_time() - cpu_start)
    else:
        model.train()
        criterion = motrv3.build_criterion(model_cfg, LossConfig(), RFSConfig(), PLDConfig(), tgd_cfg)
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=1e-4)
        clip = synthetic_clip(CLIP_FRAMES, height, width)
        for step in range(1 + case["repeats"]):
            generator = torch.Generator().manual_seed(step)
            start, cpu_start = time.perf_counter(), time.process_time()
            optimizer.zero_grad(set_to_none=True)
            result = motrv3.clip_forward(model, criterion, clip, tracking_cfg, generator=generator)
            result.loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    measured = times[1:]
    return {
        **case,
        "times_s": measured,
        "warmup_s": times[0],
        # process CPU time (all threads): less sensitive to other users' load than wall time
        "cpu_times_s": cpu_times[1:],
        "median_s": sorted(measured)[len(measured) // 2],
        "min_s": min(measured),
        "rss_after_build_mib": rss_before,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def _use_torchvision_frozen_bn(module) -> None:
    """Swap our fused frozen BN back to torchvision's (same statistics): the before-state."""
    from torchvision.ops import FrozenBatchNorm2d

    for name, child in module.named_children():
        if isinstance(child, FrozenBatchNorm2d) and type(child) is not FrozenBatchNorm2d:
            plain = FrozenBatchNorm2d(child.weight.numel(), eps=child.eps)
            plain.load_state_dict(child.state_dict())
            setattr(module, name, plain)
        else:
            _use_torchvision_frozen_bn(child)


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
    train = getattr(args, "train", True)
    q_ref, q_sec = REFERENCE_QUERIES, SECONDARY_QUERIES
    plan = []
    for height, width in INFERENCE_SIZES[:1] if quick else INFERENCE_SIZES:
        repeats = 1 if quick else (2 if height < 500 else 1)
        base = {"kind": "inference", "size": [height, width], "repeats": repeats}
        size = f"{height}x{width}"
        plan.append((f"inference_{size}_q{q_ref}/cpu", {**base, "impl": "cpu", "num_queries": q_ref}))
        plan.append(
            (
                f"inference_{size}_q{q_ref}/cpu_torchvision_bn",
                {**base, "impl": "cpu", "num_queries": q_ref, "batch_norm": "torchvision"},
            )
        )
        if height < 500:  # grid_sample at 800×1440 takes minutes; bench_deform_attn covers the op
            plan.append(
                (f"inference_{size}_q{q_ref}/pytorch", {**base, "impl": "pytorch", "num_queries": q_ref})
            )
            plan.append((f"inference_{size}_q{q_sec}/cpu", {**base, "impl": "cpu", "num_queries": q_sec}))
    impls = ["pytorch", "cpu"]
    for checkpointing in (True, False) if train else ():
        for impl in impls:
            name = f"train_{TRAIN_SIZE[0]}x{TRAIN_SIZE[1]}_{'ckpt' if checkpointing else 'no_ckpt'}/{impl}"
            plan.append(
                (
                    name,
                    {
                        "kind": "train",
                        "size": list(TRAIN_SIZE),
                        "repeats": 1,
                        "impl": impl,
                        "checkpointing": checkpointing,
                        "num_queries": q_ref,
                    },
                )
            )
    cases, loads = {}, {"start": load_average()}
    for name, case in tqdm(plan, desc="bench_model"):
        cases[name] = _spawn({**case, "threads": threads})
        cases[name]["load_average_after"] = load_average()
    summary = {}
    for name, case in cases.items():
        if "error" in case:
            summary[f"{name}/error"] = case["error"]
            continue
        summary[f"{name}/median_s"] = round(case["median_s"], 3)
        if case["kind"] == "train":
            summary[f"{name}/peak_rss_gb"] = round(case["peak_rss_mib"] / 1024.0, 2)
    for name in {n.rsplit("/", 1)[0] for n in cases}:
        ref, fast = cases.get(f"{name}/pytorch", {}), cases.get(f"{name}/cpu", {})
        if "median_s" in ref and "median_s" in fast:
            summary[f"{name}/speedup_cpu_over_pytorch"] = round(ref["median_s"] / fast["median_s"], 2)
            summary[f"{name}/peak_ratio_cpu_over_pytorch"] = round(
                fast["peak_rss_mib"] / ref["peak_rss_mib"], 3
            )
        before = cases.get(f"{name}/cpu_torchvision_bn", {})
        if "median_s" in before and "median_s" in fast:
            # wall time is at the mercy of the shared machine's load; process CPU time less so
            summary[f"{name}/speedup_fused_bn_wall"] = round(before["median_s"] / fast["median_s"], 2)
            summary[f"{name}/speedup_fused_bn_cpu_time"] = round(
                min(before["cpu_times_s"]) / min(fast["cpu_times_s"]), 2
            )
    loads["end"] = load_average()
    return record(
        "model",
        __doc__.strip().splitlines()[0],
        cases,
        summary=summary,
        load_average=loads,
        motrv2_reference=MOTRV2_REFERENCE,
        targets=TARGETS,
        config={
            "quick": quick,
            "train_cases": train,
            "clip_frames": CLIP_FRAMES,
            "objects": OBJECTS,
            "headline_num_queries": q_ref,
            "headline_note": "num_queries 10 matches the MOTRv2 reference measurement; 300 is secondary",
            "secondary_num_queries": q_sec,
        },
    )


if __name__ == "__main__":
    # Child process: one case as JSON in, its result as JSON on the last line of stdout.
    result = run_case(json.loads(sys.argv[1]))
    result["machine"] = machine_info()
    print(json.dumps(result))
