"""ROI detection and blanking on real ultrasound frames pasted into synthetic machine screens."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from calibration.detect import (
    CalibrationError,
    FrameStats,
    _fit_edges,
    _join_still_bands,
    cover_with_rects,
    detect_roi,
    detection_for_roi,
    find_blank_regions,
)
from edge.config import SourceConfig
from edge.sources.phantom import PhantomSource
from edge.types import Roi
from tests.calibration.synth import FONT, Layout, layouts, render_sequence

TOLERANCE = 0.02  # each side within 2% of the true box's width (left, right) or height (top, bottom)
MAX_CONTENT_BLANKED = 0.035  # share of the pasted image content (away from drawn marks) inside blanking regions


def _stats(frames: list[np.ndarray]) -> FrameStats:
    """Statistics as `nerveseg calibrate` gathers them: gray, plus the colour frame it came from."""
    st = FrameStats()
    for f in frames:
        if f.ndim == 2:
            st.add(f)
        else:
            st.add(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), f)
    return st


def _gray_stats(frames: list[np.ndarray]) -> FrameStats:
    """Statistics of gray frames only (no colour to go by: a gray capture, or a B-mode-only dongle)."""
    st = FrameStats()
    for f in frames:
        st.add(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))
    return st


def side_errors(found: Roi, truth: Roi) -> list[float]:
    """|error| of left, top, right, bottom as a fraction of the true box's width (x) or height (y)."""
    return [
        abs(found.x - truth.x) / truth.w,
        abs(found.y - truth.y) / truth.h,
        abs(found.x + found.w - truth.x - truth.w) / truth.w,
        abs(found.y + found.h - truth.y - truth.h) / truth.h,
    ]


def test_side_errors_are_relative_to_the_true_box():
    # 10 px off on the left of a 500 px wide box is 2% of the box (0.5% of a 1920 px frame).
    assert side_errors(Roi(110, 50, 490, 400), Roi(100, 50, 500, 400)) == [0.02, 0.0, 0.0, 0.0]
    assert side_errors(Roi(100, 50, 500, 396), Roi(100, 50, 500, 400)) == [0.0, 0.0, 0.0, 0.01]


def _covered(rects: list[Roi], shape: tuple[int, int]) -> np.ndarray:
    m = np.zeros(shape, bool)
    for r in rects:
        m[r.y : r.y + r.h, r.x : r.x + r.w] = True
    return m


def _content(layout: Layout) -> np.ndarray:
    """The pasted image content away from the marks drawn over it (bool, frame size)."""
    w, h = layout.size
    r = layout.image
    content = np.zeros((h, w), bool)
    content[r.y : r.y + r.h, r.x : r.x + r.w] = layout.fan_mask() > 0
    return content & ~(cv2.dilate(layout.ink_mask, np.ones((9, 9), np.uint8)) > 0)


@pytest.mark.parametrize("scan", ["lung-a", "lung-b", "kaggle"])
@pytest.mark.parametrize("layout", layouts(), ids=lambda lay: lay.name)
def test_roi_found_within_2_percent_and_ui_blanked(layout: Layout, scan: str, scans):
    frames = render_sequence(layout, scans[scan])
    det = detect_roi(_stats(frames))
    truth = layout.truth
    errors = side_errors(det.roi, truth)
    assert max(errors) <= TOLERANCE, f"found {det.roi}, truth {truth}: side errors {np.round(errors, 4)}"

    rects = find_blank_regions(det)
    w, h = layout.size
    covered = _covered(rects, (h, w))
    ink = layout.ink_mask > 128
    # Every drawn text/graphics pixel (patient name, settings, logo, depth scale, labels in and around the
    # image, text burned into the image) is blanked ...
    assert covered[ink].all(), f"{np.count_nonzero(ink & ~covered)} drawn pixels not blanked"
    assert covered[layout.patient.y : layout.patient.y + layout.patient.h,
                   layout.patient.x : layout.patient.x + layout.patient.w].mean() > 0.95
    # ... and little of the image itself.
    blanked = covered[_content(layout)].mean()
    assert blanked <= MAX_CONTENT_BLANKED, f"{100 * blanked:.2f}% of the image content blanked"
    for rect in rects:
        assert rect.clip_to(w, h)


