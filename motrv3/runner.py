"""One training clip through the tracker: frame by frame, track queries carried over (MOTR, Eq. 2 and 5)."""

from __future__ import annotations

import torch
from torchvision.ops import box_convert, box_iou

from motrv3.config import TrackingConfig
from motrv3.structures import ClipResult, FrameOutput
from motrv3.tracks import TrackState

# MOTR/MOTRv2: a query matched to a label whose box overlaps it by at most this loses the identity
# (MOTRv2 `QueryInteractionModulev2._select_active_tracks`, MOTR `QueryInteractionModule`).
MIN_TRACK_IOU = 0.5


def clip_forward(
    model,
    criterion,
    clip: dict,
    tracking_cfg: TrackingConfig,
    generator: torch.Generator | None = None,
    detection_only: bool = False,
    batch_frames: bool = True,
) -> ClipResult:
    """Forward a clip (docs/architecture.md, clip contract) and return the Eq. 5 clip loss.

    The clip's targets are validated once here (`ClipCriterion.validate_targets`). Per frame i:
    decoder over detect + track queries (+ TGD groups in training), the criterion's frame loss,
    then Ψ of Eq. 2 builds the next frame's track queries (`training_track_update`).
    `detection_only`: frames are independent, no track queries, every label trains the detect
    queries (the PLD detector); the whole clip is then one batched forward (`MOTR.detect_frames`,
    with its Group-DETR query groups). `batch_frames=False` runs every frame on its own, the
    pre-batching path (same loss up to float rounding with frozen BN; kept for the benchmark).
    """
    from motrv3.criterion import clip_loss, validate_output
    from motrv3.stats import sum_stats, tracking_counts

    images = clip["images"]
    targets = clip["targets"]
    sequence = clip.get("meta", {}).get("sequence")
    if images.dim() != 4 or images.shape[0] != len(targets):
        raise ValueError(
            f"clip_forward: images {tuple(images.shape)} do not match {len(targets)} targets "
            f"(sequence {sequence!r})"
        )
    criterion.validate_targets(targets, where=f"clip of sequence {sequence!r}")
    if detection_only and batch_frames and hasattr(model, "detect_frames"):
        return _detection_clip(model, criterion, images, targets)
    # The backbone does not depend on the track queries: one batched pass over the clip's frames
    # (bigger convolutions, and a trainable BN sees the clip as its batch). Activation
    # checkpointing keeps the per-frame path, whose point is not to hold every frame's maps.
    features = None
    config = getattr(model, "model_cfg", None)  # wrappers without one run frame by frame
    if batch_frames and config is not None and not config.activation_checkpointing:
        features = model.backbone(images)
    tracks: TrackState | None = None
    results, num_tracks = [], []
    empty_ids = torch.zeros(0, dtype=torch.long, device=images.device)
    for frame, target in enumerate(targets):
        num_tracks.append(0 if tracks is None else len(tracks))
        out = model.forward_frame(
            images[frame : frame + 1] if features is None else [f[frame : frame + 1] for f in features],
            None if detection_only else tracks,
            0 if detection_only else None,
            generator,
            checkpointed=frame + 1 < len(targets),
        )
        track_ids = empty_ids if tracks is None or detection_only else tracks.ids
        validate_output(out, criterion.num_classes, track_ids)  # sizes only: no device read
        result = criterion.frame_loss(out, target, track_ids)
        if not detection_only:
            result.stats.update(
                tracking_counts(
                    out.logits[-1, : out.num_original],
                    out.boxes[-1, : out.num_original],
                    out.num_det,
                    track_ids,
                    result.query_labels,
                    target["boxes"].to(out.boxes.device),
                    tracking_cfg.new_track_score,
                )
            )
        results.append(result)
        if not detection_only and frame + 1 < len(targets):
            tracks = training_track_update(model, out, tracks, result, target, tracking_cfg, generator)
    loss, terms = clip_loss(results)
    return ClipResult(
        loss=loss, terms=terms, stats=sum_stats(r.stats for r in results), num_tracks=num_tracks
    )


