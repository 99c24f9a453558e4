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
from train.data import Augment, FrameSet, eval_arrays, kaggle_frames, nerve_free_crops, subject_folds, video_frames

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


class DataConfig(_S):
    root: str = Field("../shared/data", description="folder holding kaggle-bp/ and video-us-lung-linear/")
    folds: int = Field(5, ge=2, le=40)
    fold: int | None = Field(None, ge=0, description="held-out fold for validation; null = train on all subjects")
    seed: int = 0
    subjects: list[str] | None = Field(None, description="use only these kaggle subjects (quick runs, tests)")
    negatives: NegativesConfig = NegativesConfig()

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


def assemble(cfg: TrainConfig) -> tuple[FrameSet, FrameSet | None, list[list[str]]]:
    """(training set, validation set or None, the folds) for ``cfg``.

    Validation = positives and real empty frames of the held-out subjects; no
    synthetic negatives, so specificity there is measured on real frames only.
    """
    root = Path(cfg.data.root)
    spec = cfg.preprocess
    pos, empty = kaggle_frames(root, spec)
    if cfg.data.subjects is not None:
        keep = set(cfg.data.subjects)
        pos = pos.subset(np.flatnonzero([g in keep for g in pos.groups]))
        empty = empty.subset(np.flatnonzero([g in keep for g in empty.groups]))
        if not len(pos):
            raise ConfigError("<train config>", [f"data.subjects: got {cfg.data.subjects}: no kaggle-bp frames"])
    folds = subject_folds(sorted(set(pos.groups)), cfg.data.folds, cfg.data.seed)
    val_subjects = set(folds[cfg.data.fold]) if cfg.data.fold is not None else set()

    def split(fs: FrameSet) -> tuple[FrameSet, FrameSet]:
        is_val = np.array([g in val_subjects for g in fs.groups], bool)
        return fs.subset(np.flatnonzero(~is_val)), fs.subset(np.flatnonzero(is_val))

    pos_tr, pos_va = split(pos)
    emp_tr, emp_va = split(empty)
    rng = np.random.default_rng(cfg.data.seed)
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
    train = FrameSet.concat(parts)
    val = FrameSet.concat([pos_va, emp_va]) if val_subjects else None
    kinds = {k: int((train.kinds == k).sum()) for k in dict.fromkeys(train.kinds)}
    logger.info("training frames: %d %s; validation: %s", len(train), kinds, len(val) if val else "none")
    return train, val, folds


# -- validation -----------------------------------------------------------------------------------


def predict_arrays(model, x: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Inference-mode predictions: (mask probs (N,H,W) float32, p_nerve (N,) float32)."""
    out = model.predict(x, batch_size=batch, verbose=0)
    return out["mask"][..., 0].astype(np.float32), out["nerve_present"][:, 0].astype(np.float32)


def validation_report(model, val: FrameSet, x_val: np.ndarray, spec: ModelSpec, n_boot: int = 1000) -> dict[str, Any]:
    """`train.evaluate.evaluate_predictions` on the validation frames (inference mode, model size)."""
    from train.evaluate import evaluate_predictions

    probs, ps = predict_arrays(model, x_val)
    return evaluate_predictions(
        probs,
        ps,
        val.masks > 0.5,
        subjects=list(val.groups),
        names=val.names,
        mask_threshold=spec.thresholds.mask,
        presence_threshold=0.5,
        n_boot=n_boot,
    )


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

    from train.losses import dice_bce_loss
    from train.models import build_unet, count_macs

    out = run_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    keras.utils.set_random_seed(cfg.optim.seed)
    train_set, val, folds = assemble(cfg)
    spec_in = cfg.preprocess
    x_val = eval_arrays(val, spec_in) if val is not None else None

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
        model = build_unet(
            (spec_in.height, spec_in.width, 1),
            base_filters=m.base_filters,
            skips=m.skips,
            batch_norm=m.batch_norm,
            conv=m.conv,
            upsample=m.upsample,
            name=cfg.name.replace("-", "_"),
        )
        steps = math.ceil(len(train_set) / cfg.optim.batch_size)
        schedule = keras.optimizers.schedules.CosineDecay(
            cfg.optim.lr, decay_steps=steps * cfg.optim.epochs, alpha=0.05
        )
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss={"mask": dice_bce_loss, "nerve_present": keras.losses.BinaryCrossentropy()},
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
        },
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
                score = rep["kaggle_score"]
                logger.info(
                    "epoch %d: val kaggle %.3f dice+ %.3f sens %.3f spec %s",
                    epoch + 1, score, rep["mean_dice_positive"], rep["presence_sensitivity"],
                    f"{rep['presence_specificity']:.3f}" if rep["presence_specificity"] is not None else "n/a",
                )
            self.model.save(last_path)

    from train.data import make_tf_dataset

    ds = make_tf_dataset(train_set, spec_in, cfg.optim.batch_size, cfg.augment.build(), cfg.optim.seed + initial_epoch)
    steps = math.ceil(len(train_set) / cfg.optim.batch_size)
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
    save_spec(model_spec(cfg, provenance, thresholds), model_path)
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str))
    plot_curves(hist_path, out / "curves.png")
    return result
