"""``nerveseg eval``: score a model on a labelled data folder, the way the bedside would run it.

What is measured, and how (others rely on these choices):

* **Same path as the bedside.** A ``.tflite`` model runs through `edge.preprocess.preprocess`
  (ROI None: the data folders hold the ultrasound image already cropped) and
  `edge.runner.ModelRunner` (2 threads), exactly as in the live loop. A ``.keras`` model
  (a training checkpoint) runs through the same `preprocess` with its sidecar spec
  ``<model>.yaml``; its spec's ``tflite_sha256`` is not checked (it describes a .tflite).
* **Dice at the model's input size** (e.g. 96x128), which is what the device decides on.
  The truth mask is shrunk with `edge.preprocess.resize_mask` (INTER_AREA: each model
  pixel gets the covered fraction) and a model pixel is nerve when at least half of it is
  covered. Whether a frame *has* a nerve is decided on the full-resolution mask; if a tiny
  nerve loses every pixel in the shrink, its most-covered model pixels are kept, so a
  frame's truth presence never changes with the resolution. Dice at model size is
  slightly higher than Kaggle's full-resolution Dice (outline detail below one model pixel
  is not scored).
* **Gating.** The predicted mask of a frame is ``prob >= mask_threshold`` (default: the
  spec's ``thresholds.mask``) when ``p_nerve >= presence_threshold``, else empty. Dice
  follows the Kaggle convention (`train.metrics`): empty on empty = 1. Presence metrics
  use ``p_nerve`` alone. The bedside's hysteresis (enter/exit thresholds over time) is
  not modelled: frames are scored independently.
* **Confidence intervals** (95 %, percentile bootstrap, 1000 replicates, seed 0) resample
  subjects, not frames; without subject ids (e.g. usgra-seg) no interval is given.
* Unlabelled rows (empty mask cell) are skipped and counted.

`evaluate_predictions` computes the same report from arrays (for the training loop and
cross-validation); the file-based `evaluate` calls it. TensorFlow/Keras is imported only
when a ``.keras`` model is evaluated.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.errors import ConfigError, ModelError
from edge.preprocess import preprocess, resize_mask
from edge.spec import ModelSpec, load_spec, sha256_file
from train.manifest import Sample, load_gray, load_mask, read_manifest
from train.metrics import bootstrap_ci, dice_per_image, presence_metrics

logger = logging.getLogger(__name__)

MODEL_SUFFIXES = (".tflite", ".keras")
TRUTH_COVER = 0.5  # a model pixel is nerve when at least this fraction of it is covered by the truth mask
N_BOOT = 1000
TRUTH_COLOR = (0, 255, 0)  # B,G,R: truth outline on the contact sheet
PRED_COLOR = (0, 220, 255)  # B,G,R: the bedside overlay's default outline colour (edge.config.OverlayConfig)
DEFAULT_SHEET = "eval_sheet.png"

Predictor = Callable[[np.ndarray], tuple[np.ndarray, float]]


# -- running a model ------------------------------------------------------------------------------


def predict_fn(model_path: str | Path, threads: int = 2) -> tuple[Predictor, ModelSpec]:
    """Load a model and return ``(predict, spec)``.

    ``predict(frame)`` takes one frame, uint8 HxW gray or HxWx3 BGR at any size (the
    whole image is the ultrasound picture, ROI None), and returns ``(mask_prob, p_nerve)``:
    float32 ``(H, W)`` in [0, 1] at the spec's input size (a fresh array) and a float
    in [0, 1].

    ``.tflite``: `edge.runner.ModelRunner` with ``threads`` threads and its hash-checked
    spec, the bedside path. ``.keras``: loaded with Keras (imported here), its sidecar
    spec ``<model>.yaml`` read without the hash check; run one frame at a time in
    inference mode. Raises `ModelError` naming the file: missing, unknown suffix,
    corrupt, no or invalid spec, or a model that does not match its spec.
    """
    path = Path(model_path)
    if path.suffix not in MODEL_SUFFIXES:
        raise ModelError(f"model file {path}: unsupported type {path.suffix!r}; expected one of {MODEL_SUFFIXES}")
    if not path.is_file():
        raise ModelError(f"model file {path} not found")
    if path.suffix == ".tflite":
        from edge.runner import ModelRunner

        runner = ModelRunner(path, threads=threads)
        pp = runner.spec.preprocess

        def predict_tflite(frame: np.ndarray) -> tuple[np.ndarray, float]:
            r = runner.infer(preprocess(frame, None, pp))
            return r.mask, r.p_nerve

        return predict_tflite, runner.spec
    return _keras_predict_fn(path)


def _keras_predict_fn(path: Path) -> tuple[Predictor, ModelSpec]:
    spec = load_spec(path, verify_hash=False)  # ModelError: missing / invalid spec
    try:
        import keras
    except ImportError as e:
        raise ModelError(
            f"model file {path}: Keras is needed for .keras models ({e}); install nerveseg[train]"
        ) from None
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for a corrupt/foreign file
        raise ModelError(f"model file {path} is not a loadable Keras model: {type(e).__name__}: {e}") from None
    pp, names = spec.preprocess, spec.outputs
    shape = tuple(model.inputs[0].shape[1:]) if len(model.inputs) == 1 else None
    if shape != (pp.height, pp.width, 1):
        raise ModelError(
            f"model file {path} takes input {shape} (H, W, C) "
            f"but its spec {spec.name!r} says ({pp.height}, {pp.width}, 1)"
        )
    out_names = set(model.output) if isinstance(model.output, dict) else set()
    if not {names.mask, names.presence} <= out_names:
        raise ModelError(
            f"model file {path} must output a dict with {names.mask!r} and {names.presence!r} "
            f"(its spec's output names), it has {sorted(out_names) or type(model.output).__name__}"
        )
    x = np.empty((1, pp.height, pp.width, 1), np.float32)  # reused: the model call copies it

    def predict_keras(frame: np.ndarray) -> tuple[np.ndarray, float]:
        preprocess(frame, None, pp, out=x[0, :, :, 0])
        out = model(x, training=False)
        mask = np.array(keras.ops.convert_to_numpy(out[names.mask]), dtype=np.float32).reshape(pp.height, pp.width)
        p = float(np.asarray(keras.ops.convert_to_numpy(out[names.presence])).reshape(()))
        return np.clip(mask, 0.0, 1.0, out=mask), min(max(p, 0.0), 1.0)

    logger.info("model %s (%s, Keras %s)", path.name, spec.name, keras.__version__)
    return predict_keras, spec


# -- scoring arrays -------------------------------------------------------------------------------


def truth_at_model_size(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Full-resolution truth (uint8 0/255 or bool, HxW) -> bool ``(height, width)``.

    A model pixel is nerve when at least `TRUTH_COVER` of it is covered (INTER_AREA
    shrink). A non-empty mask never becomes empty: if no pixel reaches the cover, the
    most-covered pixel(s) are kept.
    """
    m = np.asarray(mask)
    cover = resize_mask(m.astype(np.uint8) * 255 if m.dtype == bool else m, height, width)
    out = cover >= TRUTH_COVER
    if not out.any() and np.any(m):
        out = cover >= cover.max()
    return out


