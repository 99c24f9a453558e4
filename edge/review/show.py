"""Drawing a session again: in a window at its recorded pace (`play`), or headless into a folder
(`export_session`: contact sheet, clip, detections CSV)."""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.errors import UsageError
from edge.overlay import Overlay
from edge.recording.session import (
    make_private_dir,
    pad_even,
    render_annotated,
    video_fps,
    write_private,
)
from edge.review.read import Session

logger = logging.getLogger(__name__)

SHEET_FRAMES = 24
SHEET_COLUMNS = 6
SHEET_TILE_W = 240
DETECTION_COLUMNS = ("i", "seq", "source_seq", "t_capture", "p_nerve", "p_vote", "decision", "state", "latency_ms",
                     "mask_fraction", "pre_roll", "model", "clip_frame")

# -- drawing ---------------------------------------------------------------------------------------


def _p_shown(rec: dict[str, Any]) -> float:
    """The P(nerve) the box quoted on this frame: the averaged one its thresholds compared, when recorded."""
    p = rec.get("p_vote")
    return float((rec.get("p_nerve") if p is None else p) or 0.0)


class _Renderer:
    """Draws recorded frames with the recorded run's overlay settings (one per session and thread)."""

    def __init__(self, session: Session):
        self.session = session
        self.overlay = Overlay(session.overlay_config(), None, session.thresholds["mask"])
        model = session.model
        self.untrained = bool(model.get("untrained", False))
        self.model_name = str(model.get("name", ""))
        self.fps = session.fps

    def frame(self, rec: dict[str, Any], mask: np.ndarray | None = None) -> np.ndarray:
        """The frame drawn as the box showed it; ``mask``: its mask when the caller has decoded it already."""
        s = self.session
        mask = s.mask(rec) if mask is None else mask
        return render_annotated(
            self.overlay, s.raw(rec), rec.get("decision") == "nerve", _p_shown(rec), mask,
            rec.get("state", "live"), self.fps, float(rec.get("latency_ms", 0.0)), self.untrained, self.model_name,
            message=f"REVIEW #{rec['i']} {rec.get('t_capture', '')}",
        )

    def frames(self) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
        """Each readable frame, drawn; frames whose PNGs cannot be read are skipped (one warning at the end)."""
        skipped: list[int] = []
        reasons: list[str] = []
        for rec in self.session.frames:
            try:
                img = self.frame(rec)
            except ValueError as e:  # a missing or damaged PNG (cut off by a crash or a full disk)
                skipped.append(int(rec["i"]))
                reasons.append(str(e))
                continue
            yield rec, img
        warn_skipped(self.session, skipped, reasons)


def warn_skipped(session: Session, skipped: list[int], reasons: list[str]) -> None:
    """One warning for the frames whose images could not be read, with the first distinct reasons."""
    if skipped:
        shown = ", ".join(f"#{i}" for i in skipped[:20]) + (f" and {len(skipped) - 20} more" if len(skipped) > 20
                                                           else "")
        why = "; ".join(list(dict.fromkeys(reasons))[:3])
        logger.warning("session %s: %d recorded frames have an unreadable raw or mask PNG and were skipped: %s (%s)",
                       session.name, len(skipped), shown, why)


def play(session: Session, stop: threading.Event | None = None) -> int:
    """Show the session in a window at its recorded pace; returns the frames shown.

    Raises `edge.errors.SinkError` (exit code 5) with the window sink's explanation when
    this OpenCV has no GUI or there is no display.
    """
    from edge.control import QUIT
    from edge.sinks.settings import WindowSinkConfig
    from edge.sinks.window import WindowSink

    stop = stop or threading.Event()
    shown = 0
    with WindowSink(WindowSinkConfig(fullscreen=False), title=f"nerveseg review {session.name}") as win:
        t_prev: int | None = None
        due = time.monotonic()
        for rec, img in _Renderer(session).frames():
            if stop.is_set() or QUIT in win.take_commands():
                break
            t = int(rec["t_capture_ns"])
            if t_prev is not None:
                due += min(max((t - t_prev) / 1e9, 0.0), 1.0)  # a gap in the recording plays as 1 s at most
                time.sleep(max(due - time.monotonic(), 0.0))
            t_prev = t
            win.show(img)
            shown += 1
    return shown


# -- export ----------------------------------------------------------------------------------------


@dataclass
class ExportResult:
    folder: Path
    contact_sheet: Path
    clip: Path
    detections: Path
    frames: int  # frames in the clip (rows in the CSV: every recorded frame, `skipped` ones included)
    nerve_frames: int  # of the frames in the clip
    skipped: list[int] = field(default_factory=list)  # ``i`` of recorded frames whose PNGs could not be read


