"""Find the ultrasound image inside a machine's video-out frames, and the burned-in UI to blank.

The principle: over a few seconds of scanning the ultrasound image changes in
(nearly) every pixel, while the machine's user interface around it does not: text,
logos, scales and black borders stay put. So the per-pixel temporal standard
deviation over N frames (`FrameStats`) separates the two. But a probe held still
makes bright tissue (skin, fascia) stand as still as text: it flickers only with the
machine's noise, and where it is clipped white not at all. So stillness is trusted
only where the picture itself moved (the coarse copies of the frames, where noise
averages out, tell), and marks are otherwise told from tissue by their shape and
colour. `detect_roi`:

1. refuses inputs it cannot calibrate on, with a `CalibrationError` that says why
   (too few frames, blank frames, all frames identical);
2. thresholds the activity map low (`WEAK_STD` gray levels, raised above the noise
   floor of the static part when capture noise is high: a still probe's image still
   flickers), opens it to drop isolated noisy pixels, closes it so the speckle of
   dark image areas joins up, and keeps the largest connected region: small changing
   UI elements (a clock, a blinking dot, a frame counter) are separate, smaller
   regions; parts of the image that a still, bright band cuts off it join it
   (`_join_still_bands`);
3. fits the region's bounding box to the picture's edges line by line (`_fit_edges`):
   out over calm bands of the image, in over the UI border that JPEG ringing makes
   flicker; checks that the region looks like an image rather than noise
   (neighbouring pixels of an ultrasound image are strongly correlated; random noise
   from a capture card without signal is not);
4. says whether, and how long, the probe stood still (`Stillness`): the warning goes
   to the log, the result and the user.

`detection_for_roi` does the same checks for a ROI the user gave (``--roi``) and
refuses one that barely changes while a live image changes elsewhere.

`find_blank_regions` then lists what must never be recorded: static text and
graphics around the picture (static pixels with strong contrast to their static
neighbours: text on a UI bar, labels in the black corners beside a fan), the small
changing UI elements, and marks burned into the picture itself (`_image_marks`):
coloured in every frame while B-mode is gray; a line of text or a solid icon by
shape; and, where the picture moved, what stood still while it did. Tissue inside
the picture is never blanked for being static or bright alone. The marks are covered
by rectangles on a grid of cells, so a thin outline never turns into a box over the
whole image.

Tuned on tests/calibration: synthetic screens (synth.py) and real-looking ones
(realscreens.py: real frames under a dense UI, a still probe, MJPG; its table of ROI
edge errors and blanked tissue is printed by ``python -m tests.calibration.realscreens``).
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
# gray levels: temporal std above which a pixel clearly "changes" (live speckle is ~5-20, static UI ~0): frozen
# input, a given --roi, the UI's live parts
ACTIVE_STD = 2.5
WEAK_STD = 1.0  # gray levels: ... and above which it changes at all: the image region (a still probe's image
# flickers only with the machine's noise; JPEG ringing makes UI beside the image flicker too, see `_fit_edges`)
MIN_REGION_FRACTION = 0.02  # the image must cover at least this share of the frame
BLANK_RANGE = 10  # gray levels: frames whose mean image spans less (0.5-99.5 percentiles) show nothing
CHANGE_LEVEL = 2  # gray levels between consecutive frames that count as a change (`FrameStats.changes`)
SETTLE_FRAMES = 4  # an MJPG encoder may still settle over the first frames: `FrameStats.late_changes` skips them
STATIC_FRACTION = 0.0001  # fewer changing pixels than this share of the frame: the frames are identical
# neighbour-pixel correlation at 128 px: real frames 0.75-0.97 (docs/results.md), random noise < 0.15
MIN_STRUCTURE = 0.5
JOIN_MIN = 0.005  # share of the frame: a changing region this large beside the picture may be cut off it ...
JOIN_GAP = 0.08  # ... by a still band at most this share of the shorter side wide ...
JOIN_BRIGHT = 100  # ... and this bright (median gray level): saturated skin or fascia (`_join_still_bands`)
WEAK_SHARE = 0.5  # a line at the image's edge is picture when this share of it changes at all ...
UI_FLAT = 2.0  # ... unless it is flat (median step between neighbours along it, gray levels) ...
UI_DARK = 40  # ... dark, and flickers less than ACTIVE_STD: the UI border, ringing (`_image_line`)
EDGE_GROWTH = 0.15  # share of the frame's side: how far `_fit_edges` may move one side of the box out ...
EDGE_SHRINK = 8  # ... and pixels in (JPEG ringing reaches across one 8x8 block) ...
EDGE_RUN = 3  # ... to where this many lines in a row are picture (a 1 px scale line beside the image is not) ...
# Motion of the picture itself, from coarse copies of the frames (noise averages out, structure does not).
THUMB_SIDE = 72  # pixels: shorter side of the coarse copy of each frame
MAX_THUMBS = 512  # coarse copies kept; beyond, every other one goes (evenly spaced over all frames)
MOVED_STD = 2.5  # gray levels: temporal std of the coarse copies above which the image there moved
PAIR_MOVED = 1.5  # gray levels: mean coarse change over `PAIR_LAG` frames above which the probe moved
PAIR_LAG = 4  # distinct frames: a slow sweep moves little from one frame to the next, more over a few
STILL_SHARE = 1 / 3  # the probe stood still for this share of the frames or more: warned about
MIN_MOVED = 0.5  # less of the picture than this moved at all: warned about
INK_CONTRAST = 32  # gray levels between a static pixel and a static neighbour that make it text/graphics
# Marks burned into the image, judged against the image around them (a window of MARK_WINDOW of the frame's
# shorter side) rather than in absolute terms: MJPG compression makes a static mark flicker with the ringing of
# the live image beside it (its std rises with the image's), and coloured text is darker than white in gray.
# Tuned on tests/calibration (three real sequences in ten screens, JPEG quality 70-90; accuracy in
# docs/results.md). The stillness rules hold only where the picture moved (MOVED_STD).
MARK_WINDOW = 0.06
MARK_STILL = 0.6  # a mark's temporal std is at most this share of the image's around it (JPEG ringing: up to ~0.5)
MARK_BRIGHTER = 30  # gray levels its temporal mean lies above the image's around it (the median of the mean)
MARK_STROKE = 0.006  # share of the shorter side: strokes thinner than this stand out of the mean image (top-hat)...
MARK_STROKE_CONTRAST = 40  # ... by this many gray levels; the image's own bright bands are wider and softer
MARK_FROZEN_AREA = 12  # pixels: a pixel-exact still spot this large is a mark, smaller is image
SATURATED = 250  # gray levels: tissue at or above this may be clipped white, as still as text
MARK_CHROMA = 40  # colour (max - min of B, G, R) above the image's around it in every frame: B-mode is gray
# Marks told from tissue by shape (`_text_rows`, `_icons`): they must hold where the probe stood still. Tuned on
# tests/calibration/realscreens.py (real frames with a still probe under a dense UI, MJPG).
GLYPH_MIN = 0.008  # share of the shorter side: glyph heights from this (x-height of small machine fonts) ...
GLYPH_MAX = 0.035  # ... to this (capitals, digits, icons); 5-21 px at 600 lines
STROKE_MAX = 0.0025  # share of the shorter side: text strokes are at most this wide (at least 2 px)
RIDGE = 40  # gray levels a text stroke stands above the mean image a stroke-width away (top-hat)
ROW_GLYPHS = 3  # glyph-sized pieces side by side on one line that make a line of text
ROW_REACH = 4  # line heights a line of text may go on beyond its glyph-sized pieces (glyphs touching tissue)
ICON_STEP = 60  # gray levels a solid icon lies above the image 2 px around it
ICON_FLAT = 8  # gray levels: std of the mean image inside an icon (one colour; tissue varies)
ICON_SHARP = 0.85  # an icon's edge is a step: 1 px outside, the image is already this share of the way down
ICON_SOLID = 0.85  # area / convex hull area: icons are convex (triangle, disc), bright tissue is ragged
ICON_LEVELS = (200, 245)  # gray levels: icons are also cut out at these (beside bright tissue, see `_icons`)
MIN_ROI_CHANGING = 0.25  # a given ROI with less of it changing "barely changes" (a fan fills >= ~55% of its box)
MAX_BLANK_FRACTION = 0.25  # blanking more of the ROI than this is logged: much of the image stood still


class CalibrationError(NervesegError):
    """The frames cannot be calibrated on (the message says why and what to do). Exit code 2."""

    exit_code = 2


class FrameStats:
    """Running per-pixel mean and standard deviation of gray frames, keeping only coarse copies of them.

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
    ``thumbs`` are float32 coarse copies (`THUMB_SIDE` pixels on the shorter side) of the
    frames that differ from the one before, at most `MAX_THUMBS` evenly spaced: how the
    picture itself moved, with the noise averaged out (`Stillness`, `Detection.motion`).
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
        self.thumbs: list[np.ndarray] = []
        self._distinct = 0  # frames that differed from the one before
        self._thumb_every = 1

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
        if self.last is None or not np.array_equal(gray, self.last):
            self._add_thumb(gray)
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

    def _add_thumb(self, gray: np.ndarray) -> None:
        """Keep a coarse copy of a frame that differs from the one before (a 60 Hz capture of a 30 Hz
        screen repeats each frame: a repeat says nothing about motion)."""
        i = self._distinct
        self._distinct += 1
        if i % self._thumb_every:
            return
        if len(self.thumbs) == MAX_THUMBS:
            del self.thumbs[1::2]
            self._thumb_every *= 2
            if i % self._thumb_every:
                return
        h, w = gray.shape
        s = min(1.0, THUMB_SIDE / min(h, w))
        self.thumbs.append(cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))),
                                      interpolation=cv2.INTER_AREA).astype(np.float32))

    def mean(self) -> np.ndarray:
        """Per-pixel mean, float32 HxW."""
        return (self._sum / max(self.n, 1)).astype(np.float32)

    def std(self) -> np.ndarray:
        """Per-pixel temporal standard deviation (population), float32 HxW, gray levels."""
        m = self._sum / max(self.n, 1)
        var = self._sumsq / max(self.n, 1) - m * m
        return np.sqrt(np.maximum(var, 0.0)).astype(np.float32)


