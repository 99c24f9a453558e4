"""Find the ultrasound image inside a machine's video-out frames, and the burned-in UI to blank.

The principle: over a few seconds of live scanning the ultrasound image changes
in every pixel (speckle decorrelates as soon as the probe or the patient moves),
while the machine's user interface around it does not: text, logos, scales and
black borders stay put. So the per-pixel temporal standard deviation over N
frames (`FrameStats`) separates the two. `detect_roi`:

1. refuses inputs it cannot calibrate on, with a `CalibrationError` that says why
   (too few frames, blank frames, all frames identical);
2. thresholds the activity map (`ACTIVE_STD` gray levels, raised above the noise
   floor of the static part when capture noise is high), opens it to drop isolated
   noisy pixels, closes it so the speckle of dark image areas joins up, and keeps
   the largest connected region: small changing UI elements (a clock, a blinking
   dot, a frame-rate readout) are separate, smaller regions;
3. takes the region's bounding box as the ROI (for a sector or curved image the box
   of the fan), and checks that the region looks like an image rather than noise
   (neighbouring pixels of an ultrasound image are strongly correlated; random
   noise from a capture card without signal is not).

`find_blank_regions` then lists what must never be recorded: static text and
graphics anywhere in the frame (static pixels with strong contrast to their static
neighbours: text on a UI bar, labels in the black corners beside a fan), bright
static marks over the image itself (a logo or orientation mark burned into the
picture), and the small changing UI elements. They are covered by rectangles on a
grid of cells, so a thin outline never turns into a box over the whole image.

Everything here is pure numpy/OpenCV on gray uint8 frames: it runs on the device.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from edge.errors import NervesegError
from edge.types import Roi

logger = logging.getLogger(__name__)

MIN_FRAMES = 4  # fewer cannot tell a changing image from capture noise
ACTIVE_STD = 2.5  # gray levels: temporal std above which a pixel "changes" (speckle is ~5-20, static UI ~0)
MIN_REGION_FRACTION = 0.02  # the image must cover at least this share of the frame
BLANK_RANGE = 10  # gray levels: frames whose mean image spans less (0.5-99.5 percentiles) show nothing
CHANGE_LEVEL = 2  # gray levels between consecutive frames that count as a change (`FrameStats.changes`)
STATIC_FRACTION = 0.0001  # fewer changing pixels than this share of the frame: the frames are identical
MIN_STRUCTURE = 0.5  # neighbour-pixel correlation at 128 px: ultrasound images 0.81-0.91, random noise < 0.15
INK_CONTRAST = 32  # gray levels between a static pixel and a static neighbour that make it text/graphics
INK_BRIGHT = 170  # static pixels over the image at least this bright are burned-in marks
MAX_BLANK_FRACTION = 0.25  # blanking more of the ROI than this is logged: much of the image stood still


class CalibrationError(NervesegError):
    """The frames cannot be calibrated on (the message says why and what to do). Exit code 2."""

    exit_code = 2


class FrameStats:
    """Running per-pixel mean and standard deviation of gray frames, without keeping them.

    ``add`` takes HxW uint8 gray frames of one size; float64 sums keep it exact for
    any practical N. ``first`` is a copy of the first frame (the structure check).
    ``changes`` counts per pixel the consecutive pairs of frames that differ by more
    than `CHANGE_LEVEL`: it tells an image that keeps changing from one or two odd
    frames (an encoder settling after the start) that would raise the std alone.
    Raises `CalibrationError` when a frame's size differs from the first one's.
    """

    def __init__(self) -> None:
        self.n = 0
        self._sum: np.ndarray | None = None
        self._sumsq: np.ndarray | None = None
        self.changes: np.ndarray | None = None
        self.first: np.ndarray | None = None
        self.last: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int] | None:
        return None if self.first is None else self.first.shape[:2]

    def add(self, gray: np.ndarray) -> None:
        if gray.ndim != 2 or gray.dtype != np.uint8:
            raise ValueError(f"FrameStats.add needs HxW uint8 gray, got {gray.dtype} {gray.shape}")
        if self._sum is None:
            self._sum = np.zeros(gray.shape, np.float64)
            self._sumsq = np.zeros(gray.shape, np.float64)
            self.changes = np.zeros(gray.shape, np.uint16)
            self.first = gray.copy()
        elif gray.shape != self._sum.shape:
            h, w = self._sum.shape
            raise CalibrationError(
                f"frame {self.n} is {gray.shape[1]}x{gray.shape[0]}, the first was {w}x{h}: the resolution changed "
                "during calibration; keep the ultrasound machine's video output fixed and run again"
            )
        cv2.accumulate(gray, self._sum)
        cv2.accumulateSquare(gray, self._sumsq)
        if self.last is not None:
            self.changes += cv2.absdiff(gray, self.last) > CHANGE_LEVEL
        self.last = gray.copy()
        self.n += 1

    def mean(self) -> np.ndarray:
        """Per-pixel mean, float32 HxW."""
        return (self._sum / max(self.n, 1)).astype(np.float32)

    def std(self) -> np.ndarray:
        """Per-pixel temporal standard deviation (population), float32 HxW, gray levels."""
        m = self._sum / max(self.n, 1)
        var = self._sumsq / max(self.n, 1) - m * m
        return np.sqrt(np.maximum(var, 0.0)).astype(np.float32)


@dataclass(frozen=True)
class Detection:
    """What `detect_roi` found.

    roi: the image's bounding box in frame pixels. region: uint8 0/255 HxW mask of the
    changing region the box was taken from (the fan itself for a sector). active:
    uint8 0/255 mask of every changing pixel (after cleaning), the region included.
    threshold: the std (gray levels) above which a pixel counted as changing. noise: the
    typical std of the static part (capture/compression noise).
    activity: median temporal std inside the region. structure: neighbour-pixel
    correlation of the first frame inside the region.
    """

    roi: Roi
    region: np.ndarray
    active: np.ndarray
    threshold: float
    noise: float
    activity: float
    structure: float
    mean: np.ndarray
    std: np.ndarray


def _kernel(size: int) -> np.ndarray:
    size = max(1, int(size))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def check_frames(stats: FrameStats) -> None:
    """Raise `CalibrationError` for inputs no ROI can come from: too few, blank, or identical frames."""
    if stats.n < MIN_FRAMES:
        raise CalibrationError(
            f"only {stats.n} frame(s) were read; calibration needs at least {MIN_FRAMES} (more is better: "
            "a few seconds of live scanning)"
        )
    mean = stats.mean()
    std = stats.std()
    lo, hi = np.percentile(mean, [0.5, 99.5])
    if hi - lo < BLANK_RANGE and float(np.percentile(std, 99.5)) < ACTIVE_STD:
        raise CalibrationError(
            f"blank input: all {stats.n} frames are a uniform gray level {float(np.median(mean)):.0f} "
            "(no picture): is the ultrasound machine's video output on and connected?"
        )
    # Pixels that change again and again: one or two odd frames at the start do not make a frozen screen live.
    need = max(3, -(-(stats.n - 1) // 5))
    changing = float(np.count_nonzero((std > ACTIVE_STD) & (stats.changes >= need))) / std.size
    if changing < STATIC_FRACTION:
        raise CalibrationError(
            f"all {stats.n} frames are identical (nothing keeps changing between them): the image is frozen or "
            "the source is a still picture. Unfreeze the machine and scan (move the probe) while calibrating"
        )


def _noise_floor(std: np.ndarray) -> float:
    """Typical temporal std of the static part of the frame (capture / compression noise), gray levels.

    The median std of the pixels below `ACTIVE_STD`, when they are at least a tenth
    of the frame (a UI is there): ~0 for a clean HDMI capture, up to ~1 for MJPG.
    Without a static part (a bare image fills the frame) the quiet pixels are the
    image's own calm areas, not noise: 0.
    """
    quiet = std[std <= ACTIVE_STD]
    return float(np.median(quiet)) if quiet.size >= 0.1 * std.size else 0.0


def _structure(gray: np.ndarray, region: np.ndarray, roi: Roi, size: int = 128) -> float:
    """Correlation of neighbouring pixels of ``gray`` inside ``region``, at a fixed scale.

    The ROI is first shrunk (area average) to ``size`` pixels on its longer side, so
    the number does not depend on how much the machine scales its image up (scaled-up
    noise correlates too). Real frames of three data sets (Kaggle, usgra-seg, NerveBlocker) measured 0.81-0.91
    here; random noise 0.04-0.14.
    """
    crop = gray[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w]
    mask = region[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w]
    s = min(1.0, size / max(roi.w, roi.h))
    dsize = (max(2, round(roi.w * s)), max(2, round(roi.h * s)))
    g = cv2.resize(crop, dsize, interpolation=cv2.INTER_AREA).astype(np.float32)
    inside = cv2.resize(mask, dsize, interpolation=cv2.INTER_NEAREST) > 0
    vals = []
    for a, b, m in (
        (g[:, :-1], g[:, 1:], inside[:, :-1] & inside[:, 1:]),
        (g[:-1, :], g[1:, :], inside[:-1, :] & inside[1:, :]),
    ):
        x, y = a[m], b[m]
        if x.size < 16 or x.std() < 1e-3 or y.std() < 1e-3:
            continue
        vals.append(float(np.corrcoef(x, y)[0, 1]))
    return float(np.mean(vals)) if vals else 0.0


def detect_roi(stats: FrameStats) -> Detection:
    """The ultrasound image's bounding box in frames summarised by ``stats``. Raises `CalibrationError`."""
    check_frames(stats)
    mean, std = stats.mean(), stats.std()
    h, w = std.shape
    noise = _noise_floor(std)
    threshold = max(ACTIVE_STD, 4.0 * noise)
    active = ((std > threshold) * 255).astype(np.uint8)
    # Open: isolated flickering pixels (compression noise at UI edges) go. Close: the speckle of dark image
    # areas, whose std is low, joins the rest of the image. Sizes scale with the frame.
    d = min(h, w)
    active = cv2.morphologyEx(active, cv2.MORPH_OPEN, _kernel(3))
    closed = cv2.morphologyEx(active, cv2.MORPH_CLOSE, _kernel(max(5, round(0.012 * d)) | 1))
    n, labels, cc, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    if n <= 1:
        raise CalibrationError(
            "no image region found: nothing in the frames changes enough to be a live ultrasound image "
            "(scan while calibrating, or give the region with --roi x,y,w,h)"
        )
    best = 1 + int(np.argmax(cc[1:, cv2.CC_STAT_AREA]))
    area = int(cc[best, cv2.CC_STAT_AREA])
    if area < MIN_REGION_FRACTION * h * w:
        raise CalibrationError(
            f"no image region found: the largest changing region covers {100.0 * area / (h * w):.2f}% of the "
            f"{w}x{h} frame (at least {100 * MIN_REGION_FRACTION:.0f}% expected); only small UI elements change. "
            "Scan while calibrating, or give the region with --roi x,y,w,h"
        )
    region = ((labels == best) * 255).astype(np.uint8)
    x, y, bw, bh = (int(cc[best, k]) for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH,
                                                  cv2.CC_STAT_HEIGHT))
    roi = Roi(x, y, bw, bh)
    structure = _structure(stats.first, region, roi)
    activity = float(np.median(std[region > 0]))
    if structure < MIN_STRUCTURE:
        raise CalibrationError(
            f"no image region found: the changing region at x={x} y={y} w={bw} h={bh} looks like random noise, "
            f"not an ultrasound image (neighbouring pixels correlate {structure:.2f}, an image > {MIN_STRUCTURE}): "
            "is the source showing a picture, or a capture card without signal?"
        )
    logger.info(
        "image region %s (%.1f%% of the frame), activity median %.1f gray levels (threshold %.1f), structure %.2f",
        roi, 100.0 * area / (h * w), activity, threshold, structure,
    )
    return Detection(roi, region, closed, threshold, noise, activity, structure, mean, std)


