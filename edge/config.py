"""The one YAML config file, loaded into typed, validated models.

Every key has a default, so a file holds only what it changes; an empty file is
a valid config. Unknown keys are rejected. Every error names the key path, the
bad value and what is allowed (`ConfigError.problems`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from edge.errors import ConfigError
from edge.types import Roi

logger = logging.getLogger(__name__)

SOURCE_KINDS = ("v4l2", "picamera2", "file", "images", "phantom")
SINK_KINDS = ("fbdev", "window", "video", "null")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def split_spec(spec: str, kinds: tuple[str, ...], what: str) -> tuple[str, str]:
    """Split a one-string spec ``kind[:arg]`` into ``(kind, arg)``; ``arg`` may be ''.

    Raises ValueError naming the allowed kinds when the kind is unknown.
    """
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in kinds:
        raise ValueError(f"unknown {what} kind {kind!r} in {spec!r}; allowed: {', '.join(kinds)}")
    return kind, arg.strip()


class SourceConfig(_Section):
    """Where frames come from. ``spec`` names the kind; the other keys tune it."""

    spec: str = Field(
        "phantom",
        description="v4l2:/dev/video0 (or v4l2:0) | picamera2 | file:PATH | images:DIR | phantom",
    )
    width: int | None = Field(None, gt=0, le=7680, description="requested capture width (v4l2, picamera2, phantom)")
    height: int | None = Field(None, gt=0, le=4320, description="requested capture height")
    fps: float | None = Field(
        None, gt=0, le=240, description="requested rate (v4l2, picamera2, phantom); pacing rate for file/images"
    )
    fourcc: Literal["MJPG", "YUYV"] = Field("MJPG", description="v4l2 pixel format")
    pace: bool = Field(True, description="file/images: deliver at fps (true) or as fast as decoded (false)")
    loop: bool = Field(False, description="file/images: start over at the end instead of ending")
    seed: int = Field(0, description="phantom: random seed; the same seed gives the same frames")
    retry_max_s: float = Field(5.0, gt=0, le=300, description="v4l2/picamera2: ceiling of the reconnect backoff")

    @field_validator("spec")
    @classmethod
    def _check_spec(cls, v: str) -> str:
        kind, arg = split_spec(v, SOURCE_KINDS, "source")
        if kind in ("file", "images") and not arg:
            example = "clip.mp4" if kind == "file" else "folder"
            raise ValueError(f"{kind} source needs a path, e.g. '{kind}:/path/to/{example}'")
        return v

    @property
    def kind(self) -> str:
        return split_spec(self.spec, SOURCE_KINDS, "source")[0]

    @property
    def arg(self) -> str:
        return split_spec(self.spec, SOURCE_KINDS, "source")[1]


class RoiConfig(_Section):
    """Rectangle of the ultrasound image inside the video-out frame (pixels)."""

    x: int = Field(..., ge=0)
    y: int = Field(..., ge=0)
    w: int = Field(..., gt=0)
    h: int = Field(..., gt=0)

    def to_roi(self) -> Roi:
        return Roi(self.x, self.y, self.w, self.h)


class ModelConfig(_Section):
    path: str | None = Field(
        None, description="a .tflite file; its spec is <model>.yaml beside it; null = the shipped model"
    )
    threads: int = Field(2, ge=1, le=64, description="interpreter (XNNPACK) threads")
    interpreter: Literal["auto", "ai_edge_litert", "tflite_runtime", "tensorflow"] = "auto"


class PresenceConfig(_Section):
    """Hysteresis on P(nerve) so the overlay does not flicker. Null = the model spec's value."""

    enter: float | None = Field(None, gt=0, lt=1, description="P(nerve) at or above which a frame votes 'nerve'")
    exit: float | None = Field(None, gt=0, lt=1, description="P(nerve) below which a frame votes 'no nerve'")
    min_frames_on: int | None = Field(None, ge=1, le=300, description="consecutive 'nerve' votes before the "
                                      "outline appears (null: the model spec's)")
    min_frames_off: int | None = Field(None, ge=1, le=300, description="consecutive 'no nerve' votes before it "
                                       "disappears (null: the model spec's)")
    mask_threshold: float | None = Field(None, gt=0, lt=1, description="pixel probability drawn as nerve")
    mask_smoothing: float | None = Field(
        None, gt=0, le=1, description="weight of the newest mask in the running average (1 = no smoothing; null: "
        "the model spec's)"
    )

    @model_validator(mode="after")
    def _order(self) -> PresenceConfig:
        if self.enter is not None and self.exit is not None and self.exit > self.enter:
            raise ValueError(f"exit ({self.exit}) must be <= enter ({self.enter}) for hysteresis")
        return self


