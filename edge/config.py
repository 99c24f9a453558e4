"""The one YAML config file, loaded into typed, validated models.

Every key has a default, so a file holds only what it changes; an empty file is
a valid config. Unknown keys are rejected. Every error names the key path, the
bad value and what is allowed (`ConfigError.problems`).
"""

from __future__ import annotations

import logging
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from edge import paths
from edge.errors import ConfigError
from edge.sections import KEY_ERROR, KindSection, Registry, split_spec
from edge.sections import Section as _Section
from edge.sinks import SINKS
from edge.sinks.settings import NullSinkConfig, SinkConfig
from edge.sources import SOURCES
from edge.sources.settings import PhantomSourceConfig, SourceConfig
from edge.types import Roi
from edge.yamlio import load_yaml, quote

logger = logging.getLogger(__name__)

MAX_PROBLEMS = 20  # faults listed in one error; the rest are counted

__all__ = ["Config", "ConfigError", "SourceConfig", "SinkConfig", "load_config", "parse_config", "with_overrides",
           "format_validation_error", "record_problems", "split_spec"]

#: sections whose ``kind`` (or ``spec``) picks one model out of a registry
KIND_SECTIONS: dict[str, Registry] = {"source": SOURCES, "sink": SINKS}


class RoiConfig(_Section):
    """Rectangle of the ultrasound image inside the video-out frame (pixels)."""

    x: int = Field(..., ge=0, description="left edge of the ultrasound image in the video-out frame, pixels")
    y: int = Field(..., ge=0, description="top edge of the ultrasound image in the video-out frame, pixels")
    w: int = Field(..., gt=0, description="width of the ultrasound image, pixels")
    h: int = Field(..., gt=0, description="height of the ultrasound image, pixels")

    def to_roi(self) -> Roi:
        return Roi(self.x, self.y, self.w, self.h)


class ModelConfig(_Section):
    """The network the loop runs."""

    path: str | None = Field(
        None, description="a .tflite file; its spec is <model>.yaml beside it; null = the shipped model"
    )
    threads: int = Field(2, ge=1, le=64, description="interpreter (XNNPACK) threads, CPU cores")
    interpreter: Literal["auto", "ai_edge_litert", "tflite_runtime", "tensorflow"] = Field(
        "auto", description="TFLite interpreter package; auto = ai_edge_litert, else tflite_runtime, else tensorflow"
    )


