"""``nerveseg convert``: a trained ``.keras`` model -> a checked ``.tflite`` with its spec and model card.

    nerveseg convert --model M.keras --out M.tflite [--float32] [--calibration DIR] [--check DIR]
                     [--calibration-limit N] [--check-limit N] [--name NAME] [--force]
    nerveseg convert reference [--model M.tflite] [--filters N] [--out DIR] [--force]
                     (the benchmark's classic U-Net: see `convert.reference`)

1. The model's spec is its sidecar ``M.yaml`` (written by training); none -> exit 3.
2. int8: representative frames from ``--calibration DIR``, one of three layouts:
   a folder with ``manifest.csv`` (`train.manifest`), a folder with ``images/`` and
   ``masks/`` (like ``kaggle-bp/fullres``), or a plain folder of images (what
   ``nerveseg calibrate`` saves: ROI crops, no masks). Where masks say which frames
   show a nerve the set must hold both kinds, else exit 2: an all-"nerve" set
   collapsed the int8 presence output to a constant while the mask survived; the larger kind
   is thinned to at most `MAX_IMBALANCE` times the smaller. A plain folder cannot be
   checked for balance: a warning says so. Default: the ``kaggle-bp`` manifest of the
   shared data (its 37 empty frames and 111 frames with a nerve after thinning), else exit 2
   asking for --calibration.
3. Conversion (`convert.tflite.to_tflite`) into a scratch folder beside ``--out``.
4. Agreement check (`convert.check.check_agreement`) of the TFLite file, run through the
   bedside `ModelRunner`, against the Keras model on held-out frames that were *not*
   calibration frames (compared by content, so a copy does not slip through). ``--check DIR``
   (any of the three layouts: no labels are needed to compare two models); default: the
   shared ``kaggle-bp`` frames minus the calibration frames: the 25 unlabeled Kaggle test
   frames, any full-resolution frames not calibrated on, and 3 frames per subject of the
   256x186 set (about 145 frames with the default calibration). Calibration frames are
   never accepted as held-out: int8 ranges fitted on them flatter the check.
5. Failure of any tolerance: the file is kept only as ``M.rejected.tflite`` (+ ``.yaml``
   with the report), an existing ``M.tflite`` is left untouched, exit 3 listing the
   failures. Success: ``M.tflite`` + ``M.yaml`` (``provenance.int8_agreement`` or
   ``float32_agreement``, ``provenance.conversion``) + the model card ``M.md``.

TensorFlow is imported inside the command only.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import logging
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.errors import ConfigError, ModelError
from edge.preprocess import preprocess
from edge.spec import ModelSpec, PreprocessSpec, load_spec, save_spec, spec_path_for

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
# The larger kind (with / without a nerve) of a labelled calibration set is thinned to at most this
# many times the smaller: the whole kaggle-bp manifest (2037 with, 37 without) gives 111 + 37 frames.
MAX_IMBALANCE = 3
DEFAULT_CALIBRATION_LIMIT = 300  # the converter runs the float model once per frame; a few hundred suffice
DEFAULT_CHECK_LIMIT = 300
# Fewer calibration frames than this clipped the int8 P(nerve) range in tests (13 frames rejected, 37 passed).
FEW_CALIBRATION_FRAMES = 30
CHECK_PER_SUBJECT = 3  # 256x186 frames of each kaggle-bp subject in the default held-out set


@dataclass
class FrameSet:
    """Image files chosen for calibration or checking, with what is known about them."""

    paths: list[Path]
    source: str  # folder as shown to people (shared data as "<shared data>/..."), or a description
    layout: str  # "manifest", "images+masks", "plain" or "kaggle-bp default"
    role: str  # "calibration" or "check"
    with_nerve: int | None = None  # None: unknown (no masks) or not needed (check)
    without_nerve: int | None = None
    notes: list[str] = field(default_factory=list)
    selection: str = ""  # which frames of ``source`` were taken, when not all

    def summary(self) -> str:
        """E.g. ``"55 frames from <shared data>/kaggle-bp/fullres (18 with a nerve, 37 without)"``."""
        if self.with_nerve is not None:
            kinds = f" ({self.with_nerve} with a nerve, {self.without_nerve} without)"
        else:
            kinds = " (no masks: balance not checked)" if self.role == "calibration" else ""
        sel = f" ({self.selection})" if self.selection else ""
        return f"{len(self.paths)} frames from {self.source}{sel}{kinds}"

    def describe(self) -> dict[str, Any]:
        """For the spec's provenance (YAML-safe)."""
        d: dict[str, Any] = {"summary": self.summary(), "source": self.source, "layout": self.layout}
        d["frames"] = len(self.paths)
        if self.with_nerve is not None:
            d.update(with_nerve=self.with_nerve, without_nerve=self.without_nerve)
        if self.notes:
            d["notes"] = list(self.notes)
        return d


