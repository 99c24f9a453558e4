"""The session format alone: names, private files, image encodings, and a manifest that survives a full disk."""

from __future__ import annotations

import errno
import json
import os
import stat
from datetime import datetime, timezone

import numpy as np
import pytest

from edge.recording.session import (
    MANIFEST_FILE,
    SESSION_FORMAT,
    encode_mask,
    encode_raw,
    frame_line,
    list_sessions,
    load_mask,
    load_raw,
    new_session_path,
    pad_even,
    replace_private,
    session_name,
    session_start,
    video_fps,
    write_private,
)
from tests.edge.recording.helpers import mount_tmpfs, umount


def test_session_names_sort_by_start_and_never_collide(tmp_path):
    start = datetime(2025, 3, 14, 10, 15, 2, 123_456, tzinfo=timezone.utc)
    name = session_name(start)
    assert name == "20250314T101502.123Z"
    assert session_start(name) == start.replace(microsecond=123_000)
    assert session_start(name + "-2") == session_start(name) and session_start("notes") is None
    ns = int(start.timestamp() * 1e9)
    first = new_session_path(tmp_path, ns)
    first.mkdir()
    second = new_session_path(tmp_path, ns)  # same millisecond: a suffix, never the same folder
    second.mkdir()
    (tmp_path / "20250101T000000.000Z.txt").write_text("a file, not a session")
    (tmp_path / "backup").mkdir()
    older = tmp_path / session_name(datetime(2024, 1, 1, tzinfo=timezone.utc))
    older.mkdir()
    assert second.name == name + "-1"
    assert list_sessions(tmp_path) == [older, first, second]
    assert list_sessions(tmp_path / "absent") == []


def test_private_files_are_complete_or_absent(tmp_path):
    p = tmp_path / "a.png"
    assert write_private(p, b"abc") == 3 and p.read_bytes() == b"abc"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_private(p, b"other")  # never written through an existing file
    assert p.read_bytes() == b"abc"

    def full_after_open(path, extra_flags=0):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return os.open("/dev/full", os.O_WRONLY)

    with pytest.raises(OSError) as e:
        write_private(tmp_path / "b.png", b"x" * 10, open_file=full_after_open)
    assert e.value.errno == errno.ENOSPC and not (tmp_path / "b.png").exists()


def test_raw_frames_and_masks_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (37, 51), np.uint8)
    bgr_gray = np.repeat(gray[:, :, None], 3, axis=2)  # B-mode video: three equal channels
    colour = rng.integers(0, 256, (37, 51, 3), np.uint8)
    for img, channels in ((bgr_gray, 1), (colour, 3)):
        png, ch = encode_raw(img)
        assert ch == channels
        write_private(tmp_path / f"{channels}.png", png)
        np.testing.assert_array_equal(load_raw(tmp_path / f"{channels}.png"), img)
    assert load_raw(tmp_path / "1.png", channels=1).shape == (37, 51)
    mask = rng.random((96, 128)).astype(np.float32)
    write_private(tmp_path / "m.png", encode_mask(mask))
    back = load_mask(tmp_path / "m.png")
    assert back.dtype == np.float32 and np.abs(back - mask).max() <= 0.5 / 255 + 1e-6
    np.testing.assert_array_equal(back >= 128 / 255, np.rint(mask * 255) >= 128)
    with pytest.raises(ValueError, match="cannot read"):
        load_raw(tmp_path / "absent.png")


def test_frame_line_names_its_files_and_its_wall_time():
    line = frame_line(7, seq=70, source_seq=71, t_capture_ns=5_000_000, wall_offset_ns=1_700_000_000_000_000_000,
                      p_nerve=0.1234567, nerve=True, state="live", latency_ms=12.34567, stages_ms={"infer": 3.21098},
                      model_id="m@abc", raw_channels=1, has_mask=False, input_crc32=5, pre_roll=True)
    assert line["raw"] == "raw/000007.png" and line["mask"] is None and line["decision"] == "nerve"
    assert line["t_capture"] == "2023-11-14T22:13:20.005Z" and line["p_nerve"] == 0.123457
    assert line["stages_ms"] == {"infer": 3.211} and line["pre_roll"] is True


def test_video_sizes_and_rates_mpeg4_accepts():
    assert pad_even(np.ones((5, 7, 3), np.uint8)).shape == (6, 8, 3)
    assert pad_even(np.ones((5, 7, 3), np.uint8))[5].max() == 0
    even = np.ones((4, 6, 3), np.uint8)
    assert pad_even(even) is even
    assert [video_fps(f) for f in (0.2, 29.97, 548.442)] == [1.0, 30.0, 240.0]


def test_a_manifest_update_that_does_not_fit_keeps_the_old_one(tmp_path):
    mnt = tmp_path / "small"
    why = mount_tmpfs(mnt, "64k")
    if why:
        pytest.skip(why)
    try:
        path = mnt / MANIFEST_FILE
        good = json.dumps({"format": SESSION_FORMAT, "frames": 0}).encode()
        replace_private(path, good)
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)  # the disk fills up
        with pytest.raises(OSError) as e:
            while True:
                os.write(fd, b"x" * 4096)
        os.close(fd)
        assert e.value.errno == errno.ENOSPC
        with pytest.raises(OSError) as e:
            replace_private(path, b"y" * 200_000)  # the bigger final manifest
        assert e.value.errno == errno.ENOSPC
        assert path.read_bytes() == good  # intact, not truncated
        assert sorted(p.name for p in mnt.iterdir()) == ["filler", MANIFEST_FILE]  # no temporary left
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        umount(mnt)
