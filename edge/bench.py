"""`nerveseg bench`: how many frames per second this box sustains, and where the time goes.

Every number comes from the real live loop, `edge.pipeline.Pipeline` (the code `nerveseg run` runs), with
the null sink unless ``--sink`` names another. One run per (model, threads, source, input) combination:

1. the source is opened **unpaced** and every frame is handed over (``drop_frames=False``, as the demo does):
   the capture thread reads/decodes frame N+1 while frame N is processed, and the run measures the highest
   rate the box sustains end to end (capture, ROI+gray, denoise, resize, normalise, inference, smoothing,
   overlay, sink);
2. a warm-up (default 1 s: interpreter caches, first allocations) is excluded: at its end the stage timers
   are swapped for fresh ones, the counters and process CPU time are snapshotted and the peak RSS is reset;
3. the run measures for ``seconds`` and records per stage p50/p95/p99/mean ms, sustained fps, dropped
   frames, CPU use (process CPU time / wall time; 100 % = one core busy), peak RSS and the
   capture-to-display latency (each frame's capture timestamp against the moment its overlay has been
   handed to the sink).

In the throughput runs a frame waits in the hand-off slot while the previous one is processed, so their
latency is up to about two processing periods. The live latency is measured by the **overload** runs (model
under test, 2 threads or the largest count asked for, every input): the source is paced faster than the
pipeline (by default twice the rate its throughput run reached; `PacedSource`) and the hand-off is the live
loop's "newest frame wins", so frames are dropped and the latency must stay bounded at about one source
period plus one processing period. It is reported with the drop rate.

Models (``--model``, several allowed): a ``.tflite`` path (its spec ``.yaml`` beside it), or

    shipped          edge/models/nerveseg.tflite (the model under test by default: int8)
    shipped-float32  edge/models/nerveseg-float32.tflite: the same network in float32, when it is there
    classic-unet     the classic 4-skip U-Net, float32, same input size, preprocessing and base filters
                     as the first model, BatchNorm, RANDOM weights (timing does not depend on weight
                     values), built once with TensorFlow and cached under $XDG_CACHE_HOME/nerveseg/bench
                     (default ~/.cache/nerveseg/bench)

Default: the configured model (``model.path`` of ``--config``) or the shipped one, its ``-float32`` twin
beside it, and the classic U-Net. A default that cannot be had (no float32 twin, no TensorFlow to build the
classic U-Net) is skipped with a one-line note; a model path that does not exist is an error (exit 3).

The classic U-Net is built by ``python -m convert.reference`` in a child process: `edge` itself never
imports TensorFlow or the workstation packages, and TensorFlow's few hundred MB never land in this
process, whose CPU time and peak RSS the benchmark measures.

Inputs (``--input``, several allowed): ``us-580x420`` (the ultrasound frame itself) and ``hdmi-1920x1080``
(a video-out frame with the image inside it) by default; any ``us-WxH``, ``hdmi-WxH`` or ``native``. The
phantom renders ``hdmi-*`` with its synthetic machine UI and the ROI is its ``image_roi``; a video file
(``--source clip.mp4``) is scaled to the input's size (ROI: the config's ``roi`` when it fits, else the
whole frame); an image folder is used at its own size; a live device (v4l2, picamera2) at its configured
mode, paced by the device.

JSON (``--json``; `to_json`), schema version 1. Times in milliseconds, rates per second:

    schema_version  1
    tool            "nerveseg bench"
    machine         {cpu_model, cpu_cores, cpu_usable, cpu_features, arch, os, os_pretty_name, board, l4t,
                     python, interpreter, numpy, opencv, nerveseg, loadavg, date_utc}
    settings        {seconds, warmup_s, sink, handoff, overload, overload_factor, overload_fps, threads,
                     inputs, sources}
    models          [{label, role, path, name, quantization, untrained, sha256, macs}]
    runs            [RUN]: the throughput runs, in order model > threads > source > input
    overload        [RUN + {source_fps, drop_rate, latency_bound_ms, latency_growth_ms, bounded}]
    targets         [{name, status: PASS|FAIL|SKIP, value, threshold, unit, detail}]
    notes           [str]: skipped models, substitutions, warnings
    interrupted     bool

    RUN = {model, model_role, model_name, model_path, model_sha256, quantization, untrained, macs,
           interpreter, threads, input, source, frame_size: [w, h], roi: [x, y, w, h] | null, handoff,
           seconds, frames, captured, dropped, fps, frame_period_ms, ratio_fps_to_first, cpu_percent,
           peak_rss_mb, peak_rss_scope: "run" | "process", complete,
           latency_ms: {p50, p95, p99, mean, max},
           stages: {capture, roi_gray, denoise, resize, normalise, infer, smooth, overlay, sink, total:
                    {p50, p95, p99, mean}}}

``stages.total`` is the processing thread's time per frame (ROI+gray through sink); the processing stages
add up to it (their means exactly, up to the timer's own cost). ``capture`` runs on the capture thread, in
parallel. ``ratio_fps_to_first``: fps over the fps of the first run with the same source and input.
``peak_rss_scope`` is "run" when the kernel let the peak be reset at the start of the window
(/proc/self/clear_refs), else "process" (the peak since the process started).
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import json
import logging
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge import __version__
from edge.config import Config, with_overrides
from edge.errors import ConfigError, ModelError, SourceError
from edge.models import default_model_path
from edge.pipeline import STAGES, Pipeline, StageTimer
from edge.runner import ModelRunner, load_interpreter_class
from edge.sinks import open_sink
from edge.sources import open_source, source_spec_from_arg
from edge.sources.base import FrameSource, SourceBase
from edge.spec import ModelSpec, load_spec, sha256_file
from edge.types import Frame, Roi, StageStats

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEFAULT_SECONDS = 10.0
DEFAULT_WARMUP_S = 1.0
DEFAULT_THREADS = (1, 2)
DEFAULT_INPUTS = ("us-580x420", "hdmi-1920x1080")
MODEL_ALIASES = ("shipped", "shipped-float32", "classic-unet")
FLOAT32_SUFFIX = "-float32"
OVERLOAD_FACTOR = 2.0  # overload source rate = this x the pipeline's throughput fps
DEADLINE_GRACE_S = 15.0  # a run still going this long after its planned end (no frames?) is stopped
LIVE_KINDS = ("v4l2", "picamera2")
CLASSIC_SKIPS = 4
CLASSIC_SEED = 0
CLASSIC_BUILD_TIMEOUT_S = 1800.0

# Targets of issue 4, printed by the command (not unit tests).
TARGET_FPS = 60.0  # end to end, hdmi-1920x1080, 2 threads, model under test
TARGET_P99_MS = 50.0  # capture-to-display p99, overload run of the same
TARGET_SPEEDUP = 5.0  # model under test fps / classic float32 U-Net fps, same input and threads
TARGET_INPUT = "hdmi-1920x1080"
TARGET_THREADS = 2

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
PROCESS_STAGES = tuple(s for s in STAGES if s != "capture")  # the processing thread's stages, summing to total

_INPUT_RE = re.compile(r"^(us|hdmi)-(\d+)x(\d+)$")
_ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd42": "Cortex-A78AE",
    "0xd4b": "Cortex-A78C",
}
# CPU features that decide int8 vs float32 speed (x86: AVX2/AVX-512/VNNI; ARM: dot product, i8mm).
_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm", "sve")


# -- inputs -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputSpec:
    """One input size to benchmark.

    name: as given, e.g. ``"hdmi-1920x1080"``. kind: ``"us"`` (the ultrasound image alone), ``"hdmi"`` (a
    video-out frame with the image inside), ``"native"`` (the source's own size). size: (width, height) in
    pixels, None for native.
    """

    name: str
    kind: str
    size: tuple[int, int] | None


def parse_input(text: str) -> InputSpec:
    """``us-WxH`` | ``hdmi-WxH`` | ``native`` -> `InputSpec`. Raises `ConfigError` naming the allowed forms."""
    t = text.strip().lower()
    if t == "native":
        return InputSpec("native", "native", None)
    m = _INPUT_RE.match(t)
    if not m or int(m.group(2)) <= 0 or int(m.group(3)) <= 0:
        raise ConfigError(
            "<command line>",
            [f"--input: got {text!r}; allowed: us-WxH (the ultrasound frame, e.g. us-580x420), "
             "hdmi-WxH (a video-out frame, e.g. hdmi-1920x1080) or native"],
        )
    return InputSpec(t, m.group(1), (int(m.group(2)), int(m.group(3))))


# -- models -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchModel:
    """A model to benchmark. label: short display name; role: shipped | float32-twin | classic-unet | file;
    sha256: of the .tflite file (hex)."""

    label: str
    role: str
    path: Path
    spec: ModelSpec
    sha256: str

    @property
    def macs(self) -> int | None:
        """Multiply-accumulates per frame from the spec's provenance, when recorded."""
        v = self.spec.provenance.get("macs")
        return int(v) if isinstance(v, (int, float)) else None


def float32_twin_path(model_path: str | Path) -> Path:
    """``dir/name.tflite`` -> ``dir/name-float32.tflite`` (the same network in float32, shipped beside it)."""
    p = Path(model_path)
    return p.with_name(p.stem + FLOAT32_SUFFIX + p.suffix)


def cache_dir() -> Path:
    """Where built benchmark models are kept: ``$XDG_CACHE_HOME/nerveseg/bench`` or ``~/.cache/nerveseg/bench``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nerveseg" / "bench"


def tensorflow_available() -> bool:
    """True when TensorFlow can be imported (checked without importing it)."""
    return importlib.util.find_spec("tensorflow") is not None and importlib.util.find_spec("keras") is not None


def _load_model(path: Path, label: str, role: str) -> BenchModel:
    if not path.is_file():
        raise ModelError(f"model file {path} not found")
    return BenchModel(label=label, role=role, path=path, spec=load_spec(path), sha256=sha256_file(path))




def builder_options(spec: ModelSpec) -> dict:
    """The model builder's options recorded in a spec: ``options`` (training) or ``builder_options`` (placeholder)."""
    return spec.provenance.get("options") or spec.provenance.get("builder_options") or {}


def classic_unet(
    reference: ModelSpec, root: Path | None = None, base_filters: int | None = None
) -> tuple[Path | None, str | None]:
    """The classic 4-skip float32 U-Net matching ``reference``: ``(path, None)``, or ``(None, why not)``.

    Same input size, preprocessing and thresholds as ``reference``; ``base_filters``, else those of its
    provenance's ``builder_options`` (16 when absent; the original U-Net paper used 64); BatchNorm, plain 3x3
    convs, transposed-conv upsampling, batch 1; random weights (seed 0). Cached under ``root`` (default
    `cache_dir`) by a key of those options, so it is built once; a cached file whose spec does not load is
    rebuilt. Building needs TensorFlow and runs in a child process (seconds to a minute); without TensorFlow
    and without a cached copy, the reason is returned instead.
    """
    pp = reference.preprocess
    step = 2**CLASSIC_SKIPS
    if pp.height % step or pp.width % step:
        return None, (
            f"classic-unet skipped: the input {pp.width}x{pp.height} of {reference.name} is not divisible by "
            f"{step}, which 4 poolings need"
        )
    opts = builder_options(reference)
    filters = base_filters or opts.get("base_filters", 16)
    filters = filters if isinstance(filters, int) and filters > 0 else 16
    builder = {
        "input_shape": [pp.height, pp.width, 1],
        "base_filters": filters,
        "skips": CLASSIC_SKIPS,
        "batch_norm": True,
        "conv": "plain",
        "upsample": "transpose",
        "batch_size": 1,
    }
    key_src = json.dumps({"v": 1, "builder": builder, "preprocess": pp.model_dump(mode="json"),
                          "seed": CLASSIC_SEED}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:12]
    root = root or cache_dir()
    out = root / f"classic-unet-s{CLASSIC_SKIPS}-f{filters}-{pp.width}x{pp.height}-{key}.tflite"
    if out.is_file():
        try:
            load_spec(out)
            return out, None
        except ModelError as e:
            logger.warning("cached classic U-Net is unusable (%s): rebuilding", e)
    if not tensorflow_available():
        return None, (
            "classic-unet skipped: building it needs TensorFlow (pip install -e '.[train]' on a workstation, then "
            f"copy {out.name} and its .yaml into {root} on this box)"
        )
    spec = ModelSpec(
        name=f"classic-unet-f{filters}-random",
        untrained=True,
        quantization="float32",
        preprocess=pp,
        thresholds=reference.thresholds,
        provenance={
            "what": "benchmark reference only: classic 4-skip U-Net with RANDOM weights (timing does not depend "
            "on weight values; its outlines mean nothing)",
            "builder": "train.models.build_unet",
            "builder_options": builder,
            "seed": CLASSIC_SEED,
            "made_by": f"nerveseg bench {__version__}",
        },
    )
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="build-", dir=root) as tmp:
        tmp_out = Path(tmp) / out.name
        job = {"builder_options": builder, "keras_name": f"classic_unet_f{filters}", "seed": CLASSIC_SEED,
               "spec": spec.model_dump(mode="json"), "out": str(tmp_out)}
        logger.info("building the classic U-Net with TensorFlow in a child process -> %s", out)
        t0 = time.monotonic()
        try:
            r = subprocess.run(
                # A separate process on purpose: edge never imports TensorFlow or the workstation packages.
                [sys.executable, "-m", "convert.reference", json.dumps(job)],
                capture_output=True,
                text=True,
                timeout=CLASSIC_BUILD_TIMEOUT_S,
                cwd=Path(__file__).resolve().parents[1],  # the checkout, for a run from source
            )
        except subprocess.TimeoutExpired:
            return None, f"classic-unet skipped: building it took over {CLASSIC_BUILD_TIMEOUT_S:.0f} s"
        if r.returncode != 0 or not tmp_out.is_file():
            last = (r.stderr.strip().splitlines() or ["no message"])[-1]
            logger.warning("classic U-Net build failed (exit %s):\n%s", r.returncode, r.stderr[-4000:])
            return None, f"classic-unet skipped: building it failed: {last}"
        # The spec first, then the model: an interrupted pair fails its hash check and is rebuilt.
        os.replace(tmp_out.with_suffix(".yaml"), out.with_suffix(".yaml"))
        os.replace(tmp_out, out)
        logger.info("classic U-Net built in %.0f s", time.monotonic() - t0)
    return out, None


