"""The criterion of MOTR / MOTRv3 in DETR's shape (MOTRv3 §3, Eqs. 1, 2, 3, 5; TGD's loss §3.4).

`ClipCriterion` is an `nn.Module` with the matcher injected and its supervisions as a list
(`motrv3.supervision`, one module each, DETR's `SetCriterion` losses):

- `StandardSupervision` (Eq. 1 + 2): MOTR's assignment in every layer RFS does not take; the last
  layer always, and only it feeds Ψ of Eq. 2 (`FrameLossResult.query_ids`);
- `RFSSupervision` and its readings (§3.2, `rfs.reading`): the matching space 𝔖_a in `rfs.layers`
  (default the first L−1);
- `PLDSupervision` (§3.3, Eq. 3): pseudo labels, each query's loss weighted by ω_j;
- `TGDSupervision` (§3.4): the track-query group copies take their original's assignment.

Every supervised set gets Deformable-DETR's detection loss (`motrv3.supervision.detection_loss`,
§3.1). Losses are sums; Eq. 5's division by O_i is `clip_loss`.

Query order of a frame (docs/architecture.md): detect queries [0, M), track queries [M, M+N), and
with TGD the G−1 copy groups, copy group g at [M+N+g·N, M+N+(g+1)·N).

Input validation happens once per clip (`validate_targets`, called by `motrv3.clip_forward`), not
in `frame_loss`, which is on the training hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from motrv3.config import LossConfig, ModelConfig, PLDConfig, RFSConfig, TGDConfig
from motrv3.matcher import HungarianMatcher, build_matcher
from motrv3.structures import FrameLossResult, FrameOutput
from motrv3.supervision import (
    LOSS_TERMS,
    FrameContext,
    FrameTargets,
    build_supervisions,
    pseudo_label_sets,
    rfs_layers,
    supervised_layers,
)


def identity_assignment(track_ids: torch.Tensor, obj_ids: torch.Tensor) -> torch.Tensor:
    """Eq. 2 in one frame: label index of each track query's identity (−1: no identity, or absent)."""
    if track_ids.numel() == 0 or obj_ids.numel() == 0:
        return torch.full_like(track_ids, -1, dtype=torch.long)
    same = (track_ids[:, None] == obj_ids[None, :]) & (track_ids[:, None] >= 0)
    return torch.where(same.any(1), same.to(torch.uint8).argmax(1), torch.full_like(track_ids, -1))


