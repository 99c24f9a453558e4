"""The `nerveseg` command: one entry point, subcommands.

Library code raises; this module decides messages and exit codes:

    0  finished (frame limit reached, source ended, or stopped by SIGTERM/SIGINT)
    1  unexpected internal error (a bug: the traceback is logged)
    2  bad command line or config (the message names the key), or a workstation
       command (train, convert, eval of a .keras) run without TensorFlow installed;
       calibrate: frames it cannot calibrate on (blank, identical, no image region,
       ROI outside the frame)
    3  model file or model spec missing, corrupt or inconsistent
    4  source cannot be opened (bad path, missing package); an unplugged
       capture card is not an error: it is retried forever
    5  sink cannot be opened or written (no framebuffer access, no display)
    6  review --fail-on-disagree: the other model disagreed on some frame

Subcommands that need TensorFlow (train, eval, convert) import it lazily so
that `nerveseg run` works on a device without it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from edge import __version__
from edge.config import Config, load_config, with_overrides
from edge.errors import ConfigError, ModelError, NervesegError, SinkError, SourceError
from edge.types import Stats

logger = logging.getLogger("nerveseg")

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_MODEL, EXIT_SOURCE, EXIT_SINK = 0, 1, 2, 3, 4, 5
EXIT_DISAGREE = 6
# Where the appliance keeps its health file: edge.health.DEFAULT_STATUS_FILE, spelled out here because
# importing edge.health loads OpenCV, and every command (even --version) builds the parser.
STATUS_FILE = "/run/nerveseg/status.json"
_EXIT_FOR = ((ConfigError, EXIT_CONFIG), (ModelError, EXIT_MODEL), (SourceError, EXIT_SOURCE), (SinkError, EXIT_SINK))


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        if w <= 0 or h <= 0:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, e.g. 1920x1080, got {text!r}") from None
    return w, h


def _install_signal_handlers(stop: threading.Event) -> None:
    from edge.notify import notify_stopping

    def handler(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        logger.info("received %s: stopping", name)
        stop.set()
        # Under systemd: say STOPPING=1 now, not after the capture thread has been joined.
        notify_stopping(f"stopping ({name})")

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


def _install_record_toggle(observers: Any) -> None:
    """SIGUSR1 toggles manual recording (``kill -USR1 PID``, ``systemctl kill -s USR1 nerveseg``).

    Installed whatever the mode, so a stray SIGUSR1 never kills the appliance (its
    default action); the recorder says in the log when a toggle does not apply.
    """
    targets = [o for o in observers if hasattr(o, "request_toggle")]

    def handler(_signum: int, _frame: Any) -> None:
        for t in targets:
            t.request_toggle()  # only bumps a counter: safe here
        if not targets:
            logger.info("received SIGUSR1: recording is off (record.mode), ignored")

    signal.signal(signal.SIGUSR1, handler)


def _open_runner(cfg: Config):
    from edge.models import default_model_path
    from edge.runner import ModelRunner

    path = Path(cfg.model.path) if cfg.model.path else default_model_path()
    runner = ModelRunner(path, threads=cfg.model.threads, interpreter=cfg.model.interpreter)
    if runner.spec.untrained:
        logger.warning("model %s is UNTRAINED (random weights): its outlines mean nothing", runner.spec.name)
    return runner


def run_pipeline(cfg: Config, stop: threading.Event, drop_frames: bool = True, observers: Any = None,
                 annotate: Any = None) -> Stats:
    """Open model, source and sink from ``cfg`` and run the loop until it ends. Raises on failure.

    ``observers``: `PipelineObserver`s to attach; None = those the config asks for
    (`edge.observers.observers_from_config`).
    """
    from edge.observers import observers_from_config
    from edge.pipeline import Pipeline
    from edge.sinks import open_sink
    from edge.sources import open_source

    profile = None
    if cfg.profile:
        from edge.profile import load_profile

        profile = load_profile(cfg.profile)  # the site profile supplies the ROI (and flips)
    runner = _open_runner(cfg)
    if observers is None:
        observers = observers_from_config(cfg)
    with open_source(cfg.source) as source, open_sink(cfg.sink, fps_hint=source.nominal_fps) as sink:
        pipe = Pipeline(
            cfg, source, runner, sink, stop=stop, drop_frames=drop_frames, observers=observers,
            roi=profile.image_roi if profile else None, flips=profile.flips if profile else (False, False),
            annotate=annotate,
        )
        return pipe.run()


def _source_override(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    from edge.sources import source_spec_from_arg

    return {"spec": source_spec_from_arg(text)}


# -- subcommands ---------------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = load_config(args.file)
    if cfg.profile:
        from edge.profile import load_profile

        load_profile(cfg.profile)  # a broken site profile is a broken config
    extra = f" (site profile {cfg.profile} valid)" if cfg.profile else ""
    print(f"OK: {args.file} is a valid nerveseg config{extra}")
    if args.show:
        import yaml

        print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """Print the health file of a running loop. 0: running and fresh; 1: missing, unreadable, stale or stopped."""
    from edge.health import format_status, read_status, status_age_s

    try:
        status = read_status(args.file)
    except (OSError, ValueError) as e:
        print(f"nerveseg status: cannot read {args.file}: {e} (is the service running with health.status_file "
              "set? systemctl status nerveseg)", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        import json

        print(json.dumps(status, indent=1))
    else:
        print(format_status(status))
    age = status_age_s(status)
    if status.get("state") == "stopped":
        print("nerveseg status: the loop has stopped", file=sys.stderr)
        return EXIT_ERROR
    if age is None or age > args.max_age:
        print(f"nerveseg status: not updated for {'?' if age is None else f'{age:.0f}'} s "
              f"(more than {args.max_age:g} s): the loop is hung or gone", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config) if args.config else Config()
    cfg = with_overrides(
        cfg,
        source=_source_override(args.source),
        model={"path": args.model} if args.model else {},
        loop={"max_frames": args.frames} if args.frames else {},
        sink={"spec": args.sink} if args.sink else {},
    )
    _setup_logging(args.log_level or cfg.logging.level)
    stop = threading.Event()
    _install_signal_handlers(stop)
    from edge.observers import observers_from_config

    observers = observers_from_config(cfg)
    _install_record_toggle(observers)
    stats = run_pipeline(cfg, stop, observers=observers)
    logger.info("stopped after %d frames (%.1f fps, %d dropped)", stats.frames, stats.fps, stats.dropped)
    return EXIT_OK


def format_summary(stats: Stats, title: str) -> str:
    """The demo's human-readable summary: counts, fps and per-stage milliseconds."""
    lines = [
        title,
        f"  frames processed : {stats.frames} (captured {stats.captured}, dropped {stats.dropped})",
        f"  elapsed          : {stats.elapsed_s:.2f} s",
        f"  end-to-end fps   : {stats.fps:.1f}",
        f"  nerve frames     : {stats.nerve_frames} ({100.0 * stats.nerve_frames / max(stats.frames, 1):.0f}%)",
    ]
    if stats.latency:
        lat = stats.latency
        lines.append(f"  capture->sink ms : p50 {lat.p50:.1f}  p95 {lat.p95:.1f}  p99 {lat.p99:.1f}")
    lines.append("  stage ms         :    p50     p95")
    for name, st in stats.stages.items():
        lines.append(f"    {name:<14} : {st.p50:6.2f}  {st.p95:6.2f}")
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    from edge.sources import source_spec_from_arg

    spec = source_spec_from_arg(args.source or "phantom")
    finite = spec.startswith(("file:", "images:"))
    frames = args.frames or (None if finite else 300)
    source: dict[str, Any] = {"spec": spec, "pace": args.realtime}
    if args.size:
        source["width"], source["height"] = args.size
    out = Path(args.out)
    if not out.parent.exists():
        raise ConfigError("<command line>", [f"--out: folder {out.parent} does not exist"])
    cfg = with_overrides(
        Config(),
        source=source,
        model={k: v for k, v in (("path", args.model), ("threads", args.threads)) if v},
        sink={"spec": f"video:{out}"},
        loop={"max_frames": frames, "stats_interval_s": 5.0},
        # Offline, capture-to-draw age reflects the queue of a lossless run, not a live delay.
        overlay={"stale_after_ms": 1e9} if not args.realtime else {},
    )
    annotate = None
    if args.truth:
        from edge.truth import draw_truth, load_truth

        if args.realtime:
            raise ConfigError("<command line>", ["--truth needs every frame in order: leave out --realtime"])
        truth = load_truth(args.truth)

        def annotate(frame) -> None:  # the source's frame number is the annotation's
            draw_truth(frame.image, truth.get(frame.seq, []))

    _setup_logging(args.log_level or "WARNING")
    stop = threading.Event()
    _install_signal_handlers(stop)
    stats = run_pipeline(cfg, stop, drop_frames=args.realtime, annotate=annotate)
    print(format_summary(stats, f"nerveseg demo: {spec} -> {out}"))
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from edge import bench

    cfg = load_config(args.config) if args.config else Config()
    # The benchmark shows nothing unless asked: null sink, whatever the config's sink says.
    cfg = with_overrides(cfg, sink={"spec": args.sink or "null"})
    for flag, value in (("--json", args.json), ("--plot", args.plot)):
        if value and not Path(value).expanduser().resolve().parent.is_dir():
            raise ConfigError("<command line>", [f"{flag}: folder {Path(value).parent} does not exist"])
    opts = bench.BenchOptions(
        sources=args.source or [],
        models=args.model or [],
        threads=args.threads or list(bench.DEFAULT_THREADS),
        inputs=args.input or list(bench.DEFAULT_INPUTS),
        seconds=args.seconds,
        warmup_s=args.warmup,
        overload=not args.no_overload,
        overload_fps=args.overload_fps,
        classic_filters=args.classic_filters,
    )
    _setup_logging(args.log_level or "WARNING")
    stop = threading.Event()
    _install_signal_handlers(stop)
    report = bench.run_bench(cfg, opts, stop=stop, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(bench.format_report(report))
    if args.json:
        print(f"JSON: {bench.write_json(report, Path(args.json).expanduser())}")
    if args.plot:
        print(f"plot: {bench.render_plot(report, Path(args.plot).expanduser())}")
    return EXIT_OK


def cmd_review(args: argparse.Namespace) -> int:
    from edge import review

    _setup_logging(args.log_level or "WARNING")
    session = review.load_session(args.session)
    code = EXIT_OK
    if args.export:
        ex = review.export_session(session, args.export)
        print(f"review {session.name}: {ex.frames} frames ({ex.nerve_frames} nerve) -> {ex.folder}")
        for path in (ex.contact_sheet, ex.clip, ex.detections):
            print(f"  {path}")
    if args.model:
        from edge.runner import ModelRunner

        runner = ModelRunner(args.model, threads=args.threads)
        threshold = review.DEFAULT_DICE_THRESHOLD if args.dice_threshold is None else args.dice_threshold
        report = review.compare_session(session, runner, dice_threshold=threshold)
        print(review.format_compare(report))
        if args.export:
            print(f"  per-frame CSV: {review.write_compare_csv(report, Path(args.export) / 'compare.csv')}")
        if args.fail_on_disagree and report.disagreements:
            code = EXIT_DISAGREE
    if not args.export and not args.model:
        print(f"review {session.name}: {review.play(session)} frames shown")
    return code


# -- entry point ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nerveseg",
        description="Live nerve outlines on ultrasound video (research tool, not a medical device).",
    )
    p.add_argument("--version", action="version", version=f"nerveseg {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add_common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="override logging.level")

    r = sub.add_parser("run", help="the live loop: capture, analyse, overlay, show (the appliance runs this)")
    r.add_argument("--config", help="YAML config file (default: built-in defaults, phantom source, null sink)")
    r.add_argument("--source", help="source spec or path, overrides source.spec: v4l2:/dev/video0, picamera2, "
                   "file:clip.mp4, images:DIR, phantom")
    r.add_argument("--model", help=".tflite model (its spec <model>.yaml beside it); overrides model.path")
    r.add_argument("--sink", help="sink spec, overrides sink.spec: fbdev:/dev/fb0, window, video:out.mp4, null")
    r.add_argument("--frames", type=int, help="stop after N processed frames")
    add_common(r)
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="run the shipped model over the phantom or a video/folder, write an annotated mp4")
    d.add_argument("--source", help="source spec or a video file / image folder (default: phantom)")
    d.add_argument("--frames", type=int, help="stop after N frames (default: whole file/folder, 300 otherwise)")
    d.add_argument("--out", default="nerveseg-demo.mp4", help="annotated video to write (default: %(default)s)")
    d.add_argument("--model", help=".tflite model to use instead of the shipped one")
    d.add_argument("--threads", type=int, help="interpreter threads (default 2)")
    d.add_argument("--size", type=_parse_size, help="scale source frames to WIDTHxHEIGHT, e.g. 1920x1080")
    d.add_argument("--truth", metavar="BOXES.txt", help="draw an expert's per-frame boxes (regional-us annotation "
                   "file: one JSON line per frame) beside the outline, after the analysis")
    d.add_argument("--realtime", action="store_true",
                   help="pace the source at its own fps and drop frames like the live loop "
                        "(default: every frame, as fast as possible)")
    add_common(d)
    d.set_defaults(func=cmd_demo)

    b = sub.add_parser("bench", help="frames per second and per-stage ms of the real loop, models side by side")
    b.add_argument("--config", help="YAML config: source settings, roi, presence, overlay, model.path/interpreter")
    b.add_argument("--source", nargs="+", action="extend", metavar="SPEC",
                   help="source specs or video files/folders (default: the config's source, else phantom)")
    b.add_argument("--model", nargs="+", action="extend", metavar="M",
                   help=".tflite paths or shipped, shipped-float32, classic-unet "
                        "(default: the model under test, its -float32 twin, classic-unet)")
    b.add_argument("--threads", nargs="+", action="extend", type=int, metavar="N",
                   help="interpreter (XNNPACK) thread counts (default: 1 2)")
    b.add_argument("--input", nargs="+", action="extend", metavar="NAME",
                   help="us-WxH, hdmi-WxH or native (default: us-580x420 hdmi-1920x1080)")
    b.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run (default: %(default)s)")
    b.add_argument("--warmup", type=float, default=1.0, help="unmeasured warm-up s per run (default: %(default)s)")
    b.add_argument("--no-overload", action="store_true", help="skip the overload (latency under overload) runs")
    b.add_argument("--overload-fps", type=float, metavar="FPS",
                   help="overload source rate (default: twice the throughput fps of the same input)")
    b.add_argument("--classic-filters", type=int, metavar="N",
                   help="base filters of classic-unet (default: the first model's; the U-Net paper used 64)")
    b.add_argument("--sink", help="sink spec (default: null): fbdev:/dev/fb0, window, video:out.mp4, null")
    b.add_argument("--json", metavar="OUT", help="write the report as JSON (schema: edge/bench.py, README)")
    b.add_argument("--plot", metavar="PNG", help="draw latency over time and the stage breakdown")
    add_common(b)
    b.set_defaults(func=cmd_bench)

    v = sub.add_parser("review", help="play back a recording with its overlay, export it, or re-run another model")
    v.add_argument("session", help="a session folder (or a recordings folder: its newest session)")
    v.add_argument("--export", metavar="DIR",
                   help="headless: write contact_sheet.png, clip.mp4 and detections.csv (and compare.csv) into DIR")
    v.add_argument("--model", metavar="M", help="re-run this .tflite over the recorded raw frames and report "
                   "where it disagrees with the recording")
    v.add_argument("--threads", type=int, default=2, help="interpreter threads for --model (default: %(default)s)")
    v.add_argument("--dice-threshold", type=float, default=None, metavar="D",
                   help="--model: masks with Dice below D disagree (default: 0.7)")
    v.add_argument("--fail-on-disagree", action="store_true",
                   help="--model: exit with code 6 when any frame disagrees (for scripted regression checks)")
    add_common(v)
    v.set_defaults(func=cmd_review)

    c = sub.add_parser("check-config", help="validate a config file: exit 0 if valid, 2 with the faults if not")
    c.add_argument("file")
    c.add_argument("--show", action="store_true", help="print the effective config, defaults included")
    c.set_defaults(func=cmd_check_config)

    st = sub.add_parser("status", help="print the health file of the running loop (exit 0 running, 1 not)")
    st.add_argument("--file", default=STATUS_FILE, help="status file (health.status_file; default %(default)s)")
    st.add_argument("--json", action="store_true", help="print the file as JSON instead of a summary")
    st.add_argument("--max-age", type=float, default=15.0, metavar="S",
                    help="older than S seconds counts as hung or gone (default: %(default)s)")
    st.set_defaults(func=cmd_status)

    _add_plugin_commands(sub)
    return p


