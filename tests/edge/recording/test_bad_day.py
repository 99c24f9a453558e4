"""Recording on a bad day at the bedside: a hang-up, a tiny ROI, a huge source, a full disk, a wrong clock.

Each leaves a closed, reviewable session (or a clear reason why not) and says which setting is at fault.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

from edge.config import Config, RecordConfig, with_overrides
from edge.recording.mp4index import mp4_frame_count
from edge.recording.recorder import Recorder
from edge.recording.session import (
    ANNOTATED_FILE,
    MANIFEST_FILE,
    RESERVE_FILE,
    load_raw,
    open_private,
    session_name,
)
from edge.recording.storage import SessionTime, apply_retention, session_times
from edge.recording.writer import WriterThread
from edge.review import export_session, load_session
from tests.edge.recording.helpers import LUNG_ROI, REPO, fake_session, run_loop, sessions
from tests.media import count_video_frames

# -- a ROI of a few pixels ----------------------------------------------------------------------------------


def test_a_tiny_roi_records_every_frame_and_reviews(tmp_path, runner):
    # 20x20 px: no room for one letter of the verdict. It used to stop the recorder after one frame.
    cfg = with_overrides(Config(), source={"spec": "phantom", "pace": False}, roi={"x": 280, "y": 200, "w": 20,
                                                                                     "h": 20},
                         loop={"max_frames": 12}, record={"mode": "always", "dir": str(tmp_path / "rec")})
    rec = Recorder(cfg.record)
    run_loop(cfg, runner, [rec])
    assert rec.state == "off" and rec.last_error is None and rec.frames_written == 12
    [(manifest, lines, sdir)] = sessions(tmp_path / "rec")
    assert manifest["frames"] == len(lines) == 12 and manifest["stop_reason"] == "loop ended"
    assert manifest["videos_finalised"]["annotated"] is True
    assert count_video_frames(sdir / ANNOTATED_FILE) == manifest["annotated_frames"] == 12
    # Enlarged by a whole factor (8) so the verdict fits: its text covers part of the picture.
    cap = cv2.VideoCapture(str(sdir / ANNOTATED_FILE))
    ok, first = cap.read()
    cap.release()
    assert ok and first.shape[:2] == (160, 160)
    raw = cv2.resize(load_raw(sdir / lines[0]["raw"]), (160, 160), interpolation=cv2.INTER_NEAREST)
    drawn = np.abs(first.astype(int) - raw).max(axis=-1) > 60  # lossy codec: only strong changes count
    assert drawn.mean() > 0.02, drawn.mean()
    ex = export_session(load_session(sdir), tmp_path / "out")
    assert ex.frames == 12 and ex.skipped == [] and count_video_frames(ex.clip) == 12


# -- the message names the setting at fault -----------------------------------------------------------------


def test_low_free_space_names_record_min_free_mb(tmp_path, lung_clips, runner, caplog):
    cfg = with_overrides(Config(), roi=LUNG_ROI[1], source={"spec": f"file:{lung_clips[1]}", "pace": False},
                         loop={"max_frames": 3},
                         record={"mode": "always", "dir": str(tmp_path), "min_free_mb": 1e12})
    rec = Recorder(cfg.record)
    with caplog.at_level(logging.ERROR, logger="edge.recording"):
        run_loop(cfg, runner, [rec])
    [msg] = [r.getMessage() for r in caplog.records if "recording stopped: disk full" in r.getMessage()]
    assert "record.min_free_mb" in msg and "lower record.min_free_mb" in msg, msg
    assert "max_gb" not in msg, msg
    assert json.dumps(rec.health())  # still a JSON-able health


# -- a huge source: the writer's queue is bounded in bytes, not only in frames ------------------------------


def test_writer_queue_is_bounded_in_bytes_and_drops_are_counted():
    gate = threading.Event()
    handled = []
    w = WriterThread(100, lambda item: (gate.wait(5), handled.append((item.n, item.drops))), max_bytes=25,
                     on_error=print, discard=print, finish=lambda n: None, poll_s=0.01)
    w.start()
    items = [SimpleNamespace(n=k, nbytes=10, drops=None) for k in range(6)]
    assert w.offer(items[0])
    time.sleep(0.1)  # the thread took item 0 and waits on the disk
    # 100 frames may wait, 25 bytes may: two frames of 10 bytes fit, the third would pass the cap
    assert [w.offer(it) for it in items[1:5]] == [True, True, False, False]
    assert w.dropped == w.dropped_over_bytes == 2 and w.queued_bytes == 20 == w.queued_bytes_max
    gate.set()
    time.sleep(0.2)
    assert w.queued_bytes == 0
    huge = SimpleNamespace(n=9, nbytes=1000, drops=None)
    assert w.offer(huge)  # an empty queue takes one frame whatever its size: it is still recorded
    assert not w.offer(items[5])
    w.stop()
    assert w.join(5)
    assert handled == [(0, 0), (1, 0), (2, 0), (9, 2)]  # the two dropped frames are booked on the next one


def test_a_big_source_on_a_slow_disk_keeps_the_queue_within_record_queue_mb(tmp_path, runner):
    # 1080p whole-frame ROI: 6.2 MB a frame. Before, 64 of them could wait (400 MB; 6.4 GB at 8K).
    cfg = with_overrides(Config(), source={"spec": "phantom", "pace": False, "width": 1920, "height": 1080},
                         roi={"x": 0, "y": 0, "w": 1920, "h": 1080}, loop={"max_frames": 30},
                         record={"mode": "always", "dir": str(tmp_path), "queue_mb": 20})

    def slow_pngs(path: Path, extra_flags: int = 0) -> int:
        if path.suffix == ".png":
            time.sleep(0.1)  # an SD card in trouble
        return open_private(path, extra_flags)

    rec = Recorder(cfg.record, open_file=slow_pngs)
    run_loop(cfg, runner, [rec])
    h = rec.health()
    assert 12 <= h["queue_mb_max"] <= 20, h  # three frames fit, the fourth would pass 20 MB
    assert h["frames_dropped_queue_mb"] > 0 and h["frames_written"] + h["frames_dropped"] == 30
    [(manifest, lines, _)] = sessions(tmp_path)
    assert manifest["frames"] == len(lines) == h["frames_written"] and manifest["frames_dropped"] == h[
        "frames_dropped"]
    assert "megabytes" in RecordConfig.model_fields["queue_mb"].description  # described in the config reference


# -- SIGHUP: the terminal went away (an ssh session closed) ------------------------------------------------


def test_sighup_during_a_recording_closes_it_like_sigterm(tmp_path):
    rec_dir, status = tmp_path / "rec", tmp_path / "status.json"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"source: {{spec: phantom}}\nrecord: {{mode: always, dir: '{rec_dir}', min_free_mb: 1}}\n"
                   f"health: {{status_file: '{status}', interval_s: 0.2}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(cfg), "--log-level", "INFO"],
                            cwd=REPO, stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    try:
        t_end = time.monotonic() + 30
        while time.monotonic() < t_end and not any("recording started" in x for x in log):
            log.append(proc.stderr.readline())
        assert any("recording started" in x for x in log), "".join(log)
        time.sleep(3.0)
        proc.send_signal(signal.SIGHUP)
        _, rest = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(log) + rest
    assert "received SIGHUP: stopping" in rest and "Traceback" not in rest
    [(manifest, lines, sdir)] = sessions(rec_dir)
    assert manifest["stopped_utc"] is not None and manifest["stop_reason"] == "loop ended"
    assert manifest["frames"] == len(lines) > 30  # ~3 s of a 30 fps phantom
    assert manifest["videos_finalised"]["annotated"] is True
    assert mp4_frame_count(sdir / ANNOTATED_FILE) == manifest["annotated_frames"] == manifest["frames"]
    assert count_video_frames(sdir / ANNOTATED_FILE) == manifest["frames"]  # it opens, every frame there
    assert not (sdir / RESERVE_FILE).exists()
    assert json.loads(status.read_text())["state"] == "stopped"


# -- retention does not trust folder names or the clock that recorded them ----------------------------------


def _session(root: Path, start: datetime, nbytes: int, serial: int | None = None, name: str | None = None) -> Path:
    """A finished session folder holding ``nbytes`` whose manifest says it started at ``start``."""
    d = fake_session(root, name or session_name(start), nbytes)
    (d / MANIFEST_FILE).write_text(json.dumps({"started_utc": start.isoformat().replace("+00:00", "Z"),
                                               "serial": serial}))
    return d


def test_a_session_named_in_the_future_goes_first_and_is_logged(tmp_path, caplog):
    now = datetime.now(timezone.utc)
    older = fake_session(tmp_path, session_name(now - timedelta(days=2)), 4_000_000)
    newer = fake_session(tmp_path, session_name(now - timedelta(days=1)), 4_000_000)
    bogus = fake_session(tmp_path, "20991231T235959.000Z", 4_000_000)  # hand-made, or a clock far ahead
    with caplog.at_level(logging.INFO, logger="edge.recording"):
        # 12 MB over a 10 MB quota: one must go, and it is not a real older session
        assert apply_retention(tmp_path, max_bytes=10e6, max_age_s=30 * 86400) == [bogus]
        assert older.is_dir() and newer.is_dir()
        # under the quota it stays (nothing says how old it is but its files), and says why once
        fake_session(tmp_path, "20991231T235959.000Z", 1000)
        warned: set[str] = set()
        for _ in range(2):
            assert apply_retention(tmp_path, max_bytes=10e6, max_age_s=30 * 86400, warned=warned) == []
    msgs = [r.getMessage() for r in caplog.records]
    [gone] = [m for m in msgs if m.startswith("retention: deleted session")]
    assert gone.startswith(f"retention: deleted session {bogus.name} (over record.max_gb = 0.01: recordings held "
                           "0.012 GB"), gone
    assert "2099-12-31T23:59Z lies in the future" in gone and "4.0 MB" in gone
    assert sum("lies in the future" in m and "goes first" in m for m in msgs) == 1, msgs


def test_a_clock_behind_at_recording_does_not_delete_sessions_early(tmp_path, caplog):
    # A box without RTC booted with its clock in 1970, recorded, then NTP set it right. The session's own
    # start (and name) say it is 56 years old; it was written after yesterday's session (its serial).
    now = datetime.now(timezone.utc)
    yesterday = _session(tmp_path, now - timedelta(days=1), 1000, serial=1)
    early = _session(tmp_path, datetime(1970, 1, 1, 0, 5, tzinfo=timezone.utc), 1000, serial=2)
    expired = _session(tmp_path, now - timedelta(days=40), 1000)  # older format, no serial: its own start
    with caplog.at_level(logging.INFO, logger="edge.recording"):
        assert apply_retention(tmp_path, max_bytes=10e6, max_age_s=30 * 86400) == [expired]
    assert yesterday.is_dir() and early.is_dir()
    assert "older than record.max_days = 30: recorded" in caplog.text and "40.0 days ago" in caplog.text
    # over the quota, the write order decides: yesterday's goes before the one recorded after it
    assert apply_retention(tmp_path, max_bytes=1500, max_age_s=30 * 86400) == [yesterday]


def test_session_times_follow_the_write_order_and_refuse_the_future():
    now = datetime(2025, 3, 20, 12, 0, tzinfo=timezone.utc)
    day = timedelta(days=1)
    future = datetime(2099, 1, 1, tzinfo=timezone.utc)
    times = {
        "a": SessionTime(now - 5 * day, now - 5 * day, 1),
        "b": SessionTime(now - 400 * day, now - 400 * day, 2),  # the clock was behind: raised to a's start
        "c": SessionTime(future, future, 3),  # the clock was ahead: aged from d, written after it
        "d": SessionTime(now - 2 * day, now - 2 * day, 4),
        "e": SessionTime(future, future, 5),  # ahead, and nothing written after it: age unknown
        "f": SessionTime(future, now - 9 * day, None),  # a hand-made name on older files: aged by them
        "g": SessionTime(now - 1 * day, now - 3 * day, None),  # a start later than its files: renamed
    }
    got = session_times(times, now)
    assert [got[k][:2] for k in "abcdefg"] == [
        (now - 5 * day, False), (now - 5 * day, False), (now - 2 * day, True), (now - 2 * day, False),
        (None, True), (now - 9 * day, True), (now - 3 * day, False)]
    assert "clock was behind" in got["b"][2] and "next session written" in got["c"][2]
    assert "lies in the future" in got["e"][2] and "later than its files" in got["g"][2]


def test_sessions_record_their_write_order(tmp_path, runner):
    cfg = with_overrides(Config(), source={"spec": "phantom", "pace": False}, loop={"max_frames": 3},
                         record={"mode": "always", "dir": str(tmp_path)})
    for _ in range(2):
        run_loop(cfg, runner, [Recorder(cfg.record)])
    assert [m["serial"] for m, _, _ in sessions(tmp_path)] == [1, 2]
