"""Disk use of the recordings: quota, age limit, free space, and the full-disk reserve.

`Storage` is the recorder's accountant for one ``record.dir``: which finished
sessions to delete (oldest first, whole sessions only), whether the next frame still
fits, and when to look again. Its clocks and ``statvfs`` are parameters, so a test
can fill the disk or move time without touching this module.

Full disk: FFmpeg's first failed write is final (every later write of that file,
the index at the end included, is dropped, and the mp4 never opens again), so the
writer stops a frame early: before each frame `Storage.check_room` checks that the
frame and the videos' buffered output still fit. Each open session holds a
`RESERVE_BYTES` file (`make_reserve`), deleted first when the session closes: it leaves
room for the videos' index and the final manifest even when something else filled
the disk.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from edge.config import RecordConfig
from edge.fileio import write_all
from edge.recording.session import MANIFEST_FILE, RESERVE_FILE, list_sessions, new_file, open_private, session_start

logger = logging.getLogger(__name__)

_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
RESERVE_BYTES = 1 << 20  # room to finalise two videos (index ~5 B a frame + FFmpeg's buffer) and the manifest
# FFmpeg buffers 256 KiB of mp4 output per file (measured with OpenCV 5.0) and writes it in one go; a frame
# must leave room for that flush plus a large key frame, or the flush fails and the mp4 is lost.
VIDEO_HEADROOM_BYTES = 512 << 10
FREE_CHECK_S = 1.0  # free-space check while a session is open, between frames too
RETENTION_EVERY_S = 60.0


class BelowMinFree(OSError):
    """ENOSPC of our own: the disk has less free space than ``record.min_free_mb`` asks to keep."""


def is_disk_full(e: BaseException) -> bool:
    """Whether ``e`` is the kernel saying the disk (or the user's disk quota) is full."""
    return isinstance(e, OSError) and e.errno in _DISK_FULL_ERRNOS


def make_reserve(path: Path, nbytes: int, open_file=open_private) -> None:
    """Create ``path`` (0600) holding ``nbytes`` of allocated disk space, so that deleting it frees that much.

    ``posix_fallocate`` where the file system supports it, else zeros written. Raises
    OSError (ENOSPC when it does not fit); nothing is left behind then.
    """
    with new_file(path, open_file) as fd:
        try:
            os.posix_fallocate(fd, 0, nbytes)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS, errno.ENODEV):
                raise
            chunk = bytes(min(nbytes, 1 << 16))
            left = nbytes
            while left > 0:
                write_all(fd, chunk[:left])
                left -= len(chunk)


def remove_stale_reserves(root: Path) -> None:
    """Delete the reserve files a crash or power cut left in sessions under ``root``: they are not data."""
    for old in list_sessions(root):
        with contextlib.suppress(OSError):
            os.unlink(old / RESERVE_FILE)


def dir_size(path: Path) -> int:
    """Bytes in the files under ``path`` (apparent sizes; 0 when it vanished meanwhile)."""
    total = 0
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return 0
    for e in entries:
        try:
            if e.is_dir(follow_symlinks=False):
                total += dir_size(Path(e.path))
            else:
                total += e.stat(follow_symlinks=False).st_size
        except FileNotFoundError:
            pass
    return total


# A session's own time is trusted up to this far ahead of the clock now, or of the last change to its
# files: NTP stepping a clock back, a time zone mistake on a box without RTC. Beyond it the time is wrong.
CLOCK_SLACK_S = 3600.0
_MAX_MANIFEST_BYTES = 4 << 20


@dataclass
class SessionTime:
    """When a session was recorded, as retention ages and orders it (see `session_times`).

    started: what the session says (its manifest's ``started_utc``, else its folder name).
    changed: the kernel's last change to the folder or its top-level entries (newest ctime: unlike
        mtimes it cannot be set by hand, only by the clock).
    serial: the manifest's ``serial``, its place in the write order of the folder (None: older format,
        or not made by the recorder).
    """

    started: datetime | None
    changed: datetime | None
    serial: int | None


