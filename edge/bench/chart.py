"""`render_plot`: the benchmark's picture, drawn with OpenCV (edge never imports matplotlib)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.bench.results import PROCESS_STAGES, STAGE_LABELS, BenchReport

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
