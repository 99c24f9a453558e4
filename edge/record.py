"""Recording for review: keep what the box saw, off the hot path, within a disk quota.

`Recorder` is a `edge.pipeline.PipelineObserver`. Its ``on_frame`` runs on the
processing thread and only *enqueues*: a small record holding references to
arrays the loop hands over for good (the private ROI copy, the model's mask,
the full frame when opted in) plus a copy of the 96x128 model input. Everything
else (pre-roll ring, trigger logic, PNG and mp4 encoding, file writes, quota and
retention) happens on the recorder's own thread. When that thread falls behind
(slow SD card, big ROI) the bounded queue is full and frames are dropped and
counted; the overlay never waits for the disk.

One folder per session under ``record.dir``, named by its UTC start time
(``20250314T101502.123Z``), mode 0700, every file 0600::

    manifest.json   config, calibration profile (path, sha256), model (hash, spec), software, start/stop
    frames.jsonl    one line per recorded frame: seq, capture time, p_nerve, decision, stage ms, model id
    raw/000000.png  the ROI crop as captured (lossless; 1-channel when the three channels are equal)
    masks/000000.png the network's probability mask at model size, round(p * 255)
    annotated.mp4   the ROI with the overlay (outline, verdict, STALE), drawn by the live overlay code
    full.mp4        only with ``record.full_frame``: the whole video-out frame as shown
    .reserve        while the session is open only: 1 MiB kept free for closing it on a full disk

The full video-out frame carries the machine's user interface, often with patient
details: it is written only when the config opts in. Blanking regions from the
calibration profile (full-frame pixels) are zeroed in every image written.

A frame is "recorded" once its JSONL line is written (after its PNGs, before its
video frames), so the JSONL, the PNGs and the manifest's ``frames`` agree even after
a full disk.

Full disk: FFmpeg's first failed write is final (every later write of that file,
the index at the end included, is dropped, and the mp4 never opens again), so the
writer stops a frame early: before each frame it checks that the frame and the
videos' buffered output still fit. The reserve file is deleted first when a session
closes, which leaves room for the videos' index and the final manifest even when
something else filled the disk. The manifest says whether each video was finalised
and how many frames it holds, as read back from the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import platform
import queue
import re
import shutil
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edge import __version__
from edge.config import RecordConfig
from edge.fileio import replace_atomic, write_all
from edge.overlay import Overlay, OverlayStatus
from edge.pipeline import FrameEvent, PipelineObserver
from edge.profile import apply_blank, blank_in_roi
from edge.spec import sha256_file
from edge.types import Decision, Roi

if TYPE_CHECKING:
    from edge.pipeline import Pipeline
    from edge.types import Stats

logger = logging.getLogger(__name__)

SESSION_FORMAT = "nerveseg-recording/1"
MANIFEST_FILE = "manifest.json"
FRAMES_FILE = "frames.jsonl"
RAW_DIR = "raw"
MASK_DIR = "masks"
ANNOTATED_FILE = "annotated.mp4"
FULL_FILE = "full.mp4"
NOTICE_KEY = "record"
TOGGLE_KEY = "r"  # window sink: this key toggles manual recording

DIR_MODE = 0o700
FILE_MODE = 0o600
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # fastest zlib level: the writer's time, not the disk, is scarce
_SESSION_RE = re.compile(r"^(\d{8}T\d{6}\.\d{3})Z(?:-\d+)?$")
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
RESERVE_FILE = ".reserve"
_RESERVE_BYTES = 1 << 20  # room to finalise two videos (index ~5 B a frame + FFmpeg's buffer) and the manifest
# FFmpeg buffers 256 KiB of mp4 output per file (measured with OpenCV 5.0) and writes it in one go; a frame
# must leave room for that flush plus a large key frame, or the flush fails and the mp4 is lost.
_VIDEO_HEADROOM_BYTES = 512 << 10
_FREE_CHECK_S = 1.0  # free-space check while no frame arrives
_RETENTION_EVERY_S = 60.0
_QUOTA_SHARE = 0.25  # a session is split at this share of record.max_gb: retention then deletes it in pieces
_CLOSE_TIMEOUT_S = 10.0  # on_stop waits this long for the queue to drain...
_ABORT_TIMEOUT_S = 5.0  # ...then this long for the writer to drop the rest and close the session


# -- files: private, checked, removable ----------------------------------------------------------


def make_private_dir(path: Path) -> None:
    """Create ``path`` (parents too) with mode 0700, whatever the umask; existing folders are left alone."""
    if path.is_dir():
        return
    make_private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, DIR_MODE)
        os.chmod(path, DIR_MODE)  # the umask may have removed bits, never added: make it exact


def _open_new(path: Path, extra_flags: int = 0) -> int:
    """Create a new file with mode 0600 (O_EXCL: never write through a planted file or link)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | extra_flags, FILE_MODE)


@contextlib.contextmanager
def _new_file(path: Path):
    """The descriptor of a new file ``path`` (0600), closed on leaving; on any error inside, the
    half-written file is removed too, so what exists on disk is complete."""
    fd = _open_new(path)
    try:
        yield fd
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


def write_private(path: Path, data: bytes) -> int:
    """Write ``data`` to a new file ``path`` with mode 0600; returns bytes written.

    Raises OSError as the kernel reports it (ENOSPC on a full disk). A file left
    half-written by an error is removed, so what exists on disk is complete.
    """
    with _new_file(path) as fd:
        write_all(fd, data)
    return len(data)