def _manifest_of(path: Path) -> dict:
    """The manifest of session ``path`` for retention ({} when missing, damaged, a link or absurdly large)."""
    try:
        fd = os.open(path / MANIFEST_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return {}
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_MANIFEST_BYTES:
            return {}
        with os.fdopen(os.dup(fd), "rb") as f:
            m = json.loads(f.read(_MAX_MANIFEST_BYTES))
        return m if isinstance(m, dict) else {}
    except (OSError, ValueError, RecursionError):
        return {}
    finally:
        os.close(fd)


def _utc(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


def read_session_time(path: Path) -> SessionTime:
    """`SessionTime` of the session folder ``path``, from what was written in it."""
    m = _manifest_of(path)
    started = _utc(m.get("started_utc")) or session_start(path.name)
    serial = m.get("serial")
    if not isinstance(serial, int) or isinstance(serial, bool):
        serial = None
    ctimes = []
    with contextlib.suppress(OSError):
        ctimes.append(os.lstat(path).st_ctime)
        for e in os.scandir(path):
            with contextlib.suppress(OSError):
                ctimes.append(e.stat(follow_symlinks=False).st_ctime)
    changed = datetime.fromtimestamp(max(ctimes), timezone.utc) if ctimes else None
    return SessionTime(started, changed, serial)


@dataclass
class _Aged:
    path: Path
    time: datetime | None  # the time it is aged by; None: unknown
    future: bool  # its own time lies in the future: it goes first when over the quota
    note: str  # how that time was found, when not simply its start


def session_times(times: dict[str, SessionTime], now: datetime) -> dict[str, tuple[datetime | None, bool, str]]:
    """The time each session is aged and ordered by, whether its own time lies in the future, and how
    the time was found; by name.

    Names on folders and clocks on boxes without RTC or NTP lie; so:

    - a session's own time is its manifest's start (else its name's), unless that lies after the
      last change to its files (a renamed folder): then that change;
    - sessions the recorder numbered (``serial``) were written in that order, so a session
      cannot be older than one written before it (the clock was behind later): its time is
      raised to the latest time before it;
    - an own time more than `CLOCK_SLACK_S` ahead of ``now`` is wrong (a clock that was ahead, a
      hand-made name): such a session goes first when over the quota, never ahead of real older
      sessions, and is aged by the latest it can have been written: the last change to its files
      when the clock then was right, else the start of the next session written after it. With
      neither, its age is unknown (None) and it is not deleted for its age.
    """
    slack = timedelta(seconds=CLOCK_SLACK_S)
    latest_ok = now + slack
    own: dict[str, tuple[datetime | None, bool, str]] = {}
    for name, t in times.items():
        start, note = t.started, ""
        if start is not None and start > latest_ok:
            bound = t.changed if t.changed is not None and t.changed <= latest_ok else None
            why = f"its time {_iso(start)} lies in the future (a wrong clock or a hand-made name)"
            own[name] = (bound, True, why + (f"; aged from its last change, {_iso(bound)}" if bound else ""))
            continue
        if t.changed is not None and (start is None or start > t.changed + slack):
            if start is not None:
                note = f"its recorded start {_iso(start)} is later than its files; aged by them"
            start = t.changed
        own[name] = (start, False, note)
    out = dict(own)
    ordered = sorted((t.serial, name) for name, t in times.items() if t.serial is not None)
    latest: datetime | None = None
    for _, name in ordered:  # raised to the latest time written before
        t, future, note = own[name]
        if t is None or future:
            continue
        if latest is not None and t < latest:
            out[name] = (latest, False, f"its recorded start {_iso(t)} is earlier than a session written before "
                                        "it (the clock was behind); aged from that one's")
        latest = max(latest, t) if latest is not None else t
    bound: datetime | None = None
    for _, name in reversed(ordered):  # a time from the future bounded by the next session written after it
        t, future, note = out[name]
        if future:
            if bound is not None and (t is None or bound < t):
                out[name] = (bound, True, note.split("; aged")[0] + f"; aged from the next session written, "
                                                                    f"{_iso(bound)}")
        elif t is not None:
            bound = t
    return out


def sessions_oldest_first(root: Path, now: datetime | None = None) -> list[Path]:
    """Session folders under ``root`` in the order retention deletes them: oldest first by
    `session_times`, those whose time lies in the future first of all. Its last is the newest."""
    now = now or datetime.now(timezone.utc)
    paths = list_sessions(root)
    times = {p.name: read_session_time(p) for p in paths}
    aged = session_times(times, now)
    return sorted(paths, key=lambda p: _age_order(aged[p.name][1], aged[p.name][0], times[p.name].serial, p.name,
                                                  now))


def _age_order(future: bool, t: datetime | None, serial: int | None, name: str, now: datetime) -> tuple:
    return (not future, t is not None, t or now, serial or 0, name)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%MZ")


def apply_retention(
    root: Path,
    max_bytes: float,
    max_age_s: float,
    now: datetime | None = None,
    keep: Iterable[Path] = (),
    extra_bytes: int = 0,
    sizes: dict[str, int] | None = None,
    times: dict[str, SessionTime] | None = None,
    warned: set[str] | None = None,
) -> list[Path]:
    """Delete whole sessions under ``root``: first those older than ``max_age_s``, then the
    oldest ones while the total exceeds ``max_bytes``. Returns the deleted folders, in the
    order deleted. Age and order come from what was written, not from folder names
    (`session_times`); each deletion is logged with its reason and the time it was aged by.

    keep: sessions never deleted (the one being written); they are measured on disk
    each time, and take part in the write order. extra_bytes: bytes the kept sessions
    will still hold beyond what is on disk now, counted once on top (0 when the disk is
    all there is). sizes, times: caches of finished sessions' sizes and `SessionTime`s by
    name (finished sessions do not change), updated in place; entries of sessions no
    longer on disk (deleted by hand) are dropped. warned: names already warned about (a
    session from the future that is kept is warned about once), updated in place.
    """
    now = now or datetime.now(timezone.utc)
    keep_names = {Path(k).name for k in keep}
    sizes = {} if sizes is None else sizes
    times = {} if times is None else times
    warned = set() if warned is None else warned
    sessions = list_sessions(root)
    present = {s.name for s in sessions}
    for cache in (sizes, times):
        for gone in [name for name in cache if name not in present]:
            del cache[gone]
    total = extra_bytes
    for s in sessions:
        if s.name not in sizes or s.name in keep_names:
            sizes[s.name] = dir_size(s)
        if s.name not in times or s.name in keep_names:
            times[s.name] = read_session_time(s)
        total += sizes[s.name]
    aged = session_times({s.name: times[s.name] for s in sessions}, now)
    candidates = [_Aged(s, *aged[s.name]) for s in sessions if s.name not in keep_names]
    # Oldest first; a time from the future first of all: it never outlives real older sessions.
    candidates.sort(key=lambda a: _age_order(a.future, a.time, times[a.path.name].serial, a.path.name, now))
    deleted: list[Path] = []
    for a in candidates:
        age_s = (now - a.time).total_seconds() if a.time is not None else None
        too_old = age_s is not None and age_s > max_age_s
        if not too_old and total <= max_bytes:
            if a.future and a.path.name not in warned:
                warned.add(a.path.name)
                logger.warning("retention: session %s: %s; it goes first when recordings reach record.max_gb",
                               a.path.name, a.note)
            continue
        nbytes = sizes.get(a.path.name, 0)
        try:
            shutil.rmtree(a.path)
        except FileNotFoundError:
            pass
        except OSError as e:
            logger.warning("retention: cannot delete %s: %s", a.path, e)
            continue
        if too_old:
            why = (f"older than record.max_days = {max_age_s / 86400:g}: recorded {_iso(a.time)}, "
                   f"{age_s / 86400:.1f} days ago")
        else:
            why = f"over record.max_gb = {max_bytes / 1e9:g}: recordings held {total / 1e9:.3g} GB, oldest go first"
        logger.info("retention: deleted session %s (%s; %.1f MB)%s", a.path.name, why, nbytes / 1e6,
                    f"; {a.note}" if a.note else "")
        total -= sizes.pop(a.path.name, 0)
        times.pop(a.path.name, None)
        deleted.append(a.path)
    return deleted


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Storage:
    """Quota, age limit and free space of ``record.dir`` for one recorder (its writer thread only).

    cfg: the ``record`` section (dir, max_gb, max_days, min_free_mb).
    statvfs: ``os.statvfs`` or a stand-in (``f_bavail``, ``f_frsize``) for a disk that fills up.
    clock: monotonic seconds, for when to check again. now: the UTC time, for session ages.
    retention_every_s / free_check_s: how often the periodic passes run.

    Bytes are decimal (``max_gb`` * 1e9). Finished sessions' sizes are cached by name
    (they do not change); the open session is measured by its writer and passed in.
    """

    def __init__(
        self,
        cfg: RecordConfig,
        *,
        statvfs: Callable[[Path], os.statvfs_result] = os.statvfs,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utc_now,
        retention_every_s: float = RETENTION_EVERY_S,
        free_check_s: float = FREE_CHECK_S,
    ):
        self.cfg = cfg
        self.root = Path(cfg.dir).expanduser()
        self.max_bytes = cfg.max_gb * 1e9
        self.max_age_s = cfg.max_days * 86400.0
        self.min_free_bytes = cfg.min_free_mb * 1e6
        self._statvfs = statvfs
        self._clock = clock
        self._now = now
        self._retention_every_s = retention_every_s
        self._free_check_s = free_check_s
        self.sizes: dict[str, int] = {}  # finished sessions by name, bytes
        self.times: dict[str, SessionTime] = {}  # finished sessions by name: what retention ages them by
        self._warned: set[str] = set()
        self._serial = 0  # the highest session serial seen or given
        self.other_bytes = 0  # sessions on disk other than the open one
        self._next_retention = 0.0
        self._next_free_check = 0.0

    def free_bytes(self) -> float:
        """Bytes an unprivileged writer may still use on the recordings' file system."""
        st = self._statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def check_min_free(self, free: float | None = None) -> None:
        """Raise ENOSPC when less than ``record.min_free_mb`` is free (``free``: bytes already measured)."""
        if (self.free_bytes() if free is None else free) < self.min_free_bytes:
            raise BelowMinFree(errno.ENOSPC, f"less than record.min_free_mb = {self.cfg.min_free_mb:g} MB free")

    def check_room(self, nbytes: int, videos: int) -> None:
        """Raise ENOSPC unless a frame of ``nbytes`` and room for the next writes of ``videos`` open mp4
        files fit on the disk (and ``record.min_free_mb`` stays free).

        FFmpeg's first failed write loses the whole mp4 (it drops every later write, its
        index too), so recording stops while the videos can still be finalised.
        """
        need = nbytes + VIDEO_HEADROOM_BYTES * videos
        free = self.free_bytes()
        self.check_min_free(free)
        if free < need:
            raise OSError(errno.ENOSPC, f"No space left on device for the next frame: {free / 1e3:.0f} kB free, "
                                        f"{need / 1e3:.0f} kB needed with the videos' buffers")

    def retention(self, open_session: Path | None) -> None:
        """Delete what is too old or over the quota, keeping ``open_session`` (measured on disk: PNGs,
        JSONL, the mp4s as flushed, the reserve; nothing counted on top)."""
        keep = [open_session] if open_session is not None else []
        apply_retention(self.root, self.max_bytes, self.max_age_s, now=self._now(), keep=keep, sizes=self.sizes,
                        times=self.times, warned=self._warned)
        name = open_session.name if open_session is not None else None
        self.other_bytes = sum(v for k, v in self.sizes.items() if k != name)
        self._next_retention = self._clock() + self._retention_every_s

    def next_serial(self) -> int:
        """The ``serial`` of the session about to open: one above every session on disk at the last
        `retention` pass and every serial given before (the write order, whatever the clock says)."""
        seen = max((t.serial for t in self.times.values() if t.serial is not None), default=0)
        self._serial = max(self._serial, seen) + 1
        return self._serial

    def retention_due(self) -> bool:
        return self._clock() >= self._next_retention

    def free_check_due(self) -> bool:
        """True at most every ``free_check_s`` (and starts the next interval)."""
        now = self._clock()
        if now < self._next_free_check:
            return False
        self._next_free_check = now + self._free_check_s
        return True

    def session_opened(self) -> None:
        """A session was just opened (its free-space check was done): the next periodic one is due later."""
        self._next_free_check = self._clock() + self._free_check_s

    def session_closed(self, name: str, nbytes: int) -> None:
        """Count a finished session: tracked, not scanned (a scan of a long session on a slow card would
        stall the writer)."""
        self.sizes[name] = nbytes
        self.times.pop(name, None)  # measured while open: read again, as finished, by the next pass
        self.other_bytes += nbytes

    def over_quota(self, open_bytes: int) -> bool:
        return self.other_bytes + open_bytes > self.max_bytes

    def quota_error(self, open_bytes: int) -> OSError:
        """Why recording must stop over the quota when retention could not make room (EDQUOT)."""
        total = self.other_bytes + open_bytes
        if open_bytes > self.max_bytes:
            why = (f"record.max_gb = {self.cfg.max_gb:g} is too small for one session (its "
                   f"{RESERVE_BYTES / 2**20:g} MiB reserve and a frame or two)")
        else:
            why = (f"recordings hold {total / 1e9:.3g} GB, over record.max_gb = {self.cfg.max_gb:g}, and no older "
                   "session could be deleted (see the retention warnings)")
        return OSError(errno.EDQUOT, why)
