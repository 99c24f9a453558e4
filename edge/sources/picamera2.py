"""`Picamera2Source`: an HDMI-to-CSI bridge (Toshiba TC358743) on a Raspberry Pi, through picamera2.

picamera2 is not on PyPI in a usable form (it needs the system libcamera), so it
is imported only inside this module's constructor; a missing package is a
`SourceError` with the install hint, raised only when this source is chosen.

Headless: the camera is started with ``show_preview=False``, which runs
picamera2's NullPreview (its event loop without a window), so the source works
under systemd with no display.

Like `edge.sources.v4l2`, a camera that fails at start or at run time is closed
and reopened with exponential backoff, forever; ``read`` returns None within
about ``timeout`` seconds meanwhile.

Setting the bridge's EDID and timings (``v4l2-ctl --set-edid``,
``--set-dv-bt-timings query``) is a system step done before this source opens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import cv2
import numpy as np

from edge.errors import SourceError
from edge.sources.base import ReconnectingSource, Reconnector
from edge.sources.settings import Picamera2SourceConfig
from edge.types import Frame

logger = logging.getLogger(__name__)

# A capture pending this long means the stream stopped (the bridge does that when the HDMI
# source changes mode or goes away): reopen, as for an error.
STALL_S = 3.0

INSTALL_HINT = (
    "picamera2 not installed: on Raspberry Pi OS `sudo apt install python3-picamera2` "
    "and create the venv with --system-site-packages"
)


def _import_picamera2() -> Any:
    try:
        from picamera2 import Picamera2  # noqa: PLC0415 - hardware import only where it is used
    except ImportError as e:
        raise SourceError(f"{INSTALL_HINT} ({e})") from None
    return Picamera2


class Picamera2Source(ReconnectingSource):
    """Frames from a libcamera camera (the TC358743 bridge) via picamera2.

    cfg.camera: camera number (``picamera2:1``; 0 = the first).
    cfg.width/height: main stream size; set them to the HDMI input's mode (unset: picamera2's
    video default, 1280x720). cfg.fps: the FrameRate control.
    cfg.retry_max_s: ceiling of the reconnect backoff.

    camera_factory: ``(camera_num) -> Picamera2``-like object; default the real
        ``picamera2.Picamera2``. Injected by tests.

    Frames: HxWx3 uint8 BGR, a new array per frame. The main stream is requested
    as ``RGB888``, which in libcamera's naming is stored B,G,R per pixel, i.e.
    OpenCV's BGR already.
    """

    def __init__(self, cfg: Picamera2SourceConfig, camera_factory: Callable[[int], Any] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.camera_num = cfg.camera
        self._factory = camera_factory or _import_picamera2()
        self._name = f"picamera2:{self.camera_num}"
        self._retry = Reconnector(self._name, cfg.retry_max_s)
        self._cam: Any = None
        self._job: Any = None  # capture request still in flight after a read timed out
        self._job_since = 0.0  # monotonic s when that request was made
        self._closed = False
        self.failed_reads = 0
        self.size: tuple[int, int] | None = None
        self.nominal_fps = cfg.fps
        self._try_open()

    @property
    def connected(self) -> bool:
        return self._cam is not None

    def _try_open(self) -> bool:
        cam = None
        try:
            cam = self._factory(self.camera_num)
            main: dict[str, Any] = {"format": "RGB888"}
            if self.cfg.width and self.cfg.height:
                main["size"] = (int(self.cfg.width), int(self.cfg.height))
            controls = {"FrameRate": float(self.cfg.fps)} if self.cfg.fps else {}
            # 4 buffers: enough for the camera to keep streaming while one is copied out.
            config = cam.create_video_configuration(main=main, controls=controls, buffer_count=4)
            cam.configure(config)
            cam.start(show_preview=False)  # False = NullPreview: event loop, no window
        except Exception as e:  # noqa: BLE001 - any failure to bring the camera up is an outage, never a crash
            self._close_cam(cam)
            self._retry.failed(f"cannot open ({type(e).__name__}: {e})")
            return False
        self._cam = cam
        self._job = None
        self._retry.opened()
        try:
            size = tuple(cam.camera_config["main"]["size"])
        except Exception:  # noqa: BLE001 - informational only
            size = None
        if size != self.size:
            logger.info(
                "%s: started, main stream %s RGB888 (requested %sx%s @%sfps)",
                self._name,
                size,
                self.cfg.width,
                self.cfg.height,
                self.cfg.fps,
            )
        self.size = size
        return True

    @staticmethod
    def _close_cam(cam: Any) -> None:
        if cam is None:
            return
        for step in ("stop", "close"):
            try:
                getattr(cam, step)()
            except Exception as e:  # noqa: BLE001 - best effort on a camera that already failed
                logger.debug("picamera2 %s failed: %s", step, e)

    def _drop(self, why: str) -> None:
        self._close_cam(self._cam)
        self._cam = None
        self._job = None
        self._retry.lost(why)

    def _capture(self, timeout: float) -> np.ndarray | None:
        """One array from the main stream, or None if it did not come within ``timeout`` s."""
        if self._job is None:
            job = self._cam.capture_array("main", wait=False)
            if isinstance(job, np.ndarray):  # an immediate result (some picamera2 versions)
                return job
            self._job = job
            self._job_since = time.monotonic()
        try:
            array = self._job.get_result(timeout=max(0.0, timeout))
        except (FutureTimeout, TimeoutError):
            if time.monotonic() - self._job_since > STALL_S:
                raise TimeoutError(f"no frame for {STALL_S:g} s") from None
            return None  # keep the job: its frame is collected by the next read instead of queueing another
        self._job = None
        return array

    def read(self, timeout: float = 0.5) -> Frame | None:
        """Next frame, or None when none within ~``timeout`` s (including while reconnecting)."""
        if self._closed:
            return None
        if self._cam is None:
            if not self._retry.due(timeout) or not self._try_open():
                return None
        try:
            array = self._capture(timeout)
        except Exception as e:  # noqa: BLE001 - camera errors at run time mean reconnect, not crash
            self.failed_reads += 1
            self._drop(f"lost ({type(e).__name__}: {e})")
            return None
        if array is None:
            return None
        if array.ndim == 2:
            array = cv2.cvtColor(array, cv2.COLOR_GRAY2BGR)
        elif array.shape[2] == 4:  # XBGR8888 if a platform ignores RGB888
            array = np.ascontiguousarray(array[:, :, :3])
        # picamera2 may hand a strided view (row padding); frames are contiguous and owned by the consumer.
        return self._make_frame(np.ascontiguousarray(array))

    def close(self) -> None:
        self._closed = True
        self._close_cam(self._cam)
        self._cam = None
        self._job = None

    def describe(self) -> str:
        size = f"{self.size[0]}x{self.size[1]}" if self.size else f"{self.cfg.width or '?'}x{self.cfg.height or '?'}"
        state = "" if self.connected else " (not connected)"
        return f"{self._name} {size} @{self.cfg.fps or '?'}fps{state}"
