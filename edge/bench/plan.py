"""What a benchmark runs: the options, and one `Job` per (source, input)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.bench.inputs import DEFAULT_INPUTS, InputSpec, parse_input
from edge.config import Config, with_overrides
from edge.errors import ConfigError
from edge.sources import open_source, source_spec_from_arg

DEFAULT_SECONDS = 10.0
DEFAULT_WARMUP_S = 1.0
DEFAULT_THREADS = (1, 2)
LIVE_KINDS = ("v4l2", "picamera2")


@dataclass
class BenchOptions:
    """What to run. Validate with `check` (raises `ConfigError` naming the option)."""

    sources: list[str] = field(default_factory=list)  # source specs or paths; empty = config's, else phantom
    models: list[str] = field(default_factory=list)  # paths or MODEL_ALIASES; empty = defaults
    threads: list[int] = field(default_factory=lambda: list(DEFAULT_THREADS))
    inputs: list[str] = field(default_factory=lambda: list(DEFAULT_INPUTS))
    seconds: float = DEFAULT_SECONDS
    warmup_s: float = DEFAULT_WARMUP_S
    overload: bool = True
    overload_fps: float | None = None  # None = OVERLOAD_FACTOR x the throughput fps
    classic_filters: int | None = None  # None = the first model's base filters (see `classic_unet_plan`)
    cache_root: Path | None = None  # where the classic U-Net is looked for; None = `cache_dir`

    def check(self) -> None:
        problems = []
        if not self.seconds > 0:
            problems.append(f"--seconds: got {self.seconds}: must be > 0")
        if not self.warmup_s >= 0:
            problems.append(f"--warmup: got {self.warmup_s}: must be >= 0")
        bad = [t for t in self.threads if not isinstance(t, int) or t < 1 or t > 64]
        if bad or not self.threads:
            problems.append(f"--threads: got {bad or self.threads}: each must be an int from 1 to 64")
        if self.overload_fps is not None and not self.overload_fps > 0:
            problems.append(f"--overload-fps: got {self.overload_fps}: must be > 0")
        if self.classic_filters is not None and not 1 <= self.classic_filters <= 256:
            problems.append(f"--classic-filters: got {self.classic_filters}: must be 1 to 256")
        if problems:
            raise ConfigError("<command line>", problems)
        for name in self.inputs:
            parse_input(name)


@dataclass(frozen=True)
class Job:
    """One (source, input) to run: the source config, its label and whether it is a live device."""

    source_name: str
    input: InputSpec
    cfg: Config
    live: bool


def _short_source(spec: str) -> str:
    kind, _, arg = spec.partition(":")
    return f"{kind}:{Path(arg).name}" if arg and kind in ("file", "images") else spec


def plan_jobs(cfg: Config, opts: BenchOptions, notes: list[str]) -> list[Job]:
    """Source configs per (source, input). Raises `SourceError` / `ConfigError` for bad specs or inputs.

    A video file is scaled to each input's size, looped and unpaced; the phantom renders each size (with its
    machine screen around the image for ``hdmi-*``); an image folder is used at its own size; a live device
    (v4l2, picamera2) at its configured mode, paced by the device.
    """
    specs = [source_spec_from_arg(s) for s in opts.sources] if opts.sources else [cfg.source.spec]
    inputs = [parse_input(n) for n in (opts.inputs or DEFAULT_INPUTS)]
    jobs: list[Job] = []
    for spec in dict.fromkeys(specs):
        kind = spec.partition(":")[0]
        name = _short_source(spec)
        if kind in LIVE_KINDS:
            jobs.append(Job(name, InputSpec("device", "native", None), with_overrides(cfg, source={"spec": spec}),
                            live=True))
            notes.append(f"{name}: a live device is measured at its configured mode, paced by the device, "
                         "newest frame wins; --input does not apply")
            continue
        for inp in inputs:
            # Unpaced, and looped where a source can end; only the keys this kind of source has.
            src: dict[str, Any] = {"spec": spec, "pace": False}
            if kind in ("file", "images"):
                src["loop"] = True
            if kind in ("file", "phantom"):
                src["width"] = src["height"] = None
            if kind == "images":
                if inp.size is not None:
                    notes.append(f"{name}: image folders are used at their own size: input {inp.name} -> native")
                    inp = InputSpec("native", "native", None)
            elif inp.size is not None:
                w, h = inp.size
                if kind == "phantom" and inp.kind == "us" and (w > 580 or h > 420):
                    raise ConfigError("<command line>", [f"--input {inp.name}: the phantom's ultrasound image is at "
                                                         "most 580x420; use hdmi-WxH for a video-out frame"])
                if kind == "phantom" and inp.kind in ("hdmi", "mjpeg") and (w < 580 or h < 420):
                    raise ConfigError("<command line>", [f"--input {inp.name}: a video-out frame around the phantom's "
                                                         "580x420 image must be at least 580x420"])
                src["width"], src["height"] = w, h
            job = Job(name, inp, with_overrides(cfg, source=src), live=False)
            if job not in jobs:
                jobs.append(job)
    return jobs


def preflight(jobs: list[Job]) -> None:
    """Open (and close) each file/folder source once, so a bad path fails before any run (`SourceError`)."""
    seen = set()
    for job in jobs:
        spec = job.cfg.source.spec
        if job.cfg.source.kind in ("file", "images") and spec not in seen:
            seen.add(spec)
            with open_source(job.cfg.source):
                pass
