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

`detection_for_roi` does the same checks for a ROI the user gave (``--roi``) and
refuses one that barely changes while a live image changes elsewhere.

`find_blank_regions` then lists what must never be recorded: static text and
graphics anywhere in the frame (static pixels with strong contrast to their static
neighbours: text on a UI bar, labels in the black corners beside a fan), marks
burned into the image itself (a logo, an orientation mark, a patient line: pixels
that stay still while the image around them changes and are brighter than it, or
that stay coloured in every frame while B-mode is gray), and the small changing UI
elements. They are covered by rectangles on a grid of cells, so a thin outline
never turns into a box over the whole image.

Everything here is pure numpy/OpenCV on uint8 frames (gray; the colour frame only for
the colour of burned-in marks): it runs on the device.
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
SETTLE_FRAMES = 4  # an MJPG encoder may still settle over the first frames: `FrameStats.late_changes` skips them
STATIC_FRACTION = 0.0001  # fewer changing pixels than this share of the frame: the frames are identical
# neighbour-pixel correlation at 128 px: real frames 0.75-0.97 (docs/results.md), random noise < 0.15
MIN_STRUCTURE = 0.5
INK_CONTRAST = 32  # gray levels between a static pixel and a static neighbour that make it text/graphics
# Marks burned into the image, judged against the image around them (a window of MARK_WINDOW of the frame's
# shorter side) rather than in absolute terms: MJPG compression makes a static mark flicker with the ringing of
# the live image beside it (its std rises with the image's), and coloured text is darker than white in gray.
# Tuned on tests/calibration (three real sequences in ten screens, JPEG quality 70-90; accuracy in
# docs/results.md).
MARK_WINDOW = 0.06
MARK_STILL = 0.6  # a mark's temporal std is at most this share of the image's around it (JPEG ringing: up to ~0.5)
MARK_BRIGHTER = 30  # gray levels its temporal mean lies above the image's around it (the median of the mean)
MARK_STROKE = 0.006  # share of the shorter side: strokes thinner than this stand out of the mean image (top-hat)...
MARK_STROKE_CONTRAST = 40  # ... by this many gray levels; the image's own bright bands are wider and softer
MARK_FROZEN_AREA = 12  # pixels: a pixel-exact still spot (any brightness) this large is a mark, smaller is image
MARK_CHROMA = 40  # colour (max - min of B, G, R) above the image's around it in every frame: B-mode is gray
MIN_ROI_CHANGING = 0.25  # a given ROI with less of it changing "barely changes" (a fan fills >= ~55% of its box)
MAX_BLANK_FRACTION = 0.25  # blanking more of the ROI than this is logged: much of the image stood still


class CalibrationError(NervesegError):
    """The frames cannot be calibrated on (the message says why and what to do). Exit code 2."""

    exit_code = 2


class FrameStats:
    """Running per-pixel mean and standard deviation of gray frames, without keeping them.

    ``add`` takes HxW uint8 gray frames of one size (and, optionally, the BGR frame they
    came from); float64 sums keep it exact for any practical N. ``first`` is a copy of
    the first frame (the structure check).
    ``changes`` counts per pixel the consecutive pairs of frames that differ by more
    than `CHANGE_LEVEL`: it tells an image that keeps changing from one or two odd
    frames (an encoder settling after the start) that would raise the std alone;
    ``late_changes`` counts the same from frame `SETTLE_FRAMES` on (None before).
    ``chroma`` is, per pixel, the least colour (max - min of B, G, R) over all frames:
    high only where something stays coloured in every frame (None unless every frame
    came with its BGR image).
    Raises `CalibrationError` when a frame's size differs from the first one's.
    """

    def __init__(self) -> None:
        self.n = 0
        self._sum: np.ndarray | None = None
        self._sumsq: np.ndarray | None = None
        self.changes: np.ndarray | None = None
        self.late_changes: np.ndarray | None = None
        self.first: np.ndarray | None = None
        self.last: np.ndarray | None = None
        self.chroma: np.ndarray | None = None
        self._colour = True  # every frame so far came with its BGR image

    @property
    def shape(self) -> tuple[int, int] | None:
        return None if self.first is None else self.first.shape[:2]

    def add(self, gray: np.ndarray, bgr: np.ndarray | None = None) -> None:
        """Add one frame: ``gray`` HxW uint8; ``bgr`` the HxWx3 uint8 frame it came from, if colour."""
        if gray.ndim != 2 or gray.dtype != np.uint8:
            raise ValueError(f"FrameStats.add needs HxW uint8 gray, got {gray.dtype} {gray.shape}")
        first = self._sum is None
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
            changed = cv2.absdiff(gray, self.last) > CHANGE_LEVEL
            self.changes += changed
            if self.n >= SETTLE_FRAMES:
                if self.late_changes is None:
                    self.late_changes = np.zeros(gray.shape, np.uint16)
                self.late_changes += changed
        self.last = gray.copy()
        self.n += 1
        if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.shape[:2] != gray.shape:
            self._colour, self.chroma = False, None
        elif self._colour:
            b, g, r = cv2.split(bgr)
            chroma = cv2.subtract(cv2.max(cv2.max(b, g), r), cv2.min(cv2.min(b, g), r))
            self.chroma = chroma if first else cv2.min(self.chroma, chroma)

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
    picture: the changing region the box was taken from (the fan itself for a sector);
    for a given ROI, the ROI and every changing region large enough to be a picture
    (they are image, never UI to blank). active: uint8 0/255 mask of every changing
    pixel (after cleaning), the region included.
    threshold: the std (gray levels) above which a pixel counted as changing. noise: the
    typical std of the static part (capture/compression noise).
    activity: median temporal std inside the region. structure: neighbour-pixel
    correlation of the first frame inside the region. mean, std, chroma, late_changes:
    the `FrameStats` maps (chroma None for gray input, late_changes None for few frames).
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
    chroma: np.ndarray | None = None
    late_changes: np.ndarray | None = None


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
    noise correlates too). Whole real frames of the five data sets measured 0.75-0.97 here (docs/results.md), random
    noise 0.04-0.14.
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