def resolve_models(
    names: list[str] | None,
    configured: str | None = None,
    cache_root: Path | None = None,
    classic_filters: int | None = None,
) -> tuple[list[BenchModel], list[str]]:
    """Turn ``--model`` values (paths or `MODEL_ALIASES`) into loaded specs; returns ``(models, notes)``.

    names: None or empty = the defaults: the configured model (``configured``, i.e. ``model.path``) or the
        shipped one, its float32 twin, the classic U-Net.
    Raises `ModelError` for a path that does not exist or whose spec is missing/invalid, and for an explicit
    ``shipped-float32`` that is not there. Defaults that cannot be had, and ``classic-unet`` without
    TensorFlow, are skipped with a note. The same file twice is benchmarked once. ``classic_filters``:
    base filters of the classic U-Net (None: those of the first model, see `classic_unet`).
    """
    notes: list[str] = []
    explicit = bool(names)
    main_path = Path(configured).expanduser() if configured else default_model_path()
    wanted = list(names) if names else [str(main_path), "<twin>", "classic-unet"]
    models: list[BenchModel] = []
    for name in wanted:
        if name in ("shipped", str(main_path)) and name != "<twin>":
            path = default_model_path() if name == "shipped" else main_path
            role = "shipped" if path == default_model_path() else "file"
            models.append(_load_model(path, path.name, role))
        elif name in ("shipped-float32", "<twin>"):
            ref = default_model_path() if name == "shipped-float32" else main_path
            twin = float32_twin_path(ref)
            if twin.is_file():
                models.append(_load_model(twin, twin.name, "float32-twin"))
            elif explicit:
                raise ModelError(f"model file {twin} not found (the float32 twin of {ref.name})")
            else:
                notes.append(f"float32 twin skipped: {twin} not found (ship it beside {ref.name} to compare)")
        elif name == "classic-unet":
            reference = models[0].spec if models else load_spec(main_path)
            path, why = classic_unet(reference, cache_root, classic_filters)
            if path is None:
                notes.append(str(why))
            else:
                filters = builder_options(load_spec(path)).get("base_filters", "?")
                models.append(_load_model(path, f"classic-unet-f{filters}", "classic-unet"))
                notes.append(f"classic-unet: {path.name}, float32, RANDOM weights: timing only (timing does not "
                             "depend on weight values)")
        else:
            p = Path(name).expanduser()
            models.append(_load_model(p, p.name, "shipped" if p.resolve() == default_model_path() else "file"))
    seen: set[Path] = set()
    unique = []
    for m in models:
        if m.path.resolve() not in seen:
            seen.add(m.path.resolve())
            unique.append(m)
    for m in unique:
        if m.spec.untrained and m.role != "classic-unet":
            notes.append(f"{m.label} is UNTRAINED (random weights): its speed is representative, its outlines not")
    if not unique:
        raise ModelError("no model to benchmark")
    return unique, notes