def detection_for_roi(stats: FrameStats, roi: Roi) -> Detection:
    """A `Detection` for a ROI the user gave (``--roi``): the rectangle is the image region.

    The frames are still checked (blank or identical frames raise): telling burned-in
    text from the image needs the image to change.
    """
    check_frames(stats)
    check_roi(roi, stats.shape[1], stats.shape[0])
    mean, std = stats.mean(), stats.std()
    noise = _noise_floor(std)
    threshold = max(ACTIVE_STD, 4.0 * noise)
    region = np.zeros(std.shape, np.uint8)
    region[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w] = 255
    active = ((std > threshold) * 255).astype(np.uint8)
    activity = float(np.median(std[region > 0]))
    structure = _structure(stats.first, region, roi)
    logger.info("image region given: %s, activity median %.1f gray levels, structure %.2f", roi, activity, structure)
    return Detection(roi, region, active, threshold, noise, activity, structure, mean, std)


def check_roi(roi: Roi, width: int, height: int, what: str = "--roi") -> None:
    """Raise `CalibrationError` when ``roi`` does not lie inside a ``width`` x ``height`` frame."""
    if roi.w <= 0 or roi.h <= 0 or not roi.clip_to(width, height):
        raise CalibrationError(
            f"{what} x={roi.x} y={roi.y} w={roi.w} h={roi.h} lies outside the {width}x{height} frame "
            f"(x+w must be <= {width}, y+h <= {height}, all >= 0, w and h > 0)"
        )