def _changing(std: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(noise, threshold, active, closed): the changing pixels of a std map, cleaned.

    Open: isolated flickering pixels (compression noise at UI edges) go. Close: the
    speckle of dark image areas, whose std is low, joins the rest of the image.
    Sizes scale with the frame. Both maps are uint8 0/255.
    """
    h, w = std.shape
    noise = _noise_floor(std)
    threshold = max(ACTIVE_STD, 4.0 * noise)
    active = ((std > threshold) * 255).astype(np.uint8)
    active = cv2.morphologyEx(active, cv2.MORPH_OPEN, _kernel(3))
    closed = cv2.morphologyEx(active, cv2.MORPH_CLOSE, _kernel(_closing_size(h, w)))
    return noise, threshold, active, closed


def _closing_size(h: int, w: int) -> int:
    """Closing kernel (pixels, odd) for a ``w`` x ``h`` frame: ~1.2% of its shorter side."""
    return max(5, round(0.012 * min(h, w))) | 1


def _frozen_hint(std: np.ndarray) -> str:
    """The cause to name when nothing image-sized changes although the frames are not identical.

    A clean capture of a frozen screen has std 0 nearly everywhere; a noisy one (analogue
    source, MJPG) a small std nearly everywhere, UI included.
    """
    typical = float(np.median(std))
    if typical >= 0.2:
        return (f"the frames differ only by capture noise (~{typical:.1f} gray levels) and small UI elements: "
                "the image is frozen (or the probe is off the patient)")
    return "only small UI elements change: the image is frozen (or the probe is off the patient)"


def detect_roi(stats: FrameStats) -> Detection:
    """The ultrasound image's bounding box in frames summarised by ``stats``. Raises `CalibrationError`."""
    check_frames(stats)
    mean, std = stats.mean(), stats.std()
    h, w = std.shape
    noise, threshold, active, closed = _changing(std)
    n, labels, cc, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    if n <= 1:
        raise CalibrationError(
            f"no image region found: nothing in the frames changes more than {threshold:.1f} gray levels; "
            f"{_frozen_hint(std)}. Unfreeze and scan while calibrating, or give the region with --roi x,y,w,h"
        )
    best = 1 + int(np.argmax(cc[1:, cv2.CC_STAT_AREA]))
    area = int(cc[best, cv2.CC_STAT_AREA])
    if area < MIN_REGION_FRACTION * h * w:
        raise CalibrationError(
            f"no image region found: the largest changing region covers {100.0 * area / (h * w):.2f}% of the "
            f"{w}x{h} frame (at least {100 * MIN_REGION_FRACTION:.0f}% expected); {_frozen_hint(std)}. "
            "Unfreeze and scan while calibrating, or give the region with --roi x,y,w,h"
        )
    region = ((labels == best) * 255).astype(np.uint8)
    # A changing element closer to the image than the closing kernel (a readout a few pixels below it) is
    # joined to it and widens the box: a known limit (docs/operator.md), cutting such parts off also cut the calm tips
    # of real fans. --roi is the way out.
    roi = _box(cc, best)
    structure = _structure(stats.first, region, roi)
    activity = float(np.median(std[region > 0]))
    if structure < MIN_STRUCTURE:
        raise CalibrationError(
            f"no image region found: the changing region at x={roi.x} y={roi.y} w={roi.w} h={roi.h} looks like "
            f"random noise, not an ultrasound image (neighbouring pixels correlate {structure:.2f}, an image > "
            f"{MIN_STRUCTURE}): is the source showing a picture, or a capture card without signal?"
        )
    logger.info(
        "image region %s (%.1f%% of the frame), activity median %.1f gray levels (threshold %.1f), structure %.2f",
        roi, 100.0 * area / (h * w), activity, threshold, structure,
    )
    return Detection(roi, region, closed, threshold, noise, activity, structure, mean, std, stats.chroma,
                     stats.late_changes)


def _box(cc: np.ndarray, label: int) -> Roi:
    return Roi(*(int(cc[label, k]) for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH,
                                              cv2.CC_STAT_HEIGHT)))


