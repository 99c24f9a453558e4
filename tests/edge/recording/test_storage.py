"""Disk limits: retention by age and quota, what the quota counts, and sessions split to fit it.

`Storage` alone with a statvfs stand-in and a hand-moved clock; then the recorder in the real loop.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from edge.config import Config, RecordConfig, with_overrides
from edge.pipeline import PipelineObserver
from edge.recording.recorder import Recorder
from edge.recording.session import ANNOTATED_FILE, FULL_FILE, MANIFEST_FILE, list_sessions, session_name
from edge.recording.storage import RESERVE_BYTES, VIDEO_HEADROOM_BYTES, Storage, apply_retention, dir_size
from edge.runner import ModelRunner
from tests.edge.recording.helpers import LUNG_ROI, fake_session, free_space, run_loop, sessions

NOW = datetime(2025, 3, 20, 12, 0, tzinfo=timezone.utc)


# -- retention alone ----------------------------------------------------------------------------------------


def test_retention_deletes_the_oldest_sessions_first(tmp_path):
    names = ["20250301T080000.000Z", "20250310T080000.000Z", "20250315T080000.000Z", "20250319T080000.000Z",
             "20250320T115900.000Z"]
    for n in names:
        fake_session(tmp_path, n, 1000)
    other = fake_session(tmp_path, "not-a-session", 10_000)  # never touched
    # max age 12 days: the 1 March session goes; quota 2500 bytes: then 10 and 15 March go,
    # oldest first, even though the newest ("being written") is kept whatever its size.
    deleted = apply_retention(tmp_path, max_bytes=2500, max_age_s=12 * 86400, now=NOW, keep=[tmp_path / names[-1]])
    assert [d.name for d in deleted] == names[:3]
    assert [s.name for s in list_sessions(tmp_path)] == names[3:] and other.is_dir()
    # the kept session alone over quota: it stays, the other one goes
    deleted = apply_retention(tmp_path, max_bytes=500, max_age_s=1e9, now=NOW, keep=[tmp_path / names[-1]])
    assert [d.name for d in deleted] == [names[3]] and list_sessions(tmp_path) == [tmp_path / names[-1]]


def test_retention_counts_kept_sessions_and_extra_bytes_once(tmp_path):
    old = fake_session(tmp_path, "20250319T080000.000Z", 1000)
    kept = fake_session(tmp_path, "20250320T115900.000Z", 1000)
    # on disk 2000 bytes; extra_bytes comes on top of the kept session's measured size, once
    for extra, gone in ((0, []), (400, []), (500, []), (501, [old.name])):
        assert [d.name for d in apply_retention(tmp_path, max_bytes=2500, max_age_s=1e9, now=NOW, keep=[kept],
                                                extra_bytes=extra)] == gone, extra
    assert kept.is_dir()


def test_retention_forgets_sessions_deleted_by_hand(tmp_path):
    a = fake_session(tmp_path, "20250318T080000.000Z", 1000)
    b = fake_session(tmp_path, "20250319T080000.000Z", 1000)
    sizes: dict[str, int] = {}
    assert apply_retention(tmp_path, 5000, 1e9, now=NOW, sizes=sizes) == []
    assert sizes == {a.name: 1000, b.name: 1000}
    shutil.rmtree(a)  # an engineer frees space by hand
    assert apply_retention(tmp_path, 5000, 1e9, now=NOW, sizes=sizes) == []
    assert sizes == {b.name: 1000}  # what the recorder sums as "other sessions" is what is on disk


# -- Storage with a stand-in disk and clock -----------------------------------------------------------------


def test_storage_checks_room_for_the_frame_and_the_videos_buffers(tmp_path):
    disk = {"free": 0}
    cfg = RecordConfig(mode="always", dir=str(tmp_path), min_free_mb=0.1)
    st = Storage(cfg, statvfs=free_space(disk))
    frame = 40_000
    # one video open: the frame plus one FFmpeg buffer's headroom
    disk["free"] = frame + VIDEO_HEADROOM_BYTES
    st.check_room(frame, videos=1)
    with pytest.raises(OSError) as e:
        st.check_room(frame, videos=2)
    assert e.value.errno == errno.ENOSPC and "needed with the videos' buffers" in str(e.value)
    # below record.min_free_mb: no frame fits, however small
    disk["free"] = 0.09e6
    with pytest.raises(OSError, match="record.min_free_mb = 0.1 MB") as e:
        st.check_room(10, videos=0)
    assert e.value.errno == errno.ENOSPC
    with pytest.raises(OSError, match="min_free_mb"):
        st.check_min_free()
    disk["free"] = 0.1e6
    st.check_min_free()


def test_storage_periodic_passes_follow_its_clock(tmp_path):
    clock = {"t": 100.0}
    cfg = RecordConfig(mode="always", dir=str(tmp_path), max_gb=0.01, max_days=1)  # 10 MB
    st = Storage(cfg, statvfs=free_space({"free": 1e9}), clock=lambda: clock["t"], now=lambda: NOW,
                 retention_every_s=60, free_check_s=1)
    assert st.retention_due()
    old = fake_session(tmp_path, session_name(NOW - timedelta(hours=1)), 6_000_000)
    expired = fake_session(tmp_path, session_name(NOW - timedelta(days=2)), 10)
    st.retention(None)  # the injected "now" decides the age; 6 MB fit the quota
    assert not expired.exists() and old.is_dir() and st.other_bytes == 6_000_000
    assert not st.retention_due()
    clock["t"] += 60
    assert st.retention_due()
    # the free-space check: due once per interval, and a session just opened has had its check
    assert st.free_check_due() and not st.free_check_due()
    clock["t"] += 1
    st.session_opened()
    assert not st.free_check_due()
    clock["t"] += 1
    assert st.free_check_due()
    # a finished session counts without a scan; the quota counts the open one on top
    st.session_closed("20250320T110000.000Z", 3_000_000)
    assert st.other_bytes == 9_000_000 and not st.over_quota(1_000_000) and st.over_quota(1_000_001)
    assert "no older session could be deleted" in str(st.quota_error(1_000_001))
    assert "too small for one session" in str(st.quota_error(10_000_001))
    assert st.quota_error(10_000_001).errno == errno.EDQUOT


# -- the recorder keeps the quota ---------------------------------------------------------------------------


def test_recorder_applies_age_and_quota_at_start_and_while_recording(tmp_path, lung_clips, runner, caplog):
    now = datetime.now(timezone.utc)
    expired = fake_session(tmp_path, session_name(now - timedelta(days=40)), 10)
    older = fake_session(tmp_path, session_name(now - timedelta(days=2)), 4_300_000)
    newer = fake_session(tmp_path, session_name(now - timedelta(days=1)), 4_300_000)
    # Quota 10 MB. At start only the expired session goes: 8.6 MB + the open session's 1 MiB reserve
    # fit. Once the new session holds 0.35 MB (~12 frames of ~30 kB), the older young one goes, the
    # newer one stays.
    cfg = with_overrides(Config(), roi=LUNG_ROI[0], source={"spec": f"file:{lung_clips[0]}", "pace": False},
                         loop={"max_frames": 20},
                         record={"mode": "always", "dir": str(tmp_path), "max_gb": 0.01, "max_days": 30,
                                 "queue_frames": 500})
    rec = Recorder(cfg.record)
    with caplog.at_level(logging.INFO, logger="edge.recording"):
        run_loop(cfg, runner, [rec])
    msgs = [r.getMessage() for r in caplog.records]
    deleted = [m.split()[3] for m in msgs if m.startswith("retention: deleted session")]
    started = next(k for k, m in enumerate(msgs) if m.startswith("recording started"))
    first_delete = next(k for k, m in enumerate(msgs) if m.startswith("retention: deleted session"))
    assert first_delete < started and deleted == [expired.name, older.name], msgs
    assert "older than record.max_days" in msgs[first_delete]
    assert any(m.startswith(f"retention: deleted session {older.name} (over record.max_gb") for m in msgs)
    current = [s for s in list_sessions(tmp_path) if s != newer]
    assert newer.is_dir() and rec.frames_written == 20
    # the recording may have been split at a quarter of the quota; no frame lost
    got = [json.loads((c / MANIFEST_FILE).read_text()) for c in current]
    assert sum(m["frames"] for m in got) == 20
    assert all(m["trigger"]["reason"] == "continued" for m in got[1:])
    assert sum(dir_size(s) for s in list_sessions(tmp_path)) <= 10_000_000


def _probe_size(tmp_path: Path, cfg: Config, runner: ModelRunner) -> int:
    """Bytes of the session ``cfg`` records, measured by recording it once into a folder of its own."""
    probe = with_overrides(cfg, record={"dir": str(tmp_path / "probe"), "max_gb": 10})
    run_loop(probe, runner, [Recorder(probe.record)])
    [s] = list_sessions(tmp_path / "probe")
    return dir_size(s)


def test_the_open_session_is_counted_once(tmp_path, lung_clips, runner):
    cfg = with_overrides(Config(), roi=LUNG_ROI[0], source={"spec": f"file:{lung_clips[0]}", "pace": False},
                         loop={"max_frames": 60}, record={"mode": "always", "queue_frames": 500})
    size = _probe_size(tmp_path, cfg, runner)
    root = tmp_path / "rec"
    # Everything fits: the old session, the new one and its reserve while it is open, with 10% to spare.
    # Counting the open session twice (once measured, once as "extra") would delete the old one.
    old_bytes = max(1_000_000, int(10e6 - size - RESERVE_BYTES - 0.1 * size) + 1000)  # quota >= 10 MB
    old = fake_session(root, session_name(datetime.now(timezone.utc) - timedelta(days=1)), old_bytes)
    quota = old_bytes + size + RESERVE_BYTES + 0.1 * size
    cfg = with_overrides(cfg, record={"dir": str(root), "max_gb": quota / 1e9})
    # the every-minute retention pass after every frame
    rec = Recorder(cfg.record, storage=Storage(cfg.record, retention_every_s=0.0))
    run_loop(cfg, runner, [rec])
    assert old.is_dir(), rec.health()
    assert rec.frames_written == 60 and rec.state == "off"


def test_a_session_deleted_by_hand_frees_the_quota(tmp_path, lung_clips, runner):
    old = fake_session(tmp_path, session_name(datetime.now(timezone.utc) - timedelta(days=1)), 8_500_000)
    cfg = with_overrides(Config(), roi=LUNG_ROI[0], source={"spec": f"file:{lung_clips[0]}", "pace": False},
                         loop={"max_frames": 50},
                         record={"mode": "always", "dir": str(tmp_path), "max_gb": 0.01, "queue_frames": 500})

    class Admin(PipelineObserver):
        def on_frame(self, pipeline, event):
            if event.seq == 5:
                shutil.rmtree(old)  # the recorder knows its size from the start-up pass

    rec = Recorder(cfg.record)
    run_loop(cfg, runner, [Admin(), rec])
    got = sessions(tmp_path)
    # 50 frames (~1.7 MB) in one session (split at a quarter of the 10 MB quota), not one session a
    # frame because the deleted 8.5 MB (with the 1 MiB reserve, all but the quota) were still counted.
    assert len(got) == rec.sessions_started == 1, [m["stop_reason"] for m, _, _ in got]
    assert [x["seq"] for _, lines, _ in got for x in lines] == list(range(50))


def test_the_quota_counts_the_videos(tmp_path, runner):
    # full_frame at 1280x720: full.mp4 is most of what is written. An old session must go once the
    # new one's PNGs, JSONL and videos no longer fit beside it: counting PNGs and JSONL alone would
    # keep it and overrun the quota.
    cfg = with_overrides(Config(), source={"spec": "phantom", "pace": False, "width": 1280, "height": 720},
                         loop={"max_frames": 24},
                         record={"mode": "always", "full_frame": True, "queue_frames": 500})
    probe = with_overrides(cfg, record={"dir": str(tmp_path / "probe")})
    run_loop(probe, runner, [Recorder(probe.record)])
    [ps] = list_sessions(tmp_path / "probe")
    videos = sum(os.stat(ps / f).st_size for f in (ANNOTATED_FILE, FULL_FILE))
    others = dir_size(ps) - videos
    assert videos > 2 * 512 * 1024, (videos, others)  # FFmpeg writes in 256 KiB steps: enough of them to see
    root = tmp_path / "rec"
    # room for the old session, the reserve, the PNGs and JSONL and half the videos: not for all of it
    old_bytes = max(1_000_000, int(10e6 - RESERVE_BYTES - others - videos / 2) + 1000)  # quota >= 10 MB
    old = fake_session(root, session_name(datetime.now(timezone.utc) - timedelta(days=1)), old_bytes)
    quota = old_bytes + RESERVE_BYTES + others + videos / 2
    cfg = with_overrides(cfg, record={"dir": str(root), "max_gb": quota / 1e9, "max_session_s": 1e6})
    rec = Recorder(cfg.record)
    run_loop(cfg, runner, [rec])
    assert not old.exists() and rec.frames_written == 24
    assert sum(dir_size(s) for s in list_sessions(root)) <= quota


def test_a_long_session_is_split_so_the_quota_keeps_most_of_it(tmp_path, lung_clips, runner):
    # Quota 10 MB, 375 frames ~12.5 MB (raw PNGs, masks, annotated mp4): one session that grew to the quota
    # would stop the recording (or be deleted whole as soon as the next began). Split at a quarter of the
    # quota, only the oldest pieces go. The open session also holds the 1 MiB full-disk reserve, so the
    # finished ones may use about quota - reserve - one piece.
    n, quota = 375, 10e6
    cfg = with_overrides(Config(), roi=LUNG_ROI[0], source={"spec": f"file:{lung_clips[0]}", "pace": False},
                         loop={"max_frames": n},
                         record={"mode": "always", "dir": str(tmp_path), "max_gb": quota / 1e9, "queue_frames": 500})
    rec = Recorder(cfg.record)
    run_loop(cfg, runner, [rec])
    got = sessions(tmp_path)
    assert rec.frames_written == n and rec.state == "off" and len(got) >= 3
    recorded = sum(dir_size(s) for s in list_sessions(tmp_path))
    seqs = [x["seq"] for _, lines, _ in got for x in lines]
    assert seqs == list(range(n - len(seqs), n))  # the newest frames, none missing
    assert len(seqs) >= n // 3, (len(seqs), recorded)  # a third of them is still there (~half of the quota)
    for manifest, lines, sdir in got:
        assert manifest["frames"] == len(lines) and dir_size(sdir) <= 0.25 * quota + 300_000
        assert manifest["trigger"]["reason"] in ("always", "continued")
    assert recorded <= quota


def test_a_quota_too_small_for_one_session_stops_recording_with_an_error(tmp_path, lung_clips, runner):
    # 1.2 MB: the open session's 1 MiB reserve and a few frames; nothing older can be deleted to make room.
    # The config refuses max_gb under 0.01 for this reason; a RecordConfig made in code is not checked
    # (model_copy), and the recorder must still stop cleanly rather than overrun it.
    cfg = with_overrides(Config(), roi=LUNG_ROI[0], source={"spec": f"file:{lung_clips[0]}", "pace": False},
                         loop={"max_frames": 30}, record={"mode": "always", "dir": str(tmp_path), "queue_frames": 500})
    rec = Recorder(cfg.record.model_copy(update={"max_gb": 0.0012}))
    run_loop(cfg, runner, [rec])
    assert rec.state == "error" and "too small for one session" in rec.last_error
    [(manifest, lines, _)] = sessions(tmp_path)
    assert 0 < manifest["frames"] == len(lines) < 30 and manifest["stop_reason"].startswith("error: ")