class PresenceConfig(_Section):
    """Hysteresis on P(nerve) so the overlay does not flicker. Null = the model spec's value."""

    enter: float | None = Field(None, gt=0, lt=1, description="P(nerve) at or above which a frame votes 'nerve'")
    exit: float | None = Field(None, gt=0, lt=1, description="P(nerve) below which a frame votes 'no nerve'")
    min_frames_on: int | None = Field(None, ge=1, le=300, description="consecutive 'nerve' votes before the "
                                      "outline appears (null: the model spec's)")
    min_frames_off: int | None = Field(None, ge=1, le=300, description="consecutive 'no nerve' votes before it "
                                       "disappears (null: the model spec's)")
    smoothing: float | None = Field(
        None, gt=0, le=1, description="weight of the newest frame's P(nerve) in the running average that enter and "
        "exit are compared with (1 = each frame's own P; null: the model spec's)"
    )
    first_frame_decides: bool | None = Field(
        None, description="the first frame after a start or a gap sets the state by its own vote (P >= enter: "
        "outline at once) instead of starting at 'no nerve' (null: the model spec's)"
    )
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
    """How the outline and the status line are drawn on the live picture."""

    color: tuple[int, int, int] = Field((0, 220, 255), description="outline/fill colour, B,G,R, each 0-255")
    alpha: float = Field(0.3, ge=0, le=1, description="fill opacity, 0-1 (0 = outline only)")
    thickness: int = Field(2, ge=1, le=20, description="outline width, pixels at full frame size")
    show_stats: bool = Field(True, description="show fps and latency in the status line")
    stale_after_ms: float = Field(
        250.0, gt=0, description="a result older than this, milliseconds from capture to draw, is marked STALE"
    )
    no_signal_after_s: float = Field(1.0, gt=0, description="no frame for this long, seconds, shows NO SIGNAL")

    @field_validator("color")
    @classmethod
    def _check_color(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(c < 0 or c > 255 for c in v):
            raise ValueError(f"each of B,G,R must be 0-255, got {list(v)}")
        return v


class LoopConfig(_Section):
    """The processing loop."""

    stats_interval_s: float = Field(5.0, gt=0, description="seconds between stats log lines")
    max_frames: int | None = Field(
        None, gt=0, description="stop after this many processed frames (null = run until stopped)"
    )


class LoggingConfig(_Section):
    """What the log (journal) gets."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="least severe level logged (--log-level overrides it)"
    )


class RecordConfig(_Section):
    """Recording for review (`edge.recording`): when to record, where, and how much disk it may use."""

    mode: Literal["off", "always", "on-detection", "manual"] = Field(
        "off", description="off | always | on-detection (decision 'nerve') | manual (SIGUSR1, or 'r' in a window); "
        "needs roi or profile (or full_frame) unless the source is the phantom"
    )
    dir: str = Field(paths.RECORDINGS_DIR, min_length=1, description="folder of the recordings, one folder per "
                     "session below it (created 0700)")
    pre_roll_s: float = Field(3.0, ge=0, le=60, description="seconds before the trigger kept (ring buffer)")
    post_roll_s: float = Field(3.0, ge=0, le=600, description="seconds recorded after the trigger ends")
    max_gb: float = Field(
        10.0, ge=0.01, description="quota for all sessions, gigabytes (at least 0.01: the writer keeps a 1 MiB "
        "reserve); the oldest are deleted first; a session is split at a quarter"
    )
    max_days: float = Field(30.0, gt=0, description="sessions older than this many days are deleted")
    full_frame: bool = Field(
        False, description="also write the whole video-out frame (it may show patient details): full.mp4"
    )
    max_session_s: float = Field(
        600.0, gt=0, description="a session longer than this, seconds, is closed and a new one begun"
    )
    min_free_mb: float = Field(
        200.0, ge=0, description="stop recording when the disk has less free space than this, megabytes"
    )
    queue_frames: int = Field(64, ge=1, le=10000, description="frames waiting for the writer; more are dropped "
                              "and counted")
    queue_mb: float = Field(
        256.0, gt=0, description="memory cap of the frames waiting for the writer, megabytes (a 4K or 8K source "
        "fills queue_frames with gigabytes); more are dropped and counted; one frame always fits"
    )
    buffer_mb: float = Field(512.0, gt=0, description="memory cap of the pre-roll ring buffer, megabytes")


class HealthConfig(_Section):
    """Health an engineer can read without a screen (`edge.health`), and the systemd watchdog (`edge.notify`)."""

    status_file: str | None = Field(
        None,
        min_length=1,
        description="JSON status file replaced atomically every interval_s; null = off "
        f"(the appliance config: {paths.STATUS_FILE})",
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
    """The whole file. Each key is a section; a section left out keeps all its defaults."""

    source: SOURCES.annotation = Field(  # type: ignore[valid-type] - a union built from the registry
        PhantomSourceConfig(),
        description=f"where frames come from: {{spec: 'kind:arg', ...}} or {{kind: ..., ...}}; kinds: "
        f"{', '.join(SOURCES.kinds)}",
    )
    roi: RoiConfig | None = Field(
        None, description="ultrasound image inside the video-out frame, pixels; null = whole frame (or the "
        "phantom's image)"
    )
    profile: str | None = Field(
        None, description="site profile YAML written by `nerveseg calibrate`; supplies the ROI (then leave roi unset)"
    )
    model: ModelConfig = Field(ModelConfig(), description="the network and its interpreter")
    presence: PresenceConfig = Field(PresenceConfig(), description="when the outline appears and disappears")
    overlay: OverlayConfig = Field(OverlayConfig(), description="how the outline and status line are drawn")
    sink: SINKS.annotation = Field(  # type: ignore[valid-type] - a union built from the registry
        NullSinkConfig(),
        description=f"where annotated frames go: {{spec: 'kind:arg', ...}} or {{kind: ..., ...}}; kinds: "
        f"{', '.join(SINKS.kinds)}",
    )
    loop: LoopConfig = Field(LoopConfig(), description="the processing loop: stats interval, frame limit")
    logging: LoggingConfig = Field(LoggingConfig(), description="log level")
    record: RecordConfig = Field(RecordConfig(), description="recording for review")
    health: HealthConfig = Field(HealthConfig(), description="status file, metrics and systemd watchdog")

    @field_validator("profile")
    @classmethod
    def _profile_or_roi(cls, v: str | None, info: ValidationInfo) -> str | None:
        # Two sources of the ROI would leave the reader guessing which one the box uses.
        if v is not None and info.data.get("roi") is not None:
            raise ValueError("roi and profile are both set; the site profile supplies the ROI: remove roi")
        if v is not None and not v.strip():
            raise ValueError("empty path; give the profile file or null")
        return v


def _flat_types(tp: Any) -> list[Any]:
    """The types a field may hold, with Optional/Union/Annotated/list layers taken off."""
    if get_origin(tp) is Annotated:
        return _flat_types(get_args(tp)[0])
    if get_origin(tp) in (Union, types.UnionType, list):
        return [t for arg in get_args(tp) for t in _flat_types(arg)]
    return [tp]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _field_target(field: FieldInfo) -> Any:
    """What an error location steps into below ``field``: a model class, ``{tag: model}`` for a union of
    models (pydantic puts the tag, or the model's name, into the location), or None."""
    members = [t for t in _flat_types(field.annotation) if _is_model(t)]
    if len(members) <= 1:
        return members[0] if members else None
    disc = field.discriminator if isinstance(field.discriminator, str) else None
    choices: dict[str, type[BaseModel]] = {}
    for m in members:
        if disc and disc in m.model_fields:
            choices[str(m.model_fields[disc].default)] = m
        choices.setdefault(m.__name__, m)
    return choices


def _walk(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[list[str], Any, str | None]:
    """Follow an error location through the models.

    Returns the key path as the reader wrote it (union tags left out), the model whose key the last
    element is (None when unknown), and the tag that picked that model out of a union (e.g. 'file').
    """
    parts: list[str] = []
    cur: Any = model
    tag: str | None = None
    for i, part in enumerate(loc):
        if isinstance(cur, dict):
            if str(part) in cur:
                tag, cur = str(part), cur[str(part)]
                continue
            cur = None
        parts.append(str(part))
        if i == len(loc) - 1:
            break
        if isinstance(part, int):
            continue  # a list index: the items are of the type already reached
        if _is_model(cur) and part in cur.model_fields:
            cur, tag = _field_target(cur.model_fields[part]), None
        else:
            cur, tag = None, None
    return parts, (cur if _is_model(cur) else None), tag


def _unknown_key(path: str, key: str, container: type[BaseModel] | None, tag: str | None) -> str:
    if container is not None and issubclass(container, KindSection) and tag is not None:
        registry = KIND_SECTIONS.get(container.section)
        what = f"the {tag} {container.section}"
        owners = registry.kind_of_key(key) if registry is not None else []
        where = f" ({key} belongs to {', '.join(owners)})" if owners else ""
        return f"{path}: unknown key for {what}{where}; allowed keys for {what}: {', '.join(container.input_keys())}"
    if container is not None:
        return f"{path}: unknown key; allowed keys here: {', '.join(container.model_fields)}"
    return f"{path}: unknown key"


def format_validation_error(err: ValidationError, model: type[BaseModel] = Config) -> list[str]:
    """One line per pydantic error: ``key.path: got <bad value>: <what is allowed>``.

    Locations are given as the file's keys: a union's tag (``source.file.fourcc``) is left out of
    the path and named in the message instead (``unknown key for a file source``).
    """
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        parts, container, tag = _walk(model, loc)
        if e["type"] == KEY_ERROR:  # raised on a whole section about one of its keys (edge.sections)
            ctx = e.get("ctx") or {}
            parts = parts + [ctx["key"]] if ctx.get("key") else parts
            path = ".".join(parts) or "(top level)"
            lines.append(f"{path}: got {quote(ctx.get('value'))}: {ctx.get('reason', e['msg'])}")
            continue
        path = ".".join(parts) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(_unknown_key(path, str(loc[-1]), container, tag))
            continue
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if e["type"] == "missing":
            picked = tag is not None and container is not None and issubclass(container, KindSection)
            lines.append(f"{path}: required key is missing" + (f" for the {tag} {container.section}" if picked else ""))
        else:
            hint = ""
            if isinstance(e.get("input"), bool) and e["type"] in ("literal_error", "string_type"):
                # YAML 1.1 reads unquoted off/on/no/yes as false/true
                hint = f" (YAML reads unquoted off/on/no/yes as {str(e['input']).lower()}: put the word in quotes, " \
                       "e.g. mode: \"off\")"
            lines.append(f"{path}: got {quote(e.get('input'))}: {msg}{hint}")
    if len(lines) > MAX_PROBLEMS:  # a list of thousands of bad values: the first few say what is wrong
        lines[MAX_PROBLEMS:] = [f"... and {len(lines) - MAX_PROBLEMS} more faults of the same kind"]
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
        data = load_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(str(p), [f"{where}YAML syntax error: {problem}"]) from None
    return parse_config(data, str(p))


def with_overrides(cfg: Config, **sections: dict[str, Any]) -> Config:
    """Return a copy of ``cfg`` with keys of some sections replaced, validated again.

    Used for command-line overrides (``--source``, ``--model``, ``--frames``) so they
    get the same checks and messages as the file. For ``source`` and ``sink``, a
    ``spec`` (or ``kind``) among the values replaces the kind and its argument; of
    the section's other keys, those the new kind also has are kept (``--source
    file:clip.mp4`` on a config with a 1920x1080 capture plays the clip at 1920x1080),
    the others are dropped. The values given are checked against the new kind:
    a key it does not have is an error, as in the file.
    """
    data = cfg.model_dump()
    for name, values in sections.items():
        if not values:
            continue
        current = dict(data.get(name) or {})
        registry = KIND_SECTIONS.get(name)
        if registry is not None and ("spec" in values or "kind" in values):
            current = _kept_for_new_kind(registry, current, values)
        data[name] = {**current, **values}
    return parse_config(data, "<command line>")


def _kept_for_new_kind(registry: Registry, current: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Keys of ``current`` that still apply once ``values`` name the kind (with its argument)."""
    try:
        kind = registry.pick_kind(values)["kind"]
    except PydanticCustomError:
        return {}  # a bad spec or kind: the validation that follows names it
    model = registry[kind].config
    dropped = {"kind", model.spec_arg}
    return {k: v for k, v in current.items() if k in model.model_fields and k not in dropped}