def _static_contrast(mean: np.ndarray, static: np.ndarray) -> np.ndarray:
    """Per static pixel: the largest gray difference to a static 3x3 neighbour (0 elsewhere), uint8.

    Changing pixels are excluded from both the max and the min, so the border
    between a static area and the live image is not mistaken for text.
    """
    m = np.clip(mean + 0.5, 0, 255).astype(np.uint8)
    k = np.ones((3, 3), np.uint8)
    hi = cv2.dilate(np.where(static, m, 0).astype(np.uint8), k)
    lo = cv2.erode(np.where(static, m, 255).astype(np.uint8), k)
    contrast = cv2.subtract(hi, lo)
    contrast[~static] = 0
    return contrast


def cover_with_rects(mask: np.ndarray, cell: int) -> list[Roi]:
    """Rectangles on a ``cell``-pixel grid that together cover every nonzero pixel of ``mask``.

    Runs of marked cells along a grid row become one rectangle; rectangles of
    consecutive rows with the same columns merge. Never covers a cell without a
    marked pixel, so an outline stays an outline.
    """
    h, w = mask.shape
    gh, gw = -(-h // cell), -(-w // cell)
    padded = np.zeros((gh * cell, gw * cell), np.uint8)
    padded[:h, :w] = mask > 0
    cells = padded.reshape(gh, cell, gw, cell).max(axis=(1, 3)) > 0
    rects: list[Roi] = []
    open_runs: dict[tuple[int, int], int] = {}  # (c0, c1) -> index in rects of the run growing downwards
    for r in range(gh):
        row = cells[r]
        runs = []
        c = 0
        while c < gw:
            if row[c]:
                c0 = c
                while c < gw and row[c]:
                    c += 1
                runs.append((c0, c))
            else:
                c += 1
        next_open: dict[tuple[int, int], int] = {}
        for c0, c1 in runs:
            x0, x1 = c0 * cell, min(c1 * cell, w)
            y0, y1 = r * cell, min((r + 1) * cell, h)
            i = open_runs.get((c0, c1))
            if i is not None:
                old = rects[i]
                rects[i] = Roi(old.x, old.y, old.w, y1 - old.y)
            else:
                i = len(rects)
                rects.append(Roi(x0, y0, x1 - x0, y1 - y0))
            next_open[(c0, c1)] = i
        open_runs = next_open
    return rects


def find_blank_regions(det: Detection) -> list[Roi]:
    """Rectangles (frame pixels) over burned-in text, graphics and changing UI, inside and around the ROI.

    See the module doc. The list may be empty (a bare image with no UI).
    """
    mean, std, roi = det.mean, det.std, det.roi
    h, w = std.shape
    region_filled = np.zeros_like(det.region)
    contours, _ = cv2.findContours(det.region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(region_filled, contours, -1, 255, -1)
    in_image = region_filled > 0
    # Inside the image only pixels that do not change at all count as static: burned-in marks are pixel-exact,
    # while a few image pixels change little (saturated or slow areas) and must not be blanked.
    frozen = std <= max(1.0, 2.0 * det.noise)
    static = np.where(in_image, frozen, std <= det.threshold)
    # Contrast counts only away from changing pixels: where a static area meets the live image (the fan's
    # edge, dim image borders) the mean image has edges that are not drawn UI.
    near_live = cv2.dilate((std > det.threshold).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    ink = (_static_contrast(mean, static) >= INK_CONTRAST) & ~near_live
    # Bright static marks drawn over the image (a logo, an orientation mark): much brighter than an image
    # pixel ever is on average.
    ink |= frozen & in_image & (mean >= INK_BRIGHT)
    # Changing UI elements: active pixels outside the image region.
    others = (det.active > 0) & (det.region == 0)
    ink |= others
    ink_u8 = cv2.dilate(ink.astype(np.uint8), np.ones((3, 3), np.uint8))
    cell = max(8, round(min(h, w) / 90))
    rects = cover_with_rects(ink_u8, cell)
    inside = np.zeros((h, w), bool)
    for r in rects:
        inside[r.y : r.y + r.h, r.x : r.x + r.w] = True
    covered = float(inside[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w].mean())
    if covered > MAX_BLANK_FRACTION:
        logger.warning(
            "blanking regions cover %.0f%% of the image box: much of the image was static during calibration",
            100 * covered,
        )
    return rects
