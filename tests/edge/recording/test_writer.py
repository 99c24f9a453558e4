"""The writer's bounded queue: a slow disk costs recorded frames (counted, booked to the right session),
never the live loop's pace; a stop with a long backlog still closes the session.

The slow disk is the recorder's ``open_file`` sleeping before each PNG, as an SD card in trouble does.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

from edge.config import Config, with_overrides
from edge.recording.recorder import Recorder
from edge.recording.session import ANNOTATED_FILE, open_private
from edge.recording.writer import WriterThread
from tests.edge.recording.helpers import LUNG_ROI, fps_run, run_loop, sessions
from tests.media import count_video_frames


def _slow_pngs(seconds: float):
    def open_file(path: Path, extra_flags: int = 0) -> int:
        if path.suffix == ".png":
            time.sleep(seconds)
        return open_private(path, extra_flags)

    return open_file


def test_writer_thread_counts_drops_and_stamps_them_on_the_next_frame():
    gate = threading.Event()
    handled, discarded, finished, errors = [], [], [], []

    def handle(item):
        gate.wait(5)  # the disk is stuck until the test opens the gate
        if item.n == 7:
            raise OSError("broken")
        handled.append((item.n, item.drops))

    w = WriterThread(2, handle, on_error=errors.append, discard=discarded.append, finish=finished.append,
                     poll_s=0.01)
    w.start()
    items = [SimpleNamespace(n=k, drops=None) for k in range(6)]
    assert w.offer(items[0])
    time.sleep(0.1)  # the thread took item 0 and waits in handle: the queue holds 2 more
    assert [w.offer(it) for it in items[1:]] == [True, True, False, False, False]
    assert w.dropped == 3
    assert w.offer(SimpleNamespace(n=99), frame=False) is False and w.dropped == 3  # not a frame: not counted
    gate.set()
    time.sleep(0.1)
    assert w.offer(items[5]) and w.offer(SimpleNamespace(n=7, drops=None))
    w.stop()
    assert w.join(5) and not w.is_alive()
    # 3 and 4 were dropped: item 5 carries them (the frames lost just before it)
    assert handled == [(0, 0), (1, 0), (2, 0), (5, 3)]
    assert [str(e) for e in errors] == ["broken"] and discarded == [] and finished == [0]


def test_writer_thread_abort_discards_the_backlog():
    gate = threading.Event()
    discarded, finished = [], []
    w = WriterThread(10, lambda item: gate.wait(5), on_error=print, discard=discarded.append,
                     finish=finished.append, poll_s=0.01)
    w.start()
    for k in range(5):
        w.offer(SimpleNamespace(n=k, drops=0))
    time.sleep(0.1)
    w.stop()
    assert not w.join(0.1)  # stuck on item 0
    w.abort()
    assert w.aborting
    gate.set()
    assert w.join(5)
    assert [it.n for it in discarded] == [1, 2, 3, 4] and finished == [0]


def test_slow_disk_drops_frames_and_the_overlay_never_waits(tmp_path, lung_clips, runner):
    base = with_overrides(Config(), roi=LUNG_ROI[0], source={"spec": f"file:{lung_clips[0]}", "fps": 60},
                          loop={"max_frames": 90})
    fps_off, _ = fps_run(base, runner, [])
    cfg = with_overrides(base, record={"mode": "always", "dir": str(tmp_path), "queue_frames": 8})
    rec = Recorder(cfg.record, open_file=_slow_pngs(0.03))  # ~15 frames/s at two PNGs a frame
    fps_on, _ = fps_run(cfg, runner, [rec])
    h = rec.health()
    assert h["frames_dropped"] > 20 and h["frames_written"] + h["frames_dropped"] == 90
    assert fps_on >= 0.9 * fps_off, (fps_on, fps_off)
    assert h["offer_ms_mean"] < 0.5
    [(manifest, lines, _)] = sessions(tmp_path)
    assert manifest["frames"] == len(lines) == h["frames_written"]
    assert manifest["frames_dropped"] == h["frames_dropped"]
    seqs = [x["seq"] for x in lines]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_stop_with_a_long_backlog_drops_it_and_closes_the_session(tmp_path, lung_clips, runner):
    cfg = with_overrides(Config(), roi=LUNG_ROI[0], source={"spec": f"file:{lung_clips[0]}", "pace": False},
                         loop={"max_frames": 60}, record={"mode": "always", "dir": str(tmp_path), "queue_frames": 64})
    # ~10 frames/s; a 0.5 s stop timeout stands in for a backlog longer than the real 10 s
    rec = Recorder(cfg.record, open_file=_slow_pngs(0.05), close_timeout_s=0.5)
    t0 = time.monotonic()
    run_loop(cfg, runner, [rec])
    assert not rec._writer.is_alive() and time.monotonic() - t0 < 30
    h = rec.health()
    [(manifest, lines, sdir)] = sessions(tmp_path)
    assert manifest["stopped_utc"] is not None and "dropped" in manifest["stop_reason"]
    assert 0 < manifest["frames"] == len(lines) == h["frames_written"] < 60
    assert manifest["frames"] + manifest["frames_dropped"] == 60 == h["frames_written"] + h["frames_dropped"]
    assert manifest["videos_finalised"]["annotated"] is True
    assert count_video_frames(sdir / ANNOTATED_FILE) == manifest["annotated_frames"] == len(lines)
    assert [x["seq"] for x in lines] == list(range(len(lines)))  # the backlog's tail went, not random frames


def test_drops_count_in_the_session_that_lost_them(tmp_path, lung_clips, runner):
    cfg = with_overrides(Config(), roi=LUNG_ROI[0], source={"spec": f"file:{lung_clips[0]}", "pace": False},
                         loop={"max_frames": 120},
                         record={"mode": "always", "dir": str(tmp_path), "queue_frames": 4, "max_session_s": 0.15})
    rec = Recorder(cfg.record, open_file=_slow_pngs(0.02))
    run_loop(cfg, runner, [rec])
    got = sessions(tmp_path)
    h = rec.health()
    assert len(got) >= 2 and h["frames_dropped"] > 10
    prev_last = -1
    for k, (manifest, lines, _) in enumerate(got):
        seqs = [x["seq"] for x in lines]
        # The loop numbers every frame (seq): what a session misses between its first frame and its
        # last, before its first when it continues the previous one, and, for the session open at
        # the stop, after its last, is what it dropped.
        first = prev_last + 1 if manifest["trigger"]["reason"] == "continued" else seqs[0]
        last = 119 if k == len(got) - 1 else seqs[-1]
        assert manifest["frames_dropped"] == last + 1 - first - len(seqs), manifest["session"]
        prev_last = seqs[-1]
    assert sum(m["frames_dropped"] for m, _, _ in got) == h["frames_dropped"] == 120 - h["frames_written"]
