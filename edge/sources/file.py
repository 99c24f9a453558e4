"""`VideoFileSource`: a recorded clip played as if it were live video.

Used for demos, benchmarks (``cfg.width/height`` scale a small clip up to a
1920x1080 video-out frame) and tests. Decoding is OpenCV's (FFmpeg backend).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np

from edge.errors import SourceError, SourceExhausted
from edge.sources.base import SourceBase
from edge.sources.settings import FileSourceConfig
from edge.types import Frame

logger = logging.getLogger(__name__)

FALLBACK_FPS = 30.0  # when the container does not say


def output_size(src_w: int, src_h: int, width: int | None, height: int | None) -> tuple[int, int] | None:
    """Target (w, h) for cfg.width/height; one of them alone keeps the aspect ratio. None = no resize."""
    if width and height:
        size = (int(width), int(height))
    elif width:
        size = (int(width), max(1, round(src_h * width / src_w)))
    elif height:
        size = (max(1, round(src_w * height / src_h)), int(height))
    else:
        return None
    return None if size == (src_w, src_h) else size


class VideoFileSource(SourceBase):
    """Frames of a video file.

    cfg.path: the file. cfg.pace: deliver at ``cfg.fps`` if set, else the file's own
    rate (True), or as fast as decoded (False). cfg.loop: start over at the end
    (seek to frame 0; reopen if the seek fails) instead of raising `SourceExhausted`
    after the last frame. cfg.width/height: resize every frame (INTER_LINEAR).

    nominal_fps: the delivery rate when paced, i.e. ``cfg.fps`` if set, else the
    file's rate (``file_fps``). Frames: HxWx3 uint8 BGR, a new array per frame.

    Raises `SourceError` naming the path when the file is missing or holds no
    decodable video.
    """

    def __init__(self, cfg: FileSourceConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.path = Path(cfg.path).expanduser()
        if not self.path.is_file():
            raise SourceError(f"video file not found: {self.path}")
        self._cap = self._open()
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise SourceError(f"cannot decode any frame of video file: {self.path}")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.file_fps = fps if math.isfinite(fps) and fps > 0 else FALLBACK_FPS
        self.nominal_fps = float(cfg.fps) if cfg.fps else self.file_fps
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)  # container's claim; may be 0/approx
        self.src_size = (first.shape[1], first.shape[0])
        self.size = output_size(*self.src_size, cfg.width, cfg.height) or self.src_size
        self._resize = self.size != self.src_size
        self._pending: np.ndarray | None = self._convert(first)  # decoded, not yet delivered
        self.position = 0  # index in the file of the frame the next read delivers
        self.loops = 0  # times playback wrapped to the start

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open video file (not a video, or no decoder for it): {self.path}")
        return cap

    def _convert(self, image: np.ndarray) -> np.ndarray:
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        if self._resize:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_LINEAR)
        return image

    def _decode_next(self) -> np.ndarray:
        ok, image = self._cap.read()
        if ok and image is not None:
            return self._convert(image)
        if not self.cfg.loop:
            raise SourceExhausted(f"end of {self.path}")
        # Wrap: seek to the start; some containers refuse to seek, then reopening is the reliable restart.
        ok = bool(self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0))
        image = None
        if ok:
            ok, image = self._cap.read()
        if not ok or image is None:
            logger.debug("%s: seek to start failed, reopening", self.path)
            self._cap.release()
            self._cap = self._open()
            ok, image = self._cap.read()
            if not ok or image is None:
                raise SourceError(f"video file became unreadable while looping: {self.path}")
        self.loops += 1
        self.position = 0
        return self._convert(image)

    def read(self, timeout: float = 0.5) -> Frame | None:
        """Next frame; None when pacing says it is not due within ``timeout`` s.

        Raises `SourceExhausted` on the read after the last frame (no loop).
        """
        if self._pending is None:
            # Decode before waiting, so the decode time is hidden inside the pacing wait.
            self._pending = self._decode_next()
        if self.cfg.pace and not self._wait_due(self.nominal_fps, timeout):
            return None
        image, self._pending = self._pending, None
        self.position += 1
        return self._make_frame(image)

    def close(self) -> None:
        self._cap.release()

    def describe(self) -> str:
        w, h = self.size
        extra = f" (scaled from {self.src_size[0]}x{self.src_size[1]})" if self._resize else ""
        mode = f"paced @{self.nominal_fps:.4g}fps" if self.cfg.pace else "unpaced"
        loop = ", loop" if self.cfg.loop else ""
        return f"file:{self.path} {w}x{h}{extra} file {self.file_fps:.4g}fps, {mode}{loop}"