def _replace_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data`` (0600). On any error (ENOSPC on a full disk) the
    old file is left as it was: never truncate a good manifest for a new one that may not fit."""
    replace_atomic(path, data, FILE_MODE)


def make_reserve(path: Path, nbytes: int) -> None:
    """Create ``path`` (0600) holding ``nbytes`` of allocated disk space, so that deleting it frees that much.

    ``posix_fallocate`` where the file system supports it, else zeros written. Raises
    OSError (ENOSPC when it does not fit); nothing is left behind then.
    """
    with _new_file(path) as fd:
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


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in _DISK_FULL_ERRNOS


# -- sessions on disk: names, sizes, retention ---------------------------------------------------


def session_start(name: str) -> datetime | None:
    """UTC start time encoded in a session folder's name, or None when the name is not a session's."""
    m = _SESSION_RE.match(name)
    if not m:
        return None
    return datetime.strptime(m.group(1), "%Y%m%dT%H%M%S.%f").replace(tzinfo=timezone.utc)


def _session_name(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%S.") + f"{now.microsecond // 1000:03d}Z"


def list_sessions(root: Path) -> list[Path]:
    """Session folders under ``root``, oldest first (by the start time in the name).

    Only folders whose names parse as session names count: anything else in
    ``root`` is never touched by retention.
    """
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return []
    found = [
        (start, e.name)
        for e in entries
        if e.is_dir(follow_symlinks=False) and (start := session_start(e.name)) is not None
    ]
    return [root / name for _, name in sorted(found)]


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


# -- images ---------------------------------------------------------------------------------------


def encode_raw(image: np.ndarray) -> tuple[bytes, int]:
    """Lossless PNG of a captured image and its channel count as stored.

    A BGR image whose three channels are equal (B-mode video usually is) is stored
    as 1-channel gray: a third of the encoding time and size, and `load_raw`
    restores the identical BGR array.
    """
    img = image
    if img.ndim == 3 and img.shape[2] == 3 and np.array_equal(img[:, :, 0], img[:, :, 1]) and np.array_equal(
        img[:, :, 0], img[:, :, 2]
    ):
        img = np.ascontiguousarray(img[:, :, 0])
    ok, buf = cv2.imencode(".png", img, _PNG_PARAMS)
    if not ok:
        raise ValueError(f"PNG encoding failed for an image of shape {image.shape}")
    return buf.tobytes(), 1 if img.ndim == 2 else img.shape[2]


def load_raw(path: str | Path, channels: int = 3) -> np.ndarray:
    """A recorded raw frame as captured: HxWx3 uint8 BGR (or HxW when it was captured gray and
    ``channels`` is 1 for the source). Raises ValueError when the file is not a readable PNG."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"cannot read recorded frame {path}")
    if img.ndim == 2 and channels == 3:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)  # exact replication of the gray channel
    return img


def encode_mask(mask: np.ndarray) -> bytes:
    """PNG of a probability mask in [0, 1] as uint8 ``round(p * 255)``.

    ``>= 128`` in the file is exactly ``p >= 0.5`` before rounding (ties aside).
    """
    m = np.clip(np.rint(mask * 255.0), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".png", m, _PNG_PARAMS)
    if not ok:
        raise ValueError(f"PNG encoding failed for a mask of shape {mask.shape}")
    return buf.tobytes()


def load_mask(path: str | Path) -> np.ndarray:
    """A recorded mask as float32 probabilities in [0, 1] (model size)."""
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise ValueError(f"cannot read recorded mask {path}")
    return m.astype(np.float32) / 255.0


def render_annotated(
    overlay: Overlay,
    image: np.ndarray,
    nerve: bool,
    p_nerve: float,
    mask: np.ndarray | None,
    state: str,
    fps: float,
    latency_ms: float,
    untrained: bool,
    model_name: str,
    message: str | None = None,
) -> np.ndarray:
    """Draw the verdict on a ROI-sized image with the live overlay's code; returns the BGR image.

    ``overlay`` must have been made with ``roi=None`` (the image *is* the ROI). The
    outline pixels equal the live display's inside the ROI (the contour mapping is
    the same up to an integer shift); the status text is laid out for the ROI's size.
    Draws in place when ``image`` is BGR; a gray image is converted first.
    """
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    st = state if state in ("live", "stale") else "not_analysed"
    status = OverlayStatus(state=st, fps=fps, latency_ms=latency_ms, untrained=untrained, model_name=model_name,
                           message=message)
    return overlay.draw(image, Decision(nerve, p_nerve, mask if nerve else None), status)


def pad_even(image: np.ndarray) -> np.ndarray:
    """``image`` with one black row/column added where its height/width is odd.

    MPEG-4 encoders need even sizes and FFmpeg silently drops the last odd row or
    column: padding keeps every pixel of the ROI in the video.
    """
    h, w = image.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return image
    return cv2.copyMakeBorder(image, 0, h % 2, 0, w % 2, cv2.BORDER_CONSTANT, value=0)


def video_fps(fps: float) -> float:
    """A container rate MPEG-4 accepts: whole frames per second, 1-240 (its timebase
    denominator must stay below 65536, so 548.442 fps would fail to open)."""
    return float(min(max(round(fps), 1), 240))


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


def _utc_iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the recorder ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Item:
    """One frame on its way from the processing thread to the writer (arrays owned by the item)."""

    seq: int
    source_seq: int
    t_ns: int  # capture time, monotonic ns
    raw: np.ndarray | None  # ROI crop as captured (private copy from the pipeline); None = not analysed
    full: np.ndarray | None  # the whole annotated frame as shown (only with full_frame)
    model_input: np.ndarray | None  # copy of the normalised input
    mask: np.ndarray | None  # network output at model size (owned by the Result)
    shown_mask: np.ndarray | None  # smoothed mask the overlay drew (owned by the Decision)
    p_nerve: float | None
    nerve: bool
    state: str
    stages_ms: dict[str, float]
    latency_ms: float
    toggles: int  # manual toggle requests that arrived before this frame
    frame_size: tuple[int, int]  # (w, h) of the video-out frame
    drops: int = 0  # frames dropped (queue full) between the previous queued frame and this one
    retry: int = 0  # > 0: carries a manual retry after a full disk (its number)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.raw, self.full, self.model_input) if a is not None)


