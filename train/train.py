"""`nerveseg train`: fit the mini-U-Net (or a variant) on real frames, subject-wise.

One run trains one model: on all subjects (``data.fold: null``) or with one fold
of subjects held out for validation. ``--cv`` runs every fold in turn and writes
a summary (`train.cv`). Each run directory holds:

    config.yaml      the validated training config
    history.csv      one row per epoch: losses and inference-mode validation metrics
    curves.png       training curves
    last.keras       the model after the latest epoch (resume point, optimizer included)
    model.keras      the model after the last epoch, with its spec model.yaml beside it
    result.json      final metrics of model.keras on the validation subjects

Validation runs in inference mode (BatchNorm running statistics) after every
epoch: training-mode scores can look fine while inference is broken. The
per-epoch scores are for watching and for choosing the epoch count across
folds (`train.cv`); they never pick a fold's model. Picking each fold's best
epoch by the score of the very subjects it is then judged on would flatter
cross-validation, and the final model on all subjects, which has no
validation, can only be its last epoch: the folds are judged the same way.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge.config import format_validation_error
from edge.errors import ConfigError
from edge.spec import ModelSpec, PreprocessSpec, ThresholdsSpec, save_spec
from train.data import (
    Augment,
    FrameSet,
    cached_frames,
    eval_arrays,
    files_key,
    kaggle_extra_frames,
    kaggle_frames,
    load_frames,
    nerve_free_crops,
    subject_folds,
    video_frames,
)
from train.manifest import read_manifest

logger = logging.getLogger(__name__)


class _S(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NegativesConfig(_S):
    real_empty: bool = Field(True, description="the real empty kaggle frames of the training subjects")
    real_empty_repeat: int = Field(
        5, ge=1, le=100, description="times each real empty frame appears per epoch (they are few and the only "
        "hard negatives: same anatomy, no nerve)"
    )
    crops_per_frame: float = Field(0.3, ge=0, le=3, description="nerve-free windows per positive frame")
    other_anatomy: bool = Field(True, description="frames of the lung clips as 'no nerve'")


class SourceConfig(_S):
    weight: float = Field(1.0, gt=0, description="share of the training draws, normalised over the sources used "
                          "(with one source every frame is drawn once an epoch, as before)")


class KaggleSource(SourceConfig):
    extra: bool = Field(True, description="add kaggle-bp-extra (20 full-resolution frames, 6 empty; same subjects)")


class BoxVideoSource(SourceConfig):
    folder: str = Field("regional-us", description="box-labelled video folder under data.root (train.boxes)")
    every: int = Field(3, ge=1, le=100, description="every Nth frame of each video (20 fps neighbours are "
                       "near-duplicates)")
    boxes: Literal["tight", "union"] = Field(
        "tight", description="tight: outside the boxes is background + box-tightness bags "
        "(train.losses.box_supervised_loss); union: the box union is the mask (the naive baseline)"
    )
    videos: list[str] | None = Field(None, description="use only these videos (subject ids; quick runs, tests)")


class OutlineSource(SourceConfig):
    folder: str = Field("usgra-seg", description="folder with manifest.csv and nerve masks under data.root")
    split: str = Field("train", description="manifest split trained on (usgra-seg's 'test' stays for evaluation)")
    limit: int | None = Field(None, ge=1, description="at most N frames, evenly spread (site-adaptation curves)")


class SourcesConfig(_S):
    kaggle: KaggleSource | None = Field(KaggleSource(), description="kaggle-bp (+ extra) with data.negatives")
    regional_us: BoxVideoSource | None = Field(None, description="box-labelled video; null = not used")
    usgra: OutlineSource | None = Field(None, description="another machine's outlined frames; null = not used")


class DataConfig(_S):
    root: str = Field("../shared/data", description="folder holding kaggle-bp/ and video-us-lung-linear/")
    folds: int = Field(5, ge=2, le=40)
    fold: int | None = Field(None, ge=0, description="held-out fold for validation; null = train on all subjects")
    seed: int = 0
    subjects: list[str] | None = Field(None, description="use only these kaggle subjects (quick runs, tests)")
    negatives: NegativesConfig = NegativesConfig()
    sources: SourcesConfig = SourcesConfig()
    epoch_size: int | None = Field(None, ge=1, description="draws per epoch, shared by the sources by weight "
                                   "(default: as many as there are training frames)")
    validate_usgra_test: bool = Field(True, description="with a held-out fold, also score usgra-seg's test split "
                                      "(another machine) every epoch, if the folder exists")

    @model_validator(mode="after")
    def _some_source(self) -> DataConfig:
        s = self.sources
        if s.kaggle is None and s.regional_us is None and s.usgra is None:
            raise ValueError("data.sources: every source is null; enable at least one")
        return self

    @model_validator(mode="after")
    def _fold_in_range(self) -> DataConfig:
        if self.fold is not None and self.fold >= self.folds:
            raise ValueError(f"fold {self.fold} does not exist: folds are numbered 0..{self.folds - 1}")
        return self


class ModelOptions(_S):
    skips: int = Field(3, ge=1, le=5, description="3 = mini-U-Net, 4 = classic U-Net")
    base_filters: int = Field(16, ge=4, le=128)
    batch_norm: bool = True
    conv: Literal["plain", "separable"] = "plain"
    upsample: Literal["transpose", "bilinear"] = "transpose"


class AugmentConfig(_S):
    enabled: bool = True
    shift: float = Field(0.08, ge=0, le=0.5)
    scale: float = Field(0.10, ge=0, le=0.5)
    rotate_deg: float = Field(10.0, ge=0, le=45)
    flip: bool = True
    gain: float = Field(0.2, ge=0, le=1)
    gamma: float = Field(0.2, ge=0, le=1)
    speckle: float = Field(0.1, ge=0, le=1)
    elastic: float = Field(0.0, ge=0, le=20, description="peak elastic displacement, pixels at model size (0 = off)")
    elastic_sigma: float = Field(8.0, gt=0, le=50, description="smoothness of the elastic field, pixels")

    def build(self) -> Augment | None:
        if not self.enabled:
            return None
        return Augment(
            self.shift, self.scale, self.rotate_deg, self.flip, self.gain, self.gamma, self.speckle,
            self.elastic, self.elastic_sigma,
        )


class OptimConfig(_S):
    epochs: int = Field(15, ge=1, le=1000)
    batch_size: int = Field(32, ge=1, le=1024)
    lr: float = Field(1e-3, gt=0, le=1)
    presence_weight: float = Field(0.5, ge=0, description="weight of the presence loss against the mask loss")
    seed: int = 0


class TrainConfig(_S):
    name: str = "mini-unet"
    out_dir: str = Field("runs", description="runs are written to out_dir/name[/fold-K]")
    init: str | None = Field(None, description="start from this trained model.keras (fine-tuning, e.g. for a new "
                             "site) instead of random weights; its spec's preprocessing must equal this one's")
    data: DataConfig = DataConfig()
    model: ModelOptions = ModelOptions()
    preprocess: PreprocessSpec = PreprocessSpec(height=96, width=128, filter="median", filter_size=5)
    augment: AugmentConfig = AugmentConfig()
    optim: OptimConfig = OptimConfig()


def load_train_config(path: str | Path | None, **overrides: Any) -> TrainConfig:
    """Read a training YAML (None = defaults) and apply dotted overrides like ``{"data.fold": 2}``."""
    data: dict[str, Any] = {}
    src = "<defaults>"
    if path is not None:
        src = str(path)
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(src, ["file not found"]) from None
        except yaml.YAMLError as e:
            raise ConfigError(src, [f"YAML syntax error: {e}"]) from None
        if not isinstance(data, dict):
            raise ConfigError(src, ["(top level): the file must be a mapping"])
    for key, value in overrides.items():
        if value is None:
            continue
        *parents, last = key.split(".")
        d = data
        for p in parents:
            d = d.setdefault(p, {})
        d[last] = value
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(src, format_validation_error(e, TrainConfig)) from None


# -- data -----------------------------------------------------------------------------------------


def _split_by(fs: FrameSet, val_subjects: set[str]) -> tuple[FrameSet, FrameSet]:
    is_val = np.array([g in val_subjects for g in fs.groups], bool)
    return fs.subset(np.flatnonzero(~is_val)), fs.subset(np.flatnonzero(is_val))


def _kaggle(cfg: TrainConfig, rng: np.random.Generator) -> tuple[FrameSet, FrameSet, list[list[str]]]:
    """Kaggle training frames (+ its negatives), validation frames and folds."""
    root = Path(cfg.data.root)
    spec = cfg.preprocess
    pos, empty = kaggle_frames(root, spec)
    src = cfg.data.sources.kaggle
    if src is not None and src.extra and (root / "kaggle-bp-extra" / "manifest.csv").is_file():
        xpos, xempty = kaggle_extra_frames(root / "kaggle-bp-extra", spec)
        pos, empty = FrameSet.concat([pos, xpos]), FrameSet.concat([empty, xempty])
    if cfg.data.subjects is not None:
        keep = set(cfg.data.subjects)
        pos = pos.subset(np.flatnonzero([g in keep for g in pos.groups]))
        empty = empty.subset(np.flatnonzero([g in keep for g in empty.groups]))
        if not len(pos):
            raise ConfigError("<train config>", [f"data.subjects: got {cfg.data.subjects}: no kaggle-bp frames"])
    folds = subject_folds(sorted(set(pos.groups)), cfg.data.folds, cfg.data.seed)
    val_subjects = set(folds[cfg.data.fold]) if cfg.data.fold is not None else set()
    pos_tr, pos_va = _split_by(pos, val_subjects)
    emp_tr, emp_va = _split_by(empty, val_subjects)
    neg = cfg.data.negatives
    parts = [pos_tr]
    if neg.real_empty and len(emp_tr):
        parts.append(emp_tr.subset(np.tile(np.arange(len(emp_tr)), neg.real_empty_repeat)))
    if neg.crops_per_frame > 0:
        parts.append(nerve_free_crops(pos_tr, neg.crops_per_frame, rng))
    if neg.other_anatomy:
        clips = sorted((root / "video-us-lung-linear").glob("*.mp4"))
        if clips:
            parts.append(video_frames(clips, spec, every=5))
        else:
            logger.warning("no lung clips under %s: training without other-anatomy negatives", root)
    return FrameSet.concat(parts), FrameSet.concat([pos_va, emp_va]) if val_subjects else pos_va, folds


def _regional_us(cfg: TrainConfig) -> tuple[FrameSet, FrameSet, list[list[str]]]:
    from train.boxes import box_video_frames, read_box_videos

    src = cfg.data.sources.regional_us
    folder = Path(cfg.data.root) / src.folder
    try:
        videos = read_box_videos(folder)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError("<train config>", [f"data.sources.regional_us: {e}"]) from None
    if src.videos is not None:
        keep = set(src.videos)
        videos = [v for v in videos if v.subject in keep]
        if not videos:
            raise ConfigError("<train config>", [f"data.sources.regional_us.videos: none of {src.videos} in {folder}"])
    subjects = [v.subject for v in videos]
    # the nerve-free `neg` videos go to different folds, like kaggle's subjects with empty frames
    folds = subject_folds(subjects, min(cfg.data.folds, len(subjects)), cfg.data.seed,
                          apart=[v.subject for v in videos if v.label == "neg"])
    if cfg.data.fold is not None and cfg.data.fold >= len(folds):
        raise ConfigError("<train config>", [f"data.fold: {len(subjects)} videos make only {len(folds)} folds"])
    val_subjects = set(folds[cfg.data.fold]) if cfg.data.fold is not None else set()
    key = {"what": "box_video_frames", "files": files_key([v.path for v in videos] + [folder / "manifest.csv"]
                                                         + sorted((folder / "boxes").glob("*.txt"))),
           "spec": cfg.preprocess.model_dump(), "every": src.every, "v": 1}
    frames = cached_frames(key, lambda: box_video_frames(videos, cfg.preprocess, every=src.every, kind="video"))
    tr, va = _split_by(frames, val_subjects)
    return tr, va, folds


def _outlined(cfg: TrainConfig, src: OutlineSource, split: str, limit: int | None) -> FrameSet:
    folder = Path(cfg.data.root) / src.folder
    try:
        samples = [s for s in read_manifest(folder) if s.split == split and s.mask is not None]
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError("<train config>", [f"data.sources.usgra: {e}"]) from None
    if not samples:
        raise ConfigError("<train config>", [f"data.sources.usgra: no labelled {split!r} rows in {folder}"])
    if limit is not None and limit < len(samples):
        idx = np.unique(np.linspace(0, len(samples) - 1, limit).round().astype(int))
        samples = [samples[i] for i in idx]
    return load_frames(samples, cfg.preprocess, "outlined")


def assemble(cfg: TrainConfig) -> tuple[FrameSet, FrameSet | None, list[list[str]]]:
    """(training set, validation set or None, the folds of the first fold-split source) for ``cfg``.

    Each source is split by its own subjects into ``data.folds`` folds; ``data.fold`` holds out that fold
    of every source. Validation = real frames only (no synthetic negatives): kaggle's positives and real
    empty frames of the held-out subjects, every ``every``-th frame of the held-out videos, and
    (``validate_usgra_test``) usgra-seg's test split, each frame labelled with its source.
    """
    rng = np.random.default_rng(cfg.data.seed)
    srcs = cfg.data.sources
    train_parts, val_parts, all_folds = [], [], {}
    if srcs.kaggle is not None:
        tr, va, folds = _kaggle(cfg, rng)
        train_parts.append(tr.with_source("kaggle"))
        val_parts.append(va.with_source("kaggle"))
        all_folds["kaggle"] = folds
    if srcs.regional_us is not None:
        tr, va, folds = _regional_us(cfg)
        train_parts.append(tr.with_source("regional_us"))
        val_parts.append(va.with_source("regional_us"))
        all_folds["regional_us"] = folds
    if srcs.usgra is not None:
        train_parts.append(_outlined(cfg, srcs.usgra, srcs.usgra.split, srcs.usgra.limit).with_source("usgra"))
    if cfg.data.fold is not None and cfg.data.validate_usgra_test:
        folder = Path(cfg.data.root) / (srcs.usgra.folder if srcs.usgra else "usgra-seg")
        if (folder / "manifest.csv").is_file():
            val_parts.append(_outlined(cfg, srcs.usgra or OutlineSource(), "test", None).with_source("usgra_test"))
    train = FrameSet.concat(train_parts)
    val = FrameSet.concat(val_parts) if cfg.data.fold is not None and any(len(p) for p in val_parts) else None
    kinds = {k: int((train.kinds == k).sum()) for k in dict.fromkeys(train.kinds)}
    logger.info("training frames: %d %s; validation: %s", len(train), kinds, len(val) if val else "none")
    folds = next(iter(all_folds.values()), [])
    return train, val, folds if len(all_folds) <= 1 else all_folds


def source_weights(cfg: TrainConfig, train_set: FrameSet) -> dict[str, float] | None:
    """Per-source draw weights, or None when one source is used without ``data.epoch_size`` (then every
    frame is drawn once an epoch, in a fresh order)."""
    srcs = cfg.data.sources
    w = {name: s.weight for name, s in (("kaggle", srcs.kaggle), ("regional_us", srcs.regional_us),
                                        ("usgra", srcs.usgra)) if s is not None}
    used = {k: v for k, v in w.items() if (train_set.source == k).any()}
    return used if len(used) > 1 or cfg.data.epoch_size else None


# -- validation -----------------------------------------------------------------------------------


def predict_arrays(model, x: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Inference-mode predictions: (mask probs (N,H,W) float32, p_nerve (N,) float32)."""
    out = model.predict(x, batch_size=batch, verbose=0)
    return out["mask"][..., 0].astype(np.float32), out["nerve_present"][:, 0].astype(np.float32)