@pytest.mark.parametrize("quality", [70, 90])
@pytest.mark.parametrize("scan", ["lung-a", "lung-b", "kaggle"])
def test_white_logo_over_the_image_is_blanked_under_mjpg(quality: int, scan: str, scans):
    """JPEG ringing of the live image makes a burned-in logo flicker: it is still blanked, from gray alone."""
    layout = dataclasses.replace(layouts()[2], jpeg_quality=quality)  # 720p, "L12" over the image's corner
    frames = render_sequence(layout, scans[scan])
    rects = find_blank_regions(detect_roi(_gray_stats(frames)))
    w, h = layout.size
    logo = layout.ink[-1]
    covered = _covered(rects, (h, w))
    inside = np.zeros((h, w), bool)
    inside[logo.y : logo.y + logo.h, logo.x : logo.x + logo.w] = True
    ink = (layout.ink_mask > 128) & inside
    assert ink.any()
    assert covered[ink].all(), f"{np.count_nonzero(ink & ~covered)} of {np.count_nonzero(ink)} logo pixels not blanked"
    assert covered[_content(layout)].mean() <= MAX_CONTENT_BLANKED


@pytest.mark.parametrize(("color", "gray_only"), [((0, 255, 0), True), ((0, 255, 0), False), ((150, 150, 150), True),
                                                   ((255, 160, 0), False)])
def test_text_darker_than_white_over_the_image_is_blanked(color, gray_only: bool, scans):
    """Green text is gray 150, light blue 122: static and brighter than the image around it, or coloured."""
    layout = dataclasses.replace(layouts()[0], image_text=color)
    frames = render_sequence(layout, scans["kaggle"])
    det = detect_roi(_gray_stats(frames) if gray_only else _stats(frames))
    w, h = layout.size
    covered = _covered(find_blank_regions(det), (h, w))
    text = layout.ink[-1]
    ink = np.zeros((h, w), bool)
    ink[text.y : text.y + text.h, text.x : text.x + text.w] = layout.ink_mask[text.y : text.y + text.h,
                                                                             text.x : text.x + text.w] > 128
    assert covered[ink].all(), f"{np.count_nonzero(ink & ~covered)} of {np.count_nonzero(ink)} text pixels not blanked"


def test_dark_static_parts_of_the_image_are_not_blanked(scans):
    """Anechoic areas and the black beyond the signal stand still too, but are darker than the image: kept."""
    layout = layouts()[0]
    dark = []
    for s in scans["kaggle"]:
        s = s.copy()
        cv2.ellipse(s, (300, 200), (60, 35), 0, 0, 360, 8, -1)  # a vessel lumen, black in every frame
        s[-60:, :] = 3  # no signal at depth
        dark.append(s)
    frames = render_sequence(layout, dark)
    det = detect_roi(_stats(frames))
    w, h = layout.size
    covered = _covered(find_blank_regions(det), (h, w))
    r = layout.image
    sy, sx = r.h / dark[0].shape[0], r.w / dark[0].shape[1]
    lumen = np.zeros((h, w), np.uint8)
    cv2.ellipse(lumen, (round(r.x + 300 * sx), round(r.y + 200 * sy)), (round(60 * sx), round(35 * sy)), 0, 0, 360,
                255, -1)
    assert covered[lumen > 0].mean() < 0.01
    depth = np.zeros((h, w), bool)
    depth[r.y + r.h - round(55 * sy) : r.y + r.h, r.x : r.x + r.w] = True  # (not image for the detector either)
    assert depth.any() and covered[depth].mean() < 0.01
    assert covered[_content(layout)].mean() <= MAX_CONTENT_BLANKED


