"""``nerveseg eval --live``: the bedside loop itself, scored on box-labelled video as the clinician sees it.

Each video of a box-labelled folder (`train.boxes`) is played through the same `edge.pipeline.Pipeline`
that ``nerveseg run`` builds (`edge.app.run_plan`: the model, its presence hysteresis, the mask
smoothing, the overlay, a null sink), and an observer records, for every source frame, what the screen
showed: outline or "No nerve found", and the outline itself.

**Clock.** The video is not paced: the capture thread hands over every frame without dropping
(``drop_frames=False``) and the stale rule is off (``overlay.stale_after_ms`` huge), so frame *k* of the
video is analysed as frame *k* of a run paced at the video's fps is whenever the box keeps up with the
video (processing under one frame interval, 50 ms at 20 fps; the shipped model needs ~10 ms here). All
times are then frame counts divided by the video's fps: a simulated clock, reproducible and independent of
the machine's load. A box that does not keep up drops frames at the bedside; measure that with
``nerveseg bench``, not here.

Per video and pooled:

* ``state_accuracy``: share of frames where the shown state (outline / none) equals the truth (a box / none);
* ``flips_per_min`` of the shown state, against ``truth_flips_per_min`` (the truth's own changes);
* ``time_to_show_s``: for each episode of the truth (a run of frames with a box), the time from its first
  frame to the first frame with an outline within it (median, p90, and the episodes never shown);
  ``time_to_clear_s`` likewise from the first nerve-free frame after an episode to the outline going;
* ``outline_on_box``: while an outline is shown on a frame with a box, the share where its centroid lies in
  a box (`train.metrics.box_localisation` at the model's input size);
* outline jitter between consecutive frames that both show an outline: centroid motion (model pixels) and
  Dice of the two outlines.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from train.boxes import BoxVideo, box_mask

logger = logging.getLogger(__name__)


@dataclass
class Trace:
    """What the screen showed for each frame of one video (index = source frame number)."""

    video: str
    fps: float
    frame_hw: tuple[int, int] = (0, 0)
    p: list[float] = field(default_factory=list)
    shown: list[bool] = field(default_factory=list)
    masks: list[np.ndarray | None] = field(default_factory=list)  # bool outline at model size, None if not shown
    p_vote: list[float] = field(default_factory=list)  # the averaged P the thresholds compared


def play(video: BoxVideo, plan, stop: threading.Event | None = None, runner=None) -> Trace:
    """Play ``video`` through the live loop of ``plan`` (an `edge.plan.RunPlan`); return its trace.

    ``runner``: the plan's model, already loaded (None: load it for this video).
    """
    from edge.app import run_plan
    from edge.pipeline import PipelineObserver

    plan = plan.with_config(source={"spec": f"file:{video.path}", "pace": False}, sink={"spec": "null"},
                            overlay={"stale_after_ms": 1e9}, loop={"max_frames": None})
    trace = Trace(video=video.subject, fps=video.fps)

    class Recorder(PipelineObserver):
        def on_frame(self, pipeline, event) -> None:
            if event.decision is None:
                raise RuntimeError(f"video {video.path}: frame {event.frame.seq} was not analysed (ROI?)")
            if event.frame.seq != len(trace.p):
                raise RuntimeError(f"video {video.path}: frame {event.frame.seq} came as number {len(trace.p)}: "
                                   "a frame was dropped, so the simulated clock would be wrong")
            if not trace.frame_hw[0]:
                trace.frame_hw = tuple(event.frame.image.shape[:2])
            d = event.decision
            thr = pipeline.overlay.mask_threshold
            trace.p.append(float(d.p_nerve))
            trace.p_vote.append(float(d.p_shown))
            trace.shown.append(bool(d.nerve))
            trace.masks.append(None if d.mask is None else d.mask >= thr)

    run_plan(plan, stop or threading.Event(), drop_frames=False, observers=[Recorder()], runner=runner)
    return trace


def episodes(flags: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` of the runs of True in ``flags`` (end exclusive)."""
    f = np.concatenate([[False], np.asarray(flags, bool), [False]])
    d = np.diff(f.astype(np.int8))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def _delays(truth: np.ndarray, shown: np.ndarray, on: bool) -> tuple[list[int], int]:
    """Frames from each truth episode's start (on) / each nerve-free run's start after an episode (off) to the
    screen following, within that run; and how many runs the screen never followed."""
    runs = episodes(truth if on else ~truth)
    if not on:
        runs = [(s, e) for s, e in runs if s > 0]  # a video that starts without a nerve has nothing to clear
    got, missed = [], 0
    for s, e in runs:
        follow = np.flatnonzero(shown[s:e] == on)
        if follow.size:
            got.append(int(follow[0]))
        else:
            missed += 1
    return got, missed


