"""The acceptance targets (`targets.yaml` beside this file), and judging a report against them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge.bench.inputs import parse_input
from edge.config import format_validation_error
from edge.errors import ConfigError
from edge.yamlio import load_yaml

if TYPE_CHECKING:
    from edge.bench.models import BenchModel
    from edge.bench.results import BenchReport, RunResult

#: The targets file shipped with the package.
TARGETS_FILE = Path(__file__).with_name("targets.yaml")


class Targets(BaseModel):
    """What the model under test must reach: see the comments in `TARGETS_FILE`.

    input: an input name (`edge.bench.inputs.parse_input`), e.g. ``hdmi-1920x1080``; threads: interpreter
    threads; fps_min: frames per second; latency_p99_max_ms: milliseconds; speedup_min: a ratio of fps.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str
    threads: int = Field(ge=1, le=64)
    fps_min: float = Field(gt=0)
    latency_p99_max_ms: float = Field(gt=0)
    speedup_min: float = Field(gt=0)

    @field_validator("input")
    @classmethod
    def _check_input(cls, v: str) -> str:
        try:
            return parse_input(v).name
        except ConfigError as e:
            raise ValueError(e.problems[0].removeprefix("--input: ")) from None


def load_targets(path: str | Path = TARGETS_FILE) -> Targets:
    """Read and validate a targets file. Raises `ConfigError` naming the file, the key and what is allowed."""
    p = Path(path)
    try:
        data = load_yaml(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(str(p), [f"cannot read the benchmark targets: {e}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(str(p), [f"(top level): got {type(data).__name__}: must be a mapping of targets"])
    try:
        return Targets.model_validate(data)
    except ValidationError as e:
        raise ConfigError(str(p), format_validation_error(e, Targets)) from None


def overload_threads(targets: Targets, threads: list[int]) -> int:
    """The thread count of the overload runs: the targets' when it is among ``threads``, else the largest."""
    return targets.threads if targets.threads in threads else max(threads)


def _target(
    name: str, value: float | None, threshold: float, unit: str, detail: str, higher_is_better: bool = True
) -> dict[str, Any]:
    if value is None:
        status = "SKIP"
    elif higher_is_better:
        status = "PASS" if value >= threshold else "FAIL"
    else:
        status = "PASS" if value <= threshold else "FAIL"
    return {"name": name, "status": status, "value": value, "threshold": threshold, "unit": unit, "detail": detail}


def evaluate_targets(report: BenchReport) -> list[dict[str, Any]]:
    """The three targets for the model under test (the first model) as PASS/FAIL/SKIP records:
    ``fps``, ``latency_p99``, ``speedup_vs_classic``."""
    out: list[dict[str, Any]] = []
    if not report.models:
        return out
    tg = report.targets
    main = report.models[0]

    def find(runs: list[RunResult], model: BenchModel | None = None, role: str | None = None) -> RunResult | None:
        for r in runs:
            if r.input == tg.input and r.threads == tg.threads and (model is None or r.model is model):
                if role is None or r.model.role == role:
                    return r
        return None

    where = f"{main.label}, {tg.input}, {tg.threads} threads"
    missing = "not measured (no such run)"
    hd = find(report.runs, main)
    what = f">= {tg.fps_min:g} fps end to end, {where}"
    out.append(_target("fps", hd and hd.fps, tg.fps_min, "fps", what if hd else f"{what}: {missing}"))
    ov = find(report.overload, main)
    what = f"capture-to-display p99 <= {tg.latency_p99_max_ms:g} ms, {where}"
    if ov is not None:
        out.append(_target("latency_p99", ov.latency.p99, tg.latency_p99_max_ms, "ms", f"{what}, overload run",
                           False))
    elif hd is not None:
        detail = f"{what}, throughput run (no overload run: the latency includes one frame waiting)"
        out.append(_target("latency_p99", hd.latency.p99, tg.latency_p99_max_ms, "ms", detail, False))
    else:
        out.append(_target("latency_p99", None, tg.latency_p99_max_ms, "ms", f"{what}: {missing}", False))
    classic = find(report.runs, role="classic-unet")
    what = f">= {tg.speedup_min:g}x the fps of the classic float32 U-Net, {where}"
    if hd is None or classic is None or main.role == "classic-unet":
        why = missing if hd is None else "no classic-unet run with that input and threads"
        out.append(_target("speedup_vs_classic", None, tg.speedup_min, "x", f"{what}: {why}"))
    else:
        detail = f"{what} ({hd.fps:.1f} vs {classic.fps:.1f} fps)"
        out.append(_target("speedup_vs_classic", hd.fps / classic.fps, tg.speedup_min, "x", detail))
    return out