def _show(path: Path, data_dir: Path) -> str:
    """``path`` as shown in messages and provenance: under the shared data as ``<shared data>/...``."""
    try:
        return f"<shared data>/{path.resolve().relative_to(data_dir.resolve())}"
    except ValueError:
        return str(path)


# -- frame sets ----------------------------------------------------------------------------------


def _cli_error(problem: str) -> ConfigError:
    return ConfigError("<command line>", [problem])


def default_data_dir() -> Path:
    """``$NERVESEG_DATA``, else ``shared/data`` beside the checkout."""
    from convert.make_untrained import default_data_dir as _default

    return _default()


def _spaced(items: list, n: int) -> list:
    """``n`` items evenly spaced over ``items`` (deterministic subsample, order kept)."""
    if n >= len(items):
        return list(items)
    if n <= 0:
        return []
    idx = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in idx]


def _plain_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and "_mask" not in p.stem)


def _has_nerve(mask: Path) -> bool:
    m = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise _cli_error(f"cannot read mask {mask}")
    return bool(m.any())


def read_folder(folder: Path, option: str) -> tuple[str, list[Path], list[Path], list[Path]]:
    """``(layout, with nerve, without nerve, unlabelled)`` image paths of ``folder``.

    Layouts: ``manifest.csv`` (rows without a mask are unlabelled), ``images/`` + ``masks/``
    (`convert.tflite.split_by_nerve`), or plain images (all unlabelled). Raises ConfigError
    naming ``option`` and the folder for a missing folder, a broken manifest or no images.
    """
    if not folder.is_dir():
        raise _cli_error(f"{option} {folder}: not a folder")
    if (folder / "manifest.csv").is_file():
        from train.manifest import read_manifest

        try:
            samples = read_manifest(folder)
        except (OSError, ValueError) as e:
            raise _cli_error(f"{option} {folder}: {e}") from None
        pos, neg, unl = [], [], []
        for s in samples:
            if s.mask is None:
                unl.append(s.image)
            else:
                (pos if _has_nerve(s.mask) else neg).append(s.image)
        return "manifest", pos, neg, unl
    if (folder / "images").is_dir() and (folder / "masks").is_dir():
        from convert.tflite import split_by_nerve

        try:
            pos, neg = split_by_nerve(folder / "images", folder / "masks")
        except ValueError as e:
            raise _cli_error(f"{option} {folder}: {e}") from None
        return "images+masks", pos, neg, []
    paths = _plain_images(folder)
    if not paths:
        raise _cli_error(
            f"{option} {folder}: no manifest.csv, no images/ + masks/ and no images ({', '.join(IMAGE_SUFFIXES)})"
        )
    return "plain", [], [], paths


