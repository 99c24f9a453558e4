"""`V4L2Source`: a USB (UVC) HDMI-capture dongle, or any V4L2 device, through OpenCV.

The capture card is the one part of the bedside box a person can pull out, so
this source never raises and never gives up: when the device is missing at
start, unplugged, or stops delivering, it releases it and reopens it with
exponential backoff (0.25 s doubling up to ``retry_max_s``), forever. While it
waits, ``read`` returns None within about ``timeout`` seconds, so the loop keeps
drawing "NO SIGNAL" and the stop event stays responsive.

Blocking bound: a device that is open but silent (stream stalled, HDMI cable
out on some dongles) blocks one ``cap.read()`` for OpenCV's V4L2 select timeout,
10 s by default. The default opener lowers it to 1 s through the
``OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT`` environment variable (process-wide, read
by OpenCV once, kept if the operator already set it); OpenCV's
``CAP_PROP_READ_TIMEOUT_MSEC`` is not implemented for V4L2.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import cv2
import numpy as np

from edge.paths import DEFAULT_V4L2_DEVICE
from edge.sources.base import ReconnectingSource, Reconnector
from edge.sources.settings import V4L2SourceConfig
from edge.types import Frame

logger = logging.getLogger(__name__)

DEFAULT_DEVICE = DEFAULT_V4L2_DEVICE
# Consecutive failed reads before the device is treated as gone. One corrupt MJPEG
# frame (OpenCV turns bad JPEG data into a failed read) must not cost a reopen;
# an unplugged device fails instantly, so three failures take microseconds.
FAILS_BEFORE_RECONNECT = 3
SELECT_TIMEOUT_ENV = "OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT"


def parse_device(arg: str) -> str | int:
    """``''`` -> /dev/video0, ``'2'`` -> index 2, anything else -> the path as given."""
    arg = arg.strip()
    if not arg:
        return DEFAULT_DEVICE
    if arg.isdigit():
        return int(arg)
    return arg


def _fourcc_text(value: float) -> str:
    code = int(value)
    if code <= 0:
        return "?"
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return text if text.isprintable() else "?"


def open_v4l2(device: str | int, cfg: V4L2SourceConfig) -> cv2.VideoCapture:
    """Open ``device`` with the V4L2 backend and request format, size, rate and a 1-frame buffer.

    Returns the capture even when it did not open (``isOpened()`` False); the
    caller decides. Requests are hints: the driver picks the nearest mode it has,
    and `V4L2Source` logs what it actually got.
    """
    # Must be in the environment before OpenCV's first select() in this process; see module docstring.
    os.environ.setdefault(SELECT_TIMEOUT_ENV, "1")
    cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
    if not cap.isOpened():
        return cap
    # FOURCC before size: with V4L2 the size list depends on the pixel format.
    cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*cfg.fourcc))
    if cfg.width:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, cfg.width)
    if cfg.height:
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cfg.height)
    if cfg.fps:
        cap.set(cv2.CAP_PROP_FPS, cfg.fps)
    # One driver buffer: the loop wants the newest frame, not a queue of old ones (latency).
    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return cap


class V4L2Source(ReconnectingSource):
    """Frames from a V4L2 device, reconnecting forever.

    cfg.device: device path (``/dev/video0``) or index (``0``).
    cfg.width/height/fps/fourcc: requested mode (see `open_v4l2`).
    cfg.retry_max_s: ceiling of the reconnect backoff.

    opener: returns an opened (or failed) ``cv2.VideoCapture``; may also raise.
        Default: `open_v4l2` on the configured device. Tests inject one that opens
        a video file and fails on demand, to drive the real reconnect code.

    Counters: ``reconnects``, ``failed_reads``, ``open_failures``; ``connected``.
    Frames: HxWx3 uint8 BGR, a new array per frame (OpenCV copies out of the driver
    buffer), at whatever size the device delivers.
    """

    def __init__(self, cfg: V4L2SourceConfig, opener: Callable[[], cv2.VideoCapture] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.device = parse_device(cfg.device)
        self._opener = opener or (lambda: open_v4l2(self.device, cfg))
        self._name = f"v4l2:{self.device}"
        self._retry = Reconnector(self._name, cfg.retry_max_s)
        self._cap: cv2.VideoCapture | None = None
        self._closed = False
        self._fails_in_row = 0
        self.failed_reads = 0
        self.actual: tuple[int, int, float, str] | None = None  # width, height, fps, fourcc the device gave
        self.nominal_fps = cfg.fps
        # Try once now so the log says early whether the card is there; a failure only schedules a retry.
        self._try_open()

    # -- state ---------------------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._cap is not None

    @property
    def retry_delay_s(self) -> float:
        """Delay before the currently scheduled reopen attempt (0 when connected or retrying at once)."""
        return self._retry.delay_s

    # -- internals -----------------------------------------------------------------------------------------------
    def _try_open(self) -> bool:
        try:
            cap = self._opener()
        except Exception as e:  # noqa: BLE001 - any failure of a device open is an outage, never a crash
            self._retry.failed(f"cannot open ({type(e).__name__}: {e})")
            return False
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            self._retry.failed("cannot open (no such device, busy, or not a capture device)")
            return False
        self._cap = cap
        self._fails_in_row = 0
        self._retry.opened()
        self._note_mode(cap)
        return True

    def _note_mode(self, cap: cv2.VideoCapture) -> None:
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        fourcc = _fourcc_text(cap.get(cv2.CAP_PROP_FOURCC))
        actual = (w, h, fps, fourcc)
        if actual != self.actual:
            want = f"{self.cfg.width or '?'}x{self.cfg.height or '?'} {self.cfg.fourcc} @{self.cfg.fps or '?'}fps"
            logger.info("%s: opened %dx%d %s @%.3gfps (requested %s)", self._name, w, h, fourcc, fps, want)
        self.actual = actual
        if fps > 0:
            self.nominal_fps = fps

    def _drop(self, why: str) -> None:
        if self._cap is not None:
            self._cap.release()
        self._cap = None
        self._retry.lost(why)

    # -- FrameSource ---------------------------------------------------------------------------------------------
    def read(self, timeout: float = 0.5) -> Frame | None:
        """Next frame, or None when none within ~``timeout`` s (including while reconnecting). Never raises
        for device trouble."""
        if self._closed:
            return None
        if self._cap is None:
            if not self._retry.due(timeout) or not self._try_open():
                return None
        try:
            ok, image = self._cap.read()
        except cv2.error as e:  # some drivers surface errors as exceptions; same as a failed read
            logger.debug("%s: read raised %s", self._name, e)
            ok, image = False, None
        if ok and image is not None and image.size:
            self._fails_in_row = 0
            if image.ndim == 2:
                image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
            elif image.shape[2] == 4:
                image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
            return self._make_frame(np.ascontiguousarray(image))
        self.failed_reads += 1
        self._fails_in_row += 1
        if self._fails_in_row >= FAILS_BEFORE_RECONNECT:
            self._drop(f"lost ({self._fails_in_row} failed reads in a row: unplugged or stream stopped)")
        return None

    def close(self) -> None:
        self._closed = True
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def describe(self) -> str:
        if self.actual is not None:
            w, h, fps, fourcc = self.actual
            mode = f"{w}x{h} {fourcc} @{fps:.3g}fps"
        else:
            mode = f"{self.cfg.width or '?'}x{self.cfg.height or '?'} {self.cfg.fourcc} @{self.cfg.fps or '?'}fps"
        state = "" if self.connected else " (not connected)"
        return f"{self._name} {mode}{state}"
