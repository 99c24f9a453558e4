"""One calibration run: grab frames, find the image and what to blank, write profile, frames and preview.

What it writes, beside the profile ``OUT.yaml``:

- ``OUT-frames/frame_0001.png ...``: representative frames for int8 calibration
  (``nerveseg convert --calibration OUT-frames``): the ROI cropped out of evenly
  spaced grabbed frames, gray (the network's input is gray), mirrored as the profile
  says (so they look like what the network sees at the bedside), with the blanking
  regions that fall inside the ROI painted black (these files leave the device; a
  burned-in label must not travel with them). Exact repeats (a 60 Hz capture of a
  30 Hz screen) are skipped.
- ``OUT-preview.png``: the last grabbed frame at full size with the ROI (green box)
  and the blanking regions painted solid red (yellow outline): it shows exactly
  what recordings hide, and none of its content (it may leave the device too).

Nothing is written unless the whole calibration succeeds; the profile is written last.
A probe held still while calibrating is not an error but is warned about (the log,
`CalibrationResult.still_probe`, the profile's detection info where its schema lists
warnings, and ``nerveseg calibrate``'s output): bright tissue then stands as still as
burned-in text, and the blanking rests on the marks' shape and colour alone.
"""

from __future__ import annotations

import datetime
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from calibration.detect import (
    CalibrationError,
    Detection,
    FrameStats,
    detect_roi,
    detection_for_roi,
    find_blank_regions,
)
from edge.config import RoiConfig, SourceConfig
from edge.errors import SourceError, SourceExhausted
from edge.fileio import replace_atomic
from edge.preprocess import to_gray
from edge.profile import DetectionInfo, ProfileSource, SiteProfile, apply_blank, blank_in_roi, save_profile
from edge.sources import open_source
from edge.types import Roi

logger = logging.getLogger(__name__)

DEFAULT_FRAMES = 60
MAX_KEPT = 60  # representative frames kept (gray, in memory) and written: at most this, at least half once more
# frames were read, evenly spaced over all of them
NO_FRAME_TIMEOUT_S = 10.0  # a live source that delivers nothing this long is not going to
REPEAT_LEVEL = 0.5  # gray levels: a kept frame closer than this (mean abs) to the previous one is a repeat


@dataclass
class Grab:
    """Frames read from a source: running statistics of all, gray copies of some, the last in colour."""

    stats: FrameStats
    kept: list[np.ndarray]
    last_bgr: np.ndarray
    description: str


@dataclass
class CalibrationResult:
    """What `calibrate` wrote and found."""

    profile: SiteProfile
    profile_path: Path
    frames_dir: Path
    frames_written: int
    preview_path: Path
    detection: Detection | None  # None when the ROI was given (--roi)
    # The still-probe warning (`Detection.still_probe`): the probe stood still while calibrating, so marks inside
    # the image were told from tissue by shape and colour only. None when it moved.
    still_probe: str | None = None


def outputs_for(out: Path) -> tuple[Path, Path]:
    """(frames folder, preview PNG) beside the profile ``out``."""
    return out.with_name(f"{out.stem}-frames"), out.with_name(f"{out.stem}-preview.png")


def grab(source_cfg: SourceConfig, n: int, timeout_s: float = NO_FRAME_TIMEOUT_S) -> Grab:
    """Read up to ``n`` frames from the source ``source_cfg`` names, as fast as it delivers them.

    A finite source (file, folder) that ends earlier gives what it had. Raises
    `SourceError` when the source cannot be opened or sends nothing for ``timeout_s``,
    `CalibrationError` when the frame size changes on the way.
    """
    stats = FrameStats()
    # Frames kept: every `every`-th grabbed one. When they reach MAX_KEPT, every other one goes and the step
    # doubles, so whatever number of frames the source delivers (a file may end long before n), between
    # MAX_KEPT / 2 and MAX_KEPT of them stay, evenly spaced over all the frames actually grabbed.
    kept: list[np.ndarray] = []
    every = 1
    last: np.ndarray | None = None
    with open_source(source_cfg) as source:
        description = source.describe()
        t_last = time.monotonic()
        while stats.n < n:
            try:
                frame = source.read(timeout=0.5)
            except SourceExhausted:
                logger.info("source ended after %d of %d frames", stats.n, n)
                break
            if frame is None:
                if time.monotonic() - t_last > timeout_s:
                    raise SourceError(
                        f"no frame from {description} for {timeout_s:.0f} s (after {stats.n} frames): is the "
                        "ultrasound machine's video out connected and on?"
                    )
                continue
            t_last = time.monotonic()
            gray = to_gray(frame.image)
            stats.add(gray, frame.image if frame.image.ndim == 3 else None)
            i = stats.n - 1
            if i % every == 0:
                if len(kept) == MAX_KEPT:
                    del kept[1::2]
                    every *= 2
                if i % every == 0:
                    kept.append(gray.copy())
            last = frame.image
    if last is None:
        raise CalibrationError(f"the source {description} delivered no frame")
    bgr = last if last.ndim == 3 else cv2.cvtColor(last, cv2.COLOR_GRAY2BGR)
    return Grab(stats, kept, bgr, description)


def make_private_folder(folder: Path) -> None:
    """``folder`` (and parents) exists and only its owner may enter it: the frames are video-out content."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)


def write_private_png(path: Path, image: np.ndarray) -> None:
    """Write ``image`` as PNG, mode 0600 whatever the umask (it shows what the machine showed), atomically.

    Raises `CalibrationError` naming the file when it cannot be encoded or written."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise CalibrationError(f"cannot encode {path}")
    try:
        replace_atomic(path, buf.tobytes(), 0o600)
    except OSError as e:
        raise CalibrationError(f"cannot write {path}: {e.strerror or e}") from None