def gate_masks(
    probs: Sequence[np.ndarray] | np.ndarray,
    ps: Sequence[float] | np.ndarray,
    mask_threshold: float,
    presence_threshold: float,
) -> list[np.ndarray]:
    """Predicted bool masks: ``prob >= mask_threshold`` where ``p >= presence_threshold``, else all False.

    probs: N float maps in [0, 1] (or bool masks already thresholded); ps: N floats.
    """
    if len(probs) != len(ps):
        raise ValueError(f"got {len(probs)} masks for {len(ps)} presence values")
    out = []
    for prob, p in zip(probs, ps, strict=True):
        prob = np.asarray(prob)
        if float(p) >= presence_threshold:
            out.append(prob if prob.dtype == bool else prob >= mask_threshold)
        else:
            out.append(np.zeros(prob.shape, bool))
    return out


def _subject_key(s: str) -> tuple[int, int, str]:
    """Sort subjects numerically when they are numbers ("2" before "10")."""
    return (0, int(s), "") if s.isdigit() else (1, 0, s)


def _ci(values: np.ndarray, groups: list[str], n_boot: int, seed: int) -> list[float] | None:
    if values.size == 0 or len(set(groups)) < 2:
        return None
    lo, hi = bootstrap_ci(values, groups, n=n_boot, seed=seed)
    return [lo, hi]


def evaluate_predictions(
    probs: Sequence[np.ndarray] | np.ndarray,
    ps: Sequence[float] | np.ndarray,
    truths: Sequence[np.ndarray] | np.ndarray,
    subjects: Sequence[str | None] | None = None,
    names: Sequence[str] | None = None,
    *,
    mask_threshold: float = 0.5,
    presence_threshold: float = 0.5,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, Any]:
    """The evaluation report from arrays (no files): what `evaluate` returns, less model/data keys.

    probs: N float32 ``(H, W)`` probability maps in [0, 1] (a list or ``(N, H, W)``), or
        bool masks already thresholded at ``mask_threshold``.
    ps: N floats, P(nerve) per frame.
    truths: N bool ``(H, W)`` truth masks at the same size as ``probs`` (see
        `truth_at_model_size`); a frame's truth presence is ``truth.any()``.
    subjects: N subject ids (None = no subject: the frame is its own bootstrap group and
        is left out of ``per_subject``); None for all.
    names: N frame names for ``per_image`` (default ``frame_<i>``).

    Returns a JSON-serialisable dict with the keys ``n_images, kaggle_score,
    mean_dice_positive, presence_sensitivity, presence_specificity, presence_auc,
    presence_accuracy, n_positive, n_negative, ci95, per_subject, thresholds, per_image``
    (undefined values are None; see the module doc for gating and conventions).
    """
    n = len(truths)
    if n == 0:
        raise ValueError("nothing to evaluate: no frames")
    if len(probs) != n or len(ps) != n:
        raise ValueError(f"got {len(probs)} masks, {len(ps)} presence values and {n} truths: need one each per frame")
    subjects = list(subjects) if subjects is not None else [None] * n
    names = list(names) if names is not None else [f"frame_{i}" for i in range(n)]
    if len(subjects) != n or len(names) != n:
        raise ValueError(f"got {len(subjects)} subjects and {len(names)} names for {n} frames")

    ps_arr = np.asarray(ps, dtype=np.float64).ravel()
    truths = [np.asarray(t, dtype=bool) for t in truths]
    preds = gate_masks(probs, ps_arr, mask_threshold, presence_threshold)
    d = dice_per_image(preds, truths)
    present = np.array([t.any() for t in truths], dtype=bool)
    pm = presence_metrics(ps_arr, present, presence_threshold)

    # frames without a subject are their own bootstrap group
    groups = [s if s else f"<frame {i}>" for i, s in enumerate(subjects)]
    has_subjects = any(subjects)
    ci95 = None
    if has_subjects:
        pos_groups = [g for g, t in zip(groups, present, strict=True) if t]
        ci95 = {
            "unit": "subject",
            "n_subjects": len({s for s in subjects if s}),
            "n_boot": n_boot,
            "kaggle_score": _ci(d, groups, n_boot, seed),
            "mean_dice_positive": _ci(d[present], pos_groups, n_boot, seed),
        }

    per_subject = []
    for s in sorted({s for s in subjects if s}, key=_subject_key):
        idx = np.array([i for i, x in enumerate(subjects) if x == s])
        spm = presence_metrics(ps_arr[idx], present[idx], presence_threshold)
        pos = idx[present[idx]]
        per_subject.append(
            {
                "subject": s,
                "n": int(idx.size),
                "n_positive": int(pos.size),
                "kaggle_score": float(d[idx].mean()),
                "mean_dice_positive": float(d[pos].mean()) if pos.size else None,
                "sensitivity": spm["sensitivity"],
                "specificity": spm["specificity"],
            }
        )

    per_image = [
        {
            "name": names[i],
            "subject": subjects[i],
            "dice": float(d[i]),
            "p_nerve": float(ps_arr[i]),
            "truth_present": bool(present[i]),
            "pred_present": bool(preds[i].any()),
        }
        for i in range(n)
    ]
    return {
        "n_images": n,
        "kaggle_score": float(d.mean()),
        "mean_dice_positive": float(d[present].mean()) if present.any() else None,
        "presence_sensitivity": pm["sensitivity"],
        "presence_specificity": pm["specificity"],
        "presence_auc": pm["auc"],
        "presence_accuracy": pm["accuracy"],
        "n_positive": pm["n_positive"],
        "n_negative": pm["n_negative"],
        "ci95": ci95,
        "per_subject": per_subject,
        "thresholds": {"mask": float(mask_threshold), "presence": float(presence_threshold)},
        "per_image": per_image,
    }


