"""Overlay: the outline lands where the mask says, at the ROI's place; labels and marks appear when they must.

Renders are compared pixel-wise. The background is gray (B = G = R), so the overlay
colour (0, 220, 255), amber and red never occur in it by chance.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.config import OverlayConfig
from edge.overlay import AMBER, RED, Overlay, OverlayStatus
from edge.types import Decision, Roi

COLOR = (0, 220, 255)
THR = 0.5
LIVE = OverlayStatus("live", fps=29.7, latency_ms=43.0)
STALE = OverlayStatus("stale", fps=29.7, latency_ms=312.0)
MASK_HW = (96, 128)


def gray_frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Textured gray BGR frame (30..200) so a translucent fill changes every pixel it covers."""
    g = np.random.default_rng(seed).integers(30, 200, size=(h, w), dtype=np.uint8)
    return cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)


def blob_mask() -> np.ndarray:
    """96x128 float32 probability map: an ellipse and a separate rectangle, 0 elsewhere."""
    m = np.zeros(MASK_HW, np.float32)
    cv2.ellipse(m, (70, 40), (22, 14), 20, 0, 360, 1.0, -1)
    m[65:80, 20:40] = 1.0
    return m


def is_color(img: np.ndarray, color) -> np.ndarray:
    return np.all(img == np.array(color, np.uint8), axis=2)


def region_in_frame(mask: np.ndarray, h: int, w: int, roi: Roi | None) -> np.ndarray:
    """Reference nerve region in frame pixels: the mask stretched onto the ROI, thresholded."""
    roi = roi or Roi(0, 0, w, h)
    out = np.zeros((h, w), bool)
    up = cv2.resize(mask, (roi.w, roi.h), interpolation=cv2.INTER_LINEAR)
    out[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w] = up >= THR
    return out


