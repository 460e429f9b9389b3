"""Data passed between the model, the criterion and the clip runner (see docs/architecture.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class FrameOutput:
    """Decoder output for one frame.

    Query order: detect queries [0, M), track queries [M, M+N), then (training with TGD only)
    G groups of track-query copies, group g at [M+N+g·N, M+N+(g+1)·N).
    """

    logits: torch.Tensor  # [L, S, C] class logits of every decoder layer
    boxes: torch.Tensor  # [L, S, 4] sigmoid cx, cy, w, h of every decoder layer
    hidden: torch.Tensor  # [S, D] last-layer decoder embeddings (query interaction input)
    num_det: int  # M
    num_track: int  # N
    num_groups: int = 0  # TGD copy groups after the originals: `tgd.groups` − 1 (motrv3.tgd)

    @property
    def num_layers(self) -> int:
        return self.logits.shape[0]

    @property
    def num_original(self) -> int:
        """M + N: the queries that exist at inference (the TGD copies follow them)."""
        return self.num_det + self.num_track


@dataclass
class FrameLossResult:
    """What the criterion returns for one frame of a clip."""

    losses: dict[str, torch.Tensor]  # per-term weighted sums of the frame, before / O_i
    num_objects: float  # O_i of Eq. 5 (at least 1, to keep empty frames finite)
    # Eq. 2's σ_t after this frame, per original query (detect then track), from the last layer:
    query_ids: torch.Tensor  # [M+N] identity each query carries on (a track keeps an absent one), −1 none
    query_labels: torch.Tensor  # [M+N] label index each query is trained on at the last layer, −1 none
    stats: dict[str, torch.Tensor | float] = field(default_factory=dict)  # label-assignment counts
    # Label index (into the frame's labels / pseudo labels, −1 background) per query and decoder
    # layer: "det" [L, M+N] (Eq. 1+2 or RFS), "pld" [L, M+N], "tgd" [L, (G−1)·N]; rows of layers
    # without loss (aux_loss off) are −1. For inspection and tests; the loss does not read it.
    assignments: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class ClipResult:
    """What `motrv3.clip_forward` returns for one training clip."""

    loss: torch.Tensor  # scalar, Eq. 5, for backward
    terms: dict[str, float]  # per loss term Σ_i term_i / O_i, plus "loss"
    stats: dict[str, torch.Tensor | float]  # label-assignment counts summed over the frames
    num_tracks: list[int] = field(default_factory=list)  # track queries entering each frame
