"""Run a `RunPlan` end to end: open the model, the source and the sink, attach observers, run the loop.

`nerveseg run` and `demo`, the live scorer (`nerveseg eval --live`) and the calibration check all
start a run through `run_plan`, so they run the same loop the appliance runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from edge.control import CommandChannel
from edge.plan import RunPlan
from edge.runner import ModelRunner
from edge.types import Frame, Stats


def run_plan(
    plan: RunPlan,
    stop: threading.Event,
    *,
    drop_frames: bool = True,
    observers: Sequence | None = None,
    annotate: Callable[[Frame], None] | None = None,
    commands: CommandChannel | None = None,
    runner: ModelRunner | None = None,
) -> Stats:
    """Open model, source and sink and run the loop until it ends. Raises on failure.

    observers: `edge.pipeline.PipelineObserver`s to attach; None = those the plan's config asks for
    (`edge.observers.observers_for`). runner: an already-loaded model for this plan (None: load it).
    commands: the channel the caller's signal handlers write to (None: a new one).
    """
    from edge.observers import observers_for
    from edge.pipeline import Pipeline
    from edge.sinks import open_sink
    from edge.sources import open_source

    runner = runner or plan.open_runner()
    if observers is None:
        observers = observers_for(plan)
    cfg = plan.config
    with open_source(cfg.source) as source, open_sink(cfg.sink, fps_hint=source.nominal_fps) as sink:
        pipe = Pipeline(plan, source, runner, sink, stop=stop, drop_frames=drop_frames, observers=observers,
                        annotate=annotate, commands=commands)
        return pipe.run()
