"""One training clip through the tracker: frame by frame, track queries carried over (MOTR, Eq. 2 and 5)."""

from __future__ import annotations

import torch
from torchvision.ops import box_convert, box_iou

from motrv3.config import TrackingConfig
from motrv3.structures import ClipResult, FrameOutput
from motrv3.tracks import TrackState

# MOTR/MOTRv2: a matched query whose box overlaps its label by at most this goes on as a
# false-positive track (its identity is withdrawn) instead of carrying the identity.
MIN_TRACK_IOU = 0.5


def clip_forward(
    model,
    criterion,
    clip: dict,
    tracking_cfg: TrackingConfig,
    generator: torch.Generator | None = None,
    detection_only: bool = False,
) -> ClipResult:
    """Forward a clip (docs/architecture.md, clip contract) and return the Eq. 5 clip loss.

    Per frame i: decoder over detect + track queries (+ TGD groups in training), the criterion's
    frame loss, then Ψ of Eq. 2 builds the next frame's track queries (`training_track_update`).
    `detection_only`: frames are independent, no track queries, every label trains the detect
    queries (the PLD detector).
    """
    from motrv3.criterion import clip_loss
    from motrv3.stats import sum_stats

    images = clip["images"]
    targets = clip["targets"]
    if images.dim() != 4 or images.shape[0] != len(targets):
        raise ValueError(
            f"clip_forward: images {tuple(images.shape)} do not match {len(targets)} targets "
            f"(sequence {clip.get('meta', {}).get('sequence')!r})"
        )
    tracks: TrackState | None = None
    results, num_tracks = [], []
    empty_ids = torch.zeros(0, dtype=torch.long, device=images.device)
    for frame, target in enumerate(targets):
        num_tracks.append(0 if tracks is None else len(tracks))
        out = model.forward_frame(
            images[frame : frame + 1],
            None if detection_only else tracks,
            0 if detection_only else None,
            generator,
            checkpointed=frame + 1 < len(targets),
        )
        track_ids = empty_ids if tracks is None or detection_only else tracks.ids
        result = criterion.frame_loss(out, target, track_ids)
        results.append(result)
        if not detection_only and frame + 1 < len(targets):
            tracks = training_track_update(model, out, tracks, result, target, tracking_cfg, generator)
    loss, terms = clip_loss(results)
    return ClipResult(
        loss=loss, terms=terms, stats=sum_stats(r.stats for r in results), num_tracks=num_tracks
    )


def training_track_update(
    model,
    out: FrameOutput,
    tracks: TrackState | None,
    result,
    target: dict,
    cfg: TrackingConfig,
    generator: torch.Generator | None = None,
) -> TrackState:
    """Ψ of Eq. 2 in training (MOTR/MOTRv2 `match_for_single_frame` + QIM), vectorised over queries.

    1. Identities: a track query keeps its identity if that identity is in the frame, else −1
       (MOTR drops disappeared identities at once in training; miss tolerance is an inference
       rule); a detect query matched at the last layer takes its new identity.
    2. A query with an identity whose last-layer box has IoU ≤ 0.5 with its label loses it.
    3. Kept: queries with an identity, plus (MOTRv2) unmatched ones scoring above
       `fp_score_threshold`, which go on as false-positive tracks (identity −1).
    4. MOTR augmentations: each kept track with an identity is dropped with `drop_track_prob`;
       for each remaining one, with `fp_track_prob`, the not-kept query without identity that
       overlaps it most is added as a false-positive track.
    5. The query interaction module turns the kept queries into next frame's track queries.
    """
    num_original = out.num_original
    device = out.logits.device
    track_ids = (
        tracks.ids if tracks is not None and len(tracks) else torch.zeros(0, dtype=torch.long, device=device)
    )
    kept_track_ids = torch.where(result.track_matched.to(device), track_ids, torch.full_like(track_ids, -1))
    ids = torch.cat([result.det_matched_ids.to(device), kept_track_ids])

    with torch.no_grad():
        pred_boxes = out.boxes[-1, :num_original]
        scores = out.logits[-1, :num_original].sigmoid().max(-1).values
        obj_ids = target["obj_ids"].to(device)
        has_id = ids >= 0
        if has_id.any():
            # Label row of each identity (identities are unique within a frame).
            label_row = (ids[:, None] == obj_ids[None, :]).float().argmax(1)
            label_boxes = target["boxes"].to(device)[label_row]
            iou = box_iou(
                box_convert(pred_boxes, "cxcywh", "xyxy"), box_convert(label_boxes, "cxcywh", "xyxy")
            )
            ious = iou.diagonal()
            ids = torch.where(has_id & (ious <= MIN_TRACK_IOU), torch.full_like(ids, -1), ids)
        has_id = ids >= 0
        keep = has_id | (scores > cfg.fp_score_threshold)

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


def _uniform(n: int, generator: torch.Generator | None, device) -> torch.Tensor:
    return torch.rand(n, generator=generator).to(device)
