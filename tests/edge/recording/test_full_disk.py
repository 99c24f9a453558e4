"""A full disk stops recording, never the live loop, and never costs what was already recorded.

Real full disks where the kernel allows a small tmpfs mount; otherwise (and besides) the kernel's own
ENOSPC from /dev/full through the recorder's ``open_file``, and a statvfs stand-in through `Storage`.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path

import pytest

from edge.config import Config, with_overrides
from edge.pipeline import PipelineObserver
from edge.recording.recorder import Recorder
from edge.recording.session import ANNOTATED_FILE, FULL_FILE, RESERVE_FILE, list_sessions, load_raw, open_private
from edge.recording.storage import Storage
from edge.runner import ModelRunner
from tests.edge.recording.helpers import LUNG_ROI, Spy, fps_run, free_space, mount_tmpfs, run_loop, sessions, umount
from tests.media import count_video_frames


def _check_disk_full_run(cfg_on: Config, cfg_off: Config, runner: ModelRunner, caplog, **recorder_kw) -> Recorder:
    fps_off, _ = fps_run(cfg_off, runner, [])
    rec = Recorder(cfg_on.record, **recorder_kw)
    spy = Spy()
    with caplog.at_level(logging.ERROR, logger="edge.recording"):
        fps_on, pipe = fps_run(cfg_on, runner, [spy, rec])
    assert rec.state == "stopped_disk_full", rec.health()
    assert "RECORDING STOPPED: DISK FULL" in spy.notices  # visible on the monitor
    assert any("disk full" in r.getMessage() for r in caplog.records)
    # The loop went on at the source's pace: fps within 10% of the run without recording.
    assert len(spy.frames) == cfg_on.loop.max_frames
    assert fps_on >= 0.9 * fps_off, (fps_on, fps_off)
    # What was written is consistent: every JSONL line has its frame, nothing half-written, and the
    # session was closed properly: final manifest, videos finalised (a player opens them), reserve gone.
    [(manifest, lines, sdir)] = sessions(Path(cfg_on.record.dir))
    assert 0 < len(lines) < len(spy.frames)
    assert len(list((sdir / "raw").iterdir())) == len(lines)
    for line in lines:
        assert load_raw(sdir / line["raw"]).shape[:2] == (234, 234)
    assert manifest["frames"] == len(lines) and manifest["stop_reason"] == "disk full"
    assert manifest["stopped_utc"] is not None
    assert manifest["videos_finalised"] == {"annotated": True, "full": None}
    assert count_video_frames(sdir / ANNOTATED_FILE) == manifest["annotated_frames"] == len(lines)
    assert not (sdir / RESERVE_FILE).exists()
    return rec


def test_full_tmpfs_stops_recording_and_the_loop_keeps_its_fps(tmp_path, lung_clips, runner, caplog):
    # 2.5 MB: the session's 1 MiB reserve, the videos' headroom and ~25 frames of ~35 kB.
    mnt = tmp_path / "small"
    why = mount_tmpfs(mnt, "2500k")
    if why:
        pytest.skip(why)
    try:
        base = with_overrides(Config(), roi=LUNG_ROI[0], source={"spec": f"file:{lung_clips[0]}", "fps": 40},
                              loop={"max_frames": 60})
        cfg_on = with_overrides(base, record={"mode": "always", "dir": str(mnt / "rec"), "min_free_mb": 0})
        rec = _check_disk_full_run(cfg_on, base, runner, caplog)
        assert "No space left on device" in (rec.last_error or "")
    finally:
        umount(mnt)


def test_a_disk_filled_by_someone_else_still_finalises_the_session(tmp_path, lung_clips, runner):
    # Another program fills the disk while a session is open: the recorder finds no room for its next
    # frame, and only its reserve is left for FFmpeg's buffered output, the video's index and the
    # final manifest.
    mnt = tmp_path / "small"
    why = mount_tmpfs(mnt, "3m")
    if why:
        pytest.skip(why)
    try:
        cfg = with_overrides(Config(), roi=LUNG_ROI[0], source={"spec": f"file:{lung_clips[0]}", "fps": 40},
                             loop={"max_frames": 40},
                             record={"mode": "always", "dir": str(mnt / "rec"), "min_free_mb": 0})
        rec = Recorder(cfg.record)

        class Filler(PipelineObserver):
            def on_frame(self, pipeline, event):
                if event.seq == 10:
                    t_end = time.monotonic() + 20
                    while rec.frames_written < 5 and time.monotonic() < t_end:  # a session with an mp4 is open
                        time.sleep(0.01)
                    fd = os.open(mnt / "other-program.bin", os.O_WRONLY | os.O_CREAT)
                    with pytest.raises(OSError) as e:
                        while True:
                            os.write(fd, b"\0" * 65536)
                    os.close(fd)
                    assert e.value.errno == errno.ENOSPC

        run_loop(cfg, runner, [Filler(), rec])
        assert rec.state == "stopped_disk_full" and "No space left on device" in rec.last_error
        [(manifest, lines, sdir)] = sessions(mnt / "rec")
        assert manifest["frames"] == len(lines) >= 5 and manifest["stop_reason"] == "disk full"
        assert manifest["videos_finalised"]["annotated"] is True
        assert count_video_frames(sdir / ANNOTATED_FILE) == manifest["annotated_frames"] == len(lines)
    finally:
        umount(mnt)


def test_a_full_disk_never_costs_the_videos(tmp_path, runner):
    # Two videos (full_frame at 1280x720) and ~300 kB PNGs on a 4 MB disk: FFmpeg writes each mp4 in
    # 256 KiB pieces, and one piece that does not fit loses that mp4 for good (no index). The recorder
    # stops while both still fit, so both open, holding every recorded frame.
    mnt = tmp_path / "small"
    why = mount_tmpfs(mnt, "4m")
    if why:
        pytest.skip(why)
    try:
        cfg = with_overrides(Config(), source={"spec": "phantom", "pace": False, "width": 1280, "height": 720},
                             loop={"max_frames": 30},
                             record={"mode": "always", "full_frame": True, "dir": str(mnt / "rec"), "min_free_mb": 0,
                                     "queue_frames": 500})
        rec = Recorder(cfg.record)
        run_loop(cfg, runner, [rec])
        assert rec.state == "stopped_disk_full"
        [(manifest, lines, sdir)] = sessions(mnt / "rec")
        assert manifest["frames"] == len(lines) > 0
        assert manifest["videos_finalised"] == {"annotated": True, "full": True}
        assert count_video_frames(sdir / ANNOTATED_FILE) == manifest["annotated_frames"] == len(lines)
        assert count_video_frames(sdir / FULL_FILE) == manifest["full_frames"] == len(lines)
    finally:
        umount(mnt)


def test_enospc_from_the_kernel_stops_recording_without_a_mount(tmp_path, lung_clips, runner, caplog):
    # Where no filesystem can be mounted: after 8 frames every new file is /dev/full, whose
    # writes the kernel itself fails with ENOSPC.
    calls = {"n": 0}

    def open_file(path: Path, extra_flags: int = 0) -> int:
        calls["n"] += 1
        if calls["n"] > 3 + 2 * 8:  # reserve, jsonl, annotated.mp4, then (raw, mask) per frame
            return os.open("/dev/full", os.O_WRONLY)
        return open_private(path, extra_flags)

    base = with_overrides(Config(), roi=LUNG_ROI[0], source={"spec": f"file:{lung_clips[0]}", "fps": 40},
                          loop={"max_frames": 60})
    cfg_on = with_overrides(base, record={"mode": "always", "dir": str(tmp_path / "rec"), "min_free_mb": 0})
    rec = _check_disk_full_run(cfg_on, base, runner, caplog, open_file=open_file)
    assert str(errno.ENOSPC) in rec.last_error or "No space" in rec.last_error
    assert rec.frames_written == 8


def test_min_free_space_stops_recording(tmp_path, lung_clips, runner):
    cfg = with_overrides(Config(), roi=LUNG_ROI[1], source={"spec": f"file:{lung_clips[1]}", "pace": False},
                         loop={"max_frames": 5},
                         record={"mode": "always", "dir": str(tmp_path), "min_free_mb": 1e12})
    rec = Recorder(cfg.record)
    spy = Spy()
    run_loop(cfg, runner, [spy, rec])
    assert rec.state == "stopped_disk_full" and "min_free_mb" in rec.last_error
    assert list_sessions(tmp_path) == [] and "RECORDING STOPPED: DISK FULL" in spy.notices


def test_free_space_falling_below_the_minimum_mid_session_stops_it(tmp_path, lung_clips, runner):
    # The disk is shared: free space falls under record.min_free_mb while a session is open. The frame
    # check or the once-a-second check (its clock runs fast here) stops the session cleanly.
    cfg = with_overrides(Config(), roi=LUNG_ROI[1], source={"spec": f"file:{lung_clips[1]}", "fps": 60},
                         loop={"max_frames": 40},
                         record={"mode": "always", "dir": str(tmp_path), "min_free_mb": 100, "queue_frames": 500})
    disk = {"free": 10e9}
    rec = Recorder(cfg.record, storage=Storage(cfg.record, statvfs=free_space(disk), free_check_s=0.0))

    class Other(PipelineObserver):
        def on_frame(self, pipeline, event):
            if event.seq == 15:
                t_end = time.monotonic() + 10
                while rec.frames_written < 10 and time.monotonic() < t_end:
                    time.sleep(0.01)
                disk["free"] = 99e6

    spy = Spy()
    run_loop(cfg, runner, [spy, Other(), rec])
    assert rec.state == "stopped_disk_full" and "min_free_mb = 100 MB" in rec.last_error
    [(manifest, lines, _)] = sessions(tmp_path)
    assert 10 <= manifest["frames"] == len(lines) < 40 and manifest["stop_reason"] == "disk full"
    assert "RECORDING STOPPED: DISK FULL" in spy.notices
