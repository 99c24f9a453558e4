"""Writing files so that a reader, a power cut or a full disk never leaves half of one.

Shared by the health file, the site profile and the recorder's session manifest.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is out (a write may take only part of a buffer)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def replace_atomic(path: str | Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data``: a reader sees the old file or the new one, never a partial one.

    The temporary file sits in the same folder (``os.replace`` is atomic only within a file
    system), is created new (O_EXCL: never written through a planted file or link) with
    ``mode`` exactly, whatever the umask, and is fsynced before the rename, so after a power
    cut the file is the old one or the new one, never empty. On any error the temporary file
    is removed and the error raised (ENOSPC on a full disk).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
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
