"""Rows against the first row of a multi-seed table: beyond the seed spread or within it."""

from __future__ import annotations

from pipeline.reporting.tables import aggregate_seeds
from pipeline.studies.verdicts import beyond_spread, verdict_lines


def rows_and_trials():
    base_runs = [{"HOTA": 44.0, "DetA": 27.0}, {"HOTA": 46.0, "DetA": 29.0}]  # std 1.414 each
    new_runs = [{"HOTA": 47.0, "DetA": 28.0}, {"HOTA": 49.0, "DetA": 29.0}]  # HOTA std 1.414, DetA 0.707
    base = aggregate_seeds("Base", {}, base_runs)
    new = aggregate_seeds("MOTRv3", {}, new_runs)
    trials = [{"row": "Base", "seed": s, **r} for s, r in enumerate(base_runs)]
    trials += [{"row": "MOTRv3", "seed": s, **r} for s, r in reversed(list(enumerate(new_runs)))]
    return base, new, trials


def test_a_difference_counts_only_beyond_the_larger_std():
    base, new, _ = rows_and_trials()
    assert beyond_spread(new, base, "HOTA") is True  # Δ 3.0 > 1.414
    assert beyond_spread(new, base, "DetA") is False  # Δ 0.5 < 1.414 (base's std, the larger)
    assert beyond_spread(new, base, "MOTA") is None  # not measured
    single = aggregate_seeds("one seed", {}, [{"HOTA": 60.0}])
    assert beyond_spread(single, base, "HOTA") is None  # one seed: no spread


def test_verdict_lines_list_seeds_in_order_and_the_deltas():
    base, new, trials = rows_and_trials()
    lines = verdict_lines([base, new], trials, metrics=("HOTA", "DetA"))
    assert lines[2] == "- Base: HOTA per seed 44.0 / 46.0"
    assert lines[3] == "- MOTRv3: HOTA per seed 47.0 / 49.0; HOTA +3.0 (beyond), DetA +0.5 (within)"
    assert verdict_lines([base]) == []


def test_table3_row_numbers_are_shown_with_their_strategies():
    from pipeline.studies.rows import shown_label

    assert shown_label("2", {"rfs": True, "pld": False, "tgd": False}) == "2 RFS"
    assert shown_label("5", {"rfs": True, "pld": True, "tgd": False}) == "5 RFS+PLD"
    assert shown_label("1 Base", {"rfs": False}) == "1 Base" and shown_label("7", {}) == "7"
