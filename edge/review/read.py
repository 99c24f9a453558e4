"""Reading a recording session without trusting it: paths kept inside the folder, sizes bounded,
every field type-checked; damaged lines and images skipped and counted."""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.config import OverlayConfig, PresenceConfig
from edge.errors import SessionError
from edge.recording.session import (
    FRAMES_FILE,
    MANIFEST_FILE,
    SESSION_FORMAT,
    decode_mask,
    decode_raw,
)
from edge.recording.storage import sessions_oldest_first
from edge.yamlio import quote

logger = logging.getLogger(__name__)


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
    "p_vote": ("num", True, False),
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


