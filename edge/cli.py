"""The `nerveseg` command: one entry point, subcommands.

Library code raises; this module prints the message and returns the exit code that the error
class carries (`edge.errors`: 0 ok, 1 bug, 2 config/usage/missing dependency, 3 model, 4 source,
5 sink, 6 review disagreement, 7 unreadable session, 8 status: not running). A library
`ValueError` that escapes is a bug (1, with the traceback logged): errors a user can cause are
raised as `edge.errors.NervesegError`s.

Every command that runs the model starts from one `edge.plan.RunPlan` (`resolve_run`), so
`check-config` refuses exactly what `run` would refuse.

Subcommands that need TensorFlow (train, eval, convert) import it lazily so
that `nerveseg run` works on a device without it.

Start-up order: this module imports only the standard library and light `edge` modules (no pydantic,
numpy or OpenCV) at the top, so `main` starts within a few tens of milliseconds of the process, and its
first act is to take SIGUSR1 away from its default action (terminate). Each command imports what it
needs inside it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge import __version__, paths
from edge.control import RECORD_TOGGLE, CommandChannel
from edge.errors import (
    EXIT_CONFIG,
    EXIT_DISAGREE,
    EXIT_ERROR,
    EXIT_MODEL,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_SESSION,
    EXIT_SINK,
    EXIT_SOURCE,
    MissingDependencyError,
    NervesegError,
    NotRunningError,
    UsageError,
)
from edge.plugin import common_options, setup_logging, source_override

if TYPE_CHECKING:  # pragma: no cover - numpy, for an annotation only
    from edge.types import Stats

__all__ = [
    "EXIT_CONFIG", "EXIT_DISAGREE", "EXIT_ERROR", "EXIT_MODEL", "EXIT_NOT_RUNNING", "EXIT_OK", "EXIT_SESSION",
    "EXIT_SINK", "EXIT_SOURCE", "build_parser", "format_summary", "main",
]

logger = logging.getLogger("nerveseg")

STATUS_FILE = paths.STATUS_FILE  # the health file `nerveseg status` reads by default
# signals that stop the loop cleanly (SIGHUP: the controlling terminal went away; no reload exists)
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        if w <= 0 or h <= 0:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, e.g. 1920x1080, got {text!r}") from None
    return w, h


def _install_signal_handlers(stop: threading.Event, commands: CommandChannel | None = None) -> None:
    """SIGTERM/SIGINT/SIGHUP set ``stop``; SIGUSR1 asks for a recording toggle through ``commands``.

    Installed first thing in a command, before anything slow (model, device), so no signal that
    the box can meet kills the process with its default action. SIGUSR1 is taken whatever the
    recording mode; the recorder says in the log when a toggle does not apply.
    """

    def on_stop(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        logger.info("received %s: stopping", name)
        stop.set()
        from edge.notify import notify_stopping  # imported here: it is cheap, and only needed on a stop

        # Under systemd: say STOPPING=1 now, not after the capture thread has been joined.
        notify_stopping(f"stopping ({name})")

    def on_usr1(_signum: int, _frame: Any) -> None:
        if commands is not None:
            commands.request(RECORD_TOGGLE)  # only bumps a counter: safe in a handler

    for sig in _STOP_SIGNALS:
        signal.signal(sig, on_stop)
    signal.signal(signal.SIGUSR1, on_usr1)


# -- subcommands ---------------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    """Everything `run` would refuse before the first frame: the config, its site profile, the model and
    its spec, and how they combine (`edge.plan.resolve_run`)."""
    from edge.config import load_config
    from edge.plan import resolve_run

    cfg = load_config(args.file)
    plan = resolve_run(cfg, where=str(args.file))
    runner = plan.open_runner()  # a corrupt .tflite, a missing interpreter: refused here, not at the bedside
    extra = f"; site profile {plan.profile_path} valid" if plan.profile_path else ""
    print(f"OK: {args.file} is a valid nerveseg config (model {runner.spec.name} at {plan.model_path}{extra})")
    if args.show:
        import yaml

        print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """Print the health file of a running loop. 0: running and fresh; 8: missing, unreadable, stale or stopped."""
    from edge.health import format_status, read_status, status_age_s

    try:
        status = read_status(args.file)
    except OSError as e:
        raise NotRunningError(f"cannot read {args.file}: {e.strerror or e} (is the service running with "
                              "health.status_file set? systemctl status nerveseg)") from None
    except ValueError as e:  # garbage, or fields of the wrong type: nothing in it can say the loop runs
        raise NotRunningError(f"{e}; the loop's own file never looks like this: is --file the status file "
                              "(health.status_file)?") from None
    if args.json:
        import json

        print(json.dumps(status, indent=1))
    else:
        print(format_status(status))
    age = status_age_s(status)
    if status.get("state") == "stopped":
        raise NotRunningError("the loop has stopped")
    if age is None or age > args.max_age:
        raise NotRunningError(f"not updated for {'?' if age is None else f'{age:.0f}'} s "
                              f"(more than {args.max_age:g} s): the loop is hung or gone")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    stop, commands = threading.Event(), CommandChannel()
    _install_signal_handlers(stop, commands)  # first: a signal during start-up must not kill the box
    from edge.app import run_plan
    from edge.config import Config, load_config, with_overrides
    from edge.plan import resolve_run

    cfg = load_config(args.config) if args.config else Config()
    cfg = with_overrides(
        cfg,
        source=source_override(args.source),
        model={"path": args.model} if args.model else {},
        loop={"max_frames": args.frames} if args.frames else {},
        sink={"spec": args.sink} if args.sink else {},
    )
    setup_logging(args.log_level or cfg.logging.level)
    plan = resolve_run(cfg, where=args.config or "<command line>")
    stats = run_plan(plan, stop, commands=commands)
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
    stop = threading.Event()
    _install_signal_handlers(stop)
    from edge.app import run_plan
    from edge.config import Config, with_overrides
    from edge.plan import resolve_run
    from edge.sources import source_spec_from_arg

    spec = source_spec_from_arg(args.source or "phantom")
    finite = spec.startswith(("file:", "images:"))
    frames = args.frames or (None if finite else 300)
    source: dict[str, Any] = {"spec": spec, "pace": args.realtime}
    if args.size:
        source["width"], source["height"] = args.size
    out = Path(args.out)
    if not out.parent.exists():
        raise UsageError(f"--out: folder {out.parent} does not exist")
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
            raise UsageError("--truth needs every frame in order: leave out --realtime")
        truth = load_truth(args.truth)

        def annotate(frame) -> None:  # the source's frame number is the annotation's
            draw_truth(frame.image, truth.get(frame.seq, []))

    setup_logging(args.log_level or "WARNING")
    stats = run_plan(resolve_run(cfg, where="<command line>"), stop, drop_frames=args.realtime, annotate=annotate)
    print(format_summary(stats, f"nerveseg demo: {spec} -> {out}"))
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from edge import bench
    from edge.config import Config, load_config, with_overrides
    from edge.plan import resolve_run

    cfg = load_config(args.config) if args.config else Config()
    # The benchmark shows nothing unless asked: null sink, whatever the config's sink says.
    cfg = with_overrides(cfg, sink={"spec": args.sink or "null"})
    resolve_run(cfg, where=args.config or "<command line>")  # refuse what run would refuse, before measuring
    for flag, value in (("--json", args.json), ("--plot", args.plot)):
        if value and not Path(value).expanduser().resolve().parent.is_dir():
            raise UsageError(f"{flag}: folder {Path(value).parent} does not exist")
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
    setup_logging(args.log_level or "WARNING")
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

    setup_logging(args.log_level or "WARNING")
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
    common = common_options()

    r = sub.add_parser(
        "run", parents=[common],
        help="the live loop: capture, analyse, overlay, show (the appliance runs this)")
    r.add_argument("--config", help="YAML config file (default: built-in defaults, phantom source, null sink)")
    r.add_argument("--source", help="source spec or path, overrides source.spec: v4l2:/dev/video0, picamera2, "
                   "file:clip.mp4, images:DIR, phantom")
    r.add_argument("--model", help=".tflite model (its spec <model>.yaml beside it); overrides model.path")
    r.add_argument("--sink", help="sink spec, overrides sink.spec: fbdev:/dev/fb0, window, video:out.mp4, null")
    r.add_argument("--frames", type=int, help="stop after N processed frames")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser(
        "demo", parents=[common],
        help="run the shipped model over the phantom or a video/folder, write an annotated mp4")
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
    d.set_defaults(func=cmd_demo)

    b = sub.add_parser(
        "bench", parents=[common],
        help="frames per second and per-stage ms of the real loop, models side by side")
    b.add_argument("--config", help="YAML config: source settings, roi, presence, overlay, model.path/interpreter")
    b.add_argument("--source", nargs="+", action="extend", metavar="SPEC",
                   help="source specs or video files/folders (default: the config's source, else phantom)")
    b.add_argument("--model", nargs="+", action="extend", metavar="M",
                   help=".tflite paths or shipped, shipped-float32, classic-unet "
                        "(default: the model under test, its -float32 twin, and classic-unet when built: "
                        "nerveseg convert reference)")
    b.add_argument("--threads", nargs="+", action="extend", type=int, metavar="N",
                   help="interpreter (XNNPACK) thread counts (default: 1 2)")
    b.add_argument("--input", nargs="+", action="extend", metavar="NAME",
                   help="us-WxH, hdmi-WxH, mjpeg-WxH (a dongle's MJPG, decoded per frame) or native "
                        "(default: us-580x420 hdmi-1920x1080 mjpeg-1920x1080)")
    b.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run (default: %(default)s)")
    b.add_argument("--warmup", type=float, default=1.0, help="unmeasured warm-up s per run (default: %(default)s)")
    b.add_argument("--no-overload", action="store_true", help="skip the overload (latency under overload) runs")
    b.add_argument("--overload-fps", type=float, metavar="FPS",
                   help="overload source rate (default: twice the throughput fps of the same input)")
    b.add_argument("--classic-filters", type=int, metavar="N",
                   help="base filters of classic-unet (default: the first model's; the original U-Net design has 64)")
    b.add_argument("--sink", help="sink spec (default: null): fbdev:/dev/fb0, window, video:out.mp4, null")
    b.add_argument("--json", metavar="OUT", help="write the report as JSON (schema: edge/bench/report.py)")
    b.add_argument("--plot", metavar="PNG", help="draw latency over time and the stage breakdown")
    b.set_defaults(func=cmd_bench)

    v = sub.add_parser(
        "review", parents=[common],
        help="play back a recording with its overlay, export it, or re-run another model")
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
    v.set_defaults(func=cmd_review)

    c = sub.add_parser("check-config", help="validate a config file: exit 0 if valid, 2 with the faults if not")
    c.add_argument("file")
    c.add_argument("--show", action="store_true", help="print the effective config, defaults included")
    c.set_defaults(func=cmd_check_config)

    st = sub.add_parser("status", help="print the health file of the running loop (exit 0 running, 8 not)")
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


def _ignore_usr1_until_run() -> None:
    """SIGUSR1 asks a running loop for a record toggle; its default action kills the process. Until
    `cmd_run` installs the real handler (after the parser, the plug-ins and pydantic have loaded: ~0.5 s)
    it is ignored: a toggle sent while the box starts has no recording to act on yet."""
    if hasattr(signal, "SIGUSR1") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def main(argv: list[str] | None = None) -> int:
    _ignore_usr1_until_run()  # first: nothing slow may come before it
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except NervesegError as e:
        print(f"nerveseg {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return EXIT_OK
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in ("tensorflow", "keras"):
            logging.getLogger("nerveseg").exception("unexpected error in 'nerveseg %s'", args.command)
            return EXIT_ERROR
        err = MissingDependencyError(
            f"needs TensorFlow ({e.name} is not installed); on a workstation: pip install -e '.[train]'. "
            "The device commands (run, demo, bench, check-config) do not need it."
        )
        print(f"nerveseg {args.command}: {err}", file=sys.stderr)
        return err.exit_code
    except Exception:
        logging.getLogger("nerveseg").exception("unexpected error in 'nerveseg %s' (a bug: please report it "
                                                "with this traceback)", args.command)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
