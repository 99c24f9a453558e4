"""Site profiles: where the ultrasound image sits in one machine's video out, and what to blank.

`nerveseg calibrate` (package `calibration`, run once per site) writes a profile;
the runtime reads it through the config key ``profile``. A profile is a YAML file
validated like the main config (unknown keys rejected, every error names the key
path, the bad value and what is allowed):

    format: nerveseg-site-profile/1
    created: '2025-01-31T10:42:00Z'          # ISO 8601 with a time zone (stored as UTC); none is an error
    source: {width: 1920, height: 1080, description: 'v4l2:/dev/video0 1920x1080 MJPG'}
    roi: {x: 420, y: 130, w: 1100, h: 800}   # the image's bounding box, frame pixels
    flip_horizontal: false                    # mirror the network's input (and its outline back)
    flip_vertical: false
    mm_per_pixel: null                        # given by the user; not measured
    blank:                                    # full-frame rectangles never to be recorded
    - {x: 0, y: 0, w: 1920, h: 60}
    frames_dir: site-profile-frames           # representative ROI crops, relative to the profile
    detection: {method: auto, frames: 60, ...}

`ProfileWatcher` is the runtime half: an observer of the live loop that warns, on
screen (a notice) and in the log, when live frames stop looking like the frames the
profile was made from: another resolution, a ROI whose content stopped changing
(a frozen image), or a black ROI. This module never imports `calibration`.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from edge.config import RoiConfig, format_validation_error
from edge.errors import ConfigError
from edge.fileio import replace_atomic
from edge.pipeline import FrameEvent, Pipeline, PipelineObserver
from edge.types import Roi
from edge.yamlio import load_yaml

logger = logging.getLogger(__name__)

PROFILE_FORMAT = "nerveseg-site-profile/1"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ProfileSource(_Model):
    """The video-out mode the profile was made from."""

    width: int = Field(..., gt=0, le=7680, description="frame width, pixels")
    height: int = Field(..., gt=0, le=4320, description="frame height, pixels")
    description: str = Field("", description="the source as the calibration saw it (spec, mode)")


class DetectionInfo(_Model):
    """How the ROI was found; for the reader of the file, not used at run time."""

    method: Literal["auto", "manual"] = Field(..., description="auto = found from the frames; manual = --roi")
    frames: int = Field(..., ge=1, description="frames analysed")
    threshold: float | None = Field(None, ge=0, description="temporal std (gray levels) counted as changing")
    activity: float | None = Field(None, ge=0, description="median temporal std inside the image")
    structure: float | None = Field(None, description="neighbour-pixel correlation inside the image")
    warnings: list[str] = Field(
        default_factory=list, description="what the calibration doubted, e.g. a probe held still (recalibrate)"
    )


def _outside(r: RoiConfig, src: ProfileSource) -> bool:
    return r.x + r.w > src.width or r.y + r.h > src.height


class SiteProfile(_Model):
    """One site's calibration (see the module doc for the file)."""

    format: Literal["nerveseg-site-profile/1"] = PROFILE_FORMAT
    created: datetime.datetime = Field(..., description="when the profile was made, ISO 8601 with its time zone")
    source: ProfileSource
    roi: RoiConfig = Field(..., description="the ultrasound image's bounding box in the frame, pixels")
    flip_horizontal: bool = Field(False, description="mirror the network input left-right (outline mirrored back)")
    flip_vertical: bool = Field(False, description="mirror the network input top-bottom (outline mirrored back)")
    mm_per_pixel: float | None = Field(None, gt=0, le=10, description="pixel size, given by the user")
    blank: list[RoiConfig] = Field(default_factory=list, description="full-frame rectangles never to be recorded")
    frames_dir: str | None = Field(None, description="representative ROI crops, relative to the profile file")
    detection: DetectionInfo | None = None

    @field_validator("created")
    @classmethod
    def _created_aware(cls, v: datetime.datetime) -> datetime.datetime:
        # A time without a zone is a different instant on every box: refuse it rather than guess.
        if v.tzinfo is None or v.utcoffset() is None:
            raise ValueError(
                "no time zone: give a date and time in UTC, e.g. '2025-01-31T10:42:00Z' (nerveseg calibrate "
                "writes it so)"
            )
        return v.astimezone(datetime.timezone.utc)

    @field_validator("roi")
    @classmethod
    def _roi_inside(cls, v: RoiConfig, info: ValidationInfo) -> RoiConfig:
        src = info.data.get("source")
        if isinstance(src, ProfileSource) and _outside(v, src):
            raise ValueError(
                f"x+w={v.x + v.w}, y+h={v.y + v.h} lie outside the {src.width}x{src.height} source frame"
            )
        return v

    @field_validator("blank")
    @classmethod
    def _blank_inside(cls, v: list[RoiConfig], info: ValidationInfo) -> list[RoiConfig]:
        src = info.data.get("source")
        if isinstance(src, ProfileSource):
            bad = [i for i, r in enumerate(v) if _outside(r, src)]
            if bad:
                raise ValueError(
                    f"rectangle(s) {', '.join(map(str, bad))} lie outside the {src.width}x{src.height} source frame"
                )
        return v

    @property
    def image_roi(self) -> Roi:
        """The ROI as the runtime uses it."""
        return self.roi.to_roi()

    @property
    def blank_rois(self) -> tuple[Roi, ...]:
        """Rectangles (full-frame pixels) that must never be recorded: burned-in text, logos, changing UI."""
        return tuple(r.to_roi() for r in self.blank)

    @property
    def flips(self) -> tuple[bool, bool]:
        """(horizontal, vertical), as `edge.pipeline.Pipeline` takes them."""
        return self.flip_horizontal, self.flip_vertical

    def frames_path(self, profile_path: str | Path) -> Path | None:
        """The representative-frames folder of the profile stored at ``profile_path`` (None if it has none)."""
        if not self.frames_dir:
            return None
        p = Path(self.frames_dir).expanduser()
        return p if p.is_absolute() else Path(profile_path).expanduser().parent / p