@dataclass(frozen=True)
class Stillness:
    """How much the picture moved while calibrating, from the coarse frames (`FrameStats.thumbs`).

    moved: share of the picture whose coarse temporal std reached `MOVED_STD` (gray
    levels): where it did not, bright tissue stood as still as burned-in text.
    still_pairs / pairs: pairs of coarse frames `PAIR_LAG` distinct frames apart whose
    mean change inside the picture stayed below `PAIR_MOVED` gray levels, of all such pairs.
    warning: a sentence for the log and the user when the probe stood still for
    `STILL_SHARE` of the time or more, or most of the picture never moved; else None.
    """

    moved: float
    still_pairs: int
    pairs: int
    warning: str | None


@dataclass(frozen=True)
class Detection:
    """What `detect_roi` found.

    roi: the image's bounding box in frame pixels. region: uint8 0/255 HxW mask of the
    picture: the changing region the box was taken from (the fan itself for a sector);
    for a given ROI, the ROI and every changing region large enough to be a picture
    (they are image, never UI to blank). active: uint8 0/255 mask of every changing
    pixel (after cleaning; for `detect_roi` not the weak ringing over dark UI), the
    region included.
    threshold: the std (gray levels) above which a pixel counted as changing. noise: the
    typical std of the static part (capture/compression noise).
    activity: median temporal std inside the region. structure: neighbour-pixel
    correlation of the first frame inside the region. mean, std, chroma, late_changes:
    the `FrameStats` maps (chroma None for gray input, late_changes None for few frames).
    motion: HxW float32, the temporal std of the coarse frames (`FrameStats.thumbs`)
    scaled back to the frame: how much the picture itself moved there, gray levels, with
    the capture and machine noise averaged out (None with fewer than `MIN_FRAMES`
    distinct frames). still: how long the probe stood still (`Stillness`).
    picture: bool HxW, where the image lies for the blanking rules (`find_blank_regions`):
    for `detect_roi` one convex hull around the region (whatever still bands cut it) and
    the calm bands the box grew over, within the box; None (`detection_for_roi`): the
    hull of each part of the region on its own (the ROI, other pictures).
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
    motion: np.ndarray | None = None
    still: Stillness | None = None
    picture: np.ndarray | None = None

    @property
    def still_probe(self) -> str | None:
        """The still-probe warning (see `Stillness.warning`), or None."""
        return None if self.still is None else self.still.warning


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


def _changing(std: np.ndarray, level: float = WEAK_STD, mean: np.ndarray | None = None
              ) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(noise, threshold, active, closed): the changing pixels of a std map, cleaned.

    Changing: std above ``level`` gray levels, or 4x the noise floor when that is higher.
    With the ``mean`` image, pixels that change less than `ACTIVE_STD` over dark UI
    (median of the mean around them below `UI_DARK`) do not count: JPEG ringing on the
    black border beside the image and around a scale drawn on it (dark tissue flickers
    more with the machine's noise).
    Open: isolated flickering pixels (compression noise at UI edges) go. Close: the
    speckle of dark image areas, whose std is low, joins the rest of the image.
    Sizes scale with the frame. Both maps are uint8 0/255.
    """
    h, w = std.shape
    noise = _noise_floor(std)
    threshold = max(level, 4.0 * noise)
    changing = std > threshold
    if mean is not None:
        dark = cv2.medianBlur(np.clip(mean + 0.5, 0, 255).astype(np.uint8), 5) < UI_DARK
        changing &= ~(dark & (std < ACTIVE_STD))
    active = (changing * 255).astype(np.uint8)
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