def _balance(pos: list[Path], neg: list[Path], limit: int) -> tuple[list[Path], list[Path]]:
    """Thin the larger kind to `MAX_IMBALANCE` x the smaller, then both to ``limit`` frames, half each if possible."""
    cap = MAX_IMBALANCE * min(len(pos), len(neg))
    pos, neg = _spaced(pos, min(len(pos), cap)), _spaced(neg, min(len(neg), cap))
    if len(pos) + len(neg) > limit:
        n_pos = min(len(pos), max(limit // 2, limit - len(neg)))
        pos, neg = _spaced(pos, n_pos), _spaced(neg, min(len(neg), limit - n_pos))
    return pos, neg


def calibration_set(folder: Path | None, limit: int, data_dir: Path) -> FrameSet:
    """The representative frames for int8 calibration (see the module doc). Raises ConfigError."""
    if folder is None:
        # The whole kaggle-bp manifest, thinned to <= 3:1: the 55 full-resolution frames alone (18 with a
        # nerve) shifted the int8 P(nerve) of a trained model by -0.037, enough to lose every detection at
        # a 0.97 operating point; 111 positives + 37 empties brought it to -0.002.
        folder = data_dir / "kaggle-bp"
        if not (folder / "manifest.csv").is_file():
            raise _cli_error(
                f"--calibration: no calibration frames given and the default {folder} does not exist; "
                "give --calibration DIR (frames with and without a nerve, ideally from your own machine)"
            )
    layout, pos, neg, unl = read_folder(folder, "--calibration")
    if layout != "plain":
        if not pos or not neg:
            raise _cli_error(
                f"--calibration {folder}: {len(pos)} frames with a nerve and {len(neg)} without. The set must be "
                "balanced, holding frames of both kinds: int8 ranges fitted on one kind collapsed the presence "
                "output to a constant (P(nerve) 0.5 whatever the frame) while the mask still looked fine"
            )
        notes = [f"{len(unl)} frames without a mask ignored"] if unl else []
        n_pos, n_neg = len(pos), len(neg)
        pos, neg = _balance(pos, neg, limit)
        if (len(pos), len(neg)) != (n_pos, n_neg):
            notes.append(f"thinned from {n_pos} with a nerve and {n_neg} without (evenly spaced)")
        fs = FrameSet(sorted(pos + neg), _show(folder, data_dir), layout, "calibration", len(pos), len(neg), notes)
    else:
        logger.warning(
            "--calibration %s has no masks: whether it holds frames with and without a nerve cannot be checked. "
            "Make sure it does (a one-sided set collapses the int8 presence output); the agreement check "
            "will catch a collapse",
            folder,
        )
        fs = FrameSet(_spaced(unl, limit), _show(folder, data_dir), layout, "calibration")
    logger.info("calibration: %s", fs.summary())
    if len(fs.paths) < FEW_CALIBRATION_FRAMES:
        logger.warning(
            "only %d calibration frames: int8 ranges fitted on few frames may clip P(nerve) on others "
            "(13 frames failed the agreement check in tests); %d or more are better",
            len(fs.paths),
            FEW_CALIBRATION_FRAMES,
        )
    return fs


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _default_check_candidates(data_dir: Path) -> tuple[list[Path], str, str]:
    root = data_dir / "kaggle-bp"
    if not (root / "manifest.csv").is_file():
        raise _cli_error(
            f"--check: no held-out frames given and the default {root} does not exist; give --check DIR "
            "(real frames, not the calibration frames)"
        )
    from train.manifest import read_manifest

    samples = read_manifest(root)
    full = [s.image for s in samples if s.name.startswith("fullres/")]
    by_subject: dict[str, list] = {}
    for s in samples:
        if not s.name.startswith("fullres/"):
            by_subject.setdefault(s.subject or "", []).append(s)
    small = []
    for group in by_subject.values():
        group.sort(key=lambda s: s.name)
        small += [s.image for s in _spaced(group, CHECK_PER_SUBJECT)]
    selection = (
        "its full-resolution frames not used for calibration, the 25 unlabeled Kaggle test frames among them, "
        f"and {CHECK_PER_SUBJECT} frames per subject of the 256x186 set"
    )
    return full + small, _show(root, data_dir), selection


def check_set(folder: Path | None, calibration: FrameSet | None, limit: int, data_dir: Path) -> FrameSet:
    """Held-out frames for the agreement check: never a calibration frame (by content). Raises ConfigError."""
    if folder is None:
        candidates, source, selection = _default_check_candidates(data_dir)
        layout = "kaggle-bp default"
    else:
        layout, pos, neg, unl = read_folder(folder, "--check")
        candidates, source, selection = pos + neg + unl, _show(folder, data_dir), ""
    calib_paths = calibration.paths if calibration else []
    sizes = {p.stat().st_size for p in calib_paths}
    taken = {_digest(p) for p in calib_paths}
    # same content = same frame, whatever its name or folder; only files of a calibration file's size are read
    kept = [p for p in candidates if p.stat().st_size not in sizes or _digest(p) not in taken]
    notes = []
    if len(kept) < len(candidates):
        notes.append(f"{len(candidates) - len(kept)} calibration frames left out")
        logger.info(
            "held-out set: %d of %d frames were calibration frames, left out",
            len(candidates) - len(kept),
            len(candidates),
        )
    if not kept:
        raise _cli_error(
            f"--check {source}: every frame is also a calibration frame; the check needs held-out frames, or "
            "int8 ranges fitted on the very frames flatter the result"
        )
    if len(kept) > limit:
        notes.append(f"{limit} of {len(kept)} frames, evenly spaced")
        kept = _spaced(kept, limit)
    fs = FrameSet(kept, source, layout, "check", notes=notes, selection=selection)
    logger.info("held-out check: %d frames from %s", len(kept), source)
    return fs


def load_frames(paths: list[Path], spec: PreprocessSpec) -> list[np.ndarray]:
    """Each image read as gray, taken whole (ROI = the image) and preprocessed: float32 ``(H, W)`` arrays."""
    frames = []
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise _cli_error(f"cannot read image {p}")
        frames.append(preprocess(img, None, spec).copy())
    return frames


# -- conversion ----------------------------------------------------------------------------------


def op_counts(tflite_path: Path) -> dict[str, int]:
    """``{builtin op name: count}`` over the model's subgraphs, most frequent first (needs TensorFlow)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = flatbuffer_utils.read_model(str(tflite_path))
    counts: Counter[str] = Counter()
    for sg in model.subgraphs:
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            counts[code.customCode.decode() if code.customCode else names.get(builtin, str(builtin))] += 1
    return dict(counts.most_common())


def _command_line(args: argparse.Namespace) -> str:
    parts = ["nerveseg convert", f"--model {args.model}", f"--out {args.out}"]
    if args.float32:
        parts.append("--float32")
    for opt, v in (
        ("--calibration", args.calibration),
        ("--check", args.check),
        ("--name", args.name),
        ("--calibration-limit", args.calibration_limit),
        ("--check-limit", args.check_limit),
    ):
        if v is not None:
            parts.append(f"{opt} {v}")
    if args.force:
        parts.append("--force")
    return " ".join(parts)


def _siblings(tflite: Path) -> list[Path]:
    """The model file and what travels with it: spec and card."""
    return [tflite, spec_path_for(tflite), tflite.with_suffix(".md")]


def _move(src: Path, dst: Path) -> None:
    """Move a model and its spec (os.replace: atomic on one file system)."""
    os.replace(src, dst)
    os.replace(spec_path_for(src), spec_path_for(dst))


def convert(args: argparse.Namespace) -> tuple[Path, ModelSpec, dict[str, Any], list[str]]:
    """The command's work; returns ``(out path, spec written, agreement report, summary lines)``.

    Raises ConfigError (bad options, calibration or held-out set) and ModelError (model or
    spec unusable, conversion failed, agreement failed).
    """
    from convert.check import check_agreement, failures, format_report, tolerances_for

    missing = [opt for opt, v in (("--model", args.model), ("--out", args.out)) if not v]
    if missing:
        # Not argparse-required: `nerveseg convert reference` shares this parser and needs neither.
        raise _cli_error(f"{' and '.join(missing)} required (or: nerveseg convert reference --help)")
    model_path, out = Path(args.model), Path(args.out)
    if model_path.suffix != ".keras":
        raise _cli_error(f"--model {model_path}: expected a Keras 3 .keras file")
    if not model_path.is_file():
        raise ModelError(f"model file {model_path} not found")
    if out.suffix != ".tflite":
        raise _cli_error(f"--out {out}: the output must end in .tflite")
    if not out.parent.is_dir():
        raise _cli_error(f"--out {out}: folder {out.parent} does not exist")
    existing = [p for p in _siblings(out) if p.exists()]
    if existing and not args.force:
        raise _cli_error(f"--out {out}: {', '.join(map(str, existing))} already exist(s); use --force to replace")
    for opt, n, least in (("--calibration-limit", args.calibration_limit, 2), ("--check-limit", args.check_limit, 1)):
        if n is not None and n < least:
            raise _cli_error(f"{opt} must be at least {least}, got {n}")
    spec = load_spec(model_path, verify_hash=False)  # ModelError naming M.yaml when missing or invalid
    if args.name:
        spec = spec.model_copy(update={"name": args.name})
    quantization = "float32" if args.float32 else "int8"
    data_dir = default_data_dir()

    calib = None
    if quantization == "int8":
        calib = calibration_set(
            Path(args.calibration) if args.calibration else None,
            args.calibration_limit or DEFAULT_CALIBRATION_LIMIT,
            data_dir,
        )
    elif args.calibration:
        logger.warning("--calibration is not used by a float32 conversion")
    held = check_set(Path(args.check) if args.check else None, calib, args.check_limit or DEFAULT_CHECK_LIMIT, data_dir)
    # read every image before the slow part, so a bad file fails in seconds
    calib_frames = load_frames(calib.paths, spec.preprocess) if calib else None
    check_frames = load_frames(held.paths, spec.preprocess)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from convert.tflite import to_tflite

    try:
        model = keras.models.load_model(model_path, compile=False)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for a bad file
        raise ModelError(f"model file {model_path} cannot be loaded by Keras {keras.__version__}: {e}") from None

    prov = {k: v for k, v in spec.provenance.items() if k not in ("int8_agreement", "float32_agreement")}
    conversion: dict[str, Any] = {
        "command": _command_line(args),
        "source": str(model_path),
        "source_sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "quantization": quantization,
        "calibration": (
            {**calib.describe(), "preprocess": "edge.preprocess with this spec, ROI = whole image"} if calib else None
        ),
        "check": held.describe(),
    }
    tol = tolerances_for(quantization)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".nerveseg-convert-") as tmp:
        work = Path(tmp) / out.name
        try:
            to_tflite(
                model,
                work,
                quantization,
                [f[None, :, :, None] for f in calib_frames] if calib_frames else None,
                spec.model_copy(update={"provenance": prov}),
            )
        except ValueError as e:
            raise ModelError(f"cannot convert {model_path}: {e}") from None
        conversion["ops"] = op_counts(work)
        conversion["size_bytes"] = work.stat().st_size
        report = check_agreement(
            model,
            work,
            check_frames,
            mask_threshold=spec.thresholds.mask,
            presence_threshold=(spec.thresholds.presence_enter, spec.thresholds.presence_exit),
        )
        bad = failures(report, tol)
        report.update(held_out=held.summary(), tolerances=tol.as_dict(), passed=not bad)
        if bad:
            report["failures"] = bad
        written = load_spec(work).model_copy(
            update={"provenance": {**prov, "conversion": conversion, f"{quantization}_agreement": report}}
        )
        save_spec(written, work)
        head = (
            f"{model_path} -> {out} ({quantization}, {work.stat().st_size / 1024:.1f} KB; "
            f"Keras file {model_path.stat().st_size / 1024:.1f} KB)"
        )
        lines = [
            f"  calibration : {calib.summary() if calib else 'none (float32)'}",
            f"  held out    : {held.summary()}",
            f"  ops         : {sum(conversion['ops'].values())} ("
            + ", ".join(f"{k} {v}" for k, v in conversion["ops"].items())
            + ")",
            f"  agreement of the TFLite file (through ModelRunner) with the float Keras model, {quantization} bounds:",
            *("    " + line for line in format_report(report, tol).splitlines()),
        ]
        if bad:
            rejected = out.with_name(out.stem + ".rejected.tflite")
            _move(work, rejected)
            kept = " (the existing file was left as it was)" if out.exists() else ""
            raise ModelError(
                f"conversion REJECTED: {head}: the {quantization} file does not agree with the Keras model on "
                f"{report['frames']} held-out frames:\n"
                + "\n".join(f"  - {b}" for b in bad)
                + f"\nNo {out} written{kept}; the rejected file is {rejected}, its report in "
                f"{spec_path_for(rejected).name}. Check the calibration frames (real frames from the machine, with "
                "and without a nerve, enough of them to span the range) and the held-out set. Full report:\n"
                + "\n".join(lines)
            )
        _move(work, out)
    for stale in _siblings(out.with_name(out.stem + ".rejected.tflite")):
        if stale.exists():
            stale.unlink()
            logger.info("removed %s of an earlier rejected conversion", stale)
    return out, load_spec(out), report, [f"nerveseg convert: {head}", *lines]  # load_spec checks the hash


def cmd_convert(args: argparse.Namespace) -> int:
    from convert.card import write_model_card
    from edge.plugin import setup_logging

    setup_logging(args.log_level or "WARNING")
    out, spec, report, lines = convert(args)
    card = write_model_card(out)
    print("\n".join(lines))
    print(
        f"  spec        : {spec_path_for(out)} (provenance.{spec.quantization}_agreement, sha256 "
        f"{spec.tflite_sha256[:12]}...)"
    )
    print(f"  model card  : {card}")
    print(f"OK: {out} agrees with the Keras model on {report['frames']} held-out frames")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``nerveseg convert`` (entry point ``nerveseg.commands``)."""
    p = subparsers.add_parser(
        "convert",
        help="Keras .keras -> int8 (or float32) .tflite, checked against the float model, with spec and model card",
        description="Convert a trained .keras model to TFLite (int8 by default), check every output against the "
        "float model on held-out real frames, and write the spec (M.yaml) and model card (M.md) beside it. "
        "A conversion that fails the check is kept only as M.rejected.tflite and exits 3.",
    )
    p.add_argument("--model", help="trained Keras 3 model M.keras (its spec M.yaml beside it); required")
    p.add_argument("--out", help="TFLite file to write, e.g. M.tflite (+ M.yaml spec, M.md card); required")
    p.add_argument("--float32", action="store_true", help="no quantisation (agreement still checked, tighter bounds)")
    p.add_argument(
        "--calibration",
        metavar="DIR",
        help="int8 representative frames: folder with manifest.csv, with images/ + masks/, or plain images "
        "(nerveseg calibrate). Default: the kaggle-bp manifest of the shared data, balanced to <= 3:1",
    )
    p.add_argument(
        "--check",
        metavar="DIR",
        help="held-out frames for the agreement check (same layouts; calibration frames are left out). "
        "Default: kaggle-bp frames of the shared data not used for calibration",
    )
    p.add_argument(
        "--calibration-limit",
        type=int,
        metavar="N",
        help=f"at most N calibration frames, half with a nerve where known (default {DEFAULT_CALIBRATION_LIMIT})",
    )
    p.add_argument(
        "--check-limit", type=int, metavar="N", help=f"at most N held-out frames (default {DEFAULT_CHECK_LIMIT})"
    )
    p.add_argument("--name", help="model name in the spec and card (default: the .keras spec's name)")
    p.add_argument("--force", action="store_true", help="replace an existing output (only once the new one passes)")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default WARNING")
    p.set_defaults(func=cmd_convert)
    from convert.reference import register_reference

    # `nerveseg convert reference`: the benchmark's classic U-Net, built here because it needs TensorFlow.
    register_reference(p.add_subparsers(dest="convert_command", metavar="{reference}", required=False))