class ClipCriterion(nn.Module):
    """MOTR's multi-frame criterion with the three MOTRv3 strategies as switches (RFS, PLD, TGD).

    `frame_loss` is called once per frame by the clip runner; `clip_loss` (Eq. 5) sums the frames.
    `record_assignments`: keep every supervision's per-layer assignment in
    `FrameLossResult.assignments` (for inspection and tests; training leaves it off).
    """

    def __init__(
        self,
        matcher: HungarianMatcher,
        loss_cfg: LossConfig,
        rfs_cfg: RFSConfig,
        pld_cfg: PLDConfig,
        tgd_cfg: TGDConfig,
        num_classes: int = 1,
        record_assignments: bool = False,
    ) -> None:
        super().__init__()
        self.matcher = matcher
        self.loss_cfg = loss_cfg
        self.rfs_cfg = rfs_cfg
        self.pld_cfg = pld_cfg
        self.tgd_cfg = tgd_cfg
        self.num_classes = num_classes
        self.record_assignments = record_assignments
        self.supervisions = build_supervisions(loss_cfg, matcher, rfs_cfg, pld_cfg, tgd_cfg)
        self.loss_names = list(dict.fromkeys(sup.name for sup in self.supervisions))

    def early_layers(self, num_layers: int) -> list[int]:
        """The decoder layers that use 𝔖_a when RFS is on (`rfs.layers`, default the first L−1).

        The statistics measure these layers with or without RFS, so the two runs compare (Fig. 2, 6).
        """
        return rfs_layers(self.rfs_cfg, self.loss_cfg, num_layers)

    def required_keys(self) -> list[str]:
        """The target keys the supervisions read, in order."""
        return list(dict.fromkeys(key for sup in self.supervisions for key in sup.target_keys))

    # ------------------------------------------------------------------------------ one frame
    def frame_loss(self, out: FrameOutput, target: dict, track_ids: torch.Tensor) -> FrameLossResult:
        """Loss sums of one frame: `det_*` (Eq. 1+2 / RFS), `pld_*` (Eq. 3), `tgd_*` (§3.4).

        Each term is λ-weighted and summed over the layers of its supervision; Eq. 5's division by
        O_i happens in `clip_loss`. Terms of enabled strategies are always present (zero when the
        frame has no pseudo labels / no track groups) so every frame has the same keys.
        `target` must have passed `validate_targets` (the runner does it once per clip).
        """
        num_det, num_layers, num_original = out.num_det, out.num_layers, out.num_original
        if out.num_groups and not self.tgd_cfg.enabled:
            raise ValueError(f"FrameOutput.num_groups = {out.num_groups} but tgd.enabled is false")
        device = out.logits.device
        frame = self.prepare_frame(target, track_ids, num_det, device)
        unassigned = torch.full((num_layers, num_original), -1, dtype=torch.long, device=device)
        ctx = FrameContext(out, frame, self.matcher, unassigned, unassigned.clone())
        zero = out.logits.new_zeros((), dtype=torch.float32)
        losses = {f"{name}_{term}": zero for name in self.loss_names for term in LOSS_TERMS}
        records: dict[str, torch.Tensor] = {}
        for sup in self.supervisions:
            layers = sup.layers(num_layers)
            if self.record_assignments and sup.name not in records:
                records[sup.name] = torch.full(
                    (num_layers, *sup.record_shape(ctx)), -1, dtype=torch.long, device=device
                )
            if not sup.active(ctx):
                continue
            for layer in layers:
                assigned, terms = sup.assign(ctx, layer)
                for term, value in terms.items():
                    losses[f"{sup.name}_{term}"] = losses[f"{sup.name}_{term}"] + value
                if self.record_assignments:
                    records[sup.name][layer] = assigned

        last = ctx.det_assigned[num_layers - 1]
        # Ψ of Eq. 2: carried identities stay (absent or not), free queries take their label's identity.
        carried = torch.cat([frame.track_ids.new_full((num_det,), -1), frame.track_ids])
        matched_ids = frame.obj_ids[last.clamp(min=0)] if frame.obj_ids.numel() else carried
        query_ids = torch.where(carried >= 0, carried, torch.where(last >= 0, matched_ids, carried))
        supervised = supervised_layers(self.loss_cfg, num_layers)
        measured_early = [layer for layer in self.early_layers(num_layers) if layer in set(supervised)]
        if "pld" in records:  # parallel PLD: [S, L, M+N], row s indexing source s's own labels
            records["pld"] = records["pld"].movedim(0, 1) if records["pld"].dim() == 3 else records["pld"]
        return FrameLossResult(
            losses=losses,
            num_objects=float(max(frame.labels.shape[0], 1)),
            query_ids=query_ids,
            query_labels=last,
            stats=assignment_counts(
                ctx.det_matched, num_det, frame.labels.shape[0], supervised, measured_early
            ),
            assignments=records,
        )

    def prepare_frame(
        self, target: dict, track_ids: torch.Tensor, num_det: int, device: torch.device
    ) -> FrameTargets:
        """The frame's labels on `device`, Eq. 2's fixed part, 𝔖_d's queries and labels, PLD's sets."""
        labels = target["labels"].to(device=device, dtype=torch.long)
        obj_ids = target["obj_ids"].to(device=device, dtype=torch.long)
        track_ids = track_ids.to(device=device, dtype=torch.long)
        track_target = identity_assignment(track_ids, obj_ids)
        carried = torch.zeros(labels.shape[0], dtype=torch.bool, device=device)
        carried[track_target[track_target >= 0]] = True
        idle_tracks = (track_ids < 0).nonzero(as_tuple=True)[0] + num_det
        free_queries = torch.cat([torch.arange(num_det, device=device), idle_tracks])
        return FrameTargets(
            labels=labels,
            boxes=target["boxes"].to(device),
            obj_ids=obj_ids,
            track_ids=track_ids,
            track_target=track_target,
            free_queries=free_queries,
            new_labels=(~carried).nonzero(as_tuple=True)[0],
            pseudo_sets=pseudo_label_sets(self.pld_cfg, target, device),
        )

    # ------------------------------------------------------------------------------ validation
    def validate_targets(self, targets: Sequence[dict], where: str = "clip") -> None:
        """Key, shape and value checks of a clip's frame targets, with messages naming the field.

        Called once per clip (`motrv3.clip_forward`); the values are checked over the whole clip
        at once, so a clip costs one host-device synchronisation, not one per frame and check.
        """
        required = self.required_keys()
        num_sources = len(self.pld_cfg.sources)
        for index, target in enumerate(targets):
            at = f"{where} frame {index}: target"
            missing = [key for key in required if key not in target]
            if missing:
                raise ValueError(f"{at}: missing key(s) {missing} (have {sorted(target)})")
            num_labels = target["labels"].shape[0]
            if target["boxes"].shape != (num_labels, 4) or target["obj_ids"].shape != (num_labels,):
                raise ValueError(
                    f"{at}: boxes {tuple(target['boxes'].shape)}, labels {tuple(target['labels'].shape)}, "
                    f"obj_ids {tuple(target['obj_ids'].shape)}; expected [K, 4], [K], [K]"
                )
            if self.pld_cfg.enabled:
                num_pseudo = target["pseudo_scores"].shape[0]
                if target["pseudo_boxes"].shape != (num_pseudo, 4):
                    raise ValueError(
                        f"{at}: pseudo_boxes {tuple(target['pseudo_boxes'].shape)}, pseudo_scores "
                        f"{tuple(target['pseudo_scores'].shape)}; expected [P, 4], [P]"
                    )
                for key in ("pseudo_sources", "pseudo_labels"):
                    value = target.get(key)
                    if value is not None and value.shape != (num_pseudo,):
                        raise ValueError(f"{at}: {key} {tuple(value.shape)}, expected [P] = [{num_pseudo}]")
        # Value checks: every frame at once, one synchronisation.
        bad_class = [(t["labels"] >= self.num_classes).any() | (t["labels"] < 0).any() for t in targets]
        bad_class = [
            bad | ((t["pseudo_labels"] >= self.num_classes) | (t["pseudo_labels"] < 0)).any()
            if self.pld_cfg.enabled and t.get("pseudo_labels") is not None
            else bad
            for bad, t in zip(bad_class, targets, strict=True)
        ]
        repeated = [_has_repeats(t["obj_ids"]) for t in targets]
        bad_source = [
            ((t["pseudo_sources"] < 0) | (t["pseudo_sources"] >= num_sources)).any()
            for t in targets
            if self.pld_cfg.enabled and t.get("pseudo_sources") is not None
        ]
        flags = torch.stack([torch.as_tensor(f).cpu() for f in bad_class + repeated + bad_source]).tolist()
        count = len(targets)
        for index, bad in enumerate(flags[:count]):
            if bad:
                pseudo = targets[index].get("pseudo_labels") if self.pld_cfg.enabled else None
                raise ValueError(
                    f"{where} frame {index}: target labels {targets[index]['labels'].tolist()}"
                    f"{'' if pseudo is None else f' or pseudo_labels {pseudo.tolist()}'} outside "
                    f"0..{self.num_classes - 1} (model.num_classes = {self.num_classes})"
                )
        for index, bad in enumerate(flags[count : 2 * count]):
            if bad:
                raise ValueError(
                    f"{where} frame {index}: target obj_ids repeats an identity: "
                    f"{targets[index]['obj_ids'].tolist()}"
                )
        if any(flags[2 * count :]):
            raise ValueError(
                f"{where}: target pseudo_sources outside 0..{num_sources - 1} (pld.sources = {self.pld_cfg.sources})"
            )


