"""Does a converted TFLite model still answer like the Keras model it came from?

`check_agreement` runs both on the same held-out, preprocessed real frames and
compares *every* output: the TFLite side goes through `edge.runner.ModelRunner`,
exactly the bedside path (its spec, its input quantisation, its output
dequantisation), so a fault anywhere on that path shows here. A past failure
is why the presence output gets as many checks as the mask: int8
calibration on nearly all-"nerve" frames once collapsed P(nerve) to a constant
0.5 while the mask survived, which a mask-only check passes.

`Tolerances` holds the bounds, `failures` lists what broke them. The defaults
were measured (see `INT8` and `FLOAT32`); the measured values are in the
comments there.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)

# Per-frame Dice only on frames where either mask covers at least this share of the pixels: on a
# mask of a handful of pixels one flipped pixel moves Dice by 0.2, which says nothing about the model.
MIN_MASK_FRACTION = 0.01
# Below this spread of the float model's P(nerve) over the frames, correlation and spread ratio are
# undefined or noise (e.g. an untrained model answering ~0.5 everywhere): reported as None, not judged.
MIN_P_STD = 0.01
KERAS_BATCH = 32


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean arrays; 1.0 when both are empty (they agree)."""
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(a, b).sum()) / s


def _keras_outputs(model: keras.Model, x: np.ndarray, mask_name: str, presence_name: str) -> tuple[np.ndarray, ...]:
    """(masks (N, H, W), p (N,)) of the Keras model in inference mode; x float32 (N, H, W, 1)."""
    fixed = model.inputs[0].shape[0]
    out = model.predict(x, batch_size=int(fixed) if fixed else KERAS_BATCH, verbose=0)
    if not isinstance(out, dict) or mask_name not in out or presence_name not in out:
        have = sorted(out) if isinstance(out, dict) else type(out).__name__
        raise ValueError(
            f"Keras model {model.name} must output a dict with {mask_name!r} and {presence_name!r}, has {have}"
        )
    return (
        np.asarray(out[mask_name], np.float32).reshape(x.shape[:3]),
        np.asarray(out[presence_name], np.float32).reshape(len(x)),
    )