def score_trace(trace: Trace, video: BoxVideo, model_hw: tuple[int, int]) -> dict[str, Any]:
    """The live scores of one video (see the module doc). Frames past the trace's end are ignored."""
    from train.metrics import box_localisation, dice

    n = len(trace.p)
    truth = np.array([bool(video.boxes_at(i)) for i in range(n)])
    shown = np.array(trace.shown, bool)
    minutes = n / trace.fps / 60.0 if n else 0.0
    on_d, on_missed = _delays(truth, shown, True)
    off_d, off_missed = _delays(truth, shown, False)
    both = np.flatnonzero(shown & truth)
    if both.size:
        boxes = [box_mask(video.boxes_at(int(i)), trace.frame_hw, model_hw) for i in both]
        loc = box_localisation([trace.masks[int(i)] for i in both], boxes)
        on_box = float(loc["centroid_in"].mean())
    else:
        on_box = None
    motion, dices = [], []
    for i in range(1, n):
        a, b = trace.masks[i - 1], trace.masks[i]
        if a is None or b is None or not a.any() or not b.any():
            continue
        ca = np.array(np.nonzero(a)).mean(axis=1)
        cb = np.array(np.nonzero(b)).mean(axis=1)
        motion.append(float(np.hypot(*(ca - cb))))
        dices.append(dice(a, b))
    return {
        "video": trace.video,
        "label": video.label,
        "frames": n,
        "seconds": round(n / trace.fps, 2),
        "truth_frames": int(truth.sum()),
        "shown_frames": int(shown.sum()),
        "state_accuracy": float((shown == truth).mean()) if n else None,
        "false_outline_frames": int((shown & ~truth).sum()),
        "missed_frames": int((~shown & truth).sum()),
        "flips": int(np.count_nonzero(np.diff(shown.astype(np.int8)))),
        "truth_flips": int(np.count_nonzero(np.diff(truth.astype(np.int8)))),
        "minutes": minutes,
        "time_to_show_frames": on_d,
        "episodes_never_shown": on_missed,
        "time_to_clear_frames": off_d,
        "clears_never": off_missed,
        "outline_on_box": on_box,
        "outline_on_box_frames": int(both.size),
        "jitter_centroid_px": motion,
        "jitter_dice": dices,
    }


# per-video lists kept out of the JSON's per-video rows (the pooled numbers summarise them)
PER_FRAME_LISTS = ("time_to_show_frames", "time_to_clear_frames", "jitter_centroid_px", "jitter_dice")