def write_export(path: Path, data: bytes) -> None:
    """Write an export file: 0600 like the recording it comes from (it shows patient images)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    write_private(path, data)


def _open_private_video(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    write_export(path, b"")
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), video_fps(fps), size)
    if not w.isOpened():
        raise OSError(f"cannot open {path} for mp4 writing ({size[0]}x{size[1]} @{fps:g} fps)")
    return w


def _sheet_indices(n: int, k: int) -> list[int]:
    if n <= k:
        return list(range(n))
    return sorted({round(j * (n - 1) / (k - 1)) for j in range(k)})


def _label(tile: np.ndarray, text: str, color: tuple[int, int, int]) -> None:
    h = tile.shape[0]
    bar = max(14, h // 10)
    cv2.rectangle(tile, (0, h - bar), (tile.shape[1], h), (0, 0, 0), cv2.FILLED)
    cv2.putText(tile, text, (3, h - bar // 4), cv2.FONT_HERSHEY_SIMPLEX, bar / 32.0, color, 1, cv2.LINE_AA)


def contact_sheet(session: Session, thumbs: list[tuple[dict[str, Any], np.ndarray]]) -> np.ndarray:
    """A grid of annotated thumbnails with their frame number and verdict under a header line."""
    if not thumbs:
        return np.zeros((60, SHEET_TILE_W * 2, 3), np.uint8)
    th, tw = thumbs[0][1].shape[:2]
    cols = min(SHEET_COLUMNS, len(thumbs))
    rows = math.ceil(len(thumbs) / cols)
    header = 28
    sheet = np.zeros((header + rows * (th + 4), cols * (tw + 4), 3), np.uint8)
    nerve = sum(r.get("decision") == "nerve" for r in session.frames)
    model = session.model.get("id", "?")
    title = f"{session.name}  {len(session.frames)} frames, {nerve} nerve  model {model}"
    cv2.putText(sheet, title, (4, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    for k, (rec, img) in enumerate(thumbs):
        r, c = divmod(k, cols)
        y, x = header + r * (th + 4), c * (tw + 4)
        tile = sheet[y : y + th, x : x + tw]
        tile[:] = img
        is_nerve = rec.get("decision") == "nerve"
        _label(tile, f"#{rec['i']} {'NERVE' if is_nerve else 'none'} {_p_shown(rec):.2f}",
               (0, 220, 255) if is_nerve else (255, 255, 255))
    return sheet


def export_session(session: Session, out_dir: str | Path, sheet_frames: int = SHEET_FRAMES) -> ExportResult:
    """Write ``contact_sheet.png``, ``clip.mp4`` and ``detections.csv`` for ``session`` into ``out_dir``.

    The clip has one frame per readable recorded frame (re-drawn overlay, at the recorded
    rate); frames whose PNGs cannot be read are skipped (`ExportResult.skipped`, one
    warning). The CSV has one row per recorded frame (the verdicts are in the JSONL even
    where an image is lost), ``clip_frame`` empty for the skipped ones. ``out_dir`` is
    created (0700) when missing. The clip is written under a temporary name and renamed
    when complete: an export that fails leaves no partial clip.
    """
    out = Path(out_dir).expanduser()
    try:
        make_private_dir(out)
        if not out.is_dir():
            raise UsageError(f"--export: {out} is not a folder")
        return _export_into(session, out, sheet_frames)
    except OSError as e:  # the export folder's fault (permission, full disk), not the session's
        raise UsageError(f"--export: cannot write into {out}: {e.strerror or e}") from None


def _export_into(session: Session, out: Path, sheet_frames: int) -> ExportResult:
    clip_path, sheet_path, csv_path = out / "clip.mp4", out / "contact_sheet.png", out / "detections.csv"
    tmp_clip = out / f".clip.{os.getpid()}.tmp.mp4"  # FFmpeg picks the container by the extension
    renderer = _Renderer(session)
    pick = set(_sheet_indices(len(session.frames), sheet_frames))
    thumbs: list[tuple[dict[str, Any], np.ndarray]] = []
    writer: cv2.VideoWriter | None = None
    size: tuple[int, int] | None = None
    buf = io.StringIO()
    table = csv.writer(buf)
    table.writerow(DETECTION_COLUMNS)
    n = nerve = 0
    skipped: list[int] = []
    reasons: list[str] = []
    try:
        for k, rec in enumerate(session.frames):
            try:
                m = session.mask(rec)
                img = renderer.frame(rec, m)
            except ValueError as e:  # a missing or damaged PNG: the row stays, the clip skips it
                skipped.append(int(rec["i"]))
                reasons.append(str(e))
                img = m = None
            clip_frame: int | str = ""
            if img is not None:
                img = pad_even(img)
                if writer is None:
                    size = (img.shape[1], img.shape[0])
                    writer = _open_private_video(tmp_clip, session.fps, size)
                if (img.shape[1], img.shape[0]) != size:
                    img = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
                writer.write(img)
                clip_frame = n
                n += 1
                nerve += rec.get("decision") == "nerve"
                if k in pick:
                    scale = SHEET_TILE_W / img.shape[1]
                    thumbs.append((rec, cv2.resize(img, (SHEET_TILE_W, max(1, round(img.shape[0] * scale))),
                                                   interpolation=cv2.INTER_AREA)))
            frac = f"{float((m >= renderer.overlay.mask_threshold).mean()):.5f}" if m is not None else ""
            table.writerow([rec["i"], rec["seq"], rec.get("source_seq"), rec.get("t_capture"), rec.get("p_nerve"),
                            rec.get("p_vote"), rec.get("decision"), rec.get("state"), rec.get("latency_ms"), frac,
                            rec.get("pre_roll"), rec.get("model"), clip_frame])
        if writer is not None:
            writer.release()
            writer = None
            os.replace(tmp_clip, clip_path)
        else:  # an empty session (or not one readable frame): still a valid (empty) export
            write_export(clip_path, b"")
    finally:
        if writer is not None:
            writer.release()
        tmp_clip.unlink(missing_ok=True)
    warn_skipped(session, skipped, reasons)
    ok, png = cv2.imencode(".png", contact_sheet(session, thumbs))
    if not ok:
        raise OSError("contact sheet PNG encoding failed")
    write_export(sheet_path, png.tobytes())
    write_export(csv_path, buf.getvalue().encode())
    return ExportResult(out, sheet_path, clip_path, csv_path, n, nerve, skipped)


