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
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path

from edge.config import RecordConfig
from edge.fileio import write_all
from edge.recording.session import RESERVE_FILE, list_sessions, new_file, open_private, session_start

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


def apply_retention(
    root: Path,
    max_bytes: float,
    max_age_s: float,
    now: datetime | None = None,
    keep: Iterable[Path] = (),
    extra_bytes: int = 0,
    sizes: dict[str, int] | None = None,
) -> list[Path]:
    """Delete whole sessions under ``root``: first those older than ``max_age_s``, then the
    oldest ones while the total exceeds ``max_bytes``. Returns the deleted folders, oldest first.

    keep: sessions never deleted (the one being written); they are measured on disk
    each time. extra_bytes: bytes the kept sessions will still hold beyond what is on
    disk now, counted once on top (0 when the disk is all there is). sizes: cache of
    finished sessions' sizes by name (finished sessions do not change), updated in
    place; entries of sessions no longer on disk (deleted by hand) are dropped.
    """
    now = now or datetime.now(timezone.utc)
    keep_names = {Path(k).name for k in keep}
    sizes = {} if sizes is None else sizes
    sessions = list_sessions(root)
    present = {s.name for s in sessions}
    for gone in [name for name in sizes if name not in present]:
        del sizes[gone]
    deleted: list[Path] = []
    total = extra_bytes
    candidates = []
    for s in sessions:
        if s.name not in sizes or s.name in keep_names:
            sizes[s.name] = dir_size(s)
        total += sizes[s.name]
        if s.name not in keep_names:
            candidates.append(s)
    for s in candidates:  # oldest first
        start = session_start(s.name)
        too_old = start is not None and (now - start).total_seconds() > max_age_s
        if not too_old and total <= max_bytes:
            continue
        try:
            shutil.rmtree(s)
        except FileNotFoundError:
            pass
        except OSError as e:
            logger.warning("retention: cannot delete %s: %s", s, e)
            continue
        total -= sizes.pop(s.name, 0)
        deleted.append(s)
        logger.info("retention: deleted session %s (%s)", s.name, "older than record.max_days" if too_old else
                    "over record.max_gb")
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
        self.other_bytes = 0  # sessions on disk other than the open one
        self._next_retention = 0.0
        self._next_free_check = 0.0

    def free_bytes(self) -> float:
        """Bytes an unprivileged writer may still use on the recordings' file system."""
        st = self._statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def check_min_free(self) -> None:
        """Raise ENOSPC when less than ``record.min_free_mb`` is free."""
        if self.free_bytes() < self.min_free_bytes:
            raise BelowMinFree(errno.ENOSPC, f"less than record.min_free_mb = {self.cfg.min_free_mb:g} MB free")

    def check_room(self, nbytes: int, videos: int) -> None:
        """Raise ENOSPC unless a frame of ``nbytes`` and room for the next writes of ``videos`` open mp4
        files fit on the disk (and ``record.min_free_mb`` stays free).

        FFmpeg's first failed write loses the whole mp4 (it drops every later write, its
        index too), so recording stops while the videos can still be finalised.
        """
        need = nbytes + VIDEO_HEADROOM_BYTES * videos
        free = self.free_bytes()
        if free < self.min_free_bytes:
            raise BelowMinFree(errno.ENOSPC, f"less than record.min_free_mb = {self.cfg.min_free_mb:g} MB free")
        if free < need:
            raise OSError(errno.ENOSPC, f"No space left on device for the next frame: {free / 1e3:.0f} kB free, "
                                        f"{need / 1e3:.0f} kB needed with the videos' buffers")

    def retention(self, open_session: Path | None) -> None:
        """Delete what is too old or over the quota, keeping ``open_session`` (measured on disk: PNGs,
        JSONL, the mp4s as flushed, the reserve; nothing counted on top)."""
        keep = [open_session] if open_session is not None else []
        apply_retention(self.root, self.max_bytes, self.max_age_s, now=self._now(), keep=keep, sizes=self.sizes)
        name = open_session.name if open_session is not None else None
        self.other_bytes = sum(v for k, v in self.sizes.items() if k != name)
        self._next_retention = self._clock() + self._retention_every_s

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
