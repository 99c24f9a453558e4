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
from train.tune_live import (
    VideoOutputs,
    costs,
    fast_enough,
    grid,
    load_outputs,
    median_show_s,
    pick,
    replay,
    replay_grid,
    save_outputs,
    shown_states,
    step_show_s,
    tune,
    write_rules,
)

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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_vectorised_replay_is_the_bedside_tracker(seed):
    rng = np.random.default_rng(seed)
    # P that wanders around the thresholds, with runs: where every rule matters
    p = np.clip(0.85 + np.cumsum(rng.normal(0, 0.04, 300)) * 0.3 + rng.normal(0, 0.05, 300), 0, 1)
    cands = [{"enter": float(e), "exit": float(e - g), "min_frames_on": int(on), "min_frames_off": int(off),
              "p_alpha": float(a), "first_frame_decides": bool(ff)}
             for e, g, on, off, a, ff in zip(rng.uniform(0.7, 0.95, 40), rng.uniform(0, 0.2, 40),
                                             rng.integers(1, 9, 40), rng.integers(1, 13, 40),
                                             rng.choice([1.0, 0.5, 0.3, 0.1], 40), rng.random(40) < 0.5, strict=True)]
    p[0] = 0.99  # the first frame votes "nerve": the first-frame rule matters
    fast = shown_states(p, cands)
    for j, r in enumerate(cands):
        t = PresenceTracker(r["enter"], r["exit"], r["min_frames_on"], r["min_frames_off"], p_alpha=r["p_alpha"],
                            first_frame_decides=r["first_frame_decides"])
        want = [t.update(Result(np.zeros((2, 2), np.float32), float(x), 0)).nerve for x in p]
        assert fast[:, j].tolist() == want, r
    assert fast.any() and not fast.all()  # the sequence exercised both states
    assert fast[0].any() and not fast[0].all()  # and both starts


def test_pick_minimises_the_stated_cost():
    # one video: 10 nerve-free frames at p 0.75, then 10 nerve frames at p 0.95
    o = _outputs("a", 0, [0] * 10 + [1] * 10, [0.75] * 10 + [0.95] * 10)
    cands = [{"enter": 0.7, "exit": 0.6, "min_frames_on": 1, "min_frames_off": 1},   # 10 false outlines
             {"enter": 0.9, "exit": 0.8, "min_frames_on": 1, "min_frames_off": 1},   # perfect
             {"enter": 0.9, "exit": 0.8, "min_frames_on": 5, "min_frames_off": 1}]   # 4 frames late
    c = costs([o], cands)
    # false outline frames, missed frames, changes of the screen
    np.testing.assert_array_equal(c[:, 0], [[10, 0, 0], [0, 0, 1], [0, 4, 1]])
    assert pick(c, np.array([0]), 2.0) == 1
    # a late outline (4 missed) beats 3 false ones at cost 2, loses to 1 false one
    c2 = np.array([[[3, 0, 0]], [[0, 4, 0]], [[1, 0, 0]]], float)
    assert pick(c2, np.array([0]), 2.0) == 2 and pick(c2[:2], np.array([0]), 2.0) == 1
    # each change of the screen costs flip_cost frames: 6 blinks lose to 4 frames late
    c3 = np.array([[[0, 1, 6]], [[0, 4, 1]]], float)
    assert pick(c3, np.array([0]), 2.0, flip_cost=5.0) == 1 and pick(c3, np.array([0]), 2.0, flip_cost=0.0) == 0


def test_rules_slower_than_the_time_to_show_limit_are_not_chosen():
    # two episodes; P rises to 0.95 at once: frames on decide the delay (20 fps)
    truth = [0] * 10 + [1] * 30 + [0] * 10 + [1] * 30
    p = [0.2 if t == 0 else 0.95 for t in truth]
    o = _outputs("a", 0, truth, p)
    cands = [{"enter": 0.9, "exit": 0.8, "min_frames_on": on, "min_frames_off": 1} for on in (1, 5, 13)]
    r = replay_grid([o], cands)
    one = np.array([0])
    np.testing.assert_allclose(median_show_s(r, one), [0.0, 0.2, 0.6])
    np.testing.assert_allclose(step_show_s(cands, 0.2, 0.95, 20.0), [0.0, 0.2, 0.6])
    assert fast_enough([o], one, cands, r, 0.5).tolist() == [True, True, False]
    c = np.array([[[0, 9, 0]], [[0, 5, 0]], [[0, 1, 0]]], float)  # made up: the slowest is the cheapest
    assert pick(c, one, 2.0, 5.0, fast_enough([o], one, cands, r, 0.5)) == 1
    assert pick(c, one, 2.0, 5.0, None) == 2
    assert pick(c, one, 2.0, 5.0, np.zeros(3, bool)) == 2  # none fast enough: the least cost