class OverlayConfig(_Section):
    color: tuple[int, int, int] = Field((0, 220, 255), description="outline/fill colour, B,G,R 0-255")
    alpha: float = Field(0.3, ge=0, le=1, description="fill opacity (0 = outline only)")
    thickness: int = Field(2, ge=1, le=20, description="outline width in pixels at full frame size")
    show_stats: bool = Field(True, description="fps and latency in the status line")
    stale_after_ms: float = Field(250.0, gt=0, description="a result older than this (capture to draw) is marked STALE")
    no_signal_after_s: float = Field(1.0, gt=0, description="no frame for this long shows NO SIGNAL")

    @field_validator("color")
    @classmethod
    def _check_color(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(c < 0 or c > 255 for c in v):
            raise ValueError(f"each of B,G,R must be 0-255, got {list(v)}")
        return v


class SinkConfig(_Section):
    spec: str = Field("null", description="fbdev:/dev/fb0 | window | video:out.mp4 | null")
    fullscreen: bool = Field(True, description="window: borderless full screen")
    fps: float | None = Field(None, gt=0, le=240, description="video: container frame rate (null = source's, else 30)")
    # Framebuffer geometry is read from /sys/class/graphics/fbN; these override it
    # (needed when the target is a plain file, e.g. in tests or a capture of the screen).
    fb_width: int | None = Field(None, gt=0)
    fb_height: int | None = Field(None, gt=0)
    fb_bpp: Literal[16, 32] | None = None
    fb_stride: int | None = Field(None, gt=0, description="bytes per framebuffer line (default width*bpp/8)")

    @field_validator("spec")
    @classmethod
    def _check_spec(cls, v: str) -> str:
        kind, arg = split_spec(v, SINK_KINDS, "sink")
        if kind == "video" and not arg:
            raise ValueError("video sink needs a path, e.g. 'video:out.mp4'")
        return v

    @property
    def kind(self) -> str:
        return split_spec(self.spec, SINK_KINDS, "sink")[0]

    @property
    def arg(self) -> str:
        return split_spec(self.spec, SINK_KINDS, "sink")[1]


class LoopConfig(_Section):
    stats_interval_s: float = Field(5.0, gt=0, description="seconds between stats log lines")
    max_frames: int | None = Field(
        None, gt=0, description="stop after this many processed frames (null = run until stopped)"
    )


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class RecordConfig(_Section):
    """Recording for review (`edge.record`): when to record, where, and how much disk it may use."""

    mode: Literal["off", "always", "on-detection", "manual"] = Field(
        "off", description="off | always | on-detection (decision 'nerve') | manual (SIGUSR1, or 'r' in a window); "
        "needs roi or profile (or full_frame) unless the source is the phantom"
    )
    dir: str = Field("/var/lib/nerveseg/recordings", min_length=1, description="one folder per session below this")
    pre_roll_s: float = Field(3.0, ge=0, le=60, description="seconds before the trigger kept (ring buffer)")
    post_roll_s: float = Field(3.0, ge=0, le=600, description="seconds recorded after the trigger ends")
    max_gb: float = Field(
        10.0, gt=0, description="quota for all sessions; the oldest are deleted first; a session is split at a quarter"
    )
    max_days: float = Field(30.0, gt=0, description="sessions older than this are deleted")
    full_frame: bool = Field(
        False, description="also write the whole video-out frame (it may show patient details): full.mp4"
    )
    max_session_s: float = Field(600.0, gt=0, description="a longer session is closed and a new one begun")
    min_free_mb: float = Field(200.0, ge=0, description="stop recording when the disk has less free space")
    queue_frames: int = Field(64, ge=1, le=10000, description="frames waiting for the writer; more are dropped")
    buffer_mb: float = Field(512.0, gt=0, description="memory cap of the pre-roll ring buffer")


class HealthConfig(_Section):
    """Health an engineer can read without a screen (`edge.health`), and the systemd watchdog (`edge.notify`)."""

    status_file: str | None = Field(
        None,
        min_length=1,
        description="JSON status file replaced atomically every interval_s; null = off "
        "(the appliance config: /run/nerveseg/status.json)",
    )
    interval_s: float = Field(2.0, ge=0.1, le=3600, description="seconds between status file and metrics updates")
    metrics_port: int | None = Field(
        None, ge=0, le=65535,
        description="Prometheus text metrics on http://127.0.0.1:PORT/metrics (loopback only); null = off; "
        "0 = any free port",
    )
    watchdog_during_outage: bool = Field(
        True,
        description="systemd watchdog: keep the heartbeat while a live source (v4l2, picamera2) visibly keeps "
        "retrying after an unplug; false = heartbeat only while frames are processed",
    )


class Config(_Section):
    source: SourceConfig = SourceConfig()
    roi: RoiConfig | None = Field(None, description="ultrasound image inside the frame; null = whole frame")
    profile: str | None = Field(
        None, description="site profile YAML written by `nerveseg calibrate`; supplies the ROI (then leave roi unset)"
    )
    model: ModelConfig = ModelConfig()
    presence: PresenceConfig = PresenceConfig()
    overlay: OverlayConfig = OverlayConfig()
    sink: SinkConfig = SinkConfig()
    loop: LoopConfig = LoopConfig()
    logging: LoggingConfig = LoggingConfig()
    record: RecordConfig = RecordConfig()
    health: HealthConfig = HealthConfig()

    @field_validator("profile")
    @classmethod
    def _profile_or_roi(cls, v: str | None, info: ValidationInfo) -> str | None:
        # Two sources of the ROI would leave the reader guessing which one the box uses.
        if v is not None and info.data.get("roi") is not None:
            raise ValueError("roi and profile are both set; the site profile supplies the ROI: remove roi")
        if v is not None and not v.strip():
            raise ValueError("empty path; give the profile file or null")
        return v


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the (nested) model at ``loc`` minus its last element, or None."""
    cur: Any = model
    for part in loc[:-1]:
        if not (isinstance(cur, type) and issubclass(cur, BaseModel)) or part not in cur.model_fields:
            return None
        ann = cur.model_fields[part].annotation
        # unwrap Optional[Model]
        for cand in getattr(ann, "__args__", (ann,)):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                ann = cand
                break
        cur = ann
    if isinstance(cur, type) and issubclass(cur, BaseModel):
        return list(cur.model_fields)
    return None


def format_validation_error(err: ValidationError, model: type[BaseModel] = Config) -> list[str]:
    """One line per pydantic error: ``key.path: bad value -> what is allowed``."""
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        path = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, loc)
            hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
            lines.append(f"{path}: unknown key{hint}")
            continue
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        value = e.get("input")
        if e["type"] == "missing":
            lines.append(f"{path}: required key is missing")
        else:
            lines.append(f"{path}: got {value!r}: {msg}")
    return lines


def parse_config(data: Any, source: str = "<config>") -> Config:
    """Validate already-parsed YAML (``None`` = empty file) into a `Config`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [f"(top level): got {type(data).__name__}: the file must be a mapping of sections"])
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(source, format_validation_error(e)) from None
    problems = record_problems(cfg)
    if problems:
        raise ConfigError(source, problems)
    return cfg