def check_agreement(
    keras_model: keras.Model,
    tflite_path: str | Path,
    frames: list[np.ndarray],
    mask_threshold: float = 0.5,
    presence_threshold: float | Sequence[float] = 0.5,
    threads: int = 1,
) -> dict[str, Any]:
    """Compare the TFLite model at ``tflite_path`` (with its sidecar spec) with ``keras_model`` on ``frames``.

    frames: preprocessed float32 ``(H, W)`` arrays at the model's input size (as
        made by `edge.preprocess.preprocess` with the model's spec); held out from
        the int8 calibration set, or the check flatters the converter.
    mask_threshold / presence_threshold: where a mask pixel / P(nerve) counts as "nerve".
    threads: interpreter threads (results do not depend on it).

    Returns plain Python numbers (YAML-safe):

    - ``frames``: N; ``mask_dice_frames``: frames with either mask >= 1% of the pixels
    - ``mask_dice_pooled``: Dice of the thresholded masks, pixels pooled over all frames
    - ``mask_dice_frame_mean`` / ``mask_dice_frame_min``: per-frame Dice over the
      ``mask_dice_frames`` frames (None when there are none)
    - ``mask_mae`` / ``mask_frame_mae_max``: mean |Δ mask probability|, overall and worst frame
    - ``mask_fraction_keras`` / ``mask_fraction_tflite``: share of pixels over the threshold
    - ``presence_agreement``: share of frames where both say the same (P >= threshold), the worst
      over the ``presence_threshold`` values given (the device's enter and exit thresholds)
    - ``p_abs_diff_max`` / ``p_abs_diff_mean``: |Δ P(nerve)|
    - ``p_corr``: Pearson correlation of P(nerve); ``p_std_ratio``: std TFLite / std Keras
      (both None when the Keras spread is below `MIN_P_STD`)
    - ``p_std_keras`` / ``p_std_tflite``, ``mask_threshold``, ``presence_threshold``, ``tflite_backend``

    Raises ValueError for no frames or frames of the wrong shape; `edge.errors.ModelError`
    when the TFLite model or its spec cannot be loaded.
    """
    scalar = np.isscalar(presence_threshold)
    thresholds = [float(presence_threshold)] if scalar else [float(t) for t in presence_threshold]
    from edge.runner import ModelRunner

    if not frames:
        raise ValueError("no frames to compare the models on")
    runner = ModelRunner(tflite_path, threads=threads)
    hw = runner.input_hw
    bad = next((i for i, f in enumerate(frames) if f.shape != hw), None)
    if bad is not None:
        raise ValueError(f"frame {bad} has shape {frames[bad].shape}, the model {tflite_path} takes {hw} (H, W)")
    x = np.stack([np.asarray(f, np.float32) for f in frames])[..., None]
    names = runner.spec.outputs
    km, kp = _keras_outputs(keras_model, x, names.mask, names.presence)
    tm = np.empty_like(km)
    tp = np.empty_like(kp)
    for i, f in enumerate(x[..., 0]):
        r = runner.infer(f)
        tm[i] = r.mask
        tp[i] = r.p_nerve

    kb, tb = km > mask_threshold, tm > mask_threshold
    big = np.maximum(kb.mean(axis=(1, 2)), tb.mean(axis=(1, 2))) >= MIN_MASK_FRACTION
    per_frame = [_dice(a, b) for a, b in zip(kb[big], tb[big], strict=True)]
    err = np.abs(tm - km)
    dp = np.abs(tp - kp)
    k_std, t_std = float(kp.std()), float(tp.std())
    spread = k_std >= MIN_P_STD
    if not spread:
        logger.warning(
            "the Keras model's P(nerve) hardly varies over these %d frames (std %.4f): correlation and spread "
            "ratio are not judged",
            len(x),
            k_std,
        )
    report = {
        "frames": len(x),
        "mask_dice_pooled": _dice(kb, tb),
        "mask_dice_frames": len(per_frame),
        "mask_dice_frame_mean": float(np.mean(per_frame)) if per_frame else None,
        "mask_dice_frame_min": float(np.min(per_frame)) if per_frame else None,
        "mask_mae": float(err.mean()),
        "mask_frame_mae_max": float(err.mean(axis=(1, 2)).max()),
        "mask_fraction_keras": float(kb.mean()),
        "mask_fraction_tflite": float(tb.mean()),
        # The worst agreement over every threshold the device decides at (the spec's enter and exit):
        # a small int8 shift of P(nerve) matters only near those, e.g. at a high operating point.
        "presence_agreement": min(float(((kp >= t) == (tp >= t)).mean()) for t in thresholds),
        "p_abs_diff_max": float(dp.max()),
        "p_abs_diff_mean": float(dp.mean()),
        "p_corr": float(np.corrcoef(kp, tp)[0, 1]) if spread and t_std > 0 else (0.0 if spread else None),
        "p_std_ratio": t_std / k_std if spread else None,
        "p_std_keras": k_std,
        "p_std_tflite": t_std,
        "mask_threshold": float(mask_threshold),
        "presence_threshold": thresholds[0] if len(thresholds) == 1 else thresholds,
        "tflite_backend": runner.backend,
    }
    return {k: _round(v) for k, v in report.items()}


def _round(v: Any) -> Any:
    """Floats to 5 significant digits, so the YAML provenance stays readable."""
    return float(f"{v:.5g}") if isinstance(v, float) else v


@dataclass(frozen=True)
class Tolerances:
    """Bounds an accepted conversion must meet; names say the direction (``_min``: at least, ``_max``: at most).

    Dice and agreement are fractions in [0, 1]; MAE and |Δp| are in probability units.
    """

    min_frames: int = 20  # fewer held-out frames than this and a 95% agreement means little
    mask_dice_pooled_min: float = 0.92
    mask_dice_frame_mean_min: float = 0.92
    mask_mae_max: float = 0.01
    presence_agreement_min: float = 0.95
    p_abs_diff_mean_max: float = 0.04
    p_abs_diff_max_max: float = 0.15
    p_corr_min: float = 0.98
    p_std_ratio_min: float = 0.8
    p_std_ratio_max: float = 1.25

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


