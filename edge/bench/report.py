"""The benchmark's outputs: the terminal report and the JSON file.

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
    targets         [{name, status: PASS|FAIL|SKIP, value, threshold, unit, detail}] (`edge.bench.targets`)
    notes           [str]: skipped models, substitutions, warnings
    interrupted     bool

    RUN = {model, model_role, model_name, model_path, model_sha256, quantization, untrained, macs,
           interpreter, threads, input, source, source_description, frame_size: [w, h],
           roi: [x, y, w, h] | null, handoff, seconds, frames, captured, dropped, fps, frame_period_ms,
           ratio_fps_to_first, cpu_percent, peak_rss_mb, peak_rss_scope: "run" | "process", complete,
           latency_ms: {p50, p95, p99, mean, max},
           stages: {capture, roi_gray, denoise, resize, normalise, infer, smooth, overlay, sink, total:
                    {p50, p95, p99, mean}}}

``stages.total`` is the processing thread's time per frame (ROI+gray through sink); the processing stages
add up to it. ``capture`` runs on the capture thread, in parallel. ``ratio_fps_to_first``: fps over the fps
of the first run with the same source and input. ``peak_rss_scope`` is "run" when the kernel let the peak be
reset at the start of the window (/proc/self/clear_refs), else "process" (the peak since the process started).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge.bench.results import STAGE_LABELS, BenchReport, RunResult
from edge.bench.targets import evaluate_targets
from edge.pipeline import STAGES
from edge.types import StageStats

SCHEMA_VERSION = 1


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