def record_problems(cfg: Config) -> list[str]:
    """Faults of the ``record`` section that only the whole config shows, one line each (none: [])."""
    rec = cfg.record
    if rec.mode == "off" or rec.full_frame or cfg.roi is not None or cfg.profile is not None:
        return []
    if cfg.source.kind == "phantom":
        return []  # the built-in phantom knows where its image sits inside its synthetic interface
    # Without a ROI the loop analyses, and the recorder would write, the whole video-out frame: the
    # machine's interface, often with the patient's name. That must be a choice, not a default.
    return [
        f"record.mode: got {rec.mode!r}: recording needs to know where the ultrasound image is, or it would write "
        f"the whole video-out frame of {cfg.source.spec!r} (the machine's interface, often with patient details): "
        "set roi or profile (run `nerveseg calibrate`), or set record.full_frame: true to knowingly record whole "
        "frames"
    ]


def load_config(path: str | Path) -> Config:
    """Read and validate one YAML config file. Raises `ConfigError` with every fault found."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(p), ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(p), [f"cannot read: {e}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(str(p), [f"{where}YAML syntax error: {problem}"]) from None
    return parse_config(data, str(p))


def with_overrides(cfg: Config, **sections: dict[str, Any]) -> Config:
    """Return a copy of ``cfg`` with keys of some sections replaced, validated again.

    Used for command-line overrides (``--source``, ``--model``, ``--frames``) so they
    get the same checks and messages as the file.
    """
    data = cfg.model_dump()
    for name, values in sections.items():
        if values:
            data[name] = {**(data.get(name) or {}), **values}
    return parse_config(data, "<command line>")
