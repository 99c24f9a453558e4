"""Recording on a bad day at the bedside: a hang-up, a tiny ROI, a huge source, a full disk, a wrong clock.

Each leaves a closed, reviewable session (or a clear reason why not) and says which setting is at fault.
"""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np

from edge.config import Config, with_overrides
from edge.recording.recorder import Recorder
from edge.recording.session import ANNOTATED_FILE, load_raw
from edge.review import export_session, load_session
from tests.edge.recording.helpers import LUNG_ROI, run_loop, sessions
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
