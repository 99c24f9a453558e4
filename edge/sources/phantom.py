"""`PhantomSource`: synthetic B-mode ultrasound for demos and tests without data or hardware.

What it draws (gray, linear-probe geometry, 580x420 by default like the Kaggle
frames): tissue layers (skin, fat, two muscles, deep tissue) with wavy bright
fascia between them and a bright deep bony echo with its acoustic shadow;
multiplicative speckle over everything; depth attenuation; two anechoic vessels
(dark lumen, bright wall, posterior enhancement below), the artery pulsating at
72 bpm and the vein breathing; and a nerve with the "honeycomb" look (a cluster
of hypoechoic fascicles inside a hyperechoic ring) that sweeps sideways in and
out of view, so a presence detector has something to do (`nerve_box` says where
it is). The whole tissue block drifts a little, as a hand-held probe does.

Deterministic: every frame is a pure function of (seed, frame index, size, fps)
(`render`), so the same seed and index give the same pixels, in any order.

Cheap: the tissue map, texture and a bank of speckle fields are precomputed on
a canvas larger than the image; a frame is a crop of those (the drift), small
patch updates for the moving objects, one speckle cross-fade and one fused
multiply to uint8. Measured on one x86 server core (AMD EPYC): ~0.3 ms per
580x420 frame, ~1 ms per 1920x1080 frame with the UI (init ~80 ms).

Video-out mode: when cfg.width/height ask for a frame larger than the image,
the image is scaled up into a synthetic machine screen (dark gray UI with text,
a logo box and a depth scale), like the HDMI output of a real scanner;
`image_roi` says where the image lies (the whole frame without UI). The UI is
drawn once and never changes, only the image area does.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from edge.sources.base import SourceBase
from edge.sources.settings import PhantomSourceConfig
from edge.types import Frame, Roi

logger = logging.getLogger(__name__)

IMAGE_W, IMAGE_H = 580, 420  # Kaggle brachial-plexus frame size
DEFAULT_FPS = 30.0
DEPTH_CM = 4.0  # imaging depth shown on the depth scale

_SPECKLE_FIELDS = 6
_SPECKLE_STEP_S = 0.5  # time to cross-fade from one speckle field to the next (decorrelation by hand/breathing motion)
_HEART_HZ = 1.2
_GAIN = 0.95


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sx: float, sy: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian noise blurred with sigmas (sx, sy) pixels: float32."""
    n = rng.standard_normal(shape).astype(np.float32)
    n = cv2.GaussianBlur(n, (0, 0), sigmaX=sx, sigmaY=sy, borderType=cv2.BORDER_REFLECT)
    n -= n.mean()
    return n / (n.std() + 1e-6)