def write_frames(
    kept: list[np.ndarray], roi: Roi, blanks: list[Roi], flips: tuple[bool, bool], folder: Path
) -> int:
    """Write ROI crops of ``kept`` into ``folder`` as ``frame_NNNN.png`` (see the module doc). Returns the count."""
    make_private_folder(folder)
    inner = blank_in_roi(blanks, roi)
    prev: np.ndarray | None = None
    written = 0
    for gray in kept:
        crop = gray[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w].copy()
        apply_blank(crop, inner)
        if flips[0] or flips[1]:
            crop = np.ascontiguousarray(crop[:: -1 if flips[1] else 1, :: -1 if flips[0] else 1])
        if prev is not None and float(cv2.absdiff(crop, prev).mean()) < REPEAT_LEVEL:
            continue
        written += 1
        write_private_png(folder / f"frame_{written:04d}.png", crop)
        prev = crop
    return written


PREVIEW_BLANK = (0, 0, 255)  # BGR: the blanked areas, solid, so the preview shows exactly what is hidden
PREVIEW_BLANK_EDGE = (0, 255, 255)  # their outline, so neighbouring regions and thin ones stay visible
PREVIEW_ROI = (0, 255, 0)


def render_preview(frame_bgr: np.ndarray, roi: Roi, blanks: list[Roi]) -> np.ndarray:
    """A copy of ``frame_bgr`` with the blanking regions painted over and the ROI (green box).

    The blanking regions are solid red with a yellow outline, not see-through: the
    preview is a file that may leave the device, and it shows exactly what will be
    hidden. The ROI box is drawn after them, so it is visible where a region meets it.
    """
    out = frame_bgr.copy()
    h, w = out.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    for r in blanks:
        mask[r.y : r.y + r.h, r.x : r.x + r.w] = 255
    out[mask > 0] = PREVIEW_BLANK
    # The outline is drawn inside the regions (the contour pixels belong to the mask), never over the image.
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, PREVIEW_BLANK_EDGE, 1)
    t = max(2, round(min(h, w) / 360))
    cv2.rectangle(out, (roi.x, roi.y), (roi.x + roi.w - 1, roi.y + roi.h - 1), PREVIEW_ROI, t)
    label = f"ROI x={roi.x} y={roi.y} w={roi.w} h={roi.h}   blanked: {len(blanks)} regions"
    scale = max(0.4, min(h, w) / 1080)
    org = (roi.x + t + 4, max(roi.y - 3 * t, round(22 * scale)))
    cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale * 0.7, (0, 0, 0), 3 * t, cv2.LINE_AA)
    cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale * 0.7, PREVIEW_ROI, max(1, t // 2), cv2.LINE_AA)
    return out


def _clear_old_frames(folder: Path) -> None:
    """Remove the ``frame_*.png`` an earlier calibration wrote (never anything else)."""
    if folder.is_dir():
        for p in folder.glob("frame_*.png"):
            p.unlink()


def calibrate(
    source_cfg: SourceConfig,
    out: Path,
    frames: int = DEFAULT_FRAMES,
    roi: Roi | None = None,
    mm_per_pixel: float | None = None,
    flips: tuple[bool, bool] = (False, False),
    force: bool = False,
) -> CalibrationResult:
    """Calibrate on ``frames`` frames of ``source_cfg`` and write the profile ``out`` and its companions.

    ``roi``: the image's box given by the user (not detected, but the frames are still
    checked and a box that barely changes is refused: `detection_for_roi`).
    Raises `CalibrationError` (nothing written) when the frames cannot be calibrated
    on or ``out`` exists without ``force``; `SourceError` when the source fails.
    """
    out = Path(out).expanduser()
    frames_dir, preview = outputs_for(out)
    if out.exists() and not force:
        raise CalibrationError(f"{out} exists; give --force to replace it (and its {frames_dir.name}/)")
    if not out.parent.is_dir():
        raise CalibrationError(f"folder {out.parent} of --out does not exist")
    # Read as fast as the source gives frames: pacing would only make a file take its playing time.
    src = source_cfg.model_copy(update={k: False for k in ("pace", "loop") if k in type(source_cfg).model_fields})
    g = grab(src, frames)
    h, w = g.stats.shape
    logger.info("calibrating on %d frames of %s (%dx%d)", g.stats.n, g.description, w, h)
    if roi is not None:
        det = detection_for_roi(g.stats, roi)
        method = "manual"
    else:
        det = detect_roi(g.stats)
        method = "auto"
    blanks = find_blank_regions(det)

    _clear_old_frames(frames_dir)
    n_written = write_frames(g.kept, det.roi, blanks, flips, frames_dir)
    write_private_png(preview, render_preview(g.last_bgr, det.roi, blanks))
    profile = SiteProfile(
        created=datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0),
        source=ProfileSource(width=w, height=h, description=g.description),
        roi=RoiConfig(x=det.roi.x, y=det.roi.y, w=det.roi.w, h=det.roi.h),
        flip_horizontal=flips[0],
        flip_vertical=flips[1],
        mm_per_pixel=mm_per_pixel,
        blank=[RoiConfig(x=r.x, y=r.y, w=r.w, h=r.h) for r in blanks],
        frames_dir=frames_dir.name,
        detection=DetectionInfo(
            method=method,
            frames=g.stats.n,
            threshold=round(det.threshold, 2),
            activity=round(det.activity, 2),
            structure=round(det.structure, 3),
            warnings=[det.still_probe] if det.still_probe else [],
        ),
    )
    save_profile(profile, out)
    return CalibrationResult(profile, out, frames_dir, n_written, preview, det if method == "auto" else None,
                             det.still_probe)
