"""`WindowSink`: an OpenCV highgui window (desktop use, demos); the appliance uses fbdev.

Needs an OpenCV build with a GUI backend and a display. The ``opencv-python-headless``
wheel (the device default, see setup.cfg) has no GUI; a clear `SinkError` says what to
install instead rather than OpenCV's own "The function is not implemented" error.
"""

from __future__ import annotations

import logging
import os
import sys

import cv2
import numpy as np

from edge.control import QUIT, RECORD_TOGGLE
from edge.errors import SinkError
from edge.sinks.base import SinkBase
from edge.sinks.settings import WindowSinkConfig

logger = logging.getLogger(__name__)

_QUIT_KEYS = (ord("q"), ord("Q"), 27)  # 27 = Esc
_RECORD_KEYS = (ord("r"), ord("R"))  # toggles manual recording (through the loop's command channel)

_NO_GUI_HINT = (
    "install 'opencv-python' instead of 'opencv-python-headless' "
    "(pip uninstall opencv-python-headless && pip install opencv-python), or use Debian's python3-opencv "
    "in a venv made with --system-site-packages; a display ($DISPLAY for X11 or $WAYLAND_DISPLAY) is also needed. "
    "On the bedside box without a desktop use the framebuffer sink (fbdev:/dev/fb0)"
)


def gui_backend() -> str:
    """The GUI backend OpenCV was built with, from its build information ('NONE' for headless wheels)."""
    for line in cv2.getBuildInformation().splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and key.strip() == "GUI":
            return value.strip() or "NONE"
    return "UNKNOWN"  # no GUI line (unusual build): let namedWindow decide


def _has_display() -> bool:
    if not sys.platform.startswith("linux"):
        return True  # macOS/Windows: highgui talks to the native window system, no env var involved
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class WindowSink(SinkBase):
    """Shows frames in a (full-screen) OpenCV window; 'q' or Esc, or closing the window, gives the command
    "quit"; 'r' gives "record_toggle" (manual recording on/off). `take_commands` hands them to the loop.

    cfg.fullscreen: borderless full screen. title: the window's title (review windows name their session).
    Each ``show`` pumps the GUI event loop with ``cv2.waitKey(1)`` (~1 ms at least).
    """

    def __init__(self, cfg: WindowSinkConfig | None = None, title: str = "nerveseg"):
        self.cfg = cfg or WindowSinkConfig()
        self.title = title
        self.fullscreen = self.cfg.fullscreen
        self._commands: list[str] = []  # typed since the last take_commands (a few per second at most)
        self._open = False
        backend = gui_backend()
        if backend.upper().startswith("NONE"):
            raise SinkError(
                f"this OpenCV ({cv2.__version__}) was built without a GUI, so no window can open: {_NO_GUI_HINT}"
            )
        if not _has_display():
            raise SinkError(f"no display: neither $DISPLAY nor $WAYLAND_DISPLAY is set; {_NO_GUI_HINT}")
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
            if self.fullscreen:
                cv2.setWindowProperty(title, cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_FULLSCREEN)
        except cv2.error as e:
            raise SinkError(f"cannot open an OpenCV window ({getattr(e, 'err', e)}); {_NO_GUI_HINT}") from None
        self._open = True
        logger.info("window sink: %s (GUI %s)", self.describe(), backend)

    def describe(self) -> str:
        return f"window:{self.title}{' fullscreen' if self.fullscreen else ''}"

    def show(self, image: np.ndarray) -> None:
        """Display ``image`` (HxWx3 uint8 BGR); the window scales it to its size."""
        if not self._open:
            raise SinkError(f"window {self.title!r} is closed")
        cv2.imshow(self.title, image)
        self._handle_key(cv2.waitKey(1))
        # The operator closed the window with the title-bar button: treat it as quit.
        try:
            visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error:
            visible = False
        if not visible and QUIT not in self._commands:
            self._commands.append(QUIT)

    def _handle_key(self, key: int) -> None:
        """React to one ``cv2.waitKey`` result (-1 = no key)."""
        if key == -1:
            return
        if (key & 0xFF) in _QUIT_KEYS:
            self._commands.append(QUIT)
        elif (key & 0xFF) in _RECORD_KEYS:
            self._commands.append(RECORD_TOGGLE)

    def take_commands(self) -> tuple[str, ...]:
        """Commands typed since the last call ("quit", "record_toggle"), oldest first."""
        out, self._commands = tuple(self._commands), []
        return out

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)  # lets the backend actually tear the window down
            except cv2.error as e:
                logger.debug("destroyWindow(%r): %s", self.title, e)
