"""The on-disk format of a recording session: what `edge.review` reads and the recorder writes.

One folder per session under ``record.dir``, named by its UTC start time
(``20250314T101502.123Z``, ``-1``, ``-2`` appended when two start in the same
millisecond), mode 0700, every file 0600::

    manifest.json   config, calibration profile (path, sha256), model (hash, spec), software, start/stop,
                    serial (the write order in the recordings folder, whatever the clock said)
    frames.jsonl    one line per recorded frame: seq, capture time, p_nerve, p_vote, decision, stage ms, model id
    raw/000000.png  the ROI crop as captured (lossless; 1-channel when the three channels are equal)
    masks/000000.png the network's probability mask at model size, round(p * 255)
    annotated.mp4   the ROI with the overlay (outline, verdict, STALE), drawn by the live overlay code
                    (a ROI under 160 px on its short side enlarged by a whole factor, so the verdict fits)
    full.mp4        only with ``record.full_frame``: the whole video-out frame as shown
    .reserve        while the session is open only: space kept free for closing it on a full disk

A frame is "recorded" once its JSONL line is written (after its PNGs, before its
video frames), so the JSONL, the PNGs and the manifest's ``frames`` agree even after
a full disk. The manifest says whether each video was finalised and how many frames
it holds, as read back from the file.

This module holds the names, the image encodings, the manifest and frame-line
fields, and the private-file helpers (0700 folders, 0600 files, never written
through a planted file). Writing one session is `edge.recording.files`.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import re
import struct
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edge import __version__
from edge.fileio import replace_atomic, write_all
from edge.overlay import Overlay, OverlayStatus
from edge.types import Decision, Roi

if TYPE_CHECKING:
    from edge.pipeline import Pipeline

SESSION_FORMAT = "nerveseg-recording/1"
MANIFEST_FILE = "manifest.json"
FRAMES_FILE = "frames.jsonl"
RAW_DIR = "raw"
MASK_DIR = "masks"
ANNOTATED_FILE = "annotated.mp4"
FULL_FILE = "full.mp4"
RESERVE_FILE = ".reserve"

DIR_MODE = 0o700
FILE_MODE = 0o600
# A ROI smaller than this (short side, px) is enlarged before the verdict is drawn on it (`drawable`).
MIN_DRAW_SIDE = 160
MAX_DRAW_SIDE = 4096
# The largest image a session holds: an 8K frame (33 Mpx) with room to spare. A PNG declaring more
# is not a recording's (a few bytes can declare gigapixels), and decoding it could exhaust memory.
MAX_IMAGE_PIXELS = 8192 * 8192
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # fastest zlib level: the writer's time, not the disk, is scarce
_SESSION_RE = re.compile(r"^(\d{8}T\d{6}\.\d{3})Z(?:-\d+)?$")


# -- files: private, checked, removable ----------------------------------------------------------


def make_private_dir(path: Path) -> None:
    """Create ``path`` (parents too) with mode 0700, whatever the umask; existing folders are left alone."""
    if path.is_dir():
        return
    make_private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, DIR_MODE)
        os.chmod(path, DIR_MODE)  # the umask may have removed bits, never added: make it exact


def open_private(path: Path, extra_flags: int = 0) -> int:
    """Create a new file with mode 0600 and return its descriptor (O_EXCL: never write through a planted
    file or link). The default ``open_file`` of everything that writes a session."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | extra_flags, FILE_MODE)


@contextlib.contextmanager
def new_file(path: Path, open_file=open_private) -> Iterator[int]:
    """The descriptor of a new file ``path`` (made by ``open_file``), closed on leaving; on any error
    inside, the half-written file is removed too, so what exists on disk is complete."""
    fd = open_file(path)
    try:
        yield fd
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


def write_private(path: Path, data: bytes, open_file=open_private) -> int:
    """Write ``data`` to a new file ``path`` with mode 0600; returns bytes written.

    Raises OSError as the kernel reports it (ENOSPC on a full disk). A file left
    half-written by an error is removed, so what exists on disk is complete.
    """
    with new_file(path, open_file) as fd:
        write_all(fd, data)
    return len(data)


def replace_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data`` (0600). On any error (ENOSPC on a full disk) the
    old file is left as it was: never truncate a good manifest for a new one that may not fit."""
    replace_atomic(path, data, FILE_MODE)


# -- names ----------------------------------------------------------------------------------------


def session_start(name: str) -> datetime | None:
    """UTC start time encoded in a session folder's name, or None when the name is not a session's."""
    m = _SESSION_RE.match(name)
    if not m:
        return None
    return datetime.strptime(m.group(1), "%Y%m%dT%H%M%S.%f").replace(tzinfo=timezone.utc)


def session_name(start: datetime) -> str:
    """The folder name of a session started at ``start`` (UTC), to the millisecond."""
    return start.strftime("%Y%m%dT%H%M%S.") + f"{start.microsecond // 1000:03d}Z"


def new_session_path(root: Path, started_ns: int) -> Path:
    """A folder name under ``root`` not yet taken for a session started at ``started_ns`` (wall clock, ns)."""
    name = session_name(datetime.fromtimestamp(started_ns / 1e9, timezone.utc))
    path = root / name
    k = 1
    while path.exists():
        path = root / f"{name}-{k}"
        k += 1
    return path


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


def raw_name(i: int) -> str:
    """Path of recorded frame ``i``'s raw PNG, relative to the session folder."""
    return f"{RAW_DIR}/{i:06d}.png"


