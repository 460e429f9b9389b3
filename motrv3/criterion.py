"""The criterion of MOTR / MOTRv3 in DETR's shape (MOTRv3 §3, Eqs. 1, 2, 3, 5; TGD's loss §3.4).

`ClipCriterion` is an `nn.Module` with the matcher injected. Each supervision is one method that
returns its assignment and its loss terms:

- `standard_supervision`: MOTR's assignment, Eq. 2 then Eq. 1. A track query carrying an identity
  keeps it (its label when the target is in the frame, background when it is not); the detect
  queries *and the track queries without an identity* are matched by Hungarian to the labels no
  track carries (matching space 𝔖_d). This is MOTR/MOTRv2's `ClipMatcher.match_for_single_frame`:
  every slot with `obj_idxes == -1` takes part in the matching with the untracked labels;
- `rfs_supervision` (§3.2): one Hungarian matching between all M+N queries and all K labels (𝔖_a),
  used in the layers `rfs.layers` (default the first L−1); the last layer always keeps the standard
  supervision, and only it feeds Ψ of Eq. 2 (`FrameLossResult.query_ids`);
- `pld_supervision` (§3.3, Eq. 3): a Hungarian matching of all M+N queries to one set of pseudo
  labels, each query's loss weighted by ω_j (the matched label's confidence, `pld.background_weight`
  when none). Eq. 3 writes Σ_{j=1..P} yet gives ω_j a case for "no label matched"; we follow the
  text: the sum runs over the M+N queries. `pld.combine = parallel` with several `pld.sources`
  (Table 4 row 3): one label set and one matching per source, the per-source losses add up;
- `tgd_supervision` (§3.4): copy j of every TGD group takes the last layer's standard assignment
  of original track query j ("the same as the original track query", appendix B: no matching).

Every supervised set gets Deformable-DETR's detection loss (`detection_loss`, §3.1): λ_cls · sigmoid
focal loss over all its queries (unassigned ones against an all-zero class target) + λ_L1 · L1 +
λ_giou · (1 − GIoU) over the assigned pairs. Losses are sums; Eq. 5's division by O_i is `clip_loss`.

Query order of a frame (docs/architecture.md): detect queries [0, M), track queries [M, M+N), and
with TGD the G−1 copy groups, copy group g at [M+N+g·N, M+N+(g+1)·N).

Input validation happens once per clip (`validate_targets`, called by `motrv3.clip_forward`), not
in `frame_loss`, which is on the training hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.ops import box_convert, generalized_box_iou_loss, sigmoid_focal_loss

from motrv3.config import LossConfig, ModelConfig, PLDConfig, RFSConfig, TGDConfig
from motrv3.matcher import HungarianMatcher, assignment_vector, build_matcher
from motrv3.structures import FrameLossResult, FrameOutput

LOSS_TERMS = ("cls", "l1", "giou")
Terms = dict[str, torch.Tensor]


def identity_assignment(track_ids: torch.Tensor, obj_ids: torch.Tensor) -> torch.Tensor:
    """Eq. 2 in one frame: label index of each track query's identity (−1: no identity, or absent)."""
    if track_ids.numel() == 0 or obj_ids.numel() == 0:
        return torch.full_like(track_ids, -1, dtype=torch.long)
    same = (track_ids[:, None] == obj_ids[None, :]) & (track_ids[:, None] >= 0)
    return torch.where(same.any(1), same.to(torch.uint8).argmax(1), torch.full_like(track_ids, -1))