def _speckle_field(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Fully developed speckle, mean 1: float32.

    Envelope of circular complex Gaussian scatterers blurred by the point-spread
    function (wider laterally than axially, as with a linear probe), i.e.
    Rayleigh distributed and spatially correlated; then lightly smoothed and
    compressed (power 0.9), as scanners' speckle reduction and log compression do,
    which gives the blob-like grain of real B-mode (coefficient of variation ~0.35).
    """
    re = rng.standard_normal(shape).astype(np.float32)
    im = rng.standard_normal(shape).astype(np.float32)
    re = cv2.GaussianBlur(re, (0, 0), sigmaX=2.4, sigmaY=1.2)
    im = cv2.GaussianBlur(im, (0, 0), sigmaX=2.4, sigmaY=1.2)
    env = cv2.magnitude(re, im)
    env = cv2.GaussianBlur(env, (0, 0), sigmaX=1.3, sigmaY=0.7)
    env = np.power(env, 0.9, dtype=np.float32)
    return env / env.mean()


class PhantomSource(SourceBase):
    """Synthetic B-mode video.

    cfg.seed: anatomy, motion phases and speckle; same seed = same video.
    cfg.fps: frame rate (default 30); frame ``i`` shows time ``i / fps``. cfg.pace:
    deliver in real time (True) or as fast as rendered (False).
    cfg.width/height: output size. Unset -> the 580x420 image alone. Larger than
    580x420 -> a video-out frame of that size with a machine UI around the image
    (one of the two alone keeps the 580:420 aspect). Smaller in either dimension ->
    the image itself rendered at that size, no UI.

    image_roi: where the ultrasound image lies in each frame (`edge.types.Roi`).
    image_size: (w, h) the image is rendered at before any UI scaling.
    Frames: HxWx3 uint8 BGR (gray replicated), a new array per frame. Never ends.
    """

    def __init__(self, cfg: PhantomSourceConfig | None = None) -> None:
        cfg = cfg or PhantomSourceConfig()
        super().__init__()
        self.cfg = cfg
        self.seed = int(cfg.seed)
        self.fps = float(cfg.fps) if cfg.fps else DEFAULT_FPS
        self.nominal_fps = self.fps
        self.index = 0  # the frame the next read renders

        out_w, out_h = cfg.width, cfg.height
        if out_w and not out_h:
            out_h = max(1, round(out_w * IMAGE_H / IMAGE_W))
        elif out_h and not out_w:
            out_w = max(1, round(out_h * IMAGE_W / IMAGE_H))
        out_w, out_h = out_w or IMAGE_W, out_h or IMAGE_H
        self.ui = out_w >= IMAGE_W and out_h >= IMAGE_H and (out_w, out_h) != (IMAGE_W, IMAGE_H)
        self.image_size = (IMAGE_W, IMAGE_H) if self.ui else (out_w, out_h)
        self.frame_size = (out_w, out_h)

        rng = np.random.default_rng(self.seed)
        self._build_anatomy(rng)
        if self.ui:
            self._build_ui()
        else:
            self.image_roi = Roi(0, 0, out_w, out_h)
        self._pending: np.ndarray | None = None

    # -- precomputation ------------------------------------------------------------------------------------------
    def _build_anatomy(self, rng: np.random.Generator) -> None:
        w, h = self.image_size
        self._mx = max(8, round(0.11 * w))  # lateral drift room on each side of the canvas
        self._my = max(4, round(0.04 * h))  # vertical (breathing) room
        cw, ch = w + 2 * self._mx, h + 2 * self._my
        s = h / IMAGE_H  # lengths below are tuned at 420 px depth and scale with it

        ys = np.arange(ch, dtype=np.float32)[:, None] - self._my  # depth in image rows at zero drift
        xs = np.arange(cw, dtype=np.float32)[None, :]

        # Layer boundaries: depth fraction, waviness; levels are mean echogenicity per layer (0..~1).
        fractions = [0.035, 0.17, 0.36, 0.60, 0.80]
        levels = np.array([0.85, 0.32, 0.42, 0.48, 0.40, 0.34], np.float32)
        bounds = []
        for f in fractions:
            amp = rng.uniform(2, 9) * s
            lam = rng.uniform(180, 520) * s
            phase = rng.uniform(0, 2 * np.pi)
            tilt = rng.uniform(-0.04, 0.04) * h / cw
            bounds.append(f * h + amp * np.sin(2 * np.pi * xs / lam + phase) + tilt * (xs - cw / 2))
        label = np.zeros((ch, cw), np.int32)
        for b in bounds:
            label += (ys > b).astype(np.int32)
        tissue = levels[label]
        tissue = cv2.GaussianBlur(tissue, (0, 0), 1.2 * s + 0.3)

        # Texture: muscle striations (long laterally), blobby fat lobules.
        striae = _smooth_noise(rng, (ch, cw), 9 * s + 1, 1.2 * s + 0.3)
        lobules = _smooth_noise(rng, (ch, cw), 4 * s + 0.5, 3 * s + 0.5)
        in_fat = label == 1
        tissue *= np.where(in_fat, 1 + 0.25 * lobules, 1 + 0.30 * striae)

        # Fibrous streaks: short bright lines, mostly lateral, in the muscles and deep tissue (the look of
        # real neck scans, where connective tissue gives many specular echoes).
        streaks = np.zeros((ch, cw), np.float32)
        for _ in range(int(70 * cw * ch / (700 * 450))):
            x0, y0 = rng.uniform(0, cw), rng.uniform(0.2 * h, 0.95 * h) + self._my
            length, angle = rng.uniform(20, 140) * s, rng.normal(0, 0.12)
            x1, y1 = x0 + length * math.cos(angle), y0 + length * math.sin(angle)
            cv2.line(
                streaks,
                (round(x0), round(y0)),
                (round(x1), round(y1)),
                float(rng.uniform(0.3, 0.9)),
                max(1, round(1.5 * s)),
                cv2.LINE_AA,
            )
        tissue += cv2.GaussianBlur(streaks, (0, 0), 1.0 * s + 0.3) * (label >= 2)

        # Fascia: bright thin lines along the boundaries below the skin, patchy along their length.
        along = _smooth_noise(rng, (1, cw), 25 * s + 1, 0.1)
        for b in bounds[1:]:
            thick = rng.uniform(1.2, 2.2) * s + 0.4
            tissue += (0.75 + 0.25 * along) * np.exp(-(((ys - b) / thick) ** 2)) * rng.uniform(0.6, 1.0)

        # Deep bony echo (transverse process / rib): bright arc, acoustic shadow beneath.
        bx = rng.uniform(0.25, 0.75) * cw
        half = rng.uniform(0.12, 0.22) * cw
        by = 0.86 * h + 18 * s * ((xs - bx) / half) ** 2
        on = np.abs(xs - bx) < half
        tissue += np.where(on, 1.4 * np.exp(-(((ys - by) / (2.5 * s + 0.5)) ** 2)), 0)
        shadow = np.where(on & (ys > by + 3 * s), 0.22, 1.0).astype(np.float32)
        tissue *= cv2.GaussianBlur(shadow, (0, 0), 3 * s + 0.5)
        self._tissue = np.ascontiguousarray(tissue, dtype=np.float32)

        # Attenuation with depth, partly compensated by TGC: ~45% of the top level at the bottom.
        depth = np.arange(h, dtype=np.float32)[:, None] / h
        self._att = (0.30 + 0.75 * np.exp(-1.5 * depth)).astype(np.float32)

        self._speckle = [_speckle_field(rng, (ch, cw)) for _ in range(_SPECKLE_FIELDS)]

        # Motion phases, periods (s).
        self._phase = rng.uniform(0, 2 * np.pi, size=8)
        self._drift_period = rng.uniform(8, 12)
        self._breath_period = rng.uniform(3.5, 5)
        self._nerve_period = rng.uniform(10, 14)

        # Vessels, fixed in tissue (canvas coordinates): the artery pulsates, the vein breathes.
        self._vessels = [
            # cx, cy, rx, ry, kind
            (rng.uniform(0.25, 0.45) * cw, rng.uniform(0.66, 0.72) * h + self._my, 20 * s, 20 * s, "artery"),
            (rng.uniform(0.60, 0.80) * cw, rng.uniform(0.46, 0.52) * h + self._my, 30 * s, 19 * s, "vein"),
        ]
        rmax = int(math.ceil(34 * s * 1.2)) + 6
        g = np.arange(-rmax, rmax + 1, dtype=np.float32)
        self._vgrid_x, self._vgrid_y = np.meshgrid(g, g)
        self._vrad = rmax

        self._build_nerve(rng, s)
        self._gray = np.empty((h, w), np.uint8)
        self._echo = np.empty((h, w), np.float32)
        self._spk = np.empty((h, w), np.float32)

    def _build_nerve(self, rng: np.random.Generator, s: float) -> None:
        """Honeycomb nerve patch: absolute echogenicity and blend weight, float32, centred."""
        rx, ry = 46 * s, 31 * s
        pad = int(math.ceil(rx * 1.35)) + 2
        g = np.arange(-pad, pad + 1, dtype=np.float32)
        gx, gy = np.meshgrid(g, g)
        d = np.sqrt((gx / rx) ** 2 + (gy / ry) ** 2)
        echo = np.full_like(d, 0.95)  # interfascicular epineurium: hyperechoic
        # Fascicles: small dark ovals packed inside, by rejection sampling.
        centres: list[tuple[float, float, float]] = []
        for _ in range(400):
            r = rng.uniform(4.5, 8.0) * s + 0.5
            px, py = rng.uniform(-rx, rx), rng.uniform(-ry, ry)
            if (px / (rx - r - 2 * s)) ** 2 + (py / (ry - r - 2 * s)) ** 2 > 1:
                continue
            if any((px - qx) ** 2 + (py - qy) ** 2 < (r + qr + 1.5 * s) ** 2 for qx, qy, qr in centres):
                continue
            centres.append((px, py, r))
            if len(centres) >= 14:
                break
        for px, py, r in centres:
            dd = np.sqrt(((gx - px) / r) ** 2 + ((gy - py) / (0.85 * r)) ** 2)
            echo = np.where(dd < 1, 0.20, echo)
        ring = np.exp(-(((d - 1) * rx / (2.4 * s + 0.5)) ** 2))
        echo = echo * (d < 1) + 1.35 * ring
        echo = cv2.GaussianBlur(echo.astype(np.float32), (0, 0), 0.8 * s + 0.2)
        alpha = np.clip((1.2 - d) / 0.2, 0, 1).astype(np.float32)
        self._nerve_echo = echo.astype(np.float32)
        self._nerve_alpha = alpha
        self._nerve_pad = pad
        self._nerve_r = (rx, ry)
        self._nerve_fascicles = len(centres)

    def _build_ui(self) -> None:
        """Static machine screen around the image; sets image_roi and the placement of the scaled image."""
        fw, fh = self.frame_size
        iw, ih = self.image_size
        top, bottom = round(0.07 * fh), round(0.06 * fh)
        left, right = round(0.15 * fw), round(0.09 * fw)
        aw, ah = fw - left - right, fh - top - bottom
        scale = min(aw / iw, ah / ih)
        if scale < 1:  # not enough room for the panels: centre the unscaled image, the UI shows around it
            scale, left, top, aw, ah = 1.0, 0, 0, fw, fh
        dw, dh = min(fw, round(iw * scale)), min(fh, round(ih * scale))
        x, y = left + (aw - dw) // 2, top + (ah - dh) // 2
        self.image_roi = Roi(x, y, dw, dh)

        ui = np.empty((fh, fw, 3), np.uint8)
        ui[:] = (40, 40, 40)
        ui[:top] = (24, 24, 24)
        ui[fh - bottom :] = (24, 24, 24)
        fs = max(0.35, fh / 1080 * 0.8)  # font scale
        th = max(1, round(fh / 1080 * 2))
        font = cv2.FONT_HERSHEY_SIMPLEX
        white, cyan, grey = (235, 235, 235), (230, 210, 90), (150, 150, 150)

        def text(s: str, px: int, py: int, color=white, k: float = 1.0) -> None:
            cv2.putText(ui, s, (px, py), font, fs * k, color, th, cv2.LINE_AA)

        # Logo box, top left.
        lw, lh = round(0.07 * fw), round(0.75 * top) if top else 0
        if lh > 8:
            lx, ly = round(0.01 * fw), (top - lh) // 2
            cv2.rectangle(ui, (lx, ly), (lx + lw, ly + lh), cyan, th)
            text("nS", lx + lw // 4, ly + round(0.72 * lh), cyan, 1.1)
            text("NERVESEG PHANTOM   L12-4 Linear   Nerve Block", lx + lw + round(0.02 * fw), ly + round(0.7 * lh))
            text("MI 0.9   TIs 0.2", fw - round(0.16 * fw), ly + round(0.7 * lh), grey)
        # Left panel: acquisition settings.
        for i, line in enumerate(
            [
                "2D",
                "Gain 52%",
                f"Depth {DEPTH_CM:.1f} cm",
                "DR 60",
                f"FR {self.fps:.0f} Hz",
                "Freq 10 MHz",
                "Focus 2.0 cm",
            ]
        ):
            py = top + round((i + 1) * 0.05 * fh)
            if py < y + dh and left > 0:
                text(line, round(0.012 * fw), py, white if i == 0 else grey)
        if bottom > 8:
            text("Synthetic phantom - not patient data", round(0.012 * fw), fh - bottom // 3, grey, 0.8)
        # Depth scale right of the image: a tick every 0.5 cm, labelled every cm; focus marker at 2 cm.
        sx = x + dw + max(4, round(0.008 * fw))
        if sx + 10 < fw:
            cv2.line(ui, (sx, y), (sx, y + dh - 1), grey, 1)
            n = int(DEPTH_CM * 2)
            for k in range(n + 1):
                ty = y + round(k * (dh - 1) / n)
                major = k % 2 == 0
                cv2.line(ui, (sx, ty), (sx + (12 if major else 6), ty), white if major else grey, th if major else 1)
                if major:
                    text(f"{k // 2}", sx + 16, ty + round(8 * fs), white, 0.8)
            fy = y + round(2.0 / DEPTH_CM * (dh - 1))
            tri = np.array([[sx - 2, fy], [sx - 12, fy - 6], [sx - 12, fy + 6]], np.int32)
            cv2.fillPoly(ui, [tri], cyan)
        # Thin frame around the image area (outside it).
        cv2.rectangle(ui, (x - 1, y - 1), (x + dw, y + dh), (70, 70, 70), 1)
        self._ui = ui
        self._ui_scaled = (dw, dh) != (iw, ih)

    # -- per frame -----------------------------------------------------------------------------------------------
    def _offsets(self, t: float) -> tuple[int, int]:
        ph = self._phase
        dx = 0.8 * self._mx * math.sin(2 * math.pi * t / self._drift_period + ph[0])
        dy = 0.6 * self._my * math.sin(2 * math.pi * t / self._breath_period + ph[1])
        return self._mx + round(dx), self._my + round(dy)

    def _nerve_centre(self, t: float) -> tuple[int, int]:
        """Nerve centre in image pixels at time t (may lie outside the image)."""
        w, h = self.image_size
        ph = self._phase
        sweep = math.sin(2 * math.pi * t / self._nerve_period + ph[2])
        cx = w / 2 + 0.75 * w * sweep
        cy = 0.40 * h + 0.05 * h * math.sin(2 * math.pi * t / (0.7 * self._nerve_period) + ph[3])
        return round(cx), round(cy)

    def nerve_box(self, index: int) -> Roi | None:
        """Where the nerve is in frame ``index``, in frame pixels, or None when less than half of it is in view.

        Ground truth for demos and tests of a presence detector: the box of the
        nerve's outer ring, clipped to the image, mapped into `image_roi`.
        """
        w, h = self.image_size
        cx, cy = self._nerve_centre(index / self.fps)
        rx, ry = self._nerve_r
        x0, x1 = max(0.0, cx - rx), min(float(w), cx + rx)
        y0, y1 = max(0.0, cy - ry), min(float(h), cy + ry)
        if x1 - x0 < rx or y1 - y0 < ry:
            return None
        roi = self.image_roi
        sx, sy = roi.w / w, roi.h / h
        return Roi(roi.x + round(x0 * sx), roi.y + round(y0 * sy), round((x1 - x0) * sx), round((y1 - y0) * sy))

    @staticmethod
    def _clip(c: int, r: int, n: int) -> tuple[int, int, int, int] | None:
        """Image span [a, b) and patch span [pa, pb) of a patch of half size r centred at c, in 0..n."""
        a, b = max(0, c - r), min(n, c + r + 1)
        if a >= b:
            return None
        return a, b, a - (c - r), b - (c - r)

    def _draw_vessel(self, echo: np.ndarray, cx: int, cy: int, rx: float, ry: float) -> None:
        h, w = echo.shape
        r = self._vrad
        sx, sy = self._clip(cx, r, w), self._clip(cy, r, h)
        if sx is None or sy is None:
            return
        x0, x1, px0, px1 = sx
        y0, y1, py0, py1 = sy
        # Posterior acoustic enhancement: the fluid attenuates less, so tissue below looks brighter.
        ex0, ex1 = max(0, round(cx - rx)), min(w, round(cx + rx) + 1)
        if ex0 < ex1 and cy < h:
            ey0 = max(0, cy)
            prof_x = np.sin(np.linspace(0, np.pi, round(cx + rx) + 1 - round(cx - rx), dtype=np.float32))
            prof_x = prof_x[ex0 - round(cx - rx) : ex1 - round(cx - rx)]
            prof_y = np.exp(-np.arange(ey0 - cy, h - cy, dtype=np.float32) / (0.35 * h))
            echo[ey0:, ex0:ex1] *= 1 + 0.35 * prof_y[:, None] * prof_x[None, :]
        gx = self._vgrid_x[py0:py1, px0:px1]
        gy = self._vgrid_y[py0:py1, px0:px1]
        d = np.sqrt((gx / rx) ** 2 + (gy / ry) ** 2)
        rm = 0.5 * (rx + ry)
        inside = np.clip((1 - d) * rm / 1.5 + 0.5, 0, 1)
        wall = np.exp(-(((d - 1.04) * rm / 2.2) ** 2))
        patch = echo[y0:y1, x0:x1]
        patch *= 1 - inside
        patch += 0.02 * inside + 0.9 * wall * self._att[y0:y1]

    def render(self, index: int) -> np.ndarray:
        """Frame ``index`` as a new HxWx3 uint8 BGR array (pure function of seed, index, size, fps)."""
        t = index / self.fps
        w, h = self.image_size
        ox, oy = self._offsets(t)
        echo = self._echo
        np.multiply(self._tissue[oy : oy + h, ox : ox + w], self._att, out=echo)

        # Vessels ride with the tissue (canvas -> image coordinates).
        beat = (t * _HEART_HZ + self._phase[4] / (2 * math.pi)) % 1.0
        pulse = math.exp(-beat / 0.12) if beat < 0.6 else 0.0  # sharp systolic upstroke, diastolic decay
        breath = math.sin(2 * math.pi * t / self._breath_period + self._phase[5])
        for cx, cy, rx, ry, kind in self._vessels:
            if kind == "artery":
                k = 1.0 + 0.13 * pulse
                rx, ry = rx * k, ry * k
            else:
                ry = ry * (0.82 + 0.18 * breath)
            self._draw_vessel(echo, round(cx) - ox, round(cy) - oy, rx, ry)

        # Nerve: blend its absolute echo map in where its alpha says.
        ncx, ncy = self._nerve_centre(t)
        p = self._nerve_pad
        sx, sy = self._clip(ncx, p, w), self._clip(ncy, p, h)
        if sx is not None and sy is not None:
            x0, x1, px0, px1 = sx
            y0, y1, py0, py1 = sy
            a = self._nerve_alpha[py0:py1, px0:px1]
            patch = echo[y0:y1, x0:x1]
            patch *= 1 - a
            patch += a * self._nerve_echo[py0:py1, px0:px1] * self._att[y0:y1]

        # Speckle: power-preserving cross-fade between two bank fields, cropped with the tissue so it moves with it.
        u = t / _SPECKLE_STEP_S + self._phase[6]
        k = int(u)
        theta = (u - k) * math.pi / 2
        s1 = self._speckle[k % _SPECKLE_FIELDS][oy : oy + h, ox : ox + w]
        s2 = self._speckle[(k + 1) % _SPECKLE_FIELDS][oy : oy + h, ox : ox + w]
        ca, sb = math.cos(theta), math.sin(theta)
        cv2.addWeighted(s1, ca, s2, sb, 1.0 - ca - sb, dst=self._spk)
        cv2.multiply(echo, self._spk, dst=self._gray, scale=255.0 * _GAIN, dtype=cv2.CV_8U)

        if not self.ui:
            return cv2.cvtColor(self._gray, cv2.COLOR_GRAY2BGR)
        frame = self._ui.copy()
        r = self.image_roi
        src = cv2.resize(self._gray, (r.w, r.h), interpolation=cv2.INTER_LINEAR) if self._ui_scaled else self._gray
        cv2.cvtColor(src, cv2.COLOR_GRAY2BGR, dst=frame[r.y : r.y + r.h, r.x : r.x + r.w])
        return frame

    # -- FrameSource ---------------------------------------------------------------------------------------------
    def read(self, timeout: float = 0.5) -> Frame | None:
        """Next frame; None only when pacing says it is not due within ``timeout`` s. Never ends."""
        if self._pending is None:
            self._pending = self.render(self.index)  # render first: its time hides inside the pacing wait
        if self.cfg.pace and not self._wait_due(self.fps, timeout):
            return None
        image, self._pending = self._pending, None
        self.index += 1
        return self._make_frame(image)

    def describe(self) -> str:
        fw, fh = self.frame_size
        iw, ih = self.image_size
        ui = f", UI around image at {self.image_roi}" if self.ui else ""
        pace = "paced" if self.cfg.pace else "unpaced"
        return f"phantom seed={self.seed} {fw}x{fh} (image {iw}x{ih}{ui}) @{self.fps:.4g}fps {pace}"
