"""Keras -> TFLite (float32 or full-integer int8), with the model spec written beside it.

The path that works with Keras 3 is ``model.export(dir)`` (a SavedModel whose
``serving_default`` signature keeps the dict output names ``mask`` and
``nerve_present``) then ``tf.lite.TFLiteConverter.from_saved_model(dir)``;
``from_keras_model`` fails in several ways with Keras 3.
``model.export`` makes the batch dimension None even for a model built with
``batch_size=1``; a flexible batch adds SHAPE/PACK ops around TRANSPOSE_CONV,
splits the XNNPACK graph and ran several times slower, so the export signature
here is always batch 1 (the whole graph then becomes one XNNPACK partition).

int8 is full-integer quantisation: every op int8, int8 input and output
tensors, calibrated on representative frames that went through the *same*
`edge.preprocess.preprocess` as the bedside. Calibrate on frames with and
without a nerve: an all-nerve set collapsed the presence output to a constant
(the mask survived); `representative_frames` refuses a one-sided set.

TensorFlow is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edge.preprocess import preprocess
from edge.spec import ModelSpec, PreprocessSpec, save_spec

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)

QUANTIZATIONS = ("int8", "float32")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _check_model_against_spec(model: keras.Model, spec: ModelSpec) -> None:
    """ValueError when the model's input size or output names differ from the spec."""
    if len(model.inputs) != 1:
        raise ValueError(f"model {model.name} must have one image input, it has {len(model.inputs)}")
    shape = tuple(model.inputs[0].shape)
    want = (spec.preprocess.height, spec.preprocess.width, 1)
    if tuple(shape[1:]) != want:
        raise ValueError(f"model {model.name} takes input {tuple(shape[1:])} but the spec says {want} (H, W, C)")
    outputs = model.output
    names = set(outputs) if isinstance(outputs, dict) else set()
    need = {spec.outputs.mask, spec.outputs.presence}
    if not need <= names:
        raise ValueError(
            f"model {model.name} must output a dict with keys {sorted(need)} (the spec's output names), "
            f"it has {sorted(names) if names else type(outputs).__name__}"
        )