class _Session:
    """The open files of one recording session (writer thread only)."""

    def __init__(self, path: Path, started_ns: int, t0_ns: int):
        self.path = path
        self.started_ns = started_ns  # wall clock
        self.t0_ns = t0_ns  # capture time of its first frame (monotonic)
        self.frames = 0
        self.pre_roll = 0
        self.dropped = 0  # frames lost within this session's span (queue full, or left queued at stop)
        self.file_bytes = 0  # PNGs and JSONL, as written
        self.manifest_bytes = 0
        self.video_bytes = 0  # the mp4 files' sizes at their last stat (FFmpeg writes in 256 KiB steps)
        self.reserve: Path | None = None
        self.reserve_bytes = 0
        self.jsonl_fd: int | None = None
        self.annotated: cv2.VideoWriter | None = None
        self.annotated_size: tuple[int, int] | None = None
        self.annotated_frames = 0  # frames handed to the writer (the manifest has those the file holds)
        self.full: cv2.VideoWriter | None = None
        self.full_size: tuple[int, int] | None = None
        self.full_frames = 0
        self.manifest: dict[str, Any] = {}

    @property
    def data_bytes(self) -> int:
        """What the session will hold once closed (the reserve goes then)."""
        return self.file_bytes + self.manifest_bytes + self.video_bytes

    @property
    def bytes(self) -> int:
        """What the session holds on disk now: what `dir_size` would find, FFmpeg's unflushed buffer aside."""
        return self.data_bytes + self.reserve_bytes

    def stat_videos(self) -> None:
        n = 0
        for name, writer in ((ANNOTATED_FILE, self.annotated), (FULL_FILE, self.full)):
            if writer is not None:
                with contextlib.suppress(OSError):
                    n += os.stat(self.path / name).st_size
        self.video_bytes = n