def _motion(stats: FrameStats, shape: tuple[int, int]) -> np.ndarray | None:
    """Temporal std of the coarse frames, resized to ``shape`` (float32 gray levels), or None (too few)."""
    if len(stats.thumbs) < MIN_FRAMES:
        return None
    coarse = np.std(np.stack(stats.thumbs), axis=0).astype(np.float32)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _stillness(stats: FrameStats, region: np.ndarray, motion: np.ndarray | None) -> Stillness | None:
    """`Stillness` of the picture ``region`` (uint8 0/255 HxW); None without enough coarse frames.

    Logs the warning when there is one.
    """
    if motion is None:
        return None
    inside = region > 0
    moved = float(np.mean(motion[inside] >= MOVED_STD)) if inside.any() else 0.0
    th, tw = stats.thumbs[0].shape
    small = cv2.resize(region, (tw, th), interpolation=cv2.INTER_AREA) >= 128
    if not small.any():
        small[:] = True
    lag = min(PAIR_LAG, len(stats.thumbs) - 1)
    thumbs = stats.thumbs
    diffs = [float(np.mean(np.abs(b[small] - a[small]))) for a, b in zip(thumbs, thumbs[lag:], strict=False)]
    pairs = len(diffs)
    still_pairs = sum(d < PAIR_MOVED for d in diffs)
    warning = None
    if pairs and (still_pairs >= STILL_SHARE * pairs or moved < MIN_MOVED):
        warning = (
            f"the probe stood still during calibration (no movement in {still_pairs} of {pairs} frame pairs; "
            f"{100 * moved:.0f}% of the image moved at all): bright tissue stands as still as "
            "burned-in text, so marks inside the image were told from tissue by shape and colour only. "
            "Calibrate again while moving the probe slowly over the patient for the most reliable blanking"
        )
        logger.warning("%s", warning)
    return Stillness(moved, still_pairs, pairs, warning)