def to_tflite(
    model: keras.Model,
    out_path: str | Path,
    quantization: str = "int8",
    representative: Iterable[np.ndarray] | None = None,
    spec: ModelSpec | None = None,
) -> Path:
    """Convert ``model`` to ``out_path`` (.tflite) and write its spec beside it (``.yaml``).

    model: Keras 3 model, one float32 input ``(B, H, W, 1)``, dict outputs named as
        in ``spec.outputs``. Any B: the export signature is fixed to batch 1.
    quantization: ``"int8"`` (full-integer, int8 input/output tensors) or ``"float32"``.
    representative: int8 only (required): float32 arrays of shape ``(1, H, W, 1)``
        (or ``(H, W)``), preprocessed exactly as at the bedside; iterated once per
        conversion. See `representative_frames`.
    spec: the model spec to write; its ``quantization`` is set to ``quantization``
        and its ``tflite_sha256`` to the written file's hash.

    Returns the .tflite path. Raises ValueError on bad options or a model/spec mismatch.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, got {quantization!r}")
    if spec is None:
        raise ValueError("a ModelSpec is required: the bedside cannot feed a model without its spec")
    _check_model_against_spec(model, spec)
    frames: list[np.ndarray] = []
    if quantization == "int8":
        if representative is None:
            raise ValueError("int8 conversion needs representative frames (float32 (1, H, W, 1), preprocessed)")
        h, w = spec.preprocess.height, spec.preprocess.width
        for i, f in enumerate(representative):
            a = np.asarray(f, dtype=np.float32)
            if a.size != h * w:
                raise ValueError(f"representative frame {i} has shape {a.shape}, expected (1, {h}, {w}, 1)")
            frames.append(a.reshape(1, h, w, 1))
        if not frames:
            raise ValueError("representative frames are empty")

    import tensorflow as tf

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nerveseg-export-") as tmp:
        saved = Path(tmp) / "saved_model"
        # Keras's export makes the batch dimension None whatever the model says; a fixed
        # signature keeps every shape static, so no SHAPE/PACK ops around TRANSPOSE_CONV.
        sig = [tf.TensorSpec((1, *model.inputs[0].shape[1:]), tf.float32, name=model.inputs[0].name)]
        model.export(str(saved), format="tf_saved_model", verbose=False, input_signature=sig)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        if quantization == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([f] for f in frames)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        flat = converter.convert()
    out_path.write_bytes(flat)
    spec_file = save_spec(spec.model_copy(update={"quantization": quantization}), out_path)
    logger.info(
        "wrote %s (%s, %.0f KB, %d calibration frames) and %s",
        out_path,
        quantization,
        len(flat) / 1024,
        len(frames),
        spec_file,
    )
    return out_path


def _images(images_dir: Path) -> list[Path]:
    paths = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and "_mask" not in p.stem)
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {images_dir}")
    return paths


def split_by_nerve(images_dir: str | Path, masks_dir: str | Path) -> tuple[list[Path], list[Path]]:
    """Images of ``images_dir`` split into ``(with a nerve, without)`` by their masks, each sorted by name.

    An image's mask is ``masks_dir/{stem}_mask{suffix}`` or ``masks_dir/{name}``; a
    non-zero pixel means "nerve". Raises ValueError for a missing or unreadable mask.
    """
    masks_dir = Path(masks_dir)
    pos, neg = [], []
    for p in _images(Path(images_dir)):
        mp = next((c for c in (masks_dir / f"{p.stem}_mask{p.suffix}", masks_dir / p.name) if c.is_file()), None)
        if mp is None:
            raise ValueError(f"no mask for {p.name} in {masks_dir}")
        m = cv2.imread(str(mp), cv2.IMREAD_GRAYSCALE)
        if m is None:
            raise ValueError(f"cannot read mask {mp}")
        (pos if m.any() else neg).append(p)
    return pos, neg


def representative_frames(
    images_dir: str | Path,
    spec: PreprocessSpec,
    masks_dir: str | Path | None = None,
    limit: int | None = None,
) -> list[np.ndarray]:
    """Calibration frames: every image in ``images_dir`` through `edge.preprocess.preprocess`.

    Returns float32 arrays of shape ``(1, spec.height, spec.width, 1)``, sorted by
    file name. Images are read as gray and taken whole (ROI = the image: these are
    already ultrasound crops).

    masks_dir: when given, each image's mask (``{stem}_mask{suffix}`` or the same
        name) says whether it shows a nerve; the set must hold both kinds, else
        ValueError (a one-sided set collapsed the presence output in int8).
    limit: keep at most this many frames, half with and half without a nerve
        where masks are known (evenly spaced over the sorted names, so the choice
        is deterministic).
    """
    images_dir = Path(images_dir)
    paths = _images(images_dir)
    if masks_dir is not None:
        pos, neg = split_by_nerve(images_dir, masks_dir)
        if not pos or not neg:
            raise ValueError(
                f"representative set {images_dir} has {len(pos)} frames with a nerve and {len(neg)} without: "
                "calibrate on both, or the int8 presence output collapses"
            )
        if limit is not None:
            n_pos = min(len(pos), max(1, limit // 2))
            pos, neg = _spaced(pos, n_pos), _spaced(neg, min(len(neg), max(1, limit - n_pos)))
        logger.info("representative frames from %s: %d with nerve, %d without", images_dir, len(pos), len(neg))
        paths = sorted(pos + neg)
    elif limit is not None:
        paths = _spaced(paths, min(limit, len(paths)))
    frames = []
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise ValueError(f"cannot read image {p}")
        frames.append(preprocess(img, None, spec)[None, :, :, None].copy())
    return frames


def _spaced(items: list[Path], n: int) -> list[Path]:
    """``n`` items evenly spaced over ``items`` (deterministic subsample)."""
    if n >= len(items):
        return list(items)
    idx = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in idx]