# -- contact sheet --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SheetTile:
    """One frame on the contact sheet.

    image: uint8 HxW gray or HxWx3 BGR at any size (scaled to the tile).
    truth, pred: bool masks at model size (outlined green and `PRED_COLOR`).
    caption: up to two short lines (ASCII).
    """

    image: np.ndarray
    truth: np.ndarray
    pred: np.ndarray
    caption: tuple[str, ...]


def select_sheet_frames(
    dices: np.ndarray, truth_present: np.ndarray, ps: np.ndarray, pred_present: np.ndarray, n: int = 6
) -> list[tuple[str, list[int]]]:
    """Indices for the sheet's sections, ``[(title, [frame index, ...]), ...]`` (empty sections left out).

    best: frames with a nerve, highest Dice first; worst: frames with a nerve, lowest Dice
    first (none repeated from best); false positives: frames without a nerve where an
    outline was drawn, highest P(nerve) first. Ties keep frame order.
    """
    d, t, p, pp = (np.asarray(a) for a in (dices, truth_present, ps, pred_present))
    pos = np.flatnonzero(t)
    best = [int(i) for i in pos[np.argsort(-d[pos], kind="stable")][:n]]
    worst = [int(i) for i in pos[np.argsort(d[pos], kind="stable")] if int(i) not in best][:n]
    fp = np.flatnonzero(~t & pp)
    fps = [int(i) for i in fp[np.argsort(-p[fp], kind="stable")][:n]]
    sections = [
        ("Best: frames with a nerve, highest Dice", best),
        ("Worst: frames with a nerve, lowest Dice", worst),
        ("False positives: no nerve in the truth, outline drawn", fps),
    ]
    return [(title, idx) for title, idx in sections if idx]


def _outline(canvas: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], thickness: int) -> None:
    """Draw the outline of a model-size bool mask, scaled (nearest) to the canvas, in place."""
    if not mask.any():
        return
    h, w = canvas.shape[:2]
    big = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(canvas, contours, -1, color, thickness, cv2.LINE_AA)


def contact_sheet(
    sections: Sequence[tuple[str, Sequence[SheetTile]]],
    title: str = "",
    per_row: int = 6,
    tile_width: int = 256,
    tile_aspect: float = 0.75,
) -> np.ndarray:
    """uint8 BGR image: a title bar, then per section a header and rows of tiles.

    Each tile is the frame scaled to ``tile_width`` x ``tile_width * tile_aspect`` with the
    truth outlined green and the prediction in `PRED_COLOR`, the caption below it.
    """
    font, gap, cap_h, head_h = cv2.FONT_HERSHEY_SIMPLEX, 6, 36, 26
    tw, th = tile_width, int(round(tile_width * tile_aspect))
    width = per_row * tw + (per_row + 1) * gap
    blocks: list[np.ndarray] = []

    def text_bar(text: str, height: int, scale: float) -> np.ndarray:
        bar = np.full((height, width, 3), 32, np.uint8)
        cv2.putText(bar, text, (gap, height - 8), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
        return bar

    legend = "green = truth, yellow = prediction (gated by P(nerve))"
    blocks.append(text_bar(f"{title}   [{legend}]" if title else legend, 30, 0.5))
    if not sections:
        blocks.append(text_bar("no frames to show", head_h, 0.5))
    for name, tiles in sections:
        blocks.append(text_bar(name, head_h, 0.5))
        for r in range(0, len(tiles), per_row):
            row = np.zeros((th + cap_h + gap, width, 3), np.uint8)
            for c, tile in enumerate(tiles[r : r + per_row]):
                img = tile.image if tile.image.ndim == 3 else cv2.cvtColor(tile.image, cv2.COLOR_GRAY2BGR)
                canvas = cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)
                _outline(canvas, tile.truth, TRUTH_COLOR, 2)
                _outline(canvas, tile.pred, PRED_COLOR, 2)
                x0 = gap + c * (tw + gap)
                row[gap : gap + th, x0 : x0 + tw] = canvas
                for k, line in enumerate(tile.caption[:2]):
                    cv2.putText(
                        row, line[:40], (x0 + 2, gap + th + 14 + 15 * k), font, 0.42, (230, 230, 230), 1, cv2.LINE_AA
                    )
            blocks.append(row)
    return np.vstack(blocks)


