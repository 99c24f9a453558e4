"""Tuning the temporal rules: the replay is the bedside tracker, the choice minimises the stated cost,
cross-validation never tunes on the videos it reports, and the rules land in the spec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.presence import PresenceTracker
from edge.types import Result
from tests.model_fixtures import make_spec
from train.boxes import BoxVideo
from train.tune_live import VideoOutputs, costs, grid, pick, replay, tune, write_rules

BOX = (10.0, 10.0, 20.0, 20.0)


def _outputs(name, fold, truth, p):
    truth = np.array(truth, bool)
    n = len(truth)
    video = BoxVideo(Path(f"{name}.mp4"), name, "sc", 20.0, {i: [BOX] if t else [] for i, t in enumerate(truth)}, {})
    masks = np.zeros((n, 8, 8), np.float16)
    masks[truth, 2:5, 2:5] = 0.9
    return VideoOutputs(video, fold, (40, 40), np.array(p, float), masks, truth)


def test_replay_is_the_bedside_tracker():
    rng = np.random.default_rng(1)
    p = rng.random(60)
    rules = {"enter": 0.7, "exit": 0.4, "min_frames_on": 2, "min_frames_off": 3}
    shown, _ = replay(p, rules)
    t = PresenceTracker(0.7, 0.4, 2, 3)
    want = [t.update(Result(np.zeros((2, 2), np.float32), float(x), 0)).nerve for x in p]
    assert shown.tolist() == want


def test_pick_minimises_the_stated_cost():
    # one video: 10 nerve-free frames at p 0.75, then 10 nerve frames at p 0.95
    o = _outputs("a", 0, [0] * 10 + [1] * 10, [0.75] * 10 + [0.95] * 10)
    cands = [{"enter": 0.7, "exit": 0.6, "min_frames_on": 1, "min_frames_off": 1},   # 10 false outlines
             {"enter": 0.9, "exit": 0.8, "min_frames_on": 1, "min_frames_off": 1},   # perfect
             {"enter": 0.9, "exit": 0.8, "min_frames_on": 5, "min_frames_off": 1}]   # 4 frames late
    c = costs([o], cands, 2.0)
    np.testing.assert_array_equal(c[:, 0], [[10, 0], [0, 0], [0, 4]])
    assert pick(c, np.array([0]), 2.0) == 1
    # a late outline (4 missed) beats 3 false ones at cost 2, loses to 1 false one
    c2 = np.array([[[3, 0]], [[0, 4]], [[1, 0]]], float)
    assert pick(c2, np.array([0]), 2.0) == 2 and pick(c2[:2], np.array([0]), 2.0) == 1


def test_tune_reports_held_out_folds_and_writes_the_spec(tmp_path):
    from edge.spec import load_spec, save_spec

    rng = np.random.default_rng(0)
    outs = []
    for k in range(3):
        for j in range(2):
            truth = np.r_[np.zeros(30), np.ones(40), np.zeros(30)].astype(bool)
            p = np.clip(np.where(truth, 0.9, 0.3) + rng.normal(0, 0.12, truth.size), 0, 1)
            outs.append(_outputs(f"v{k}{j}", k, truth, p))
    before = {"enter": 0.97, "exit": 0.87, "min_frames_on": 3, "min_frames_off": 5, "alpha": 0.5,
              "mask_threshold": 0.5}
    rep = tune(outs, before, (8, 8), 2.0, tune_enter=True)
    assert [f["held_out_videos"] for f in rep["per_fold"]] == [["v00", "v01"], ["v10", "v11"], ["v20", "v21"]]
    for f in rep["per_fold"]:
        assert f["after"]["cost_per_frame"] <= f["before"]["cost_per_frame"] + 0.05
    assert rep["out_of_fold_after_all"]["state_accuracy"] > rep["out_of_fold_before_all"]["state_accuracy"]
    chosen = rep["chosen"]
    assert chosen in [g | {"alpha": chosen["alpha"], "mask_threshold": 0.5} for g in grid()]
    model = tmp_path / "m.keras"
    model.write_bytes(b"weights")
    save_spec(make_spec(), model)
    write_rules(model, chosen, {"note": 1})
    th = load_spec(model, verify_hash=False).thresholds
    assert (th.presence_enter, th.min_frames_on, th.min_frames_off, th.mask_smoothing) == (
        chosen["enter"], chosen["min_frames_on"], chosen["min_frames_off"], chosen["alpha"])
    fixed = tune(outs, before, (8, 8), 2.0)
    assert fixed["chosen"]["enter"] == 0.97
    assert {f["chosen_on_other_folds"]["enter"] for f in fixed["per_fold"]} == {0.97}
    with pytest.raises(KeyError):
        write_rules(model, {"enter": 0.5}, {})
