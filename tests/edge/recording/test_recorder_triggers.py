"""When the recorder records, through the real loop: pre-roll, post-roll, splits, manual toggles from the
command channel (the window's 'r', SIGUSR1), a retry after a full disk.

What each session should hold comes from the rules (`edge.recording.trigger`, tested on their own in
test_trigger.py) applied to what the loop saw; these tests check that the recorder writes exactly that.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from edge.config import Config, with_overrides
from edge.control import QUIT, RECORD_TOGGLE
from edge.pipeline import PipelineObserver
from edge.recording.recorder import Recorder
from edge.recording.storage import Storage
from tests.edge.recording.helpers import (
    KAGGLE_ROI,
    LUNG_ROI,
    REPO,
    KeySink,
    Spy,
    expected_sessions,
    free_space,
    run_loop,
    sessions,
)


def test_manual_pre_roll_holds_exactly_the_frames_before_the_trigger(tmp_path, lung_clips, runner):
    # Paced at 100 fps: ~10 ms between captures, so 0.1 s of pre-roll is about 10 frames.
    cfg = with_overrides(
        Config(), roi=LUNG_ROI[1], source={"spec": f"file:{lung_clips[1]}", "fps": 100},
        loop={"max_frames": 150},
        record={"mode": "manual", "dir": str(tmp_path), "pre_roll_s": 0.1, "post_roll_s": 0.05, "queue_frames": 500},
    )
    rec = Recorder(cfg.record)
    spy = Spy(toggles_at=(30, 60, 75, 120))
    run_loop(cfg, runner, [spy, rec])
    assert rec.frames_dropped == 0

    expected = expected_sessions(spy.frames, cfg.record, spy.toggles_at)
    got = sessions(tmp_path)
    assert [[x["seq"] for x in lines] for _, lines, _ in got] == expected
    assert len(expected) == 2

    (m1, l1, _), (m2, l2, _) = got
    pre1 = [x["seq"] for x in l1 if x["pre_roll"]]
    t = {f["seq"]: f["t"] for f in spy.frames}
    # about 10 frames at 100 fps; fewer where a busy box cannot keep that pace
    assert pre1 == [s for s in range(30) if t[30] - 0.1e9 <= t[s]] and 2 <= len(pre1) <= 15
    assert l1[len(pre1)]["seq"] == 30 and m1["trigger"]["pre_roll_frames"] == len(pre1)
    # post-roll: frames captured less than 0.05 s after the toggle-off at 60
    assert l1[-1]["seq"] >= 60 and all(t[s] - t[60] < 0.05e9 for s in range(60, l1[-1]["seq"] + 1))
    assert t[l1[-1]["seq"] + 1] - t[60] >= 0.05e9
    # the second session's pre-roll never repeats frames of the first
    assert l2[0]["seq"] > l1[-1]["seq"] and m2["trigger"]["seq"] == 75 and l2[-1]["seq"] >= 120
    assert m1["trigger"]["mode"] == "manual"


def test_on_detection_starts_with_pre_roll_and_stops_after_post_roll(tmp_path, kaggle_fullres, runner):
    # Kaggle frames of subjects 1-2: the model calls some "nerve", some not; with single-frame
    # hysteresis the decision flips often, giving several sessions in one pass.
    cfg = with_overrides(
        Config(), roi=KAGGLE_ROI, source={"spec": f"images:{kaggle_fullres}", "fps": 50},
        presence={"enter": 0.7, "exit": 0.5, "min_frames_on": 1, "min_frames_off": 1, "smoothing": 1.0},
        record={"mode": "on-detection", "dir": str(tmp_path), "pre_roll_s": 0.05, "post_roll_s": 0.03,
                "queue_frames": 500},
    )
    rec = Recorder(cfg.record)
    spy = Spy()
    run_loop(cfg, runner, [spy, rec])
    assert len(spy.frames) == 55 and rec.frames_dropped == 0
    expected = expected_sessions(spy.frames, cfg.record)
    got = sessions(tmp_path)
    assert len(expected) >= 3
    assert [[x["seq"] for x in lines] for _, lines, _ in got] == expected
    nerve_seqs = {f["seq"] for f in spy.frames if f["nerve"]}
    for manifest, lines, _ in got:
        assert manifest["trigger"]["seq"] in nerve_seqs and manifest["trigger"]["reason"] == "nerve detected"
        assert [x["decision"] == "nerve" for x in lines] == [x["seq"] in nerve_seqs for x in lines]
        # the pre-roll is what came before the trigger; the trigger frame is the first "nerve" one
        k = manifest["trigger"]["pre_roll_frames"]
        assert [x["pre_roll"] for x in lines] == [True] * k + [False] * (len(lines) - k)
        assert lines[k]["seq"] == manifest["trigger"]["seq"] and not any(x["seq"] in nerve_seqs for x in lines[:k])


def test_always_mode_splits_long_sessions_without_losing_frames(tmp_path, lung_clips, runner):
    cfg = with_overrides(Config(), roi=LUNG_ROI[1], source={"spec": f"file:{lung_clips[1]}", "fps": 100},
                         loop={"max_frames": 60},
                         record={"mode": "always", "dir": str(tmp_path), "max_session_s": 0.2, "queue_frames": 500})
    run_loop(cfg, runner, [Recorder(cfg.record)])
    got = sessions(tmp_path)
    assert len(got) >= 2
    seqs = [x["seq"] for _, lines, _ in got for x in lines]
    assert seqs == list(range(60))
    assert [m["stop_reason"] for m, _, _ in got][:-1] == ["record.max_session_s reached"] * (len(got) - 1)
    assert [m["trigger"]["reason"] for m, _, _ in got] == ["always"] + ["continued"] * (len(got) - 1)


def test_a_split_keeps_the_post_roll_deadline(tmp_path, lung_clips, runner):
    # Manual on at seq 10, off at 20; post-roll 0.3 s. At 100 fps the session is split (0.25 s)
    # during the post-roll: the continued session must end when the post-roll ends, not 0.3 s
    # after the split.
    cfg = with_overrides(
        Config(), roi=LUNG_ROI[1], source={"spec": f"file:{lung_clips[1]}", "fps": 100}, loop={"max_frames": 90},
        record={"mode": "manual", "dir": str(tmp_path), "pre_roll_s": 0, "post_roll_s": 0.3, "max_session_s": 0.25,
                "queue_frames": 500},
    )
    rec = Recorder(cfg.record)
    spy = Spy(toggles_at=(10, 20))
    run_loop(cfg, runner, [spy, rec])
    t = {f["seq"]: f["t"] for f in spy.frames}
    # what one session without the split would hold: the split must change nothing but the folders
    unsplit = with_overrides(cfg, record={"max_session_s": 1e6}).record
    expected = expected_sessions(spy.frames, unsplit, spy.toggles_at)
    got = sessions(tmp_path)
    merged: list[list[int]] = []
    for manifest, lines, _ in got:
        seqs = [x["seq"] for x in lines]
        if manifest["trigger"]["reason"] == "continued":
            merged[-1].extend(seqs)
        else:
            merged.append(seqs)
    assert len(got) >= 2 and got[0][0]["stop_reason"] == "record.max_session_s reached"
    assert t[got[0][1][-1]["seq"]] - t[20] < 0.3e9  # the split fell inside the post-roll
    assert len(expected) == 1 and expected[0][0] == 10 and t[expected[0][-1]] - t[20] < 0.3e9
    assert merged == expected


# -- manual toggles from the command channel ----------------------------------------------------------------


def test_window_key_toggles_manual_recording(tmp_path, lung_clips, runner):
    # 'r' typed while frames 9 and 19 are on screen: the loop forwards it to the command channel after
    # the frame, so recording runs from frame 10 to 19.
    cfg = with_overrides(Config(), roi=LUNG_ROI[1], source={"spec": f"file:{lung_clips[1]}", "pace": False},
                         loop={"max_frames": 40},
                         record={"mode": "manual", "dir": str(tmp_path), "pre_roll_s": 0, "post_roll_s": 0})
    rec = Recorder(cfg.record)
    pipe, _ = run_loop(cfg, runner, [rec], sink=KeySink(presses_after=(9, 19)))
    [(_, lines, _)] = sessions(tmp_path)
    assert [x["seq"] for x in lines] == list(range(10, 20))
    assert pipe.commands.count(RECORD_TOGGLE) == 2


def test_window_sink_hands_the_record_key_to_the_loop():
    from edge.sinks.window import WindowSink

    win = WindowSink.__new__(WindowSink)  # no GUI here: exercise the key handling alone
    win._commands = []
    for key in (ord("r"), -1, ord("x"), ord("R") | 0x100000):
        win._handle_key(key)
    assert win.take_commands() == (RECORD_TOGGLE, RECORD_TOGGLE)
    assert win.take_commands() == ()  # each press is handed over once
    win._handle_key(ord("q"))
    assert win.take_commands() == (QUIT,)


def test_sigusr1_toggles_recording_in_nerveseg_run(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    rec_dir = tmp_path / "rec"
    cfg.write_text(f"record: {{mode: manual, dir: '{rec_dir}', pre_roll_s: 0.2, post_roll_s: 0}}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(cfg), "--source", "phantom", "--log-level", "INFO"],
        cwd=REPO, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []

    def wait_for(text: str) -> None:
        t_end = time.monotonic() + 30
        while time.monotonic() < t_end:
            line = proc.stderr.readline()
            lines.append(line)
            if text in line:
                return
        pytest.fail(f"no {text!r} in the log: " + "".join(lines))

    try:
        wait_for("running:")
        time.sleep(0.5)
        proc.send_signal(signal.SIGUSR1)
        wait_for("recording started")
        time.sleep(0.7)
        proc.send_signal(signal.SIGUSR1)
        wait_for("recording stopped")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    [(manifest, lines_, _)] = sessions(rec_dir)
    assert manifest["trigger"]["pre_roll_frames"] >= 3  # 0.2 s of a 30 fps phantom
    assert 10 <= manifest["frames"] == len(lines_) <= 60


def test_one_toggle_retries_after_a_full_disk_from_the_toggling_frame(tmp_path, lung_clips, runner):
    cfg = with_overrides(Config(), roi=LUNG_ROI[1], source={"spec": f"file:{lung_clips[1]}", "fps": 30},
                         loop={"max_frames": 50},
                         record={"mode": "manual", "dir": str(tmp_path), "pre_roll_s": 0, "post_roll_s": 0})
    disk = {"free": 0}  # below record.min_free_mb until the operator frees space
    rec = Recorder(cfg.record, storage=Storage(cfg.record, statvfs=free_space(disk)))

    class Operator(PipelineObserver):
        """After the recorder: a toggle here arrives between frames, as SIGUSR1 does."""

        def on_frame(self, pipeline, event):
            if event.seq in (4, 19, 39):
                pipeline.commands.request(RECORD_TOGGLE)  # applies from the next frame on
            if event.seq == 12:
                t_end = time.monotonic() + 10
                while rec.state != "stopped_disk_full" and time.monotonic() < t_end:
                    time.sleep(0.01)
                assert rec.state == "stopped_disk_full" and "min_free_mb" in rec.last_error
                assert not rec.needs_raw  # stopped: no ROI copy per frame
                disk["free"] = 10e9  # the operator frees space

    run_loop(cfg, runner, [rec, Operator()])
    [(manifest, lines, _)] = sessions(tmp_path)
    assert [x["seq"] for x in lines] == list(range(20, 40))
    assert manifest["trigger"]["seq"] == 20