# -- the file-based evaluation --------------------------------------------------------------------


def _model_info(path: Path, spec: ModelSpec) -> dict[str, Any]:
    return {
        "path": str(path),
        "name": spec.name,
        "sha256": sha256_file(path),
        "quantization": spec.quantization,
        "untrained": spec.untrained,
        "format": path.suffix.lstrip("."),
    }


def _header(rep: dict[str, Any]) -> str:
    m = rep.get("model", {})
    return (f"nerveseg eval: {m.get('path', '?')} ({m.get('name', '?')}, {m.get('quantization', '?')}"
            f"{', UNTRAINED' if m.get('untrained') else ''})")


def _is_number(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _check_thresholds(presence_threshold: float, mask_threshold: float | None) -> None:
    problems = []
    if not (_is_number(presence_threshold) and presence_threshold >= 0):
        problems.append(
            f"presence threshold: {presence_threshold!r} is not allowed; use a number >= 0 "
            "(above 1 means 'never present', the all-empty baseline)"
        )
    if mask_threshold is not None and not (_is_number(mask_threshold) and 0 < mask_threshold <= 1):
        problems.append(f"mask threshold: {mask_threshold!r} is not allowed; use a number in (0, 1]")
    if problems:
        raise ConfigError("evaluation options", problems)


def _select(samples: list[Sample], data_dir: Path, split: str | None, limit: int | None) -> tuple[list[Sample], int]:
    """Labelled samples to evaluate (after split and limit) and the number of unlabelled rows skipped."""
    if split is not None:
        have = sorted({s.split for s in samples if s.split})
        samples = [s for s in samples if s.split == split]
        if not samples:
            raise ConfigError(str(data_dir), [f"split {split!r}: no rows; splits in the manifest: {have or 'none'}"])
    labelled = [s for s in samples if s.mask is not None]
    skipped = len(samples) - len(labelled)
    if not labelled:
        raise ConfigError(str(data_dir), [f"no labelled rows to evaluate ({skipped} unlabelled)"])
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ConfigError("evaluation options", [f"limit: {limit!r} is not allowed; use a positive integer"])
        if limit < len(labelled):
            # evenly spread over the manifest, so a quick run still covers every subject
            idx = np.unique(np.linspace(0, len(labelled) - 1, limit).round().astype(int))
            labelled = [labelled[i] for i in idx]
    return labelled, skipped


def evaluate(
    model_path: str | Path,
    data_dir: str | Path,
    presence_threshold: float | None = 0.5,
    mask_threshold: float | None = None,
    limit: int | None = None,
    *,
    split: str | None = None,
    sheet_path: str | Path | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    every: int = 1,
) -> dict[str, Any]:
    """Run ``model_path`` over the labelled frames of ``data_dir/manifest.csv`` and score it.

    A box-labelled video folder (the ``regional-us`` layout, `train.boxes`) is scored by
    `evaluate_box_video` instead (``every``: every Nth frame; ``limit``, ``split``, ``sheet_path``
    do not apply there).

    presence_threshold: P(nerve) at or above which a frame's mask is kept (above 1: never);
        None = the spec's ``presence_enter`` (the bedside's operating point).
    mask_threshold: per-pixel probability threshold; None = the model spec's ``thresholds.mask``.
    limit: evaluate at most this many labelled frames, evenly spread over the manifest.
    split: keep only rows whose ``split`` column equals this (e.g. "test" for usgra-seg).
    sheet_path: write the best/worst contact sheet (PNG) there when given.

    Returns the `evaluate_predictions` report plus ``n_unlabelled_skipped``, ``model``
    (path, name, sha256, quantization, untrained, format), ``data`` (path, split, limit)
    and ``sheet`` (path written, or None). Raises `ConfigError` for bad options or data
    (no manifest, unreadable file, nothing labelled) and `ModelError` for the model.
    """
    data_dir = Path(data_dir)
    from train.boxes import is_box_video_folder

    if is_box_video_folder(data_dir):
        return evaluate_box_video(model_path, data_dir, presence_threshold, mask_threshold, every=every,
                                  n_boot=n_boot, seed=seed)
    if every != 1:
        raise ConfigError("evaluation options", [f"every: {every} applies to box-labelled video folders only"])
    # options and data are checked before the model is loaded, as before the threshold could come from it
    if presence_threshold is not None:
        _check_thresholds(presence_threshold, mask_threshold)
    try:
        samples = read_manifest(data_dir)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(data_dir), [str(e)]) from None
    chosen, skipped = _select(samples, data_dir, split, limit)
    predict, spec = predict_fn(model_path)
    if presence_threshold is None:
        presence_threshold = spec.thresholds.presence_enter
        _check_thresholds(presence_threshold, mask_threshold)

    mthr = spec.thresholds.mask if mask_threshold is None else float(mask_threshold)
    h, w = spec.preprocess.height, spec.preprocess.width
    logger.info("evaluating %s on %d frames of %s (%d unlabelled skipped)", model_path, len(chosen), data_dir, skipped)

    raw, ps, truths = [], [], []
    t0 = last = time.monotonic()
    for k, s in enumerate(chosen):
        try:
            gray = load_gray(s.image)
            truth_full = load_mask(s.mask)
        except ValueError as e:
            raise ConfigError(str(data_dir), [str(e)]) from None
        prob, p = predict(gray)
        raw.append(prob >= mthr)  # bool keeps memory at 1 byte/pixel; gating happens in evaluate_predictions
        ps.append(p)
        truths.append(truth_at_model_size(truth_full, h, w))
        if time.monotonic() - last > 10.0:
            last = time.monotonic()
            logger.info("  %d/%d frames (%.1f ms/frame)", k + 1, len(chosen), 1e3 * (last - t0) / (k + 1))
    logger.info("%d frames in %.1f s", len(chosen), time.monotonic() - t0)

    rep = evaluate_predictions(
        raw,
        ps,
        truths,
        subjects=[s.subject for s in chosen],
        names=[s.name for s in chosen],
        mask_threshold=mthr,
        presence_threshold=presence_threshold,
        n_boot=n_boot,
        seed=seed,
    )
    path = Path(model_path)
    rep["n_unlabelled_skipped"] = skipped
    rep["model"] = _model_info(path, spec)
    rep["data"] = {"path": str(data_dir), "split": split, "limit": limit}
    rep["sheet"] = None
    if sheet_path is not None:
        preds = gate_masks(raw, ps, mthr, presence_threshold)
        write_sheet(rep, chosen, truths, preds, sheet_path)
        rep["sheet"] = str(sheet_path)
    return _ordered(rep)


