"""`NullSink`: shows nothing (benchmarks, headless tests, recording-only runs)."""

from __future__ import annotations

import numpy as np

from edge.sinks.base import SinkBase


class NullSink(SinkBase):
    """Counts frames and keeps nothing."""

    def __init__(self) -> None:
        self.frames = 0

    def show(self, image: np.ndarray) -> None:
        self.frames += 1

    def describe(self) -> str:
        return "null"
