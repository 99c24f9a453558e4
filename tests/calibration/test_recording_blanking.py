"""A site profile's blanking regions reach what the recorder writes: `nerveseg run` end to end.

Real ultrasound frames in a synthetic 720p machine screen, with a patient line and a
logo burned into the image itself (inside the ROI) and the patient name in the UI bar.
`calibrate` makes the profile from those frames; `nerveseg run` records them with
``record.mode: always`` and ``record.full_frame: true``. Every recorded raw frame (the
ROI crop, lossless) must be zero exactly in the blanking regions and the frame as
captured elsewhere; ``full.mp4`` (lossy) must be black there.
"""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest
import yaml

from calibration.calibrate import calibrate
from edge.cli import EXIT_OK, main
from edge.config import SourceConfig
from edge.profile import blank_in_roi
from edge.recording.session import load_raw
from tests.calibration.synth import layouts, render_sequence
from tests.calibration.test_cli import read_video

FULL_BLACK_MAX = 40  # gray levels: mp4v ringing at a region's edge; the content was up to 255
FULL_BLACK_MEAN = 4


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, scans):
    """(layout, source frames, profile, session folder) of one calibrated and recorded run."""
    tmp = tmp_path_factory.mktemp("rec")
    lay = dataclasses.replace(layouts()[2], image_text=(0, 255, 0))  # 720p, logo + green name over the image
    frames = render_sequence(lay, scans["kaggle"])
    folder = tmp / "screen"
    folder.mkdir()
    for i, f in enumerate(frames):
        assert cv2.imwrite(str(folder / f"{i:03d}.png"), f)
    res = calibrate(SourceConfig(spec=f"images:{folder}"), tmp / "site.yaml", frames=len(frames))
    cfg = tmp / "run.yaml"
    cfg.write_text(yaml.safe_dump({
        # `nerveseg run` is the live path: a frame that arrives while the last is still in work is dropped
        # (by design), so the source is paced slowly and the tests below count what was recorded, not the input.
        "source": {"spec": f"images:{folder}", "pace": True, "fps": 10},
        "profile": str(res.profile_path),
        "record": {"mode": "always", "full_frame": True, "dir": str(tmp / "recordings"), "pre_roll_s": 0.0},
    }))
    assert main(["run", "--config", str(cfg), "--frames", str(len(frames)), "--log-level", "WARNING"]) == EXIT_OK
    sessions = sorted(p for p in (tmp / "recordings").iterdir() if p.is_dir())
    assert len(sessions) == 1
    return lay, frames, res.profile, sessions[0]


def _inside(rects, shape) -> np.ndarray:
    m = np.zeros(shape, bool)
    for x0, y0, x1, y1 in rects:
        m[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    return m


def test_the_profile_blanks_the_marks_inside_the_roi(recorded):
    lay, _, profile, _ = recorded
    roi = profile.image_roi
    w, h = lay.size
    full = _inside([(b.x, b.y, b.x + b.w, b.y + b.h) for b in profile.blank_rois], (h, w))
    ink = lay.ink_mask > 128
    assert full[ink].all()
    in_roi = np.zeros((h, w), bool)
    in_roi[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w] = True
    assert np.count_nonzero(ink & in_roi) > 300  # the logo and the name over the image are inside the ROI


def test_recorded_raw_frames_are_zero_in_the_blanking_regions_and_as_captured_elsewhere(recorded):
    lay, frames, profile, session = recorded
    roi = profile.image_roi
    lines = [json.loads(line) for line in (session / "frames.jsonl").read_text().splitlines()]
    assert len(lines) >= len(frames) // 2  # live drops may skip a few under load, never most of them
    hidden = _inside(blank_in_roi(profile.blank_rois, roi), (roi.h, roi.w))
    ink = (lay.ink_mask > 128)[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w]
    crops = [f[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w] for f in frames]
    assert min(int(c[ink].max()) for c in crops) > 100  # the burned-in marks were bright on the way in
    for line in lines:
        # The source is BGR; the recorder stores a 1-channel PNG when blanking left the three channels equal.
        raw = load_raw(session / line["raw"], 3)
        assert raw.shape[:2] == (roi.h, roi.w)
        assert not raw[hidden].any(), f"{line['raw']}: blanked pixels not zero"
        # Elsewhere it is exactly one of the captured frames (PNG is lossless).
        assert any(np.array_equal(raw[~hidden], c[~hidden]) for c in crops), f"{line['raw']}: not a captured frame"


def test_full_frame_video_is_black_in_the_blanking_regions(recorded):
    lay, frames, profile, session = recorded
    video = read_video(session / "full.mp4")
    recorded_frames = (session / "frames.jsonl").read_text().splitlines()
    assert len(video) == len(recorded_frames) >= len(frames) // 2  # one video frame per recorded frame
    w, h = lay.size
    # Inside the regions, away from their edge (where the codec's blocks ring against the frame beside it).
    hidden = _inside([(b.x, b.y, b.x + b.w, b.y + b.h) for b in profile.blank_rois], (h, w))
    hidden = cv2.erode(hidden.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    p = lay.patient
    assert hidden[p.y + p.h // 2, p.x : p.x + p.w].mean() > 0.5  # the name in the bar is checked, not skipped
    for i, bgr in enumerate(video):
        gray = cv2.cvtColor(bgr[:h, :w], cv2.COLOR_BGR2GRAY)
        assert int(gray[hidden].max()) <= FULL_BLACK_MAX and float(gray[hidden].mean()) <= FULL_BLACK_MEAN, i
    # Every pixel of the name and the marks over the image, compared with the frames as captured.
    ink = lay.ink_mask > 128
    captured = np.mean([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)[ink].mean() for f in frames])
    shown = np.mean([cv2.cvtColor(v[:h, :w], cv2.COLOR_BGR2GRAY)[ink].mean() for v in video])
    assert captured > 60 and shown < 8, (captured, shown)