def _video_ci(values: np.ndarray, groups: list[str], n_boot: int, seed: int) -> list[float] | None:
    return _ci(np.asarray(values, np.float64), groups, n_boot, seed) if len(values) else None


def _auc_ci(p: np.ndarray, present: np.ndarray, groups: list[str], n_boot: int, seed: int) -> list[float] | None:
    """Video-bootstrap interval of the pooled AUC (replicates with one class only are dropped)."""
    from train.metrics import auc_mann_whitney

    g = np.asarray(groups, dtype=object)
    vids = sorted(set(groups))
    if len(vids) < 2 or present.all() or not present.any():
        return None
    members = [np.flatnonzero(g == v) for v in vids]
    rng = np.random.default_rng(seed)
    reps = []
    for row in rng.integers(0, len(vids), size=(n_boot, len(vids))):
        idx = np.concatenate([members[k] for k in row])
        a = auc_mann_whitney(p[idx], present[idx])
        if a is not None:
            reps.append(a)
    if not reps:
        return None
    lo, hi = np.quantile(reps, [0.025, 0.975])
    return [float(lo), float(hi)]


def box_video_report(
    probs: Sequence[np.ndarray],
    ps: Sequence[float],
    boxes: Sequence[np.ndarray],
    present: Sequence[bool],
    videos: Sequence[str],
    *,
    mask_threshold: float,
    presence_threshold: float,
    labels: dict[str, str] | None = None,
    frames: Sequence[int] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, Any]:
    """The box-video report from arrays: presence and localisation, per video and pooled, with
    video-bootstrap 95% CIs.

    probs: N float maps (or bool masks) at model size; ps: N P(nerve); boxes: N bool masks at the same
    size, True where a pixel's centre lies in an expert box (`train.boxes.box_mask`); present: N truth
    (the frame has a box); videos: N video ids. A frame's shown mask is ``prob >= mask_threshold`` when
    ``p >= presence_threshold``, else empty (the bedside gate, without hysteresis).

    Localisation on nerve frames: ``centroid_in_box`` is the share whose *shown* mask has its centroid
    inside a box (nothing shown = a miss, as at the bedside); ``centroid_in_box_when_shown`` the same
    among frames with an outline; ``mask_in_box`` the mean share of a shown mask's pixels inside the
    boxes. ``*_ungated`` repeat the first and last without the presence gate (the mask head alone).
    """
    from train.metrics import box_localisation

    n = len(ps)
    if n == 0:
        raise ValueError("nothing to evaluate: no frames")
    if not (len(probs) == len(boxes) == len(present) == len(videos) == n):
        raise ValueError("probs, ps, boxes, present and videos need one entry per frame")
    ps_arr = np.asarray(ps, np.float64)
    present = np.asarray(present, bool)
    vids = [str(v) for v in videos]
    ungated = [np.asarray(pr) if np.asarray(pr).dtype == bool else np.asarray(pr) >= mask_threshold for pr in probs]
    shown = gate_masks(ungated, ps_arr, mask_threshold, presence_threshold)
    loc = box_localisation(shown, boxes)
    loc_u = box_localisation(ungated, boxes)
    called = ps_arr >= presence_threshold
    pm = presence_metrics(ps_arr, present, presence_threshold)
    pos = np.flatnonzero(present)
    pos_shown = pos[np.isfinite(loc["share_in"][pos])]
    g = np.asarray(vids, dtype=object)

    def share(a: np.ndarray) -> float | None:
        return float(np.mean(a)) if a.size else None

    def nanshare(a: np.ndarray) -> float | None:
        a = a[np.isfinite(a)]
        return float(np.mean(a)) if a.size else None

    pooled = {
        "presence_auc": pm["auc"],
        "presence_sensitivity": pm["sensitivity"],
        "presence_specificity": pm["specificity"],
        "presence_accuracy": pm["accuracy"],
        "centroid_in_box": share(loc["centroid_in"][pos]),
        "centroid_in_box_when_shown": share(loc["centroid_in"][pos_shown]),
        "mask_in_box": nanshare(loc["share_in"][pos]),
        "centroid_in_box_ungated": share(loc_u["centroid_in"][pos]),
        "mask_in_box_ungated": nanshare(loc_u["share_in"][pos]),
    }
    neg = np.flatnonzero(~present)
    ci95 = {
        "unit": "video",
        "n_videos": len(set(vids)),
        "n_boot": n_boot,
        "presence_auc": _auc_ci(ps_arr, present, vids, n_boot, seed),
        "presence_sensitivity": _video_ci(called[pos], list(g[pos]), n_boot, seed),
        "presence_specificity": _video_ci(~called[neg], list(g[neg]), n_boot, seed),
        "centroid_in_box": _video_ci(loc["centroid_in"][pos], list(g[pos]), n_boot, seed),
        "mask_in_box": _video_ci(loc["share_in"][pos_shown], list(g[pos_shown]), n_boot, seed),
    }
    per_video = []
    for v in dict.fromkeys(vids):
        idx = np.flatnonzero(g == v)
        vp = idx[present[idx]]
        vpm = presence_metrics(ps_arr[idx], present[idx], presence_threshold)
        per_video.append(
            {
                "video": v,
                "label": (labels or {}).get(v),
                "n": int(idx.size),
                "n_positive": int(vp.size),
                "presence_auc": vpm["auc"],
                "sensitivity": vpm["sensitivity"],
                "specificity": vpm["specificity"],
                "centroid_in_box": share(loc["centroid_in"][vp]),
                "mask_in_box": nanshare(loc["share_in"][vp]),
            }
        )
    per_frame = [
        {
            "video": vids[i],
            "frame": int(frames[i]) if frames is not None else i,
            "p_nerve": float(ps_arr[i]),
            "truth_present": bool(present[i]),
            "shown": bool(shown[i].any()),
            "centroid_in_box": bool(loc["centroid_in"][i]),
        }
        for i in range(n)
    ]
    return {
        "layout": "box-video",
        "n_videos": len(set(vids)),
        "n_images": n,
        "n_positive": int(present.sum()),
        "n_negative": int((~present).sum()),
        **pooled,
        "ci95": ci95,
        "per_video": per_video,
        "thresholds": {"mask": float(mask_threshold), "presence": float(presence_threshold)},
        "per_image": per_frame,
    }


