"""HungarianMatcher: the matching cost by hand, and optimality against brute force (Eq. 1's argmin)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from motrv3.matcher import HungarianMatcher, assignment_vector


def test_cost_of_one_query_and_one_box_by_hand():
    matcher = HungarianMatcher(cost_class=2.0, cost_l1=5.0, cost_giou=2.0, focal_alpha=0.25, focal_gamma=2.0)
    logits = torch.tensor([[0.0]])  # p = 0.5
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2]])  # xyxy (0.4, 0.4, 0.6, 0.6)
    target = torch.tensor([[0.6, 0.6, 0.2, 0.2]])  # xyxy (0.5, 0.5, 0.7, 0.7)
    cost = matcher.cost_matrix(logits, boxes, torch.tensor([0]), target)
    # focal cost: α(1−p)^γ(−log p) − (1−α)p^γ(−log(1−p)) at p = 0.5
    class_cost = 0.25 * 0.25 * math.log(2) - 0.75 * 0.25 * math.log(2)
    l1 = 0.1 + 0.1
    # intersection 0.1², union 2·0.04 − 0.01, enclosing box 0.3²
    giou = 0.01 / 0.07 - (0.09 - 0.07) / 0.09
    expected = 2 * class_cost + 5 * l1 - 2 * giou
    assert cost.shape == (1, 1)
    assert cost.item() == pytest.approx(expected, abs=1e-6)


def test_class_cost_prefers_confident_queries():
    matcher = HungarianMatcher()
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2]] * 2)
    cost = matcher.cost_matrix(torch.tensor([[3.0], [-3.0]]), boxes, torch.tensor([0]), boxes[:1])
    assert cost[0, 0] < cost[1, 0]


def _random_boxes(count: int, generator: torch.Generator) -> torch.Tensor:
    centres = torch.rand(count, 2, generator=generator) * 0.6 + 0.2
    sizes = torch.rand(count, 2, generator=generator) * 0.3 + 0.05
    return torch.cat([centres, sizes], dim=1)


def _brute_force_minimum(cost: torch.Tensor) -> float:
    queries, labels = cost.shape
    if queries >= labels:
        return min(
            sum(cost[rows[k], k].item() for k in range(labels))
            for rows in itertools.permutations(range(queries), labels)
        )
    return min(
        sum(cost[q, cols[q]].item() for q in range(queries))
        for cols in itertools.permutations(range(labels), queries)
    )


@pytest.mark.parametrize("queries,labels", [(5, 3), (4, 4), (3, 5), (6, 2), (1, 4)])
def test_hungarian_equals_brute_force(queries, labels):
    generator = torch.Generator().manual_seed(queries * 10 + labels)
    matcher = HungarianMatcher(cost_class=2.0, cost_l1=5.0, cost_giou=2.0)
    for _ in range(5):
        logits = torch.randn(queries, 2, generator=generator)
        classes = torch.randint(0, 2, (labels,), generator=generator)
        cost = matcher.cost_matrix(
            logits, _random_boxes(queries, generator), classes, _random_boxes(labels, generator)
        )
        rows, cols = matcher.solve(cost)
        assert len(rows) == min(queries, labels)
        assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
        assert cost[rows, cols].sum().item() == pytest.approx(_brute_force_minimum(cost), abs=1e-5)


def test_empty_sides_give_empty_matches():
    matcher = HungarianMatcher()
    generator = torch.Generator().manual_seed(0)
    no_labels = matcher.cost_matrix(
        torch.zeros(3, 1), _random_boxes(3, generator), torch.zeros(0, dtype=torch.long), torch.zeros(0, 4)
    )
    assert no_labels.shape == (3, 0)
    rows, cols = matcher.solve(no_labels)
    assert rows.numel() == 0 and cols.numel() == 0
    no_queries = matcher.cost_matrix(
        torch.zeros(0, 1), torch.zeros(0, 4), torch.zeros(2, dtype=torch.long), _random_boxes(2, generator)
    )
    assert no_queries.shape == (0, 2)
    assert matcher.solve(no_queries)[0].numel() == 0
    assert assignment_vector(3, rows, cols).tolist() == [-1, -1, -1]


def test_non_finite_cost_is_a_clear_error():
    with pytest.raises(ValueError, match="NaN"):
        HungarianMatcher.solve(torch.tensor([[0.0, float("nan")]]))
