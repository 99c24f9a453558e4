"""`FramebufferSink`: draws frames straight into the Linux framebuffer (/dev/fbN), no X/Wayland.

The bedside box boots to a console and this sink writes into the framebuffer memory
through an ``np.memmap``. The frame is letterboxed (aspect kept, centred, black bars)
into the framebuffer's geometry; the bars are written once when the geometry is set
up, then only the picture rectangle is written per frame.

Pixel formats: 32 bpp (XRGB8888 little-endian: bytes B, G, R, X per pixel) and 16 bpp
(RGB565 little-endian). Rows are written at the framebuffer's stride (bytes per line),
which may be larger than ``width * bpp / 8``.

The blinking console cursor and console blanking are not handled here: the appliance
install turns them off (kernel command line / ``setterm``): systemd/install.sh and the unit.

The target may also be a plain, pre-sized file (tests, screen captures); then width,
height and bpp must be given explicitly.

A framebuffer that is not there *yet* (late at boot: /dev/fbN or its sysfs folder missing, the device
node not yet given to the 'video' group, the driver not bound) raises `SinkNotReady`, which
`edge.sinks.open_sink` retries from the loop (`RetryingSink`); faults no wait fixes (an unsupported
pixel format, a stride too small) raise `SinkError`. Faults in the settings themselves are found
before anything opens: `FbdevSinkConfig.check`.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from pathlib import Path

import cv2
import numpy as np

from edge import paths
from edge.errors import SinkError
from edge.sinks.base import SinkBase, SinkNotReady
from edge.sinks.settings import FbdevSinkConfig

logger = logging.getLogger(__name__)

SYSFS_GRAPHICS = Path(paths.SYSFS_GRAPHICS)  # where /dev/fbN describes itself; tests pass a fake one

_FB_NAME = re.compile(r"^fb(\d+)$")
_MODE = re.compile(r"(\d+)x(\d+)")


def _read_sysfs(fb_dir: Path) -> dict[str, int]:
    """Geometry from /sys/class/graphics/fbN: width, height, bpp, stride (what is readable).

    ``virtual_size`` ("1920,1080") is the framebuffer's size; when ``mode`` names a visible
    mode ("U:1920x1080p-0") smaller than it (a double-buffered virtual screen), the visible
    size is used, with the console's pan offset assumed 0.
    """
    geo: dict[str, int] = {}

    def read(name: str) -> str | None:
        try:
            return (fb_dir / name).read_text().strip()
        except OSError:
            return None

    vs = read("virtual_size")
    if vs:
        try:
            w, h = (int(v) for v in vs.split(","))
            geo["width"], geo["height"] = w, h
        except ValueError:
            logger.warning("cannot parse %s/virtual_size %r", fb_dir, vs)
    mode = read("mode")
    m = _MODE.search(mode or "")
    if m and "width" in geo:
        mw, mh = int(m.group(1)), int(m.group(2))
        if mw <= geo["width"] and mh <= geo["height"]:
            geo["width"], geo["height"] = mw, mh
    for key, name in (("bpp", "bits_per_pixel"), ("stride", "stride")):
        txt = read(name)
        if txt:
            try:
                geo[key] = int(txt)
            except ValueError:
                logger.warning("cannot parse %s/%s %r", fb_dir, name, txt)
    return geo


# open(2) errors of a device node that exists but whose driver is not (yet) there
_NOT_READY_ERRNOS = (errno.ENODEV, errno.ENXIO, errno.EBUSY, errno.EAGAIN)
_GROUP_HINT = (
    "add the user to the 'video' group (sudo usermod -aG video $USER, then log in again) or run the service "
    "as a member of it; late at boot udev may not have set the group yet"
)


class FramebufferSink(SinkBase):
    """Writes frames into a Linux framebuffer device or a pre-sized file.

    cfg.device: /dev/fbN (geometry from ``sysfs_root``/fbN) or any file.
    cfg.width, cfg.height: framebuffer pixels; cfg.bpp: 16 or 32; cfg.stride: bytes per line
        (default ``width * bpp // 8``). Each given value overrides sysfs; for a path
        that is not /dev/fbN, width, height and bpp are required.
    sysfs_root: folder holding fbN/ geometry folders (a parameter so tests can fake it).

    Buffers (the resized frame, the converted pixels) are allocated when the frame size
    is first seen and reused; ``show`` does not keep a reference to its argument.

    Raises `SinkNotReady` while the framebuffer is not there yet (see the module docstring), else
    `SinkError`.
    """

    #: `edge.sinks.open_sink` wraps this kind in a `RetryingSink`: it may appear after the service starts
    retry_until_ready = True

    def __init__(self, cfg: FbdevSinkConfig | None = None, sysfs_root: str | Path = SYSFS_GRAPHICS):
        cfg = cfg or FbdevSinkConfig()
        self.cfg = cfg
        self.path = Path(cfg.device)
        geo: dict[str, int] = {}
        m = _FB_NAME.match(self.path.name)
        fb_dir = Path(sysfs_root) / self.path.name if m else None
        if fb_dir is not None and fb_dir.is_dir():
            geo = _read_sysfs(fb_dir)
        for key, val in (("width", cfg.width), ("height", cfg.height), ("bpp", cfg.bpp), ("stride", cfg.stride)):
            if val is not None:
                geo[key] = int(val)
        missing = [k for k in ("width", "height", "bpp") if k not in geo]
        if missing:
            if fb_dir is not None:  # /dev/fbN whose driver has not registered it (yet)
                raise SinkNotReady(
                    f"framebuffer {self.path}: unknown {', '.join(missing)} ({fb_dir} is missing or incomplete: "
                    "no framebuffer registered yet; is a monitor attached and the KMS fbdev emulation enabled?); "
                    "or give them explicitly (sink.width, sink.height, sink.bpp)"
                )
            raise SinkError(
                f"framebuffer {self.path}: unknown {', '.join(missing)} ({self.path} is not a /dev/fbN device); "
                "give them explicitly (sink.width, sink.height, sink.bpp)"
            )
        self.width, self.height, self.bpp = geo["width"], geo["height"], geo["bpp"]
        if self.width <= 0 or self.height <= 0:
            raise SinkError(f"framebuffer {self.path}: bad size {self.width}x{self.height}")
        if self.bpp not in (16, 32):
            raise SinkError(
                f"framebuffer {self.path}: {self.bpp} bits per pixel is not supported; "
                "supported: 16 (RGB565), 32 (XRGB8888)"
            )
        self.bytes_pp = self.bpp // 8
        self.stride = geo.get("stride", self.width * self.bytes_pp)
        if self.stride < self.width * self.bytes_pp:
            raise SinkError(
                f"framebuffer {self.path}: stride {self.stride} bytes is less than width {self.width} x "
                f"{self.bytes_pp} bytes per pixel"
            )
        self.nbytes = self.stride * self.height
        self._fb = self._open()
        # (H, stride) byte rows: slicing [y, x*Bpp:(x+w)*Bpp] addresses a picture rectangle.
        self._rows = self._fb.reshape(self.height, self.stride)
        self._src_shape: tuple[int, int] | None = None
        self._rect = (0, 0, 0, 0)  # x, y, w, h of the picture inside the framebuffer
        self._resized: np.ndarray | None = None
        self._converted: np.ndarray | None = None
        self.frames_written = 0
        logger.info("framebuffer %s: %s", self.path, self.describe())

    def _open(self) -> np.memmap:
        try:
            fd = os.open(self.path, os.O_RDWR)
        except PermissionError:
            raise SinkNotReady(f"permission denied opening {self.path}: {_GROUP_HINT}") from None
        except FileNotFoundError:
            raise SinkNotReady(
                f"no framebuffer at {self.path} (is a monitor attached and the KMS fbdev emulation enabled?)"
            ) from None
        except OSError as e:
            if e.errno in _NOT_READY_ERRNOS:
                raise SinkNotReady(f"framebuffer {self.path} has no driver yet: {e.strerror}") from None
            raise SinkError(f"cannot open framebuffer {self.path}: {e}") from None
        try:
            st = os.fstat(fd)
            # np.memmap would silently *grow* a short regular file; a short file means wrong geometry.
            if stat.S_ISREG(st.st_mode) and st.st_size < self.nbytes:
                raise SinkError(
                    f"framebuffer file {self.path} holds {st.st_size} bytes, but {self.width}x{self.height} "
                    f"at {self.bpp} bpp with stride {self.stride} needs {self.nbytes} bytes"
                )
        finally:
            os.close(fd)
        try:
            return np.memmap(self.path, dtype=np.uint8, mode="r+", shape=(self.nbytes,))
        except PermissionError:
            raise SinkNotReady(f"permission denied mapping {self.path}: {_GROUP_HINT}") from None
        except (OSError, ValueError) as e:
            hint = " (the device is smaller than this geometry)" if getattr(e, "errno", None) == errno.EINVAL else ""
            raise SinkError(f"cannot map {self.nbytes} bytes of {self.path}: {e}{hint}") from None

    def describe(self) -> str:
        return f"fbdev:{self.path} {self.width}x{self.height} {self.bpp}bpp stride {self.stride}"

    @property
    def picture_rect(self) -> tuple[int, int, int, int]:
        """(x, y, w, h) of the letterboxed picture in framebuffer pixels (all 0 before the first frame)."""
        return self._rect

    def _setup(self, src_h: int, src_w: int) -> None:
        """Letterbox geometry and buffers for a new source size; blacks the whole screen once."""
        scale = min(self.width / src_w, self.height / src_h)
        w = max(1, min(self.width, round(src_w * scale)))
        h = max(1, min(self.height, round(src_h * scale)))
        x, y = (self.width - w) // 2, (self.height - h) // 2
        self._rect = (x, y, w, h)
        self._src_shape = (src_h, src_w)
        self._resized = None if (w, h) == (src_w, src_h) else np.empty((h, w, 3), np.uint8)
        channels = 4 if self.bpp == 32 else 2  # BGR565 is CV_8UC2: two bytes, little-endian
        self._converted = np.empty((h, w, channels), np.uint8)
        # The bars: written here once, never per frame. Only visible bytes: a stride's padding is not ours.
        self._rows[:, : self.width * self.bytes_pp] = 0
        logger.info("framebuffer %s: %dx%d frames shown at %dx%d+%d+%d", self.path, src_w, src_h, w, h, x, y)

    def show(self, image: np.ndarray) -> None:
        """Letterbox ``image`` (HxWx3 uint8 BGR) into the framebuffer."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"framebuffer sink needs an HxWx3 uint8 BGR image, got {image.dtype} {image.shape}")
        if self._fb is None:
            raise SinkError(f"framebuffer {self.path} is closed")
        if self._src_shape != image.shape[:2]:
            self._setup(*image.shape[:2])
        x, y, w, h = self._rect
        src = image
        if self._resized is not None:
            src = cv2.resize(image, (w, h), dst=self._resized, interpolation=cv2.INTER_LINEAR)
        code = cv2.COLOR_BGR2BGRA if self.bpp == 32 else cv2.COLOR_BGR2BGR565
        conv = cv2.cvtColor(src, code, dst=self._converted)
        b = self.bytes_pp
        self._rows[y : y + h, x * b : (x + w) * b] = conv.reshape(h, w * b)
        self.frames_written += 1

    def close(self) -> None:
        if self._fb is not None:
            try:
                self._fb.flush()
            except (OSError, ValueError) as e:
                logger.warning("framebuffer %s: flush failed: %s", self.path, e)
            self._rows = None
            self._fb = None  # dropping the last reference unmaps it
