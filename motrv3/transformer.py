"""Deformable DETR encoder/decoder with iterative box refinement and anchor queries (MOTRv2 style).

Frames are batch-free (one image, no padding), so there are no padding masks and every valid
ratio is 1; tensors carry a leading batch dimension of 1 for the attention modules.
Parameter names follow Deformable DETR/MOTRv2 so their checkpoints map key for key.
"""

from __future__ import annotations

import copy
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from motrv3.ops import MSDeformAttn
from motrv3.position_encoding import box_sine_embedding, sine_position_encoding


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """log(x / (1 − x)) with x clamped to [eps, 1 − eps] (Deformable DETR)."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class MLP(nn.Module):
    """Linear layers with ReLU between them (DETR's box head): keys `layers.{i}`."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(
            nn.Linear(d_in, d_out) for d_in, d_out in zip(dims, dims[1:] + [output_dim], strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class EncoderLayer(nn.Module):
    """Deformable self-attention over all levels, then FFN (post-norm)."""

    def __init__(self, d_model, d_ffn, dropout, n_levels, n_heads, n_points, impl):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points, impl)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.activation = nn.ReLU(inplace=True)  # in place: no second d_ffn-wide tensor
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src, pos, reference_points, spatial_shapes, level_start_index):
        attended = self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index)
        src = self.norm1(src + self.dropout1(attended))
        ffn = self.linear2(self.dropout2(self.activation(self.linear1(src))))
        return self.norm2(src + self.dropout3(ffn))


class DecoderLayer(nn.Module):
    """Self-attention among queries (with the Eq. 4 mask), deformable cross-attention, FFN."""

    def __init__(self, d_model, d_ffn, dropout, n_levels, n_heads, n_points, impl):
        super().__init__()
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points, impl)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.activation = nn.ReLU(inplace=True)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(
        self, tgt, query_pos, reference_points, memory, spatial_shapes, level_start_index, attn_mask=None
    ):
        q = k = tgt + query_pos
        attended = self.self_attn(q, k, tgt, attn_mask=attn_mask, need_weights=False)[0]
        tgt = self.norm2(tgt + self.dropout2(attended))
        attended = self.cross_attn(
            tgt + query_pos, reference_points, memory, spatial_shapes, level_start_index
        )
        tgt = self.norm1(tgt + self.dropout1(attended))
        ffn = self.linear2(self.dropout3(self.activation(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout4(ffn))


class Encoder(nn.Module):
    def __init__(self, layer: EncoderLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(self, src, pos, reference_points, spatial_shapes, level_start_index):
        for layer in self.layers:
            src = layer(src, pos, reference_points, spatial_shapes, level_start_index)
        return src


class Decoder(nn.Module):
    """Decoder with iterative box refinement (Deformable DETR §A.4).

    Layer l takes reference boxes b_l (sigmoid cx, cy, w, h); its query position is the sine
    embedding of b_l (anchor queries, MOTRv2); its prediction is σ(Δ_l + σ⁻¹(b_l)) with Δ_l from
    the layer's box head, and b_{l+1} is that prediction detached.
    """

    def __init__(self, layer: DecoderLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(
        self, tgt, reference_boxes, memory, spatial_shapes, level_start_index, bbox_embed, refine, attn_mask
    ):
        d_model = tgt.shape[-1]
        n_levels = spatial_shapes.shape[0]
        hidden, boxes = [], []
        for lid, layer in enumerate(self.layers):
            query_pos = box_sine_embedding(reference_boxes, d_model)
            reference_input = reference_boxes[:, :, None].expand(-1, -1, n_levels, -1)
            tgt = layer(tgt, query_pos, reference_input, memory, spatial_shapes, level_start_index, attn_mask)
            box = (bbox_embed[lid](tgt) + inverse_sigmoid(reference_boxes)).sigmoid()
            hidden.append(tgt)
            boxes.append(box)
            if refine:
                reference_boxes = box.detach()
        return torch.stack(hidden), torch.stack(boxes)


def _level_geometry(shapes: tuple[tuple[int, int], ...], d_model: int, device: torch.device):
    """Per-level sine encodings, encoder reference points and start indices (cached per frame size).

    Built outside inference mode so that a cache filled by the tracker also serves training."""
    with torch.inference_mode(False), torch.no_grad():
        return _level_geometry_cached(shapes, d_model, device)


@lru_cache(maxsize=32)
def _level_geometry_cached(shapes, d_model, device):
    pos = torch.cat([sine_position_encoding(h, w, d_model, device).flatten(1).t() for h, w in shapes])
    points = []
    for h, w in shapes:
        ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], -1))
    reference = torch.cat(points)[None, :, None, :].expand(1, -1, len(shapes), 2).contiguous()
    spatial_shapes = torch.tensor(shapes, dtype=torch.long, device=device)
    start = torch.cat([spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]])
    return pos, reference, spatial_shapes, start


class DeformableTransformer(nn.Module):
    """Encoder over the multi-scale maps, decoder over the frame's queries (Deformable DETR)."""

    def __init__(
        self,
        d_model: int = 256,
        nheads: int = 8,
        enc_layers: int = 6,
        dec_layers: int = 6,
        dim_feedforward: int = 1024,
        dropout: float = 0.0,
        num_feature_levels: int = 4,
        enc_n_points: int = 4,
        dec_n_points: int = 4,
        impl: str = "auto",
    ):
        super().__init__()
        self.d_model = d_model
        enc = EncoderLayer(d_model, dim_feedforward, dropout, num_feature_levels, nheads, enc_n_points, impl)
        dec = DecoderLayer(d_model, dim_feedforward, dropout, num_feature_levels, nheads, dec_n_points, impl)
        self.encoder = Encoder(enc, enc_layers)
        self.decoder = Decoder(dec, dec_layers)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for module in self.modules():
            if isinstance(module, MSDeformAttn):
                module.reset_parameters()
        nn.init.normal_(self.level_embed)

    def encode(self, srcs: list[torch.Tensor]):
        """srcs: per-level maps [B, D, h, w] -> (memory [B, ΣHW, D], spatial_shapes, level_start_index).

        B frames of one size are encoded together (training batches a clip's frames: the encoder
        does not depend on the track queries); B = 1 is the per-frame path."""
        shapes = tuple((int(s.shape[-2]), int(s.shape[-1])) for s in srcs)
        pos, reference, spatial_shapes, start = _level_geometry(shapes, self.d_model, srcs[0].device)
        level_pos = torch.cat([self.level_embed[lvl].expand(h * w, -1) for lvl, (h, w) in enumerate(shapes)])
        src = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        batch = src.shape[0]
        pos = (pos.to(src.dtype) + level_pos)[None].expand(batch, -1, -1)
        memory = self.encoder(src, pos, reference.expand(batch, -1, -1, -1), spatial_shapes, start)
        return memory, spatial_shapes, start

    def forward(self, srcs, content, reference_boxes, bbox_embed, refine=True, attn_mask=None):
        """content [S, D] and reference_boxes [S, 4] of the frame's queries -> hidden [L, S, D], boxes [L, S, 4]."""
        memory, spatial_shapes, start = self.encode(srcs)
        hidden, boxes = self.decoder(
            content[None], reference_boxes[None], memory, spatial_shapes, start, bbox_embed, refine, attn_mask
        )
        return hidden[:, 0], boxes[:, 0]
