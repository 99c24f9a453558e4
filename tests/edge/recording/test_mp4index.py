"""Frames of a finalised MP4 read from its index; None for a file a crash or a full disk left unfinished."""

from __future__ import annotations

import cv2
import numpy as np

from edge.recording.mp4index import mp4_frame_count
from tests.media import count_video_frames


def test_mp4_frame_count_reads_the_index_of_finalised_files_only(tmp_path):
    path = tmp_path / "v.mp4"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 48))
    rng = np.random.default_rng(0)
    for k in range(40):
        w.write(rng.integers(0, 255, (48, 64, 3), np.uint8))
        if k == 30:
            cut = path.read_bytes()  # what a crash leaves: FFmpeg's data, no index yet
    w.release()
    assert mp4_frame_count(path) == count_video_frames(path) == 40
    (tmp_path / "cut.mp4").write_bytes(cut)
    assert mp4_frame_count(tmp_path / "cut.mp4") is None
    (tmp_path / "short.mp4").write_bytes(path.read_bytes()[:-100])  # index cut short
    assert mp4_frame_count(tmp_path / "short.mp4") is None
    assert mp4_frame_count(tmp_path / "none.mp4") is None
