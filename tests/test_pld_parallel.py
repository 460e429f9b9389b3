"""`pld.combine`: parallel (one Eq. 3 matching per source, Table 4 row 3) vs concat, criterion and loader."""

from __future__ import annotations

import pytest
import torch

from motrv3.config import LossConfig, PLDConfig, RFSConfig, TGDConfig
from motrv3.criterion import ClipCriterion
from motrv3.matcher import build_matcher
from pipeline.data.loader import ClipDataset
from pipeline.data.pseudo_label_store import write_pseudo_labels
from pipeline.formats.errors import DataError
from tests.test_criterion import FAR, focal_negative, focal_positive, make_output, make_target, tensor_ids
from tests.test_data_loader import DATA, dataset  # noqa: F401 (the converted-dataset fixture)

A_BOX = [0.3, 0.3, 0.2, 0.2]
A_SHIFTED = [0.31, 0.3, 0.2, 0.2]  # the same person seen by the second detector, 0.01 to the right
TWO_SOURCES = ["detector", "detfile"]


def pld_criterion(combine: str, sources=TWO_SOURCES) -> ClipCriterion:
    return ClipCriterion(
        build_matcher(LossConfig()),
        LossConfig(aux_loss=True),
        RFSConfig(enabled=False),
        PLDConfig(enabled=True, sources=list(sources), combine=combine),
        TGDConfig(enabled=False),
        num_classes=1,
        record_assignments=True,
    )


def two_detector_frame(with_sources: bool = True):
    """det0 sits on the person (logit 0.5), det1 far away (logit 1.0); source 1 (ω 0.6) sees the
    person at A_SHIFTED, source 0 (ω 0.9) at A_BOX — listed source 1 first so order cannot decide."""
    out = make_output([[A_BOX, FAR]], num_det=2, num_track=0, logits=[[0.5, 1.0]])
    target = make_target([], [], pseudo_boxes=[A_SHIFTED, A_BOX], pseudo_scores=[0.6, 0.9])
    if with_sources:
        target["pseudo_sources"] = torch.tensor([1, 0])
    return out, target


def test_parallel_matches_each_source_on_its_own_and_sums_eq3():
    out, target = two_detector_frame()
    result = pld_criterion("parallel").frame_loss(out, target, tensor_ids())
    # one row per source: det0 takes the person in both sets (index 0 of each source's own labels)
    assert result.assignments["pld"].tolist() == [[[0, -1]], [[0, -1]]]
    # source 0: det0 ↔ A (ω 0.9, exact: no box loss), det1 background (ω 0.5);
    # source 1: det0 ↔ A_SHIFTED (ω 0.6, d = 0.01 in x: GIoU = (w − d)/(w + d)), det1 background (ω 0.5)
    cls = 0.9 * focal_positive(0.5) + 0.5 * focal_negative(1.0) + 0.6 * focal_positive(0.5)
    cls += 0.5 * focal_negative(1.0)
    assert result.losses["pld_cls"].item() == pytest.approx(2 * cls, rel=1e-5)
    assert result.losses["pld_l1"].item() == pytest.approx(5 * 0.6 * 0.01, rel=1e-4)
    assert result.losses["pld_giou"].item() == pytest.approx(2 * 0.6 * (1 - 0.19 / 0.21), rel=1e-4)


def test_concat_makes_the_two_detections_compete_for_one_query():
    out, target = two_detector_frame()
    result = pld_criterion("concat").frame_loss(out, target, tensor_ids())
    # one matching over [A_SHIFTED, A]: det0 gets A (index 1), det1 is pushed onto A_SHIFTED (index 0)
    assert result.assignments["pld"].tolist() == [[1, 0]]
    cls = 0.9 * focal_positive(0.5) + 0.6 * focal_positive(1.0)
    far_l1 = abs(0.9 - 0.31) + abs(0.9 - 0.3) + 2 * abs(0.05 - 0.2)  # = 1.49
    # FAR [0.875, 0.925]² and A_SHIFTED [0.21, 0.41] × [0.2, 0.4] are disjoint: GIoU = −(C − U)/C
    union, hull = 0.05**2 + 0.2**2, (0.925 - 0.21) * (0.925 - 0.2)
    assert result.losses["pld_cls"].item() == pytest.approx(2 * cls, rel=1e-5)
    assert result.losses["pld_l1"].item() == pytest.approx(5 * 0.6 * far_l1, rel=1e-4)
    assert result.losses["pld_giou"].item() == pytest.approx(2 * 0.6 * (2 - union / hull), rel=1e-4)


