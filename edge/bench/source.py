"""Sources the benchmark wraps around another: `PacedSource` (the overload runs' fast "device") and
`MjpegSource` (a capture dongle's MJPG frames, decoded on the CPU)."""

from __future__ import annotations

import cv2
import numpy as np

from edge.errors import SourceError
from edge.sources.base import FrameSource, SourceBase
from edge.types import Frame, SourceStatus

MJPEG_QUALITY = 85  # what UVC dongles' MJPG looks like at 1080p30 on USB 2 (visible blocking only on fine text)
MJPEG_RING = 24  # distinct encoded frames replayed in turn (motion between them, bounded memory)


class PacedSource(SourceBase):
    """Delivers an unpaced source's frames at ``fps``.

    Waits until a frame is due, *then* reads it, so the frame's ``t_capture_ns`` is its delivery time, as a
    device's would be. Any rate is allowed (the config's 240 fps ceiling is for real devices). The wrapped
    source is closed with this one; its ``image_roi`` and ``status`` are this one's.
    """

    def __init__(self, inner: FrameSource, fps: float) -> None:
        super().__init__()
        self.inner = inner
        self.fps = float(fps)
        self.nominal_fps = self.fps
        self.image_roi = inner.image_roi

    def read(self, timeout: float = 0.5) -> Frame | None:
        if not self._wait_due(self.fps, timeout):
            return None
        return self.inner.read(timeout)

    def status(self) -> SourceStatus | None:
        return self.inner.status()

    def close(self) -> None:
        self.inner.close()

    def describe(self) -> str:
        return f"{self.inner.describe()}, paced @{self.fps:.4g}fps by the benchmark"


class MjpegSource(SourceBase):
    """Replays an unpaced source's frames as JPEG bytes, decoded with ``cv2.imdecode`` on every read.

    A UVC dongle at 1080p sends MJPG (its raw YUYV mode manages ~5 fps), and OpenCV's V4L2 backend then
    decodes each frame on the CPU: that decode is part of what the box pays per frame, so here it is the
    capture stage's time. The first `MJPEG_RING` frames of ``inner`` are encoded once, up front (the
    encode is the dongle's work, not the box's), then decoded in turn.
    """

    def __init__(self, inner: FrameSource, quality: int = MJPEG_QUALITY, ring: int = MJPEG_RING) -> None:
        super().__init__()
        self.inner = inner
        self.quality = int(quality)
        self.image_roi = inner.image_roi
        self.nominal_fps = inner.nominal_fps
        self._jpegs: list[np.ndarray] = []
        params = [cv2.IMWRITE_JPEG_QUALITY, self.quality]
        while len(self._jpegs) < ring:
            frame = inner.read(timeout=1.0)
            if frame is None:
                break
            ok, buf = cv2.imencode(".jpg", frame.image, params)
            if not ok:
                raise SourceError(f"cannot JPEG-encode a frame of {inner.describe()}")
            self._jpegs.append(buf)
        if not self._jpegs:
            raise SourceError(f"{inner.describe()} gave no frame to encode as MJPG")
        self.jpeg_bytes = int(np.mean([b.size for b in self._jpegs]))
        self._i = 0

    def read(self, timeout: float = 0.5) -> Frame | None:
        buf = self._jpegs[self._i % len(self._jpegs)]
        self._i += 1
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if image is None:  # pragma: no cover - our own encoder's output
            raise SourceError("a JPEG frame could not be decoded")
        return self._make_frame(image)

    def status(self) -> SourceStatus | None:
        return self.inner.status()

    def close(self) -> None:
        self.inner.close()

    def describe(self) -> str:
        kb = self.jpeg_bytes / 1024
        return f"{self.inner.describe()} as MJPG q{self.quality} (~{kb:.0f} KB a frame), decoded per frame"
