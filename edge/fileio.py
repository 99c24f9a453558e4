"""Writing files so that a reader, a power cut or a full disk never leaves half of one.

Shared by the health file, the site profile and the recorder's session manifest.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

#: A temporary file of `replace_atomic` older than this is a leftover of a process killed mid-write (a write
#: takes well under a second, an fsync on a failing SD card seconds), and is removed.
STALE_TMP_S = 600.0

#: (folder, name) -> monotonic time of its next sweep for leftovers (`_sweep_due`).
_next_sweep: dict[tuple[str, str], float] = {}
_sweep_lock = threading.Lock()


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is out (a write may take only part of a buffer)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _tmp_name(name: str) -> str:
    # Random, not pid + thread: after a restart (or a reboot) the same pid and thread ident come back, and a
    # temporary file left by a killed process under that name would make O_EXCL fail for ever.
    return f".{name}.{os.getpid()}.{secrets.token_hex(8)}.tmp"


def remove_stale_temps(path: str | Path, older_than_s: float | None = None) -> list[Path]:
    """Remove temporary files of `replace_atomic` for ``path`` older than ``older_than_s`` (None =
    `STALE_TMP_S`); returns them.

    A younger one may belong to a writer that is still running (another thread or process), so it stays.
    Errors (a folder that cannot be listed, a file removed meanwhile) are ignored: this is tidying only.
    """
    path = Path(path)
    prefix, removed = f".{path.name}.", []
    limit = time.time() - (STALE_TMP_S if older_than_s is None else older_than_s)
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < limit:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    if removed:
        logger.info("removed %d leftover temporary file(s) of %s (a process killed while writing it)",
                    len(removed), path)
    return removed


def _sweep_due(path: Path) -> None:
    """`remove_stale_temps` on the first write of ``path`` in this process, then every `STALE_TMP_S`:
    a leftover of a process killed seconds before this one started is too young at the first sweep."""
    key = (str(path.parent.absolute()), path.name)
    now = time.monotonic()
    with _sweep_lock:
        if now < _next_sweep.get(key, -1.0):
            return
        if len(_next_sweep) >= 256:
            # One key per file written: the recorder's manifests add one per session. Forgetting them all
            # costs at most one extra folder listing per file.
            _next_sweep.clear()
        _next_sweep[key] = now + STALE_TMP_S
    remove_stale_temps(path)


def replace_atomic(path: str | Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data``: a reader sees the old file or the new one, never a partial one.

    The temporary file sits in the same folder (``os.replace`` is atomic only within a file
    system), has a random name, is created new (O_EXCL: never written through a planted file or
    link) with ``mode`` exactly, whatever the umask, and is fsynced before the rename, so after a
    power cut the file is the old one or the new one, never empty. On any error the temporary file
    is removed and the error raised (ENOSPC on a full disk). Temporary files a killed process
    left are removed on the first write of ``path`` in a process and every `STALE_TMP_S` after.
    """
    path = Path(path)
    _sweep_due(path)
    for attempt in range(3):
        tmp = path.with_name(_tmp_name(path.name))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
            break
        except FileExistsError:  # 64 random bits taken: only if someone plants names; try fresh ones
            if attempt == 2:
                raise
        except OSError as e:
            # Name the file the caller asked for, not a random temporary name (callers log one line per
            # distinct error, and an engineer looks for the real path).
            raise OSError(e.errno, f"{e.strerror} (writing a temporary file beside it)", str(path)) from e
    try:
        try:
            os.fchmod(fd, mode)
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