def detection_for_roi(stats: FrameStats, roi: Roi) -> Detection:
    """A `Detection` for a ROI the user gave (``--roi``): the rectangle is the image's box.

    The frames are still checked (blank or identical frames raise): telling burned-in
    text from the image needs the image to change. A ROI of which less than
    `MIN_ROI_CHANGING` changes while a region large enough to be the image changes
    mostly outside it is a mistake (a box over the UI, or a typo): `CalibrationError`
    naming the region that does change. With no such region it is only logged (an
    image too calm for the detector is what ``--roi`` is for).

    Every changing region large enough to be a picture (`MIN_REGION_FRACTION` of the
    frame) counts as image, also outside the ROI: the full-frame recording keeps it,
    only small changing UI elements are blanked.
    """
    check_frames(stats)
    h, w = stats.shape
    check_roi(roi, w, h)
    mean, std = stats.mean(), stats.std()
    noise, threshold, active, closed = _changing(std)
    in_roi = np.zeros((h, w), bool)
    in_roi[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w] = True
    changing_share = float(np.count_nonzero(closed[in_roi])) / (roi.w * roi.h)
    n, labels, cc, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    pictures = [k for k in range(1, n) if cc[k, cv2.CC_STAT_AREA] >= MIN_REGION_FRACTION * h * w]
    region = in_roi.copy()
    for k in pictures:
        region |= labels == k
    if changing_share < MIN_ROI_CHANGING:
        where = "; no region of the frame changes like a live image either"
        if pictures:
            k = max(pictures, key=lambda j: cc[j, cv2.CC_STAT_AREA])
            b = _box(cc, k)
            inside = float(np.count_nonzero((labels == k) & in_roi)) / float(cc[k, cv2.CC_STAT_AREA])
            where = f", while the region x={b.x} y={b.y} w={b.w} h={b.h} does (the detected image)"
            if inside < 0.5:
                raise CalibrationError(
                    f"--roi x={roi.x} y={roi.y} w={roi.w} h={roi.h} barely changes: only "
                    f"{100 * changing_share:.0f}% of it changed during calibration{where}. A ROI over the "
                    f"machine's UI would show the network no image: give --roi {b.x},{b.y},{b.w},{b.h}, or leave "
                    "out --roi to detect it"
                )
        logger.warning(
            "--roi %s: only %.0f%% of it changed during calibration%s; burned-in marks inside it cannot be told "
            "from a still image (scan while calibrating)", roi, 100 * changing_share, where,
        )
    region_u8 = (region * 255).astype(np.uint8)
    activity = float(np.median(std[in_roi]))
    structure = _structure(stats.first, region_u8, roi)
    logger.info("image region given: %s, %.0f%% of it changing, activity median %.1f gray levels, structure %.2f",
                roi, 100 * changing_share, activity, structure)
    return Detection(roi, region_u8, closed, threshold, noise, activity, structure, mean, std, stats.chroma,
                     stats.late_changes)


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


