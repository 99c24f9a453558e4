"""How many frames a finalised MP4 file holds, read from its index without decoding.

The recorder reads its videos back when it closes a session: FFmpeg's first failed
write (a full disk) loses the index for good, and such a file cannot be opened by a
player. The manifest says so instead of pretending.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from pathlib import Path


def _mp4_boxes(data: bytes | memoryview) -> Iterable[tuple[bytes, memoryview]]:
    view = memoryview(data)
    pos = 0
    while pos + 8 <= len(view):
        n, kind = struct.unpack_from(">I4s", view, pos)
        head = 8
        if n == 1 and pos + 16 <= len(view):
            n, head = struct.unpack_from(">Q", view, pos + 8)[0], 16
        if n < head or pos + n > len(view):
            return
        yield kind, view[pos + head : pos + n]
        pos += n


def _stsz_count(box: memoryview) -> int | None:
    """Sample count of the first video track inside a moov box's payload (None when there is none)."""
    for kind, body in _mp4_boxes(box):
        if kind == b"trak":
            handler = _find_box(body, (b"mdia", b"hdlr"))
            if handler is not None and bytes(handler[8:12]) != b"vide":
                continue
            stsz = _find_box(body, (b"mdia", b"minf", b"stbl", b"stsz"))
            if stsz is not None and len(stsz) >= 12:
                return struct.unpack_from(">I", stsz, 8)[0]
    return None


def _find_box(box: memoryview, path: tuple[bytes, ...]) -> memoryview | None:
    for kind, body in _mp4_boxes(box):
        if kind == path[0]:
            return body if len(path) == 1 else _find_box(body, path[1:])
    return None


def mp4_frame_count(path: str | Path) -> int | None:
    """Frames of the video track of a finalised MP4 file, from its index (the ``moov`` box).

    None when the file is missing, was never finalised (no complete index: a player
    cannot open it), or its media data is cut short. Reads only box headers and the
    index, not the frames.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            pos = 0
            moov = None
            while pos + 8 <= size:
                f.seek(pos)
                head = f.read(16)
                if len(head) < 8:
                    return None
                n, kind = struct.unpack_from(">I4s", head)
                hl = 8
                if n == 1:
                    if len(head) < 16:
                        return None
                    n, hl = struct.unpack_from(">Q", head, 8)[0], 16
                elif n == 0:  # "up to the end of the file": FFmpeg's placeholder until the index is written
                    n = size - pos
                if n < hl or pos + n > size:
                    return None
                if kind == b"moov":
                    f.seek(pos + hl)
                    moov = f.read(n - hl)
                pos += n
    except OSError:
        return None
    return None if moov is None else _stsz_count(memoryview(moov))
