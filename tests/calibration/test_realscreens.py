"""The real-screen targets, on real-looking screens (`tests.calibration.realscreens`).

Real ultrasound frames under a dense machine UI, MJPG-compressed, most with the probe
held still, so bright tissue stands as still as the text: every ROI edge within 2% of
the side, at most 3% of the image's tissue blanked, every legible mark over the image
and every UI text blanked, and a still probe warned about (log, result, profile and
``nerveseg calibrate``'s output) while a moving one is not.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from calibration.calibrate import calibrate
from calibration.detect import PAIR_LAG, FrameStats, detect_roi
from edge.cli import EXIT_OK, main
from edge.config import SourceConfig
from edge.profile import apply_blank, blank_in_roi, load_profile
from tests.calibration.realscreens import Measure, Rendered, Screen, measure, render, screens
from tests.calibration.test_cli import write_video

ROI_TOLERANCE = 2.0  # % of the true box's width (left, right) or height (top, bottom)
MAX_TISSUE_BLANKED = 3.0  # % of the true image's area (less the marks drawn over it)
MAX_UI_MISSED = 1.0  # % of the UI's drawn pixels (thin scale lines beside the image may ring too much to tell)

SCREENS = screens()
STILL = next(s for s in SCREENS if s.name == "800x600-still-rus2724")  # as reported: 800x600, still, MJPG
MOVING = next(s for s in SCREENS if s.name == "800x600-moving-lung")


@pytest.fixture(scope="module")
def measured(data_dir) -> dict[str, tuple[Screen, Rendered, Measure]]:
    """Every screen rendered and measured once (detection and blanking as `nerveseg calibrate` runs them)."""
    out = {}
    for s in SCREENS:
        r = render(s, data_dir)
        out[s.name] = (s, r, measure(s.name, r))
    return out


@pytest.mark.parametrize("name", [s.name for s in SCREENS])
def test_roi_edges_within_2_percent(name, measured):
    _, r, m = measured[name]
    assert max(m.roi_errors) <= ROI_TOLERANCE, f"found {m.roi}, truth {r.image}: edges off {m.roi_errors} %"


@pytest.mark.parametrize("name", [s.name for s in SCREENS])
def test_still_tissue_inside_the_image_is_not_blanked(name, measured):
    _, _, m = measured[name]
    assert m.tissue_blanked <= MAX_TISSUE_BLANKED, f"{m.tissue_blanked:.2f}% of the image's tissue blanked"


@pytest.mark.parametrize("name", [s.name for s in SCREENS])
def test_marks_over_the_image_and_ui_text_are_blanked(name, measured):
    _, r, m = measured[name]
    assert np.count_nonzero(r.marks > 128) > 100  # text, a focus marker and an orientation mark over the image
    assert m.marks_missed == 0, f"{m.marks_missed:.2f}% of the marks over the image not blanked"
    assert m.private_missed == 0, f"{m.private_missed:.2f}% of the patient's name not blanked"
    assert m.ink_missed <= MAX_UI_MISSED, f"{m.ink_missed:.2f}% of the UI's text and graphics not blanked"


@pytest.mark.parametrize("name", [s.name for s in SCREENS])
def test_a_still_probe_is_warned_about_a_moving_one_is_not(name, measured):
    s, _, m = measured[name]
    if s.motion == "moving":
        assert m.still is None
    else:
        assert m.still is not None and "the probe stood still during calibration" in m.still


def test_the_warning_says_how_long_and_is_logged(measured, caplog):
    _, r, _ = measured[STILL.name]
    st = FrameStats()
    for f in r.frames:
        st.add(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), f)
    with caplog.at_level(logging.WARNING, logger="calibration.detect"):
        det = detect_roi(st)
    assert det.still is not None and det.still.pairs == len(r.frames) - PAIR_LAG
    assert det.still.still_pairs == det.still.pairs and det.still.moved < 0.1
    assert [rec.getMessage() for rec in caplog.records] == [det.still_probe]
    assert f"no movement in {det.still.pairs} of {det.still.pairs} frame pairs" in det.still_probe


@pytest.fixture(scope="module")
def still_video(measured, tmp_path_factory):
    """The reported case as the dongle delivers it: an MJPG AVI of the still 800x600 screen; (video, rendered)."""
    _, r, _ = measured[STILL.name]
    return write_video(tmp_path_factory.mktemp("still") / "still.avi", r.frames), r


def test_calibrate_on_a_still_probe_warns_and_keeps_the_tissue(still_video, tmp_path, capsys):
    video, r = still_video
    out = tmp_path / "site.yaml"
    assert main(["calibrate", "--source", str(video), "--out", str(out)]) == EXIT_OK
    captured = capsys.readouterr()
    assert "  WARNING     : the probe stood still during calibration" in captured.out
    assert "the probe stood still" in captured.err  # the log
    profile = load_profile(out)
    roi = profile.image_roi
    t = r.image
    assert max(abs(roi.x - t.x) / t.w, abs(roi.y - t.y) / t.h, abs(roi.x + roi.w - t.x - t.w) / t.w,
               abs(roi.y + roi.h - t.y - t.h) / t.h) <= ROI_TOLERANCE / 100
    # What the recordings and the int8 calibration frames hide inside the image: the marks, not the tissue.
    h, w = r.ink.shape
    crop = np.ones((roi.h, roi.w), np.uint8)
    apply_blank(crop, blank_in_roi(profile.blank_rois, roi))  # as the recorder and the int8 frames do
    hidden = crop == 0
    tissue = np.zeros((h, w), bool)
    tissue[t.y : t.y + t.h, t.x : t.x + t.w] = True
    tissue &= ~(cv2.dilate(r.marks, np.ones((9, 9), np.uint8)) > 0)
    tissue_in_roi = tissue[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w]
    assert 100 * hidden[tissue_in_roi].mean() <= MAX_TISSUE_BLANKED
    assert hidden[(r.marks > 128)[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w]].all()


def test_calibrate_result_and_profile_carry_the_warning(measured, data_dir, tmp_path):
    _, r, _ = measured[STILL.name]
    folder = tmp_path / "screen"
    folder.mkdir()
    for i, f in enumerate(r.frames[:30]):
        assert cv2.imwrite(str(folder / f"{i:03d}.png"), f)
    res = calibrate(SourceConfig(spec=f"images:{folder}"), tmp_path / "site.yaml", frames=30)
    assert res.still_probe is not None and "stood still" in res.still_probe
    assert res.profile.detection.warnings == [res.still_probe]
    assert load_profile(tmp_path / "site.yaml").detection.warnings == [res.still_probe]  # the file's reader sees it


def test_calibrate_on_a_moving_probe_prints_no_warning(measured, tmp_path, capsys):
    _, r, _ = measured[MOVING.name]
    video = write_video(tmp_path / "moving.avi", r.frames)
    assert main(["calibrate", "--source", str(video), "--out", str(tmp_path / "site.yaml")]) == EXIT_OK
    captured = capsys.readouterr()
    assert "WARNING" not in captured.out and "stood still" not in captured.err