def test_changing_ui_elements_are_blanked_not_taken_for_the_image(scans):
    layout = layouts()[0]  # clock, blinking dot and a frame-rate readout that changes every 5 frames
    frames = render_sequence(layout, scans["kaggle"])
    det = detect_roi(_stats(frames))
    assert max(side_errors(det.roi, layout.truth)) <= TOLERANCE
    covered = _covered(find_blank_regions(det), (layout.size[1], layout.size[0]))
    fw, fh = layout.size
    bar_h = max(24, round(0.055 * fh))
    assert covered[round(0.5 * bar_h), round(0.84 * fw)]  # the blinking dot
    assert covered[round(0.5 * bar_h), round(0.9 * fw)]  # the clock's digits
    # The frame-rate readout ("FR 24 Hz" .. "FR 26 Hz"): every pixel it draws in any frame.
    readout = np.zeros((fh, fw), np.uint8)
    for i in range(len(frames)):
        cv2.putText(readout, f"FR {24 + (i // 5) % 3} Hz", (round(0.45 * fw), fh - round(0.3 * bar_h)), FONT,
                    0.6 * fh / 1080, 255, max(1, round(fh / 1080)), cv2.LINE_AA)
    assert np.count_nonzero(readout > 128) > 50
    assert covered[readout > 128].all()


def test_phantom_video_out_frame_roi_is_its_image_area():
    for size in ((1920, 1080), (1024, 768)):
        ph = PhantomSource(SourceConfig(spec="phantom", width=size[0], height=size[1], pace=False))
        det = detect_roi(_stats([ph.render(2 * i) for i in range(12)]))
        assert max(side_errors(det.roi, ph.image_roi)) <= TOLERANCE, (det.roi, ph.image_roi)


def test_bare_image_filling_the_frame(scans):
    frames = [cv2.resize(s, (640, 480)) for s in scans["lung-a"]]
    det = detect_roi(_stats(frames))
    assert max(side_errors(det.roi, Roi(0, 0, 640, 480))) <= TOLERANCE


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
    with pytest.raises(CalibrationError, match="no image region found.*only small UI elements change: the image "
                                               "is frozen"):
        detect_roi(_stats(frames))


@pytest.mark.parametrize("sigma", [0.7, 1.5, 3.0])
def test_frozen_image_with_capture_noise_is_reported_as_frozen(sigma: float, scans):
    """A noisy capture of a frozen screen differs from frame to frame, but only by noise."""
    rng = np.random.default_rng(4)
    frozen = render_sequence(layouts()[2], [scans["kaggle"][0]] * 12)
    frames = [np.clip(f + rng.normal(0, sigma, f.shape[:2])[:, :, None], 0, 255).astype(np.uint8) for f in frozen]
    with pytest.raises(CalibrationError, match=r"no image region found.*differ only by capture noise \(~[0-9.]+ "
                                               r"gray levels\).*the image is frozen"):
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


def test_given_roi_that_barely_changes_is_refused_naming_the_image(scans):
    """A box over the static UI (a typo, or the wrong corner) would show the network no image: refused."""
    layout = layouts()[2]
    st = _stats(render_sequence(layout, scans["kaggle"][:6]))
    for roi in (Roi(10, 10, 5, 5), Roi(1040, 80, 200, 500)):  # the top bar; the black right of the image
        with pytest.raises(CalibrationError, match=r"--roi x=\d+ y=\d+ w=\d+ h=\d+ barely changes: only 0% of it "
                                                   r"changed.*region x=250 y=70 w=760 h=560 does.*give --roi "
                                                   r"250,70,760,560, or leave out --roi"):
            detection_for_roi(st, roi)


def test_given_roi_inside_the_image_keeps_the_image_outside_it(scans, caplog):
    """A ROI smaller than the picture: the picture around it is image, not changing UI to blank."""
    layout = layouts()[2]  # 720p, image at 250,70 760x560, logo over its corner, clock and dot in the bar
    frames = render_sequence(layout, scans["kaggle"])
    roi = Roi(400, 150, 400, 300)
    det = detection_for_roi(_stats(frames), roi)
    assert det.roi == roi
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    w, h = layout.size
    covered = _covered(find_blank_regions(det), (h, w))
    assert covered[_content(layout)].mean() <= MAX_CONTENT_BLANKED  # as with the detected ROI
    outside = _content(layout)
    outside[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w] = False
    assert covered[outside].mean() <= MAX_CONTENT_BLANKED
    assert covered[layout.ink_mask > 128].all()  # the UI text and the logo over the image still are blanked
    bar_h = max(24, round(0.055 * h))
    assert covered[round(0.5 * bar_h), round(0.84 * w)] and covered[round(0.5 * bar_h), round(0.9 * w)]