def test_the_step_catches_rules_slow_on_a_probe_sliding_onto_the_nerve():
    # a video that starts on the nerve: with the first frame deciding, any averaging shows it at once, so the
    # median over episodes is 0 s; a step of P (the probe sliding on) shows how slow heavy averaging is
    truth = [1] * 60 + [0] * 40
    p = [0.97] * 60 + [0.5] * 40
    o = _outputs("s", 0, truth, p)
    cands = [{"enter": 0.88, "exit": 0.8, "min_frames_on": 3, "min_frames_off": 1, "p_alpha": a,
              "first_frame_decides": True} for a in (1.0, 0.3, 0.1)]
    r = replay_grid([o], cands)
    np.testing.assert_allclose(median_show_s(r, np.array([0])), [0.0, 0.0, 0.0])
    step = step_show_s(cands, 0.5, 0.97, 20.0)
    # averaged from 0.5 towards 0.97 reaches 0.88 after 1, 5 and 16 frames; then 2 more for 3 frames on
    np.testing.assert_allclose(step, [0.1, 0.3, 0.85])
    assert fast_enough([o], np.array([0]), cands, r, 0.5).tolist() == [True, True, False]
    assert np.isinf(step_show_s(cands, 0.5, 0.85, 20.0)).all()  # never reaches enter: never shown


def test_averaging_is_chosen_when_counting_frames_cannot_separate_the_two():
    # nerve-free: P 0.2 with one-frame spikes to 0.95; nerve: P alternating 0.95 / 0.85 around enter 0.9.
    # Counting frames cannot tell them apart (one high frame in both, never two in a row); the running
    # average can (a spike lifts it to 0.575, the alternation keeps it about 0.9).
    free = [0.95 if i % 8 == 4 else 0.2 for i in range(40)]
    nerve = [0.95, 0.85] * 50
    outs = [_outputs(f"w{k}", k, [0] * 40 + [1] * 100 + [0] * 40, free + nerve + free) for k in range(2)]
    before = {"enter": 0.9, "exit": 0.85, "min_frames_on": 1, "min_frames_off": 1, "alpha": 0.5,
              "mask_threshold": 0.5, "p_alpha": 1.0}
    rep = tune(outs, before, (8, 8), 2.0)
    assert rep["chosen"]["p_alpha"] < 1.0
    assert all(f["chosen_on_other_folds"]["p_alpha"] < 1.0 for f in rep["per_fold"])
    after, before_s = rep["out_of_fold_after_all"], rep["out_of_fold_before_all"]
    assert after["flips_per_min"] < before_s["flips_per_min"] / 3
    assert after["cost_per_frame"] < before_s["cost_per_frame"]


def test_outputs_kept_and_read_back(tmp_path):
    from train.boxes import read_box_videos

    folder = tmp_path / "vids"
    (folder / "boxes").mkdir(parents=True)
    _write_box_video(folder, "a", [0, 1, 1, 0])
    _write_box_video(folder, "b", [1, 1, 0])
    vids = {v.subject: v for v in read_box_videos(folder)}
    outs = [VideoOutputs(vids["a"], 0, (40, 40), np.array([0.1, 0.9, 0.8, 0.2]),
                         np.random.default_rng(0).random((4, 8, 8)).astype(np.float16), np.array([0, 1, 1, 0], bool)),
            VideoOutputs(vids["b"], 2, (40, 40), np.array([0.7, 0.6, 0.1]), np.zeros((3, 8, 8), np.float16),
                         np.array([1, 1, 0], bool))]
    path = tmp_path / "oof.npz"
    save_outputs(outs, path)
    back = load_outputs(path, folder)
    assert [(o.video.subject, o.fold, o.frame_hw) for o in back] == [("a", 0, (40, 40)), ("b", 2, (40, 40))]
    for a, b in zip(outs, back, strict=True):
        np.testing.assert_array_equal(a.p, b.p)
        np.testing.assert_array_equal(a.masks, b.masks)
        np.testing.assert_array_equal(a.truth, b.truth)
    # boxes changed since: the kept truth no longer matches, so the cache is refused
    _write_box_video(folder, "b", [1, 0, 0])
    with pytest.raises(ValueError, match="truth of video b differs"):
        load_outputs(path, folder)
    (folder / "boxes" / "b.txt").unlink()
    (folder / "videos" / "b.mp4").unlink()
    _write_manifest(folder)
    with pytest.raises(ValueError, match="video b is not in"):
        load_outputs(path, folder)