SOURCE_LOG_KEYS = ("presence_auc", "mean_dice_positive", "centroid_in_box")


def validation_report(model, val: FrameSet, x_val: np.ndarray, spec: ModelSpec, n_boot: int = 1000) -> dict[str, Any]:
    """`train.evaluate.evaluate_predictions` on the validation frames (inference mode, model size).

    The top level scores the outlined frames (kaggle's, or all when there are none) as before;
    ``per_source`` scores each source on its own: presence (AUC, sensitivity, specificity at 0.5), Dice
    on nerve frames for outlined sources, and for box-labelled ones the share of nerve frames whose
    ungated mask has its centroid inside the box union (`train.metrics.box_localisation`).
    """
    from train.evaluate import evaluate_predictions
    from train.metrics import box_localisation, presence_metrics, rectangularity

    probs, ps = predict_arrays(model, x_val)
    outlined = np.flatnonzero(val.source == "kaggle")
    if outlined.size == 0:
        outlined = np.arange(len(val))
    rep = evaluate_predictions(
        probs[outlined],
        ps[outlined],
        val.masks[outlined] > 0.5,
        subjects=[val.groups[i] for i in outlined],
        names=[val.names[i] for i in outlined],
        mask_threshold=spec.thresholds.mask,
        presence_threshold=0.5,
        n_boot=n_boot,
    )
    per_source: dict[str, Any] = {}
    for src in dict.fromkeys(val.source):
        idx = np.flatnonzero(val.source == src)
        present = (val.masks[idx] > 0.5).reshape(idx.size, -1).any(axis=1)
        pm = presence_metrics(ps[idx], present, 0.5)
        r: dict[str, Any] = {"n": int(idx.size), "n_positive": int(present.sum()), "presence_auc": pm["auc"],
                             "sensitivity": pm["sensitivity"], "specificity": pm["specificity"]}
        pos = idx[present]
        masks = probs[pos] >= spec.thresholds.mask
        if val.weak[pos].any():
            loc = box_localisation(masks, val.masks[pos] > 0.0)
            r["centroid_in_box"] = float(np.mean(loc["centroid_in"])) if pos.size else None
            r["mask_in_box"] = float(np.nanmean(loc["share_in"])) if np.isfinite(loc["share_in"]).any() else None
            r["rectangularity"] = rectangularity(masks)
        else:
            from train.metrics import dice

            r["mean_dice_positive"] = (float(np.mean([dice(m, t) for m, t in zip(masks, val.masks[pos] > 0.5,
                                                                                  strict=True)]))
                                       if pos.size else None)
        per_source[str(src)] = r
    rep["per_source"] = per_source
    return rep


