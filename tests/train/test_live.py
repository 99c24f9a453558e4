"""`nerveseg eval --live`: the live loop scored against a known truth, and the simulated clock proved
equal to a paced run on real frames."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.cli import EXIT_OK, main
from edge.config import Config, with_overrides
from train.boxes import BoxVideo, read_box_videos
from train.live import Trace, episodes, play, pool, score_trace


def _sq(y, x, s=2):
    m = np.zeros((6, 6), bool)
    m[y : y + s, x : x + s] = True
    return m


def test_episodes():
    assert episodes(np.array([0, 1, 1, 0, 1], bool)) == [(1, 3), (4, 5)]
    assert episodes(np.zeros(3, bool)) == []


def test_score_trace_hand_computed():
    box = (6.0, 6.0, 18.0, 18.0)  # frame 36x36 -> model 6x6: pixels 1..3 of each axis
    truth = [0, 1, 1, 1, 1, 0, 0, 0, 1, 1]  # two nerve episodes: frames 1-4 and 8-9
    video = BoxVideo(path=Path("v.mp4"), subject="v", label="sc", fps=10.0,
                     boxes={i: [box] if t else [] for i, t in enumerate(truth)}, trackers={})
    shown = [0, 0, 0, 1, 1, 1, 0, 0, 0, 0]  # shows 2 frames late, clears 1 frame late, misses episode 2
    masks = [None] * 10
    masks[3], masks[4], masks[5] = _sq(1, 1), _sq(2, 2), _sq(4, 4)
    trace = Trace("v", 10.0, (36, 36), [0.5] * 10, [bool(s) for s in shown], masks)
    r = score_trace(trace, video, (6, 6))
    assert r["state_accuracy"] == pytest.approx(5 / 10)  # frames 0, 3, 4, 6, 7 right
    assert (r["false_outline_frames"], r["missed_frames"]) == (1, 4)
    assert (r["flips"], r["truth_flips"]) == (2, 3)
    assert r["time_to_show_frames"] == [2] and r["episodes_never_shown"] == 1
    assert r["time_to_clear_frames"] == [1] and r["clears_never"] == 0
    # shown on nerve frames 3 and 4: centroids (1.5,1.5)->(2,2) and (2.5,2.5)->(3,3), both in the box
    assert r["outline_on_box"] == 1.0 and r["outline_on_box_frames"] == 2
    # consecutive shown pairs (3,4) and (4,5): centroid moves sqrt(2) and 2*sqrt(2); Dice 1/4 and 0
    np.testing.assert_allclose(r["jitter_centroid_px"], [np.sqrt(2), 2 * np.sqrt(2)])
    np.testing.assert_allclose(r["jitter_dice"], [0.25, 0.0])
    p = pool([r, r], fps=10.0)
    assert p["state_accuracy"] == pytest.approx(0.5) and p["flips_per_min"] == pytest.approx(4 / (20 / 600))
    assert p["time_to_show_s"]["median"] == pytest.approx(0.2) and p["time_to_show_s"]["never_shown"] == 2


@pytest.fixture(scope="module")
def clip_folder(data_dir, tmp_path_factory):
    """One 10 fps 'patient' of real Kaggle frames: 8 with a nerve, 8 without, 8 with, boxes from the masks."""
    root = tmp_path_factory.mktemp("live")
    (root / "videos").mkdir()
    (root / "boxes").mkdir()
    full = data_dir / "kaggle-bp" / "fullres"
    pos, neg = [], []
    for p in sorted((full / "masks").glob("*_mask.png")):
        m = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        (pos if m.any() else neg).append((p.name.replace("_mask.png", ""), m))
    seq = pos[:8] + neg[:8] + pos[8:16]
    w = cv2.VideoWriter(str(root / "videos" / "c1.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (580, 420))
    lines = []
    for i, (name, m) in enumerate(seq):
        w.write(cv2.imread(str(full / "images" / f"{name}.png")))
        bb = [list(cv2.boundingRect((m > 0).astype(np.uint8)))] if m.any() else []
        lines.append(json.dumps({str(i): {"tracker": "human", "bounding_boxes": json.dumps(bb)}}))
    w.release()
    (root / "boxes" / "c1.txt").write_text("\n".join(lines) + "\n")
    (root / "manifest.csv").write_text("path,boxes_path,subject,label,fps\nvideos/c1.avi,boxes/c1.txt,c1,sc,10\n")
    return root


def test_simulated_clock_equals_a_paced_run(clip_folder):
    from edge.app import run_plan
    from edge.pipeline import PipelineObserver
    from edge.plan import resolve_run

    video = read_box_videos(clip_folder)[0]
    first = play(video, resolve_run(Config()))
    assert len(first.p) == 24
    # thresholds inside this clip's own P(nerve) range, so the screen changes state during it
    mid = float(np.median(first.p))
    cfg = with_overrides(Config(), presence={"enter": min(mid + 1e-4, 0.99), "exit": max(mid - 1e-4, 0.01),
                                             "min_frames_on": 2, "min_frames_off": 2})
    sim = play(video, resolve_run(cfg))
    assert any(sim.shown) and not all(sim.shown)

    paced: dict[int, bool] = {}

    class Watch(PipelineObserver):
        def on_frame(self, pipeline, event):
            paced[event.frame.seq] = bool(event.decision.nerve)

    live = with_overrides(cfg, source={"spec": f"file:{video.path}", "pace": True}, sink={"spec": "null"})
    stats = run_plan(resolve_run(live), threading.Event(), drop_frames=True, observers=[Watch()])
    assert stats.dropped == 0 and sorted(paced) == list(range(24))  # the box kept up with 10 fps
    assert [paced[i] for i in range(24)] == sim.shown
    np.testing.assert_allclose(sim.p, first.p)  # the thresholds change the screen, not the network
    # averaging P: the loop's averaged P is the running average of the network's, frame by frame
    from train.tune_live import averaged

    smooth = play(video, resolve_run(with_overrides(Config(), presence={"smoothing": 0.4})))
    np.testing.assert_allclose(smooth.p, first.p)
    np.testing.assert_allclose(smooth.p_vote, averaged(np.array(first.p), 0.4))
    assert np.abs(np.array(smooth.p_vote) - np.array(smooth.p)).max() > 1e-3


def test_cli_live_writes_json_and_timelines(clip_folder, tmp_path, capsys):
    out = tmp_path / "live.json"
    tl = tmp_path / "tl"
    assert main(["eval", "--live", "--data", str(clip_folder), "--json", str(out), "--timelines", str(tl)]) == EXIT_OK
    text = capsys.readouterr().out
    assert "screen right" in text and "flips per minute" in text and "c1" in text
    rep = json.loads(out.read_text())
    assert rep["pooled"]["frames"] == 24 and rep["per_video"][0]["truth_frames"] == 16
    assert cv2.imread(str(tl / "timeline_c1.png")) is not None
    assert cv2.imread(rep["worst_moments"]) is not None
    assert main(["eval", "--live", "--data", str(tmp_path)]) == 2


def test_worst_runs_longest_first():
    from train.live import worst_runs

    truth = [1, 1, 1, 0, 0, 0, 0, 1]
    video = BoxVideo(Path("v.mp4"), "v", "sc", 10.0, {i: [(0, 0, 4, 4)] if t else [] for i, t in enumerate(truth)}, {})
    shown = [0, 0, 1, 1, 1, 1, 0, 0]  # missed 0-1 (2), false 3-5 (3), missed 7 (1)
    t = Trace("v", 10.0, (8, 8), [0.5] * 8, [bool(x) for x in shown], [None] * 8)
    runs = worst_runs([t], [video], n=5)
    assert runs["false_outline"] == [(0, 4, 3)]
    assert runs["missed"] == [(0, 1, 2), (0, 7, 1)]