def _write_box_video(folder: Path, name: str, truth: list[int]) -> None:
    """A real little mp4 and its box file in the regional-us layout (manifest rows are rebuilt each time)."""
    import json

    import cv2

    (folder / "videos").mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(folder / "videos" / f"{name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 20.0, (40, 40))
    for _ in truth:
        w.write(np.full((40, 40, 3), 90, np.uint8))
    w.release()
    (folder / "boxes" / f"{name}.txt").write_text("".join(
        json.dumps({str(i): {"tracker": "human", "bounding_boxes": json.dumps([[5, 5, 10, 10]] if t else [])}}) + "\n"
        for i, t in enumerate(truth)))
    _write_manifest(folder)


def _write_manifest(folder: Path) -> None:
    import csv

    import cv2

    rows = []
    for vid in sorted((folder / "videos").glob("*.mp4")):
        n = int(cv2.VideoCapture(str(vid)).get(cv2.CAP_PROP_FRAME_COUNT))
        rows.append({"path": f"videos/{vid.name}", "boxes_path": f"boxes/{vid.stem}.txt", "subject": vid.stem,
                     "label": "sc", "side": "L", "gain": "M", "frames": n, "pos_frames": 0, "width": 40,
                     "height": 40, "fps": 20.0})
    with open(folder / "manifest.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)


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
    assert (th.presence_enter, th.min_frames_on, th.min_frames_off, th.mask_smoothing, th.presence_smoothing) == (
        chosen["enter"], chosen["min_frames_on"], chosen["min_frames_off"], chosen["alpha"], chosen["p_alpha"])
    fixed = tune(outs, before, (8, 8), 2.0)
    assert fixed["chosen"]["enter"] == 0.97
    assert {f["chosen_on_other_folds"]["enter"] for f in fixed["per_fold"]} == {0.97}
    with pytest.raises(KeyError):
        write_rules(model, {"enter": 0.5}, {})


def test_write_rules_to_a_converted_model_redraws_its_card(tmp_path):
    import shutil

    from edge.models import default_model_path
    from edge.spec import load_spec

    src = default_model_path()
    for suffix in (".tflite", ".yaml", ".md"):
        shutil.copy(src.with_suffix(suffix), tmp_path / f"m{suffix}")
    model = tmp_path / "m.tflite"
    old_card = (tmp_path / "m.md").read_text()
    rules = {"enter": 0.9, "exit": 0.75, "min_frames_on": 4, "min_frames_off": 9, "alpha": 0.7, "p_alpha": 0.25,
             "first_frame_decides": True}
    write_rules(model, rules, {"why": "a test"})
    th = load_spec(model).thresholds  # the hash still matches: only the sidecar changed
    assert (th.presence_enter, th.presence_exit, th.min_frames_on, th.min_frames_off, th.mask_smoothing,
            th.presence_smoothing, th.first_frame_decides) == (0.9, 0.75, 4, 9, 0.7, 0.25, True)
    card = (tmp_path / "m.md").read_text()
    assert "its running average over frames (weight 0.25 on the newest) rises above 0.9 on 4 consecutive" in card
    assert "why: a test" in card

    def sections(text):
        return {p.split("\n", 1)[0]: p for p in text.split("\n## ")[1:]}

    old, new = sections(old_card), sections(card)
    assert old.keys() == new.keys()
    changed = {k for k in old if old[k] != new[k]}
    assert changed == {"Outputs and thresholds", "Provenance"}  # measured numbers etc. kept word for word
