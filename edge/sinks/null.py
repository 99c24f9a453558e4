"""`NullSink`: shows nothing (benchmarks, headless tests, recording-only runs)."""

from __future__ import annotations

import numpy as np

from edge.sinks.base import SinkBase
from edge.sinks.settings import NullSinkConfig


class NullSink(SinkBase):
    """Counts frames and keeps nothing. ``cfg`` has nothing to set; it is taken like every sink's."""

    def __init__(self, cfg: NullSinkConfig | None = None) -> None:
        self.cfg = cfg or NullSinkConfig()
        self.frames = 0

    def show(self, image: np.ndarray) -> None:
        self.frames += 1

    def describe(self) -> str:
        return "null"