@dataclass
class FrameTargets:
    """One frame's labels on the device, and what Eq. 2 fixes before any matching."""

    labels: torch.Tensor  # [K] classes
    boxes: torch.Tensor  # [K, 4] cx, cy, w, h
    obj_ids: torch.Tensor  # [K] identities
    track_ids: torch.Tensor  # [N] identity carried by each track query, −1 none
    track_target: torch.Tensor  # [N] Eq. 2: label index of the carried identity, −1 absent / none
    free_queries: torch.Tensor  # indices into [0, M+N): detect queries + track queries without identity
    new_labels: torch.Tensor  # label indices no track query carries (ŷ_d, the "free" labels)
    pseudo_sets: list[tuple[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]  # PLD (slot, set)


class ClipCriterion(nn.Module):
    """MOTR's multi-frame criterion with the three MOTRv3 strategies as switches (RFS, PLD, TGD).

    `frame_loss` is called once per frame by the clip runner; `clip_loss` (Eq. 5) sums the frames.
    """

    def __init__(
        self,
        matcher: HungarianMatcher,
        loss_cfg: LossConfig,
        rfs_cfg: RFSConfig,
        pld_cfg: PLDConfig,
        tgd_cfg: TGDConfig,
        num_classes: int = 1,
    ) -> None:
        super().__init__()
        self.matcher = matcher
        self.loss_cfg = loss_cfg
        self.rfs_cfg = rfs_cfg
        self.pld_cfg = pld_cfg
        self.tgd_cfg = tgd_cfg
        self.num_classes = num_classes
        self.weights = {"cls": loss_cfg.cls_weight, "l1": loss_cfg.l1_weight, "giou": loss_cfg.giou_weight}
        self.parallel_pld = pld_cfg.combine == "parallel" and len(pld_cfg.sources) > 1

    # ----------------------------------------------------------------------------------- layers
    def early_layers(self, num_layers: int) -> list[int]:
        """The decoder layers that use 𝔖_a when RFS is on (`rfs.layers`, default the first L−1).

        The statistics measure these layers with or without RFS, so the two runs compare (Fig. 2, 6).
        """
        if self.rfs_cfg.layers is None:
            return list(range(num_layers - 1))
        layers = sorted(set(self.rfs_cfg.layers))
        bad = [layer for layer in layers if not 0 <= layer < num_layers - 1]
        if bad:
            raise ValueError(
                f"rfs.layers: {bad} out of range for {num_layers} decoder layers; "
                f"allowed 0..{num_layers - 2} (the last layer always keeps Eq. 1 + Eq. 2)"
            )
        return layers

    def supervised_layers(self, num_layers: int) -> list[int]:
        """All layers with `loss.aux_loss` (auxiliary losses), else the last one only."""
        return list(range(num_layers)) if self.loss_cfg.aux_loss else [num_layers - 1]

    # ------------------------------------------------------------------------------- the loss
    def detection_loss(
        self,
        logits: torch.Tensor,
        boxes: torch.Tensor,
        assigned: torch.Tensor,
        labels: torch.Tensor,
        target_boxes: torch.Tensor,
        query_weights: torch.Tensor | None = None,
    ) -> Terms:
        """§3.1: λ-weighted detection loss sums of one query set under a fixed assignment.

        logits [Q, C], boxes [Q, 4] cxcywh, assigned [Q] label index (−1 background), labels [K],
        target_boxes [K, 4]; query_weights [Q] multiplies each query's three terms (Eq. 3's ω_j).
        """
        logits = logits.float()
        boxes = boxes.float()
        query_index = (assigned >= 0).nonzero(as_tuple=True)[0]
        label_index = assigned[query_index]
        class_target = torch.zeros_like(logits)
        class_target[query_index, labels[label_index]] = 1.0
        focal = sigmoid_focal_loss(
            logits, class_target, alpha=self.loss_cfg.focal_alpha, gamma=self.loss_cfg.focal_gamma
        ).sum(-1)
        source = boxes[query_index]
        target = target_boxes[label_index].float()
        l1 = (source - target).abs().sum(-1)
        giou = generalized_box_iou_loss(
            box_convert(source, "cxcywh", "xyxy"), box_convert(target, "cxcywh", "xyxy"), reduction="none"
        )
        if query_weights is not None:
            focal = focal * query_weights
            l1 = l1 * query_weights[query_index]
            giou = giou * query_weights[query_index]
        return {
            "cls": self.weights["cls"] * focal.sum(),
            "l1": self.weights["l1"] * l1.sum(),
            "giou": self.weights["giou"] * giou.sum(),
        }

    # ----------------------------------------------------------------------- the supervisions
    def standard_supervision(
        self, logits: torch.Tensor, boxes: torch.Tensor, cost: torch.Tensor, frame: FrameTargets
    ) -> tuple[torch.Tensor, Terms]:
        """MOTR's assignment of one layer: Eq. 2 for the identities, Eq. 1 over 𝔖_d for the rest.

        logits/boxes [M+N, ·] and cost [M+N, K] of the original queries. Returns the assignment
        [M+N] (label index, −1 background) and its detection loss.
        """
        num_original = logits.shape[0]
        num_det = num_original - frame.track_target.shape[0]
        assigned = torch.cat([logits.new_full((num_det,), -1, dtype=torch.long), frame.track_target])
        rows, cols = self.matcher.solve(cost[frame.free_queries][:, frame.new_labels])
        assigned[frame.free_queries[rows]] = frame.new_labels[cols]
        return assigned, self.detection_loss(logits, boxes, assigned, frame.labels, frame.boxes)

    def rfs_supervision(
        self, logits: torch.Tensor, boxes: torch.Tensor, cost: torch.Tensor, frame: FrameTargets
    ) -> tuple[torch.Tensor, Terms]:
        """RFS (§3.2) in one early layer: one Hungarian matching of all M+N queries to all K labels (𝔖_a)."""
        assigned = assignment_vector(logits.shape[0], *self.matcher.solve(cost))
        return assigned, self.detection_loss(logits, boxes, assigned, frame.labels, frame.boxes)

    def pld_supervision(
        self,
        logits: torch.Tensor,
        boxes: torch.Tensor,
        pseudo_labels: torch.Tensor,
        pseudo_boxes: torch.Tensor,
        pseudo_scores: torch.Tensor,
    ) -> tuple[torch.Tensor, Terms]:
        """Eq. 3 for one label set: Hungarian matching of the M+N queries to its pseudo labels, each
        query's loss weighted by ω_j (the matched label's confidence, `pld.background_weight` if none).

        Returns the assignment [M+N] (index into this set, −1 background) and the λ-weighted sums.
        """
        num_queries = logits.shape[0]
        cost = self.matcher.cost_matrix(logits, boxes, pseudo_labels, pseudo_boxes)
        assigned = assignment_vector(num_queries, *self.matcher.solve(cost))
        weights = torch.where(
            assigned >= 0,
            pseudo_scores[assigned.clamp(min=0)],
            pseudo_scores.new_full((num_queries,), self.pld_cfg.background_weight),
        )
        return assigned, self.detection_loss(logits, boxes, assigned, pseudo_labels, pseudo_boxes, weights)

    def tgd_supervision(
        self,
        logits: torch.Tensor,
        boxes: torch.Tensor,
        track_assigned: torch.Tensor,
        num_copies: int,
        frame: FrameTargets,
    ) -> tuple[torch.Tensor, Terms]:
        """TGD (§3.4) in one layer: the (G−1)·N group copies take their original's assignment.

        logits/boxes [(G−1)·N, ·] of the copies, group-major; track_assigned [N] the original track
        queries' assignment (the last layer's standard supervision). No matching (appendix B).
        """
        assigned = track_assigned.repeat(num_copies)
        return assigned, self.detection_loss(logits, boxes, assigned, frame.labels, frame.boxes)

    # ------------------------------------------------------------------------------ one frame
    def frame_loss(self, out: FrameOutput, target: dict, track_ids: torch.Tensor) -> FrameLossResult:
        """Loss sums of one frame: `det_*` (Eq. 1+2 / RFS), `pld_*` (Eq. 3), `tgd_*` (§3.4).

        Each term is λ-weighted and summed over the supervised decoder layers; Eq. 5's division by
        O_i happens in `clip_loss`. Terms of enabled strategies are always present (zero when the
        frame has no pseudo labels / no track groups) so every frame has the same keys.
        `target` must have passed `validate_targets` (the runner does it once per clip).
        """
        num_det, num_track, num_copies = out.num_det, out.num_track, out.num_groups
        num_layers, num_original = out.num_layers, out.num_original
        if num_copies and not self.tgd_cfg.enabled:
            raise ValueError(f"FrameOutput.num_groups = {num_copies} but tgd.enabled is false")
        frame = self.prepare_frame(target, track_ids, num_det, out.logits.device)
        use_rfs = self.rfs_cfg.enabled
        early = self.early_layers(num_layers)
        early_set = set(early)
        supervised = self.supervised_layers(num_layers)

        device = out.logits.device
        zero = out.logits.new_zeros((), dtype=torch.float32)
        names = (
            ["det"] + (["pld"] if self.pld_cfg.enabled else []) + (["tgd"] if self.tgd_cfg.enabled else [])
        )
        losses = {f"{name}_{term}": zero for name in names for term in LOSS_TERMS}
        det_assigned = torch.full((num_layers, num_original), -1, dtype=torch.long, device=device)
        # parallel: `assignments["pld"]` is [S, L, M+N], row s indexing source s's own labels
        num_slots = len(self.pld_cfg.sources) if self.parallel_pld else 1
        pld_assigned = torch.full((num_slots, num_layers, num_original), -1, dtype=torch.long, device=device)
        tgd_assigned = torch.full((num_layers, num_copies * num_track), -1, dtype=torch.long, device=device)

        for layer in supervised:
            logits = out.logits[layer, :num_original]
            boxes = out.boxes[layer, :num_original]
            cost = self.matcher.cost_matrix(logits, boxes, frame.labels, frame.boxes)  # [M+N, K]
            supervise = self.rfs_supervision if use_rfs and layer in early_set else self.standard_supervision
            det_assigned[layer], terms = supervise(logits, boxes, cost, frame)
            self._add(losses, "det", terms)
            for slot, label_set in frame.pseudo_sets:
                pld_assigned[slot, layer], terms = self.pld_supervision(logits, boxes, *label_set)
                self._add(losses, "pld", terms)

        last = det_assigned[num_layers - 1]
        if num_copies and num_track:
            copies = slice(num_original, num_original + num_copies * num_track)
            for layer in supervised:
                tgd_assigned[layer], terms = self.tgd_supervision(
                    out.logits[layer, copies], out.boxes[layer, copies], last[num_det:], num_copies, frame
                )
                self._add(losses, "tgd", terms)

        # Ψ of Eq. 2: carried identities stay (absent or not), free queries take their label's identity.
        carried = torch.cat([frame.track_ids.new_full((num_det,), -1), frame.track_ids])
        matched_ids = frame.obj_ids[last.clamp(min=0)] if frame.obj_ids.numel() else carried
        query_ids = torch.where(carried >= 0, carried, torch.where(last >= 0, matched_ids, carried))
        measured_early = [layer for layer in early if layer in set(supervised)]
        return FrameLossResult(
            losses=losses,
            num_objects=float(max(frame.labels.shape[0], 1)),
            query_ids=query_ids,
            query_labels=last,
            stats=assignment_counts(det_assigned, num_det, frame.labels.shape[0], supervised, measured_early),
            assignments={
                "det": det_assigned,
                "pld": pld_assigned if self.parallel_pld else pld_assigned[0],
                "tgd": tgd_assigned,
            },
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
            pseudo_sets=self._pld_label_sets(target, device),
        )

    # --------------------------------------------------------------------------------- helpers
    @staticmethod
    def _add(losses: Terms, prefix: str, terms: Terms) -> None:
        for term, value in terms.items():
            losses[f"{prefix}_{term}"] = losses[f"{prefix}_{term}"] + value

    def _pld_label_sets(
        self, target: dict, device: torch.device
    ) -> list[tuple[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
        """(slot, (classes, boxes, scores)) sets Eq. 3 matches separately, confidence ≥ `pld.threshold`.

        Parallel mode: one set per source (a source without labels in this frame adds nothing, like a
        frame without pseudo labels); else one set of all. Classes are 0 unless `pseudo_labels` given.
        """
        if not self.pld_cfg.enabled:
            return []
        scores = target["pseudo_scores"].to(device).float()
        keep = scores >= self.pld_cfg.threshold
        boxes = target["pseudo_boxes"].to(device)[keep]
        classes = target.get("pseudo_labels")
        classes = (
            torch.zeros(scores.shape[0], dtype=torch.long, device=device)
            if classes is None
            else classes.to(device=device, dtype=torch.long)
        )[keep]
        scores = scores[keep]
        if scores.shape[0] == 0:
            return []
        sources = target.get("pseudo_sources")
        if not self.parallel_pld or sources is None:
            return [(0, (classes, boxes, scores))]
        sources = sources.to(device=device, dtype=torch.long)[keep]
        sets = []
        for source in sources.unique().tolist():
            mine = sources == source
            sets.append((source, (classes[mine], boxes[mine], scores[mine])))
        return sets

    # ------------------------------------------------------------------------------ validation
    def validate_targets(self, targets: Sequence[dict], where: str = "clip") -> None:
        """Key, shape and value checks of a clip's frame targets, with messages naming the field.

        Called once per clip (`motrv3.clip_forward`); the values are checked over the whole clip
        at once, so a clip costs one host-device synchronisation, not one per frame and check.
        """
        required = ["boxes", "labels", "obj_ids"] + (
            ["pseudo_boxes", "pseudo_scores"] if self.pld_cfg.enabled else []
        )
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
                sources = target.get("pseudo_sources")
                if sources is not None and sources.shape != (num_pseudo,):
                    raise ValueError(
                        f"{at}: pseudo_sources {tuple(sources.shape)}, expected [P] = [{num_pseudo}]"
                    )
        # Value checks: every frame at once, one synchronisation.
        bad_class = [(t["labels"] >= self.num_classes).any() | (t["labels"] < 0).any() for t in targets]
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
                raise ValueError(
                    f"{where} frame {index}: target labels {targets[index]['labels'].tolist()} outside "
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
) -> ClipCriterion:
    """The criterion for a model config; validates `rfs.layers` against `model.dec_layers`."""
    if tgd_cfg.groups < 1:
        raise ValueError(f"tgd.groups = {tgd_cfg.groups}: must be ≥ 1 (G counts the original track queries)")
    criterion = ClipCriterion(
        build_matcher(loss_cfg), loss_cfg, rfs_cfg, pld_cfg, tgd_cfg, num_classes=model_cfg.num_classes
    )
    criterion.early_layers(model_cfg.dec_layers)
    return criterion
