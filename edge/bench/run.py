"""`run_bench`: every (model, threads, source, input) combination, then the overload runs.

Throughput runs hand over every frame. The live latency comes from the **overload** runs (model under test,
the targets' thread count or the largest asked for, every input): the source is paced faster than the
pipeline (by default `OVERLOAD_FACTOR` times the rate its throughput run reached; `PacedSource`) and the
hand-off is the live loop's "newest frame wins", so frames are dropped and the latency must stay bounded at
about one source period plus one processing period. In the throughput runs a frame waits in the hand-off
slot while the previous one is processed, so their latency is up to about two processing periods.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from edge.bench.machine import machine_info
from edge.bench.measure import measure, to_result
from edge.bench.models import BenchModel, resolve_models
from edge.bench.plan import BenchOptions, Job, plan_jobs, preflight
from edge.bench.results import BenchReport, RunResult, fill_ratios
from edge.bench.source import MjpegSource, PacedSource
from edge.bench.targets import load_targets, overload_threads
from edge.config import Config
from edge.runner import ModelRunner
from edge.sinks import open_sink
from edge.sources import open_source
from edge.sources.base import FrameSource

logger = logging.getLogger(__name__)

OVERLOAD_FACTOR = 2.0  # overload source rate = this x the pipeline's throughput fps


def run_bench(
    cfg: Config,
    opts: BenchOptions,
    stop: threading.Event | None = None,
    progress: Callable[[str], None] | None = None,
) -> BenchReport:
    """Run every combination and the overload runs; return the report.

    cfg: base config (``--config``): source settings, roi, presence, overlay, ``model.interpreter``,
        ``model.path`` (the default model under test) and the sink (null unless changed).
    stop: set it (SIGINT/SIGTERM) to end the current run and return what was measured (``interrupted``).
    progress: called with one line per run (the command prints it); None = log at INFO.
    Raises `ConfigError` (options, the targets file, an explicit classic-unet not built), `ModelError`
    (a model), `SourceError` (a source), `SinkError`.
    """
    opts.check()
    targets = load_targets()
    stop = stop or threading.Event()
    say = progress or (lambda m: logger.info("%s", m))
    notes: list[str] = []
    jobs = plan_jobs(cfg, opts, notes)
    preflight(jobs)
    models, model_notes = resolve_models(opts.models, cfg.model.path, opts.cache_root, opts.classic_filters)
    notes[:0] = model_notes
    threads = list(dict.fromkeys(opts.threads))
    ov_threads = overload_threads(targets, threads)
    report = BenchReport(
        machine=machine_info(cfg.model.interpreter),
        settings={
            "seconds": opts.seconds,
            "warmup_s": opts.warmup_s,
            "sink": cfg.sink.spec,
            "handoff": "lossless (every frame) for throughput, newest-wins for overload",
            "overload": opts.overload,
            "overload_factor": OVERLOAD_FACTOR,
            "overload_fps": opts.overload_fps,
            "threads": threads,
            "inputs": list(dict.fromkeys(j.input.name for j in jobs)),
            "sources": list(dict.fromkeys(j.source_name for j in jobs)),
        },
        models=models,
        notes=notes,
        targets=targets,
    )
    n_total = len(models) * len(threads) * len(jobs)
    k = 0
    for model in models:
        for n_threads in threads:
            runner = ModelRunner(model.path, threads=n_threads, interpreter=cfg.model.interpreter)
            for job in jobs:
                if stop.is_set():
                    return _finish(report, interrupted=True)
                k += 1
                run = _run_one(cfg, job, model, runner, opts, stop, drop_frames=job.live, notes=notes)
                if run is None:
                    continue
                report.runs.append(run)
                say(f"[{k}/{n_total}] {model.label} ({model.spec.quantization}), {n_threads} thread(s), "
                    f"{job.input.name} from {job.source_name}: {run.fps:.1f} fps, total p50 "
                    f"{run.stages['total'].p50:.2f} ms")
                if opts.overload and model is models[0] and n_threads == ov_threads and not job.live:
                    rate = opts.overload_fps or OVERLOAD_FACTOR * run.fps
                    ov = _run_one(cfg, job, model, runner, opts, stop, drop_frames=True, notes=notes, pace_fps=rate)
                    if ov is not None:
                        report.overload.append(ov)
                        say(f"      overload: source {rate:.0f} fps -> {ov.fps:.1f} fps processed, "
                            f"{100 * ov.drop_rate:.0f}% dropped, latency p99 {ov.latency.p99:.1f} ms")
                        if rate <= run.fps:
                            notes.append(f"overload {job.input.name}: the source ({rate:.0f} fps) is not faster than "
                                         f"the pipeline ({run.fps:.0f} fps): not an overload")
            del runner
    return _finish(report, interrupted=stop.is_set())


def _finish(report: BenchReport, interrupted: bool) -> BenchReport:
    report.interrupted = interrupted
    report.notes[:] = list(dict.fromkeys(report.notes))
    fill_ratios(report.runs)
    fill_ratios(report.overload)
    return report


def _run_one(
    cfg: Config, job: Job, model: BenchModel, runner: ModelRunner, opts: BenchOptions, stop: threading.Event,
    *, drop_frames: bool, notes: list[str], pace_fps: float | None = None,
) -> RunResult | None:
    with open_source(job.cfg.source) as inner, open_sink(cfg.sink, fps_hint=inner.nominal_fps) as sink:
        source: FrameSource = MjpegSource(inner) if job.input.kind == "mjpeg" else inner
        if job.input.kind == "mjpeg":
            notes.append(f"{job.input.name}: the capture stage is the JPEG decode of each frame (cv2.imdecode, as "
                         "the V4L2 path decodes a dongle's MJPG); hdmi-* of the same size skips it")
        source = PacedSource(source, pace_fps) if pace_fps else source
        obs, roi = measure(
            job.cfg, source, runner, sink, seconds=opts.seconds, warmup_s=opts.warmup_s, drop_frames=drop_frames,
            input_size=job.input.size, stop=stop, notes=notes, label=job.source_name,
        )
        handoff = "latest" if drop_frames else "lossless"
        return to_result(obs, model, runner, job.input.name, job.source_name, source, handoff, roi, opts.seconds,
                         source_fps=pace_fps)