class Recorder(PipelineObserver):
    """Records sessions of the live loop for review (see the module doc for the layout).

    cfg: the ``record`` section (mode, dir, pre/post roll, quota, retention, full_frame).
    blank: regions to zero in everything written, in full video-out frame pixels
        (from the calibration profile's ``blank_rois``).
    profile_path: the calibration profile in use, recorded in the manifest with its sha256.

    Modes: ``always`` records from the first frame; ``on-detection`` starts when the
    decision becomes "nerve" and stops ``post_roll_s`` after it is "no nerve" again;
    ``manual`` is toggled by `request_toggle` (SIGUSR1 in `nerveseg run`) or the window
    sink's ``r`` key. A start includes the pre-roll: the frames captured within
    ``pre_roll_s`` before the triggering frame (never frames already written). Frames
    the loop could not analyse are not written; in ``always`` and ``manual`` they do
    not end the session either.

    The loop must know where the ultrasound image is (``pipeline.roi``) unless
    ``full_frame`` opts in: without one the "ROI" would be the machine's whole
    interface, and the recorder refuses to start (state ``error``).

    Thread use: ``on_*`` and `request_toggle` may be called from the processing thread
    (and a signal handler); `health` from any thread.
    """

    name = "recorder"

    def __init__(self, cfg: RecordConfig, blank: Sequence[Roi] = (), profile_path: str | Path | None = None):
        if cfg.mode == "off":
            raise ValueError("Recorder needs record.mode always, on-detection or manual, not off")
        self.cfg = cfg
        self.root = Path(cfg.dir).expanduser()
        self.blank = tuple(blank)
        self.profile_path = Path(profile_path) if profile_path else None
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=cfg.queue_frames)
        self._stop = threading.Event()
        self._abort = threading.Event()  # stop waited long enough: drop what is queued and close
        self._thread: threading.Thread | None = None
        # hot-path side (processing thread / signal handler)
        self._toggle_requests = 0  # incremented by request_toggle (a plain int: safe in a signal handler)
        self._toggles_seen = 0
        self._sink: object | None = None
        self._sink_toggles_seen = 0
        self._carry_toggles = 0
        self._drops_stamped = 0  # frames_dropped when the last item was queued
        # Manual retry after a full disk: sent by the processing thread, marked done by the writer. While
        # one is in flight, frames are still copied and queued, so the session starts with the toggle's frame.
        self._retries_sent = 0
        self._retries_done = 0
        self._offer_ns_total = 0
        self._offer_ns_max = 0
        self._offers = 0
        self._notice_shown: str | None = None
        # shared counters (written by one thread each, read by health())
        self.frames_dropped = 0  # queue full: the writer was behind (processing thread)
        self.frames_dropped_at_stop = 0  # still queued when the stop timeout ran out (writer thread)
        self.frames_written = 0
        self.bytes_written = 0
        self.sessions_started = 0
        self.state = "off"  # off | idle | recording | stopped_disk_full | error
        self.last_error: str | None = None
        self._notice: str | None = None  # what the writer wants on screen
        # writer side
        self._session: _Session | None = None
        self._ring: deque[_Item] = deque()
        self._ring_bytes = 0
        self._manual_on = False
        self._off_since_ns: int | None = None
        self._last_t_ns: int | None = None
        self._fps_est: float | None = None
        self._sizes: dict[str, int] = {}
        self._other_bytes = 0
        self._next_free_check = 0.0
        self._next_retention = 0.0
        self._ignored_toggle_logged = False
        self._ring_truncated_logged = False
        self._pre_ns = int(cfg.pre_roll_s * 1e9)
        self._post_ns = int(cfg.post_roll_s * 1e9)
        self._max_session_ns = int(cfg.max_session_s * 1e9)
        self._max_bytes = cfg.max_gb * 1e9
        self._split_bytes = self._max_bytes * _QUOTA_SHARE
        self._max_age_s = cfg.max_days * 86400.0
        self._buffer_bytes = int(cfg.buffer_mb * 1e6)
        self._min_free = cfg.min_free_mb * 1e6
        self._profile_sha256: str | None = None
        # filled in on_start
        self._roi: Roi | None = None
        self._blank_roi: list[tuple[int, int, int, int]] = []
        self._blank_full: list[tuple[int, int, int, int]] = [(b.x, b.y, b.x + b.w, b.y + b.h) for b in self.blank]
        self._wall_offset_ns = 0
        self._info: dict[str, Any] = {}
        self._overlay: Overlay | None = None
        self._nominal_fps: float | None = None

    # -- PipelineObserver ---------------------------------------------------------------------

    @property
    def needs_raw(self) -> bool:  # type: ignore[override]
        # No ROI copy per frame while recording is stopped (full disk, error) or not running, except
        # for the frame that carries a manual toggle: a retry after a full disk starts with it.
        if self.state in ("idle", "recording"):
            return True
        return self.state == "stopped_disk_full" and (self._toggle_pending() or self._retry_in_flight())

    def request_toggle(self) -> None:
        """Toggle manual recording (safe to call from a signal handler: only bumps a counter)."""
        self._toggle_requests += 1

    def on_start(self, pipeline: Pipeline) -> None:
        self._roi = pipeline.roi
        if self._roi is None and not self.cfg.full_frame:
            # The "ROI" would be the whole video-out frame: the machine's interface with patient details.
            self.last_error = ("no ROI: the loop would record the whole video-out frame; set roi or profile "
                               "(nerveseg calibrate), or record.full_frame: true to record whole frames")
            self.state = "error"
            self._notice = "RECORDING ERROR"
            logger.error("recording off: %s", self.last_error)
            return
        self._blank_roi = blank_in_roi(self.blank, self._roi)
        self._wall_offset_ns = time.time_ns() - time.monotonic_ns()
        self._sink = pipeline.sink
        self._sink_toggles_seen = int(getattr(pipeline.sink, "record_toggle_requests", 0))
        self._nominal_fps = getattr(pipeline.source, "nominal_fps", None)
        runner = pipeline.runner
        spec = runner.spec
        sha = getattr(runner, "sha256", None) or sha256_file(runner.model_path)
        self._info = {
            "config": pipeline.cfg.model_dump(mode="json"),
            "model": {
                "id": f"{spec.name}@{sha[:12]}",
                "name": spec.name,
                "path": str(runner.model_path),
                "sha256": sha,
                "spec_tflite_sha256": spec.tflite_sha256,
                "quantization": spec.quantization,
                "untrained": spec.untrained,
                "preprocess": spec.preprocess.model_dump(mode="json"),
                "thresholds": {
                    "presence_enter": pipeline.tracker.enter,
                    "presence_exit": pipeline.tracker.exit,
                    "mask": pipeline.overlay.mask_threshold,
                },
                "interpreter": runner.backend,
                "threads": runner.threads,
            },
            "source": pipeline.source.describe(),
            # (horizontal, vertical) mirroring of the network input from the site profile: the recorded
            # raw frames and masks are in the machine's orientation, input_crc32 is of the mirrored input.
            "flips": [bool(f) for f in getattr(pipeline, "flips", (False, False))],
        }
        # The writer's own overlay: same settings as the live one, drawing on ROI-sized images.
        self._overlay = Overlay(pipeline.cfg.overlay, None, pipeline.overlay.mask_threshold)
        self.state = "idle"
        self._thread = threading.Thread(target=self._run, name="nerveseg-recorder", daemon=True)
        self._thread.start()

    def on_frame(self, pipeline: Pipeline, event: FrameEvent) -> None:
        t0 = time.perf_counter_ns()
        self._show_notice(pipeline)
        if self._thread is None:
            return  # never started (no ROI)
        toggles = self._take_toggles(pipeline)
        retry = 0
        if self.state not in ("idle", "recording"):
            if toggles and self.cfg.mode == "manual" and self.state == "stopped_disk_full":
                self._retries_sent += 1
                retry = self._retries_sent
            elif not toggles and not self._retry_in_flight():
                return  # stopped: only a manual toggle (a retry) still has to reach the writer
        d = event.decision
        r = event.result
        item = _Item(
            seq=event.seq,
            source_seq=event.frame.seq,
            t_ns=event.frame.t_capture_ns,
            raw=event.roi_raw,
            # The loop hands the frame over for good after showing it (sources never reuse an array
            # they returned), so a reference is enough: no 1080p copy on the hot path.
            full=event.frame.image if self.cfg.full_frame and event.roi_raw is not None else None,
            model_input=event.model_input.copy() if event.model_input is not None else None,
            mask=r.mask if r is not None else None,
            shown_mask=d.mask if d is not None else None,
            p_nerve=r.p_nerve if r is not None else None,
            nerve=bool(d.nerve) if d is not None else False,
            state=event.state,
            stages_ms=event.stages_ms,
            latency_ms=event.latency_ms,
            toggles=toggles,
            frame_size=(event.frame.image.shape[1], event.frame.image.shape[0]),
            # Stamped here, not counted on the writer: the writer runs up to a queue behind, and a
            # drop belongs to the session that holds the frames around it.
            drops=self.frames_dropped - self._drops_stamped,
            retry=retry,
        )
        try:
            self._queue.put_nowait(item)
            self._drops_stamped += item.drops
        except queue.Full:
            self.frames_dropped += 1
            self._carry_toggles += toggles  # a toggle must not be lost with the frame
        dt = time.perf_counter_ns() - t0
        self._offers += 1
        self._offer_ns_total += dt
        self._offer_ns_max = max(self._offer_ns_max, dt)

    def on_idle(self, pipeline: Pipeline, no_signal: bool) -> None:
        self._show_notice(pipeline)

    def on_stop(self, pipeline: Pipeline, stats: Stats | None) -> None:
        self._stop.set()
        th = self._thread
        if th is not None:
            th.join(timeout=_CLOSE_TIMEOUT_S)
            if th.is_alive():
                # The writer is a daemon thread: left alone it would die with the process, mid-session,
                # leaving no final manifest and unreadable videos. Drop the backlog and close instead.
                logger.warning("recorder: writer still busy after %.0f s (slow disk?); dropping the %d frames "
                               "still queued and closing the session", _CLOSE_TIMEOUT_S, self._queue.qsize())
                self._abort.set()
                th.join(timeout=_ABORT_TIMEOUT_S)
                if th.is_alive():
                    s = self._session  # read once: the writer may close it meanwhile
                    logger.error("recorder: writer did not finish within %.0f s more; the session %s may lack "
                                 "its final manifest and videos (its PNGs and frames.jsonl are complete)",
                                 _ABORT_TIMEOUT_S, s.path if s is not None else "-")
        pipeline.notices.pop(NOTICE_KEY, None)
        self._notice_shown = None

    def health(self) -> dict[str, Any]:
        """JSON-able status for the health file: state, session, counts, last error, hot-path cost."""
        s = self._session
        return {
            "name": self.name,
            "mode": self.cfg.mode,
            "state": self.state,
            "dir": str(self.root),
            "session": str(s.path) if s is not None else None,
            "session_frames": s.frames if s is not None else 0,
            "sessions_started": self.sessions_started,
            "frames_written": self.frames_written,
            "frames_dropped": self.frames_dropped + self.frames_dropped_at_stop,
            "bytes_written": self.bytes_written,
            "queue": self._queue.qsize(),
            "offer_ms_mean": round(self._offer_ns_total / self._offers / 1e6, 4) if self._offers else None,
            "offer_ms_max": round(self._offer_ns_max / 1e6, 3) if self._offers else None,
            "last_error": self.last_error,
        }

    # -- hot-path helpers ----------------------------------------------------------------------

    def _retry_in_flight(self) -> bool:
        return self._retries_sent != self._retries_done

    def _toggle_pending(self) -> bool:
        """A toggle request not yet taken (read only: safe before the frame is processed)."""
        if self._carry_toggles or self._toggle_requests != self._toggles_seen:
            return True
        return int(getattr(self._sink, "record_toggle_requests", 0)) != self._sink_toggles_seen

    def _take_toggles(self, pipeline: Pipeline) -> int:
        n = self._carry_toggles
        self._carry_toggles = 0
        req = self._toggle_requests
        if req != self._toggles_seen:
            n += req - self._toggles_seen
            self._toggles_seen = req
        sink_req = int(getattr(pipeline.sink, "record_toggle_requests", 0))
        if sink_req != self._sink_toggles_seen:
            n += sink_req - self._sink_toggles_seen
            self._sink_toggles_seen = sink_req
        return n

    def _show_notice(self, pipeline: Pipeline) -> None:
        # notices is read by the processing thread: only that thread changes it (here).
        text = self._notice
        if text != self._notice_shown:
            if text:
                pipeline.notices[NOTICE_KEY] = text
            else:
                pipeline.notices.pop(NOTICE_KEY, None)
            self._notice_shown = text

    # -- writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            make_private_dir(self.root)
            if self.profile_path is not None:
                try:
                    self._profile_sha256 = sha256_file(self.profile_path)
                except OSError as e:
                    logger.warning("recorder: cannot hash calibration profile %s: %s", self.profile_path, e)
            for old in list_sessions(self.root):  # reserves left by a crash or power cut are not data
                with contextlib.suppress(OSError):
                    os.unlink(old / RESERVE_FILE)
            self._retention()
            logger.info("recorder: mode %s into %s (pre-roll %.1f s, post-roll %.1f s, quota %.3g GB, %g days)",
                        self.cfg.mode, self.root, self.cfg.pre_roll_s, self.cfg.post_roll_s, self.cfg.max_gb,
                        self.cfg.max_days)
        except Exception as e:  # noqa: BLE001 - recording fails, the live overlay must not
            self._fail(e)
        reason = "loop ended"
        while True:
            if self._abort.is_set():
                n = self._discard_queue()
                reason = f"loop ended; {n} queued frames dropped (writer too slow at stop)"
                break
            try:
                item = self._queue.get(timeout=0.25)
            except queue.Empty:
                if self._stop.is_set():
                    break
                self._periodic()
                continue
            try:
                self._handle(item)
                self._periodic()
            except Exception as e:  # noqa: BLE001
                if is_disk_full(e):
                    self._disk_full(e)
                else:
                    self._fail(e)
        if self._session is not None:
            # Frames dropped after the last queued one happened while this session was open. (The
            # processing thread no longer offers frames: on_stop set the stop.)
            self._session.dropped += self.frames_dropped - self._drops_stamped
        try:
            self._close_session(reason)
        except Exception as e:  # noqa: BLE001
            logger.error("recorder: closing the session failed: %s", e)
        if self.state in ("idle", "recording"):
            self.state = "off"

    def _discard_queue(self) -> int:
        """Drop every queued frame (stop ran out of time); they count as dropped, in the open session."""
        n = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            n += 1
            if self._session is not None:
                self._session.dropped += 1 + item.drops
        self.frames_dropped_at_stop += n
        return n

    def _want(self, item: _Item) -> bool:
        """Whether the trigger is on at this frame (whether or not the frame itself can be written)."""
        mode = self.cfg.mode
        if mode == "always":
            return True
        if mode == "on-detection":
            return item.nerve  # a frame that was not analysed has no detection
        return self._manual_on

    def _handle(self, item: _Item) -> None:
        for _ in range(item.toggles):
            self._toggle()
        if item.retry:
            self._retries_done = item.retry
        self._track_fps(item.t_ns)
        if self.state not in ("idle", "recording"):
            return  # stopped (disk full / error): the item is discarded
        want = self._want(item)
        s = self._session
        if s is not None:
            if want:
                self._off_since_ns = None
            elif self._off_since_ns is None:
                self._off_since_ns = item.t_ns
            if self._off_since_ns is not None and item.t_ns - self._off_since_ns >= self._post_ns:
                self._close_session("trigger ended (post-roll done)")
            else:
                if item.raw is None:
                    s.dropped += item.drops
                    return  # not analysed: nothing to write, the session goes on
                split = None
                if item.t_ns - s.t0_ns >= self._max_session_ns:
                    split = "record.max_session_s reached"
                elif s.data_bytes >= self._split_bytes and s.frames > 0:
                    split = f"session size reached {_QUOTA_SHARE:g} of record.max_gb"
                if split is None:
                    s.dropped += item.drops  # the gap before this frame is inside the session
                else:
                    off_since = self._off_since_ns  # the continued session keeps the post-roll deadline
                    self._close_session(split)
                    self._open_session(item, reason="continued", first_drops=item.drops)
                    self._off_since_ns = off_since
                    if self._session is None:
                        return
                self._write(item, pre_roll=False)
                return
        if want and item.raw is not None:
            self._open_session(item, reason={"always": "always", "on-detection": "nerve detected"}.get(
                self.cfg.mode, "manual"))
            if self._session is not None:
                self._write(item, pre_roll=False)
        else:
            self._ring_add(item)

    def _toggle(self) -> None:
        if self.cfg.mode != "manual":
            if not self._ignored_toggle_logged:
                logger.info("recorder: toggle ignored: record.mode is %s, not manual", self.cfg.mode)
                self._ignored_toggle_logged = True
            return
        self._manual_on = not self._manual_on
        logger.info("recorder: manual recording %s", "on" if self._manual_on else "off (after post-roll)")
        if self._manual_on and self.state == "stopped_disk_full":
            logger.info("recorder: retrying after the full disk")
            self.state = "idle"
            self._set_notice(None)

    def _track_fps(self, t_ns: int) -> None:
        if self._last_t_ns is not None and t_ns > self._last_t_ns:
            inst = 1e9 / (t_ns - self._last_t_ns)
            self._fps_est = inst if self._fps_est is None else 0.9 * self._fps_est + 0.1 * inst
        self._last_t_ns = t_ns

    def _ring_add(self, item: _Item) -> None:
        if item.raw is None or self._pre_ns <= 0:
            return
        ring = self._ring
        while ring and ring[0].t_ns < item.t_ns - self._pre_ns:
            self._ring_bytes -= ring.popleft().nbytes
        ring.append(item)
        self._ring_bytes += item.nbytes
        while len(ring) > 1 and self._ring_bytes > self._buffer_bytes:
            self._ring_bytes -= ring.popleft().nbytes
            if not self._ring_truncated_logged:
                logger.warning("recorder: pre-roll shortened to %d frames to stay within record.buffer_mb = %g",
                               len(ring), self.cfg.buffer_mb)
                self._ring_truncated_logged = True

    def _set_notice(self, text: str | None) -> None:
        self._notice = text

    # -- sessions -------------------------------------------------------------------------------

    def _free_bytes(self) -> float:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def _retention(self) -> None:
        s = self._session
        keep = [s.path] if s is not None else []
        # The open session is measured on disk (PNGs, JSONL, the mp4s as flushed, the reserve): nothing extra.
        apply_retention(self.root, self._max_bytes, self._max_age_s, keep=keep, sizes=self._sizes)
        self._other_bytes = sum(v for k, v in self._sizes.items() if s is None or k != s.path.name)
        self._next_retention = time.monotonic() + _RETENTION_EVERY_S

    def _periodic(self) -> None:
        now = time.monotonic()
        if now >= self._next_retention and self.state in ("idle", "recording"):
            self._retention()
        s = self._session
        if s is not None and now >= self._next_free_check:
            self._next_free_check = now + _FREE_CHECK_S
            if self._free_bytes() < self._min_free:
                self._disk_full(OSError(errno.ENOSPC, f"less than record.min_free_mb = {self.cfg.min_free_mb:g} "
                                                      "MB free"))

    def _open_session(self, trigger: _Item, reason: str, first_drops: int = 0) -> None:
        """Open a session starting with the pre-roll and ``trigger`` (written by the caller).

        first_drops: frames dropped just before the first frame that still belong to
        this session (a continued session: the recording did not pause).
        """
        self._retention()
        if self._free_bytes() < self._min_free:
            raise OSError(errno.ENOSPC, f"less than record.min_free_mb = {self.cfg.min_free_mb:g} MB free")
        started_ns = time.time_ns()
        name = _session_name(datetime.fromtimestamp(started_ns / 1e9, timezone.utc))
        path = self.root / name
        k = 1
        while path.exists():
            path = self.root / f"{name}-{k}"
            k += 1
        pre = [it for it in self._ring if it.t_ns >= trigger.t_ns - self._pre_ns]
        self._ring.clear()
        self._ring_bytes = 0
        t0 = pre[0].t_ns if pre else trigger.t_ns
        make_private_dir(path)
        s = _Session(path, started_ns, t0)
        try:
            os.mkdir(path / RAW_DIR, DIR_MODE)
            os.mkdir(path / MASK_DIR, DIR_MODE)
            for d in (path / RAW_DIR, path / MASK_DIR):
                os.chmod(d, DIR_MODE)
            make_reserve(path / RESERVE_FILE, _RESERVE_BYTES)
            s.reserve, s.reserve_bytes = path / RESERVE_FILE, _RESERVE_BYTES
            s.jsonl_fd = _open_new(path / FRAMES_FILE, os.O_APPEND)
            s.manifest = self._start_manifest(path, started_ns, trigger, reason, len(pre))
            self._write_manifest(s)
        except BaseException:
            # A session that could not even start (full disk) leaves no folder behind.
            if s.jsonl_fd is not None:
                os.close(s.jsonl_fd)
            shutil.rmtree(path, ignore_errors=True)
            raise
        # Drops between frames of the session are its own; those before its first frame are not
        # (unless it continues a split session).
        s.dropped = first_drops + sum(it.drops for it in [*pre, trigger][1:])
        self._session = s
        self.sessions_started += 1
        self.state = "recording"
        self._off_since_ns = None
        self._next_free_check = time.monotonic() + _FREE_CHECK_S
        self._set_notice("REC")
        logger.info("recording started: %s (%s; %d pre-roll frames)", path, reason, len(pre))
        for k, it in enumerate(pre):
            if self._abort.is_set():
                s.dropped += len(pre) - k  # the rest of the pre-roll is never written
                self.frames_dropped_at_stop += len(pre) - k
                break
            self._write(it, pre_roll=True)
            s.pre_roll += 1
            if self._session is not s:
                return  # stopped (quota) while writing the pre-roll

    def _start_manifest(self, path: Path, started_ns: int, trigger: _Item, reason: str, pre_roll: int) -> dict:
        return {
            "format": SESSION_FORMAT,
            "session": path.name,
            "started_utc": _utc_iso(started_ns),
            "stopped_utc": None,
            "stop_reason": None,
            "trigger": {"mode": self.cfg.mode, "reason": reason, "seq": trigger.seq, "pre_roll_frames": pre_roll},
            "frames": 0,
            "frames_dropped": 0,
            "fps": round(self._fps_est or self._nominal_fps or 30.0, 3),
            "roi": None if self._roi is None else {"x": self._roi.x, "y": self._roi.y, "w": self._roi.w,
                                                   "h": self._roi.h},
            "frame_size": None,
            "blank": [[b.x, b.y, b.w, b.h] for b in self.blank],
            "full_frame": self.cfg.full_frame,
            "files": {
                "frames": FRAMES_FILE,
                "raw": f"{RAW_DIR}/NNNNNN.png",
                "masks": f"{MASK_DIR}/NNNNNN.png",
                "annotated": ANNOTATED_FILE,
                "full": FULL_FILE if self.cfg.full_frame else None,
            },
            # frames each video holds as read back from its index, and whether it was finalised (null
            # while the session is open, or for a video never begun)
            "annotated_frames": 0,
            "full_frames": 0 if self.cfg.full_frame else None,
            "videos_finalised": None,
            "profile": None if self.profile_path is None else {"path": str(self.profile_path),
                                                               "sha256": self._profile_sha256},
            **self._info,
            "software": {
                "nerveseg": __version__,
                "python": platform.python_version(),
                "numpy": np.__version__,
                "opencv": cv2.__version__,
            },
        }

    def _write_manifest(self, s: _Session) -> None:
        data = (json.dumps(s.manifest, indent=1) + "\n").encode()
        _replace_private(s.path / MANIFEST_FILE, data)
        s.manifest_bytes = len(data)

    def _close_session(self, reason: str) -> None:
        s = self._session
        if s is None:
            return
        self._session = None
        # The reserve goes first: on a full disk its space is what lets the videos write their index
        # (and FFmpeg its last buffered output) and the manifest its final version.
        if s.reserve is not None:
            with contextlib.suppress(OSError):
                os.unlink(s.reserve)
            s.reserve, s.reserve_bytes = None, 0
        finalised: dict[str, bool | None] = {"annotated": None, "full": None}
        counts: dict[str, int] = {"annotated": 0, "full": 0}
        for key, writer, fname in (("annotated", s.annotated, ANNOTATED_FILE), ("full", s.full, FULL_FILE)):
            if writer is None:
                continue
            writer.release()
            n = mp4_frame_count(s.path / fname)
            finalised[key] = n is not None
            counts[key] = n or 0
            if n is None:
                logger.error("recorder: %s of %s was not finalised (disk full?): players cannot open it; the "
                             "raw PNGs hold every recorded frame", fname, s.path.name)
        s.stat_videos()
        if s.jsonl_fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(s.jsonl_fd)
            os.close(s.jsonl_fd)
        s.manifest.update({
            "stopped_utc": _utc_iso(time.time_ns()),
            "stop_reason": reason,
            "frames": s.frames,
            "frames_dropped": s.dropped,
            "annotated_frames": counts["annotated"],
            "full_frames": counts["full"] if self.cfg.full_frame else None,
            "videos_finalised": {"annotated": finalised["annotated"],
                                 "full": finalised["full"] if self.cfg.full_frame else None},
        })
        try:
            self._write_manifest(s)
        except OSError as e:
            logger.error("recorder: cannot write the final manifest of %s (%s); the start manifest is kept and "
                         "frames.jsonl holds the %d frames", s.path, e, s.frames)
        # Tracked, not scanned: a scan of a long session on a slow card would stall the writer.
        self._sizes[s.path.name] = s.bytes
        self._other_bytes += s.bytes
        if self.state == "recording":
            self.state = "idle"
            self._set_notice(None)
        self._off_since_ns = None
        logger.info("recording stopped: %s (%s): %d frames (%d pre-roll), %d dropped", s.path, reason, s.frames,
                    s.pre_roll, s.dropped)

    def _disk_full(self, e: BaseException) -> None:
        self.last_error = f"disk full: {e}"
        self.state = "stopped_disk_full"
        self._set_notice("RECORDING STOPPED: DISK FULL")
        logger.error("recording stopped: disk full under %s (%s); the live overlay runs on. Free space or lower "
                     "record.max_gb, then restart (manual mode: toggle to retry)", self.root, e)
        self._ring.clear()
        self._ring_bytes = 0
        self._manual_on = False  # manual mode: the next toggle is a retry, not a "stop"
        with contextlib.suppress(Exception):
            self._close_session("disk full")
        self.state = "stopped_disk_full"

    def _fail(self, e: BaseException) -> None:
        self.last_error = f"{type(e).__name__}: {e}"
        self.state = "error"
        self._set_notice("RECORDING ERROR")
        logger.error("recording stopped: %s; the live overlay runs on", self.last_error,
                     exc_info=not isinstance(e, OSError))
        self._ring.clear()
        self._ring_bytes = 0
        with contextlib.suppress(Exception):
            self._close_session(f"error: {e}")
        self.state = "error"

    # -- one frame ------------------------------------------------------------------------------

    def _open_video(self, path: Path, size: tuple[int, int]) -> cv2.VideoWriter | None:
        # Create the file ourselves so it is 0600 whatever the umask; FFmpeg then truncates it.
        os.close(_open_new(path))
        fps = self._session.manifest["fps"] if self._session is not None else 30.0
        w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), video_fps(fps), size)
        if not w.isOpened():
            logger.warning("recorder: cannot open %s for mp4 writing; raw frames are still recorded", path)
            return None
        return w

    def _check_room(self, s: _Session, nbytes: int, full: bool) -> None:
        """Raise ENOSPC unless this frame's ``nbytes`` and room for the videos' next writes fit on the disk.

        FFmpeg's first failed write loses the whole mp4 (it drops every later write, its
        index too), so recording stops while the videos can still be finalised.
        """
        need = nbytes + _VIDEO_HEADROOM_BYTES * (2 if full else 1)
        free = self._free_bytes()
        if free < self._min_free:
            raise OSError(errno.ENOSPC, f"less than record.min_free_mb = {self.cfg.min_free_mb:g} MB free")
        if free < need:
            raise OSError(errno.ENOSPC, f"No space left on device for the next frame: {free / 1e3:.0f} kB free, "
                                        f"{need / 1e3:.0f} kB needed with the videos' buffers")

    def _write(self, item: _Item, pre_roll: bool) -> None:
        s = self._session
        assert s is not None and item.raw is not None and self._overlay is not None
        i = s.frames
        raw_rel = f"{RAW_DIR}/{i:06d}.png"
        mask_rel = f"{MASK_DIR}/{i:06d}.png" if item.mask is not None else None
        # Other observers got the same arrays in their FrameEvent: blank and draw on our own copies.
        raw = item.raw.copy()
        apply_blank(raw, self._blank_roi)
        png, channels = encode_raw(raw)
        mask_png = encode_mask(item.mask) if item.mask is not None else None
        crc = zlib.crc32(item.model_input) if item.model_input is not None else None
        line = {
            "i": i,
            "seq": item.seq,
            "source_seq": item.source_seq,
            "t_capture_ns": item.t_ns,
            "t_capture": _utc_iso(item.t_ns + self._wall_offset_ns),
            "p_nerve": None if item.p_nerve is None else round(item.p_nerve, 6),
            "decision": "nerve" if item.nerve else "no_nerve",
            "state": item.state,
            "latency_ms": round(item.latency_ms, 3),
            "stages_ms": {k: round(v, 3) for k, v in item.stages_ms.items()},
            "model": self._info["model"]["id"],
            "raw": raw_rel,
            "raw_channels": channels,
            "mask": mask_rel,
            "input_crc32": crc,
            "pre_roll": pre_roll,
        }
        data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
        n = len(png) + len(data) + (len(mask_png) if mask_png is not None else 0)
        self._check_room(s, n, full=item.full is not None)
        written: list[Path] = []
        try:
            write_private(s.path / raw_rel, png)
            written.append(s.path / raw_rel)
            if mask_rel is not None and mask_png is not None:
                write_private(s.path / mask_rel, mask_png)
                written.append(s.path / mask_rel)
            assert s.jsonl_fd is not None
            pos = os.lseek(s.jsonl_fd, 0, os.SEEK_END)
            try:
                write_all(s.jsonl_fd, data)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(s.jsonl_fd, pos)  # no half line: the JSONL stays parseable
                raise
        except BaseException:
            for p in written:
                with contextlib.suppress(OSError):
                    os.unlink(p)
            raise
        # Recorded. The videos come after the JSONL line: a frame in a video is always a recorded frame.
        s.frames += 1
        s.file_bytes += n
        if s.manifest["frame_size"] is None:
            s.manifest["frame_size"] = list(item.frame_size)
        self.frames_written += 1
        self.bytes_written += n
        # The video frame is drawn on the copy once its PNG is encoded.
        annotated = render_annotated(
            self._overlay, raw, item.nerve, item.p_nerve or 0.0, item.shown_mask, item.state,
            self._fps_est or 0.0, item.latency_ms, self._info["model"]["untrained"], self._info["model"]["name"],
        )
        self._video_frame(s, annotated, full=False)
        if item.full is not None:
            full = item.full.copy()
            apply_blank(full, self._blank_full)
            self._video_frame(s, full, full=True)
        s.stat_videos()  # two stat calls: the quota counts the mp4s as FFmpeg flushes them
        if self._other_bytes + s.bytes > self._max_bytes:
            self._over_quota()

    def _video_frame(self, s: _Session, image: np.ndarray, full: bool) -> None:
        image = pad_even(image)
        h, w = image.shape[:2]
        writer, size = (s.full, s.full_size) if full else (s.annotated, s.annotated_size)
        if size is None:
            size = (w, h)
            writer = self._open_video(s.path / (FULL_FILE if full else ANNOTATED_FILE), size)
            if full:
                s.full, s.full_size = writer, size
            else:
                s.annotated, s.annotated_size = writer, size
        if writer is None:
            return
        if (w, h) != size:
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        writer.write(image)
        if full:
            s.full_frames += 1
        else:
            s.annotated_frames += 1

    def _over_quota(self) -> None:
        """Over record.max_gb: delete the oldest finished sessions.

        The open session never reaches the quota alone (it is split at a share of it,
        see `_handle`), so deleting finished sessions is enough unless they cannot be
        deleted; then recording stops rather than overrun the quota.
        """
        s = self._session
        assert s is not None
        self._retention()
        total = self._other_bytes + s.bytes
        if total <= self._max_bytes:
            return
        if s.bytes > self._max_bytes:
            why = (f"record.max_gb = {self.cfg.max_gb:g} is too small for one session (its "
                   f"{_RESERVE_BYTES / 2**20:g} MiB reserve and a frame or two)")
        else:
            why = (f"recordings hold {total / 1e9:.3g} GB, over record.max_gb = {self.cfg.max_gb:g}, and no older "
                   "session could be deleted (see the retention warnings)")
        self._fail(OSError(errno.EDQUOT, why))