def evaluate_box_video(
    model_path: str | Path,
    data_dir: str | Path,
    presence_threshold: float | None = None,
    mask_threshold: float | None = None,
    *,
    every: int = 1,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, Any]:
    """Score ``model_path`` on every ``every``-th frame of each video of a box-labelled folder.

    Each frame goes through the bedside path (`predict_fn`); presence at ``presence_threshold``
    (None: the spec's ``presence_enter``), localisation against the expert boxes at the model's
    input size (see `box_video_report`). Raises ConfigError for bad data or options, ModelError
    for the model.
    """
    from train.boxes import box_mask, iter_video, read_box_videos

    data_dir = Path(data_dir)
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ConfigError("evaluation options", [f"every: {every!r} is not allowed; use a positive integer"])
    try:
        videos = read_box_videos(data_dir)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(data_dir), [str(e)]) from None
    predict, spec = predict_fn(model_path)
    pthr = spec.thresholds.presence_enter if presence_threshold is None else presence_threshold
    _check_thresholds(pthr, mask_threshold)
    mthr = spec.thresholds.mask if mask_threshold is None else float(mask_threshold)
    h, w = spec.preprocess.height, spec.preprocess.width
    masks, ps, boxes, present, vids, frames = [], [], [], [], [], []
    t0 = time.monotonic()
    for v in videos:
        try:
            for i, frame in iter_video(v, every):
                prob, p = predict(frame)
                bb = v.boxes_at(i)
                masks.append(prob >= mthr)
                ps.append(p)
                boxes.append(box_mask(bb, frame.shape[:2], (h, w)))
                present.append(bool(bb))
                vids.append(v.subject)
                frames.append(i)
        except ValueError as e:
            raise ConfigError(str(data_dir), [str(e)]) from None
        logger.info("  video %s: %d frames so far (%.1f s)", v.subject, len(ps), time.monotonic() - t0)
    rep = box_video_report(masks, ps, boxes, present, vids, mask_threshold=mthr, presence_threshold=pthr,
                           labels={v.subject: v.label for v in videos}, frames=frames, n_boot=n_boot, seed=seed)
    path = Path(model_path)
    rep["model"] = _model_info(path, spec)
    rep["data"] = {"path": str(data_dir), "every": every}
    rep["sheet"] = None
    return rep


def format_box_video_report(rep: dict[str, Any]) -> str:
    """The on-screen summary of `evaluate_box_video`."""
    ci = rep.get("ci95") or {}
    lines = [
        _header(rep),
        f"  data             : {rep.get('data', {}).get('path', '?')}: box-labelled video, {rep['n_videos']} videos, "
        f"{rep['n_images']} frames (every {rep.get('data', {}).get('every', 1)}; {rep['n_positive']} with a nerve, "
        f"{rep['n_negative']} without)",
        f"  thresholds       : presence {rep['thresholds']['presence']:g}, mask {rep['thresholds']['mask']:g}",
        f"  presence AUC     : {_fmt(rep['presence_auc'])}{_fmt_ci(ci.get('presence_auc'))}",
        f"  sensitivity      : {_fmt(rep['presence_sensitivity'])}{_fmt_ci(ci.get('presence_sensitivity'))}",
        f"  specificity      : {_fmt(rep['presence_specificity'])}{_fmt_ci(ci.get('presence_specificity'))}",
        f"  centroid in box  : {_fmt(rep['centroid_in_box'])}{_fmt_ci(ci.get('centroid_in_box'))}"
        f"   (nerve frames; no outline = miss; {_fmt(rep['centroid_in_box_when_shown'])} where shown)",
        f"  mask in boxes    : {_fmt(rep['mask_in_box'])}{_fmt_ci(ci.get('mask_in_box'))}"
        "   (share of a shown outline's pixels inside the boxes)",
        f"  ungated          : centroid in box {_fmt(rep['centroid_in_box_ungated'])}, "
        f"mask in boxes {_fmt(rep['mask_in_box_ungated'])} (mask head alone)",
        f"  CIs              : bootstrap over {ci.get('n_videos', 0)} videos, {ci.get('n_boot', 0)} replicates",
        "  per video        :    video label     n   pos    AUC   sens   spec  c-in-box  in-box",
    ]
    for r in rep["per_video"]:
        lines.append(
            f"                     {r['video']:>7} {r['label'] or '-':>5} {r['n']:>5} {r['n_positive']:>5}  "
            f"{_fmt(r['presence_auc'], 2):>5}  {_fmt(r['sensitivity'], 2):>5}  {_fmt(r['specificity'], 2):>5}  "
            f"{_fmt(r['centroid_in_box'], 2):>8}  {_fmt(r['mask_in_box'], 2):>6}"
        )
    return "\n".join(lines)