def mask_name(i: int) -> str:
    """Path of recorded frame ``i``'s mask PNG, relative to the session folder."""
    return f"{MASK_DIR}/{i:06d}.png"


def utc_iso(ns: int) -> str:
    """Wall-clock ns as ISO 8601 UTC to the millisecond, ``...Z``."""
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- manifest and frame lines ---------------------------------------------------------------------


def run_info(pipeline: Pipeline) -> dict[str, Any]:
    """What a manifest says about the run that recorded it: "config", "model" (id = name@sha256[:12],
    spec, thresholds, interpreter), "source" and "flips"."""
    runner = pipeline.runner
    rules = pipeline.plan.rules
    spec = runner.spec
    sha = runner.sha256
    return {
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
                "presence_enter": rules.enter,
                "presence_exit": rules.exit,
                "mask": rules.mask_threshold,
            },
            "interpreter": runner.backend,
            "threads": runner.threads,
        },
        "source": pipeline.source.describe(),
        # (horizontal, vertical) mirroring of the network input from the site profile: the recorded
        # raw frames and masks are in the machine's orientation, input_crc32 is of the mirrored input.
        "flips": [bool(f) for f in pipeline.flips],
    }


def start_manifest(
    started_ns: int,
    trigger: dict[str, Any],
    fps: float,
    roi: Roi | None,
    blank: Sequence[Roi],
    full_frame: bool,
    profile: dict[str, Any] | None,
    info: dict[str, Any],
    serial: int | None = None,
) -> dict[str, Any]:
    """The manifest of a session as it is opened (``session`` is filled in when its folder is named).

    trigger: {"mode", "reason", "seq", "pre_roll_frames"}. fps: the capture rate (Hz), also the
    videos' rate. blank: blanking regions in full-frame pixels. profile: {"path", "sha256"} or None.
    info: `run_info`, merged in as it is. serial: the session's place in the write order of its
    recordings folder (1, 2, ...: retention orders by it where clocks were wrong).
    """
    return {
        "format": SESSION_FORMAT,
        "session": None,
        "serial": serial,
        "started_utc": utc_iso(started_ns),
        "stopped_utc": None,
        "stop_reason": None,
        "trigger": trigger,
        "frames": 0,
        "frames_dropped": 0,
        "fps": round(fps, 3),
        "roi": None if roi is None else {"x": roi.x, "y": roi.y, "w": roi.w, "h": roi.h},
        "frame_size": None,
        "blank": [[b.x, b.y, b.w, b.h] for b in blank],
        "full_frame": full_frame,
        "files": {
            "frames": FRAMES_FILE,
            "raw": f"{RAW_DIR}/NNNNNN.png",
            "masks": f"{MASK_DIR}/NNNNNN.png",
            "annotated": ANNOTATED_FILE,
            "full": FULL_FILE if full_frame else None,
        },
        # frames each video holds as read back from its index, and whether it was finalised (null
        # while the session is open, or for a video never begun)
        "annotated_frames": 0,
        "full_frames": 0 if full_frame else None,
        "videos_finalised": None,
        "profile": profile,
        **info,
        "software": {
            "nerveseg": __version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "opencv": cv2.__version__,
        },
    }


def frame_line(
    i: int,
    *,
    seq: int,
    source_seq: int,
    t_capture_ns: int,
    wall_offset_ns: int,
    p_nerve: float | None,
    nerve: bool,
    state: str,
    latency_ms: float,
    stages_ms: dict[str, float],
    model_id: str,
    raw_channels: int,
    has_mask: bool,
    input_crc32: int | None,
    pre_roll: bool,
    p_vote: float | None = None,
) -> dict[str, Any]:
    """The frames.jsonl line of recorded frame ``i``.

    t_capture_ns: monotonic capture time; ``wall_offset_ns`` (wall minus monotonic clock)
    turns it into the UTC ``t_capture``. raw_channels: 1 when the raw PNG was stored gray.
    p_vote: the running average of P(nerve) the presence thresholds compared (None: not analysed).
    """
    return {
        "i": i,
        "seq": seq,
        "source_seq": source_seq,
        "t_capture_ns": t_capture_ns,
        "t_capture": utc_iso(t_capture_ns + wall_offset_ns),
        "p_nerve": None if p_nerve is None else round(p_nerve, 6),
        "p_vote": None if p_vote is None else round(p_vote, 6),
        "decision": "nerve" if nerve else "no_nerve",
        "state": state,
        "latency_ms": round(latency_ms, 3),
        "stages_ms": {k: round(v, 3) for k, v in stages_ms.items()},
        "model": model_id,
        "raw": raw_name(i),
        "raw_channels": raw_channels,
        "mask": mask_name(i) if has_mask else None,
        "input_crc32": input_crc32,
        "pre_roll": pre_roll,
    }


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


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) a PNG's header declares. Raises ValueError when ``data`` is not a PNG, or declares
    more than `MAX_IMAGE_PIXELS` (a few bytes can declare gigapixels: checked before decoding)."""
    if len(data) < 24 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    w, h = struct.unpack(">II", data[16:24])
    if w * h > MAX_IMAGE_PIXELS:
        raise ValueError(f"PNG of {w}x{h} pixels, more than any recorded frame ({MAX_IMAGE_PIXELS} pixels)")
    return w, h


def decode_raw(data: bytes, channels: int = 3, name: str = "frame") -> np.ndarray:
    """`load_raw` of a PNG's bytes (``name`` says which in an error)."""
    try:
        png_size(data)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise ValueError(f"{name}: not a recorded frame (an 8-bit gray or BGR PNG)")
    if img.ndim == 2 and channels == 3:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)  # exact replication of the gray channel
    return img


