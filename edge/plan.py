"""What a run will do, settled once: `resolve_run(config) -> RunPlan`.

A run combines three documents: the config (YAML, `edge.config.Config`), the model spec (the
sidecar YAML of the .tflite, `edge.spec.ModelSpec`) and, optionally, the site profile written by
`nerveseg calibrate` (`edge.profile.SiteProfile`). Each is valid on its own; this module is the one
place that combines them and refuses combinations that cannot run, so that "check-config says
valid" means "run will start":

- presence rules: each value from the config's ``presence`` section where set, else from the spec's
  ``thresholds``; the combination must still be a hysteresis (0 < exit <= enter < 1);
- ROI: the config's ``roi``, else the profile's (the config refuses both at once); when neither is
  set the source's own `image_roi` (the phantom) applies, else the whole frame (`RunPlan.roi_for`);
- flips (mirroring of the network input) and blanking rectangles: from the profile.

`nerveseg run`, `check-config`, `bench`, `review` and `eval --live` all start from a `RunPlan`; the
live loop and review build their `edge.analyze.Analyzer` from it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from edge.config import Config, PresenceConfig
from edge.errors import ConfigError
from edge.spec import ModelSpec, ThresholdsSpec, load_spec, require_model_file
from edge.types import Roi

if TYPE_CHECKING:  # pragma: no cover - imports for annotations only (runner and profile load OpenCV)
    from edge.presence import PresenceTracker
    from edge.profile import SiteProfile
    from edge.runner import ModelRunner
    from edge.sources.base import FrameSource

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PresenceRules:
    """The temporal rules the bedside applies (see `edge.presence.PresenceTracker`).

    enter / exit: P(nerve) thresholds of the hysteresis, 0 < exit <= enter < 1.
    min_frames_on / min_frames_off: consecutive votes before the outline appears / disappears.
    alpha: weight of the newest mask in the running average (1 = no smoothing).
    p_alpha: weight of the newest P(nerve) in the running average the thresholds compare (1 = none).
    first_frame_decides: the first frame after a (re)start sets the state by its own vote.
    mask_threshold: pixel probability drawn as nerve.
    origin: for each rule, "config" or "spec" (where its value came from; named in errors and logs).
    """

    enter: float
    exit: float
    min_frames_on: int
    min_frames_off: int
    alpha: float
    mask_threshold: float
    p_alpha: float = 1.0
    first_frame_decides: bool = False
    origin: dict[str, str] = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict[str, float | int]:
        """The rules by name (enter, exit, min_frames_on, min_frames_off, alpha, mask_threshold, p_alpha,
        first_frame_decides)."""
        return {k: getattr(self, k) for k in ("enter", "exit", "min_frames_on", "min_frames_off", "alpha",
                                              "mask_threshold", "p_alpha", "first_frame_decides")}

    def tracker(self) -> PresenceTracker:
        """A fresh tracker applying these rules (one per video stream)."""
        from edge.presence import PresenceTracker

        return PresenceTracker(self.enter, self.exit, self.min_frames_on, self.min_frames_off, self.alpha,
                               self.p_alpha, self.first_frame_decides)


# config key under `presence` -> (field of ThresholdsSpec, field of PresenceRules)
_RULE_KEYS = (
    ("enter", "presence_enter", "enter"),
    ("exit", "presence_exit", "exit"),
    ("min_frames_on", "min_frames_on", "min_frames_on"),
    ("min_frames_off", "min_frames_off", "min_frames_off"),
    ("mask_smoothing", "mask_smoothing", "alpha"),
    ("mask_threshold", "mask", "mask_threshold"),
    ("smoothing", "presence_smoothing", "p_alpha"),
    ("first_frame_decides", "first_frame_decides", "first_frame_decides"),
)


def settle_rules(presence: PresenceConfig, thresholds: ThresholdsSpec, where: str = "<config>",
                 model: str = "the model spec") -> PresenceRules:
    """Combine the config's ``presence`` overrides with the spec's ``thresholds``.

    Raises `ConfigError` (exit code 2) naming the keys, their values and where each came from when
    the combination is not a hysteresis (e.g. ``presence.enter: 0.01`` below the spec's exit).
    """
    values: dict[str, float | int] = {}
    origin: dict[str, str] = {}
    for key, spec_key, rule in _RULE_KEYS:
        own = getattr(presence, key)
        values[rule] = getattr(thresholds, spec_key) if own is None else own
        origin[rule] = "spec" if own is None else "config"
    enter, exit_ = values["enter"], values["exit"]
    if exit_ > enter:

        def said(rule: str, key: str) -> str:
            return f"presence.{key} = {values[rule]:g} ({'this config' if origin[rule] == 'config' else model})"

        raise ConfigError(where, [
            f"{said('exit', 'exit')} is above {said('enter', 'enter')}: the outline would never be stable; "
            "allowed: exit <= enter (set both in presence:, or leave both null to use the model's)"
        ])
    return PresenceRules(**values, origin=origin)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RunPlan:
    """Everything a run needs that does not depend on an opened device. Frozen: made once, shared.

    config: the validated config. model_path: the .tflite that will run; spec: its sidecar spec
    (hash-checked). profile / profile_path: the site profile, when the config names one.
    roi: the configured ROI (config ``roi`` or the profile's), None when neither sets one.
    flips: (horizontal, vertical) mirroring of the network input (profile). blank: rectangles
    (full-frame pixels) never recorded (profile). rules: the settled presence rules.
    """

    config: Config
    model_path: Path
    spec: ModelSpec
    rules: PresenceRules
    roi: Roi | None = None
    flips: tuple[bool, bool] = (False, False)
    blank: tuple[Roi, ...] = ()
    profile: SiteProfile | None = None
    profile_path: Path | None = None

    def roi_for(self, source: FrameSource | None) -> Roi | None:
        """The ROI a run over ``source`` analyses: the configured one, else the source's own (the
        phantom knows where its image lies), else None (the whole frame)."""
        if self.roi is not None:
            return self.roi
        return None if source is None else source.image_roi

    def with_config(self, **sections: dict) -> RunPlan:
        """This plan with config overrides (`edge.config.with_overrides`) to the sections that do not take
        part in resolving it: source, sink, overlay, loop, record, health, logging. Changing the model,
        the presence rules, the ROI or the profile needs a new `resolve_run`: ValueError."""
        from edge.config import with_overrides

        settled = sorted(set(sections) & {"model", "presence", "roi", "profile"})
        if settled:
            raise ValueError(f"{', '.join(settled)} take part in resolving the plan: call resolve_run instead")
        return replace(self, config=with_overrides(self.config, **sections))

    def open_runner(self) -> ModelRunner:
        """Load the model with the config's threads and interpreter. Raises `ModelError` (exit code 3)."""
        from edge.runner import ModelRunner

        m = self.config.model
        runner = ModelRunner(self.model_path, threads=m.threads, interpreter=m.interpreter, spec=self.spec)
        if self.spec.untrained:
            logger.warning("model %s is UNTRAINED (random weights): its outlines mean nothing", self.spec.name)
        return runner


def model_path_of(cfg: Config) -> Path:
    """The .tflite a config names (``model.path``), else the shipped one."""
    from edge.models import default_model_path

    return Path(cfg.model.path).expanduser() if cfg.model.path else default_model_path()


def resolve_run(cfg: Config, *, where: str = "<config>", runner: ModelRunner | None = None) -> RunPlan:
    """Load the spec and the site profile once and settle everything a run needs.

    ``runner``: an already-opened model (tests, the benchmark's many runs) whose path and spec
    stand in for the config's ``model.path``.
    Raises `ConfigError` (exit code 2: profile missing or invalid, rules that contradict each
    other, sink settings no restart can fix: `edge.sinks.check_sink`) or `ModelError` (exit code 3:
    model or spec missing, corrupt, not matching).
    """
    if runner is not None:
        model_path, spec = Path(runner.model_path), runner.spec
    else:
        model_path = model_path_of(cfg)
        require_model_file(model_path)
        spec = load_spec(model_path)  # raises ModelError naming the file and the fault
    profile = None
    profile_path = None
    roi = cfg.roi.to_roi() if cfg.roi is not None else None
    flips: tuple[bool, bool] = (False, False)
    blank: tuple[Roi, ...] = ()
    if cfg.profile:
        from edge.profile import load_profile

        profile_path = Path(cfg.profile).expanduser()
        profile = load_profile(profile_path)  # raises ConfigError naming the profile and its keys
        roi = profile.image_roi  # config validation refuses roi and profile together
        flips = profile.flips
        blank = profile.blank_rois
    size = cfg.source.frame_size()
    if roi is not None and size is not None and not roi.clip_to(*size):
        # the loop would show the picture unanalysed forever: refuse it before the first frame
        said = f"the site profile {profile_path}" if profile_path else "roi"
        raise ConfigError(where, [
            f"roi (from {said}) x={roi.x} y={roi.y} w={roi.w} h={roi.h} does not fit the {size[0]}x{size[1]} "
            "frames source.width/height ask for: recalibrate for this capture size, or fix either"
        ])
    rules = settle_rules(cfg.presence, spec.thresholds, where=where, model=f"model spec of {model_path.name}")
    from edge.sinks import check_sink  # the sink's own settings (a video file's folder...): nothing opened

    check_sink(cfg.sink, where=where)
    return RunPlan(config=cfg, model_path=model_path, spec=spec, rules=rules, roi=roi,
                   flips=(bool(flips[0]), bool(flips[1])), blank=tuple(blank), profile=profile,
                   profile_path=profile_path)
