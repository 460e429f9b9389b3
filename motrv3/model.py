"""MOTR with anchor queries (MOTRv3 §3.1, ablation baseline §4.4): the per-frame network.

One frame: backbone (strides 8/16/32) + an extra stride-64 level → 1×1/3×3 input projections
with GroupNorm → deformable encoder → decoder over detect (anchor) queries, track queries and,
in training with TGD, the track-query groups of §3.4 → per-layer class and box heads.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from motrv3.backbone import Backbone
from motrv3.config import ModelConfig, TGDConfig, TrackingConfig
from motrv3.qim import QueryInteraction
from motrv3.structures import FrameOutput
from motrv3.tgd import attention_mask, copy_groups, expand_track_groups
from motrv3.tracks import TrackState
from motrv3.transformer import MLP, DeformableTransformer


class MOTR(nn.Module):
    """The tracker network. `forward_frame` runs one frame; the clip loop lives in `motrv3.runner`."""

    def __init__(
        self,
        model_cfg: ModelConfig,
        tracking_cfg: TrackingConfig | None = None,
        tgd_cfg: TGDConfig | None = None,
    ):
        super().__init__()
        cfg = model_cfg
        self.model_cfg = cfg
        self.tracking_cfg = tracking_cfg or TrackingConfig()
        self.tgd_cfg = tgd_cfg or TGDConfig(enabled=False)
        if cfg.num_feature_levels < 1:
            raise ValueError(f"model.num_feature_levels={cfg.num_feature_levels}: must be ≥ 1")
        if cfg.d_model % 32:
            raise ValueError(
                f"model.d_model={cfg.d_model}: must be a multiple of 32 (GroupNorm(32) projections)"
            )
        d_model = cfg.d_model
        self.num_queries = cfg.num_queries
        self.num_classes = cfg.num_classes
        self.backbone = Backbone(cfg.backbone, frozen_bn=cfg.frozen_bn, pretrained=cfg.pretrained)
        # Deformable DETR: the last min(L, 3) backbone maps, then stride-2 3×3 convs for the rest.
        self.num_backbone_levels = min(cfg.num_feature_levels, len(self.backbone.num_channels))
        in_channels = self.backbone.num_channels[-self.num_backbone_levels :]
        projections = [
            nn.Sequential(nn.Conv2d(c, d_model, kernel_size=1), nn.GroupNorm(32, d_model))
            for c in in_channels
        ]
        channels = in_channels[-1]
        for _ in range(cfg.num_feature_levels - self.num_backbone_levels):
            projections.append(
                nn.Sequential(
                    nn.Conv2d(channels, d_model, kernel_size=3, stride=2, padding=1),
                    nn.GroupNorm(32, d_model),
                )
            )
            channels = d_model
        self.input_proj = nn.ModuleList(projections)
        self.transformer = DeformableTransformer(
            d_model=d_model,
            nheads=cfg.nheads,
            enc_layers=cfg.enc_layers,
            dec_layers=cfg.dec_layers,
            dim_feedforward=cfg.dim_feedforward,
            dropout=cfg.dropout,
            num_feature_levels=cfg.num_feature_levels,
            enc_n_points=cfg.enc_n_points,
            dec_n_points=cfg.dec_n_points,
            impl=cfg.deform_attn_impl,
        )
        # Anchor queries: a learned reference box (used as is, in [0, 1]) and a learned content.
        self.position = nn.Embedding(cfg.num_queries, 4)
        self.query_embed = nn.Embedding(cfg.num_queries, d_model)
        class_embed = nn.Linear(d_model, cfg.num_classes)
        bbox_embed = MLP(d_model, d_model, 4, 3)
        # Focal loss prior: every query starts at p = 0.01 (RetinaNet / Deformable DETR).
        nn.init.constant_(class_embed.bias, -math.log((1 - 0.01) / 0.01))
        nn.init.constant_(bbox_embed.layers[-1].weight, 0.0)
        nn.init.constant_(bbox_embed.layers[-1].bias, 0.0)
        if cfg.box_refine:
            self.class_embed = nn.ModuleList(_clone(class_embed) for _ in range(cfg.dec_layers))
            self.bbox_embed = nn.ModuleList(_clone(bbox_embed) for _ in range(cfg.dec_layers))
            nn.init.constant_(self.bbox_embed[0].layers[-1].bias[2:], -2.0)
        else:
            nn.init.constant_(bbox_embed.layers[-1].bias[2:], -2.0)
            self.class_embed = nn.ModuleList([class_embed] * cfg.dec_layers)
            self.bbox_embed = nn.ModuleList([bbox_embed] * cfg.dec_layers)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)
        nn.init.uniform_(self.position.weight, 0, 1)
        if cfg.detect_query_groups < 1:
            raise ValueError(f"model.detect_query_groups={cfg.detect_query_groups}: must be ≥ 1")
        if cfg.detect_query_groups > 1:  # Group DETR: copies trained in detection-only mode only
            extra = (cfg.detect_query_groups - 1) * cfg.num_queries
            self.group_position = nn.Embedding(extra, 4)
            self.group_query_embed = nn.Embedding(extra, d_model)
            nn.init.uniform_(self.group_position.weight, 0, 1)
        self.track_embed = QueryInteraction(d_model, cfg.dim_feedforward, cfg.nheads, cfg.dropout)

    def train(self, mode: bool = True) -> MOTR:
        if mode and getattr(self, "inference_only", False):
            raise RuntimeError(
                "MOTR.train: this copy was prepared by motrv3.optimize_for_inference (batch norm "
                "folded, weights frozen); train the original model instead"
            )
        return super().train(mode)

    @property
    def d_model(self) -> int:
        return self.model_cfg.d_model

    def empty_tracks(self) -> TrackState:
        weight = self.query_embed.weight
        return TrackState.empty(self.d_model, device=weight.device, dtype=weight.dtype)

    @staticmethod
    def _one_image(image: torch.Tensor) -> torch.Tensor:
        if image.dim() == 3:
            image = image[None]
        if image.dim() != 4 or image.shape[0] != 1 or image.shape[1] != 3:
            raise ValueError(f"MOTR: expected one image [1, 3, H, W], got shape {tuple(image.shape)}")
        return image

    def multiscale_features(self, image: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
        """image [1, 3, H, W] (or [3, H, W]), or the backbone's stride-8/16/32 maps -> projected levels."""
        if isinstance(image, (list, tuple)):
            features = list(image)
        else:
            features = self.backbone(self._one_image(image))
        features = features[-self.num_backbone_levels :]
        srcs = [proj(f) for proj, f in zip(self.input_proj, features, strict=False)]
        for proj in self.input_proj[len(srcs) :]:
            srcs.append(proj(features[-1] if len(srcs) == len(features) else srcs[-1]))
        return srcs

    def _frame(self, stem, content, reference_boxes, attn_mask):
        """stem: the backbone stem's output, or the backbone's stride-8/16/32 maps as a list."""
        srcs = self.multiscale_features(stem if isinstance(stem, list) else self.backbone.trunk(stem))
        hidden, boxes = self.transformer(
            srcs,
            content,
            reference_boxes,
            self.bbox_embed,
            refine=self.model_cfg.box_refine,
            attn_mask=attn_mask,
        )
        logits = torch.stack([head(h) for head, h in zip(self.class_embed, hidden, strict=True)])
        return logits, boxes, hidden[-1]

    def forward_frame(
        self,
        image: torch.Tensor | list[torch.Tensor],
        tracks: TrackState | None = None,
        num_groups: int | None = None,
        generator: torch.Generator | None = None,
        checkpointed: bool = True,
    ) -> FrameOutput:
        """One frame: detect queries [0, M), track queries [M, M+N), TGD groups after them.

        num_groups: TGD copy groups appended (the paper's G − 1). None: `tgd.groups` − 1 when
        training with TGD enabled, else 0 (inference is never changed by TGD). The copies' boxes get the appendix-B noise when TGDConfig.noise.
        With `ModelConfig.activation_checkpointing`, `checkpointed=False` exempts this frame (a
        clip's last frame, whose backward follows at once; MOTR does the same).
        """
        num_det = self.num_queries
        content = self.query_embed.weight
        reference = self.position.weight
        num_track = 0
        if tracks is not None and len(tracks):
            num_track = len(tracks)
            content = torch.cat([content, tracks.content])
            reference = torch.cat([reference, tracks.boxes])
        if num_groups is None:
            num_groups = copy_groups(self.tgd_cfg) if self.training else 0
        if num_track == 0:
            num_groups = 0
        attn_mask = None
        if num_groups > 0:
            noise = self.tgd_cfg.noise_scale if self.tgd_cfg.noise else None
            group_content, group_boxes = expand_track_groups(
                tracks.content, tracks.boxes, num_groups, noise, generator
            )
            content = torch.cat([content, group_content])
            reference = torch.cat([reference, group_boxes])
            attn_mask = attention_mask(
                num_det, num_track, num_groups, device=content.device, mode=self.tgd_cfg.mask
            )
        # The frozen stem stays outside checkpointing: recomputing it would buy no memory.
        stem = list(image) if isinstance(image, (list, tuple)) else self.backbone.stem(self._one_image(image))
        recompute = checkpointed and self.model_cfg.activation_checkpointing
        if recompute and self.training and torch.is_grad_enabled():
            logits, boxes, hidden = checkpoint(
                self._frame, stem, content, reference, attn_mask, use_reentrant=False
            )
        else:
            logits, boxes, hidden = self._frame(stem, content, reference, attn_mask)
        return FrameOutput(logits, boxes, hidden, num_det=num_det, num_track=num_track, num_groups=num_groups)

    def detect_frames(self, images: torch.Tensor) -> list[list[FrameOutput]]:
        """Detect queries only, on B independent frames [B, 3, H, W] in one batched pass: [frame][group].

        In training with `detect_query_groups` G > 1, G query groups (Group DETR) decode side by
        side, masked from each other in self-attention, each a FrameOutput matched on its own;
        otherwise one group.

        The PLD detector's training (`clip_forward(detection_only=True)`): without track queries
        nothing depends on the previous frame, so backbone, encoder and decoder all batch over
        the frames (one GEMM per layer instead of B, and batch statistics for a trainable BN).
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"MOTR.detect_frames: expected images [B, 3, H, W], got {tuple(images.shape)}")
        srcs = self.multiscale_features(self.backbone(images))
        memory, spatial_shapes, start = self.transformer.encode(srcs)
        batch, num = images.shape[0], self.num_queries
        content, position = self.query_embed.weight, self.position.weight
        groups, attn_mask = 1, None
        if self.training and hasattr(self, "group_query_embed"):
            groups = self.model_cfg.detect_query_groups
            content = torch.cat([content, self.group_query_embed.weight])
            position = torch.cat([position, self.group_position.weight])
            group_of = torch.arange(groups * num, device=content.device) // num
            attn_mask = group_of[:, None] != group_of[None, :]  # True: no attention across groups
        hidden, boxes = self.transformer.decoder(
            content[None].expand(batch, -1, -1),
            position[None].expand(batch, -1, -1),
            memory,
            spatial_shapes,
            start,
            self.bbox_embed,
            self.model_cfg.box_refine,
            attn_mask,
        )
        logits = torch.stack([head(h) for head, h in zip(self.class_embed, hidden, strict=True)])
        return [
            [
                FrameOutput(
                    logits[:, b, g * num : (g + 1) * num],
                    boxes[:, b, g * num : (g + 1) * num],
                    hidden[-1, b, g * num : (g + 1) * num],
                    num_det=num,
                    num_track=0,
                )
                for g in range(groups)
            ]
            for b in range(batch)
        ]

    def next_tracks(
        self,
        out: FrameOutput,
        tracks: TrackState | None,
        index: torch.Tensor,
        ids: torch.Tensor,
        misses: torch.Tensor | None = None,
        update_threshold: float | None = None,
    ) -> TrackState:
        """Query interaction: the queries at `index` (into [0, M+N)) become next frame's track queries.

        ids/misses [K] are the new state of those queries. With `update_threshold` only queries
        scoring above it get a new content and box (inference, MOTRv2); None updates all (training).
        """
        content = self.query_embed.weight
        reference = self.position.weight.detach()
        if tracks is not None and len(tracks):
            content = torch.cat([content, tracks.content])
            reference = torch.cat([reference, tracks.boxes])
        scores = out.logits[-1, : out.num_original].detach().sigmoid().max(-1).values[index]
        update = None if update_threshold is None else scores > update_threshold
        new_content, new_boxes = self.track_embed(
            content[index], reference[index], out.hidden[index], out.boxes[-1, index], update
        )
        if misses is None:
            misses = torch.zeros_like(ids)
        return TrackState(new_content, new_boxes.detach(), ids, scores, misses)


def _clone(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module)


def build_model(
    model_cfg: ModelConfig, tracking_cfg: TrackingConfig | None = None, tgd_cfg: TGDConfig | None = None
) -> MOTR:
    """The MOTR-with-anchor-queries network of `model_cfg` (TGD active in training when tgd_cfg.enabled)."""
    return MOTR(model_cfg, tracking_cfg, tgd_cfg)