# INT8: measured on real held-out frames (never calibration frames) with two models, an 8-filter mini-U-Net
# after 80 steps (the test fixture) and a 16-filter one after 300 steps, in five conversions that calibrated
# on >= 18 real frames: Dice of thresholded masks pooled 0.952-0.986 (frame mean 0.958-0.987, frame min
# 0.76-0.93), mask MAE 0.0006-0.0034, presence agreement 0.968-1.0 (0.968 = 1 flip in 31 frames), |dp| mean
# 0.0036-0.023 and max 0.006-0.113, correlation 0.995-0.9996, spread ratio 0.95-1.03. The bounds sit at
# about 1.5-3x the worst of those errors. What they reject, measured: calibrating on 13 frames (6 with a
# nerve) gave |dp| mean 0.077 with one model and |dp| max 0.19 with the other (clipped logit range);
# calibrating on black frames gave Dice 0, agreement 0.24, spread ratio 0; another model's file gave Dice
# 0.03, agreement 0.16.
INT8 = Tolerances()
# FLOAT32: the same models differ from their float32 TFLite by <= 1e-6 in every output (Dice 1.0, agreement
# 1.0): the bounds allow float rounding (TFLite kernels vs oneDNN) and nothing else.
FLOAT32 = Tolerances(
    mask_dice_pooled_min=0.995,
    mask_dice_frame_mean_min=0.99,
    mask_mae_max=1e-4,
    presence_agreement_min=0.99,
    p_abs_diff_mean_max=1e-4,
    p_abs_diff_max_max=1e-3,
    p_corr_min=0.9999,
    p_std_ratio_min=0.999,
    p_std_ratio_max=1.001,
)


def tolerances_for(quantization: str) -> Tolerances:
    """The default `Tolerances` of ``"int8"`` or ``"float32"``."""
    if quantization not in ("int8", "float32"):
        raise ValueError(f"quantization must be int8 or float32, got {quantization!r}")
    return INT8 if quantization == "int8" else FLOAT32


# (metric in the report, ">=" or "<=", Tolerances field, what a breach means)
RULES: tuple[tuple[str, str, str, str], ...] = (
    ("frames", ">=", "min_frames", "too few held-out frames to judge agreement"),
    ("mask_dice_pooled", ">=", "mask_dice_pooled_min", "thresholded masks differ"),
    ("mask_dice_frame_mean", ">=", "mask_dice_frame_mean_min", "thresholded masks differ frame by frame"),
    ("mask_mae", "<=", "mask_mae_max", "mask probabilities differ"),
    ("presence_agreement", ">=", "presence_agreement_min", "nerve / no-nerve decisions differ"),
    ("p_abs_diff_mean", "<=", "p_abs_diff_mean_max", "P(nerve) differs on average"),
    ("p_abs_diff_max", "<=", "p_abs_diff_max_max", "P(nerve) differs a lot on some frame"),
    ("p_corr", ">=", "p_corr_min", "P(nerve) does not follow the float model"),
    ("p_std_ratio", ">=", "p_std_ratio_min", "P(nerve) lost its spread: presence output collapsed?"),
    ("p_std_ratio", "<=", "p_std_ratio_max", "P(nerve) spreads more than the float model's"),
)


def judge(report: dict[str, Any], tol: Tolerances) -> list[tuple[str, Any, str, float, bool | None]]:
    """Every rule applied: ``(metric, value, op, bound, ok)``; ``ok`` None when the value is None (not judged)."""
    rows = []
    for key, op, field, _ in RULES:
        v, bound = report.get(key), getattr(tol, field)
        ok = None if v is None else bool(v >= bound if op == ">=" else v <= bound)  # NaN compares False: fails
        rows.append((key, v, op, bound, ok))
    return rows


def failures(report: dict[str, Any], tol: Tolerances) -> list[str]:
    """One line per bound of ``tol`` that ``report`` (from `check_agreement`) breaks; empty = accepted.

    Each line names the metric, its value and the bound, e.g.
    ``"p_std_ratio 0.012 < 0.8 (P(nerve) lost its spread: presence output collapsed?)"``.
    A metric the report gives as None (not measurable on these frames) is not judged;
    a metric missing from the report fails.
    """
    out = []
    for (key, v, op, bound, ok), (*_, why) in zip(judge(report, tol), RULES, strict=True):
        if ok is None and key not in report:
            out.append(f"{key} missing from the report (bound {op} {bound:.4g})")
        elif ok is False:
            out.append(f"{key} {v:.4g} {'<' if op == '>=' else '>'} {bound:.4g} ({why})")
    return out


def format_report(report: dict[str, Any], tol: Tolerances) -> str:
    """The report as aligned text lines, one metric a line with its bound and ok/FAIL (for the command's output)."""
    lines = []
    for key, v, op, bound, ok in judge(report, tol):
        val = "n/a" if v is None else f"{v:.4g}"
        verdict = "not judged" if ok is None else ("ok" if ok else "FAIL")
        lines.append(f"{key:<22} {val:>9}  {op} {bound:<7.4g} {verdict}")
    for key in ("mask_dice_frame_min", "mask_dice_frames", "mask_frame_mae_max", "p_std_keras", "p_std_tflite"):
        if report.get(key) is not None:
            lines.append(f"{key:<22} {report[key]:>9.4g}  (reported)")
    return "\n".join(lines)