def _add_plugin_commands(sub: argparse._SubParsersAction) -> None:
    """Subcommands contributed by other packages (train, eval, convert, ...).

    They register through the ``nerveseg.commands`` entry-point group (setup.cfg),
    so `edge` never imports the workstation packages: each entry point is a
    ``register(subparsers)`` function in a module that imports TensorFlow only
    inside its command. A plugin that fails to load is logged and skipped; the
    device commands keep working.
    """
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group="nerveseg.commands"), key=lambda e: e.name):
        try:
            register = ep.load()
            register(sub)
        except Exception as e:  # noqa: BLE001 - a broken optional command must not break 'nerveseg run'
            logging.getLogger("nerveseg").warning("command %r unavailable: %s", ep.name, e)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except NervesegError as e:
        # plugin commands' own errors carry their code (calibrate: CalibrationError -> 2)
        code = next((c for cls, c in _EXIT_FOR if isinstance(e, cls)), getattr(e, "exit_code", EXIT_ERROR))
        print(f"nerveseg {args.command}: {e}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        return EXIT_OK
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in ("tensorflow", "keras"):
            logging.getLogger("nerveseg").exception("unexpected error in 'nerveseg %s'", args.command)
            return EXIT_ERROR
        print(
            f"nerveseg {args.command}: needs TensorFlow ({e.name} is not installed); on a workstation: "
            "pip install -e '.[train]'. The device commands (run, demo, bench, check-config) do not need it.",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    except Exception:
        logging.getLogger("nerveseg").exception("unexpected error in 'nerveseg %s'", args.command)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
