"""Runtime tracking: the track life cycle by hand, stable identities, pixels of the original image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motrv3.config import TrackingConfig
from motrv3.model import MOTR
from motrv3.tracker import Tracker, detect, preprocess, resized_shape
from motrv3.tracks import duplicate_tracks, runtime_update
from tests.model_configs import tiny_config


def test_runtime_update_by_hand():
    # 2 detect queries, 2 tracks (ids 4 and 5, track 5 missed twice already)
    decision = runtime_update(
        scores=torch.tensor([0.7, 0.2, 0.6, 0.3]),
        track_ids=torch.tensor([4, 5]),
        track_misses=torch.tensor([0, 2]),
        num_det=2,
        next_id=6,
        new_track_score=0.5,
        keep_track_score=0.4,
        miss_tolerance=3,
    )
    assert decision.ids.tolist() == [6, -1, 4, -1]  # new id 6; track 5's third miss drops it
    assert decision.misses.tolist() == [0, 0, 0, 3]
    assert decision.keep.tolist() == [True, False, True, False]
    assert decision.report.tolist() == [True, False, True, False]
    assert decision.next_id == 7
    # below the keep score but within tolerance: kept, not reported
    decision = runtime_update(
        torch.tensor([0.1, 0.3]), torch.tensor([4]), torch.tensor([0]), 1, 5, 0.5, 0.4, 3
    )
    assert decision.ids.tolist() == [-1, 4] and decision.keep.tolist() == [False, True]
    assert decision.report.tolist() == [False, False] and decision.misses.tolist() == [0, 1]


def test_birth_overlap_suppresses_a_second_track_on_a_held_target_by_hand():
    # 3 detect queries, then track 4 (score 0.7, reported). det0 sits on track 4's box; det1 on a
    # free target B; det2 on B shifted by 0.02 of a 0.2-wide box: IoU 0.18 / 0.22 = 0.82 with det1.
    track_box, b_box, near_b = [0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2], [0.72, 0.7, 0.2, 0.2]
    args = dict(
        scores=torch.tensor([0.9, 0.8, 0.6, 0.7]),
        track_ids=torch.tensor([4]),
        track_misses=torch.tensor([0]),
        num_det=3,
        next_id=5,
        new_track_score=0.5,
        keep_track_score=0.4,
        miss_tolerance=3,
        boxes=torch.tensor([track_box, b_box, near_b, track_box]),
    )
    assert runtime_update(**args).ids.tolist() == [5, 6, 7, 4]  # MOTR: every detect query ≥ 0.5
    # IoU 1 with the held track: no birth; det1 born; det2 overlaps det1's birth (0.82 ≥ 0.5)
    decision = runtime_update(**args, birth_overlap=0.5)
    assert decision.ids.tolist() == [-1, 5, -1, 4] and decision.next_id == 6
    # at 0.9 only det0 (IoU 1) is a duplicate
    assert runtime_update(**args, birth_overlap=0.9).ids.tolist() == [-1, 5, 6, 4]


def test_track_overlap_drops_the_younger_of_two_tracks_on_one_target_by_hand():
    # 1 detect query (0.1: no birth), then tracks 9, 3, 5, 7, all reported (≥ 0.4). Track 9 and
    # track 3 share a box (IoU 1); track 5 sits on track 9's box shifted by 0.04 of a 0.2-wide box
    # (IoU 0.16 / 0.24 = 0.67); track 7 is alone.
    a, a_shifted, b = [0.3, 0.3, 0.2, 0.2], [0.34, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]
    args = dict(
        scores=torch.tensor([0.1, 0.9, 0.5, 0.6, 0.3]),
        track_ids=torch.tensor([9, 3, 5, 7]),
        track_misses=torch.tensor([0, 0, 0, 2]),
        num_det=1,
        next_id=10,
        new_track_score=0.5,
        keep_track_score=0.4,
        miss_tolerance=5,
        boxes=torch.tensor([b, a, a, a_shifted, b]),
    )
    assert runtime_update(**args).ids.tolist() == [-1, 9, 3, 5, 7]  # MOTR: all live on
    # oldest first: 3 kept; 5 overlaps 3 by 0.67 → dropped; 9 overlaps 3 by 1 → dropped, although
    # it scores higher; 7 (0.3) is below the keep score, so it is not a reported box: kept, a miss
    decision = runtime_update(**args, track_overlap=0.5)
    assert decision.ids.tolist() == [-1, -1, 3, -1, 7]
    assert decision.report.tolist() == [False, False, True, False, False]
    assert decision.keep.tolist() == [False, False, True, False, True] and decision.misses[4] == 3
    # at 0.8 only the exact twin (IoU 1) is a duplicate
    assert runtime_update(**args, track_overlap=0.8).ids.tolist() == [-1, -1, 3, 5, 7]
    assert duplicate_tracks(torch.tensor([4]), torch.tensor([a]), torch.tensor([True]), 0.5).tolist() == [
        False
    ]


def test_resized_shape_and_normalisation():
    assert resized_shape(480, 640, 192, 320) == (192, 256)
    assert resized_shape(192, 640, 192, 320) == (96, 320)  # capped by max_size
    assert resized_shape(640, 480, 192, None) == (256, 192)
    image = np.full((48, 64, 3), 255, dtype=np.uint8)
    x, size = preprocess(image, 24, None)
    assert size == (48, 64) and x.shape == (1, 3, 24, 32)
    torch.testing.assert_close(
        x[0, :, 0, 0], (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    )


class ScriptedMOTR(MOTR):
    """The real network and query interaction, with last-layer scores and boxes set by a script.

    script[frame] maps a query slot to (score, box): slot ("det", i) or ("track", track_id).
    Unscripted queries score 0.01.
    """

    def __init__(self, cfg, script):
        super().__init__(cfg)
        self.script = script
        self.frame = 0
        self.seen_track_ids = []

    def forward_frame(self, image, tracks=None, num_groups=None, generator=None):
        out = super().forward_frame(image, tracks, num_groups, generator)
        ids = tracks.ids.tolist() if tracks is not None else []
        self.seen_track_ids.append(ids)
        logits = torch.full_like(out.logits, float(torch.logit(torch.tensor(0.01))))
        boxes = out.boxes.clone()
        for (kind, key), (score, box) in self.script[self.frame].items():
            if kind == "track" and key not in ids:
                continue
            slot = key if kind == "det" else out.num_det + ids.index(key)
            logits[:, slot] = float(torch.logit(torch.tensor(score)))
            boxes[:, slot] = torch.tensor(box)
        self.frame += 1
        out.logits, out.boxes = logits, boxes
        return out


@pytest.fixture(scope="module")
def cfg():
    return tiny_config(dec_layers=1, enc_n_points=1, dec_n_points=1, num_queries=3, num_feature_levels=3)


def test_identity_is_kept_across_frames_then_dropped_after_miss_tolerance(cfg):
    box = [0.5, 0.5, 0.2, 0.4]
    moved = [0.55, 0.5, 0.2, 0.4]
    script = [
        {("det", 1): (0.9, box)},  # a new object: track id 1
        {("track", 1): (0.8, moved), ("det", 0): (0.95, [0.2, 0.2, 0.1, 0.1])},  # followed; a second appears
        {("track", 1): (0.7, moved)},  # id 2 missed (1/2)
        {("track", 1): (0.2, moved)},  # id 1 missed (1/2), id 2 missed (2/2): dropped
        {},  # id 1 missed (2/2): dropped
        {},
    ]
    torch.manual_seed(0)
    model = ScriptedMOTR(cfg, script)
    tracker = Tracker(model, TrackingConfig(miss_tolerance=2, keep_track_score=0.5), size=64, max_size=128)
    model = tracker.model  # the tracker runs its inference copy (a ScriptedMOTR too)
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    frames = [tracker.step(image) for _ in range(len(script))]

    assert [t.track_id for t in frames[0]] == [1]
    np.testing.assert_allclose(frames[0][0].box, (80.0, 30.0, 120.0, 70.0), atol=1e-4)  # original pixels
    assert frames[0][0].score == pytest.approx(0.9)
    assert sorted(t.track_id for t in frames[1]) == [1, 2]
    np.testing.assert_allclose(
        next(t for t in frames[1] if t.track_id == 1).box, (90.0, 30.0, 130.0, 70.0), atol=1e-4
    )
    assert [t.track_id for t in frames[2]] == [1]
    assert frames[3] == [] and frames[4] == []
    # what the network saw as track queries, frame by frame (new tracks come first: detect-query order)
    assert model.seen_track_ids == [[], [1], [2, 1], [2, 1], [1], []]
    tracker.reset()
    model.frame = 0
    assert [t.track_id for t in tracker.step(image)] == [1]


def test_tracker_drops_a_track_that_moves_onto_an_older_one_with_track_overlap(cfg):
    a, b = [0.3, 0.5, 0.2, 0.4], [0.7, 0.5, 0.2, 0.4]
    script = [
        {("det", 0): (0.9, a), ("det", 1): (0.8, b)},  # tracks 1 (on a) and 2 (on b)
        {("track", 1): (0.7, a), ("track", 2): (0.9, a)},  # track 2 moves onto track 1's target
        {("track", 1): (0.7, a), ("track", 2): (0.9, b)},  # and back, if it still exists
    ]
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    reported = {}
    for overlap in (None, 0.5):
        torch.manual_seed(0)
        tracker = Tracker(
            ScriptedMOTR(cfg, script), TrackingConfig(track_overlap=overlap), size=64, max_size=128
        )
        reported[overlap] = [sorted(t.track_id for t in tracker.step(image)) for _ in script]
    assert reported[None] == [[1, 2], [1, 2], [1, 2]]  # MOTR: both live on
    assert reported[0.5] == [[1, 2], [1], [1]]  # the younger duplicate is gone for good


def test_detect_returns_every_detect_query_in_pixels(cfg):
    torch.manual_seed(0)
    model = MOTR(cfg).train()
    boxes, scores = detect(model, np.zeros((100, 200, 3), dtype=np.uint8), 64, 128)
    assert boxes.shape == (3, 4) and scores.shape == (3,)
    assert ((scores > 0) & (scores < 1)).all()
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    assert model.training  # mode restored


def test_life_cycle_defaults_are_the_paper_s_and_motrv2_s():
    """§4.2: new tracks at score 0.5 (following MOTRv2); MOTRv2's DanceTrack inference
    (`submit_dance.py`): kept/reported at 0.5, dropped after 20 consecutive misses; training keeps
    unmatched queries above 0.5 as tracks without identity (`_select_active_tracks`)."""
    cfg = TrackingConfig()
    assert (cfg.new_track_score, cfg.keep_track_score, cfg.miss_tolerance) == (0.5, 0.5, 20)
    assert cfg.fp_score_threshold == 0.5 and (cfg.drop_track_prob, cfg.fp_track_prob) == (0.1, 0.3)
