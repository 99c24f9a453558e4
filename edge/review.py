"""`nerveseg review SESSION`: look at a recording again, export it, or re-run another model over it.

A session (see `edge.recording.session`) holds the ROI crops as captured, the network's masks
and one JSONL line per frame. Review re-draws the overlay from those with the live
overlay code: the recorded verdict, and the network's own mask of that frame (the
live outline was a running average of the last masks; the session's
``annotated.mp4`` keeps that one exactly).

- `play`: a window (needs an OpenCV build with a GUI, like the window sink), paced
  by the recorded capture times; ``q``/Esc quits.
- `export_session`: headless; writes ``contact_sheet.png``, ``clip.mp4`` (one frame
  per recorded frame) and ``detections.csv`` into a folder.
- `compare_session`: runs another ``.tflite`` over the recorded raw frames with the
  same preprocessing the live loop uses (`edge.preprocess`) and lists the frames where
  it disagrees with what the box said: a regression check on real recordings.

A session cut off by a crash or a full disk may miss an image a JSONL line names:
all three draw every frame they can read, skip the others with one warning naming
them, and count them (``skipped``): what was recorded around a lost frame is still
worth looking at, and a failed export would hide it. A damaged line of frames.jsonl
(not JSON, or fields of the wrong type) is skipped the same way (`Session.bad_lines`).

A session may come from anywhere (a USB stick, a colleague's archive), so nothing in
it is trusted: every file is read from inside the session folder (no absolute path,
no ``..``, no symbolic link, regular files only) and within a size bound; a path
that leads elsewhere is refused like an unreadable image, never followed.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import logging
import math
import os
import stat
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.analyze import Analyzer, network_input
from edge.config import OverlayConfig, PresenceConfig
from edge.errors import SessionError, UsageError
from edge.overlay import Overlay
from edge.plan import settle_rules
from edge.recording.session import (
    FRAMES_FILE,
    MANIFEST_FILE,
    SESSION_FORMAT,
    decode_mask,
    decode_raw,
    make_private_dir,
    pad_even,
    render_annotated,
    video_fps,
    write_private,
)
from edge.recording.storage import sessions_oldest_first
from edge.runner import ModelRunner
from edge.spec import PreprocessSpec
from edge.types import Result
from edge.yamlio import quote

logger = logging.getLogger(__name__)

SHEET_FRAMES = 24
SHEET_COLUMNS = 6
SHEET_TILE_W = 240
DEFAULT_DICE_THRESHOLD = 0.7

DETECTION_COLUMNS = ("i", "seq", "source_seq", "t_capture", "p_nerve", "decision", "state", "latency_ms",
                     "mask_fraction", "pre_roll", "model", "clip_frame")
COMPARE_COLUMNS = ("i", "seq", "t_capture", "p_recorded", "p_new", "vote_recorded", "vote_new",
                   "decision_recorded", "decision_new", "dice", "input_reproduced", "disagree", "reason")


# Bounds on what a session may make review read: far above what the recorder writes (a manifest is a few
# kB, a frame line ~600 bytes, a session of 10 min at 60 fps ~25 MB of lines, an 8K PNG ~100 MB), far
# below what would exhaust a workstation.
MAX_MANIFEST_BYTES = 4 << 20
MAX_FRAMES_BYTES = 256 << 20
MAX_LINE_BYTES = 64 << 10
MAX_IMAGE_BYTES = 256 << 20
_SHOW_BAD = 5  # damaged lines named in the warning


def _bad(msg: str) -> SessionError:
    """A session that cannot be read (exit code 7); the message names the path."""
    return SessionError(msg)


# -- reading inside a session folder -------------------------------------------------------------


def open_inside(root: str | Path, rel: object):
    """File ``rel`` of session folder ``root``, opened for binary reading without leaving the folder.

    rel: a relative path as the session names it (``"raw/000000.png"``). Raises ValueError
    naming the reason when it is not text, absolute, has an empty, ``.`` or ``..`` part, passes
    through or ends at a symbolic link (the recorder never makes one), or is not a regular
    file (a device such as /dev/zero, a pipe); OSError when it cannot be opened (missing,
    permission). Each step is opened relative to the one before with O_NOFOLLOW, so a link
    planted between a check and the open cannot redirect it.
    """
    if not isinstance(rel, str) or not rel or "\0" in rel:
        raise ValueError(f"{quote(rel)} is not a file name")
    parts = rel.split("/")
    if rel.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"{quote(rel)} leads outside the session folder: refused")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        ffd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise ValueError(f"{rel}: a symbolic link or not a folder on the way: refused (a session holds "
                             "no links)") from None
        raise
    finally:
        os.close(fd)
    f = os.fdopen(ffd, "rb")
    if not stat.S_ISREG(os.fstat(ffd).st_mode):
        f.close()
        raise ValueError(f"{rel}: not a regular file (a device or a pipe): refused")
    return f


def read_inside(root: str | Path, rel: object, limit: int) -> bytes:
    """The bytes of file ``rel`` of session folder ``root`` (`open_inside`), at most ``limit`` of them:
    a larger file raises ValueError."""
    with open_inside(root, rel) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{rel}: larger than {limit >> 20} MiB, more than a session ever holds: refused")
    return data


# -- what a session's files must hold --------------------------------------------------------------

_KINDS: dict[str, tuple[str, Any]] = {
    # 64-bit, as written: a larger one would overflow the float arithmetic on capture times
    "int": ("a 64-bit integer", lambda v: isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63),
    "num": ("a finite number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)),
    "str": ("text", lambda v: isinstance(v, str)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "dict": ("an object", lambda v: isinstance(v, dict)),
    "list": ("a list", lambda v: isinstance(v, list)),
}
# frames.jsonl line: key -> (kind, may be null, required). Review reads these and nothing else.
_FRAME_FIELDS = {
    "i": ("int", False, True), "seq": ("int", False, True), "t_capture_ns": ("int", False, True),
    "raw": ("str", False, True), "mask": ("str", True, False), "p_nerve": ("num", True, False),
    "decision": ("str", False, False), "state": ("str", False, False), "latency_ms": ("num", False, False),
    "t_capture": ("str", True, False), "source_seq": ("int", True, False), "pre_roll": ("bool", False, False),
    "model": ("str", True, False), "input_crc32": ("int", True, False), "raw_channels": ("int", False, False),
}
# manifest.json: dotted key -> (kind, may be null); every key optional (older sessions lack some)
_MANIFEST_FIELDS = {
    "format": ("str", True), "stopped_utc": ("str", True), "frames": ("int", True), "fps": ("num", True),
    "config": ("dict", True), "config.overlay": ("dict", True), "config.presence": ("dict", True),
    "model": ("dict", True), "model.id": ("str", True), "model.name": ("str", True),
    "model.untrained": ("bool", True), "model.thresholds": ("dict", True), "model.preprocess": ("dict", True),
    "model.thresholds.presence_enter": ("num", True), "model.thresholds.presence_exit": ("num", True),
    "model.thresholds.mask": ("num", True), "flips": ("list", True),
}


def _field_problem(value: Any, key: str, kind: str, nullable: bool) -> str | None:
    if value is None and nullable:
        return None
    what, ok = _KINDS[kind]
    return None if ok(value) else f"{key!r} must be {what}{' or null' if nullable else ''}, got {quote(value)}"


def frame_problem(rec: Any) -> str | None:
    """Why a parsed frames.jsonl line cannot be a recorded frame (a field missing or of the wrong type),
    or None when review can use it."""
    if not isinstance(rec, dict):
        return f"a JSON {type(rec).__name__}, not an object"
    for key, (kind, nullable, required) in _FRAME_FIELDS.items():
        if key not in rec:
            if required:
                return f"no {key!r}"
            continue
        problem = _field_problem(rec[key], key, kind, nullable)
        if problem:
            return problem
    return None


def manifest_problem(manifest: Any) -> str | None:
    """Why a parsed manifest.json cannot be a session's (a field of the wrong type), or None."""
    if not isinstance(manifest, dict):
        return f"a JSON {type(manifest).__name__}, not an object"
    for key, (kind, nullable) in _MANIFEST_FIELDS.items():
        *parents, leaf = key.split(".")
        node: Any = manifest
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            continue  # absent (or its parent is): the defaults apply
        problem = _field_problem(node[leaf], key, kind, nullable)
        if problem:
            return problem
    flips = manifest.get("flips")
    if flips is not None and (len(flips) != 2 or not all(isinstance(f, bool) for f in flips)):
        return f"'flips' must be [horizontal, vertical] as two true/false values, got {quote(flips)}"
    fps = manifest.get("fps")
    if fps is not None and fps <= 0:
        return f"'fps' must be above 0, got {quote(fps)}"
    return None