def training_terms(cfg: TrainConfig) -> list[str]:
    """The terms of use a model trained on these sources inherits (for its spec and card)."""
    terms = []
    s = cfg.data.sources
    if s.kaggle is not None:
        terms.append("kaggle-bp (+ kaggle-bp-extra): Kaggle 2016 competition data, internal research use only")
    if s.regional_us is not None:
        terms.append("regional-us: Regional-US brachial plexus videos, non-commercial data use agreement: "
                     "research and teaching use only")
    if s.usgra is not None:
        terms.append("usgra-seg: CC BY 4.0, Timm Kandaouroff, https://github.com/tmkand/usgra-seg")
    return terms


def load_init_model(cfg: TrainConfig):
    """The model named by ``cfg.init`` for fine-tuning. Raises ConfigError naming the file and the problem."""
    import keras

    path = Path(cfg.init)
    if not path.is_file():
        raise ConfigError("<train config>", [f"init: {path} not found"])
    if path.suffix != ".keras":
        raise ConfigError("<train config>", [f"init: {path} is not a .keras model (a .tflite cannot be trained)"])
    from edge.errors import ModelError
    from edge.spec import load_spec

    try:
        spec = load_spec(path, verify_hash=False)
    except ModelError as e:
        raise ConfigError("<train config>", [f"init: {e}"]) from None
    if spec.preprocess != cfg.preprocess:
        raise ConfigError("<train config>", [
            f"init: {path} was trained with preprocess {spec.preprocess.model_dump()}, this config has "
            f"{cfg.preprocess.model_dump()}: copy the model's preprocess section into the config"])
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for a corrupt file
        raise ConfigError("<train config>", [f"init: {path} is not a loadable Keras model: {e}"]) from None
    logger.info("fine-tuning from %s (%s)", path, spec.name)
    return model