def _detection_clip(model, criterion, images: torch.Tensor, targets: list[dict]) -> ClipResult:
    """Detection-only training on a clip's frames as one batch; each query group matched on its own."""
    from motrv3.criterion import clip_loss, validate_output
    from motrv3.stats import sum_stats

    empty_ids = torch.zeros(0, dtype=torch.long, device=images.device)
    results = []
    for groups, target in zip(model.detect_frames(images), targets, strict=True):
        for out in groups:
            validate_output(out, criterion.num_classes, empty_ids)
            results.append(criterion.frame_loss(out, target, empty_ids))
    loss, terms = clip_loss(results)
    # Statistics of the first group only: the one inference uses.
    stats = sum_stats(r.stats for r in results[:: len(results) // len(targets)])
    return ClipResult(loss=loss, terms=terms, stats=stats, num_tracks=[0] * len(targets))


def training_track_update(
    model,
    out: FrameOutput,
    tracks: TrackState | None,
    result,
    target: dict,
    cfg: TrackingConfig,
    generator: torch.Generator | None = None,
) -> TrackState:
    """Ψ of Eq. 2 in training, as MOTR/MOTRv2 do it (`ClipMatcher.match_for_single_frame` + the
    query interaction module's `_select_active_tracks`), vectorised over the M+N queries.

    1. Identities (`result.query_ids`, from the criterion's last layer): a track query keeps its
       identity whether or not its target is in this frame (absent: trained as background, and it
       gets its label back if the target reappears); a free query (detect query, or track query
       without identity) matched to a new-born label takes that label's identity.
    2. Kept (MOTRv2): every query with an identity, plus the queries scoring above
       `fp_score_threshold` (0.5), which go on without identity.
    3. A query matched to a label in this frame whose last-layer box has IoU ≤ 0.5 with it loses
       its identity but stays kept (MOTRv2: `obj_idxes[iou <= 0.5] = -1` after the selection);
       without identity it joins the next frame's matching with the new-born labels.
    4. MOTR's augmentations (`_random_drop_tracks`, `_add_fp_tracks`; MOTRv2's QIMv2 defines but
       never calls them): each kept track with an identity is dropped with `drop_track_prob`; for
       each remaining one, with `fp_track_prob`, the not-kept query without identity that overlaps
       it most is added as a track without identity.
    5. The query interaction module turns the kept queries into next frame's track queries.
    """
    num_original = out.num_original
    device = out.logits.device
    ids = result.query_ids.to(device)
    labels = result.query_labels.to(device)

    with torch.no_grad():
        pred_boxes = out.boxes[-1, :num_original]
        scores = out.logits[-1, :num_original].sigmoid().max(-1).values
        keep = (ids >= 0) | (scores > cfg.fp_score_threshold)
        matched = labels >= 0
        label_boxes = (
            target["boxes"].to(device)[labels.clamp(min=0)] if target["boxes"].shape[0] else pred_boxes
        )
        drifted = matched & (paired_iou(pred_boxes, label_boxes) <= MIN_TRACK_IOU)
        ids = torch.where(drifted, torch.full_like(ids, -1), ids)
        has_id = ids >= 0

        if cfg.drop_track_prob > 0:
            dropped = has_id & (_uniform(num_original, generator, device) < cfg.drop_track_prob)
            keep = keep & ~dropped
        if cfg.fp_track_prob > 0:
            sources = (keep & has_id).nonzero(as_tuple=True)[0]
            candidates = (~keep & ~has_id).nonzero(as_tuple=True)[0]  # never a dropped identity
            chosen = sources[_uniform(sources.numel(), generator, device) < cfg.fp_track_prob]
            if chosen.numel() >= candidates.numel():
                keep[candidates] = True  # MOTR: more false positives asked for than queries left
            elif chosen.numel():
                xyxy = box_convert(pred_boxes, "cxcywh", "xyxy")
                overlap = box_iou(xyxy[chosen], xyxy[candidates])
                keep[candidates[overlap.argmax(1).unique()]] = True
    index = keep.nonzero(as_tuple=True)[0]
    return model.next_tracks(out, tracks, index, ids[index])


def paired_iou(boxes: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """IoU of row i of `boxes` with row i of `others` (cx, cy, w, h), [Q] (MOTR's `matched_boxlist_iou`)."""
    a = box_convert(boxes, "cxcywh", "xyxy")
    b = box_convert(others, "cxcywh", "xyxy")
    width_height = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp(min=0)
    inter = width_height.prod(-1)
    union = (a[:, 2:] - a[:, :2]).prod(-1) + (b[:, 2:] - b[:, :2]).prod(-1) - inter
    return inter / union.clamp(min=torch.finfo(union.dtype).tiny)


def _uniform(n: int, generator: torch.Generator | None, device) -> torch.Tensor:
    return torch.rand(n, generator=generator).to(device)
