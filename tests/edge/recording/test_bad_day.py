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
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

from edge.config import Config, RecordConfig, with_overrides
from edge.recording.mp4index import mp4_frame_count
from edge.recording.recorder import Recorder
from edge.recording.session import ANNOTATED_FILE, RESERVE_FILE, load_raw, open_private
from edge.recording.writer import WriterThread
from edge.review import export_session, load_session
from tests.edge.recording.helpers import LUNG_ROI, REPO, run_loop, sessions
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