REPORT_KEYS = (
    "n_images",
    "kaggle_score",
    "mean_dice_positive",
    "presence_sensitivity",
    "presence_specificity",
    "presence_auc",
    "presence_accuracy",
    "n_positive",
    "n_negative",
    "n_unlabelled_skipped",
    "ci95",
    "per_subject",
    "thresholds",
    "model",
    "data",
    "sheet",
    "per_image",
)


def _ordered(rep: dict[str, Any]) -> dict[str, Any]:
    return {k: rep[k] for k in REPORT_KEYS if k in rep} | {k: v for k, v in rep.items() if k not in REPORT_KEYS}


def write_sheet(
    report: dict[str, Any],
    samples: Sequence[Sample],
    truths: Sequence[np.ndarray],
    preds: Sequence[np.ndarray],
    path: str | Path,
    n: int = 6,
) -> Path:
    """Render the best/worst contact sheet of an `evaluate` run and write it as PNG.

    samples, truths, preds: the evaluated frames in report order (bool masks at model size).
    Only the shown frames are read again from disk. Raises ConfigError when it cannot be written.
    """
    per = report["per_image"]
    sections = select_sheet_frames(
        np.array([r["dice"] for r in per]),
        np.array([r["truth_present"] for r in per]),
        np.array([r["p_nerve"] for r in per]),
        np.array([r["pred_present"] for r in per]),
        n=n,
    )
    tiles = []
    for title, idx in sections:
        row = []
        for i in idx:
            r = per[i]
            row.append(
                SheetTile(
                    image=load_gray(samples[i].image),
                    truth=truths[i],
                    pred=preds[i],
                    caption=(r["name"], f"dice {r['dice']:.2f}  p {r['p_nerve']:.2f}"),
                )
            )
        tiles.append((title, row))
    h, w = truths[0].shape
    model = report.get("model", {})
    title = f"{model.get('name', '')}: kaggle {report['kaggle_score']:.3f} on {report['n_images']} frames"
    img = contact_sheet(tiles, title=title, tile_aspect=h / w)
    path = Path(path)
    ok = cv2.imwrite(str(path), img) if path.parent.is_dir() else False
    if not ok:
        raise ConfigError("<command line>", [f"--sheet: cannot write {path} (does its folder exist?)"])
    logger.info("contact sheet written to %s (%dx%d)", path, img.shape[1], img.shape[0])
    return path


