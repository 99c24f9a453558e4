"""What a benchmark produces: one `RunResult` per measured run, gathered in a `BenchReport`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.bench.models import BenchModel
from edge.bench.targets import Targets, load_targets
from edge.pipeline import STAGES
from edge.types import Roi, StageStats

STAGE_LABELS = {
    "capture": "capture",
    "roi_gray": "roi+gray",
    "denoise": "denoise",
    "resize": "resize",
    "normalise": "norm",
    "infer": "infer",
    "smooth": "smooth",
    "overlay": "overlay",
    "sink": "sink",
}
#: The processing thread's stages, in order; they add up to the ``total`` of a frame.
PROCESS_STAGES = tuple(s for s in STAGES if s != "capture")


@dataclass
class RunResult:
    """One measured run. Times in ms unless named otherwise; ``t_s``/``latency_series_ms`` are per frame."""

    model: BenchModel
    threads: int
    interpreter: str
    sha256: str  # of the model file as the runner loaded it
    input: str
    source: str
    source_description: str
    handoff: str  # "lossless" (every frame, throughput) or "latest" (newest wins, live/overload)
    frame_size: tuple[int, int] | None
    roi: Roi | None
    seconds: float
    frames: int
    captured: int
    dropped: int
    fps: float
    cpu_percent: float
    peak_rss_mb: float
    peak_rss_scope: str
    complete: bool
    stages: dict[str, StageStats]
    latency: StageStats
    latency_max_ms: float
    t_s: np.ndarray = field(repr=False)
    latency_series_ms: np.ndarray = field(repr=False)
    ratio_fps_to_first: float = 1.0
    source_fps: float | None = None  # overload runs: the paced source's rate

    @property
    def drop_rate(self) -> float:
        """Dropped / captured frames within the window, 0..1."""
        return self.dropped / self.captured if self.captured else 0.0

    @property
    def frame_period_ms(self) -> float:
        return 1000.0 / self.fps if self.fps > 0 else float("inf")

    def latency_growth_ms(self) -> float:
        """Median latency of the last quarter of the window minus that of the first quarter (ms)."""
        n = self.t_s.size
        if n < 8:
            return 0.0
        q = n // 4
        return float(np.median(self.latency_series_ms[-q:]) - np.median(self.latency_series_ms[:q]))

    def latency_bound_ms(self) -> float:
        """What newest-frame-wins promises: one source period of age, plus processing (p99, twice for
        scheduling noise), plus a capture read."""
        period = 1000.0 / self.source_fps if self.source_fps else 0.0
        total = self.stages["total"].p99 if "total" in self.stages else 0.0
        capture = self.stages["capture"].p99 if "capture" in self.stages else 0.0
        return 2.0 * total + 2.0 * period + capture + 5.0

    @property
    def bounded(self) -> bool:
        total = self.stages["total"].p99 if "total" in self.stages else 0.0
        return self.latency.p99 <= self.latency_bound_ms() and self.latency_growth_ms() <= total + 5.0


@dataclass
class BenchReport:
    """Everything one `nerveseg bench` measured. machine: `edge.bench.machine.machine_info`; settings: the
    options as run; targets: what the model under test is judged against (`edge.bench.targets`)."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    models: list[BenchModel]
    runs: list[RunResult] = field(default_factory=list)
    overload: list[RunResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False
    targets: Targets = field(default_factory=load_targets)


def fill_ratios(runs: list[RunResult]) -> None:
    """Set each run's ``ratio_fps_to_first``: its fps over that of the first run with the same source and input."""
    first: dict[tuple[str, str], float] = {}
    for r in runs:
        base = first.setdefault((r.source, r.input), r.fps)
        r.ratio_fps_to_first = r.fps / base if base > 0 else float("nan")