def detect_roi(stats: FrameStats) -> Detection:
    """The ultrasound image's bounding box in frames summarised by ``stats``. Raises `CalibrationError`."""
    check_frames(stats)
    mean, std = stats.mean(), stats.std()
    h, w = std.shape
    noise, threshold, active, closed = _changing(std, WEAK_STD, mean)
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
    members = _join_still_bands(cc, best, mean, min(h, w))
    region = (np.isin(labels, members) * 255).astype(np.uint8)
    # A changing element closer to the image than the closing kernel (a readout a few pixels below it) is
    # joined to it and widens the box: a known limit (docs/operator.md), cutting such parts off also cut the calm tips
    # of real fans. --roi is the way out.
    area = int(cc[members, cv2.CC_STAT_AREA].sum())
    roi, bands = _fit_edges(_union_box(cc, members), region > 0, std, mean, threshold)
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
    motion = _motion(stats, (h, w))
    picture = _hull((region > 0) | bands, joint=True)
    outside = np.ones((h, w), bool)
    outside[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w] = False
    picture[outside] = False  # what the fitted box left out (ringing UI, a scale) is UI again
    return Detection(roi, region, closed, threshold, noise, activity, structure, mean, std, stats.chroma,
                     stats.late_changes, motion, _stillness(stats, region, motion), picture=picture)


def _image_line(std: np.ndarray, mean: np.ndarray, weak: float) -> bool:
    """Whether one line of pixels (a row or column segment; std and mean 1-D) is picture rather than UI.

    Picture: at least `WEAK_SHARE` of it changes by more than ``weak`` gray levels (a still
    probe's image still flickers with the machine's noise) or is clipped white
    (`SATURATED`: tissue with the gain up stands still there), and it is not the dark, flat
    UI border beside the image, which JPEG ringing makes flicker too (but less than
    `ACTIVE_STD`, where dark tissue flickers more).
    """
    # Clipped white counts as changing: skin or fascia saturated with the gain up stands still (UI is never that
    # white across the image's width).
    if std.size == 0 or float(np.mean((std > weak) | (mean >= SATURATED))) < WEAK_SHARE:
        return False
    flat = float(np.median(np.abs(np.diff(mean)))) < UI_FLAT if mean.size > 1 else True
    # Dark, smooth tissue flickers with noise well above ringing; the dark border only rings.
    return not (flat and float(np.median(mean)) < UI_DARK and float(np.median(std)) < ACTIVE_STD)


