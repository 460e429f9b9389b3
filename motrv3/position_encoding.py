"""Sine position encodings: of feature-map pixels (DETR/Deformable DETR) and of boxes (anchor queries)."""

from __future__ import annotations

import math

import torch


def sine_position_encoding(height: int, width: int, d_model: int, device=None, temperature: float = 10000.0):
    """Normalised 2-D sine encoding of an unpadded `height`×`width` map -> [d_model, height, width].

    Deformable DETR's `PositionEmbeddingSine(d_model // 2, normalize=True)` for a mask without
    padding (frames are batch-free here): pixel centres (k − 0.5) / n scaled to [0, 2π], then
    the y features followed by the x features, each interleaving sin/cos.
    """
    if d_model % 2:
        raise ValueError(f"sine_position_encoding: d_model={d_model} must be even")
    num_feats = d_model // 2
    eps = 1e-6
    y = (torch.arange(1, height + 1, dtype=torch.float32, device=device) - 0.5) / (height + eps) * 2 * math.pi
    x = (torch.arange(1, width + 1, dtype=torch.float32, device=device) - 0.5) / (width + eps) * 2 * math.pi
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    pos_y = _interleave_sin_cos(y[:, None] / dim_t)  # [H, F]
    pos_x = _interleave_sin_cos(x[:, None] / dim_t)  # [W, F]
    pos = torch.cat(
        [
            pos_y[:, None, :].expand(height, width, num_feats),
            pos_x[None, :, :].expand(height, width, num_feats),
        ],
        dim=-1,
    )
    return pos.permute(2, 0, 1).contiguous()


def box_sine_embedding(boxes: torch.Tensor, d_model: int, temperature: float = 10000.0) -> torch.Tensor:
    """Sine embedding of sigmoid boxes [..., 4] -> [..., d_model] (MOTRv2's `pos2posemb`).

    Each coordinate (cx, cy, w, h) scaled by 2π gets d_model/4 features interleaving sin/cos;
    coordinates are concatenated in that order. This is the query position of an anchor query.
    """
    if d_model % 8:
        raise ValueError(f"box_sine_embedding: d_model={d_model} must be divisible by 8")
    num_feats = d_model // boxes.shape[-1]
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=boxes.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    emb = _interleave_sin_cos(boxes[..., None] * (2 * math.pi) / dim_t)  # [..., 4, F]
    return emb.flatten(-2)


def _interleave_sin_cos(angles: torch.Tensor) -> torch.Tensor:
    """[..., F] -> [..., F] as (sin a0, cos a1, sin a2, cos a3, ...), DETR's layout."""
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)
