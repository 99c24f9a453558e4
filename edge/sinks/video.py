"""`VideoSink`: writes the annotated frames to an mp4 file (demos, review material).

Encoding 1080p mp4 costs ~15 ms a frame on the device's cores: fine for a demo,
too much for the bedside loop at full rate (the recorder stores raw frames instead).

The file holds whole video-out frames (patient details included), so it is created with mode
0600 whatever the umask, like a recording's files.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from edge.errors import ConfigError, SinkError
from edge.sinks.base import SinkBase
from edge.sinks.settings import DEFAULT_VIDEO_FPS, VideoSinkConfig

logger = logging.getLogger(__name__)

FILE_MODE = 0o600  # owner only: whole video-out frames, as in a recording


class VideoSink(SinkBase):
    """Appends frames to an MPEG-4 ('mp4v') file ``cfg.path`` at ``cfg.fps`` frames per second (container
    rate; unset: 30 — `edge.sinks.open_sink` fills in the source's rate first).

    The writer opens on the first frame with that frame's size; later frames of another
    size are resized to it (logged once). The parent folder must exist; an existing file
    is overwritten (and made 0600); a symbolic link is refused. ``close()`` finalises the
    file: without it the mp4 is unreadable.

    Raises `ConfigError` for faults of ``cfg`` (`VideoSinkConfig.check`: no such folder, ...),
    `SinkError` when the file cannot be created or encoded.
    """

    def __init__(self, cfg: VideoSinkConfig):
        self.cfg = cfg
        self.path = Path(cfg.path)
        self.fps = float(cfg.fps or DEFAULT_VIDEO_FPS)  # the model already requires fps > 0
        problems = cfg.check()
        if problems:
            raise ConfigError(f"sink {cfg.spec}", problems)
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None  # (width, height) of the file
        self._warned_resize = False
        self._closed = False
        self.frames_written = 0

    def describe(self) -> str:
        size = f" {self._size[0]}x{self._size[1]}" if self._size else ""
        return f"video:{self.path}{size} @{self.fps:g}fps"

    def show(self, image: np.ndarray) -> None:
        """Append ``image`` (HxWx3 uint8 BGR)."""
        if self._closed:
            raise SinkError(f"video sink {self.path} is closed")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"video sink needs an HxWx3 uint8 BGR image, got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        if self._writer is None:
            self._create_private()
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (w, h))
            if not writer.isOpened():
                raise SinkError(f"cannot open {self.path} for writing mp4 ({w}x{h} @{self.fps:g}fps, mp4v)")
            self._writer, self._size = writer, (w, h)
            logger.info("recording annotated video to %s", self.describe())
        if (w, h) != self._size:
            if not self._warned_resize:
                self._warned_resize = True
                logger.warning(
                    "video sink %s: frame size changed from %dx%d to %dx%d; resizing to the first size",
                    self.path,
                    *self._size,
                    w,
                    h,
                )
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_LINEAR)
        self._writer.write(image)
        self.frames_written += 1

    def _create_private(self) -> None:
        """Create (or empty) the file with mode 0600 before FFmpeg opens it: FFmpeg would create it with
        the umask's mode (0644, or 0666 under umask 000), and it keeps the mode of a file that exists."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
        except OSError as e:
            raise SinkError(f"video sink {self.path}: cannot create the file: {e.strerror or e}") from None
        try:
            os.fchmod(fd, FILE_MODE)  # an existing file kept its old mode; the umask only ever removes bits
        except OSError as e:
            raise SinkError(f"video sink {self.path}: cannot make the file private (0600): {e.strerror}") from None
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            logger.info("video sink %s: %d frames written", self.path, self.frames_written)
