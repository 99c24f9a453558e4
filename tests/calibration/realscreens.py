"""Real-looking machine screens: real ultrasound under a dense machine UI, with a still probe.

The screens of `tests.calibration.synth` were too kind: a sparse UI, an image that
changes everywhere. A real screen recording (a Philips machine at 800x600) had what
they lacked: many rows of small text in several fonts and colours, icons, a colour
logo, a depth scale, a grey bar, thumbnails of stored images, a clock and a frame
counter, marks drawn inside the image (a focus marker, text, an orientation mark),
MJPG compression, and a probe held still for seconds, so bright tissue (skin layers,
fascia) stood as still as the text. This module builds such screens from the real
frames in the shared data at test time (nothing data-derived is ever written to the
repository) and measures what `calibration.detect` makes of them.

A still probe is one real frame repeated with the machine's noise, which (added to
the echo before log compression) is strong in dark areas and fades in bright ones, so
bright tissue barely changes, and, with the gain up, is clipped white and does not
change at all; a hand's tremor may shift it by a fraction of a pixel.

`Screen` describes one; `render(screen, data_dir)` returns its frames and truth
(`Rendered`: the image box, the UI ink that must be blanked, the marks inside the
image); `measure` runs detection and blanking and returns the numbers the targets
are about (`Measure`). ``python -m tests.calibration.realscreens [NAME ...]`` prints
them as a table for every screen in `screens()` (the targets: every ROI edge within
2% of the side, at most 3% of the image's tissue blanked).
"""

from __future__ import annotations

import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.types import Roi
from tests.calibration.synth import trim_black

AA, PIX = cv2.LINE_AA, cv2.LINE_8
# (font, scale at 600 lines, thickness, line type): small machine fonts, anti-aliased and pixel fonts
FONTS = [
    (cv2.FONT_HERSHEY_SIMPLEX, 0.40, 1, AA),
    (cv2.FONT_HERSHEY_PLAIN, 0.90, 1, PIX),
    (cv2.FONT_HERSHEY_COMPLEX_SMALL, 0.60, 1, AA),
    (cv2.FONT_HERSHEY_DUPLEX, 0.38, 1, AA),
    (cv2.FONT_HERSHEY_SIMPLEX, 0.50, 1, PIX),
    (cv2.FONT_HERSHEY_PLAIN, 1.10, 1, AA),
]
WHITE, GREY, CYAN, YELLOW, GREEN, ORANGE = (255, 255, 255), (170, 170, 170), (255, 255, 0), (0, 230, 255), \
    (80, 230, 80), (0, 140, 255)
NOISE_FALL = 150.0  # gray levels brighter over which the still probe's noise falls tenfold
MARK_SEEN = 40  # gray levels (or colour) a mark pixel differs from the image under it to count as seen
PARAMS = ["2D", "Gn 52", "C 55", "Pers Med", "Res/Spd", "Gen", "12 MHz", "DR 60", "FR 32 Hz", "Depth 4.0 cm",
          "Focus 1.5", "XRes On", "SonoCT", "AutoSCAN", "Map 3", "Chroma Off"]


@dataclass(frozen=True)
class Screen:
    """One real-looking screen recording.

    size: (w, h) of the video-out frame. source: where the ultrasound comes from:
    ``regional-us:<video id>`` (real video, 20 fps), ``lung:<0|1>`` (real lung clip),
    ``kaggle:<subject>`` or ``usgra:<index>`` (one real frame). motion: ``moving``
    (consecutive video frames from ``start``), ``still`` (one frame repeated with the
    machine's noise: ``noise`` gray levels std in black areas, tenfold less every
    `NOISE_FALL` gray levels brighter), ``moving-still`` (the first half moving, then
    still on its last frame). jitter: a hand never holds a probe quite still: each still
    frame is also shifted by this much (std, source pixels). gain: multiplies the image's
    gray levels (clipped at 255): a machine with its gain up saturates skin and fascia.
    jpeg_quality: MJPG compression of every frame like a capture dongle (None: clean HDMI).
    """

    name: str
    size: tuple[int, int]
    source: str
    motion: str
    frames: int = 60
    jpeg_quality: int | None = 80
    noise: float = 14.0
    jitter: float = 0.0
    gain: float = 1.0
    start: int = 0