def _q(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def pool(rows: list[dict[str, Any]], fps: float) -> dict[str, Any]:
    """Pooled live scores over videos: frame-weighted accuracy, flips per minute, delay quantiles (s)."""
    frames = sum(r["frames"] for r in rows)
    minutes = sum(r["minutes"] for r in rows)
    show = [d / fps for r in rows for d in r["time_to_show_frames"]]
    clear = [d / fps for r in rows for d in r["time_to_clear_frames"]]
    on_box_n = sum(r["outline_on_box_frames"] for r in rows)
    motion = [m for r in rows for m in r["jitter_centroid_px"]]
    dices = [d for r in rows for d in r["jitter_dice"]]
    return {
        "videos": len(rows),
        "frames": frames,
        "state_accuracy": sum(r["state_accuracy"] * r["frames"] for r in rows) / frames if frames else None,
        "flips_per_min": sum(r["flips"] for r in rows) / minutes if minutes else None,
        "truth_flips_per_min": sum(r["truth_flips"] for r in rows) / minutes if minutes else None,
        "time_to_show_s": {"median": _q(show, 50), "p90": _q(show, 90), "n": len(show),
                           "never_shown": sum(r["episodes_never_shown"] for r in rows)},
        "time_to_clear_s": {"median": _q(clear, 50), "p90": _q(clear, 90), "n": len(clear),
                            "never_cleared": sum(r["clears_never"] for r in rows)},
        "outline_on_box": (sum((r["outline_on_box"] or 0) * r["outline_on_box_frames"] for r in rows) / on_box_n
                           if on_box_n else None),
        "jitter": {"centroid_px_median": _q(motion, 50), "centroid_px_p90": _q(motion, 90),
                   "consecutive_dice_median": _q(dices, 50), "consecutive_dice_p10": _q(dices, 10),
                   "pairs": len(motion)},
    }


def evaluate_live(folder: str | Path, cfg, videos: list[str] | None = None,
                  timeline_dir: str | Path | None = None) -> dict[str, Any]:
    """Play every video of ``folder`` (or those named) through the live loop of ``cfg`` and score it."""
    from edge.errors import ConfigError
    from edge.plan import resolve_run
    from train.boxes import read_box_videos

    try:
        all_videos = read_box_videos(folder)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(folder), [str(e)]) from None
    chosen = [v for v in all_videos if videos is None or v.subject in set(videos)]
    if not chosen:
        raise ConfigError("<command line>", [f"--videos: none of {videos} in {folder}"])
    plan = resolve_run(cfg)
    runner = plan.open_runner()
    spec = runner.spec
    model_hw = (spec.preprocess.height, spec.preprocess.width)
    rows, traces = [], []
    for v in chosen:
        trace = play(v, plan, runner=runner)
        rows.append(score_trace(trace, v, model_hw))
        traces.append(trace)
        logger.info("video %s: right %.3f, %d flips", v.subject, rows[-1]["state_accuracy"], rows[-1]["flips"])
    fps = chosen[0].fps
    r = plan.rules
    rules = {"presence_enter": r.enter, "presence_exit": r.exit, "min_frames_on": r.min_frames_on,
             "min_frames_off": r.min_frames_off, "mask_smoothing": r.alpha, "presence_smoothing": r.p_alpha,
             "first_frame_decides": r.first_frame_decides}
    rep = {"layout": "live", "clock": "simulated: every frame analysed in order, time = frame / fps",
           "model": {"path": str(cfg.model.path or "shipped"), "name": spec.name},
           "data": str(folder), "rules": rules, "pooled": pool(rows, fps),
           "per_video": [{k: v for k, v in r.items() if k not in PER_FRAME_LISTS} | {
                             "flips_per_min": r["flips"] / r["minutes"] if r["minutes"] else None,
                             "truth_flips_per_min": r["truth_flips"] / r["minutes"] if r["minutes"] else None,
                             "time_to_show_s_median": _q([d / fps for d in r["time_to_show_frames"]], 50)}
                         for r in rows]}
    if timeline_dir is not None:
        rep["timelines"] = [str(plot_timeline(t, v, rules, Path(timeline_dir))) for t, v in
                            zip(traces, chosen, strict=True)]
        rep["worst_moments"] = str(worst_moments_sheet(traces, chosen, model_hw, Path(timeline_dir)
                                                       / "worst_moments.png"))
    return rep


