"""Draws the verdict onto the full-resolution frame: nerve outline + fill, status line, marks.

Hot path: `Overlay.draw` runs once per displayed frame on the processing thread. It
draws in place and touches only small parts of the frame:

- contours are found on the *model-size* probability map (e.g. 96x128, cropped to the
  nerve's bounding box and upsampled at most 4x so the outline follows the probability
  iso-line instead of a staircase of 4-10 px model pixels), then the points are mapped to
  frame coordinates with the pixel-centre mapping and drawn with sub-pixel precision;
- the translucent fill is blended only inside the outline's bounding box (a full 1080p
  blend costs ~20 ms on the device class; the box costs well under 1 ms);
- the text is a handful of ``cv2.putText`` calls.

Colours are B,G,R tuples (OpenCV order). Hershey fonts draw ASCII only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from edge.config import OverlayConfig
from edge.types import Decision, Roi

logger = logging.getLogger(__name__)

MARK_TEXT = "NOT FOR DIAGNOSTIC USE"
UNTRAINED_TEXT = "UNTRAINED MODEL"
NO_SIGNAL_TEXT = "NO SIGNAL"
NO_NERVE_TEXT = "No nerve found"
NOT_ANALYSED_TEXT = "NOT ANALYSED"

WHITE = (255, 255, 255)
GRAY = (170, 170, 170)
BLACK = (0, 0, 0)
RED = (0, 0, 255)
AMBER = (0, 150, 255)  # orange-amber: distinct from the default outline colour (0, 220, 255)

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_SHIFT = 4  # fractional bits of the drawing coordinates: points are placed to 1/16 pixel
_MAX_UPSAMPLE = 4  # contour-finding upsample of the mask crop; 4x keeps the crop tiny even at 1080p
_MIN_SCALE = 0.3  # Hershey text below this is unreadable; long text is truncated instead


@dataclass(frozen=True)
class OverlayStatus:
    """What the status line says besides the verdict.

    state: "live" = the decision belongs to this very frame; "stale" = the decision is
        older than ``OverlayConfig.stale_after_ms`` (no mask is drawn, a STALE marker is);
        "no_signal" = no frame from the source (normally the loop shows `Overlay.no_signal`);
        "not_analysed" = the frame is shown but was not analysed (e.g. the ROI does not fit
        it): "NOT ANALYSED" instead of a verdict, so nobody reads it as "no nerve".
    fps: processed frames per second (recent window).
    latency_ms: capture-to-display time of this frame; on a stale frame it is the age shown
        in the "STALE nnn ms" marker.
    untrained: the model is a placeholder without trained weights: "UNTRAINED MODEL" is shown.
    model_name: shown small, bottom left, when set.
    message: one operator-facing line, e.g. "capture reconnecting", "recording off: disk full".
    """

    state: Literal["live", "stale", "no_signal", "not_analysed"]
    fps: float
    latency_ms: float
    untrained: bool = False
    model_name: str = ""
    message: str | None = None


@dataclass(frozen=True)
class _Layout:
    """Text geometry for one frame size (cached: getTextSize per frame is avoidable work)."""

    scale: float  # base font scale
    thick: int  # base stroke width, pixels
    margin: int  # distance of text from the frame edge, pixels (clears the STALE border)
    border: int  # STALE border width, pixels
    line_gap: int  # vertical gap between text lines, pixels


class Overlay:
    """Renders decisions onto frames of any size.

    cfg: colours, opacity, outline width (pixels at full frame size), stats on/off.
    roi: where the model's input came from inside the frame; None = the whole frame.
        The mask is stretched onto it (model aspect need not match the ROI's).
    mask_threshold: mask pixels with probability >= this are nerve.

    Not thread-safe: it owns scratch buffers reused between calls (one instance per loop).
    """

    def __init__(self, cfg: OverlayConfig, roi: Roi | None, mask_threshold: float):
        if not 0.0 < mask_threshold < 1.0:
            raise ValueError(f"mask_threshold must be in (0, 1), got {mask_threshold}")
        self.cfg = cfg
        self.roi = roi
        self.mask_threshold = float(mask_threshold)
        self._color = tuple(int(c) for c in cfg.color)
        self._layouts: dict[tuple[int, int], _Layout] = {}
        self._no_signal_cache: dict[tuple[int, int, str | None], np.ndarray] = {}
        self._warned_roi = False
        # Scratch buffers, grown on demand and viewed at the bounding box's size.
        self._fill = np.zeros((0, 0), np.uint8)
        self._blend = np.zeros((0, 0, 3), np.uint8)
        self._solid = np.zeros((0, 0, 3), np.uint8)

    # ------------------------------------------------------------------ public

    def draw(self, image: np.ndarray, decision: Decision, status: OverlayStatus) -> np.ndarray:
        """Draw onto ``image`` (HxWx3 uint8 BGR, full frame) in place and return it.

        The outline/fill appear only on a live frame whose decision says nerve and has a mask.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"overlay needs an HxWx3 uint8 BGR image, got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        lay = self._layout(h, w)
        live = status.state == "live"
        if live and decision.nerve and decision.mask is not None:
            self._draw_mask(image, decision.mask)
        if status.state == "stale":
            cv2.rectangle(image, (0, 0), (w - 1, h - 1), AMBER, lay.border)

        # Status lines, stacked from the top left.
        y = lay.margin
        if status.state == "no_signal":
            verdict, vcolor = NO_SIGNAL_TEXT, WHITE
        elif status.state == "not_analysed":
            verdict, vcolor = NOT_ANALYSED_TEXT, AMBER
        elif decision.nerve:
            # On a stale frame the verdict is old: grey, so the overlay colour means "current".
            verdict, vcolor = f"NERVE {decision.p_shown:.2f}", self._color if live else GRAY
        else:
            verdict, vcolor = NO_NERVE_TEXT, WHITE if live else GRAY
        parts = [(verdict, vcolor)]
        if self.cfg.show_stats:
            parts.append((f"  {status.fps:.1f} fps  {status.latency_ms:.0f} ms", WHITE))
        y = self._text_line(image, parts, y, lay.scale, lay)
        if status.untrained:
            # White on solid red: the one label that must not be overlooked.
            y = self._text_line(image, [(UNTRAINED_TEXT, WHITE)], y, lay.scale * 1.5, lay, bg=RED)
        if status.state == "stale":
            y = self._text_line(image, [(f"STALE {status.latency_ms:.0f} ms", AMBER)], y, lay.scale * 1.2, lay)
        if status.message:
            y = self._text_line(image, [(status.message, AMBER)], y, lay.scale, lay)
        self._footer(image, lay, status.model_name)
        return image

    def no_signal(self, height: int, width: int, message: str | None = None) -> np.ndarray:
        """A new black HxWx3 uint8 frame: big centred "NO SIGNAL", ``message`` below it, the mark.

        What the monitor shows while capture delivers nothing. The caller owns the returned
        array (a copy of a cached render, so calling it every frame is cheap).
        """
        key = (int(height), int(width), message)
        cached = self._no_signal_cache.get(key)
        if cached is None:
            if len(self._no_signal_cache) > 8:  # sizes/messages change rarely; keep it bounded
                self._no_signal_cache.clear()
            cached = self._render_no_signal(int(height), int(width), message)
            self._no_signal_cache[key] = cached
        return cached.copy()

    # ------------------------------------------------------------------ mask

    def _draw_mask(self, image: np.ndarray, mask: np.ndarray) -> None:
        h, w = image.shape[:2]
        if mask.ndim != 2:
            raise ValueError(f"decision.mask must be a 2-D probability map, got shape {mask.shape}")
        roi = self.roi or Roi(0, 0, w, h)
        # Clip the ROI to the frame: a source that changed resolution must not crash the bedside.
        cx0, cy0 = max(roi.x, 0), max(roi.y, 0)
        cx1, cy1 = min(roi.x + roi.w, w), min(roi.y + roi.h, h)
        if not roi.clip_to(w, h) and not self._warned_roi:
            self._warned_roi = True
            logger.warning("ROI %s does not fit the %dx%d frame; the outline is clipped to the frame", roi, w, h)
        if cx1 <= cx0 or cy1 <= cy0:
            return

        polys = self._contours(mask, roi)
        if not polys:
            return
        # Bounding box of the outline in frame pixels (+ the line's half-width), inside the clipped ROI.
        allp = np.concatenate(polys)
        pad = self.cfg.thickness + 2
        bx0 = max(int(allp[:, 0, 0].min() >> _SHIFT) - pad, cx0)
        by0 = max(int(allp[:, 0, 1].min() >> _SHIFT) - pad, cy0)
        bx1 = min(int(allp[:, 0, 0].max() >> _SHIFT) + pad + 2, cx1)
        by1 = min(int(allp[:, 0, 1].max() >> _SHIFT) + pad + 2, cy1)
        if bx1 <= bx0 or by1 <= by0:
            return
        bw, bh = bx1 - bx0, by1 - by0
        region = image[by0:by1, bx0:bx1]  # a view: drawing on it draws on the frame, clipped to the box
        off = np.array([bx0 << _SHIFT, by0 << _SHIFT], np.int32)
        local = [p - off for p in polys]

        if self.cfg.alpha > 0:
            self._ensure_buffers(bh, bw)
            fill = self._fill[:bh, :bw]
            fill[:] = 0
            cv2.fillPoly(fill, local, 255, cv2.LINE_8, _SHIFT)
            blend = self._blend[:bh, :bw]
            cv2.addWeighted(region, 1.0 - self.cfg.alpha, self._solid[:bh, :bw], self.cfg.alpha, 0.0, dst=blend)
            cv2.copyTo(blend, fill, region)
        cv2.polylines(region, local, True, self._color, self.cfg.thickness, cv2.LINE_8, _SHIFT)

    def _contours(self, mask: np.ndarray, roi: Roi) -> list[np.ndarray]:
        """Outline polygons of ``mask >= threshold`` in frame coordinates, fixed point (<< _SHIFT), int32 Nx1x2."""
        mh, mw = mask.shape
        thr = self.mask_threshold
        binary = cv2.compare(mask, thr, cv2.CMP_GE)  # model-size uint8, a few kB
        bx, by, bw, bh = cv2.boundingRect(binary)
        if bw == 0 or bh == 0:
            return []
        # Crop with a 1-pixel margin so the interpolation sees the region's edge fall off.
        x0, y0 = max(bx - 1, 0), max(by - 1, 0)
        x1, y1 = min(bx + bw + 1, mw), min(by + bh + 1, mh)
        crop = mask[y0:y1, x0:x1]
        if crop.dtype != np.float32:
            crop = crop.astype(np.float32)
        sx, sy = roi.w / mw, roi.h / mh
        # Upsample so one upsampled pixel is ~1 frame pixel (capped): contours of a binary image run
        # through boundary pixel centres, half a pixel inside the region; at model size that would be
        # 2-5 frame pixels at 580x420 and more at 1080p, and a visible staircase.
        k = int(min(max(math.ceil(max(sx, sy)), 1), _MAX_UPSAMPLE))
        if k > 1:
            crop = cv2.resize(crop, ((x1 - x0) * k, (y1 - y0) * k), interpolation=cv2.INTER_LINEAR)
        up = cv2.compare(crop, thr, cv2.CMP_GE)
        contours, _ = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        if not contours:
            return []
        # Pixel-centre mapping, composed: upsampled u -> mask x0 + (u + .5)/k - .5 -> frame
        # roi.x + (xm + .5) * sx - .5, i.e. linear a*u + b. Points in 1/16 px for sub-pixel drawing.
        a = np.array([sx / k, sy / k], np.float64) * (1 << _SHIFT)
        b = np.array([roi.x - 0.5 + sx * (x0 + 0.5 / k), roi.y - 0.5 + sy * (y0 + 0.5 / k)], np.float64) * (1 << _SHIFT)
        return [np.rint(c * a + b).astype(np.int32) for c in contours]

    def _ensure_buffers(self, bh: int, bw: int) -> None:
        ch, cw = self._fill.shape
        if bh <= ch and bw <= cw:
            return
        nh, nw = max(bh, ch), max(bw, cw)
        self._fill = np.zeros((nh, nw), np.uint8)
        self._blend = np.zeros((nh, nw, 3), np.uint8)
        self._solid = np.empty((nh, nw, 3), np.uint8)
        self._solid[:] = self._color

    # ------------------------------------------------------------------ text

    def _layout(self, h: int, w: int) -> _Layout:
        lay = self._layouts.get((h, w))
        if lay is None:
            # Scale from the height: ~11 px capitals at 420 lines, ~30 px at 1080.
            scale = max(h / 800.0, 0.35)
            border = max(3, round(h / 120))
            lay = _Layout(
                scale=scale,
                thick=max(1, round(scale * 1.6)),
                margin=border + max(3, round(h / 100)),
                border=border,
                line_gap=max(3, round(h / 120)),
            )
            self._layouts[(h, w)] = lay
        return lay

    def _fit(self, parts: list[tuple[str, tuple[int, int, int]]], scale: float, thick: int, max_w: int):
        """Shrink ``scale`` (down to _MIN_SCALE) then truncate the last part so the line fits ``max_w``."""

        def width(ps, s, t):
            return sum(cv2.getTextSize(txt, _FONT, s, t)[0][0] for txt, _ in ps) + 2 * t

        wide = width(parts, scale, thick)
        if wide > max_w:
            scale = max(scale * max_w / wide, _MIN_SCALE)
            thick = max(1, min(thick, round(scale * 1.6)))
        parts = list(parts)
        while parts and width(parts, scale, thick) > max_w:
            txt, col = parts[-1]
            base = txt[:-3] if txt.endswith("...") else txt
            if len(base.rstrip()) <= 1:
                parts.pop()
            else:
                parts[-1] = (base.rstrip()[:-1] + "...", col)
        return parts, scale, thick

    def _put(self, image, text, org, scale, thick, color) -> None:
        cv2.putText(image, text, org, _FONT, scale, color, thick, cv2.LINE_AA)

    @staticmethod
    def _backdrop(image: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
        """Darken a box in place so text reads over bright speckle (a halo of thicker text does
        not work: OpenCV 5 renders ``thickness`` as font weight, which changes the glyph advances)."""
        h, w = image.shape[:2]
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 > x0 and y1 > y0:
            box = image[y0:y1, x0:x1]
            cv2.convertScaleAbs(box, dst=box, alpha=0.35)

    def _text_line(self, image, parts, y_top: int, scale: float, lay: _Layout, bg: tuple | None = None) -> int:
        """Draw ``parts`` (text, colour) left to right on one line below ``y_top``; return the next line's top."""
        h, w = image.shape[:2]
        thick = max(1, round(scale * 1.6))
        parts, scale, thick = self._fit(parts, scale, thick, w - 2 * lay.margin)
        if not parts:
            return y_top
        (_, th), base = cv2.getTextSize("Ag", _FONT, scale, thick)
        y = y_top + th
        if y + base > h - lay.margin:  # no room left (tiny frame): drop the line rather than overprint
            return y_top
        x = lay.margin
        pad = max(2, lay.line_gap // 2)
        total = sum(cv2.getTextSize(txt, _FONT, scale, thick)[0][0] for txt, _ in parts)
        if bg is None:
            self._backdrop(image, x - pad, y - th - pad, x + total + pad, y + base + pad // 2)
        else:
            cv2.rectangle(image, (x - pad, y - th - pad), (x + total + pad, y + base + pad // 2), bg, cv2.FILLED)
        for txt, col in parts:
            self._put(image, txt, (x, y), scale, thick, col)
            x += cv2.getTextSize(txt, _FONT, scale, thick)[0][0]
        return y + base + lay.line_gap

    def _footer(self, image: np.ndarray, lay: _Layout, model_name: str) -> None:
        """The permanent mark bottom right (always), the model name bottom left (if any)."""
        h, w = image.shape[:2]
        scale = max(lay.scale * 0.7, _MIN_SCALE)
        thick = max(1, round(scale * 1.6))
        parts, scale, thick = self._fit([(MARK_TEXT, WHITE)], scale, thick, w - 2 * lay.margin)
        if not parts:  # a frame a few dozen pixels wide has no room for even one letter: draw nothing
            return
        (tw, _), base = cv2.getTextSize(parts[0][0], _FONT, scale, thick)
        y = h - lay.margin - base
        (_, th), _ = cv2.getTextSize(parts[0][0], _FONT, scale, thick)
        x = w - lay.margin - tw - thick
        self._backdrop(image, x - 2, y - th - 2, x + tw + 2, y + base // 2 + 2)
        self._put(image, parts[0][0], (x, y), scale, thick, WHITE)
        if model_name:
            room = w - 3 * lay.margin - tw
            if room > 0:
                mparts, mscale, mthick = self._fit([(model_name, GRAY)], scale, thick, room)
                if mparts:
                    mw = cv2.getTextSize(mparts[0][0], _FONT, mscale, mthick)[0][0]
                    self._backdrop(image, lay.margin - 2, y - th - 2, lay.margin + mw + 2, y + base // 2 + 2)
                    self._put(image, mparts[0][0], (lay.margin, y), mscale, mthick, GRAY)

    def _render_no_signal(self, h: int, w: int, message: str | None) -> np.ndarray:
        img = np.zeros((h, w, 3), np.uint8)
        lay = self._layout(h, w)
        # Big: about half the width, at most a fifth of the height.
        scale = 1.0
        thick = max(2, round(h / 150))
        (tw, th), _ = cv2.getTextSize(NO_SIGNAL_TEXT, _FONT, scale, thick)
        scale = min(0.5 * w / tw, 0.2 * h / th)
        thick = max(1, min(thick, round(scale * 2)))
        (tw, th), base = cv2.getTextSize(NO_SIGNAL_TEXT, _FONT, scale, thick)
        y = (h + th) // 2
        self._put(img, NO_SIGNAL_TEXT, ((w - tw) // 2, y), scale, thick, WHITE)
        if message:
            mthick = max(1, round(lay.scale * 1.6))
            parts, mscale, mthick = self._fit([(message, AMBER)], lay.scale, mthick, w - 2 * lay.margin)
            if parts:
                (mw, mh), mbase = cv2.getTextSize(parts[0][0], _FONT, mscale, mthick)
                my = y + base + lay.line_gap + mh
                if my + mbase < h - lay.margin - 2 * mh:  # keep clear of the mark on tiny frames
                    self._put(img, parts[0][0], ((w - mw) // 2, my), mscale, mthick, AMBER)
        self._footer(img, lay, "")
        return img
