"""ROI detection and blanking on real ultrasound frames pasted into synthetic machine screens."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibration.detect import (
    CalibrationError,
    FrameStats,
    cover_with_rects,
    detect_roi,
    detection_for_roi,
    find_blank_regions,
)
from edge.config import SourceConfig
from edge.sources.phantom import PhantomSource
from edge.types import Roi
from tests.calibration.synth import Layout, layouts, render_sequence

TOLERANCE = 0.02  # each side within 2% of the frame dimension


def _stats(frames: list[np.ndarray]) -> FrameStats:
    st = FrameStats()
    for f in frames:
        st.add(f if f.ndim == 2 else cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))
    return st


def side_errors(found: Roi, truth: Roi, size: tuple[int, int]) -> list[float]:
    """|error| of left, top, right, bottom as a fraction of the frame's width (x) or height (y)."""
    w, h = size
    return [
        abs(found.x - truth.x) / w,
        abs(found.y - truth.y) / h,
        abs(found.x + found.w - truth.x - truth.w) / w,
        abs(found.y + found.h - truth.y - truth.h) / h,
    ]


def _covered(rects: list[Roi], shape: tuple[int, int]) -> np.ndarray:
    m = np.zeros(shape, bool)
    for r in rects:
        m[r.y : r.y + r.h, r.x : r.x + r.w] = True
    return m


@pytest.mark.parametrize("scan", ["lung-a", "lung-b", "kaggle"])
@pytest.mark.parametrize("layout", layouts(), ids=lambda lay: lay.name)
def test_roi_found_within_2_percent_and_ui_blanked(layout: Layout, scan: str, scans):
    frames = render_sequence(layout, scans[scan])
    det = detect_roi(_stats(frames))
    truth = layout.truth
    errors = side_errors(det.roi, truth, layout.size)
    assert max(errors) <= TOLERANCE, f"found {det.roi}, truth {truth}: side errors {np.round(errors, 4)}"

    rects = find_blank_regions(det)
    w, h = layout.size
    covered = _covered(rects, (h, w))
    ink = layout.ink_mask > 128
    # Every drawn text/graphics pixel (patient name, settings, logo, depth scale, labels in and around the
    # image) is blanked ...
    assert covered[ink].all(), f"{np.count_nonzero(ink & ~covered)} drawn pixels not blanked"
    assert covered[layout.patient.y : layout.patient.y + layout.patient.h,
                   layout.patient.x : layout.patient.x + layout.patient.w].mean() > 0.95
    # ... and little of the image itself: at most 5% of the pasted content away from drawn marks.
    r = layout.image
    content = np.zeros((h, w), bool)
    content[r.y : r.y + r.h, r.x : r.x + r.w] = layout.fan_mask() > 0
    content &= ~(cv2.dilate(layout.ink_mask, np.ones((9, 9), np.uint8)) > 0)
    assert covered[content].mean() < 0.05
    for rect in rects:
        assert rect.clip_to(w, h)


def test_changing_ui_elements_are_blanked_not_taken_for_the_image(scans):
    layout = layouts()[0]  # clock, blinking dot and a frame-rate readout that changes every 5 frames
    frames = render_sequence(layout, scans["kaggle"])
    det = detect_roi(_stats(frames))
    covered = _covered(find_blank_regions(det), (layout.size[1], layout.size[0]))
    fw, fh = layout.size
    bar_h = max(24, round(0.055 * fh))
    assert covered[round(0.5 * bar_h), round(0.84 * fw)]  # the blinking dot
    assert covered[round(0.5 * bar_h), round(0.9 * fw)]  # the clock's digits


def test_phantom_video_out_frame_roi_is_its_image_area():
    for size in ((1920, 1080), (1024, 768)):
        ph = PhantomSource(SourceConfig(spec="phantom", width=size[0], height=size[1], pace=False))
        det = detect_roi(_stats([ph.render(2 * i) for i in range(12)]))
        assert max(side_errors(det.roi, ph.image_roi, size)) <= TOLERANCE, (det.roi, ph.image_roi)


def test_bare_image_filling_the_frame(scans):
    frames = [cv2.resize(s, (640, 480)) for s in scans["lung-a"]]
    det = detect_roi(_stats(frames))
    assert max(side_errors(det.roi, Roi(0, 0, 640, 480), (640, 480))) <= TOLERANCE


def test_identical_frames_are_refused(scans):
    frame = render_sequence(layouts()[2], scans["kaggle"][:1])[0]
    with pytest.raises(CalibrationError, match="identical"):
        detect_roi(_stats([frame] * 10))


@pytest.mark.parametrize("level", [0, 16, 128])
def test_blank_frames_are_refused(level):
    with pytest.raises(CalibrationError, match="blank input"):
        detect_roi(_stats([np.full((720, 1280), level, np.uint8)] * 8))


def test_noise_only_frames_are_refused():
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (768, 1024), dtype=np.uint8) for _ in range(8)]
    with pytest.raises(CalibrationError, match="random noise"):
        detect_roi(_stats(frames))


def test_noise_inside_a_machine_screen_is_refused():
    """A screen whose image area shows snow (scaled-up noise correlates, so the check works at a fixed scale)."""
    rng = np.random.default_rng(2)
    noise = [rng.integers(0, 256, (420, 580), dtype=np.uint8) for _ in range(8)]
    for lay in (layouts()[0], layouts()[4]):  # 1.9x scaled up; 1024x768 with JPEG
        with pytest.raises(CalibrationError, match="random noise"):
            detect_roi(_stats(render_sequence(lay, noise)))


def test_only_small_ui_elements_changing_is_no_region(scans):
    frames = render_sequence(layouts()[0], [scans["kaggle"][0]] * 10)  # frozen image, ticking clock
    with pytest.raises(CalibrationError, match="no image region found.*small UI elements"):
        detect_roi(_stats(frames))


def test_too_few_frames_and_size_change_are_refused(scans):
    frames = render_sequence(layouts()[2], scans["kaggle"][:3])
    with pytest.raises(CalibrationError, match="at least 4"):
        detect_roi(_stats(frames))
    st = _stats(frames)
    with pytest.raises(CalibrationError, match="resolution changed"):
        st.add(np.zeros((768, 1024), np.uint8))


def test_given_roi_outside_the_frame_is_refused(scans):
    st = _stats(render_sequence(layouts()[2], scans["kaggle"][:6]))
    with pytest.raises(CalibrationError, match="outside the 1280x720 frame"):
        detection_for_roi(st, Roi(1000, 100, 400, 300))
    det = detection_for_roi(st, Roi(250, 70, 760, 560))
    assert det.roi == Roi(250, 70, 760, 560)


def test_cover_with_rects_never_fills_an_outline():
    mask = np.zeros((300, 400), np.uint8)
    cv2.rectangle(mask, (50, 40), (350, 260), 255, 1)  # a thin frame around an image
    rects = cover_with_rects(mask, 10)
    covered = _covered(rects, mask.shape)
    assert covered[mask > 0].all()
    assert covered.mean() < 0.25  # the inside stays free
    assert not covered[150, 200]