def worst_runs(traces: list[Trace], videos: list[BoxVideo], n: int = 6) -> dict[str, list[tuple]]:
    """The ``n`` longest runs of false outlines and of missed nerve frames over all videos:
    ``{"false_outline": [(video index, middle frame, run length), ...], "missed": [...]}``, longest first."""
    out: dict[str, list[tuple]] = {"false_outline": [], "missed": []}
    for vi, (t, v) in enumerate(zip(traces, videos, strict=True)):
        shown = np.array(t.shown, bool)
        truth = np.array([bool(v.boxes_at(i)) for i in range(len(shown))])
        for kind, flags in (("false_outline", shown & ~truth), ("missed", ~shown & truth)):
            out[kind] += [(vi, (s + e) // 2, e - s) for s, e in episodes(flags)]
    return {k: sorted(v, key=lambda r: (-r[2], r[0], r[1]))[:n] for k, v in out.items()}


def worst_moments_sheet(traces: list[Trace], videos: list[BoxVideo], model_hw: tuple[int, int], path: Path,
                        n: int = 6) -> Path:
    """A contact sheet (PNG) of the middle frame of the longest false-outline and missed-nerve runs: the
    expert's boxes green, what the screen outlined yellow."""
    import cv2

    from train.boxes import iter_video
    from train.evaluate import SheetTile, contact_sheet

    runs = worst_runs(traces, videos, n)
    want: dict[int, set[int]] = {}
    for rows in runs.values():
        for vi, fi, _ in rows:
            want.setdefault(vi, set()).add(fi)
    frames: dict[tuple[int, int], np.ndarray] = {}
    for vi, idx in want.items():
        last = max(idx)
        for i, f in iter_video(videos[vi]):
            if i in idx:
                frames[(vi, i)] = f
            if i >= last:
                break
    sections = []
    for kind, title in (("false_outline", "False outline: no nerve in the truth, outline shown (longest runs)"),
                        ("missed", "Missed nerve: a box in the truth, no outline (longest runs)")):
        tiles = []
        for vi, fi, length in runs[kind]:
            t, v = traces[vi], videos[vi]
            mask = t.masks[fi] if t.masks[fi] is not None else np.zeros(model_hw, bool)
            caption = (f"{v.subject} #{fi}", f"{length / t.fps:.1f} s, p {t.p[fi]:.2f}")
            tiles.append(SheetTile(image=frames[(vi, fi)], truth=box_mask(v.boxes_at(fi), t.frame_hw, model_hw),
                                   pred=mask, caption=caption))
        if tiles:
            sections.append((title, tiles))
    img = contact_sheet(sections, title="worst moments", tile_aspect=model_hw[0] / model_hw[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


def plot_timeline(trace: Trace, video: BoxVideo, rules: dict[str, Any], folder: Path) -> Path:
    """P(nerve), the shown decision and the truth over time, with the thresholds (matplotlib, workstation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    n = len(trace.p)
    t = np.arange(n) / trace.fps
    truth = np.array([bool(video.boxes_at(i)) for i in range(n)])
    fig, ax = plt.subplots(figsize=(9, 3), dpi=110)
    averaged = rules.get("presence_smoothing", 1.0) < 1.0 and len(trace.p_vote) == n
    ax.plot(t, trace.p, color="tab:blue", lw=0.8 if averaged else 1.2, alpha=0.5 if averaged else 1.0,
            label="P(nerve), each frame")
    if averaged:
        ax.plot(t, trace.p_vote, color="navy", lw=1.4,
                label=f"P averaged (weight {rules['presence_smoothing']:g}): what enter/exit compare")
    ax.axhline(rules["presence_enter"], color="tab:green", ls="--", lw=0.8, label="enter")
    ax.axhline(rules["presence_exit"], color="tab:orange", ls="--", lw=0.8, label="exit")
    ax.fill_between(t, 1.02, 1.08, where=truth, color="black", step="mid", label="truth: nerve")
    ax.fill_between(t, 1.10, 1.16, where=np.array(trace.shown), color="gold", step="mid", label="screen: outline")
    wrong = np.array(trace.shown) != truth
    ax.fill_between(t, -0.08, -0.02, where=wrong, color="red", step="mid", label="screen wrong")
    ax.set_ylim(-0.1, 1.2)
    ax.set_xlim(0, max(t[-1] if n else 1, 1e-3))
    ax.set_xlabel("seconds")
    ax.set_title(f"video {video.subject} ({video.label}): screen right on {100 * (1 - wrong.mean()):.0f}% of frames",
                 fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    fig.tight_layout()
    out = folder / f"timeline_{video.subject}.png"
    fig.savefig(out)
    plt.close(fig)
    return out


def format_live(rep: dict[str, Any]) -> str:
    p = rep["pooled"]

    def f(v, nd=3):
        return "-" if v is None else f"{v:.{nd}f}"

    lines = [
        f"nerveseg eval --live: {rep['model']['name']} on {rep['data']} ({p['videos']} videos, {p['frames']} frames; "
        f"{rep['clock']})",
        f"  rules            : enter {rep['rules']['presence_enter']:g}, exit {rep['rules']['presence_exit']:g}, "
        f"on {rep['rules']['min_frames_on']}, off {rep['rules']['min_frames_off']}, "
        f"P averaging {rep['rules'].get('presence_smoothing', 1.0):g}, "
        f"mask smoothing {rep['rules']['mask_smoothing']:g}"
        + (", first frame decides" if rep["rules"].get("first_frame_decides") else ""),
        f"  screen right     : {f(p['state_accuracy'])} of frames",
        f"  flips per minute : {f(p['flips_per_min'], 2)} (truth's own {f(p['truth_flips_per_min'], 2)})",
        f"  time to show     : median {f(p['time_to_show_s']['median'], 2)} s, "
        f"p90 {f(p['time_to_show_s']['p90'], 2)} s "
        f"({p['time_to_show_s']['never_shown']} nerve episodes never shown)",
        f"  time to clear    : median {f(p['time_to_clear_s']['median'], 2)} s, "
        f"p90 {f(p['time_to_clear_s']['p90'], 2)} s ({p['time_to_clear_s']['never_cleared']} never cleared)",
        f"  outline on box   : {f(p['outline_on_box'])} of shown nerve frames",
        f"  jitter           : centroid {f(p['jitter']['centroid_px_median'], 2)} px median "
        f"(p90 {f(p['jitter']['centroid_px_p90'], 2)}), consecutive Dice {f(p['jitter']['consecutive_dice_median'])}",
        "  per video        :   video label frames  right  flips/min (truth)  show s  on-box",
    ]
    for r in rep["per_video"]:
        lines.append(
            f"                     {r['video']:>6} {r['label'] or '-':>5} {r['frames']:>6}  "
            f"{f(r['state_accuracy'], 2):>5}  "
            f"{f(r['flips_per_min'], 1):>5} ({f(r['truth_flips_per_min'], 1):>5})  "
            f"{f(r['time_to_show_s_median'], 2):>6}  {f(r['outline_on_box'], 2):>6}"
        )
    return "\n".join(lines)
