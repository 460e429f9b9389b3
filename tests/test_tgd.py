"""Track group denoising (§3.4, appendix B): Eq. 4 mask, box noise, and no leakage in the model."""

from __future__ import annotations

import pytest
import torch

import motrv3.model
from motrv3.config import TGDConfig
from motrv3.model import build_model
from motrv3.tgd import attention_mask, copy_groups, expand_track_groups
from motrv3.tracks import TrackState
from tests.model_configs import tiny_config


def _matrix(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[c == "1" for c in row.replace(" ", "")] for row in rows])


def test_eq4_mask_two_groups_by_hand():
    # M=2 detect, N=2 track, G=2 groups: S = 8. Originals 0-3, group 0 = 4-5, group 1 = 6-7.
    expected = _matrix(
        [
            "0000 11 11",
            "0000 11 11",
            "0000 11 11",
            "0000 11 11",
            "1111 00 11",
            "1111 00 11",
            "1111 11 00",
            "1111 11 00",
        ]
    )
    assert torch.equal(attention_mask(2, 2, 2), expected)


def test_eq4_mask_one_group_by_hand():
    expected = _matrix(
        [
            "0000 11",
            "0000 11",
            "0000 11",
            "0000 11",
            "1111 00",
            "1111 00",
        ]
    )
    assert torch.equal(attention_mask(2, 2, 1), expected)


def test_eq4_mask_blocks_the_first_group_query_j_equal_m_plus_n():
    # M=2, N=1, G=2: originals 0-2, group 0 = {3}, group 1 = {4}. Eq. 4's literal "j > M+N"
    # would leave column 3 visible to the originals; the intended mask blocks it.
    mask = attention_mask(2, 1, 2)
    assert torch.equal(mask, _matrix(["000 1 1", "000 1 1", "000 1 1", "111 0 1", "111 1 0"]))
    assert mask[:3, 3].all()


def test_eq4_mask_without_track_queries_or_groups_is_empty():
    assert torch.equal(attention_mask(3, 0, 2), torch.zeros(3, 3, dtype=torch.bool))
    assert torch.equal(attention_mask(2, 2, 0), torch.zeros(4, 4, dtype=torch.bool))


def test_group_noise_changes_only_width_and_height():
    content = torch.randn(3, 8)
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.1, 0.8, 0.05, 0.1], [0.9, 0.2, 0.4, 0.4]])
    generator = torch.Generator().manual_seed(0)
    group_content, group_boxes = expand_track_groups(content, boxes, 4, 0.4, generator)
    assert group_content.shape == (12, 8) and group_boxes.shape == (12, 4)
    assert torch.equal(group_content, content.repeat(4, 1))
    originals = boxes.repeat(4, 1)
    assert torch.equal(group_boxes[:, :2], originals[:, :2])  # centres untouched
    factors = group_boxes[:, 2:] / originals[:, 2:]
    assert (factors >= 0.6 - 1e-6).all() and (factors <= 1.4 + 1e-6).all()
    assert (factors - 1).abs().max() > 0.05  # noise really applied
    _, plain = expand_track_groups(content, boxes, 2, None)
    assert torch.equal(plain, boxes.repeat(2, 1))


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    cfg = tiny_config(num_queries=5, dropout=0.1)
    # G = 4 track query groups (Eq. 4, §4.2): the originals + 3 noisy copy groups
    return build_model(cfg, tgd_cfg=TGDConfig(enabled=True, groups=4, noise=True))


def _tracks(model, n: int) -> TrackState:
    generator = torch.Generator().manual_seed(1)
    return TrackState(
        content=torch.randn(n, model.d_model, generator=generator),
        boxes=torch.rand(n, 4, generator=generator) * 0.5 + 0.25,
        ids=torch.arange(n),
        scores=torch.ones(n),
        misses=torch.zeros(n, dtype=torch.long),
    )


def test_groups_do_not_change_the_original_queries(tiny_model, monkeypatch):
    model = tiny_model.eval()  # dropout off; groups requested explicitly
    image = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    tracks = _tracks(model, 3)
    with torch.no_grad():
        plain = model.forward_frame(image, tracks, num_groups=0)
        grouped = model.forward_frame(image, tracks, num_groups=3, generator=torch.Generator().manual_seed(3))
    m, n, g = 5, 3, 3
    assert grouped.logits.shape[1] == grouped.boxes.shape[1] == grouped.hidden.shape[0] == m + n + g * n
    assert (grouped.num_det, grouped.num_track, grouped.num_groups) == (m, n, g)
    orig = slice(0, m + n)
    torch.testing.assert_close(grouped.logits[:, orig], plain.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(grouped.boxes[:, orig], plain.boxes, rtol=0, atol=1e-6)
    torch.testing.assert_close(grouped.hidden[orig], plain.hidden, rtol=0, atol=1e-5)

    # Control: without the mask the groups leak into the originals.
    monkeypatch.setattr(motrv3.model, "attention_mask", lambda m, n, g, device=None, mode="eq4": None)
    with torch.no_grad():
        leaky = model.forward_frame(image, tracks, num_groups=3, generator=torch.Generator().manual_seed(3))
    assert (leaky.hidden[orig] - plain.hidden).abs().max() > 1e-3


def test_groups_only_in_training(tiny_model):
    image = torch.randn(1, 3, 64, 128)
    tracks = _tracks(tiny_model, 2)
    with torch.no_grad():
        assert tiny_model.eval().forward_frame(image, tracks).num_groups == 0
        out = tiny_model.train().forward_frame(image, tracks)
    tiny_model.eval()
    assert out.num_groups == 3 and out.logits.shape[1] == 5 + 2 + 3 * 2
    with torch.no_grad():
        assert tiny_model.train().forward_frame(image, None).num_groups == 0  # no tracks, no groups
    tiny_model.eval()


def test_tgd_groups_count_the_original_track_queries():
    """Eq. 4's S = G·N + M: `tgd.groups` = G includes the originals, so G − 1 copy groups (Table 5)."""
    assert [copy_groups(TGDConfig(groups=g)) for g in (1, 3, 4, 5)] == [0, 2, 3, 4]
    assert copy_groups(TGDConfig(enabled=False, groups=4)) == 0
    m, n, g = 5, 2, 4
    mask = attention_mask(m, n, copy_groups(TGDConfig(groups=g)))
    assert mask.shape == (g * n + m, g * n + m)  # S = G·N + M