# -- curves ---------------------------------------------------------------------------------------


def plot_curves(history_csv: Path, out_png: Path) -> None:
    """Draw loss and validation curves from history.csv into a PNG with OpenCV (no matplotlib on devices)."""
    import cv2

    with history_csv.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    panels = [
        ("loss", ["loss", "mask_loss", "nerve_present_loss"]),
        ("validation", ["val_kaggle_score", "val_mean_dice_positive", "val_presence_specificity"]),
    ]
    colors = [(200, 80, 0), (0, 150, 0), (0, 0, 200)]
    W, H, pad = 560, 300, 40
    img = np.full((H, W * len(panels), 3), 255, np.uint8)
    epochs = np.array([float(r["epoch"]) + 1 for r in rows])  # CSVLogger counts from 0
    for pi, (title, keys) in enumerate(panels):
        x0 = pi * W
        cv2.putText(img, title, (x0 + pad, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        series = []
        for k in keys:
            vals = [float(r[k]) if r.get(k) not in (None, "", "None") else np.nan for r in rows]
            if not np.all(np.isnan(vals)):
                series.append((k, np.array(vals)))
        if not series:
            continue
        allv = np.concatenate([v[~np.isnan(v)] for _, v in series])
        lo, hi = (0.0, 1.0) if title == "validation" else (0.0, float(allv.max()) * 1.05 or 1.0)
        cv2.rectangle(img, (x0 + pad, pad), (x0 + W - 10, H - pad), (180, 180, 180), 1)
        emax = max(epochs.max(), 1.0)
        for si, (k, v) in enumerate(series):
            pts = [
                (int(x0 + pad + e / emax * (W - 10 - pad)), int(H - pad - (val - lo) / (hi - lo) * (H - 2 * pad)))
                for e, val in zip(epochs, v, strict=True)
                if not np.isnan(val)
            ]
            if len(pts) > 1:
                cv2.polylines(img, [np.array(pts, np.int32)], False, colors[si], 2, cv2.LINE_AA)
            cv2.putText(img, k, (x0 + pad + 5, pad + 16 + 16 * si), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colors[si], 1)
        cv2.putText(img, f"{hi:.2f}", (x0 + 2, pad + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
        cv2.putText(img, f"{lo:.2f}", (x0 + 2, H - pad), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
        cv2.putText(img, f"epoch {int(emax)}", (x0 + W - 90, H - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.imwrite(str(out_png), img)


# -- the run --------------------------------------------------------------------------------------


def run_dir(cfg: TrainConfig) -> Path:
    d = Path(cfg.out_dir) / cfg.name
    return d / f"fold-{cfg.data.fold}" if cfg.data.fold is not None else d


def cv_summary(cfg: TrainConfig) -> dict[str, Any] | None:
    """The cross-validation summary of this recipe (``out_dir/name/cv.json``), if it was run."""
    p = Path(cfg.out_dir) / cfg.name / "cv.json"
    return json.loads(p.read_text()) if p.is_file() else None


def thresholds_from_cv(cv: dict[str, Any] | None) -> ThresholdsSpec:
    """Presence thresholds for the spec: enter at the CV-chosen operating point, exit 0.1 below it.

    Without a CV summary (or without its operating point) the spec's defaults stay.
    """
    op = (cv or {}).get("presence_operating_point")
    if not op:
        return ThresholdsSpec()
    t = float(op["chosen"]["threshold"])
    enter = min(max(t, 0.02), 0.98)
    return ThresholdsSpec(presence_enter=enter, presence_exit=round(max(enter - 0.1, 0.01), 4))


def model_spec(cfg: TrainConfig, provenance: dict[str, Any], thresholds: ThresholdsSpec | None = None) -> ModelSpec:
    return ModelSpec(
        name=cfg.name,
        untrained=False,
        quantization="float32",
        preprocess=cfg.preprocess,
        thresholds=thresholds or ThresholdsSpec(),
        provenance=provenance,
    )


def train(cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train one model as configured; returns the result dict also written to result.json."""
    import keras

    from train.losses import box_supervised_loss, dice_bce_loss
    from train.models import build_unet, count_macs

    out = run_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    keras.utils.set_random_seed(cfg.optim.seed)
    train_set, val, folds = assemble(cfg)
    spec_in = cfg.preprocess
    x_val = eval_arrays(val, spec_in) if val is not None else None
    rus = cfg.data.sources.regional_us
    box_channel = bool(train_set.weak.any()) and rus is not None and rus.boxes == "tight"
    mask_loss = box_supervised_loss if box_channel else dice_bce_loss
    weights = source_weights(cfg, train_set)
    n_draws = (cfg.data.epoch_size or len(train_set)) if weights else len(train_set)

    hist_path, last_path, model_path = out / "history.csv", out / "last.keras", out / "model.keras"
    initial_epoch = 0
    if resume and last_path.is_file() and hist_path.is_file():
        model = keras.models.load_model(last_path)
        with hist_path.open() as f:
            rows = list(csv.DictReader(f))
        initial_epoch = len(rows)
        logger.info("resuming %s at epoch %d", out, initial_epoch)
    else:
        if resume:
            logger.warning("nothing to resume in %s: starting from scratch", out)
        hist_path.unlink(missing_ok=True)
        m = cfg.model
        if cfg.init is not None:
            model = load_init_model(cfg)
        else:
            model = build_unet(
                (spec_in.height, spec_in.width, 1),
                base_filters=m.base_filters,
                skips=m.skips,
                batch_norm=m.batch_norm,
                conv=m.conv,
                upsample=m.upsample,
                name=cfg.name.replace("-", "_"),
            )
        steps = math.ceil(n_draws / cfg.optim.batch_size)
        schedule = keras.optimizers.schedules.CosineDecay(
            cfg.optim.lr, decay_steps=steps * cfg.optim.epochs, alpha=0.05
        )
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss={"mask": mask_loss, "nerve_present": keras.losses.BinaryCrossentropy()},
            loss_weights={"mask": 1.0, "nerve_present": cfg.optim.presence_weight},
        )

    provenance: dict[str, Any] = {
        "builder": "train.models.build_unet",
        "options": cfg.model.model_dump(),
        "params": int(model.count_params()),
        "macs": int(count_macs(model)),
        "data": {
            "root": cfg.data.root,
            "folds": folds,
            "held_out_fold": cfg.data.fold,
            "n_train": len(train_set),
            "train_kinds": {k: int((train_set.kinds == k).sum()) for k in dict.fromkeys(train_set.kinds)},
            "sources": {k: int((train_set.source == k).sum()) for k in dict.fromkeys(train_set.source)},
            "source_weights": weights,
            "draws_per_epoch": n_draws,
            "box_supervision": (rus.boxes if rus is not None else None),
            "terms": training_terms(cfg),
        },
        "init": cfg.init,
        "augment": cfg.augment.model_dump(),
        "optim": cfg.optim.model_dump(),
    }
    thresholds = ThresholdsSpec()
    if cfg.data.fold is None and (cv := cv_summary(cfg)) is not None:
        # The final model on all subjects inherits what cross-validation measured and chose.
        thresholds = thresholds_from_cv(cv)
        provenance["cv"] = {k: cv.get(k) for k in ("folds", "mean", "std", "per_fold", "pooled_real_empty",
                                                  "presence_operating_point", "best_epoch")}
        logger.info("using the cross-validation summary: presence thresholds %s", thresholds)
    spec = model_spec(cfg, provenance, thresholds)

    class Validate(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            if val is not None:
                rep = validation_report(self.model, val, x_val, spec, n_boot=100)  # CIs: final report only
                for k in ("kaggle_score", "mean_dice_positive", "presence_sensitivity", "presence_specificity",
                          "presence_auc"):
                    logs[f"val_{k}"] = rep[k] if rep[k] is not None else float("nan")
                for src, r in rep.get("per_source", {}).items():
                    for k in SOURCE_LOG_KEYS:
                        if k in r:
                            logs[f"val_{src}_{k}"] = r[k] if r[k] is not None else float("nan")
                score = rep["kaggle_score"]
                logger.info(
                    "epoch %d: val kaggle %.3f dice+ %.3f sens %.3f spec %s",
                    epoch + 1, score, rep["mean_dice_positive"], rep["presence_sensitivity"],
                    f"{rep['presence_specificity']:.3f}" if rep["presence_specificity"] is not None else "n/a",
                )
            self.model.save(last_path)

    from train.data import make_tf_dataset

    ds = make_tf_dataset(train_set, spec_in, cfg.optim.batch_size, cfg.augment.build(), cfg.optim.seed + initial_epoch,
                         box_channel=box_channel, weights=weights, epoch_size=n_draws if weights else None)
    steps = math.ceil(n_draws / cfg.optim.batch_size)
    t0 = time.time()
    if initial_epoch < cfg.optim.epochs:
        model.fit(
            ds,
            steps_per_epoch=steps,
            epochs=cfg.optim.epochs,
            initial_epoch=initial_epoch,
            callbacks=[Validate(), keras.callbacks.CSVLogger(str(hist_path), append=initial_epoch > 0)],
            shuffle=False,  # `batches` shuffles; tf.data input ignores Keras's shuffle anyway
            verbose=2,
        )
    train_s = time.time() - t0
    model.save(model_path)
    final = keras.models.load_model(model_path)
    result: dict[str, Any] = {
        "name": cfg.name,
        "run_dir": str(out),
        "fold": cfg.data.fold,
        "epochs": cfg.optim.epochs,
        "train_seconds": round(train_s, 1),
        "params": provenance["params"],
        "macs": provenance["macs"],
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if val is not None:
        rep = validation_report(final, val, x_val, spec)
        rep.pop("per_image", None)
        result["validation"] = rep
        with hist_path.open() as f:
            rows = list(csv.DictReader(f))
        # For information only: the model is the last epoch's (see the module docstring).
        result["best_epoch"] = 1 + int(np.argmax([float(r["val_kaggle_score"]) for r in rows]))
        provenance["validation"] = {k: rep[k] for k in ("kaggle_score", "mean_dice_positive", "presence_sensitivity",
                                                         "presence_specificity", "presence_auc", "n_images")}
        provenance["validation"]["per_source"] = rep.get("per_source")
    save_spec(model_spec(cfg, provenance, thresholds), model_path)
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str))
    plot_curves(hist_path, out / "curves.png")
    return result
