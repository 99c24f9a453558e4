"""Run one TFLite model on one preprocessed frame: `ModelRunner.infer(x) -> Result`.

No TensorFlow here. The interpreter comes from ``ai_edge_litert`` (preferred:
XNNPACK for int8, works with numpy 2), else ``tflite_runtime`` (its last release,
2.14, crashes with numpy 2 and skips XNNPACK for int8: a fallback only), else
``tensorflow.lite``. With ``interpreter="auto"`` the first that imports wins; an
explicit choice that is missing is an error.

At load, the model's sidecar spec (`edge.spec.load_spec`, hash checked) must
agree with the model: input ``(1, H, W, 1)`` at the spec's size, and two
outputs whose signature names are the spec's output names (a model without a
signature falls back to the outputs' shapes, with a warning). Output tensors
are then read by index, so a frame costs one ``set_tensor``, one ``invoke`` and
two ``get_tensor`` calls, with no signature-runner overhead.

Inputs and outputs may be float32, int8 or uint8; quantised tensors are
converted with their own (scale, zero_point), so the caller always passes and
gets float32.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ModelError
from edge.spec import ModelSpec, load_spec, require_model_file, sha256_file
from edge.types import Result

logger = logging.getLogger(__name__)

INTERPRETERS = ("auto", "ai_edge_litert", "tflite_runtime", "tensorflow")
# choice -> (module, dotted attribute of the Interpreter class in it, distribution name for the
# version and the install hint). TensorFlow's public ``tf.lite`` is an API alias, not the
# importable package ``tensorflow.lite``, hence the attribute path.
_BACKENDS = {
    "ai_edge_litert": ("ai_edge_litert.interpreter", "Interpreter", "ai-edge-litert"),
    "tflite_runtime": ("tflite_runtime.interpreter", "Interpreter", "tflite-runtime"),
    "tensorflow": ("tensorflow", "lite.Interpreter", "tensorflow"),
}
_INT_RANGES = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255)}


def load_interpreter_class(choice: str = "auto") -> tuple[type, str]:
    """Return ``(Interpreter class, backend description)`` for ``choice`` (one of `INTERPRETERS`).

    "auto" tries ai_edge_litert, tflite_runtime, then tensorflow. Raises `ModelError`
    for an unknown choice, a missing explicit choice (naming the package to
    install), or when "auto" finds none.
    """
    if choice not in INTERPRETERS:
        raise ModelError(f"unknown interpreter {choice!r}; allowed: {', '.join(INTERPRETERS)}")
    order = list(_BACKENDS) if choice == "auto" else [choice]
    failures = []
    for name in order:
        module, attr, dist = _BACKENDS[name]
        try:
            cls: Any = importlib.import_module(module)
            for part in attr.split("."):
                cls = getattr(cls, part)
        except Exception as e:  # noqa: BLE001 - tflite_runtime on numpy 2 fails with AttributeError, not ImportError
            failures.append(f"{name}: {type(e).__name__}: {e}")
            continue
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            # tensorflow-cpu / tf-nightly ship 'tensorflow' under another distribution name
            version = getattr(importlib.import_module(name.split(".")[0]), "__version__", "?")
        if failures:
            logger.info("TFLite interpreter: %s (not available: %s)", name, "; ".join(failures))
        return cls, f"{name} {version}"
    if choice != "auto":
        raise ModelError(
            f"interpreter {choice!r} is not installed or does not import ({failures[0]}); "
            f"install it with 'pip install {_BACKENDS[choice][2]}' or use interpreter: auto"
        )
    raise ModelError(
        f"no TFLite interpreter found; install one with 'pip install ai-edge-litert' (tried: {'; '.join(failures)})"
    )


class ModelRunner:
    """One TFLite model with its spec, ready to run frame after frame (not thread-safe: one caller).

    model_path: the .tflite file; its spec is the sidecar ``.yaml`` beside it.
    threads: interpreter (XNNPACK) threads, >= 1.
    interpreter: one of `INTERPRETERS`.
    spec: the spec already loaded for this file (`edge.plan.resolve_run` loads it once); None loads
        the sidecar. Either way its recorded hash must match the file.

    Raises `ModelError` naming the file and the fault (missing model or spec,
    not a TFLite flatbuffer, spec/model mismatch, hash mismatch, interpreter missing).
    """

    def __init__(self, model_path: str | Path, threads: int = 2, interpreter: str = "auto",
                 spec: ModelSpec | None = None):
        self._path = Path(model_path)
        self._threads = threads
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ModelError(f"threads must be a positive int, got {threads!r}")
        require_model_file(self._path)
        cls, self._backend = load_interpreter_class(interpreter)
        self._sha256 = sha256_file(self._path)
        if spec is None:
            spec = load_spec(self._path)  # raises ModelError: missing/invalid spec, hash mismatch
        elif spec.tflite_sha256 is not None and spec.tflite_sha256 != self._sha256:
            raise ModelError(f"model file {self._path} changed after its spec was loaded (sha256 differs): "
                             "start again")
        self._spec: ModelSpec = spec
        if self._spec.tflite_sha256 is None:
            logger.warning(
                "model spec of %s records no tflite_sha256: cannot tell whether it belongs to this file", self._path
            )

        try:
            self._interp = cls(model_path=str(self._path), num_threads=threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"model file {self._path} is not a usable TFLite model: {e}") from None

        h, w = self._spec.preprocess.height, self._spec.preprocess.width
        self._hw = (h, w)
        inputs = self._interp.get_input_details()
        if len(inputs) != 1:
            raise ModelError(f"model {self._path} has {len(inputs)} inputs, expected 1 image of shape (1, {h}, {w}, 1)")
        inp = inputs[0]
        if tuple(int(d) for d in inp["shape"]) != (1, h, w, 1):
            raise ModelError(
                f"model {self._path} takes input {tuple(int(d) for d in inp['shape'])} "
                f"but its spec {self._spec.name!r} says (1, {h}, {w}, 1)"
            )
        self._in_index = int(inp["index"])
        self._in_dtype = np.dtype(inp["dtype"])
        integer_input = self._in_dtype in _INT_RANGES
        if integer_input != (self._spec.quantization == "int8"):
            # the status file, the recordings and the card would report the wrong model kind
            raise ModelError(
                f"model {self._path} takes {self._in_dtype.name} input but its spec {self._spec.name!r} says "
                f"quantization {self._spec.quantization}: the spec belongs to another conversion of this model"
            )
        self._in_buf = np.zeros((1, h, w, 1), self._in_dtype)
        self._in_scale, self._in_zero = self._quant_params(inp, "input")
        # float scratch for quantising, so infer() allocates nothing on the input side
        self._in_tmp = np.empty((h, w), np.float32) if self._in_dtype in _INT_RANGES else None

        mask_d, pres_d = self._find_outputs()
        self._mask_index, self._pres_index = int(mask_d["index"]), int(pres_d["index"])
        self._mask_q = self._quant_params(mask_d, f"output {self._spec.outputs.mask!r}")
        self._pres_q = self._quant_params(pres_d, f"output {self._spec.outputs.presence!r}")
        logger.info(
            "model %s (%s, %s, %dx%d%s) on %s, %d thread(s)",
            self._path.name,
            self._spec.name,
            self._in_dtype.name,
            w,
            h,
            ", UNTRAINED" if self._spec.untrained else "",
            self._backend,
            threads,
        )

    def _quant_params(self, detail: dict[str, Any], what: str) -> tuple[float, int]:
        """(scale, zero_point) of an int8/uint8 tensor, (1.0, 0) of a float32 one."""
        dtype = np.dtype(detail["dtype"])
        if dtype == np.float32:
            return 1.0, 0
        if dtype not in _INT_RANGES:
            raise ModelError(f"model {self._path}: {what} has dtype {dtype.name}; supported: float32, int8, uint8")
        scale, zero = detail["quantization"]
        if not scale:
            raise ModelError(f"model {self._path}: {what} is {dtype.name} without quantisation parameters")
        return float(scale), int(zero)

    def _find_outputs(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Details of the (mask, presence) output tensors, by signature name, else by shape."""
        h, w = self._hw
        names = self._spec.outputs
        sigs = self._interp.get_signature_list()
        if sigs:
            key = "serving_default" if "serving_default" in sigs else next(iter(sigs))
            by_name = self._interp.get_signature_runner(key).get_output_details()
            missing = [n for n in (names.mask, names.presence) if n not in by_name]
            if missing:
                raise ModelError(
                    f"model {self._path} has no output named {', '.join(map(repr, missing))} "
                    f"(spec {self._spec.name!r}); signature {key!r} outputs: {', '.join(sorted(by_name))}"
                )
            mask_d, pres_d = by_name[names.mask], by_name[names.presence]
        else:
            logger.warning("model %s has no signature: finding its outputs by shape", self._path)
            mask_d = pres_d = None
            for d in self._interp.get_output_details():
                shape = tuple(int(s) for s in d["shape"])
                if shape == (1, h, w, 1) and mask_d is None:
                    mask_d = d
                elif shape == (1, 1) and pres_d is None:
                    pres_d = d
            if mask_d is None or pres_d is None:
                have = [tuple(int(s) for s in d["shape"]) for d in self._interp.get_output_details()]
                raise ModelError(
                    f"model {self._path} has no signature and its outputs {have} are not "
                    f"a (1, {h}, {w}, 1) mask and a (1, 1) presence"
                )
        for d, want, what in ((mask_d, (1, h, w, 1), names.mask), (pres_d, (1, 1), names.presence)):
            shape = tuple(int(s) for s in d["shape"])
            if shape != want:
                raise ModelError(f"model {self._path}: output {what!r} has shape {shape}, expected {want}")
        return mask_d, pres_d

    def infer(self, x: np.ndarray) -> Result:
        """Run the model on one preprocessed frame.

        x: float32 ``(H, W)`` at the spec's input size, as made by
            `edge.preprocess.preprocess`; not modified, not kept.
        Returns a `Result` whose ``mask`` is a fresh float32 ``(H, W)`` array in [0, 1]
        (owned by the Result), ``p_nerve`` a float in [0, 1] and ``t_infer_ns`` the
        duration of ``invoke()`` alone.
        """
        if x.shape != self._hw:
            raise ValueError(f"expected input of shape {self._hw} (H, W), got {x.shape}")
        dst = self._in_buf[0, :, :, 0]
        if self._in_tmp is None:
            np.copyto(dst, x, casting="same_kind")
        else:
            lo, hi = _INT_RANGES[self._in_dtype]
            tmp = self._in_tmp
            np.multiply(x, np.float32(1.0 / self._in_scale), out=tmp, casting="same_kind")
            tmp += np.float32(self._in_zero)
            np.rint(tmp, out=tmp)
            np.clip(tmp, lo, hi, out=tmp)
            np.copyto(dst, tmp, casting="unsafe")
        self._interp.set_tensor(self._in_index, self._in_buf)
        t0 = time.perf_counter_ns()
        self._interp.invoke()
        t_infer = time.perf_counter_ns() - t0
        mask = self._dequantise(self._interp.get_tensor(self._mask_index), self._mask_q).reshape(self._hw)
        np.clip(mask, 0.0, 1.0, out=mask)
        p = float(self._dequantise(self._interp.get_tensor(self._pres_index), self._pres_q).reshape(()))
        return Result(mask=mask, p_nerve=min(max(p, 0.0), 1.0), t_infer_ns=t_infer)

    @staticmethod
    def _dequantise(q: np.ndarray, params: tuple[float, int]) -> np.ndarray:
        """float32 copy of an output tensor (get_tensor already returned a copy for float32)."""
        scale, zero = params
        if q.dtype == np.float32:
            return q
        out = q.astype(np.float32)
        out -= np.float32(zero)
        out *= np.float32(scale)
        return out

    @property
    def spec(self) -> ModelSpec:
        """The validated sidecar spec."""
        return self._spec

    @property
    def input_hw(self) -> tuple[int, int]:
        """(height, width) of the network input in pixels."""
        return self._hw

    @property
    def backend(self) -> str:
        """Interpreter package and version, e.g. ``"ai_edge_litert 2.3.0"``."""
        return self._backend

    @property
    def model_path(self) -> Path:
        return self._path

    @property
    def threads(self) -> int:
        """Interpreter (XNNPACK) threads the model was loaded with."""
        return self._threads

    @property
    def sha256(self) -> str:
        """SHA-256 (hex) of the .tflite file as loaded."""
        return self._sha256

    def __repr__(self) -> str:
        return f"ModelRunner({str(self._path)!r}, {self._spec.name!r}, {self._backend!r})"