def test_cover_with_rects_never_fills_an_outline():
    mask = np.zeros((300, 400), np.uint8)
    cv2.rectangle(mask, (50, 40), (350, 260), 255, 1)  # a thin frame around an image
    rects = cover_with_rects(mask, 10)
    covered = _covered(rects, mask.shape)
    assert covered[mask > 0].all()
    assert covered.mean() < 0.25  # the inside stays free
    assert not covered[150, 200]


def _picture_maps(seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(std, mean) of a 400x300 screen: a textured, changing image at x=100 y=60 w=200 h=180 on black UI."""
    rng = np.random.default_rng(seed)
    std = np.zeros((300, 400), np.float32)
    mean = np.zeros((300, 400), np.float32)
    std[60:240, 100:300] = rng.uniform(2.0, 6.0, (180, 200))
    mean[60:240, 100:300] = rng.uniform(60, 200, (180, 200))
    return std, mean


def test_fit_edges_takes_in_a_still_saturated_band_and_leaves_out_ringing_ui_and_a_scale():
    """With a still probe the skin line at the top stands still (clipped white); MJPG ringing makes the black
    border right of the image flicker, and a scale line close by with it: the box still fits the picture."""
    std, mean = _picture_maps()
    std[60:76, 100:300], mean[60:76, 100:300] = 0.0, 255.0  # the still, saturated skin band
    std[60:240, 300:303], mean[60:240, 300:303] = 1.6, 2.0  # ringing of the dark border beside the image
    std[60:240, 306], mean[60:240, 306] = 1.2, 170.0  # a depth scale's line, ringing too
    region = std > 1.0
    region[60:240:9, 303:306] = True  # closing joined bits of the scale to the region
    n, labels, cc, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8))
    start = Roi(*(int(v) for v in cc[1 + int(np.argmax(cc[1:, cv2.CC_STAT_AREA])), :4]))
    assert start == Roi(100, 60, 207, 180) or start.y > 60  # the band is not part of the changing region
    roi, bands = _fit_edges(Roi(100, 76, 207, 164), region, std, mean, 1.0)
    assert roi == Roi(100, 60, 200, 180)
    assert bands[60:76, 100:300].all() and not bands[76:, :].any()


def test_fit_edges_leaves_a_fans_apex_and_the_dark_noisy_image_edges_alone():
    std, mean = _picture_maps()
    mean[60:240, 100:130] = 8.0  # dark, smooth tissue at the left edge: it flickers with noise, the border does not
    std[60:240, 100:130] = 4.0
    fan = np.zeros((300, 400), np.uint8)
    cv2.ellipse(fan, (200, 60), (100, 180), 0, 50, 130, 255, -1)  # a sector from an apex at the top
    std_fan, mean_fan = np.where(fan > 0, std, 0), np.where(fan > 0, mean, 0)
    for s, m, region in ((std, mean, std > 1.0), (std_fan, mean_fan, std_fan > 1.0)):
        ys, xs = np.nonzero(region)
        start = Roi(int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
        assert _fit_edges(start, region, s, m, 1.0)[0] == start


def test_join_still_bands_joins_across_bright_tissue_not_across_a_dark_gap():
    mean = np.zeros((300, 400), np.float32)
    closed = np.zeros((300, 400), np.uint8)
    closed[40:100, 100:300] = 255  # the image above a still band ...
    closed[120:260, 100:300] = 255  # ... and below it
    for band, joined in ((240.0, True), (3.0, False)):  # saturated fascia; the black gap of a dual display
        mean[100:120, 100:300] = band
        n, labels, cc, _ = cv2.connectedComponentsWithStats(closed)
        best = 1 + int(np.argmax(cc[1:, cv2.CC_STAT_AREA]))
        assert (len(_join_still_bands(cc, best, mean, 300)) == 2) == joined