@dataclass
class Rendered:
    """Frames (BGR uint8) of a `Screen` and where the truth lies (all in frame pixels).

    image: the ultrasound image's box. ink: uint8 0/255 mask of every UI text, icon and
    mark pixel drawn (static or changing), which must be blanked. marks: the part of
    ``ink`` drawn inside the image (focus marker, text, orientation mark) that one can
    read (`_legible`). private: the patient's name and ID in the top bar.
    """

    frames: list[np.ndarray]
    image: Roi
    ink: np.ndarray
    marks: np.ndarray
    private: np.ndarray


def _read_video(path: Path, start: int, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    out = []
    while len(out) < n:
        ok, img = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    cap.release()
    assert len(out) == n, f"{path} has fewer than {start + n} frames"
    return out


def scan_frames(screen: Screen, data_dir: Path) -> list[np.ndarray]:
    """The gray ultrasound frames of ``screen`` (source resolution, black borders trimmed)."""
    kind, _, key = screen.source.partition(":")
    n = screen.frames
    moving = {"moving": n, "still": 1, "moving-still": n // 2}[screen.motion]
    if kind == "regional-us":
        frames = _read_video(data_dir / "regional-us" / "videos" / f"{key}.mp4", screen.start, moving)
    elif kind == "lung":
        clips = sorted((data_dir / "video-us-lung-linear").glob("*.mp4"))
        frames = _read_video(clips[int(key)], screen.start, moving)
    elif kind in ("kaggle", "usgra"):
        assert moving == 1, f"{screen.source} is one frame: only a still probe"
        p = (data_dir / "kaggle-bp" / "fullres" / "images" / f"{key}_1.png" if kind == "kaggle"
             else data_dir / "usgra-seg" / "images" / "train" / f"{int(key):04d}.png")
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        assert img is not None, f"cannot read {p}"
        frames = [img]
    else:
        raise ValueError(f"unknown source {screen.source!r}")
    frames = trim_black(frames)
    if screen.gain != 1.0:
        frames = [np.clip(f.astype(np.float32) * screen.gain, 0, 255).astype(np.uint8) for f in frames]
    rng = np.random.default_rng(zlib.crc32(screen.name.encode()))
    last = frames[-1].astype(np.float32)
    while len(frames) < n:
        # A probe held still: the same tissue, only the machine's noise changes (clipped like the display does).
        img = last
        if screen.jitter:
            m = np.float32([[1, 0, rng.normal(0, screen.jitter)], [0, 1, rng.normal(0, screen.jitter)]])
            img = cv2.warpAffine(last, m, (last.shape[1], last.shape[0]), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
        # Electronic noise is added to the echo before log compression: after it, dark areas flicker and
        # bright tissue barely moves (std falls tenfold every `NOISE_FALL` gray levels).
        sigma = screen.noise * np.power(10.0, -img / NOISE_FALL)
        frames.append(np.clip(img + rng.standard_normal(last.shape) * sigma, 0, 255).round().astype(np.uint8))
    return frames


class _Painter:
    """Draws onto the screen and, for what must be blanked, into the ink mask."""

    def __init__(self, w: int, h: int) -> None:
        self.canvas = np.zeros((h, w, 3), np.uint8)
        self.ink = np.zeros((h, w), np.uint8)
        self.private = np.zeros((h, w), np.uint8)  # the patient's name and ID
        self.u = h / 600  # sizes are given for 600 lines
        self.sx = w / 800  # positions are given for 800 columns

    def text(self, s: str, x: float, y: float, style: int, colour, canvas=None, ink=None,
             private: bool = False) -> None:
        font, scale, thick, line = FONTS[style % len(FONTS)]
        org = (round(x), round(y))
        scale *= self.u
        thick = max(1, round(thick * self.u))
        cv2.putText(self.canvas if canvas is None else canvas, s, org, font, scale, colour, thick, line)
        for mask in (self.ink if ink is None else ink, *((self.private,) if private else ())):
            cv2.putText(mask, s, org, font, scale, 255, thick, line)

    def shape(self, fn, *args, colour, canvas=None, ink=None, **kw) -> None:
        fn(self.canvas if canvas is None else canvas, *args, colour, **kw)
        fn(self.ink if ink is None else ink, *args, 255, **kw)


def _layout(w: int, h: int, scan_w: int, scan_h: int) -> Roi:
    """The image box: the scan's aspect, as large as fits between the side panels."""
    u, sx = h / 600, w / 800
    x0, x1, y0, y1 = 165 * sx, 665 * sx, 58 * u, 530 * u
    s = min((x1 - x0) / scan_w, (y1 - y0) / scan_h)
    bw, bh = round(scan_w * s), round(scan_h * s)
    return Roi(round((x0 + x1 - bw) / 2), round(y0), bw, bh)


def _static_ui(p: _Painter, box: Roi, thumbs: list[np.ndarray]) -> None:
    """The interface around the image: bars, logo, text rows, scale, grey bar, thumbnails, icons."""
    h, w = p.ink.shape
    u, sx = p.u, p.sx
    c = p.canvas
    cv2.rectangle(c, (0, 0), (w - 1, round(46 * u)), (52, 38, 26), -1)
    cv2.rectangle(c, (0, round(540 * u)), (w - 1, h - 1), (40, 30, 22), -1)
    cv2.rectangle(c, (0, round(47 * u)), (round(150 * sx), round(539 * u)), (24, 20, 16), -1)
    # Colour logo: a blue shield with a white wave and a brand name.
    lx, ly, lw, lh = round(6 * sx), round(5 * u), round(30 * u), round(36 * u)
    shield = np.array([[lx, ly], [lx + lw, ly], [lx + lw, ly + lh * 2 // 3], [lx + lw // 2, ly + lh],
                       [lx, ly + lh * 2 // 3]], np.int32)
    p.shape(cv2.fillPoly, [shield], colour=(190, 110, 20))
    for k in range(3):
        yy = ly + round((8 + 8 * k) * u)
        p.shape(cv2.line, (lx + 4, yy), (lx + lw - 4, yy - round(3 * u)), colour=WHITE, thickness=max(1, round(u)))
    p.text("SONOMED", lx + lw + 6 * sx, 20 * u, 3, WHITE)
    p.text("EPIQ-like 7", lx + lw + 6 * sx, 38 * u, 1, GREY)
    p.text("DOE, JANE   ID 00912345", 190 * sx, 18 * u, 0, WHITE, private=True)
    p.text("St. Example Hospital  Anaesthesia", 190 * sx, 38 * u, 1, GREY)
    p.text("MI 0.7  TIb 0.1", 470 * sx, 18 * u, 2, CYAN)
    p.text("L12-4 / Nerve", 470 * sx, 38 * u, 4, YELLOW)
    p.text("2024/05/17", 660 * sx, 18 * u, 5, WHITE)
    # Left panel: parameter rows in alternating fonts and colours.
    colours = [WHITE, CYAN, GREY, GREEN, WHITE, YELLOW]
    for i, s in enumerate(PARAMS):
        p.text(s, 8 * sx, (70 + 29 * i) * u, i, colours[i % len(colours)])
    # Depth scale right of the image: ticks every 0.5 cm, labels every cm.
    x = box.x + box.w + round(6 * sx)
    p.shape(cv2.line, (x, box.y), (x, box.y + box.h - 1), colour=GREY, thickness=1)
    for k in range(9):
        y = box.y + round(k * (box.h - 1) / 8)
        major = k % 2 == 0
        p.shape(cv2.line, (x, y), (x + round((10 if major else 5) * u), y), colour=WHITE if major else GREY,
                thickness=max(1, round(u)))
        if major:
            p.text(str(k // 2), x + 13 * u, y + 5 * u, 0, WHITE)
    # Grey bar (a gradient: UI, but not text) with a frame, and its label.
    gx, gy, gw, gh = round(770 * sx), round(80 * u), round(12 * u), round(160 * u)
    ramp = np.linspace(255, 0, gh).astype(np.uint8)[:, None, None]
    c[gy : gy + gh, gx : gx + gw] = np.repeat(np.repeat(ramp, gw, axis=1), 3, axis=2)
    p.shape(cv2.rectangle, (gx - 1, gy - 1), (gx + gw, gy + gh), colour=GREY, thickness=1)
    p.text("G3", gx - 2 * sx, gy + gh + 16 * u, 1, WHITE)
    p.text("P 100%", 730 * sx, 300 * u, 0, CYAN)
    p.text("HPen", 730 * sx, 322 * u, 2, WHITE)
    # Bottom strip: stored-image thumbnails (static pictures, not UI text), icons, labels.
    tw, th = round(64 * u), round(48 * u)
    for k, t in enumerate(thumbs):
        tx, ty = round((170 + 74 * k) * sx), round(546 * u)
        c[ty : ty + th, tx : tx + tw] = cv2.cvtColor(cv2.resize(t, (tw, th), interpolation=cv2.INTER_AREA),
                                                    cv2.COLOR_GRAY2BGR)
        p.shape(cv2.rectangle, (tx - 1, ty - 1), (tx + tw, ty + th), colour=GREY, thickness=1)
    bx, by = round(480 * sx), round(556 * u)
    p.shape(cv2.rectangle, (bx, by), (bx + round(26 * u), by + round(12 * u)), colour=WHITE, thickness=1)
    p.shape(cv2.rectangle, (bx + 2, by + 2), (bx + round(18 * u), by + round(10 * u)), colour=GREEN, thickness=-1)
    p.shape(cv2.circle, (round(530 * sx), round(562 * u)), round(6 * u), colour=(40, 40, 220), thickness=-1)
    p.shape(cv2.rectangle, (round(548 * sx), round(555 * u)), (round(566 * sx), round(569 * u)), colour=WHITE,
            thickness=1)
    p.text("Store", 580 * sx, 566 * u, 3, WHITE)
    p.text("Print", 630 * sx, 566 * u, 5, GREY)
    p.text("Freeze", 680 * sx, 566 * u, 0, YELLOW)
    p.text("Review", 8 * sx, 560 * u, 2, WHITE)


def _image_marks(p: _Painter, box: Roi, canvas: np.ndarray, ink: np.ndarray) -> None:
    """Marks the machine draws over the image: text in its corner, an orientation mark, a focus marker."""
    u = p.u
    p.text("12 MHz  Gen", box.x + 8 * u, box.y + 16 * u, 1, WHITE, canvas, ink)
    p.text("x1.2", box.x + box.w - 40 * u, box.y + box.h - 10 * u, 0, GREY, canvas, ink)
    cx, cy, r = box.x + round(16 * u), box.y + round(32 * u), round(6 * u)
    p.shape(cv2.circle, (cx, cy), r, colour=ORANGE, thickness=-1, canvas=canvas, ink=ink)
    p.shape(cv2.circle, (cx, cy), max(1, r // 3), colour=WHITE, thickness=-1, canvas=canvas, ink=ink)
    fy = box.y + round(0.35 * box.h)
    fx = box.x + box.w - round(4 * u)
    tri = np.array([[fx, fy], [fx - round(9 * u), fy - round(6 * u)], [fx - round(9 * u), fy + round(6 * u)]],
                   np.int32)
    p.shape(cv2.fillPoly, [tri], colour=WHITE, canvas=canvas, ink=ink)


def _changing_ui(p: _Painter, canvas: np.ndarray, ink: np.ndarray, i: int, n: int) -> None:
    """What a screen changes while scanning: a clock, a frame counter, the cine bar."""
    u, sx = p.u, p.sx
    p.text(f"10:42:{7 + i // 30:02d}", 660 * sx, 38 * u, 0, WHITE, canvas, ink)
    p.text(f"F {i + 1}/{n}", 8 * sx, 586 * u, 0, WHITE, canvas, ink)
    x0, y0, x1 = round(170 * sx), round(596 * u) - 6, round(460 * sx)
    p.shape(cv2.rectangle, (x0, y0), (x1, y0 + 4), colour=GREY, thickness=1, canvas=canvas, ink=ink)
    fill = x0 + round((x1 - x0) * (i + 1) / n)
    p.shape(cv2.rectangle, (x0, y0), (fill, y0 + 4), colour=CYAN, thickness=-1, canvas=canvas, ink=ink)


def render(screen: Screen, data_dir: Path) -> Rendered:
    """The frames of ``screen`` and its truth (see `Rendered`)."""
    scans = scan_frames(screen, data_dir)
    w, h = screen.size
    p = _Painter(w, h)
    box = _layout(w, h, scans[0].shape[1], scans[0].shape[0])
    thumbs = [scans[0], cv2.flip(scans[-1], 1), scans[len(scans) // 2][::-1]]
    _static_ui(p, box, thumbs)
    marks = np.zeros((h, w), np.uint8)
    out = []
    for i, scan in enumerate(scans):
        frame = p.canvas.copy()
        img = cv2.resize(scan, (box.w, box.h), interpolation=cv2.INTER_LINEAR)
        frame[box.y : box.y + box.h, box.x : box.x + box.w] = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        under = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if i == 0 else None
        _image_marks(p, box, frame, marks if i == 0 else np.zeros_like(marks))
        if under is not None:
            _legible(marks, frame, under)
        _changing_ui(p, frame, p.ink, i, len(scans))
        if screen.jpeg_quality:
            ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, screen.jpeg_quality])
            assert ok
            frame = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        out.append(frame)
    return Rendered(out, box, np.maximum(p.ink, marks), marks, p.private)


def _chroma(bgr: np.ndarray) -> np.ndarray:
    return (bgr.max(axis=2).astype(np.int16) - bgr.min(axis=2)).astype(np.uint8)


def _legible(marks: np.ndarray, frame: np.ndarray, under: np.ndarray) -> None:
    """Keep in ``marks`` (uint8, changed in place) only the glyphs and icons one can read in ``frame``.

    White text over saturated tissue shows nothing; a glyph (a connected piece of the
    drawing) of which less than half differs by `MARK_SEEN` from the gray image ``under``
    it (or is as coloured) is not legible, and no rule could find it: it is dropped.
    """
    seen = (cv2.absdiff(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), under) >= MARK_SEEN) | (_chroma(frame) >= MARK_SEEN)
    n, labels = cv2.connectedComponents((marks > 0).astype(np.uint8), connectivity=8)
    for i in range(1, n):
        piece = labels == i
        if seen[piece].mean() < 0.5:
            marks[piece] = 0


def screens() -> list[Screen]:
    """The screen recordings the real-screen tests and the table run."""
    return [
        # As reported: 800x600, a probe held still for the whole 2 s, MJPG.
        Screen("800x600-still-rus2724", (800, 600), "regional-us:2724", "still", jpeg_quality=80),
        Screen("800x600-still-gain-rus4064", (800, 600), "regional-us:4064", "still", jpeg_quality=85, gain=1.35,
               jitter=0.3),
        Screen("800x600-still-hgain-kaggle1", (800, 600), "kaggle:1", "still", jpeg_quality=80, gain=1.6),
        Screen("800x600-moving-still-rus2621", (800, 600), "regional-us:2621", "moving-still", jpeg_quality=75),
        Screen("800x600-still-kaggle", (800, 600), "kaggle:1", "still", jpeg_quality=90, noise=16.0),
        Screen("800x600-moving-lung", (800, 600), "lung:0", "moving", jpeg_quality=70, frames=40),
        Screen("800x600-still-clean-rus8896", (800, 600), "regional-us:8896", "still", jpeg_quality=None, gain=1.2,
               noise=12.0, jitter=0.2),
        Screen("1024x768-still-rus9101", (1024, 768), "regional-us:9101", "still", jpeg_quality=80, gain=1.2,
               frames=40),
        Screen("1280x720-still-lung", (1280, 720), "lung:1", "still", jpeg_quality=85, frames=40),
        Screen("1080p-still-usgra", (1920, 1080), "usgra:5", "still", jpeg_quality=80, frames=40),
        Screen("1080p-moving-still-rus4064", (1920, 1080), "regional-us:4064", "moving-still", jpeg_quality=85,
               frames=40, gain=1.3),
        Screen("1080p-moving-rus2002", (1920, 1080), "regional-us:2002", "moving", jpeg_quality=75, frames=40),
        Screen("1080p-still-kaggle-gain", (1920, 1080), "kaggle:2", "still", jpeg_quality=70, frames=40,
               gain=1.3, jitter=0.3),
    ]


@dataclass
class Measure:
    """What detection and blanking made of one screen.

    roi_errors: |error| of left, top, right, bottom, % of the true box's width or height.
    tissue_blanked: % of the true image's area (less the marks drawn in it, dilated 4 px)
    inside blanking regions. marks_missed / ink_missed: % of the mark / UI ink pixels
    (> 128) not blanked. regions: how many rectangles; frame_blanked: % of the frame.
    still: the still-probe warning, or None. seconds: detection + blanking time.
    """

    name: str
    roi: Roi
    roi_errors: list[float]
    tissue_blanked: float
    marks_missed: float
    ink_missed: float
    private_missed: float
    regions: int
    frame_blanked: float
    still: str | None
    seconds: float
    covered: np.ndarray = field(repr=False)


def covered_mask(rects: list[Roi], shape: tuple[int, int]) -> np.ndarray:
    m = np.zeros(shape, bool)
    for r in rects:
        m[r.y : r.y + r.h, r.x : r.x + r.w] = True
    return m


def measure(name: str, r: Rendered) -> Measure:
    """Detect the ROI and the blanking regions in ``r``'s frames (as `nerveseg calibrate` does) and score them."""
    from calibration.detect import FrameStats, detect_roi, find_blank_regions

    t0 = time.perf_counter()
    st = FrameStats()
    for f in r.frames:
        st.add(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), f)
    det = detect_roi(st)
    rects = find_blank_regions(det)
    seconds = time.perf_counter() - t0
    h, w = r.ink.shape
    cov = covered_mask(rects, (h, w))
    t = r.image
    found = det.roi
    errors = [100 * abs(found.x - t.x) / t.w, 100 * abs(found.y - t.y) / t.h,
              100 * abs(found.x + found.w - t.x - t.w) / t.w, 100 * abs(found.y + found.h - t.y - t.h) / t.h]
    tissue = np.zeros((h, w), bool)
    tissue[t.y : t.y + t.h, t.x : t.x + t.w] = True
    tissue &= ~(cv2.dilate(r.marks, np.ones((9, 9), np.uint8)) > 0)
    marks = r.marks > 128
    ui = (r.ink > 128) & ~marks
    return Measure(
        name, found, errors,
        tissue_blanked=100 * float(cov[tissue].mean()),
        marks_missed=100 * float((~cov[marks]).mean()),
        ink_missed=100 * float((~cov[ui]).mean()),
        private_missed=100 * float((~cov[r.private > 128]).mean()),
        regions=len(rects),
        frame_blanked=100 * float(cov.mean()),
        still=getattr(det, "still_probe", None),  # (getattr: the table also runs on older detect.py)
        seconds=seconds,
        covered=cov,
    )


def table(rows: list[Measure]) -> str:
    head = (f"{'screen':32} {'ROI edge err % (l t r b)':>26} {'tissue blanked %':>17} {'marks missed %':>15} "
            f"{'UI ink missed %':>16} {'name missed %':>14} {'regions':>8} {'frame %':>8} {'still warning':>14} "
            f"{'s':>5}")
    lines = [head, "-" * len(head)]
    for m in rows:
        errs = " ".join(f"{e:5.1f}" for e in m.roi_errors)
        lines.append(f"{m.name:32} {errs:>26} {m.tissue_blanked:17.2f} {m.marks_missed:15.2f} {m.ink_missed:16.2f} "
                     f"{m.private_missed:14.2f} {m.regions:8d} {m.frame_blanked:8.1f} {'yes' if m.still else 'no':>14} "
                     f"{m.seconds:5.2f}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Print the table for every screen (or those whose name contains an argument); the data folder from edge.paths."""
    from edge.paths import shared_data_dir

    data = shared_data_dir()
    if not (data / "regional-us" / "manifest.csv").is_file():
        print(f"real data not found at {data} (set NERVESEG_DATA)", file=sys.stderr)
        return 2
    rows = []
    for s in screens():
        if argv and not any(a in s.name for a in argv):
            continue
        try:
            rows.append(measure(s.name, render(s, data)))
        except Exception as e:  # noqa: BLE001 - the table goes on; the failure is the row
            print(f"{s.name:32} FAILED: {e}", flush=True)
            continue
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
