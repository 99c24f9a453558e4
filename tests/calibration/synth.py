"""Synthetic ultrasound-machine screens around real ultrasound frames, with the truth known.

A real machine's video out shows its image inside a user interface: patient and
settings text, a logo, a depth scale, black borders; linear, sector or curved
images. `Layout` describes one such screen; `render_sequence` pastes a short
sequence of real frames (lung clips or Kaggle frames of one scan, read at test
time from the shared data) into it. The pasted image's bounding box is
`Layout.truth` (for a sector or curved image: the box of the fan), and
`Layout.ink` lists where text and graphics were drawn, so tests can check both
the detected ROI and the blanking regions.

The UI is static except where a real machine also changes something: a
blinking dot, a clock, a frame-rate readout that changes now and then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.types import Roi

FONT = cv2.FONT_HERSHEY_SIMPLEX
PATIENT_TEXT = "DOE^JANE  ID 00912345  DOB 1970-01-01"
IMAGE_TEXT = "JANE DOE 00912345"


def trim_black(frames: list[np.ndarray], level: int = 24, share: float = 0.02) -> list[np.ndarray]:
    """Crop the frames to the rows and columns where at least ``share`` of the pixels are,
    in some frame, brighter than ``level``.

    Real clips carry black strips of their own (the 234x234 lung clip has ~28 black
    columns, the 208x208 one 3 with a single stray pixel among them): without trimming,
    the truth would include pixels no detector can tell from a black border.
    """
    peak = np.max(np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) if f.ndim == 3 else f for f in frames]), axis=0)
    lit = peak > level
    xs = np.nonzero(lit.mean(axis=0) >= share)[0]
    ys = np.nonzero(lit.mean(axis=1) >= share)[0]
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return [f[y0:y1, x0:x1] for f in frames]


def read_clip(path: Path, n: int, step: int = 3, start: int = 0) -> list[np.ndarray]:
    """``n`` gray frames of a video, every ``step``-th from ``start`` (changes a little between them)."""
    cap = cv2.VideoCapture(str(path))
    out: list[np.ndarray] = []
    i = 0
    while len(out) < n:
        ok, img = cap.read()
        if not ok:
            break
        if i >= start and (i - start) % step == 0:
            out.append(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
        i += 1
    cap.release()
    assert len(out) == n, f"{path} has fewer than {start + n * step} frames"
    return trim_black(out)


def read_kaggle(folder: Path, subject: int, n: int) -> list[np.ndarray]:
    """``n`` full-resolution Kaggle frames of one subject (one scan: neighbours differ a little)."""
    paths = [folder / f"{subject}_{i}.png" for i in range(1, n + 1)]
    frames = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]
    assert all(f is not None for f in frames), f"missing Kaggle frames of subject {subject} in {folder}"
    return trim_black(frames)


@dataclass
class Layout:
    """One synthetic machine screen.

    size: (w, h) of the video-out frame. image: where the ultrasound image box lies.
    shape: "linear" (the whole box), "sector" (a fan from an apex at the top centre)
    or "curved" (a convex probe's annular sector). theme: "dark" (black borders,
    dark panels, light text) or "light" (light-gray bars with dark text).
    in_image_logo: a small static logo drawn over the image's top-left corner.
    image_text: BGR colour of a static patient line burned into the image itself (as
    some machines overlay name and ID on the picture), or None; it sits over the
    content (the fan's middle for a sector or curved image, low left for a linear one).
    Coloured text is darker in gray than white: green (0, 255, 0) is gray 150.
    clock: a clock text that changes every frame; blink: a dot that blinks.
    """

    name: str
    size: tuple[int, int]
    image: Roi
    shape: str = "linear"
    theme: str = "dark"
    angle_deg: float = 80.0
    in_image_logo: bool = False
    image_text: tuple[int, int, int] | None = None
    clock: bool = True
    blink: bool = True
    jpeg_quality: int | None = None  # simulate an MJPG capture dongle
    ink: list[Roi] = field(default_factory=list)  # filled by render: boxes of the text/graphics drawn
    ink_mask: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint8))  # their pixels (> 128)
    patient: Roi | None = None  # filled by render: the patient-name text
    _fan: np.ndarray | None = field(default=None, repr=False)

    def fan_mask(self) -> np.ndarray:
        """uint8 0/255 mask of the image content inside ``image`` (the box itself for linear)."""
        r = self.image
        if self.shape == "linear":
            return np.full((r.h, r.w), 255, np.uint8)
        if self._fan is None:
            mx, _ = _fan_maps(self, 2, 2)
            self._fan = ((mx >= 0) * 255).astype(np.uint8)
        return self._fan

    @property
    def truth(self) -> Roi:
        """Bounding box of the image content in frame pixels."""
        m = self.fan_mask()
        ys, xs = np.nonzero(m)
        return Roi(self.image.x + int(xs.min()), self.image.y + int(ys.min()),
                   int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))


def _fan_maps(lay: Layout, src_w: int, src_h: int) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps that warp a (src_h, src_w) rectangular scan into the layout's fan (-1 outside)."""
    r = lay.image
    half = math.radians(lay.angle_deg) / 2
    # Radii: the fan's bottom arc touches the box bottom; its width fits the box.
    if lay.shape == "sector":
        r0 = 0.0
        apex_y = 0.0
    else:  # curved: the apex lies above the box, the top arc is the probe face
        r0 = 0.45 * r.h
        apex_y = -r0 * math.cos(half)
    r1 = r.h - apex_y
    r1 = min(r1, (r.w / 2) / math.sin(half))
    apex_x = r.w / 2
    ys, xs = np.mgrid[0 : r.h, 0 : r.w].astype(np.float32)
    dx, dy = xs - apex_x, ys - apex_y
    rad = np.sqrt(dx * dx + dy * dy)
    theta = np.arctan2(dx, dy)
    inside = (rad >= r0) & (rad <= r1) & (np.abs(theta) <= half)
    map_y = np.where(inside, (rad - r0) / (r1 - r0) * (src_h - 1), -1).astype(np.float32)
    map_x = np.where(inside, (theta + half) / (2 * half) * (src_w - 1), -1).astype(np.float32)
    return map_x, map_y


def _text(canvas: np.ndarray, lay: Layout, s: str, x: int, y: int, scale: float, color, thick: int) -> Roi:
    (tw, th), base = cv2.getTextSize(s, FONT, scale, thick)
    cv2.putText(canvas, s, (x, y), FONT, scale, color, thick, cv2.LINE_AA)
    cv2.putText(lay.ink_mask, s, (x, y), FONT, scale, 255, thick, cv2.LINE_AA)
    box = Roi(x, y - th, tw, th + base)
    lay.ink.append(box)
    return box


def _static_ui(lay: Layout) -> np.ndarray:
    """The screen without the image and without the elements that change."""
    fw, fh = lay.size
    r = lay.image
    dark = lay.theme == "dark"
    canvas = np.zeros((fh, fw, 3), np.uint8)
    fg = (235, 235, 235) if dark else (30, 30, 30)
    dim = (150, 150, 150) if dark else (70, 70, 70)
    bar = (38, 38, 38) if dark else (205, 205, 205)
    bar_h = max(24, round(0.055 * fh))
    cv2.rectangle(canvas, (0, 0), (fw - 1, bar_h), bar, -1)
    cv2.rectangle(canvas, (0, fh - bar_h), (fw - 1, fh - 1), bar, -1)
    s = fh / 1080
    lay.ink.clear()
    lay.ink_mask = np.zeros((fh, fw), np.uint8)
    # Logo: a framed box with letters, top left.
    lx, ly, lw, lh = round(0.01 * fw), round(0.15 * bar_h), round(0.06 * fw), round(0.7 * bar_h)
    cv2.rectangle(canvas, (lx, ly), (lx + lw, ly + lh), (230, 200, 60), max(1, round(2 * s)))
    cv2.rectangle(lay.ink_mask, (lx, ly), (lx + lw, ly + lh), 255, max(1, round(2 * s)))
    lay.ink.append(Roi(lx, ly, lw + 1, lh + 1))
    _text(canvas, lay, "USX", lx + round(0.15 * lw), ly + round(0.75 * lh), 0.9 * s, (230, 200, 60),
          max(1, round(2 * s)))
    lay.patient = _text(canvas, lay, PATIENT_TEXT, lx + lw + round(0.02 * fw), round(0.7 * bar_h), 0.8 * s, fg,
                        max(1, round(2 * s)))
    _text(canvas, lay, "St. Example Hospital", round(0.62 * fw), round(0.7 * bar_h), 0.7 * s, dim, max(1, round(s)))
    # Settings panel left of the image (if there is room) else in the bottom bar.
    lines = ["B-mode", "Gain 54", "DR 66", "Freq 12 MHz", "Depth 4.5", "Focus 2.0", "MI 0.8", "TIS 0.3"]
    if r.x > 0.08 * fw:
        if not dark:
            cv2.rectangle(canvas, (0, bar_h + 1), (round(0.12 * fw), fh - bar_h - 1), bar, -1)
        for i, t in enumerate(lines):
            py = bar_h + round((i + 1.5) * 0.045 * fh)
            _text(canvas, lay, t, round(0.01 * fw), py, 0.7 * s, fg if i == 0 else dim, max(1, round(2 * s)))
    else:
        _text(canvas, lay, "   ".join(lines[:5]), round(0.01 * fw), fh - round(0.3 * bar_h), 0.6 * s, dim,
              max(1, round(s)))
    # Depth scale right of the image, on the black around it: ticks every 0.5 cm, labels every cm.
    fg, dim = (235, 235, 235), (150, 150, 150)
    t = lay.truth
    sx = t.x + t.w + max(6, round(0.01 * fw))
    if sx + 40 * s < fw:
        cv2.line(canvas, (sx, t.y), (sx, t.y + t.h - 1), dim, 1)
        n = 9
        for k in range(n + 1):
            ty = t.y + round(k * (t.h - 1) / n)
            major = k % 2 == 0
            cv2.line(canvas, (sx, ty), (sx + (14 if major else 7), ty), fg if major else dim, 2 if major else 1)
            cv2.line(lay.ink_mask, (sx, ty), (sx + (14 if major else 7), ty), 255, 2 if major else 1)
            if major:
                _text(canvas, lay, str(k // 2), sx + 18, ty + round(8 * s), 0.6 * s, fg, max(1, round(s)))
        lay.ink.append(Roi(sx, t.y, 15, t.h))
    if lay.shape != "linear":
        # Depth labels in the black corners beside the fan, inside the image box (as sector machines do).
        _text(canvas, lay, "4.5cm", r.x + round(0.02 * r.w), r.y + r.h - round(0.04 * r.h), 0.6 * s, fg,
              max(1, round(s)))
        _text(canvas, lay, "P", r.x + r.w - round(0.06 * r.w), r.y + round(0.08 * r.h), 0.8 * s, (60, 200, 240),
              max(1, round(2 * s)))
    return canvas


def _changing_ui(canvas: np.ndarray, lay: Layout, i: int) -> None:
    """The elements a real screen changes: a clock, a blinking dot, a readout that changes now and then."""
    fw, fh = lay.size
    s = fh / 1080
    bar_h = max(24, round(0.055 * fh))
    fg = (235, 235, 235) if lay.theme == "dark" else (30, 30, 30)
    if lay.clock:
        cv2.putText(canvas, f"10:42:{i % 60:02d}", (round(0.88 * fw), round(0.7 * bar_h)), FONT, 0.7 * s, fg,
                    max(1, round(s)), cv2.LINE_AA)
    if lay.blink and i % 2 == 0:
        cv2.circle(canvas, (round(0.84 * fw), round(0.5 * bar_h)), max(3, round(6 * s)), (40, 40, 230), -1)
    cv2.putText(canvas, f"FR {24 + (i // 5) % 3} Hz", (round(0.45 * fw), fh - round(0.3 * bar_h)), FONT, 0.6 * s, fg,
                max(1, round(s)), cv2.LINE_AA)


def _image_marks(frame: np.ndarray, lay: Layout, record: bool) -> None:
    """Static marks burned into the picture itself: the logo and the patient line (see `Layout`).

    ``record``: also add them to ``lay.ink`` / ``lay.ink_mask`` (once per sequence).
    """
    r = lay.image
    s = lay.size[1] / 1080
    thick = max(1, round(2 * s))
    marks = []
    if lay.in_image_logo:
        marks.append(("L12", (r.x + round(0.02 * r.w), r.y + round(0.03 * r.h) + round(24 * s)), 0.9 * s,
                      (240, 240, 240)))
    if lay.image_text is not None:
        (tw, _), _ = cv2.getTextSize(IMAGE_TEXT, FONT, 0.9 * s, thick)
        if lay.shape == "linear":
            org = (r.x + round(0.04 * r.w), r.y + round(0.9 * r.h))
        else:
            org = (r.x + (r.w - tw) // 2, r.y + round(0.55 * r.h))
        marks.append((IMAGE_TEXT, org, 0.9 * s, lay.image_text))
    for text, org, scale, color in marks:
        if record:
            box = _text(frame, lay, text, org[0], org[1], scale, color, thick)
            fan = lay.fan_mask()
            assert fan[box.y - r.y, box.x - r.x] and fan[box.y + box.h - r.y, box.x + box.w - r.x], "mark off the image"
        else:
            cv2.putText(frame, text, org, FONT, scale, color, thick, cv2.LINE_AA)


def render_sequence(lay: Layout, scans: list[np.ndarray]) -> list[np.ndarray]:
    """One BGR video-out frame per gray scan frame: the scan scaled (and warped) into the layout."""
    base = _static_ui(lay)
    r = lay.image
    mask = lay.fan_mask()
    maps = _fan_maps(lay, scans[0].shape[1], scans[0].shape[0]) if lay.shape != "linear" else None
    out = []
    inside = (mask > 0)[:, :, None]
    for i, scan in enumerate(scans):
        frame = base.copy()
        if maps is None:
            img = cv2.resize(scan, (r.w, r.h), interpolation=cv2.INTER_LINEAR)
        else:
            img = cv2.remap(scan, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        roi = frame[r.y : r.y + r.h, r.x : r.x + r.w]
        # only the fan is pasted: the black corners beside it keep their labels
        np.copyto(roi, cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), where=inside)
        _image_marks(frame, lay, record=i == 0)
        _changing_ui(frame, lay, i)
        if lay.jpeg_quality:
            ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, lay.jpeg_quality])
            frame = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        out.append(frame)
    return out


def layouts() -> list[Layout]:
    """The layouts the accuracy tests run: resolutions, image shapes, themes, positions."""
    return [
        Layout("1080p-linear-dark", (1920, 1080), Roi(420, 130, 1100, 800)),
        Layout("1080p-sector-dark", (1920, 1080), Roi(460, 90, 1000, 880), shape="sector", angle_deg=76),
        Layout("720p-linear-light-logo", (1280, 720), Roi(250, 70, 760, 560), theme="light", in_image_logo=True),
        Layout("720p-curved-dark", (1280, 720), Roi(300, 60, 700, 580), shape="curved", angle_deg=64),
        Layout("1024x768-linear-mjpg", (1024, 768), Roi(160, 60, 700, 600), jpeg_quality=80),
        Layout("1024x768-sector-small", (1024, 768), Roi(330, 120, 420, 400), shape="sector", angle_deg=90),
        Layout("1080p-linear-small-left", (1920, 1080), Roi(60, 140, 760, 560), clock=False),
        # Burned into the picture and compressed like an MJPG dongle: JPEG ringing from the live image makes
        # the marks flicker, and coloured text is darker than white in gray.
        Layout("720p-linear-light-logo-text-mjpg", (1280, 720), Roi(250, 70, 760, 560), theme="light",
               in_image_logo=True, image_text=(0, 255, 0), jpeg_quality=75),
        Layout("1080p-sector-dark-text-mjpg", (1920, 1080), Roi(460, 90, 1000, 880), shape="sector", angle_deg=76,
               image_text=(255, 200, 0), jpeg_quality=85),
        Layout("1024x768-curved-text", (1024, 768), Roi(200, 70, 620, 560), shape="curved", angle_deg=70,
               image_text=(0, 180, 200)),
    ]