def dist_to(pixels: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest True pixel of ``pixels``."""
    return cv2.distanceTransform((~pixels).astype(np.uint8), cv2.DIST_L2, 5)


def boundary(region: np.ndarray) -> np.ndarray:
    r = region.astype(np.uint8)
    return (r - cv2.erode(r, np.ones((3, 3), np.uint8))).astype(bool)


def grow(region: np.ndarray, px: int) -> np.ndarray:
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(region.astype(np.uint8), k).astype(bool)


def shrink(region: np.ndarray, px: int) -> np.ndarray:
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.erode(region.astype(np.uint8), k).astype(bool)


def render(ov: Overlay, frame: np.ndarray, decision: Decision, status: OverlayStatus = LIVE) -> np.ndarray:
    return ov.draw(frame.copy(), decision, status)


def empty_mask() -> np.ndarray:
    return np.zeros(MASK_HW, np.float32)


GEOMETRIES = [
    pytest.param(1080, 1920, Roi(400, 150, 1160, 840), id="1080p-roi"),
    pytest.param(420, 580, None, id="580x420-whole"),
]


@pytest.mark.parametrize("h,w,roi", GEOMETRIES)
def test_outline_and_fill_at_the_roi_place(h, w, roi):
    frame = gray_frame(h, w)
    mask = blob_mask()
    ov = Overlay(OverlayConfig(), roi, THR)
    with_mask = render(ov, frame, Decision(True, 0.9, mask))
    # Same verdict and text, no mask pixels: the difference is the outline and fill alone.
    without = render(ov, frame, Decision(True, 0.9, empty_mask()))
    changed = np.any(with_mask != without, axis=2)
    outline = is_color(with_mask, COLOR) & changed
    region = region_in_frame(mask, h, w, roi)

    r = roi or Roi(0, 0, w, h)
    inside_roi = np.zeros((h, w), bool)
    inside_roi[r.y : r.y + r.h, r.x : r.x + r.w] = True
    assert outline.sum() > boundary(region).sum() * 0.8, "outline missing or broken"
    assert not (changed & ~inside_roi).any(), "drawing leaked outside the ROI"

    # Every outline pixel lies on the boundary of the scaled region (sub-pixel mapping: a
    # half-model-pixel error would be 2-5 px off here) ...
    d = dist_to(boundary(region))[outline]
    assert d.max() <= 2.5, f"outline pixel {d.max():.1f} px from the region's edge"
    assert d.mean() <= 1.2
    # ... and the whole boundary is traced.
    assert dist_to(outline)[boundary(region)].max() <= 2.5

    # The fill changes every pixel well inside the region, nothing away from it.
    assert changed[shrink(region, 3)].all()
    assert not (changed & ~grow(region, OverlayConfig().thickness + 3)).any()


def test_outline_is_clipped_to_the_roi_when_the_mask_touches_its_edge():
    h, w, roi = 1080, 1920, Roi(400, 150, 1160, 840)
    frame = gray_frame(h, w)
    mask = np.zeros(MASK_HW, np.float32)
    mask[:30, :40] = 1.0  # top-left corner of the model input
    mask[60:, 100:] = 1.0  # bottom-right corner
    ov = Overlay(OverlayConfig(thickness=6), roi, THR)
    out = render(ov, frame, Decision(True, 0.9, mask))
    ref = render(ov, frame, Decision(True, 0.9, empty_mask()))
    changed = np.any(out != ref, axis=2)
    inside = np.zeros((h, w), bool)
    inside[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w] = True
    assert changed.any()
    assert not (changed & ~inside).any()
    # Both corners reached: the pixel at the ROI corner is drawn over.
    assert changed[roi.y + 2, roi.x + 2] and changed[roi.y + roi.h - 3, roi.x + roi.w - 3]


def test_alpha_zero_draws_the_outline_only():
    h, w = 420, 580
    frame = gray_frame(h, w)
    mask = blob_mask()
    ov = Overlay(OverlayConfig(alpha=0.0), None, THR)
    out = render(ov, frame, Decision(True, 0.9, mask))
    region = region_in_frame(mask, h, w, None)
    inner = shrink(region, 4)
    assert np.array_equal(out[inner], frame[inner])
    assert is_color(out, COLOR)[boundary(region)].mean() > 0.7


@pytest.mark.parametrize("roi", [None, Roi(380, 120, 1160, 840)], ids=["580x420-whole", "1080p-roi"])
@pytest.mark.parametrize("name", ["1_14", "1_29", "2_8"])
def test_outline_matches_a_real_kaggle_mask(kaggle_fullres, roi, name):
    """A real nerve mask, shrunk to the model's 96x128 and drawn back onto the full frame, keeps its shape."""
    img = cv2.imread(str(kaggle_fullres / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
    true = cv2.imread(str(kaggle_fullres.parent / "masks" / f"{name}_mask.png"), cv2.IMREAD_GRAYSCALE)
    assert img is not None and true is not None and true.max() > 0
    small = cv2.resize(true.astype(np.float32) / 255.0, (128, 96), interpolation=cv2.INTER_AREA)
    if roi is None:
        frame = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        truth = true > 127
    else:
        frame = np.full((1080, 1920, 3), 35, np.uint8)
        frame[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w] = cv2.cvtColor(
            cv2.resize(img, (roi.w, roi.h), interpolation=cv2.INTER_LINEAR), cv2.COLOR_GRAY2BGR
        )
        truth = np.zeros(frame.shape[:2], bool)
        truth[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w] = (
            cv2.resize(true, (roi.w, roi.h), interpolation=cv2.INTER_NEAREST) > 127
        )
    ov = Overlay(OverlayConfig(), roi, THR)
    out = render(ov, frame, Decision(True, 0.87, small))
    ref = render(ov, frame, Decision(True, 0.87, np.zeros_like(small)))
    outline = is_color(out, COLOR) & np.any(out != ref, axis=2)
    contours, _ = cv2.findContours(outline.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros(outline.shape, np.uint8)
    cv2.drawContours(filled, contours, -1, 1, cv2.FILLED)
    filled = filled.astype(bool)
    iou = (filled & truth).sum() / (filled | truth).sum()
    assert iou > 0.9, f"IoU of the drawn outline vs the true mask = {iou:.3f}"


def test_no_outline_when_no_nerve_and_the_status_says_so():
    h, w = 420, 580
    frame = gray_frame(h, w)
    mask = blob_mask()
    ov = Overlay(OverlayConfig(), None, THR)
    no = render(ov, frame, Decision(False, 0.12, mask))  # a mask present, but the verdict is "no nerve"
    yes = render(ov, frame, Decision(True, 0.12, empty_mask()))
    assert not is_color(no, COLOR).any(), "overlay colour drawn although no nerve is shown"
    region = grow(region_in_frame(mask, h, w, None), 4)
    assert np.array_equal(no[region], frame[region])
    # The status line ("No nerve found" vs "NERVE 0.12") differs, at the top left only.
    diff = np.any(no != yes, axis=2)
    ys, xs = np.nonzero(diff)
    assert diff.sum() > 50
    assert ys.max() < h * 0.15 and xs.min() < w * 0.1
    assert is_color(yes, COLOR)[: int(h * 0.15)].sum() > 20, "NERVE label not in the overlay colour"


def test_stale_frame_draws_no_mask_and_a_marker():
    h, w = 420, 580
    frame = gray_frame(h, w)
    mask = blob_mask()
    ov = Overlay(OverlayConfig(), None, THR)
    stale = render(ov, frame, Decision(True, 0.9, mask), STALE)
    live = render(ov, frame, Decision(True, 0.9, mask), LIVE)
    region = grow(region_in_frame(mask, h, w, None), 4)
    assert not np.array_equal(live[region], frame[region])
    assert np.array_equal(stale[region], frame[region]), "a stale frame must not show the old mask"
    assert not is_color(stale, COLOR).any()
    # Amber border on all four edges, and amber text (the "STALE nnn ms" line).
    amber = is_color(stale, AMBER)
    assert amber[0].all() and amber[-1].all() and amber[:, 0].all() and amber[:, -1].all()
    assert amber[10 : h // 4, 10 : w // 2].sum() > 30
    assert not is_color(live, AMBER).any()


def test_stale_age_is_printed():
    frame = gray_frame(420, 580)
    ov = Overlay(OverlayConfig(), None, THR)
    a = render(ov, frame, Decision(False, 0.1, None), OverlayStatus("stale", 30.0, 300.0))
    b = render(ov, frame, Decision(False, 0.1, None), OverlayStatus("stale", 30.0, 900.0))
    assert not np.array_equal(a, b)


def test_untrained_label_is_prominent():
    for h, w in ((420, 580), (1080, 1920)):
        frame = gray_frame(h, w)
        ov = Overlay(OverlayConfig(), None, THR)
        plain = render(ov, frame, Decision(False, 0.1, None))
        untrained = render(ov, frame, Decision(False, 0.1, None), OverlayStatus("live", 30.0, 40.0, untrained=True))
        red = is_color(untrained, RED).sum()
        assert not is_color(plain, RED).any()
        assert red > 0.005 * h * w, f"only {red} red pixels: the UNTRAINED label is not prominent"


def test_message_and_stats_are_shown():
    frame = gray_frame(420, 580)
    dec = Decision(False, 0.1, None)
    ov = Overlay(OverlayConfig(), None, THR)
    base = render(ov, frame, dec)
    msg = render(ov, frame, dec, OverlayStatus("live", 29.7, 43.0, message="capture reconnecting"))
    diff = np.any(base != msg, axis=2)
    assert diff.sum() > 50 and np.nonzero(diff)[0].max() < 420 * 0.3
    assert is_color(msg, AMBER).any()
    other_fps = render(ov, frame, dec, OverlayStatus("live", 12.0, 43.0))
    assert not np.array_equal(base, other_fps)
    quiet = Overlay(OverlayConfig(show_stats=False), None, THR)
    assert np.array_equal(render(quiet, frame, dec), render(quiet, frame, dec, OverlayStatus("live", 12.0, 400.0)))


def mark_box(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return img[int(h * 0.85) :, w // 2 :]


@pytest.mark.parametrize("h,w", [(1080, 1920), (420, 580), (208, 208)])
def test_permanent_mark_is_always_drawn(h, w):
    frame = np.full((h, w, 3), 128, np.uint8)
    ov = Overlay(OverlayConfig(), None, THR)
    renders = [
        render(ov, frame, Decision(True, 0.9, blob_mask())),
        render(ov, frame, Decision(False, 0.1, None)),
        render(ov, frame, Decision(True, 0.9, blob_mask()), STALE),
        render(ov, frame, Decision(False, 0.1, None), OverlayStatus("live", 1.0, 1.0, untrained=True, message="x")),
        ov.no_signal(h, w),
    ]
    ref = mark_box(renders[1])
    for img in renders:
        box = mark_box(img)
        assert (box.min(axis=2) >= 200).sum() > 10, "no white mark text bottom right"
        assert (np.abs(box.astype(int) - frame[: box.shape[0], : box.shape[1]]).max(axis=2) > 60).sum() > 40
    # The same mark in every live render (the stale border changes only the edge pixels).
    assert np.array_equal(mark_box(renders[0]), ref)
    assert np.array_equal(mark_box(renders[3])[:, :-1], ref[:, :-1])


def test_no_signal_frame():
    ov = Overlay(OverlayConfig(), None, THR)
    for h, w in ((1080, 1920), (420, 580), (208, 208)):
        img = ov.no_signal(h, w)
        assert img.shape == (h, w, 3) and img.dtype == np.uint8
        centre = img[h // 3 : 2 * h // 3, w // 5 : 4 * w // 5]
        assert is_color(centre, (255, 255, 255)).sum() > 0.01 * centre.shape[0] * centre.shape[1], "no big NO SIGNAL"
        assert (img.max(axis=2) == 0).mean() > 0.8, "should be mostly black"
        # A new array each time: the caller may draw on it.
        img[:] = 7
        assert ov.no_signal(h, w).max(axis=2).min() == 0
    with_msg = ov.no_signal(420, 580, "capture reconnecting")
    assert is_color(with_msg, AMBER).any() and not is_color(ov.no_signal(420, 580), AMBER).any()


@pytest.mark.parametrize("h,w", [(208, 208), (120, 160), (48, 64)])
def test_text_stays_inside_small_frames(h, w):
    long = "recording off: disk full, and this message is far too long for a tiny frame"
    status = OverlayStatus("live", 123.4, 4567.0, untrained=True, model_name="mini-unet-16-int8-v3", message=long)
    ov = Overlay(OverlayConfig(), None, THR)
    for img in (
        ov.draw(np.zeros((h, w, 3), np.uint8), Decision(True, 0.87, blob_mask()), status),
        ov.no_signal(h, w, long),
    ):
        ring = np.concatenate([img[:2].reshape(-1, 3), img[-2:].reshape(-1, 3), img[:, :2].reshape(-1, 3),
                               img[:, -2:].reshape(-1, 3)])  # fmt: skip
        assert ring.max() == 0, "text reaches the frame's edge (clipped)"


@pytest.mark.parametrize("w", [1, 2, 5, 12, 20, 24, 30, 31, 33])
@pytest.mark.parametrize("h", [1, 7, 30, 420])
def test_any_frame_size_draws_without_crashing(h, w):
    # Frames 30 px wide or less used to crash the mark's layout (IndexError), live and on NO SIGNAL:
    # a tiny capture mode or a 20 px ROI must leave the loop running, with the text skipped if it can't fit.
    status = OverlayStatus("live", 9.9, 12.0, untrained=True, model_name="mini-unet", message="disk full")
    mask = blob_mask()
    for roi in (None, Roi(0, 0, 3, 3)):
        ov = Overlay(OverlayConfig(), roi, THR)
        for state in ("live", "stale", "not_analysed", "no_signal"):
            img = np.full((h, w, 3), 90, np.uint8)
            out = ov.draw(img, Decision(True, 0.9, mask), OverlayStatus(state, 9.9, 12.0, True, "m", "x"))
            assert out is img and img.shape == (h, w, 3)
        ov.draw(np.zeros((h, w, 3), np.uint8), Decision(False, 0.1, None), status)
        blank = ov.no_signal(h, w, "capture device not connected: retrying")
        assert blank.shape == (h, w, 3) and blank.dtype == np.uint8


def test_draw_is_in_place_and_buffers_are_reused_cleanly():
    h, w, roi = 1080, 1920, Roi(400, 150, 1160, 840)
    frame = gray_frame(h, w)
    big = np.zeros(MASK_HW, np.float32)
    big[10:90, 10:120] = 1.0
    small = np.zeros(MASK_HW, np.float32)
    small[40:50, 60:70] = 1.0
    ov = Overlay(OverlayConfig(), roi, THR)
    img = frame.copy()
    assert ov.draw(img, Decision(True, 0.9, big), LIVE) is img
    second = render(ov, frame, Decision(True, 0.9, small))
    fresh = render(Overlay(OverlayConfig(), roi, THR), frame, Decision(True, 0.9, small))
    assert np.array_equal(second, fresh)


def test_rejects_non_bgr_images():
    ov = Overlay(OverlayConfig(), None, THR)
    with pytest.raises(ValueError, match="HxWx3"):
        ov.draw(np.zeros((420, 580), np.uint8), Decision(False, 0.1, None), LIVE)
    with pytest.raises(ValueError, match="mask_threshold"):
        Overlay(OverlayConfig(), None, 1.5)


def test_roi_outside_the_frame_does_not_crash():
    ov = Overlay(OverlayConfig(), Roi(1500, 900, 1160, 840), THR)  # calibrated for another resolution
    img = gray_frame(420, 580)
    ov.draw(img, Decision(True, 0.9, blob_mask()), LIVE)
