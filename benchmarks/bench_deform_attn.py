"""Op-level speed of multi-scale deformable attention: grid_sample reference vs the C++ CPU kernel.

Encoder-like sizes of the full configuration: d_model 256, 8 heads, 4 levels (strides 8/16/32/64
of the input), 4 points, one query per feature position (Lq = S). Sampling locations are the
encoder's: each query's own pixel centre plus Deformable DETR's initial per-head grid offsets and
~1 pixel of noise, so memory access is as local as in the model.
"""

from __future__ import annotations

import math

import torch

from benchmarks.harness import compare, load_average, measure, record
from motrv3.ops import MSDeformAttn, available_impls, ms_deform_attn

HEADS, LEVELS, POINTS, HEAD_DIM = 8, 4, 4, 32


def level_shapes(height: int, width: int) -> torch.Tensor:
    """Feature sizes at strides 8/16/32 (ResNet C3-C5) and the stride-2 conv on C5 (stride 64)."""
    shapes = []
    for stride in (8, 16, 32):
        shapes.append((math.ceil(height / stride), math.ceil(width / stride)))
    last_h, last_w = shapes[-1]
    shapes.append(((last_h - 1) // 2 + 1, (last_w - 1) // 2 + 1))
    return torch.tensor(shapes)


def encoder_inputs(height: int, width: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    shapes = level_shapes(height, width)
    sizes = shapes[:, 0] * shapes[:, 1]
    starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    length = int(sizes.sum())
    centres = []
    for h, w in shapes.tolist():
        y, x = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
        centres.append(torch.stack([x.flatten(), y.flatten()], -1))
    reference = torch.cat(centres)  # [S, 2]: each query samples around its own position
    grid = MSDeformAttn(HEADS * HEAD_DIM, LEVELS, HEADS, POINTS).sampling_offsets.bias.detach()
    offsets = grid.view(1, 1, HEADS, LEVELS, POINTS, 2) + torch.randn(
        1, length, HEADS, LEVELS, POINTS, 2, generator=gen
    )
    pixels = torch.stack([shapes[:, 1], shapes[:, 0]], -1).float()  # (w, h)
    locations = reference[None, :, None, None, None, :] + offsets / pixels[None, None, None, :, None, :]
    value = torch.randn(1, length, HEADS, HEAD_DIM, generator=gen)
    weights = torch.randn(1, length, HEADS, LEVELS * POINTS, generator=gen).softmax(-1)
    return value, shapes, starts, locations, weights.view(1, length, HEADS, LEVELS, POINTS)


def op_calls(impl, value, shapes, starts, locations, weights):
    """The timed calls: inference (no autograd) and forward + backward to all three inputs."""

    def forward():
        with torch.no_grad():
            ms_deform_attn(value, shapes, starts, locations, weights, impl=impl)

    leaves = [t.clone().requires_grad_() for t in (value, locations, weights)]

    def forward_backward():
        out = ms_deform_attn(leaves[0], shapes, starts, leaves[1], leaves[2], impl=impl)
        out.sum().backward()

    return forward, forward_backward


def run(args) -> dict:
    quick = getattr(args, "quick", False)
    sizes = [(320, 576)] if quick else [(320, 576), (800, 1440)]
    impls = [impl for impl in ("pytorch", "cpu") if impl in available_impls()]
    cases: dict = {}
    summary: dict = {}
    for height, width in sizes:
        value, shapes, starts, locations, weights = encoder_inputs(height, width)
        key = f"{height}x{width}"
        repeats = 1 if quick else 3
        for impl in impls:
            forward, forward_backward = op_calls(impl, value, shapes, starts, locations, weights)
            cases[f"{key}/{impl}/forward"] = measure(forward, repeats=repeats)
            cases[f"{key}/{impl}/forward_backward"] = measure(forward_backward, repeats=max(1, repeats - 1))
            cases[f"{key}/{impl}/forward"]["queries"] = int(value.shape[1])
        if "cpu" in impls:
            for phase in ("forward", "forward_backward"):
                summary[f"{key}/{phase}/speedup_cpu_over_pytorch"] = round(
                    compare(cases[f"{key}/pytorch/{phase}"], cases[f"{key}/cpu/{phase}"]), 2
                )
        for impl in impls:
            summary[f"{key}/{impl}/forward_s"] = round(cases[f"{key}/{impl}/forward"]["median_s"], 4)
            summary[f"{key}/{impl}/forward_backward_s"] = round(
                cases[f"{key}/{impl}/forward_backward"]["median_s"], 4
            )
    return record(
        "deform_attn",
        __doc__.strip().splitlines()[0],
        cases,
        summary=summary,
        impls=impls,
        load_average=load_average(),
        config={"heads": HEADS, "levels": LEVELS, "points": POINTS, "head_dim": HEAD_DIM, "quick": quick},
    )
