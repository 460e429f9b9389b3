"""Query interaction module: turns a frame's decoder output into next frame's track queries (MOTR/MOTRv2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from motrv3.position_encoding import box_sine_embedding


class QueryInteraction(nn.Module):
    """MOTRv2's QIM: self-attention among the tracks' decoder outputs, then an FFN that updates the content.

    For each kept query with decoder output h and reference box b (the predicted box, detached):
        t = LN1(h + SelfAttn(q = k = sine(b) + h, v = h))
        t = LN2(t + FFN(t))
        content' = LN_feat(content + FFN_feat(t))
    Keys match MOTRv2's `QueryInteractionModulev2` without query-position update (positions of
    anchor queries come from the reference box).
    """

    def __init__(self, d_model: int, d_ffn: int, nheads: int, dropout: float = 0.0):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nheads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.linear_feat1 = nn.Linear(d_model, d_ffn)
        self.linear_feat2 = nn.Linear(d_ffn, d_model)
        self.dropout_feat1 = nn.Dropout(dropout)
        self.dropout_feat2 = nn.Dropout(dropout)
        self.norm_feat = nn.LayerNorm(d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(
        self,
        content: torch.Tensor,
        ref_boxes: torch.Tensor,
        hidden: torch.Tensor,
        pred_boxes: torch.Tensor,
        update: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """content, hidden [K, D]; ref_boxes, pred_boxes [K, 4] -> (content', boxes') of the next frame.

        `update` [K] bool (inference: score above the keep score) limits the update to confident
        queries, the others keep content and box (MOTRv2); None updates all (training, MOTR).
        """
        if content.shape[0] == 0:
            return content, ref_boxes
        pred_boxes = pred_boxes.detach()
        boxes = pred_boxes if update is None else torch.where(update[:, None], pred_boxes, ref_boxes)
        q = k = (box_sine_embedding(boxes, hidden.shape[-1]) + hidden)[None]
        tgt = hidden[None]
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, k, tgt, need_weights=False)[0]))
        tgt = self.norm2(tgt + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(tgt))))))
        feat = self.linear_feat2(self.dropout_feat1(F.relu(self.linear_feat1(tgt))))
        new_content = self.norm_feat(content + self.dropout_feat2(feat[0]))
        if update is not None:
            new_content = torch.where(update[:, None], new_content, content)
        return new_content, boxes
