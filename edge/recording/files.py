"""One session being written: its folder, reserve, frames.jsonl, PNGs, videos and manifest.

The format is `edge.recording.session`'s; this is the writer's side of it, used by
the recorder's writer thread only. Every new file is made by one ``open_file``
function (0600, O_EXCL), which a test may replace to stand in for a slow or full disk.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.fileio import write_all
from edge.recording.mp4index import mp4_frame_count
from edge.recording.session import (
    ANNOTATED_FILE,
    DIR_MODE,
    FRAMES_FILE,
    FULL_FILE,
    MANIFEST_FILE,
    MASK_DIR,
    RAW_DIR,
    RESERVE_FILE,
    make_private_dir,
    new_session_path,
    open_private,
    pad_even,
    replace_private,
    utc_iso,
    video_fps,
    write_private,
)
from edge.recording.storage import make_reserve

logger = logging.getLogger(__name__)

VIDEO_FILES = {"annotated": ANNOTATED_FILE, "full": FULL_FILE}  # video key -> its file in the session


class SessionFiles:
    """The open files of one recording session and what they hold so far.

    Sizes in bytes: ``file_bytes`` (PNGs and JSONL as written), ``manifest_bytes``,
    ``video_bytes`` (the mp4 files at their last `stat_videos`; FFmpeg writes in 256 KiB
    steps), ``reserve_bytes``. ``frames``: frames recorded (their JSONL line written);
    ``dropped``: frames lost within the session's span, booked by the recorder.
    """

    def __init__(self, path: Path, manifest: dict[str, Any], open_file: Callable[..., int] = open_private):
        self.path = path
        self.manifest = manifest
        self._open_file = open_file
        self.frames = 0
        self.pre_roll = 0
        self.dropped = 0
        self.file_bytes = 0
        self.manifest_bytes = 0
        self.video_bytes = 0
        self.reserve: Path | None = None
        self.reserve_bytes = 0
        self.jsonl_fd: int | None = None
        # per video ("annotated", "full"): its writer (None: could not open), size (w, h), frames handed over
        self._videos: dict[str, tuple[cv2.VideoWriter | None, tuple[int, int]]] = {}
        self.video_frames = {"annotated": 0, "full": 0}

    @classmethod
    def create(cls, root: Path, started_ns: int, manifest: dict[str, Any], reserve_bytes: int,
               open_file: Callable[..., int] = open_private) -> SessionFiles:
        """Make the folder of a session started at ``started_ns`` (wall clock) under ``root``, its reserve,
        an empty frames.jsonl and the first manifest (``manifest`` gets the folder's name).

        Raises OSError (ENOSPC on a full disk); a session that could not even start leaves no folder.
        """
        path = new_session_path(root, started_ns)
        make_private_dir(path)
        s = cls(path, {**manifest, "session": path.name}, open_file)
        try:
            for d in (path / RAW_DIR, path / MASK_DIR):
                os.mkdir(d, DIR_MODE)
                os.chmod(d, DIR_MODE)
            make_reserve(path / RESERVE_FILE, reserve_bytes, open_file)
            s.reserve, s.reserve_bytes = path / RESERVE_FILE, reserve_bytes
            s.jsonl_fd = open_file(path / FRAMES_FILE, os.O_APPEND)
            s.write_manifest()
        except BaseException:
            if s.jsonl_fd is not None:
                os.close(s.jsonl_fd)
            shutil.rmtree(path, ignore_errors=True)
            raise
        return s

    @property
    def data_bytes(self) -> int:
        """What the session will hold once closed (the reserve goes then)."""
        return self.file_bytes + self.manifest_bytes + self.video_bytes

    @property
    def bytes(self) -> int:
        """What the session holds on disk now: what `dir_size` would find, FFmpeg's unflushed buffer aside."""
        return self.data_bytes + self.reserve_bytes

    def write_manifest(self) -> None:
        data = (json.dumps(self.manifest, indent=1) + "\n").encode()
        replace_private(self.path / MANIFEST_FILE, data)
        self.manifest_bytes = len(data)

    def write_frame(self, line: dict[str, Any], raw_png: bytes, mask_png: bytes | None,
                    check_room: Callable[[int], None]) -> int:
        """Record one frame: its raw PNG (``line["raw"]``), mask PNG (``line["mask"]``), then its JSONL line.

        check_room(nbytes) raises (ENOSPC) when the frame must not be written. On any error nothing
        of the frame stays on disk (no PNG without its line, no half line). Returns the bytes written.
        """
        data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
        n = len(raw_png) + len(data) + (len(mask_png) if mask_png is not None else 0)
        check_room(n)
        written: list[Path] = []
        try:
            write_private(self.path / line["raw"], raw_png, self._open_file)
            written.append(self.path / line["raw"])
            if line["mask"] is not None and mask_png is not None:
                write_private(self.path / line["mask"], mask_png, self._open_file)
                written.append(self.path / line["mask"])
            assert self.jsonl_fd is not None
            pos = os.lseek(self.jsonl_fd, 0, os.SEEK_END)
            try:
                write_all(self.jsonl_fd, data)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(self.jsonl_fd, pos)  # no half line: the JSONL stays parseable
                raise
        except BaseException:
            for p in written:
                with contextlib.suppress(OSError):
                    os.unlink(p)
            raise
        self.frames += 1
        self.pre_roll += bool(line["pre_roll"])
        self.file_bytes += n
        return n

    def video_frame(self, image: np.ndarray, full: bool) -> None:
        """Append ``image`` (BGR) to annotated.mp4, or full.mp4 when ``full``; the first frame sets the size
        (padded to even), later ones are resized to it. A video that cannot open is skipped with a warning."""
        key = "full" if full else "annotated"
        image = pad_even(image)
        h, w = image.shape[:2]
        if key not in self._videos:
            self._videos[key] = (self._open_video(self.path / VIDEO_FILES[key], (w, h)), (w, h))
        writer, size = self._videos[key]
        if writer is None:
            return
        if (w, h) != size:
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        writer.write(image)
        self.video_frames[key] += 1

    def _open_video(self, path: Path, size: tuple[int, int]) -> cv2.VideoWriter | None:
        # Create the file ourselves so it is 0600 whatever the umask; FFmpeg then truncates it.
        os.close(self._open_file(path))
        w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), video_fps(self.manifest["fps"]), size)
        if not w.isOpened():
            logger.warning("recorder: cannot open %s for mp4 writing; raw frames are still recorded", path)
            return None
        return w

    def stat_videos(self) -> None:
        """Measure the mp4 files as FFmpeg has flushed them so far (the quota counts them)."""
        n = 0
        for key, (writer, _) in self._videos.items():
            if writer is not None:
                with contextlib.suppress(OSError):
                    n += os.stat(self.path / VIDEO_FILES[key]).st_size
        self.video_bytes = n

    def close(self, reason: str, stopped_ns: int) -> None:
        """Finish the session: reserve deleted first, videos finalised and read back, JSONL synced, final
        manifest. A final manifest that does not fit leaves the first one (logged)."""
        # The reserve goes first: on a full disk its space is what lets the videos write their index
        # (and FFmpeg its last buffered output) and the manifest its final version.
        if self.reserve is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.reserve)
            self.reserve, self.reserve_bytes = None, 0
        finalised: dict[str, bool | None] = {"annotated": None, "full": None}
        counts = {"annotated": 0, "full": 0}
        for key, (writer, _) in self._videos.items():
            if writer is None:
                continue
            writer.release()
            fname = VIDEO_FILES[key]
            n = mp4_frame_count(self.path / fname)
            finalised[key] = n is not None
            counts[key] = n or 0
            if n is None:
                logger.error("recorder: %s of %s was not finalised (disk full?): players cannot open it; the "
                             "raw PNGs hold every recorded frame", fname, self.path.name)
        self.stat_videos()
        if self.jsonl_fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(self.jsonl_fd)
            os.close(self.jsonl_fd)
            self.jsonl_fd = None
        full_frame = bool(self.manifest["full_frame"])
        self.manifest.update({
            "stopped_utc": utc_iso(stopped_ns),
            "stop_reason": reason,
            "frames": self.frames,
            "frames_dropped": self.dropped,
            "annotated_frames": counts["annotated"],
            "full_frames": counts["full"] if full_frame else None,
            "videos_finalised": {"annotated": finalised["annotated"],
                                 "full": finalised["full"] if full_frame else None},
        })
        try:
            self.write_manifest()
        except OSError as e:
            logger.error("recorder: cannot write the final manifest of %s (%s); the start manifest is kept and "
                         "frames.jsonl holds the %d frames", self.path, e, self.frames)
