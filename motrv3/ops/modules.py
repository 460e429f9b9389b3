"""`MSDeformAttn`: the multi-scale deformable attention module (Deformable DETR, Eq. 3).

Parameter names and initialisation follow Deformable DETR so that official checkpoints load 1:1:
`sampling_offsets` (Δp_mlqk, biases on a per-head grid), `attention_weights` (A_mlqk, softmax
over the L·K points of a head), `value_proj` (W'_m), `output_proj` (W_m).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from motrv3.ops.ms_deform_attn import IMPLS, ms_deform_attn


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention over L feature levels, K points per head and level."""

    def __init__(
        self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4, impl: str = "auto"
    ):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"MSDeformAttn: d_model={d_model} must be divisible by n_heads={n_heads}")
        if impl not in IMPLS:
            raise ValueError(f"MSDeformAttn: impl={impl!r}; expected one of {IMPLS}")
        head_dim = d_model // n_heads
        if head_dim & (head_dim - 1):
            warnings.warn(
                f"MSDeformAttn: d_model/n_heads={head_dim} is not a power of 2; the CUDA kernel is tuned for it",
                stacklevel=2,
            )
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.impl = impl
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's init: head m starts looking along direction 2πm/H, point k at distance k+1."""
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        angles = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        directions = torch.stack([angles.cos(), angles.sin()], -1)
        # Scale each direction so its larger component is ±1 (points land on the square ring).
        directions = directions / directions.abs().max(-1, keepdim=True)[0]
        grid = directions.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        input_spatial_shapes: torch.Tensor,
        input_level_start_index: torch.Tensor,
        input_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """query [B, Lq, C]; reference_points [B, Lq, L, 2] (x, y) or [B, Lq, L, 4] (cx, cy, w, h),
        normalised to [0, 1] with the padded area included; input_flatten [B, S, C] (levels
        concatenated, row-major); input_spatial_shapes [L, 2] (h, w); input_level_start_index [L];
        input_padding_mask [B, S] True at padding. Returns [B, Lq, C]."""
        batch, num_queries, _ = query.shape
        _, length, _ = input_flatten.shape
        if input_spatial_shapes.shape != (self.n_levels, 2):
            raise ValueError(
                f"MSDeformAttn: input_spatial_shapes has shape {tuple(input_spatial_shapes.shape)}, "
                f"expected ({self.n_levels}, 2)"
            )
        covered = int((input_spatial_shapes[:, 0] * input_spatial_shapes[:, 1]).sum())
        if covered != length:
            raise ValueError(
                f"MSDeformAttn: input_flatten has S={length} but input_spatial_shapes cover {covered}"
            )
        if reference_points.shape[:3] != (batch, num_queries, self.n_levels):
            raise ValueError(
                f"MSDeformAttn: reference_points has shape {tuple(reference_points.shape)}, "
                f"expected ({batch}, {num_queries}, {self.n_levels}, 2 or 4)"
            )

        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(batch, length, self.n_heads, self.d_model // self.n_heads)
        offsets = self.sampling_offsets(query).view(
            batch, num_queries, self.n_heads, self.n_levels, self.n_points, 2
        )
        weights = self.attention_weights(query).view(
            batch, num_queries, self.n_heads, self.n_levels * self.n_points
        )
        weights = F.softmax(weights, -1).view(batch, num_queries, self.n_heads, self.n_levels, self.n_points)

        # One fused pass (addcmul) instead of a divide then an add over [B, Lq, H, L, K, 2].
        if reference_points.shape[-1] == 2:
            # Offsets are in pixels of each level: normalise by (w, h).
            pixel = input_spatial_shapes.flip(-1).to(offsets.dtype).reciprocal()
            locations = torch.addcmul(
                reference_points[:, :, None, :, None, :], offsets, pixel[None, None, None, :, None, :]
            )
        elif reference_points.shape[-1] == 4:
            # Box refinement: offsets are relative to the box, half its size spread over the K points.
            locations = torch.addcmul(
                reference_points[:, :, None, :, None, :2],
                offsets,
                reference_points[:, :, None, :, None, 2:] * (0.5 / self.n_points),
            )
        else:
            raise ValueError(
                f"MSDeformAttn: reference_points last dim must be 2 or 4, got {reference_points.shape[-1]}"
            )
        output = ms_deform_attn(
            value, input_spatial_shapes, input_level_start_index, locations, weights, impl=self.impl
        )
        return self.output_proj(output)
