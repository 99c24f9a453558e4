"""The model spec: everything the bedside must know to feed a model and read it.

It travels with the model as a sidecar YAML file ``<model>.yaml`` beside
``<model>.tflite`` and is written by the converter from the same values the
model was trained with, so training and bedside cannot drift apart: input
size, normalisation and speckle filter are *not* runtime config keys.

The spec records the SHA-256 of its .tflite; a spec that belongs to another
file is rejected (`ModelError`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge.errors import ModelError
from edge.yamlio import load_yaml, quote

MAX_PROBLEMS = 20  # faults listed in one error

SPEC_FORMAT = "nerveseg-model-spec/1"
FILTERS = ("none", "median", "gaussian", "bilateral", "lee")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PreprocessSpec(_Strict):
    """How a ROI crop becomes the network input. Pure data; see `edge.preprocess`.

    The network input is ``(height, width, 1)`` float32 ``(gray/255 - mean) / std``
    before the runner quantises it.
    """

    height: int = Field(..., gt=0, le=1024)
    width: int = Field(..., gt=0, le=1024)
    filter: Literal["none", "median", "gaussian", "bilateral", "lee"] = "none"
    filter_size: int = Field(5, ge=3, le=15, description="kernel size in pixels at the model's input size (odd)")
    filter_sigma: float = Field(
        1.0,
        gt=0,
        le=100,
        description="strength: gaussian sigma (px); bilateral range sigma 25*sigma gray levels; "
        "lee noise std 10*sigma gray levels",
    )
    filter_at: Literal["input", "roi"] = Field(
        "input", description="denoise after the resize (cheap) or on the full-resolution ROI crop"
    )
    mean: float = Field(0.0, description="subtracted after scaling gray to 0-1")
    std: float = Field(1.0, gt=0, description="divides after the mean")

    @model_validator(mode="after")
    def _odd(self) -> PreprocessSpec:
        if self.filter_size % 2 == 0:
            raise ValueError(f"filter_size must be odd, got {self.filter_size}")
        return self


class OutputsSpec(_Strict):
    mask: str = "mask"  # signature output name of the per-pixel probability map, shape (1, H, W, 1)
    presence: str = "nerve_present"  # signature output name of P(nerve), shape (1, 1)


class ThresholdsSpec(_Strict):
    mask: float = Field(0.5, gt=0, lt=1)
    presence_enter: float = Field(0.6, gt=0, lt=1)
    presence_exit: float = Field(0.4, gt=0, lt=1)
    # The temporal rules the bedside applies with this model, tuned on video (the config's `presence`
    # section overrides each when set).
    min_frames_on: int = Field(3, ge=1, le=300, description="consecutive 'nerve' votes before the outline appears")
    min_frames_off: int = Field(5, ge=1, le=300, description="consecutive 'no nerve' votes before it disappears")
    mask_smoothing: float = Field(0.5, gt=0, le=1, description="weight of the newest mask in the running average")
    presence_smoothing: float = Field(1.0, gt=0, le=1, description="weight of the newest frame's P(nerve) in the "
                                      "running average the enter/exit thresholds compare (1 = no averaging)")
    first_frame_decides: bool = Field(False, description="the first frame after a (re)start sets the state by its "
                                      "own vote instead of starting at 'no nerve'")

    @model_validator(mode="after")
    def _order(self) -> ThresholdsSpec:
        if self.presence_exit > self.presence_enter:
            raise ValueError("presence_exit must be <= presence_enter")
        return self


class ModelSpec(_Strict):
    format: Literal["nerveseg-model-spec/1"] = SPEC_FORMAT
    name: str
    untrained: bool = Field(False, description="random weights: the overlay says UNTRAINED on screen")
    quantization: Literal["int8", "float32"]
    preprocess: PreprocessSpec
    outputs: OutputsSpec = OutputsSpec()
    thresholds: ThresholdsSpec = ThresholdsSpec()
    tflite_sha256: str | None = Field(None, description="hash of the .tflite this spec belongs to")
    provenance: dict[str, Any] = Field(default_factory=dict, description="builder options, data, metrics, dates")


def spec_path_for(model_path: str | Path) -> Path:
    """``model.tflite`` -> ``model.yaml`` (the sidecar)."""
    return Path(model_path).with_suffix(".yaml")


def require_model_file(path: str | Path, what: str = "model file") -> None:
    """Raise `ModelError` naming ``path`` unless it is a file this process can open (missing, a folder,
    or no permission on it or a folder above it)."""
    try:
        ok = Path(path).is_file()
    except OSError as e:  # a folder above it the service user may not search
        raise ModelError(f"{what} {path} cannot be reached: {e.strerror or e} (the service user needs access)") \
            from None
    if not ok:
        raise ModelError(f"{what} {path} not found")


def sha256_file(path: str | Path) -> str:
    """SHA-256 (hex) of a model file. Raises `ModelError` naming the file when it cannot be read."""
    h = hashlib.sha256()
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the with below; opened here to name the fault
    except OSError as e:
        raise ModelError(f"model file {path} cannot be read: {e.strerror or e} (the service user needs read "
                         "access)") from None
    with f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_spec(model_path: str | Path, verify_hash: bool = True) -> ModelSpec:
    """Read and validate the sidecar spec of ``model_path``.

    Raises `ModelError` naming the file and the fault: missing, unreadable YAML,
    invalid keys, or a hash that does not match the model file.
    """
    model_path = Path(model_path)
    sp = spec_path_for(model_path)
    if not sp.is_file():
        raise ModelError(
            f"model spec {sp} not found: every model needs its sidecar spec (written by 'nerveseg convert')"
        )
    try:
        data = load_yaml(sp.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ModelError(f"model spec {sp} is not readable YAML: {e}") from None
    if not isinstance(data, dict):
        raise ModelError(f"model spec {sp} must be a mapping, got {type(data).__name__}")
    try:
        spec = ModelSpec.model_validate(data)
    except ValidationError as e:
        faults = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {quote(err.get('input'))})"
            for err in e.errors()[:MAX_PROBLEMS]
        )
        raise ModelError(f"model spec {sp} is invalid: {faults}") from None
    if verify_hash and spec.tflite_sha256 and model_path.is_file():
        actual = sha256_file(model_path)
        if actual != spec.tflite_sha256:
            raise ModelError(
                f"model spec {sp} belongs to another model: it records sha256 {spec.tflite_sha256[:12]}..., "
                f"{model_path} has {actual[:12]}..."
            )
    return spec


def save_spec(spec: ModelSpec, model_path: str | Path) -> Path:
    """Write ``spec`` beside ``model_path`` (filling in the model's hash) and return its path."""
    model_path = Path(model_path)
    if model_path.is_file():
        spec = spec.model_copy(update={"tflite_sha256": sha256_file(model_path)})
    sp = spec_path_for(model_path)
    sp.write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    return sp