def _fit_edges(roi: Roi, region: np.ndarray, std: np.ndarray, mean: np.ndarray, weak: float
               ) -> tuple[Roi, np.ndarray]:
    """``roi`` with each side moved onto the picture's edge, line by line (`_image_line`).

    In: JPEG ringing makes the dark UI border beside the image flicker too, so the
    changing ``region`` (bool HxW) may take in a few lines of it. When the box's outermost
    line is not picture, the side moves in to the first of `EDGE_RUN` picture lines in a
    row, if that lies within `EDGE_SHRINK` pixels (as far as ringing reaches). A fan's apex
    and arcs stay: the lines near them lie mostly over the static corners beside the fan,
    so none is picture.
    Out: the region misses parts of the image that barely change: with a still probe, a
    calm band at the image's edge (skin, the near field) flickers only with the machine's
    noise. A side on picture moves out while the next line across the box's span is
    picture, up to `EDGE_GROWTH` of the frame's side. A fan's apex and arcs stop at once:
    the line beyond them lies over the static corners.
    The sides are tried again until none moves. Returns the box and a bool HxW mask of the
    bands added outside the original box.
    """
    h, w = std.shape
    e = [roi.y, roi.y + roi.h, roi.x, roi.x + roi.w]  # top, bottom, left, right (bottom, right exclusive)
    size = (h, h, w, w)
    inward = (1, -1, 1, -1)
    grown = [0, 0, 0, 0]
    shrunk = [0, 0, 0, 0]

    def line(side: int, at: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if side < 2:
            return std[at, e[2] : e[3]], mean[at, e[2] : e[3]], region[at, e[2] : e[3]]
        return std[e[0] : e[1], at], mean[e[0] : e[1], at], region[e[0] : e[1], at]

    def picture(side: int, at: int) -> bool:
        return 0 <= at < size[side] and _image_line(*line(side, at)[:2], weak)

    moved = True
    while moved:
        moved = False
        for side in range(4):
            outer = e[side] if inward[side] == 1 else e[side] - 1  # the box's outermost line on this side
            run = next((k for k in range(EDGE_SHRINK + 1 - shrunk[side])
                        if all(picture(side, outer + inward[side] * (k + j)) for j in range(EDGE_RUN))), None)
            if run:
                e[side] += inward[side] * run
                shrunk[side] += run
                moved = True
            elif run == 0:
                while grown[side] < EDGE_GROWTH * size[side] and picture(side, outer - inward[side]):
                    e[side] -= inward[side]
                    outer -= inward[side]
                    grown[side] += 1
                    moved = True
    y0, y1, x0, x1 = e
    bands = np.zeros((h, w), bool)
    if (x0, y0, x1, y1) != (roi.x, roi.y, roi.x + roi.w, roi.y + roi.h):
        bands[y0:y1, x0:x1] = True
        bands[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w] = False
        logger.info("image box %s fitted to x=%d y=%d w=%d h=%d on the picture's edges", roi, x0, y0, x1 - x0,
                    y1 - y0)
    return Roi(x0, y0, x1 - x0, y1 - y0), bands


def _union_box(cc: np.ndarray, labels: list[int]) -> Roi:
    boxes = [_box(cc, k) for k in labels]
    x0, y0 = min(b.x for b in boxes), min(b.y for b in boxes)
    x1, y1 = max(b.x + b.w for b in boxes), max(b.y + b.h for b in boxes)
    return Roi(x0, y0, x1 - x0, y1 - y0)


def _join_still_bands(cc: np.ndarray, best: int, mean: np.ndarray, short: int) -> list[int]:
    """Labels of the changing regions that make the picture: ``best`` and those a still bright band cuts off it.

    With a still probe a saturated skin line or fascia across the whole image stands still
    and splits the changing region in two. A region of at least `JOIN_MIN` of the frame
    beside the picture (sharing half the narrower one's width or height) joins it when
    the gap between them is at most `JOIN_GAP` of the frame's shorter side ``short`` and
    bright (median of the mean image ``mean`` at least `JOIN_BRIGHT`): tissue, not the
    dark border between two images of a dual display or between the image and the UI.
    """
    h, w = mean.shape
    members = [best]
    box = _box(cc, best)
    grown = True
    while grown:
        grown = False
        for k in range(1, cc.shape[0]):
            if k in members or cc[k, cv2.CC_STAT_AREA] < JOIN_MIN * h * w:
                continue
            b = _box(cc, k)
            ox = min(box.x + box.w, b.x + b.w) - max(box.x, b.x)
            oy = min(box.y + box.h, b.y + b.h) - max(box.y, b.y)
            # The gap between them across the span they share; boxes that overlap (a slanted band) have none, and
            # need no check: two images of a dual display never overlap.
            if ox >= 0.5 * min(box.w, b.w):  # above or below
                x0, x1 = max(box.x, b.x), min(box.x + box.w, b.x + b.w)
                y0, y1 = (box.y + box.h, b.y) if b.y >= box.y else (b.y + b.h, box.y)
                gap = y1 - y0
            elif oy >= 0.5 * min(box.h, b.h):  # left or right
                y0, y1 = max(box.y, b.y), min(box.y + box.h, b.y + b.h)
                x0, x1 = (box.x + box.w, b.x) if b.x >= box.x else (b.x + b.w, box.x)
                gap = x1 - x0
            else:
                continue
            if gap > JOIN_GAP * short:
                continue
            if gap > 0 and float(np.median(mean[y0:y1, x0:x1])) < JOIN_BRIGHT:
                continue
            members.append(k)
            box = _union_box(cc, members)
            grown = True
    return members


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
    # The user's box is the image: only "does it change at all like a live image" is asked, at the level a moving
    # image passes easily and a flickering MJPG UI bar does not.
    noise, threshold, active, closed = _changing(std, ACTIVE_STD)
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
    motion = _motion(stats, (h, w))
    return Detection(roi, region_u8, closed, threshold, noise, activity, structure, mean, std, stats.chroma,
                     stats.late_changes, motion, _stillness(stats, region_u8, motion))


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


def _hull(mask: np.ndarray, joint: bool = False) -> np.ndarray:
    """Bool HxW: the convex hulls of the outer contours of ``mask`` (uint8 0/255 or bool), each on its own,
    or (``joint``) one hull around all of them."""
    h, w = mask.shape
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = np.zeros((h, w), np.uint8)
    if joint and contours:
        contours = (np.concatenate(contours),)
    for c in contours:
        cv2.fillConvexPoly(hull, cv2.convexHull(c), 1)
    return hull > 0


def _rows(boxes: list[tuple[int, int, int, int]], gmax: int) -> list[list[int]]:
    """Indices of ``boxes`` (x, y, w, h) grouped into lines of text: side by side, overlapping in height.

    Two boxes are neighbours when the gap between them is at most 1.2 times the taller
    one's height, they share at least 60% of the shorter one's height and neither is
    more than 2.2 times as tall as the other (a glyph beside a fascia fragment is not).
    """
    parent = list(range(len(boxes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    order = sorted(range(len(boxes)), key=lambda i: boxes[i][0])
    for a, i in enumerate(order):
        xi, yi, wi, hi = boxes[i]
        for j in order[a + 1 :]:
            xj, yj, wj, hj = boxes[j]
            gap = xj - (xi + wi)
            if gap > 1.2 * gmax:
                break
            if gap <= 1.2 * max(hi, hj) and min(yi + hi, yj + hj) - max(yi, yj) >= 0.6 * min(hi, hj) \
                    and max(hi, hj) <= 2.2 * min(hi, hj):
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(boxes)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def _text_rows(mean: np.ndarray, area: np.ndarray, short: int) -> np.ndarray:
    """Bool mask of the boxes of text lines in the mean image ``mean`` (uint8) within ``area`` (bool).

    ``short``: the frame's shorter side (pixels), which sizes are relative to.

    Text is told from tissue by its shape alone, so this holds with a still probe, when
    bright tissue stands as still as text: strokes at most `STROKE_MAX` wide that stand
    `RIDGE` gray levels above the image a stroke away (a top-hat: tissue's bright bands
    are wider and softer), in glyph-sized pieces (`GLYPH_MIN` .. `GLYPH_MAX` of the shorter
    side tall) of which at least `ROW_GLYPHS` stand side by side on one line (speckle and
    fascia fragments do not line up like that). A piece wider than a glyph (letters that
    touch) may join a line but not make one.
    """
    h, w = mean.shape
    s = max(2, round(STROKE_MAX * short))
    ridge = cv2.morphologyEx(mean, cv2.MORPH_TOPHAT, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * s + 1,) * 2))
    ridge_ok = (ridge >= RIDGE) & area
    n, _, cc, _ = cv2.connectedComponentsWithStats(ridge_ok.astype(np.uint8), connectivity=8)
    gmin, gmax = max(4, round(GLYPH_MIN * short)), max(5, round(GLYPH_MAX * short))
    heights, widths = cc[1:, cv2.CC_STAT_HEIGHT], cc[1:, cv2.CC_STAT_WIDTH]
    ok = (heights >= gmin) & (heights <= gmax) & (widths <= 8 * gmax) & (cc[1:, cv2.CC_STAT_AREA] >= 4)
    pieces = [tuple(int(v) for v in cc[1 + i, :4]) for i in np.flatnonzero(ok)]
    out = np.zeros((h, w), bool)
    for row in _rows(pieces, gmax):
        glyphs = sum(pieces[i][2] <= 1.5 * gmax for i in row)
        if len(row) < ROW_GLYPHS or glyphs < ROW_GLYPHS - 1:
            continue
        x0 = min(pieces[i][0] for i in row)
        y0 = min(pieces[i][1] for i in row)
        x1 = max(pieces[i][0] + pieces[i][2] for i in row)
        y1 = max(pieces[i][1] + pieces[i][3] for i in row)
        # Glyphs at the line's ends that touch bright tissue are not glyph-sized pieces: the line goes on over ridges
        # in its band, a glyph gap at a time, for at most `ROW_REACH` line heights.
        cols = ridge_ok[y0:y1].any(axis=0)
        gap, reach = round(1.2 * (y1 - y0)), ROW_REACH * (y1 - y0)
        lo, hi = x0, x1
        while lo > max(0, x0 - reach) and cols[max(0, lo - gap) : lo].any():
            lo = max(0, lo - gap) + int(np.argmax(cols[max(0, lo - gap) : lo]))
        while hi < min(w, x1 + reach) and cols[hi : hi + gap].any():
            hi = hi + int(np.flatnonzero(cols[hi : hi + gap])[-1]) + 1
        # The whole line's box: dots, anti-aliasing and strokes too faint to pass alone lie in it.
        out[max(0, y0 - s) : y1 + s, max(0, lo - s) : hi + s] = True
    return out


def _glyph_sized(mask: np.ndarray, short: int) -> np.ndarray:
    """The pieces (8-connected) of ``mask`` (bool) no larger than a glyph: at most `GLYPH_MAX` of the
    frame's shorter side ``short`` tall and 1.5 times that wide, 4 pixels or more. A bright fascia
    that moved less than the image around it is longer; a speck is smaller."""
    n, labels, cc, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    gmax = max(5, round(GLYPH_MAX * short))
    keep = (cc[:, cv2.CC_STAT_HEIGHT] <= gmax) & (cc[:, cv2.CC_STAT_WIDTH] <= 1.5 * gmax) \
        & (cc[:, cv2.CC_STAT_AREA] >= 4)
    keep[0] = False
    return keep[labels]


def _icons(mean: np.ndarray, background: np.ndarray, area: np.ndarray, short: int) -> np.ndarray:
    """Bool mask of solid icons (a focus marker, a dot) in the mean image ``mean`` (float32) within ``area``.

    ``background``: the local median of the mean image (int16); ``short``: the frame's
    shorter side (pixels). An icon is a glyph-sized
    (`GLYPH_MIN` .. `GLYPH_MAX`), convex (`ICON_SOLID`), one-coloured (`ICON_FLAT`) spot that
    stands `ICON_STEP` above the image 2 px around it, with a sharp edge (`ICON_SHARP`):
    saturated tissue is as flat and bright, but its edge falls off over several pixels and
    its outline is ragged.
    """
    h, w = mean.shape
    gmin, gmax = max(4, round(GLYPH_MIN * short)), max(5, round(GLYPH_MAX * short))
    out = np.zeros((h, w), bool)
    k3, k5 = np.ones((3, 3), np.uint8), np.ones((5, 5), np.uint8)
    # Cut at the level of the image around it, and at fixed levels near white: an icon beside bright tissue joins
    # it at the first cut but stands alone at its own, higher level.
    for cut in (mean >= background + 0.75 * ICON_STEP, *(mean >= level for level in ICON_LEVELS)):
        n, labels, cc, _ = cv2.connectedComponentsWithStats((cut & area).astype(np.uint8), connectivity=8)
        for i in range(1, n):
            x, y, bw, bh, a = (int(v) for v in cc[i])
            if not (gmin <= bh <= gmax and gmin <= bw <= gmax):
                continue
            x0, y0, x1, y1 = max(0, x - 3), max(0, y - 3), min(w, x + bw + 3), min(h, y + bh + 3)
            comp = (labels[y0:y1, x0:x1] == i).astype(np.uint8)
            contours, _ = cv2.findContours(comp, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            hull_area = cv2.contourArea(cv2.convexHull(np.concatenate(contours)))
            core = cv2.erode(comp, k3) > 0
            if hull_area <= 0 or a < ICON_SOLID * hull_area or np.count_nonzero(core) < 3:
                continue
            inner = cv2.dilate(comp, k3) > 0
            ring1 = inner & (comp == 0)
            ring2 = (cv2.dilate(comp, k5) > 0) & ~inner
            m = mean[y0:y1, x0:x1]
            level = float(m[comp > 0].mean())
            step = level - float(m[ring2].mean())
            if float(m[core].std()) <= ICON_FLAT and step >= ICON_STEP \
                    and level - float(m[ring1].mean()) >= ICON_SHARP * step:
                out[y0:y1, x0:x1] |= comp > 0
    return out


def _image_marks(det: Detection, image: np.ndarray) -> np.ndarray:
    """Pixels of marks burned into the picture (``image``, bool HxW: its convex hull): bool HxW.

    Judged against the image around each pixel (medians over a window of `MARK_WINDOW`
    of the frame). Where the picture moved during calibration (the coarse motion around
    the pixel reaches `MOVED_STD`), standing still is evidence of a mark:

    - still for the image around it (std at most `MARK_STILL` of the local std, which
      survives JPEG ringing), brighter than it by `MARK_BRIGHTER`, and a thin stroke
      (white top-hat >= `MARK_STROKE_CONTRAST`): text and line graphics;
    - pixel-exact still (std at most the capture noise floor) where the image around it
      clearly changes, not darker than it, in a spot of `MARK_FROZEN_AREA` pixels or more,
      or with `INK_CONTRAST` to a pixel-exact neighbour: text of any gray on a clean capture.

    Where it did not move (a still probe), bright tissue stands as still as text, so
    stillness proves nothing there; everywhere, a mark is also any of:

    - coloured in every frame, more than the image around it (`MARK_CHROMA`): B-mode is
      gray, and a tinted B-mode image is as coloured as its surroundings;
    - a line of text (`_text_rows`) or a solid icon (`_icons`), by shape.

    Dark parts of the image (anechoic areas, the black below the picture) never qualify.
    """
    h, w = image.shape
    out = np.zeros((h, w), bool)
    ys, xs = np.nonzero(image)
    if ys.size == 0:
        return out
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    area = image[y0:y1, x0:x1]
    k = max(15, round(MARK_WINDOW * min(h, w))) | 1
    mean = np.clip(det.mean[y0:y1, x0:x1] + 0.5, 0, 255).astype(np.uint8)
    mean16 = mean.astype(np.int16)
    std = det.std[y0:y1, x0:x1]
    # medianBlur with a large window needs uint8: std in quarter gray levels (saturates at 63.75, far above
    # the std at which a pixel could pass as still).
    local_std = cv2.medianBlur(np.clip(std * 4.0 + 0.5, 0, 255).astype(np.uint8), k).astype(np.float32) / 4.0
    background = cv2.medianBlur(mean, k).astype(np.int16)
    if det.motion is None:
        moved = np.ones_like(area)
    else:
        motion = np.clip(det.motion[y0:y1, x0:x1] * 4.0 + 0.5, 0, 255).astype(np.uint8)
        moved = cv2.medianBlur(motion, k).astype(np.float32) / 4.0 >= MOVED_STD
    floor = max(1.0, 2.0 * det.noise)
    stroke = cv2.morphologyEx(mean, cv2.MORPH_TOPHAT, _kernel(max(3, round(MARK_STROKE * min(h, w))) | 1))
    marks = ((std <= MARK_STILL * local_std) | (std <= floor)) & (mean16 >= background + MARK_BRIGHTER) \
        & (stroke >= MARK_STROKE_CONTRAST)
    # Pixel-exact still where the image around it changes 4x the noise floor; not darker than the image (10 gray
    # levels of slack for anti-aliasing) and neither black nor white: tissue clipped at either end stands still
    # too (anechoic areas; skin and fascia with the gain up), white text is the stroke rule's. A few isolated
    # image pixels also stand still (slow areas): a mark is more than a speck.
    exact = std <= floor
    frozen = (exact & (local_std >= 4.0 * floor) & (mean16 >= background - 10) & (mean >= 40)
              & (mean < SATURATED)).astype(np.uint8)
    n, labels, cc, _ = cv2.connectedComponentsWithStats(frozen, connectivity=8)
    big = cc[:, cv2.CC_STAT_AREA] >= MARK_FROZEN_AREA
    big[0] = False
    marks |= big[labels]
    live = cv2.dilate((~exact).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    marks |= (_static_contrast(det.mean[y0:y1, x0:x1], exact & area) >= INK_CONTRAST) & ~live
    marks = _glyph_sized(marks & moved, min(h, w))
    if det.chroma is not None:
        chroma = det.chroma[y0:y1, x0:x1]
        marks |= chroma.astype(np.int16) >= cv2.medianBlur(chroma, k).astype(np.int16) + MARK_CHROMA
    marks |= _text_rows(mean, area, min(h, w))
    marks |= _icons(det.mean[y0:y1, x0:x1], background, area, min(h, w))
    out[y0:y1, x0:x1] = marks & area
    # The anti-aliased rim of a stroke is part image, so it changes more than the stroke: cover it from the core.
    return cv2.dilate(out.astype(np.uint8), _kernel(5)) > 0


def find_blank_regions(det: Detection) -> list[Roi]:
    """Rectangles (frame pixels) over burned-in text, graphics and changing UI, inside and around the ROI.

    See the module doc. The list may be empty (a bare image with no UI).
    """
    mean, std, roi = det.mean, det.std, det.roi
    h, w = std.shape
    # The picture's convex hull: text at a calm edge of the image is a bay of the changing region, and with a
    # still probe so is bright static tissue there (or a band across it); inside it only `_image_marks` decides.
    image = det.picture if det.picture is not None else _hull(det.region)
    # Outside it, "live" is what still changes after the first frames: an MJPG encoder settling at the start
    # gives static text a high std, but leaves it alone afterwards. (Not below ACTIVE_STD: JPEG ringing beside
    # static UI text changes by a gray level or two.)
    live = std > max(ACTIVE_STD, det.threshold)
    if det.late_changes is not None:
        live &= det.late_changes > 0
    # Contrast counts only away from changing pixels: where a static area meets the live image (the fan's
    # edge, dim image borders) the mean image has edges that are not drawn UI.
    near_live = cv2.dilate(live.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    ink = (_static_contrast(mean, ~live & ~image) >= INK_CONTRAST) & ~near_live & ~image
    ink |= _image_marks(det, image)
    # Changing UI elements: active pixels outside the picture, except its JPEG ringing (within one 8x8 block of it).
    ring = cv2.dilate(image.astype(np.uint8), np.ones((2 * EDGE_SHRINK + 1,) * 2, np.uint8)) > 0
    ink |= (det.active > 0) & ~ring
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
