"""The duplicate diagnostic (`pipeline.evaluation.duplicates`) on a hand-worked sequence, and through `score_split`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.evaluation import duplicates
from pipeline.evaluation.trackeval_runner import evaluate_folder
from pipeline.formats import motchallenge

# Targets 20 px wide, far apart: A at x 0, B at x 50, C at x 100; D at x 150 is a MOT17 distractor.
A, B, C, D = (
    (0.0, 0.0, 20.0, 40.0),
    (50.0, 0.0, 20.0, 40.0),
    (100.0, 0.0, 20.0, 40.0),
    (150.0, 0.0, 20.0, 40.0),
)
GT_ROWS = (  # frame, id, box, class
    [(f, 1, *A, 1) for f in (1, 2, 3)]
    + [(f, 2, *B, 1) for f in (1, 2, 3)]
    + [(f, 3, *C, 1) for f in (1, 2)]  # C leaves after frame 2
    + [(1, 4, *D, 8)]  # class 8: a distractor on MOT17, nothing on the class-1-only benchmarks
)


def shifted(box, dx):
    return (box[0] + dx, *box[1:])


# (frame, track, box, score). Track 3 is a second track on A (2 px off: IoU 18/22 with A, and
# track 1 holds A exactly), never matched → twins. Track 4 follows C, then moves onto B when C
# leaves (1 px off, so track 2 keeps B) → a drift. Track 5 is a lone false positive, track 6
# sits on the distractor.
RESULT_ROWS = (
    [(f, 1, A, 0.6) for f in (1, 2, 3)]
    + [(f, 2, B, 0.6) for f in (1, 2, 3)]
    + [(f, 3, shifted(A, 2.0), 0.5) for f in (2, 3)]
    + [(1, 4, C, 0.55), (2, 4, C, 0.55), (3, 4, shifted(B, 1.0), 0.45)]
    + [(1, 5, (200.0, 100.0, 10.0, 10.0), 0.3)]
    + [(1, 6, D, 0.4)]
)


def gt_array():
    # frame, id, x, y, w, h, consider, class, visibility
    return np.array([(f, i, *box, 1, cls, 1.0) for f, i, *box, cls in GT_ROWS], dtype=float)


def results_array():
    return np.array([(f, t, *box, s, -1, -1, -1) for f, t, box, s in RESULT_ROWS], dtype=float)


def test_duplicates_by_hand():
    """By hand, MOT17's rules: 13 boxes, 1 on the distractor set aside → 12 reported; matched: track 1 ×3, 2 ×3, 4 ×2 = 8;
    false positives 4: track 3 at frames 2, 3 (each overlaps track 1's box by IoU 18/22 ≥ 0.5, track 3
    never matched: twins), track 4 at frame 3 (overlaps track 2's box by IoU 19/21; its own target C
    ≠ track 2's B: a drift), track 5 (overlaps nothing: not a duplicate). DupFP 3 = 2 twins + 1
    drift, from 2 tracks; DupShare 3/12 = 25 %; medians: matched scores (six 0.6, two 0.55) → 0.6,
    duplicates (0.5, 0.5, 0.45) → 0.5."""
    gt = gt_array()
    counted, ignore = gt[:, 7] == 1, gt[:, 7] == 8
    counts = duplicates.count_sequence(gt, counted, ignore, results_array())
    assert (counts.reported, counts.matched, counts.false_positives) == (12, 8, 4)
    assert (counts.twins, counts.drifts, counts.duplicate_tracks) == (2, 1, 2)
    metrics = counts.as_metrics()
    assert metrics["DupFP"] == 3 and metrics["DupShare"] == pytest.approx(25.0)
    assert metrics["ScoreTP"] == pytest.approx(0.6) and metrics["ScoreDup"] == pytest.approx(0.5)


def test_class_one_only_counts_a_box_on_another_class_as_a_false_positive():
    """DanceTrack / synthetic / custom rules: no ignore region, track 6's box is a plain false positive."""
    gt = gt_array()
    counted = gt[:, 7] == 1
    counts = duplicates.count_sequence(gt, counted, np.zeros(len(gt), bool), results_array())
    assert (counts.reported, counts.false_positives, counts.duplicates) == (13, 5, 3)


def test_no_duplicates_gives_zero_and_no_median():
    gt = gt_array()
    rows = results_array()
    alone = rows[np.isin(rows[:, 1], [1, 2])]
    metrics = duplicates.count_sequence(gt, gt[:, 7] == 1, gt[:, 7] == 8, alone).as_metrics()
    assert metrics["DupFP"] == 0 and metrics["DupShare"] == 0.0 and metrics["ScoreDup"] is None


def write_folder(root: Path) -> tuple[Path, Path]:
    gt_dir, results = root / "gt", root / "results"
    seq = gt_dir / "MOT17-02-FRCNN"
    (seq / "gt").mkdir(parents=True)
    motchallenge.write_seqinfo(seq / "seqinfo.ini", motchallenge.SeqInfo("MOT17-02-FRCNN", 3, 320, 192, 20.0))
    (seq / "gt" / "gt.txt").write_text(
        "\n".join(",".join(f"{v:g}" for v in row) for row in gt_array()) + "\n"
    )
    results.mkdir()
    motchallenge.write_results(results / "MOT17-02-FRCNN.txt", results_array()[:, :8])
    return gt_dir, results


@pytest.mark.parametrize(("benchmark", "false_positives"), [("MOT17", 4), ("custom", 5)])
def test_added_to_trackeval_metrics_of_the_folder(tmp_path, benchmark, false_positives):
    """The same counts from files, beside TrackEval's numbers in `overall` and per sequence. TrackEval's
    false positives are the ones counted by hand (its continuity rule changes nothing here): MOT17
    sets the box on the distractor aside, the class-1-only rules count it."""
    gt_dir, results = write_folder(tmp_path)
    evaluation = evaluate_folder(gt_dir, results, benchmark)
    duplicates.add_to_evaluation(evaluation, gt_dir, results)
    assert evaluation.overall["FP"] == false_positives
    assert evaluation.overall["DupFP"] == 3 and evaluation.overall["DupDrift"] == 1
    assert evaluation.overall["DupShare"] == pytest.approx(100 * 3 / (8 + false_positives))
    assert evaluation.per_sequence["MOT17-02-FRCNN"]["DupTwin"] == 2
    json.dumps(evaluation.overall)  # still a metrics file's content