def _has_repeats(ids: torch.Tensor) -> torch.Tensor:
    ordered = ids.sort().values
    return (ordered[1:] == ordered[:-1]).any()


def validate_output(out: FrameOutput, num_classes: int, track_ids: torch.Tensor) -> None:
    """Layout checks of a FrameOutput (sizes only, no tensor reads): [L, M+N+(G−1)·N, C] and [.., 4]."""
    if track_ids.shape != (out.num_track,):
        raise ValueError(f"track_ids: shape {tuple(track_ids.shape)}, expected [N] = [{out.num_track}]")
    expected = out.num_det + out.num_track + out.num_groups * out.num_track
    if out.logits.dim() != 3 or out.boxes.dim() != 3 or out.boxes.shape[-1] != 4:
        raise ValueError(
            f"FrameOutput.logits/boxes: expected [L, S, C] and [L, S, 4], got "
            f"{tuple(out.logits.shape)} and {tuple(out.boxes.shape)}"
        )
    if out.logits.shape[:2] != out.boxes.shape[:2] or out.logits.shape[1] != expected:
        raise ValueError(
            f"FrameOutput: {out.logits.shape[1]} queries in logits, {out.boxes.shape[1]} in boxes; "
            f"expected M + N + G·N = {out.num_det} + {out.num_track} + {out.num_groups}·{out.num_track}"
            f" = {expected} (G: TGD copy groups)"
        )
    if out.logits.shape[-1] != num_classes:
        raise ValueError(
            f"FrameOutput.logits: {out.logits.shape[-1]} classes, criterion built for {num_classes}"
        )