# -- machine header -----------------------------------------------------------------------------------------


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _cpuinfo() -> tuple[str, list[str]]:
    """(CPU model, relevant feature flags) from /proc/cpuinfo, falling back to `platform`."""
    text = _read_text("/proc/cpuinfo") or ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep and k.strip() not in fields:
            fields[k.strip()] = v.strip()
    model = fields.get("model name") or fields.get("Model") or fields.get("Hardware") or ""
    part = fields.get("CPU part", "").lower()
    if not model or (part in _ARM_PARTS and "cortex" not in model.lower()):
        arm = _ARM_PARTS.get(part)
        model = f"{model} ({arm})".strip() if model and arm else (arm or model)
    model = model or platform.processor() or platform.machine() or "unknown"
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return model, [f for f in _FEATURES if f in flags]


def _os_pretty_name() -> str | None:
    for line in (_read_text("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return None


def machine_info(interpreter: str = "auto") -> dict[str, Any]:
    """The report's machine header (see the module docstring for the keys). Raises `ModelError` without
    any TFLite interpreter, as `ModelRunner` would."""
    _, backend = load_interpreter_class(interpreter)
    cpu, features = _cpuinfo()
    board = _read_text("/proc/device-tree/model")
    l4t = _read_text("/etc/nv_tegra_release")
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu_model": cpu,
        "cpu_cores": os.cpu_count(),
        "cpu_usable": usable,
        "cpu_features": features,
        "arch": platform.machine(),
        "os": platform.platform(),
        "os_pretty_name": _os_pretty_name(),
        "board": board.strip("\x00 \n") if board else None,
        "l4t": l4t.splitlines()[0].strip("# ") if l4t and l4t.strip() else None,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "interpreter": backend,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "nerveseg": __version__,
        "loadavg": load,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


# -- measuring one run --------------------------------------------------------------------------------------


class PacedSource(SourceBase):
    """Delivers an unpaced source's frames at ``fps`` (the overload runs' fast "device").

    Waits until a frame is due, *then* reads it, so the frame's ``t_capture_ns`` is its delivery time, as a
    device's would be. Any rate is allowed (the config's 240 fps ceiling is for real devices). The wrapped
    source is closed with this one.
    """

    def __init__(self, inner: FrameSource, fps: float) -> None:
        super().__init__()
        self.inner = inner
        self.fps = float(fps)
        self.nominal_fps = self.fps
        self.image_roi = getattr(inner, "image_roi", None)

    def read(self, timeout: float = 0.5) -> Frame | None:
        if not self._wait_due(self.fps, timeout):
            return None
        return self.inner.read(timeout)

    def close(self) -> None:
        self.inner.close()

    def describe(self) -> str:
        return f"{self.inner.describe()}, paced @{self.fps:.4g}fps by the benchmark"


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux >= 4.0, /proc/self/clear_refs); True when it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return v / (1024 * 1024) if sys.platform == "darwin" else v / 1024


@dataclass(frozen=True)
class _Snap:
    t_ns: int
    cpu_s: float
    frames: int
    captured: int
    dropped: int


class _Window:
    """Warm-up, then a measurement window of ``seconds`` inside one `Pipeline.run`, via its ``on_frame``.

    At the first frame after the warm-up, the pipeline's stage timer (and the capture thread's) is swapped
    for ``timer`` (preallocated), counters and CPU time are snapshotted and the peak RSS is reset; at the
    first frame after ``seconds`` the end is snapshotted, the capture thread is pointed at a scratch timer so
    the window's data stay as they were, and the run is stopped. Per frame it stores the time since the
    window began (s) and the capture-to-callback latency (ms) in preallocated arrays for the plot.
    """

    def __init__(self, pipe: Pipeline, warmup_s: float, seconds: float, capacity: int, stop: threading.Event):
        self.pipe = pipe
        self.warmup_ns = int(warmup_s * 1e9)
        self.seconds_ns = int(seconds * 1e9)
        self.timer = StageTimer(capacity)
        self._scratch = StageTimer(16)
        self.t_s = np.zeros(capacity, np.float64)
        self.lat_ms = np.zeros(capacity, np.float32)
        self.n = 0
        self.stop = stop
        self.begin: _Snap | None = None
        self.end: _Snap | None = None
        self.rss_reset = False
        self.peak_rss_mb = 0.0
        self.frame_shape: tuple[int, ...] | None = None
        self._t_warm_end = 0
        self._t_end = 0
        self._lock = threading.Lock()  # close() may race between the processing thread and the watchdog

    def arm(self) -> None:
        """Call just before `Pipeline.run`: the warm-up starts now."""
        self._t_warm_end = time.monotonic_ns() + self.warmup_ns

    def _snap(self, now: int) -> _Snap:
        p = self.pipe
        return _Snap(now, time.process_time(), p.counters.frames, p.capture.captured, p.slot.dropped)

    def on_frame(self, frame: Frame, _result: object, _decision: object) -> None:
        now = time.monotonic_ns()
        if self.begin is not None:
            if self.end is not None:
                return
            i = self.n
            if i < self.t_s.size:
                self.t_s[i] = (now - self.begin.t_ns) / 1e9
                self.lat_ms[i] = (now - frame.t_capture_ns) / 1e6
                self.n = i + 1
            if now >= self._t_end:
                self.close(now)
            return
        if self.frame_shape is None:
            self.frame_shape = frame.image.shape
        if now >= self._t_warm_end:
            self.pipe.timer = self.pipe.capture.timer = self.timer
            self.rss_reset = _reset_peak_rss()
            self.begin = self._snap(time.monotonic_ns())
            self._t_end = self.begin.t_ns + self.seconds_ns

    def close(self, now: int | None = None) -> None:
        """End the window (idempotent); stops the run."""
        with self._lock:
            if self.begin is not None and self.end is None:
                self.end = self._snap(now or time.monotonic_ns())
                self.pipe.capture.timer = self._scratch
                self.peak_rss_mb = _peak_rss_mb()
        self.stop.set()


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


def _roi_for(cfg: Config, source: FrameSource, size: tuple[int, int] | None, notes: list[str], label: str):
    """The configured ROI when it fits ``size``, else the source's own ``image_roi``, else None (whole frame)."""
    if cfg.roi is not None:
        r = cfg.roi.to_roi()
        if size is None or r.clip_to(*size):
            return r
        note = f"{label}: the config's roi {r} does not fit {size[0]}x{size[1]}: not used for that input"
        if note not in notes:
            notes.append(note)
    return getattr(source, "image_roi", None)


def _frame_size(source: FrameSource) -> tuple[int, int] | None:
    size = getattr(source, "frame_size", None) or getattr(source, "size", None)
    return (int(size[0]), int(size[1])) if size else None


def measure(
    cfg: Config,
    source: FrameSource,
    runner: ModelRunner,
    sink: Any,
    *,
    seconds: float,
    warmup_s: float,
    drop_frames: bool,
    roi: Roi | None,
    stop: threading.Event,
) -> tuple[_Window, Pipeline]:
    """Run the live loop on an open source and sink for ``warmup_s`` + ``seconds``; return the window.

    The loop is `Pipeline` as `nerveseg run` builds it (``cfg``'s presence, overlay and stale settings;
    ``roi`` given explicitly). ``stop`` (the whole benchmark's) ends the run early. Raises what the loop
    raises (a capture error), and `SourceError` when no frame was analysed before the deadline.
    """
    run_stop = threading.Event()
    cfg = cfg.model_copy(update={"roi": None, "loop": cfg.loop.model_copy(update={"max_frames": None})})
    pipe = Pipeline(cfg, source, runner, sink, stop=run_stop, drop_frames=drop_frames, roi=roi)
    # Room for every frame of the window up to 2000 fps (the last `capacity` frames beyond that).
    capacity = int(min(max(seconds * 2000 + 1024, 4096), 1 << 17))
    win = _Window(pipe, warmup_s, seconds, capacity, run_stop)
    pipe.on_frame = win.on_frame
    deadline = time.monotonic() + warmup_s + seconds + DEADLINE_GRACE_S

    def watch() -> None:
        while not run_stop.is_set():
            if stop.is_set() or time.monotonic() >= deadline:
                win.close()
                return
            run_stop.wait(0.05)

    watcher = threading.Thread(target=watch, name="nerveseg-bench-watch", daemon=True)
    win.arm()
    watcher.start()
    try:
        pipe.run()
    finally:
        run_stop.set()
        watcher.join(timeout=1.0)
    if win.begin is None and not stop.is_set():
        raise SourceError(
            f"{source.describe()}: no frame was analysed within {warmup_s + seconds + DEADLINE_GRACE_S:.0f} s "
            "(no frames from the source, or the ROI does not fit the frame)"
        )
    win.close()
    return win, pipe


def _result(
    win: _Window, model: BenchModel, runner: ModelRunner, input_name: str, source_name: str, source: FrameSource,
    handoff: str, roi: Roi | None, seconds: float, source_fps: float | None = None,
) -> RunResult | None:
    b, e = win.begin, win.end
    if b is None or e is None or e.frames <= b.frames:
        return None
    wall = (e.t_ns - b.t_ns) / 1e9
    timer = win.timer
    stages = {s: st for s in (*STAGES, "total") if (st := timer.stats(s)) is not None}
    lat = timer.stats("latency")
    shape = win.frame_shape
    return RunResult(
        model=model,
        threads=runner.threads,
        interpreter=runner.backend,
        sha256=runner.sha256,
        input=input_name,
        source=source_name,
        source_description=source.describe(),
        handoff=handoff,
        frame_size=(int(shape[1]), int(shape[0])) if shape else None,
        roi=roi,
        seconds=wall,
        frames=e.frames - b.frames,
        captured=e.captured - b.captured,
        dropped=e.dropped - b.dropped,
        fps=(e.frames - b.frames) / wall,
        cpu_percent=100.0 * (e.cpu_s - b.cpu_s) / wall,
        peak_rss_mb=win.peak_rss_mb,
        peak_rss_scope="run" if win.rss_reset else "process",
        complete=wall >= 0.95 * seconds,
        stages=stages,
        latency=lat,
        latency_max_ms=float(timer.values_ms("latency").max()),
        t_s=win.t_s[: win.n].copy(),
        latency_series_ms=win.lat_ms[: win.n].copy(),
        source_fps=source_fps,
    )


# -- the benchmark ------------------------------------------------------------------------------------------


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
    classic_filters: int | None = None  # None = the first model's base filters (see `classic_unet`)
    cache_root: Path | None = None  # None = `cache_dir`

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


@dataclass
class BenchReport:
    machine: dict[str, Any]
    settings: dict[str, Any]
    models: list[BenchModel]
    runs: list[RunResult] = field(default_factory=list)
    overload: list[RunResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False


@dataclass(frozen=True)
class _Job:
    """One (source, input) to run: the source config, its label and whether it is a live device."""

    source_name: str
    input: InputSpec
    cfg: Config
    live: bool


def _short_source(spec: str) -> str:
    kind, _, arg = spec.partition(":")
    return f"{kind}:{Path(arg).name}" if arg and kind in ("file", "images") else spec


def _jobs(cfg: Config, opts: BenchOptions, notes: list[str]) -> list[_Job]:
    """Source configs per (source, input). Raises `SourceError` / `ConfigError` for bad specs or inputs."""
    if opts.sources:
        specs = [source_spec_from_arg(s) for s in opts.sources]
    else:
        specs = [cfg.source.spec]
    inputs = [parse_input(n) for n in (opts.inputs or DEFAULT_INPUTS)]
    jobs = []
    for spec in dict.fromkeys(specs):
        kind = spec.partition(":")[0]
        name = _short_source(spec)
        if kind in LIVE_KINDS:
            jobs.append(_Job(name, InputSpec("device", "native", None), with_overrides(cfg, source={"spec": spec}),
                             live=True))
            notes.append(f"{name}: a live device is measured at its configured mode, paced by the device, "
                         "newest frame wins; --input does not apply")
            continue
        for inp in inputs:
            src: dict[str, Any] = {"spec": spec, "pace": False, "loop": True, "width": None, "height": None}
            if kind == "images":
                if inp.size is not None:
                    notes.append(f"{name}: image folders are used at their own size: input {inp.name} -> native")
                    inp = InputSpec("native", "native", None)
            elif inp.size is not None:
                w, h = inp.size
                if kind == "phantom" and inp.kind == "us" and (w > 580 or h > 420):
                    raise ConfigError("<command line>", [f"--input {inp.name}: the phantom's ultrasound image is at "
                                                         "most 580x420; use hdmi-WxH for a video-out frame"])
                if kind == "phantom" and inp.kind == "hdmi" and (w < 580 or h < 420):
                    raise ConfigError("<command line>", [f"--input {inp.name}: a video-out frame around the phantom's "
                                                         "580x420 image must be at least 580x420"])
                src["width"], src["height"] = w, h
            job = _Job(name, inp, with_overrides(cfg, source=src), live=False)
            if job not in jobs:
                jobs.append(job)
    return jobs


def _preflight(jobs: list[_Job]) -> None:
    """Open (and close) each file/folder source once, so a bad path fails before any run (`SourceError`)."""
    seen = set()
    for job in jobs:
        spec = job.cfg.source.spec
        if job.cfg.source.kind in ("file", "images") and spec not in seen:
            seen.add(spec)
            with open_source(job.cfg.source):
                pass


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
    Raises `ConfigError` (options), `ModelError` (a model), `SourceError` (a source), `SinkError`.
    """
    opts.check()
    stop = stop or threading.Event()
    say = progress or (lambda m: logger.info("%s", m))
    notes: list[str] = []
    jobs = _jobs(cfg, opts, notes)
    _preflight(jobs)
    models, model_notes = resolve_models(opts.models, cfg.model.path, opts.cache_root, opts.classic_filters)
    notes[:0] = model_notes
    threads = list(dict.fromkeys(opts.threads))
    overload_threads = TARGET_THREADS if TARGET_THREADS in threads else max(threads)
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
    )
    n_total = len(models) * len(threads) * len(jobs)
    k = 0
    for model in models:
        for n_threads in threads:
            runner = ModelRunner(model.path, threads=n_threads, interpreter=cfg.model.interpreter)
            for job in jobs:
                if stop.is_set():
                    report.interrupted = True
                    report.notes[:] = list(dict.fromkeys(report.notes))
                    _fill_ratios(report.runs)
                    _fill_ratios(report.overload)
                    return report
                k += 1
                run = _run_one(cfg, job, model, runner, opts, stop, drop_frames=job.live, notes=notes)
                if run is None:
                    continue
                report.runs.append(run)
                say(f"[{k}/{n_total}] {model.label} ({model.spec.quantization}), {n_threads} thread(s), "
                    f"{job.input.name} from {job.source_name}: {run.fps:.1f} fps, total p50 "
                    f"{run.stages['total'].p50:.2f} ms")
                if opts.overload and model is models[0] and n_threads == overload_threads and not job.live:
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
    report.interrupted = stop.is_set()
    report.notes[:] = list(dict.fromkeys(report.notes))
    _fill_ratios(report.runs)
    _fill_ratios(report.overload)
    return report


def _run_one(
    cfg: Config, job: _Job, model: BenchModel, runner: ModelRunner, opts: BenchOptions, stop: threading.Event,
    *, drop_frames: bool, notes: list[str], pace_fps: float | None = None,
) -> RunResult | None:
    with open_source(job.cfg.source) as inner, open_sink(cfg.sink, fps_hint=inner.nominal_fps) as sink:
        source: FrameSource = PacedSource(inner, pace_fps) if pace_fps else inner
        roi = _roi_for(job.cfg, inner, _frame_size(inner), notes, job.source_name)
        win, _ = measure(
            job.cfg, source, runner, sink, seconds=opts.seconds, warmup_s=opts.warmup_s,
            drop_frames=drop_frames, roi=roi, stop=stop,
        )
        handoff = "latest" if drop_frames else "lossless"
        return _result(win, model, runner, job.input.name, job.source_name, source, handoff, roi, opts.seconds,
                       source_fps=pace_fps)


def _fill_ratios(runs: list[RunResult]) -> None:
    first: dict[tuple[str, str], float] = {}
    for r in runs:
        base = first.setdefault((r.source, r.input), r.fps)
        r.ratio_fps_to_first = r.fps / base if base > 0 else float("nan")


# -- targets ------------------------------------------------------------------------------------------------


def evaluate_targets(report: BenchReport) -> list[dict[str, Any]]:
    """The issue's three targets for the model under test (the first model) as PASS/FAIL/SKIP records."""
    out: list[dict[str, Any]] = []
    if not report.models:
        return out
    main = report.models[0]
    t = TARGET_THREADS  # the targets are defined at 2 threads: without such runs they are skipped

    def find(runs: list[RunResult], model: BenchModel | None = None, role: str | None = None) -> RunResult | None:
        for r in runs:
            if r.input == TARGET_INPUT and r.threads == t and (model is None or r.model is model):
                if role is None or r.model.role == role:
                    return r
        return None

    where = f"{main.label}, {TARGET_INPUT}, {t} threads"
    missing = "not measured (no such run)"
    hd = find(report.runs, main)
    what = f">= {TARGET_FPS:.0f} fps end to end, {where}"
    out.append(_target("fps", hd and hd.fps, TARGET_FPS, "fps", what if hd else f"{what}: {missing}"))
    ov = find(report.overload, main)
    what = f"capture-to-display p99 <= {TARGET_P99_MS:.0f} ms, {where}"
    if ov is not None:
        out.append(_target("latency_p99", ov.latency.p99, TARGET_P99_MS, "ms", f"{what}, overload run", False))
    elif hd is not None:
        detail = f"{what}, throughput run (no overload run: the latency includes one frame waiting)"
        out.append(_target("latency_p99", hd.latency.p99, TARGET_P99_MS, "ms", detail, False))
    else:
        out.append(_target("latency_p99", None, TARGET_P99_MS, "ms", f"{what}: {missing}", False))
    classic = find(report.runs, role="classic-unet")
    what = f">= {TARGET_SPEEDUP:.0f}x the fps of the classic float32 U-Net, {where}"
    if hd is None or classic is None or main.role == "classic-unet":
        why = missing if hd is None else "no classic-unet run with that input and threads"
        out.append(_target("speedup_vs_classic", None, TARGET_SPEEDUP, "x", f"{what}: {why}"))
    else:
        detail = f"{what} ({hd.fps:.1f} vs {classic.fps:.1f} fps)"
        out.append(_target("speedup_vs_classic", hd.fps / classic.fps, TARGET_SPEEDUP, "x", detail))
    return out


def _target(
    name: str, value: float | None, threshold: float, unit: str, detail: str, higher_is_better: bool = True
) -> dict[str, Any]:
    if value is None:
        status = "SKIP"
    elif higher_is_better:
        status = "PASS" if value >= threshold else "FAIL"
    else:
        status = "PASS" if value <= threshold else "FAIL"
    return {"name": name, "status": status, "value": value, "threshold": threshold, "unit": unit, "detail": detail}


# -- output -------------------------------------------------------------------------------------------------


def _stats_dict(st: StageStats | None, extra: dict[str, float] | None = None) -> dict[str, float] | None:
    if st is None:
        return None
    d = {"p50": round(st.p50, 4), "p95": round(st.p95, 4), "p99": round(st.p99, 4), "mean": round(st.mean, 4)}
    return {**d, **(extra or {})}


def _run_json(r: RunResult) -> dict[str, Any]:
    m = r.model
    d: dict[str, Any] = {
        "model": m.label,
        "model_role": m.role,
        "model_name": m.spec.name,
        "model_path": str(m.path),
        "model_sha256": r.sha256,
        "quantization": m.spec.quantization,
        "untrained": m.spec.untrained,
        "macs": m.macs,
        "interpreter": r.interpreter,
        "threads": r.threads,
        "input": r.input,
        "source": r.source,
        "source_description": r.source_description,
        "frame_size": list(r.frame_size) if r.frame_size else None,
        "roi": [r.roi.x, r.roi.y, r.roi.w, r.roi.h] if r.roi else None,
        "handoff": r.handoff,
        "seconds": round(r.seconds, 3),
        "frames": r.frames,
        "captured": r.captured,
        "dropped": r.dropped,
        "fps": round(r.fps, 2),
        "frame_period_ms": round(r.frame_period_ms, 4),
        "ratio_fps_to_first": round(r.ratio_fps_to_first, 3),
        "cpu_percent": round(r.cpu_percent, 1),
        "peak_rss_mb": round(r.peak_rss_mb, 1),
        "peak_rss_scope": r.peak_rss_scope,
        "complete": r.complete,
        "latency_ms": _stats_dict(r.latency, {"max": round(r.latency_max_ms, 4)}),
        "stages": {k: _stats_dict(v) for k, v in r.stages.items()},
    }
    if r.source_fps is not None:
        d.update(
            source_fps=round(r.source_fps, 2),
            drop_rate=round(r.drop_rate, 4),
            latency_bound_ms=round(r.latency_bound_ms(), 3),
            latency_growth_ms=round(r.latency_growth_ms(), 3),
            bounded=r.bounded,
        )
    return d


def to_json(report: BenchReport) -> dict[str, Any]:
    """The report as a JSON-ready dict, schema version `SCHEMA_VERSION` (see the module docstring)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "nerveseg bench",
        "machine": report.machine,
        "settings": report.settings,
        "models": [
            {"label": m.label, "role": m.role, "path": str(m.path), "name": m.spec.name,
             "quantization": m.spec.quantization, "untrained": m.spec.untrained,
             "sha256": m.sha256, "macs": m.macs}
            for m in report.models
        ],
        "runs": [_run_json(r) for r in report.runs],
        "overload": [_run_json(r) for r in report.overload],
        "targets": evaluate_targets(report),
        "notes": list(report.notes),
        "interrupted": report.interrupted,
    }


def write_json(report: BenchReport, path: str | Path) -> Path:
    """Write `to_json` to ``path`` (UTF-8, indented); returns the path."""
    p = Path(path)
    p.write_text(json.dumps(to_json(report), indent=2, allow_nan=False, default=str) + "\n", encoding="utf-8")
    return p


def _fmt_run_label(r: RunResult, width: int = 26) -> str:
    return (r.model.label if len(r.model.label) <= width else r.model.label[: width - 1] + "~").ljust(width)


def format_report(report: BenchReport) -> str:
    """The terminal report: machine header, models, throughput and stage tables, overload, targets, notes."""
    mc = report.machine
    s = report.settings
    lines = [f"nerveseg bench {mc['nerveseg']}  ({mc['date_utc']})"]
    feats = ", ".join(mc["cpu_features"]) or "-"
    lines.append(f"  cpu       : {mc['cpu_model']} ({mc['arch']}), {mc['cpu_cores']} cores "
                 f"({mc['cpu_usable']} usable), features: {feats}")
    lines.append(f"  os        : {mc['os_pretty_name'] or '-'} | {mc['os']}")
    if mc.get("board") or mc.get("l4t"):
        lines.append(f"  board     : {mc.get('board') or '-'}{'  L4T ' + mc['l4t'] if mc.get('l4t') else ''}")
    lines.append(f"  software  : {mc['python']}, {mc['interpreter']}, numpy {mc['numpy']}, opencv {mc['opencv']}")
    if mc.get("loadavg"):
        busy = "  (busy machine: numbers will be low)" if mc["loadavg"][0] > 0.5 * (mc["cpu_usable"] or 1) else ""
        lines.append(f"  load avg  : {' '.join(f'{v:.2f}' for v in mc['loadavg'])}{busy}")
    lines.append(f"  method    : {s['seconds']:g} s per run after {s['warmup_s']:g} s warm-up, sink {s['sink']}; "
                 "throughput runs: unpaced source, every frame")
    lines.append("")
    lines.append("models")
    for i, m in enumerate(report.models, 1):
        macs = f"{m.macs / 1e6:.0f} MMAC" if m.macs else "? MMAC"
        pp = m.spec.preprocess
        flag = "  UNTRAINED" if m.spec.untrained and m.role != "classic-unet" else ""
        flag = "  RANDOM weights (timing only)" if m.role == "classic-unet" else flag
        lines.append(f"  [{i}] {m.label:<34} {m.spec.quantization:<7} {pp.width}x{pp.height}  {macs:>9}  "
                     f"sha256 {m.sha256[:16]}{flag}")
    if report.runs:
        lines.append("")
        lines.append("throughput (every frame processed; x first = fps / first run with the same input)")
        hdr = (f"  {'#':>2}  {'input':<16} {'source':<24} {'model':<26} {'thr':>3} {'fps':>7}  {'x first':>7} "
               f"{'cpu %':>6} {'RSS MB':>7}  {'latency ms p50/p95/p99':>22}")
        lines.append(hdr)
        for i, r in enumerate(report.runs, 1):
            lat = f"{r.latency.p50:.1f}/{r.latency.p95:.1f}/{r.latency.p99:.1f}"
            lines.append(f"  {i:>2}  {r.input:<16} {r.source[:24]:<24} {_fmt_run_label(r)} {r.threads:>3} "
                         f"{r.fps:>7.1f}{' ' if r.complete else '*'} {r.ratio_fps_to_first:>7.2f} "
                         f"{r.cpu_percent:>6.0f} {r.peak_rss_mb:>7.0f}  {lat:>22}")
        if not all(r.complete for r in report.runs):
            lines.append("  * partial run: stopped before its measuring time was up")
        lines.append("")
        lines.append("stage ms, p50 (per frame; total = processing thread, capture runs in parallel; "
                     "p95/p99 in --json)")
        names = [n for n in STAGES if any(n in r.stages for r in report.runs)]
        lines.append(f"  {'#':>2}  " + " ".join(f"{STAGE_LABELS[n]:>8}" for n in names)
                     + f" {'total':>8} {'total p99':>9}")
        for i, r in enumerate(report.runs, 1):
            cells = " ".join(f"{r.stages[n].p50:>8.2f}" if n in r.stages else f"{'-':>8}" for n in names)
            lines.append(f"  {i:>2}  {cells} {r.stages['total'].p50:>8.2f} {r.stages['total'].p99:>9.2f}")
    if report.overload:
        lines.append("")
        lines.append("overload (source paced faster than the pipeline, newest frame wins, the rest dropped)")
        lines.append(f"  {'input':<16} {'model':<26} {'thr':>3} {'src fps':>8} {'fps':>8} {'dropped':>8} "
                     f"{'latency ms p50/p95/p99':>22} {'bound':>7} {'growth':>7}  bounded")
        for r in report.overload:
            lat = f"{r.latency.p50:.1f}/{r.latency.p95:.1f}/{r.latency.p99:.1f}"
            lines.append(f"  {r.input:<16} {_fmt_run_label(r)} {r.threads:>3} {r.source_fps or 0:>8.0f} "
                         f"{r.fps:>8.1f} {100 * r.drop_rate:>7.0f}% {lat:>22} {r.latency_bound_ms():>7.1f} "
                         f"{r.latency_growth_ms():>7.1f}  {'yes' if r.bounded else 'NO'}")
    lines.append("")
    lines.append("targets")
    for t in evaluate_targets(report):
        v = "" if t["value"] is None else f": {t['value']:.1f} {t['unit']}".replace(" x", "x")
        lines.append(f"  {t['status']:<4}  {t['detail']}{v}")
    if report.notes:
        lines.append("")
        lines.append("notes")
        lines.extend(f"  - {n}" for n in report.notes)
    if report.interrupted:
        lines.append("")
        lines.append("INTERRUPTED: the report holds the runs finished before the stop")
    return "\n".join(lines)


# -- plot ---------------------------------------------------------------------------------------------------

_PALETTE = [(200, 120, 30), (40, 160, 240), (60, 180, 60), (60, 60, 220), (180, 90, 160), (120, 120, 120),
            (20, 200, 200), (200, 200, 40), (90, 40, 140), (30, 100, 30), (160, 160, 250), (0, 120, 200)]
_STAGE_COLORS = {"roi_gray": (180, 119, 31), "denoise": (14, 127, 255), "resize": (44, 160, 44),
                 "normalise": (40, 39, 214), "infer": (189, 103, 148), "smooth": (75, 86, 140),
                 "overlay": (194, 119, 227), "sink": (127, 127, 127)}
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(img: np.ndarray, s: str, x: int, y: int, scale: float = 0.45, color=(30, 30, 30), thick: int = 1) -> None:
    cv2.putText(img, s, (x, y), _FONT, scale, color, thick, cv2.LINE_AA)


def render_plot(report: BenchReport, path: str | Path) -> Path:
    """Draw latency over time (every run) and the per-stage breakdown (mean ms, stacked) into a PNG.

    OpenCV drawing only. Raises `OSError` when the file cannot be written.
    """
    runs = [*report.runs, *report.overload]
    labels = [f"{r.model.label} {r.threads}t {r.input}{' OVERLOAD' if r.source_fps else ''}" for r in runs]
    W, M = 1400, 70
    ph = 380  # latency panel height
    bar_h, gap = 18, 8
    legend_rows = (len(runs) + 2) // 3
    bh = max(1, len(runs)) * (bar_h + gap) + 60
    H = 60 + ph + 40 + legend_rows * 20 + 50 + bh + 40
    img = np.full((H, W, 3), 255, np.uint8)
    mc = report.machine
    _text(img, f"nerveseg bench {mc['nerveseg']} - {mc['cpu_model']}, {mc['cpu_usable']} cores, "
               f"{mc['interpreter']}, {mc['date_utc']}", M, 28, 0.55, thick=1)
    # Panel 1: latency over time.
    x0, y0, x1, y1 = M, 60, W - 30, 60 + ph
    cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 1)
    tmax = max([float(r.t_s[-1]) for r in runs if r.t_s.size] or [1.0]) or 1.0
    hi = [float(np.percentile(r.latency_series_ms, 99.5)) for r in runs if r.latency_series_ms.size]
    ymax = max(hi or [1.0]) * 1.15 or 1.0
    for k in range(6):
        v = ymax * k / 5
        yy = int(y1 - (y1 - y0) * k / 5)
        cv2.line(img, (x0, yy), (x1, yy), (225, 225, 225), 1)
        _text(img, f"{v:.0f}" if ymax >= 10 else f"{v:.1f}", 8, yy + 4, 0.4)
    for k in range(6):
        xx = int(x0 + (x1 - x0) * k / 5)
        _text(img, f"{tmax * k / 5:.1f}", xx - 10, y1 + 18, 0.4)
    _text(img, "capture-to-display latency, ms, over the measured window (s)", x0 + 6, y0 + 18, 0.5)
    for i, r in enumerate(runs):
        if r.t_s.size < 2:
            continue
        t, lat = r.t_s, r.latency_series_ms
        if t.size > x1 - x0:  # one point per pixel column, its worst latency, so spikes stay visible
            starts = np.linspace(0, t.size, x1 - x0 + 1).astype(np.int64)[:-1]
            t, lat = t[starts], np.maximum.reduceat(lat, starts)
        lat = np.minimum(lat, ymax)
        pts = np.stack([x0 + t / tmax * (x1 - x0), y1 - lat / ymax * (y1 - y0)], axis=1).astype(np.int32)
        cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, _PALETTE[i % len(_PALETTE)], 2 if r.source_fps else 1,
                      cv2.LINE_AA)
    ly = y1 + 40
    for i, lab in enumerate(labels):
        cx, cy = M + (i % 3) * ((W - M) // 3), ly + (i // 3) * 20
        cv2.rectangle(img, (cx, cy - 9), (cx + 14, cy + 1), _PALETTE[i % len(_PALETTE)], -1)
        _text(img, f"{i + 1}. {lab}"[:60], cx + 20, cy, 0.42)
    # Panel 2: stage breakdown, mean ms per frame, stacked (sums to the processing total).
    y = ly + legend_rows * 20 + 30
    _text(img, "time per frame by stage, mean ms (processing thread; capture runs in parallel)", M, y, 0.5)
    y += 14
    for j, name in enumerate(PROCESS_STAGES):
        cx = M + j * 130
        cv2.rectangle(img, (cx, y), (cx + 14, y + 10), _STAGE_COLORS[name], -1)
        _text(img, STAGE_LABELS[name], cx + 20, y + 10, 0.42)
    y += 30
    bx0, bx1 = M + 340, W - 130
    smax = max([r.stages["total"].mean for r in runs if "total" in r.stages] or [1.0]) or 1.0
    for i, r in enumerate(runs):
        _text(img, f"{i + 1}. {labels[i]}"[:52], 8, y + bar_h - 4, 0.42)
        x = float(bx0)
        for name in PROCESS_STAGES:
            st = r.stages.get(name)
            if st is None:
                continue
            w = st.mean / smax * (bx1 - bx0)
            cv2.rectangle(img, (int(x), y), (max(int(x + w), int(x) + 1), y + bar_h), _STAGE_COLORS[name], -1)
            x += w
        tot = r.stages.get("total")
        _text(img, f"{tot.mean:.2f} ms, {r.fps:.0f} fps" if tot else "", int(x) + 6, y + bar_h - 4, 0.42)
        y += bar_h + gap
    p = Path(path)
    if not cv2.imwrite(str(p), img):
        raise OSError(f"cannot write plot {p}")
    return p