def parse_profile(data: Any, source: str = "<profile>") -> SiteProfile:
    """Validate already-parsed YAML into a `SiteProfile`. Raises `ConfigError` naming every bad key."""
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise ConfigError(source, [f"(top level): got {kind}: a site profile is a mapping (see nerveseg calibrate)"])
    try:
        return SiteProfile.model_validate(data)
    except ValidationError as e:
        raise ConfigError(source, format_validation_error(e, SiteProfile)) from None


def load_profile(path: str | Path) -> SiteProfile:
    """Read and validate a site profile. Raises `ConfigError` (exit code 2) with every fault found."""
    p = Path(path).expanduser()
    where = f"site profile {p}"
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(where, ["file not found (make one with: nerveseg calibrate --out FILE)"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(where, [f"cannot read: {e}"]) from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(where, [f"{at}YAML syntax error: {getattr(e, 'problem', None) or e}"]) from None
    return parse_profile(data, where)


def save_profile(profile: SiteProfile, path: str | Path) -> Path:
    """Write ``profile`` as YAML to ``path`` atomically (a reader never sees half a file). Returns the path."""
    p = Path(path).expanduser()
    body = yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False, default_flow_style=None, width=120)
    text = (
        "# nerveseg site profile, written by `nerveseg calibrate`; use it with the config key `profile`.\n"
        "# roi and blank are in pixels of the full video-out frame (source.width x source.height).\n" + body
    )
    # Readable by the service user: the installer's config points the root-owned service at it, and it
    # holds only geometry (no image data).
    replace_atomic(p, text.encode("utf-8"), 0o644)
    return p


def blank_in_roi(blank: Sequence[Roi], roi: Roi | None) -> list[tuple[int, int, int, int]]:
    """Blanking rectangles (full-frame pixels) shifted into ``roi``'s crop, as (x0, y0, x1, y1).

    Clipping to the crop's size happens in `apply_blank`, which sees the actual image.
    """
    ox, oy = (roi.x, roi.y) if roi is not None else (0, 0)
    return [(b.x - ox, b.y - oy, b.x - ox + b.w, b.y - oy + b.h) for b in blank]


def apply_blank(image: np.ndarray, rects: Sequence[tuple[int, int, int, int]]) -> None:
    """Zero the rectangles (x0, y0, x1, y1) in ``image`` in place, clipped to it.

    The one blanking step: the recorder and the calibration frames folder both use it, so what
    leaves the box is blanked the same way everywhere.
    """
    h, w = image.shape[:2]
    for x0, y0, x1, y1 in rects:
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 > x0 and y1 > y0:
            image[y0:y1, x0:x1] = 0


# -- the runtime check ---------------------------------------------------------------------------

STATIC_AFTER_S = 5.0  # ROI unchanged this long: the image is frozen (or the probe is off the patient)
STATIC_LEVEL = 0.5  # gray levels: mean change of the model input below this counts as "unchanged"
BLACK_LEVEL = 16  # gray levels: a ROI with (almost) no pixel above this is black
BLACK_AFTER_S = 1.0  # black this long before warning (a mode switch blanks the screen briefly)
LOG_EVERY_S = 60.0  # a mismatch that persists is logged again at this interval


class ProfileWatcher(PipelineObserver):
    """Warns when live frames stop matching the site profile; clears the warning when they match again.

    Checks, on every processed frame (microseconds: it works on the small model input,
    not on the full frame):

    - resolution: the frame is not ``source.width`` x ``source.height`` of the profile;
    - black ROI: fewer than 1% of the model input's pixels are above `BLACK_LEVEL` gray
      levels for `BLACK_AFTER_S` seconds (image switched off, menu over the image);
    - frozen ROI: the model input has not changed by more than `STATIC_LEVEL` gray levels
      (mean absolute change against the last frame that changed) for `STATIC_AFTER_S`
      seconds (the machine's freeze button, or a capture stuck on one frame).

    Times are the frames' capture times, so a test can replay them. The warning is one
    notice on screen (``pipeline.notices["profile"]``) and a WARNING in the log when it
    starts, repeated every `LOG_EVERY_S` while it lasts; INFO when it ends.
    """

    KEY = "profile"

    def __init__(
        self,
        profile: SiteProfile,
        static_after_s: float = STATIC_AFTER_S,
        static_level: float = STATIC_LEVEL,
        black_level: float = BLACK_LEVEL,
        black_after_s: float = BLACK_AFTER_S,
        log_every_s: float = LOG_EVERY_S,
        name: str = "site profile",
    ) -> None:
        self.profile = profile
        self.static_after_s = static_after_s
        self.static_level = static_level
        self.black_level = black_level
        self.black_after_s = black_after_s
        self.log_every_s = log_every_s
        self.name = name
        self.problem: str | None = None  # "resolution" | "black" | "frozen" | None
        self._since = 0.0
        self._last_log = 0.0
        self._ref: np.ndarray | None = None
        self._diff: np.ndarray | None = None
        self._last_change = 0.0
        self._black_since: float | None = None

    def on_start(self, pipeline: Pipeline) -> None:
        p = self.profile
        logger.info(
            "%s: %dx%d, roi %s, %d blanking regions, flips h=%s v=%s (made %s)",
            self.name, p.source.width, p.source.height, p.image_roi, len(p.blank), p.flip_horizontal,
            p.flip_vertical, p.created.isoformat(timespec="seconds"),
        )

    def on_idle(self, pipeline: Pipeline, no_signal: bool) -> None:
        if no_signal:
            # After an outage the first frames must not count as "unchanged since before it".
            self._ref = None
            self._black_since = None

    def on_frame(self, pipeline: Pipeline, event: FrameEvent) -> None:
        now = event.frame.t_capture_ns / 1e9
        h, w = event.frame.image.shape[:2]
        src = self.profile.source
        if (w, h) != (src.width, src.height):
            self._ref, self._black_since = None, None
            self._report(pipeline, now, "resolution",
                         f"input {w}x{h}, site profile {src.width}x{src.height}: recalibrate or reset the video mode")
            return
        x = event.model_input
        if x is None:  # frame not analysed: nothing to judge the content by
            return
        pre = pipeline.runner.spec.preprocess
        scale = 255.0 * pre.std  # model-input units -> gray levels
        black = np.count_nonzero(x > (self.black_level / 255.0 - pre.mean) / pre.std) < 0.01 * x.size
        if black:
            if self._black_since is None:
                self._black_since = now
        else:
            self._black_since = None
        if self._ref is None or self._ref.shape != x.shape:
            self._ref = x.copy()
            self._diff = np.empty_like(x)
            self._last_change = now
        else:
            np.subtract(x, self._ref, out=self._diff)
            np.abs(self._diff, out=self._diff)
            if float(self._diff.mean()) * scale > self.static_level:
                np.copyto(self._ref, x)
                self._last_change = now
        if self._black_since is not None and now - self._black_since >= self.black_after_s:
            self._report(pipeline, now, "black", "ROI is black: image off or hidden? check the ultrasound screen")
        elif now - self._last_change >= self.static_after_s:
            self._report(pipeline, now, "frozen",
                         f"ROI unchanged for {self.static_after_s:.0f}+ s: image frozen? unfreeze or check capture")
        else:
            self._report(pipeline, now, None, None)

    def _report(self, pipeline: Pipeline, now: float, problem: str | None, text: str | None) -> None:
        if problem is None:
            if self.problem is not None:
                logger.info("%s: live frames match again (%s lasted %.1f s)", self.name, self.problem,
                            now - self._since)
                pipeline.notices.pop(self.KEY, None)
                self.problem = None
            return
        if problem != self.problem:
            self.problem, self._since, self._last_log = problem, now, now
            logger.warning("%s mismatch: %s", self.name, text)
        elif now - self._last_log >= self.log_every_s:
            self._last_log = now
            logger.warning("%s mismatch for %.0f s: %s", self.name, now - self._since, text)
        pipeline.notices[self.KEY] = text