def test_one_source_or_no_source_field_is_one_matching():
    out, target = two_detector_frame()
    concat = pld_criterion("concat").frame_loss(out, target, tensor_ids()).losses
    one_source = pld_criterion("parallel", ["detector"])
    _, unlabelled = two_detector_frame(with_sources=False)
    # parallel's assignments are [S, L, M+N] by config; without `pseudo_sources` all labels are source 0
    one_set = dict(target, pseudo_sources=torch.tensor([0, 0]))
    cases = ((one_source, one_set, [[1, 0]]), (pld_criterion("parallel"), unlabelled, [[[1, 0]], [[-1, -1]]]))
    for criterion, frame_target, assigned in cases:
        result = criterion.frame_loss(out, frame_target, tensor_ids())
        assert result.assignments["pld"].tolist() == assigned
        assert {k: v.item() for k, v in result.losses.items()} == pytest.approx(
            {k: v.item() for k, v in concat.items()}
        )


def test_pseudo_source_outside_pld_sources_is_an_error():
    out, target = two_detector_frame()
    target["pseudo_sources"] = torch.tensor([2, 0])
    with pytest.raises(ValueError, match="pseudo_sources outside 0..1"):
        pld_criterion("parallel").validate_targets([target])  # once per clip, by clip_forward


# ---------------------------------------------------------------------------------------- loader
def test_loader_emits_the_source_index_of_each_pseudo_box(dataset, tmp_path):  # noqa: F811
    box = [[0, 0, 32, 24]]  # image 64 × 48 → cx, cy, w, h = 0.25, 0.25, 0.5, 0.5
    rows = [
        {"sequence": "seq-a", "frame": 1, "boxes": box, "scores": [0.9], "source": "detector"},
        {"sequence": "seq-a", "frame": 1, "boxes": box, "scores": [0.7], "source": "detfile"},
        {"sequence": "seq-a", "frame": 1, "boxes": box, "scores": [0.8], "source": "gt"},  # not trained on
        {"sequence": "seq-a", "frame": 2, "boxes": [[32, 24, 64, 48]], "scores": [0.5], "source": "detector"},
    ]
    write_pseudo_labels(rows, tmp_path / "pl.parquet")
    data = DATA.model_copy(
        update={"train_scales": [48], "random_crop": False, "flip_prob": 0.0, "sample_interval_max": 1}
    )

    def first_clip(sources):
        clips = ClipDataset(
            dataset / "clips",
            data,
            seed=0,
            pseudo_labels=tmp_path / "pl.parquet",
            pld_threshold=0.05,
            pld_sources=sources,
        )
        index = next(i for i, s in enumerate(clips.specs) if s.sequence == "seq-a" and s.positions[0] == 0)
        return clips[index]["targets"]

    first, second, third = first_clip(["detfile", "detector"])  # indices follow pld.sources order
    assert first["pseudo_sources"].dtype == torch.long
    assert first["pseudo_sources"].tolist() == [0, 1]
    assert first["pseudo_scores"].tolist() == pytest.approx([0.7, 0.9])
    assert first["pseudo_boxes"].tolist() == [[0.25, 0.25, 0.5, 0.5]] * 2
    assert second["pseudo_sources"].tolist() == [1] and second["pseudo_scores"].tolist() == [0.5]
    assert third["pseudo_sources"].shape == (0,) and third["pseudo_boxes"].shape == (0, 4)

    joined = first_clip(None)[0]  # no pld.sources: every source, one label set
    assert joined["pseudo_sources"].tolist() == [0, 0, 0]

    with pytest.raises(DataError, match=r"torchvision:frcnn"):
        first_clip(["detector", "torchvision:frcnn"])