def write_report(report: dict[str, Any], path: str | Path, per_image: bool = False) -> Path:
    """Write ``report`` as indented JSON; ``per_image`` is dropped unless asked for."""
    out = {k: v for k, v in report.items() if per_image or k != "per_image"}
    path = Path(path)
    path.write_text(json.dumps(out, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


# -- the command ----------------------------------------------------------------------------------


def _fmt(v: float | None, nd: int = 3) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _fmt_ci(ci: list[float] | None) -> str:
    return "" if ci is None else f"  95% CI {ci[0]:.3f}-{ci[1]:.3f}"


def format_report(rep: dict[str, Any]) -> str:
    """The human-readable summary printed by ``nerveseg eval``."""
    ci = rep.get("ci95") or {}
    lines = [
        _header(rep),
        f"  data             : {rep.get('data', {}).get('path', '?')}: {rep['n_images']} labelled frames "
        f"({rep['n_positive']} with a nerve, {rep['n_negative']} without; "
        f"{rep.get('n_unlabelled_skipped', 0)} unlabelled skipped)",
        f"  thresholds       : presence {rep['thresholds']['presence']:g}, mask {rep['thresholds']['mask']:g}"
        " (Dice at the model's input size)",
        f"  kaggle score     : {_fmt(rep['kaggle_score'])}{_fmt_ci(ci.get('kaggle_score'))}"
        "   (mean Dice, empty on empty = 1)",
        f"  Dice, nerve only : {_fmt(rep['mean_dice_positive'])}{_fmt_ci(ci.get('mean_dice_positive'))}",
        f"  presence         : sensitivity {_fmt(rep['presence_sensitivity'])}  "
        f"specificity {_fmt(rep['presence_specificity'])}  AUC {_fmt(rep['presence_auc'])}  "
        f"accuracy {_fmt(rep['presence_accuracy'])}",
    ]
    if ci:
        lines.append(f"  CIs              : bootstrap over {ci['n_subjects']} subjects, {ci['n_boot']} replicates")
    else:
        lines.append("  CIs              : none (no subject ids: frames of one scan are not independent)")
    if rep["per_subject"]:
        lines.append("  per subject      :  subject     n   pos  kaggle   Dice+   sens   spec")
        for s in rep["per_subject"]:
            lines.append(
                f"                      {s['subject']:>7} {s['n']:>5} {s['n_positive']:>5}  "
                f"{_fmt(s['kaggle_score']):>6}  {_fmt(s['mean_dice_positive']):>6}  "
                f"{_fmt(s['sensitivity'], 2):>5}  {_fmt(s['specificity'], 2):>5}"
            )
    if rep.get("sheet"):
        lines.append(f"  contact sheet    : {rep['sheet']}")
    return "\n".join(lines)


def cmd_eval(args: argparse.Namespace) -> int:
    from edge.plugin import EXIT_OK, setup_logging

    setup_logging(args.log_level or "WARNING")
    problems = []
    if args.json is not None and not Path(args.json).parent.is_dir():
        problems.append(f"--json: folder {Path(args.json).parent} does not exist")
    if args.sheet is not None:
        sheet = Path(args.sheet)
    elif args.json is not None:
        sheet = Path(args.json).with_name(Path(args.json).stem + "_sheet.png")
    else:
        sheet = Path(DEFAULT_SHEET)
    if not sheet.parent.is_dir():
        problems.append(f"--sheet: folder {sheet.parent} does not exist")
    if not Path(args.data).is_dir():
        problems.append(f"--data: {args.data} is not a folder")
    if problems:
        raise ConfigError("<command line>", problems)
    if args.model is None:
        from edge.models import default_model_path

        args.model = str(default_model_path())
    from train.boxes import is_box_video_folder

    video = is_box_video_folder(args.data)
    if args.live:
        return _cmd_live(args, video)
    if video and (args.split is not None or args.limit is not None):
        raise ConfigError("<command line>", [f"--split/--limit: {args.data} is a box-labelled video folder; "
                                             "use --every N to take every Nth frame"])
    rep = evaluate(
        args.model,
        args.data,
        presence_threshold=args.presence_threshold,
        mask_threshold=args.mask_threshold,
        limit=args.limit,
        split=args.split,
        sheet_path=None if video else sheet,
        every=args.every,
    )
    if args.json is not None:
        write_report(rep, args.json, per_image=args.per_image)
    print(format_box_video_report(rep) if video else format_report(rep))
    if args.json is not None:
        print(f"  report           : {args.json}{' (with per-image rows)' if args.per_image else ''}")
    return EXIT_OK


def _cmd_live(args: argparse.Namespace, video: bool) -> int:
    """``nerveseg eval --live``: the live loop on box-labelled video (`train.live`)."""
    from edge.config import Config, load_config, with_overrides
    from edge.plugin import EXIT_OK
    from train.live import evaluate_live, format_live

    if not video:
        raise ConfigError("<command line>", [f"--live: {args.data} is not a box-labelled video folder "
                                             "(manifest.csv with boxes_path, like regional-us)"])
    if args.timelines is not None and not Path(args.timelines).parent.is_dir():
        raise ConfigError("<command line>", [f"--timelines: folder {Path(args.timelines).parent} does not exist"])
    cfg = load_config(args.config) if args.config else Config()
    overrides: dict[str, Any] = {}
    if args.model is not None:
        overrides["model"] = {"path": args.model}
    if args.presence_threshold is not None:
        overrides["presence"] = {"enter": args.presence_threshold}
    cfg = with_overrides(cfg, **overrides) if overrides else cfg
    rep = evaluate_live(args.data, cfg, videos=args.videos, timeline_dir=args.timelines)
    if args.json is not None:
        write_report(rep, args.json)
    print(format_live(rep))
    if args.json is not None:
        print(f"  report           : {args.json}")
    if rep.get("timelines"):
        print(f"  timelines        : {Path(rep['timelines'][0]).parent} ({len(rep['timelines'])} PNG)")
    return EXIT_OK


def _positive_int(text: str) -> int:
    try:
        v = int(text)
        if v < 1:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    return v


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``nerveseg eval`` (entry point ``nerveseg.commands``; imports nothing heavy)."""
    from edge.plugin import common_options

    e = subparsers.add_parser(
        "eval",
        parents=[common_options()],
        help="score a model (.tflite or .keras) on a labelled data folder: Dice, presence, CIs, contact sheet",
    )
    e.add_argument(
        "--model",
        help=".tflite (bedside path) or .keras model, spec <model>.yaml beside it (default: the shipped model)",
    )
    e.add_argument("--data", required=True, help="data folder with manifest.csv (path, mask_path[, subject, split]), "
                   "or a box-labelled video folder laid out like regional-us (manifest.csv with boxes_path)")
    e.add_argument("--json", help="write the report as JSON here")
    e.add_argument(
        "--sheet",
        help="contact sheet PNG of the best and worst frames "
        f"(default: <json>_sheet.png beside --json, else {DEFAULT_SHEET})",
    )
    e.add_argument(
        "--presence-threshold",
        type=float,
        help="P(nerve) at or above which an outline is kept (default: the spec's presence_enter, the bedside's "
        "operating point)",
    )
    e.add_argument("--live", action="store_true", help="box-labelled video: play each video through the live loop "
                   "(hysteresis, smoothing) and score what the screen showed (train.live)")
    e.add_argument("--config", help="--live: the runtime config whose presence rules to use (default: built-in)")
    e.add_argument("--videos", nargs="+", help="--live: only these videos (subject ids)")
    e.add_argument("--timelines", help="--live: write one timeline PNG per video into this folder (matplotlib)")
    e.add_argument("--every", type=_positive_int, default=1,
                   help="box-labelled video folders: score every Nth frame (default: every frame)")
    e.add_argument("--mask-threshold", type=float, help="per-pixel threshold (default: the model spec's)")
    e.add_argument("--split", help="only rows of this manifest split (e.g. test)")
    e.add_argument("--limit", type=_positive_int, help="at most N labelled frames, spread evenly over the manifest")
    e.add_argument("--per-image", action="store_true", help="keep the per-image rows in the JSON")
    e.set_defaults(func=cmd_eval)