def _image_marks(det: Detection, in_image: np.ndarray) -> np.ndarray:
    """Pixels of marks burned into the picture (``in_image``, bool HxW): bool HxW.

    Judged inside the convex hull of the picture (text at a calm edge of the image is a bay
    of the changing region, not a hole in it) and against the image around each pixel
    (medians over a window of `MARK_WINDOW` of the frame). A mark is any of:

    - still for the image around it (std at most `MARK_STILL` of the local std, which
      survives JPEG ringing), brighter than it by `MARK_BRIGHTER`, and a thin stroke
      (white top-hat >= `MARK_STROKE_CONTRAST`): text and line graphics;
    - pixel-exact still (std at most the capture noise floor) where the image around it
      clearly changes, not darker than it, in a spot of `MARK_FROZEN_AREA` pixels or more:
      text of any gray on a clean (HDMI) capture;
    - coloured in every frame, more than the image around it (`MARK_CHROMA`): B-mode is
      gray, and a tinted B-mode image is as coloured as its surroundings.

    Dark parts of the image (anechoic areas, the black below the picture) never qualify,
    and neither do the image's changing parts however bright.
    """
    h, w = in_image.shape
    out = np.zeros((h, w), bool)
    contours, _ = cv2.findContours(in_image.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = np.zeros((h, w), np.uint8)
    for c in contours:
        cv2.fillConvexPoly(hull, cv2.convexHull(c), 1)
    area = hull > 0
    ys, xs = np.nonzero(area)
    if ys.size == 0:
        return out
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    k = max(15, round(MARK_WINDOW * min(h, w))) | 1
    mean = np.clip(det.mean[y0:y1, x0:x1] + 0.5, 0, 255).astype(np.uint8)
    mean16 = mean.astype(np.int16)
    std = det.std[y0:y1, x0:x1]
    # medianBlur with a large window needs uint8: std in quarter gray levels (saturates at 63.75, far above
    # the std at which a pixel could pass as still).
    local_std = cv2.medianBlur(np.clip(std * 4.0 + 0.5, 0, 255).astype(np.uint8), k).astype(np.float32) / 4.0
    background = cv2.medianBlur(mean, k).astype(np.int16)
    floor = max(1.0, 2.0 * det.noise)
    stroke = cv2.morphologyEx(mean, cv2.MORPH_TOPHAT, _kernel(max(3, round(MARK_STROKE * min(h, w))) | 1))
    marks = ((std <= MARK_STILL * local_std) | (std <= floor)) & (mean16 >= background + MARK_BRIGHTER) \
        & (stroke >= MARK_STROKE_CONTRAST)
    # Pixel-exact still where the image around it changes 4x the noise floor; not darker than the image (10 gray
    # levels of slack for anti-aliasing) and not black (clipped anechoic pixels stand still too). A few isolated
    # image pixels also stand still (slow, saturated areas): a mark is more than a speck.
    frozen = ((std <= floor) & (local_std >= 4.0 * floor) & (mean16 >= background - 10) & (mean >= 40)).astype(
        np.uint8)
    n, labels, cc, _ = cv2.connectedComponentsWithStats(frozen, connectivity=8)
    big = cc[:, cv2.CC_STAT_AREA] >= MARK_FROZEN_AREA
    big[0] = False
    marks |= big[labels]
    if det.chroma is not None:
        chroma = det.chroma[y0:y1, x0:x1]
        marks |= chroma.astype(np.int16) >= cv2.medianBlur(chroma, k).astype(np.int16) + MARK_CHROMA
    out[y0:y1, x0:x1] = marks
    out &= area
    # The anti-aliased rim of a stroke is part image, so it changes more than the stroke: cover it from the core.
    return cv2.dilate(out.astype(np.uint8), _kernel(5)) > 0


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
    # Inside the image only pixels that do not change at all count as static for the contrast rule: a few image
    # pixels change little (saturated or slow areas) and must not be blanked for their edges.
    frozen = std <= max(1.0, 2.0 * det.noise)
    # Outside it, "live" is what still changes after the first frames: an MJPG encoder settling at the start
    # gives static text a high std, but leaves it alone afterwards.
    live = std > det.threshold
    if det.late_changes is not None:
        live &= det.late_changes > 0
    static = np.where(in_image, frozen, ~live)
    # Contrast counts only away from changing pixels: where a static area meets the live image (the fan's
    # edge, dim image borders) the mean image has edges that are not drawn UI.
    near_live = cv2.dilate(live.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    ink = (_static_contrast(mean, static) >= INK_CONTRAST) & ~near_live
    ink |= _image_marks(det, in_image)
    # Changing UI elements: active pixels outside the picture.
    ink |= (det.active > 0) & ~in_image
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
