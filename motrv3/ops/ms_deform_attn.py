"""Multi-scale deformable attention, the sampling core (Deformable DETR, Zhu et al. 2020, Eq. 3).

    MSDeformAttn(z_q, p̂_q, {x^l}) = Σ_m W_m [ Σ_l Σ_k A_mlqk · W'_m x^l(φ_l(p̂_q) + Δp_mlqk) ]

This module computes the bracket for every head m: bilinear samples of the (already projected)
value maps x^l at the sampling locations, weighted by A_mlqk and summed over levels l and points k.
The projections W_m, W'_m live in `motrv3.ops.modules.MSDeformAttn`.

Three implementations share one signature and the numerics of the official op (bilinear,
zero padding outside the map, pixel centres at (i + 0.5) / size, i.e. align_corners=False):
`pytorch` (F.grid_sample, the reference), `cpu` (C++ kernel, OpenMP) and `cuda` (CUDA kernel).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IMPLS = ("auto", "pytorch", "cpu", "cuda")


def check_inputs(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> None:
    """Shape checks with messages naming the offending argument."""
    if value.dim() != 4:
        raise ValueError(f"value: expected [B, S, H, C/H], got shape {tuple(value.shape)}")
    batch, length, heads, _ = value.shape
    if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2:
        raise ValueError(f"spatial_shapes: expected [n_levels, 2], got shape {tuple(spatial_shapes.shape)}")
    levels = spatial_shapes.shape[0]
    if level_start_index.shape != (levels,):
        raise ValueError(
            f"level_start_index: expected [{levels}], got shape {tuple(level_start_index.shape)}"
        )
    total = int((spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum())
    if total != length:
        raise ValueError(f"value: S={length} but spatial_shapes cover {total} positions")
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise ValueError(
            "sampling_locations: expected [B, Lq, H, n_levels, n_points, 2], "
            f"got shape {tuple(sampling_locations.shape)}"
        )
    b, _, h, lv, _, _ = sampling_locations.shape
    if (b, h, lv) != (batch, heads, levels):
        raise ValueError(
            f"sampling_locations: batch/heads/levels {(b, h, lv)} do not match value/spatial_shapes "
            f"{(batch, heads, levels)}"
        )
    if attention_weights.shape != sampling_locations.shape[:-1]:
        raise ValueError(
            f"attention_weights: expected shape {tuple(sampling_locations.shape[:-1])}, "
            f"got {tuple(attention_weights.shape)}"
        )


def ms_deform_attn_pytorch(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Reference: per level one F.grid_sample over all heads, then the weighted sum.

    value [B, S, H, D], spatial_shapes [L, 2] (h, w), level_start_index [L],
    sampling_locations [B, Lq, H, L, P, 2] in [0, 1] as (x, y), attention_weights [B, Lq, H, L, P]
    → [B, Lq, H·D].
    """
    check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    batch, _, heads, dim = value.shape
    _, num_queries, _, levels, points, _ = sampling_locations.shape
    sizes = [int(h) * int(w) for h, w in spatial_shapes.tolist()]
    value_per_level = value.split(sizes, dim=1)
    # grid_sample wants [-1, 1]; with align_corners=False pixel i covers [i, i+1) / size.
    grids = 2 * sampling_locations - 1
    samples = []
    for level, (height, width) in enumerate(spatial_shapes.tolist()):
        # [B, h·w, H, D] → [B·H, D, h, w]
        value_map = (
            value_per_level[level].flatten(2).transpose(1, 2).reshape(batch * heads, dim, height, width)
        )
        # [B, Lq, H, P, 2] → [B·H, Lq, P, 2]
        grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        samples.append(
            F.grid_sample(value_map, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        )  # [B·H, D, Lq, P]
    # [B, Lq, H, L, P] → [B·H, 1, Lq, L·P]
    weights = attention_weights.transpose(1, 2).reshape(batch * heads, 1, num_queries, levels * points)
    output = (torch.stack(samples, dim=-2).flatten(-2) * weights).sum(-1)  # [B·H, D, Lq]
    return output.view(batch, heads * dim, num_queries).transpose(1, 2).contiguous()


class _KernelFunction(torch.autograd.Function):
    """Autograd around a compiled kernel's `forward`/`backward` ops (CPU or CUDA namespace)."""

    @staticmethod
    def forward(ctx, ops, value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        ctx.ops = ops
        ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        return ops.forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights = ctx.saved_tensors
        grad_value, grad_locations, grad_weights = ctx.ops.backward(
            value,
            spatial_shapes,
            level_start_index,
            sampling_locations,
            attention_weights,
            grad_output.contiguous(),
        )
        return None, grad_value, None, None, grad_locations, grad_weights


def available_impls() -> list[str]:
    """Implementations usable in this process (builds the kernels on first call)."""
    from motrv3.ops import extension

    impls = ["pytorch"]
    if extension.load_cpu() is not None:
        impls.append("cpu")
    if extension.load_cuda() is not None:
        impls.append("cuda")
    return impls


def _run_kernel(ops, value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    dtype = value.dtype
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"ms_deform_attn: kernels take float32/float64 value, got {dtype}")
    if sampling_locations.dtype != dtype or attention_weights.dtype != dtype:
        raise TypeError(
            f"ms_deform_attn: value, sampling_locations, attention_weights must share a dtype, got "
            f"{dtype}, {sampling_locations.dtype}, {attention_weights.dtype}"
        )
    device = value.device
    return _KernelFunction.apply(
        ops,
        value.contiguous(),
        spatial_shapes.to(device=device, dtype=torch.long).contiguous(),
        level_start_index.to(device=device, dtype=torch.long).contiguous(),
        sampling_locations.contiguous(),
        attention_weights.contiguous(),
    )


def ms_deform_attn(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    impl: str = "auto",
) -> torch.Tensor:
    """Dispatch to an implementation: `auto` takes the CUDA kernel on CUDA tensors (if it builds),
    else the C++ CPU kernel on CPU tensors (if it builds), else the PyTorch reference;
    an explicit `cpu`/`cuda` that cannot run raises."""
    from motrv3.ops import extension

    if impl not in IMPLS:
        raise ValueError(f"ms_deform_attn: impl={impl!r}; expected one of {IMPLS}")
    args = (value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    if impl == "pytorch":
        return ms_deform_attn_pytorch(*args)
    check_inputs(*args)
    on_cuda = value.is_cuda
    if impl == "cuda":
        if not on_cuda:
            raise ValueError(
                "ms_deform_attn: impl='cuda' needs CUDA tensors, got value on " + str(value.device)
            )
        ops = extension.load_cuda()
        if ops is None:
            raise RuntimeError("ms_deform_attn: impl='cuda' requested but the CUDA kernel is unavailable")
        return _run_kernel(ops, *args)
    if impl == "cpu":
        if value.device.type != "cpu":
            raise ValueError(
                "ms_deform_attn: impl='cpu' needs CPU tensors, got value on " + str(value.device)
            )
        ops = extension.load_cpu()
        if ops is None:
            raise RuntimeError(
                "ms_deform_attn: impl='cpu' requested but the C++ CPU kernel could not be built"
            )
        return _run_kernel(ops, *args)
    # auto
    ops = None
    if on_cuda:
        ops = extension.load_cuda()
    elif value.device.type == "cpu":
        ops = extension.load_cpu()
    if ops is None or value.dtype not in (torch.float32, torch.float64):
        return ms_deform_attn_pytorch(*args)
    return _run_kernel(ops, *args)