def assignment_counts(
    det_assigned: torch.Tensor,
    num_det: int,
    num_labels: int,
    supervised_layers: Sequence[int],
    early_layers: Sequence[int],
) -> dict[str, torch.Tensor | float]:
    """One frame's label-assignment counts (definitions in `motrv3.stats`), kept on the device.

    det_assigned [L, M+N]: label index per original query and layer (last row: Eq. 1 + Eq. 2).
    Counts stay tensors so that a clip synchronises once (`motrv3.stats.sum_stats`), not per frame.
    """
    last = det_assigned[-1]
    supervised = det_assigned[list(supervised_layers)]
    num_early = len(early_layers)
    stats: dict[str, torch.Tensor | float] = {
        "frames": 1.0,
        "labels": float(num_labels),
        "det_slot_matches": (supervised[:, :num_det] >= 0).sum(0),
        "last_det": (last[:num_det] >= 0).sum(),
        "last_track": (last[num_det:] >= 0).sum(),
        "early_layers": float(num_early),
        "early_labels": float(num_labels * num_early),
        "misaligned_of": float(num_labels if num_early else 0),
    }
    if num_early and num_labels:
        early = det_assigned[list(early_layers)]
        stats["early_det"] = (early[:, :num_det] >= 0).sum()
        stats["early_track"] = (early[:, num_det:] >= 0).sum()
        holders = detect_query_of_label(det_assigned[:, :num_det], num_labels)  # [L, K]
        # Fig. 6: a label whose detect query (or none) differs between an early layer and the last.
        stats["misaligned"] = (holders[list(early_layers)] != holders[-1]).any(0).sum()
    return stats


def detect_query_of_label(det_assigned: torch.Tensor, num_labels: int) -> torch.Tensor:
    """[L, M] label index per detect query → [L, K] detect query holding each label (−1: none)."""
    num_layers, num_det = det_assigned.shape
    holders = det_assigned.new_full((num_layers, num_labels + 1), -1)
    queries = torch.arange(num_det, device=det_assigned.device).expand(num_layers, num_det)
    # Column 0 collects the unassigned queries and is dropped; labels are one-to-one per layer.
    holders.scatter_(1, det_assigned + 1, queries)
    return holders[:, 1:]


def clip_loss(
    frame_results: Sequence[FrameLossResult],
    num_objects_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 5: L_clip = Σ_i (L_σr + L_σp + L_σg) / O_i over the T frames of a clip.

    Returns the scalar loss and the per-term values (each Σ_i term_i / O_i) plus `loss`.
    `num_objects_reduce` maps the [T] vector of O_i to the O_i to divide by, e.g. an all-reduce
    mean across DDP workers; the result is clamped to ≥ 1.
    """
    if not frame_results:
        raise ValueError("clip_loss: no frames")
    first = next(iter(frame_results[0].losses.values()))
    counts = torch.tensor([r.num_objects for r in frame_results], dtype=torch.float32, device=first.device)
    if num_objects_reduce is not None:
        counts = num_objects_reduce(counts)
    counts = counts.clamp(min=1.0)
    total = first.new_zeros((), dtype=torch.float32)
    parts: dict[str, torch.Tensor] = {}
    for result, count in zip(frame_results, counts, strict=True):
        for name, value in result.losses.items():
            part = value / count
            total = total + part
            parts[name] = parts.get(name, 0.0) + part.detach()
    names = list(parts)
    values = torch.stack(
        [torch.as_tensor(parts[name], device=first.device) for name in names] + [total.detach()]
    )
    numbers = values.tolist()  # one synchronisation for every term
    terms = dict(zip(names, numbers[:-1], strict=True))
    terms["loss"] = numbers[-1]
    return total, terms


def build_criterion(
    model_cfg: ModelConfig,
    loss_cfg: LossConfig,
    rfs_cfg: RFSConfig,
    pld_cfg: PLDConfig,
    tgd_cfg: TGDConfig,
    record_assignments: bool = False,
) -> ClipCriterion:
    """The criterion for a model config; validates `rfs.layers` against `model.dec_layers`."""
    if tgd_cfg.groups < 1:
        raise ValueError(f"tgd.groups = {tgd_cfg.groups}: must be ≥ 1 (G counts the original track queries)")
    criterion = ClipCriterion(
        build_matcher(loss_cfg),
        loss_cfg,
        rfs_cfg,
        pld_cfg,
        tgd_cfg,
        num_classes=model_cfg.num_classes,
        record_assignments=record_assignments,
    )
    criterion.early_layers(model_cfg.dec_layers)
    return criterion
