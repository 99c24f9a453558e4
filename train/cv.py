"""k-fold cross-validation over subjects: one run per fold, then a summary.

The summary (``out_dir/name/cv.json``) holds each fold's inference-mode
validation metrics, their mean and standard deviation across folds, the
false-positive rate pooled over the real empty frames of unseen subjects, and
the epoch with the best mean validation score across folds (the epoch count to
use when training the final model on all subjects).
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from train.train import TrainConfig, run_dir, train

logger = logging.getLogger(__name__)

KEYS = (
    "kaggle_score",
    "mean_dice_positive",
    "presence_sensitivity",
    "presence_specificity",
    "presence_accuracy",
    "presence_auc",
)


def run_cv(cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    results = []
    for k in range(cfg.data.folds):
        fold_cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"fold": k})})
        done = run_dir(fold_cfg) / "result.json"
        if resume and done.is_file():
            logger.info("fold %d already finished: %s", k, done)
            results.append(json.loads(done.read_text()))
            continue
        logger.info("fold %d of %d", k + 1, cfg.data.folds)
        results.append(train(fold_cfg, resume=resume))
    summary = summarise(cfg, results)
    summary["presence_operating_point"] = operating_point(cfg)
    path = Path(cfg.out_dir) / cfg.name / "cv.json"
    path.write_text(json.dumps(summary, indent=2, default=str))
    summary["path"] = str(path)
    return summary


def summarise_finished(cfg: TrainConfig) -> dict[str, Any]:
    """`cv.json` from the folds already trained (``--fold K`` runs, possibly over several sessions):
    the same summary and operating point as ``--cv``, over the finished folds only (listed in
    ``folds_finished``). Raises ConfigError when no fold has finished."""
    from edge.errors import ConfigError

    done = [k for k in range(cfg.data.folds) if (run_dir(_fold(cfg, k)) / "result.json").is_file()]
    if not done:
        raise ConfigError("<command line>", [f"--summarise: no finished fold under {Path(cfg.out_dir) / cfg.name}"])
    results = [json.loads((run_dir(_fold(cfg, k)) / "result.json").read_text()) for k in done]
    summary = summarise(cfg, results)
    summary["folds_finished"] = done
    summary["presence_operating_point"] = operating_point(cfg, folds=done)
    path = Path(cfg.out_dir) / cfg.name / "cv.json"
    path.write_text(json.dumps(summary, indent=2, default=str))
    summary["path"] = str(path)
    return summary


def _fold(cfg: TrainConfig, k: int) -> TrainConfig:
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"fold": k})})


def summarise(cfg: TrainConfig, results: list[dict[str, Any]]) -> dict[str, Any]:
    per_fold = [{k: r["validation"][k] for k in KEYS} | {"fold": r["fold"]} for r in results]
    mean, std = {}, {}
    for k in KEYS:
        vals = [f[k] for f in per_fold if f[k] is not None]
        mean[k] = float(np.mean(vals)) if vals else None
        std[k] = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
    # Pool the real empty frames of all folds: each fold has only a handful.
    neg = sum(r["validation"].get("n_negative", 0) for r in results)
    fp = sum(
        round((1 - r["validation"]["presence_specificity"]) * r["validation"]["n_negative"])
        for r in results
        if r["validation"].get("presence_specificity") is not None
    )
    # Best epoch by the mean over folds of the per-epoch validation kaggle score.
    curves = []
    for r in results:
        with (Path(r["run_dir"]) / "history.csv").open() as f:
            curves.append([float(row["val_kaggle_score"]) for row in csv.DictReader(f)])
    n = min(len(c) for c in curves)
    mean_curve = np.mean([c[:n] for c in curves], axis=0)
    return {
        "name": cfg.name,
        "folds": cfg.data.folds,
        "model": cfg.model.model_dump(),
        "preprocess": cfg.preprocess.model_dump(),
        "params": results[0]["params"],
        "macs": results[0]["macs"],
        "per_fold": per_fold,
        "mean": mean,
        "std": std,
        "pooled_real_empty": {"n": neg, "false_positives": fp, "fp_rate": fp / neg if neg else None},
        "mean_val_kaggle_by_epoch": [round(float(v), 4) for v in mean_curve],
        "best_epoch": int(np.argmax(mean_curve)) + 1,
        "train_seconds_total": sum(r["train_seconds"] for r in results),
    }


def pooled_predictions(cfg: TrainConfig, folds: list[int] | None = None) -> dict[str, np.ndarray]:
    """Each fold's model (its last epoch) on its own held-out subjects, pooled: out-of-fold predictions.

    Returns arrays: ``p`` (P(nerve)), ``present`` (truth), ``real_empty`` (the frame is a real empty one),
    ``dice`` (per-frame Dice of the ungated mask at 0.5, NaN on negatives and box frames), ``subject``,
    ``mask_max`` (the highest pixel probability of the frame's mask), ``source``, ``weak`` (box-labelled),
    ``centroid_in`` (box frames with a nerve: the ungated mask's centroid is in a box, 1/0; else NaN).
    """
    import keras

    from train.data import eval_arrays
    from train.metrics import box_localisation, dice
    from train.train import assemble, predict_arrays

    out: dict[str, list] = {"p": [], "present": [], "real_empty": [], "dice": [], "subject": [], "mask_max": [],
                            "source": [], "weak": [], "centroid_in": []}
    for k in range(cfg.data.folds) if folds is None else folds:
        fold_cfg = _fold(cfg, k)
        _, val, _ = assemble(fold_cfg)
        model = keras.models.load_model(run_dir(fold_cfg) / "model.keras", compile=False)
        probs, ps = predict_arrays(model, eval_arrays(val, cfg.preprocess))
        truth = val.masks > 0.5
        present = truth.reshape(len(val), -1).any(axis=1)
        out["p"] += list(ps)
        out["present"] += list(present)
        out["real_empty"] += list(val.kinds == "real_empty")
        out["dice"] += [dice(pr >= 0.5, t) if t.any() and not w else np.nan
                        for pr, t, w in zip(probs, truth, val.weak, strict=True)]
        out["subject"] += list(val.groups)
        out["mask_max"] += list(probs.reshape(len(val), -1).max(axis=1))
        out["source"] += list(val.source)
        out["weak"] += list(val.weak)
        loc = box_localisation(probs >= 0.5, val.masks > 0.0)
        out["centroid_in"] += [float(c) if w and t.any() else np.nan
                               for c, w, t in zip(loc["centroid_in"], val.weak, truth, strict=True)]
    return {k: np.asarray(v) for k, v in out.items()}


def choose_presence_threshold(p: np.ndarray, present: np.ndarray, min_sensitivity: float = 0.95) -> dict[str, Any]:
    """The highest threshold whose sensitivity is still >= ``min_sensitivity``, with what it gives.

    p: P(nerve) per frame; present: bool truth per frame. Frames are called "nerve" when
    ``p >= threshold``. Also reports the same numbers at 0.5 for reference.
    """
    from train.metrics import auc_mann_whitney

    p = np.asarray(p, np.float64)
    present = np.asarray(present, bool)
    neg = ~present

    def at(t: float) -> dict[str, Any]:
        called = p >= t
        return {
            "threshold": round(float(t), 4),
            "sensitivity": float(called[present].mean()) if present.any() else None,
            "specificity": float((~called[neg]).mean()) if neg.any() else None,
            "false_positives": int(called[neg].sum()),
            "n_negative": int(neg.sum()),
        }

    ok = [t for t in np.unique(p[present]) if (p[present] >= t).mean() >= min_sensitivity]
    chosen = float(max(ok)) if ok else 0.5
    return {
        "min_sensitivity": min_sensitivity,
        "chosen": at(chosen),
        "at_0.5": at(0.5),
        "auc": auc_mann_whitney(p, present),
        "n_positive": int(present.sum()),
    }


FOLD_SOURCES = ("kaggle", "regional_us")  # sources split by subject into the folds: they set the threshold


def choose_threshold_per_source(
    p: np.ndarray, present: np.ndarray, source: np.ndarray, min_sensitivity: float = 0.92,
    deciding: tuple[str, ...] = FOLD_SOURCES,
) -> dict[str, Any]:
    """One threshold for every source: the highest at which *each* deciding source (those present with
    nerve frames) still has sensitivity >= ``min_sensitivity``, so no source is sacrificed to another's
    numbers. Reports every source at it (the others too, e.g. an external test split)."""
    p, present, source = np.asarray(p, np.float64), np.asarray(present, bool), np.asarray(source, dtype=object)
    dec = [s for s in deciding if (present & (source == s)).any()]
    if not dec:
        return choose_presence_threshold(p, present, min_sensitivity)
    cands = np.unique(p[present & np.isin(source, dec)])
    ok = [t for t in cands if all((p[present & (source == s)] >= t).mean() >= min_sensitivity for s in dec)]
    t = float(max(ok)) if ok else 0.5
    rep = choose_presence_threshold(p[np.isin(source, dec)], present[np.isin(source, dec)], min_sensitivity)
    called = p >= t
    rep["rule"] = f"highest threshold with sensitivity >= {min_sensitivity} on each of {', '.join(dec)}"
    rep["chosen"] = {
        "threshold": round(t, 4),
        "sensitivity": float(called[present & np.isin(source, dec)].mean()),
        "specificity": float((~called[~present & np.isin(source, dec)]).mean())
        if (~present & np.isin(source, dec)).any() else None,
        "false_positives": int((called & ~present & np.isin(source, dec)).sum()),
        "n_negative": int((~present & np.isin(source, dec)).sum()),
    }
    from train.metrics import auc_mann_whitney

    rep["per_source"] = {}
    for s in dict.fromkeys(source):
        m = source == s
        pos, neg = m & present, m & ~present
        rep["per_source"][str(s)] = {
            "n_positive": int(pos.sum()),
            "n_negative": int(neg.sum()),
            "auc": auc_mann_whitney(p[m], present[m]),
            "sensitivity": float(called[pos].mean()) if pos.any() else None,
            "specificity": float((~called[neg]).mean()) if neg.any() else None,
        }
    return rep


def operating_point(cfg: TrainConfig, min_sensitivity: float = 0.95, folds: list[int] | None = None) -> dict[str, Any]:
    """The presence threshold the spec ships, from pooled out-of-fold predictions (`pooled_predictions`).

    One source (v1's Kaggle-only recipe): `choose_presence_threshold` at ``min_sensitivity``. Several:
    `choose_threshold_per_source` at 0.92 on each fold-split source (the targets ask 0.90 on unseen
    patients; 0.02 of margin for patients unlike these). Specificity here is measured on real
    nerve-free frames of subjects the deciding model never saw.
    """
    pp = pooled_predictions(cfg, folds)
    sources = set(pp["source"]) & set(FOLD_SOURCES)
    if len(sources) > 1 or "regional_us" in sources:
        rep = choose_threshold_per_source(pp["p"], pp["present"], pp["source"], 0.92)
    else:
        rep = choose_presence_threshold(pp["p"], pp["present"], min_sensitivity)
    rep["mean_dice_positive_ungated"] = float(np.nanmean(pp["dice"]))
    rep["presence_scores"] = compare_presence_scores(pp, min_sensitivity)
    return rep


def compare_presence_scores(pp: dict[str, np.ndarray], min_sensitivity: float = 0.95) -> dict[str, Any]:
    """Other ways to say "nerve in view" from the same out-of-fold predictions, next to the head's P(nerve).

    ``head`` (P(nerve)), ``mask_max`` (highest pixel probability) and ``geo_mean`` (sqrt of their
    product), each with its pooled AUC, the specificity at ``min_sensitivity`` and the AUC within each
    subject that has frames of both kinds. The pooled AUC mixes differences between subjects (only
    subjects 1 and 2 have empty frames) with what the score sees in a frame; the within-subject AUCs do not.
    Analysis only: the bedside decides on the head.
    """
    from train.metrics import auc_mann_whitney

    scores = {
        "head": pp["p"],
        "mask_max": pp["mask_max"],
        "geo_mean": np.sqrt(np.clip(pp["p"], 0, 1) * np.clip(pp["mask_max"], 0, 1)),
    }
    present = np.asarray(pp["present"], bool)
    subjects = np.asarray(pp["subject"])
    both = [s for s in sorted(set(subjects)) if present[subjects == s].any() and (~present[subjects == s]).any()]
    out: dict[str, Any] = {}
    for name, sc in scores.items():
        op = choose_presence_threshold(sc, present, min_sensitivity)
        out[name] = {
            "auc_pooled": op["auc"],
            "threshold": op["chosen"]["threshold"],
            "specificity": op["chosen"]["specificity"],
            "auc_within_subject": {s: auc_mann_whitney(sc[subjects == s], present[subjects == s]) for s in both},
        }
    return out