# -- reading a session ---------------------------------------------------------------------------


@dataclass
class Session:
    """One recording session as read from disk.

    frames: the usable JSONL records in file order (``"i"``: the recorded frame's number;
    damaged lines leave a gap). bad_lines: (line number from 1, why) of the lines skipped.
    complete: the manifest was finalised (the session was closed, not cut off by a crash).
    """

    path: Path
    manifest: dict[str, Any]
    frames: list[dict[str, Any]]
    bad_lines: list[tuple[int, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def complete(self) -> bool:
        return self.manifest.get("stopped_utc") is not None

    @property
    def fps(self) -> float:
        """Playback rate: the recorded rate, from capture times (else the manifest's estimate, else 30)."""
        if len(self.frames) >= 2:
            dt = (self.frames[-1]["t_capture_ns"] - self.frames[0]["t_capture_ns"]) / 1e9
            if dt > 0:
                return min(max((len(self.frames) - 1) / dt, 1.0), 240.0)
        return float(self.manifest.get("fps") or 30.0)

    def _read(self, rel: object) -> bytes:
        try:
            return read_inside(self.path, rel, MAX_IMAGE_BYTES)
        except OSError as e:
            raise ValueError(f"{rel}: {e.strerror or e}") from None

    def raw(self, rec: dict[str, Any]) -> np.ndarray:
        """The recorded ROI crop of frame ``rec`` as captured (BGR), blanked regions zeroed.
        Raises ValueError naming the file when it is missing, damaged or outside the session."""
        return decode_raw(self._read(rec["raw"]), channels=3, name=str(rec["raw"]))

    def mask(self, rec: dict[str, Any]) -> np.ndarray | None:
        """The network's probability mask of frame ``rec`` at model size, float32 (None if not recorded).
        Raises ValueError like `raw`."""
        return decode_mask(self._read(rec["mask"]), name=str(rec["mask"])) if rec.get("mask") else None

    @property
    def model(self) -> dict[str, Any]:
        """The manifest's ``model`` (empty when a session lacks it)."""
        return self.manifest.get("model") or {}

    def _config(self, key: str) -> dict[str, Any]:
        return (self.manifest.get("config") or {}).get(key) or {}

    def overlay_config(self) -> OverlayConfig:
        try:
            return OverlayConfig.model_validate(self._config("overlay"))
        except Exception:  # noqa: BLE001 - a session from another version: draw with defaults
            return OverlayConfig()

    def presence_config(self) -> PresenceConfig:
        try:
            return PresenceConfig.model_validate(self._config("presence"))
        except Exception:  # noqa: BLE001
            return PresenceConfig()

    @property
    def thresholds(self) -> dict[str, float]:
        """Effective thresholds of the recorded run (presence_enter, presence_exit, mask)."""
        t = self.model.get("thresholds") or {}
        return {"presence_enter": float(t.get("presence_enter", 0.6)), "presence_exit": float(t.get(
            "presence_exit", 0.4)), "mask": float(t.get("mask", 0.5))}


def resolve_session(path: str | Path) -> Path:
    """``path`` itself when it is a session folder; the newest session when it is a recordings folder.

    Raises `SessionError` (exit code 7) naming the path otherwise.
    """
    p = Path(path).expanduser()
    try:
        if os.path.lexists(p / MANIFEST_FILE):
            return p
        if not p.is_dir():
            raise _bad(f"session {p}: no such folder")
        # newest as retention judges it (what was written, not a folder name from a wrong clock)
        sessions = [s for s in sessions_oldest_first(p) if os.path.lexists(s / MANIFEST_FILE)]
    except OSError as e:
        raise _bad(f"session {p}: cannot be read: {e.strerror or e}") from None
    if not sessions:
        raise _bad(f"session {p}: neither a recording session (no {MANIFEST_FILE}) nor a folder of sessions")
    logger.info("newest session in %s: %s", p, sessions[-1].name)
    return sessions[-1]


def load_session(path: str | Path) -> Session:
    """Read a session's manifest and frame records. Raises `SessionError` (exit code 7) when it is not a
    readable session.

    A session cut off by a crash or a full disk is still readable: a truncated last
    JSONL line is ignored, and the frame count comes from the JSONL.
    """
    p = resolve_session(path)
    try:
        manifest = json.loads(read_inside(p, MANIFEST_FILE, MAX_MANIFEST_BYTES).decode("utf-8"))
    except OSError as e:
        raise _bad(f"session {p}: cannot read {MANIFEST_FILE}: {e.strerror or e}") from None
    except (ValueError, RecursionError) as e:  # not JSON, not UTF-8, refused, or nested past the parser's depth
        raise _bad(f"session {p}: cannot read {MANIFEST_FILE}: {str(e)[:300]}") from None
    problem = manifest_problem(manifest)
    if problem:
        raise _bad(f"session {p}: {MANIFEST_FILE} is not a session's: {problem}")
    if manifest.get("format") != SESSION_FORMAT:
        raise _bad(f"session {p}: format {quote(manifest.get('format'))} is not {SESSION_FORMAT!r}")
    frames, bad = _read_frames(p)
    s = Session(p, manifest, frames, bad)
    if bad:
        shown = ", ".join(f"line {n} ({why})" for n, why in bad[:_SHOW_BAD])
        logger.warning("session %s: %d damaged lines of %s skipped (their frames are left out): %s%s", p.name,
                       len(bad), FRAMES_FILE, shown, f" and {len(bad) - _SHOW_BAD} more" if len(bad) > _SHOW_BAD
                       else "")
    if s.complete and manifest.get("frames") != len(frames):
        logger.warning("session %s: manifest says %s frames, %s holds %d", p.name, manifest.get("frames"),
                       FRAMES_FILE, len(frames))
    if not s.complete:
        logger.warning("session %s was not closed (crash or full disk): %d frames readable", p.name, len(frames))
    return s


def _read_frames(p: Path) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """The usable lines of a session's frames.jsonl, and (line number, why) of the damaged ones.

    A last line without its newline that does not parse is what a crash leaves mid-write:
    ignored with its own warning, not counted as damaged. Raises `SessionError` when the file
    cannot be read at all, or is larger than `MAX_FRAMES_BYTES`.
    """
    frames: list[dict[str, Any]] = []
    bad: list[tuple[int, str]] = []
    try:
        with open_inside(p, FRAMES_FILE) as f:
            if os.fstat(f.fileno()).st_size > MAX_FRAMES_BYTES:
                raise _bad(f"session {p}: {FRAMES_FILE} is larger than {MAX_FRAMES_BYTES >> 20} MiB, more than "
                           "a session ever holds: refused")
            total = n = 0
            while True:
                line = f.readline(MAX_LINE_BYTES + 1)
                if not line:
                    break
                n += 1
                total += len(line)
                if len(line) > MAX_LINE_BYTES:
                    while line and not line.endswith(b"\n") and total <= MAX_FRAMES_BYTES:  # skip the rest
                        line = f.readline(MAX_LINE_BYTES + 1)
                        total += len(line)
                    bad.append((n, f"longer than {MAX_LINE_BYTES >> 10} KiB"))
                    line = b""
                if total > MAX_FRAMES_BYTES:  # it grew while read
                    raise _bad(f"session {p}: {FRAMES_FILE} is larger than {MAX_FRAMES_BYTES >> 20} MiB: refused")
                if not line:
                    continue
                if not line.strip():
                    bad.append((n, "empty"))
                    continue
                try:
                    rec = json.loads(line.decode("utf-8"))
                except (ValueError, RecursionError):
                    if not line.endswith(b"\n"):
                        logger.warning("session %s: last line of %s is incomplete (ignored)", p.name, FRAMES_FILE)
                    else:
                        bad.append((n, "not JSON"))
                    continue
                problem = frame_problem(rec)
                if problem:
                    bad.append((n, problem))
                    continue
                frames.append(rec)
    except OSError as e:
        raise _bad(f"session {p}: cannot read {FRAMES_FILE}: {e.strerror or e}") from None
    except ValueError as e:  # refused by open_inside: a link, a device
        raise _bad(f"session {p}: cannot read {FRAMES_FILE}: {e}") from None
    return frames, bad


# -- drawing ---------------------------------------------------------------------------------------


class _Renderer:
    """Draws recorded frames with the recorded run's overlay settings (one per session and thread)."""

    def __init__(self, session: Session):
        self.session = session
        self.overlay = Overlay(session.overlay_config(), None, session.thresholds["mask"])
        model = session.model
        self.untrained = bool(model.get("untrained", False))
        self.model_name = str(model.get("name", ""))
        self.fps = session.fps

    def frame(self, rec: dict[str, Any]) -> np.ndarray:
        s = self.session
        return render_annotated(
            self.overlay, s.raw(rec), rec.get("decision") == "nerve", float(rec.get("p_nerve") or 0.0), s.mask(rec),
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
        _warn_skipped(self.session, skipped, reasons)


def _warn_skipped(session: Session, skipped: list[int], reasons: list[str]) -> None:
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


def _replace(path: Path, data: bytes) -> None:
    """Write an export file: 0600 like the recording it comes from (it shows patient images)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    write_private(path, data)


def _open_private_video(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    _replace(path, b"")
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
        _label(tile, f"#{rec['i']} {'NERVE' if is_nerve else 'none'} {float(rec.get('p_nerve') or 0):.2f}",
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
                img = renderer.frame(rec)
                m = session.mask(rec)
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
                            rec.get("decision"), rec.get("state"), rec.get("latency_ms"), frac,
                            rec.get("pre_roll"), rec.get("model"), clip_frame])
        if writer is not None:
            writer.release()
            writer = None
            os.replace(tmp_clip, clip_path)
        else:  # an empty session (or not one readable frame): still a valid (empty) export
            _replace(clip_path, b"")
    finally:
        if writer is not None:
            writer.release()
        tmp_clip.unlink(missing_ok=True)
    _warn_skipped(session, skipped, reasons)
    ok, png = cv2.imencode(".png", contact_sheet(session, thumbs))
    if not ok:
        raise OSError("contact sheet PNG encoding failed")
    _replace(sheet_path, png.tobytes())
    _replace(csv_path, buf.getvalue().encode())
    return ExportResult(out, sheet_path, clip_path, csv_path, n, nerve, skipped)


# -- another model over the recording ---------------------------------------------------------------


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty."""
    sa, sb = int(a.sum()), int(b.sum())
    if sa + sb == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / (sa + sb)


@dataclass
class CompareReport:
    """Where a model re-run over a session disagrees with what the box said.

    A frame disagrees when the per-frame presence votes differ (P >= each model's
    ``enter`` threshold), or when both vote "nerve" and the masks' Dice is below
    ``dice_threshold``. ``decision_*`` are the smoothed verdicts (hysteresis; the new
    model's starts from a fresh state at the session's first frame), reported only.
    """

    session: str
    model_recorded: str
    model_new: str
    dice_threshold: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # ``i`` of frames whose PNGs could not be read

    @property
    def frames(self) -> int:
        return len(self.rows)

    @property
    def disagreements(self) -> int:
        return sum(r["disagree"] for r in self.rows)

    def count(self, reason: str) -> int:
        return sum(r["reason"] == reason for r in self.rows)

    @property
    def decision_disagreements(self) -> int:
        return sum(r["decision_recorded"] != r["decision_new"] for r in self.rows)

    @property
    def mean_dice_both_nerve(self) -> float | None:
        d = [r["dice"] for r in self.rows if r["vote_recorded"] and r["vote_new"]]
        return float(np.mean(d)) if d else None

    @property
    def inputs_checked(self) -> int:
        return sum(r["input_reproduced"] is not None for r in self.rows)

    @property
    def inputs_reproduced(self) -> int:
        return sum(r["input_reproduced"] is True for r in self.rows)


def compare_session(session: Session, runner: ModelRunner, dice_threshold: float = DEFAULT_DICE_THRESHOLD,
                    ) -> CompareReport:
    """Run ``runner``'s model over every recorded raw frame and compare with the recorded outputs.

    Preprocessing is `edge.preprocess.preprocess` with the new model's spec on the
    recorded ROI crop (the crop *is* the ROI). The recorded run's thresholds come
    from its manifest; the new model's from the recorded config's ``presence``
    overrides, else its own spec. ``input_reproduced`` says whether preprocessing the
    recorded raw frame with the *recorded* model's spec gives the exact model input
    the box used (CRC-32 match): it checks the recording itself.
    """
    if not 0.0 <= dice_threshold <= 1.0:
        raise UsageError(f"--dice-threshold must be in [0, 1], got {dice_threshold}")
    rec_t = session.thresholds
    spec = runner.spec
    # the recorded config's presence overrides on the new model's spec, settled as the live loop does
    rules = settle_rules(session.presence_config(), spec.thresholds, where=f"recorded config of {session.name}",
                         model=f"model spec of {Path(runner.model_path).name}")
    enter, mask_thr = rules.enter, rules.mask_threshold
    rec_pre = None
    try:
        rec_pre = PreprocessSpec.model_validate(session.model.get("preprocess"))
    except Exception:  # noqa: BLE001 - an older session without it: the input check is skipped
        logger.info("session %s records no preprocessing spec: input reproduction not checked", session.name)
    fh, fv = (bool(f) for f in (session.manifest.get("flips") or (False, False)))
    # the raw frames are the ROI crops: no ROI; mirrored as the recorded run's site profile said
    analyzer = Analyzer(runner, rules, roi=None, flips=(fh, fv))

    model_new = f"{spec.name}@{runner.sha256[:12]}"
    report = CompareReport(session.name, session.model.get("id", "?"), model_new,
                           dice_threshold)
    x_rec = None
    reasons: list[str] = []
    for rec in session.frames:
        try:
            raw = session.raw(rec)
            m_rec = session.mask(rec)
        except ValueError as e:  # a missing or damaged PNG: nothing to compare on this frame
            report.skipped.append(int(rec["i"]))
            reasons.append(str(e))
            continue
        res: Result = analyzer.infer(analyzer.model_input(raw))
        decision_new = analyzer.decide(res)
        reproduced = None
        if rec_pre is not None and rec.get("input_crc32") is not None:
            if x_rec is None or x_rec.shape != (rec_pre.height, rec_pre.width):
                x_rec = np.zeros((rec_pre.height, rec_pre.width), np.float32)
            reproduced = zlib.crc32(network_input(raw, None, rec_pre, (fh, fv), out=x_rec)) == rec["input_crc32"]
        p_rec = float(rec.get("p_nerve") or 0.0)
        vote_rec = p_rec >= rec_t["presence_enter"]
        vote_new = res.p_nerve >= enter
        if m_rec is not None and m_rec.shape != res.mask.shape:
            m_rec = cv2.resize(m_rec, (res.mask.shape[1], res.mask.shape[0]), interpolation=cv2.INTER_LINEAR)
        d = dice(m_rec >= rec_t["mask"], res.mask >= mask_thr) if m_rec is not None else float("nan")
        if vote_rec != vote_new:
            reason = "recorded nerve, new none" if vote_rec else "recorded none, new nerve"
        elif vote_rec and vote_new and not d >= dice_threshold:
            reason = "mask dice below threshold"
        else:
            reason = ""
        report.rows.append({
            "i": rec["i"], "seq": rec["seq"], "t_capture": rec.get("t_capture"),
            "p_recorded": round(p_rec, 6), "p_new": round(res.p_nerve, 6),
            "vote_recorded": vote_rec, "vote_new": vote_new,
            "decision_recorded": rec.get("decision") == "nerve", "decision_new": decision_new.nerve,
            "dice": round(d, 4), "input_reproduced": reproduced, "disagree": bool(reason), "reason": reason,
        })
    _warn_skipped(session, report.skipped, reasons)
    return report


def write_compare_csv(report: CompareReport, path: str | Path) -> Path:
    """One row per frame (`COMPARE_COLUMNS`); returns the path."""
    p = Path(path).expanduser()
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COMPARE_COLUMNS)
    w.writeheader()
    w.writerows(report.rows)
    try:
        make_private_dir(p.parent)
        _replace(p, buf.getvalue().encode())
    except OSError as e:
        raise UsageError(f"--export: cannot write {p}: {e.strerror or e}") from None
    return p


def format_compare(report: CompareReport, show: int = 10) -> str:
    """Summary counts and the first ``show`` disagreeing frames, for the terminal."""
    md = report.mean_dice_both_nerve
    lines = [
        f"review {report.session}: {report.model_new} vs recorded {report.model_recorded}",
        f"  frames                : {report.frames}",
        f"  disagreements         : {report.disagreements}"
        f" (recorded nerve/new none {report.count('recorded nerve, new none')},"
        f" recorded none/new nerve {report.count('recorded none, new nerve')},"
        f" mask dice < {report.dice_threshold:g} {report.count('mask dice below threshold')})",
        f"  mean dice (both nerve): {'-' if md is None else f'{md:.3f}'}",
        f"  smoothed decisions differ on {report.decision_disagreements} frames",
        f"  recorded inputs reproduced bit-exactly: {report.inputs_reproduced}/{report.inputs_checked}",
    ]
    if report.skipped:
        lines.append(f"  unreadable frames skipped: {len(report.skipped)} "
                     f"({', '.join(f'#{i}' for i in report.skipped[:10])}{' ...' if len(report.skipped) > 10 else ''})")
    bad = [r for r in report.rows if r["disagree"]]
    for r in bad[:show]:
        lines.append(f"    #{r['i']} seq {r['seq']}: {r['reason']} (p {r['p_recorded']:.2f} -> {r['p_new']:.2f}, "
                     f"dice {r['dice']:.2f})")
    if len(bad) > show:
        lines.append(f"    ... {len(bad) - show} more")
    return "\n".join(lines)