def load_raw(path: str | Path, channels: int = 3) -> np.ndarray:
    """A recorded raw frame as captured: HxWx3 uint8 BGR (or HxW when it was captured gray and
    ``channels`` is 1 for the source). Raises ValueError when the file is not a readable PNG."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read recorded frame {path}: {e.strerror or e}") from None
    return decode_raw(data, channels, f"recorded frame {path}")


def encode_mask(mask: np.ndarray) -> bytes:
    """PNG of a probability mask in [0, 1] as uint8 ``round(p * 255)``.

    ``>= 128`` in the file is exactly ``p >= 0.5`` before rounding (ties aside).
    """
    m = np.clip(np.rint(mask * 255.0), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".png", m, _PNG_PARAMS)
    if not ok:
        raise ValueError(f"PNG encoding failed for a mask of shape {mask.shape}")
    return buf.tobytes()


def decode_mask(data: bytes, name: str = "mask") -> np.ndarray:
    """`load_mask` of a PNG's bytes (``name`` says which in an error)."""
    try:
        png_size(data)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    m = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if m is None or m.dtype != np.uint8 or m.ndim != 2:
        raise ValueError(f"{name}: not a recorded mask (an 8-bit gray PNG)")
    return m.astype(np.float32) / 255.0


def load_mask(path: str | Path) -> np.ndarray:
    """A recorded mask as float32 probabilities in [0, 1] (model size). Raises ValueError when the file
    is not a readable 8-bit gray PNG."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read recorded mask {path}: {e.strerror or e}") from None
    return decode_mask(data, f"recorded mask {path}")


def render_annotated(
    overlay: Overlay,
    image: np.ndarray,
    nerve: bool,
    p_shown: float,
    mask: np.ndarray | None,
    state: str,
    fps: float,
    latency_ms: float,
    untrained: bool,
    model_name: str,
    message: str | None = None,
) -> np.ndarray:
    """Draw the verdict on a ROI-sized image with the live overlay's code; returns the BGR image.

    ``p_shown``: the P(nerve) the screen quotes (the decision's `~edge.types.Decision.p_shown`).

    ``overlay`` must have been made with ``roi=None`` (the image *is* the ROI). The
    outline pixels equal the live display's inside the ROI (the contour mapping is
    the same up to an integer shift); the status text is laid out for the ROI's size.
    Draws in place when ``image`` is BGR; a gray image is converted first. A ROI whose
    short side is under `MIN_DRAW_SIDE` px is enlarged first (`drawable`): the returned
    image is then that many times larger.
    """
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    image = drawable(image)
    st = state if state in ("live", "stale") else "not_analysed"
    status = OverlayStatus(state=st, fps=fps, latency_ms=latency_ms, untrained=untrained, model_name=model_name,
                           message=message)
    return overlay.draw(image, Decision(nerve, p_shown, mask if nerve else None), status)


def drawable(image: np.ndarray) -> np.ndarray:
    """``image`` itself, or enlarged by a whole factor (nearest neighbour: every captured pixel becomes a
    visible block, none is invented) when its short side is under `MIN_DRAW_SIDE` px.

    A ROI of a few dozen pixels has no room for the verdict's text, and a reviewer could not see
    the outline on it; the long side stays at most `MAX_DRAW_SIDE` px (a thin ROI is not blown up
    into a huge video).
    """
    h, w = image.shape[:2]
    if min(h, w) >= MIN_DRAW_SIDE:
        return image
    k = min(math.ceil(MIN_DRAW_SIDE / max(min(h, w), 1)), max(MAX_DRAW_SIDE // max(h, w), 1))
    if k <= 1:
        return image
    return cv2.resize(image, (w * k, h * k), interpolation=cv2.INTER_NEAREST)


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
