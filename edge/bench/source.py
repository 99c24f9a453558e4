"""`PacedSource`: the overload runs' fast "device"."""

from __future__ import annotations

from edge.sources.base import FrameSource, SourceBase
from edge.types import Frame, SourceStatus


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
