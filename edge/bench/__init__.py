"""`nerveseg bench`: how many frames per second this box sustains, and where the time goes.

Every number comes from the real live loop, `edge.pipeline.Pipeline` (the code `nerveseg run` runs), with
the null sink unless ``--sink`` names another, watched by an ordinary `PipelineObserver`. One run per
(model, threads, source, input) combination, plus overload runs for the live latency. The rooms:

    inputs    the frame sizes: us-WxH, hdmi-WxH, mjpeg-WxH, native
    models    which models (shipped, its float32 twin, the classic U-Net built by `nerveseg convert reference`)
    machine   the machine header: CPU, int8-relevant features, OS, board, software
    plan      the options and one job per (source, input)
    source    `PacedSource`, the overload runs' fast device
    measure   one run: the loop, its observer, warm-up and measurement window (the method is described there)
    run       `run_bench`: every combination and the overload runs
    targets   the acceptance targets (targets.yaml) and their PASS/FAIL/SKIP
    results   `RunResult`, `BenchReport`
    report    the terminal report and the JSON (its schema is described there)
    chart     the latency/stage plot (OpenCV drawing)
"""

from edge.bench.chart import render_plot
from edge.bench.inputs import DEFAULT_INPUTS, InputSpec, parse_input
from edge.bench.machine import machine_info
from edge.bench.models import (
    MODEL_ALIASES,
    REFERENCE_COMMAND,
    BenchModel,
    ClassicPlan,
    builder_options,
    cache_dir,
    classic_unet_plan,
    find_classic_unet,
    float32_twin_path,
    resolve_models,
)
from edge.bench.plan import DEFAULT_THREADS, BenchOptions
from edge.bench.report import SCHEMA_VERSION, format_report, to_json, write_json
from edge.bench.results import BenchReport, RunResult
from edge.bench.run import OVERLOAD_FACTOR, run_bench
from edge.bench.targets import TARGETS_FILE, Targets, evaluate_targets, load_targets

__all__ = [
    "DEFAULT_INPUTS",
    "DEFAULT_THREADS",
    "MODEL_ALIASES",
    "OVERLOAD_FACTOR",
    "REFERENCE_COMMAND",
    "SCHEMA_VERSION",
    "TARGETS_FILE",
    "BenchModel",
    "BenchOptions",
    "BenchReport",
    "ClassicPlan",
    "InputSpec",
    "RunResult",
    "Targets",
    "builder_options",
    "cache_dir",
    "classic_unet_plan",
    "evaluate_targets",
    "find_classic_unet",
    "float32_twin_path",
    "format_report",
    "load_targets",
    "machine_info",
    "parse_input",
    "render_plot",
    "resolve_models",
    "run_bench",
    "to_json",
    "write_json",
]
