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

KEYS = ("kaggle_score", "mean_dice_positive", "presence_sensitivity", "presence_specificity", "presence_auc")


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
    path = Path(cfg.out_dir) / cfg.name / "cv.json"
    path.write_text(json.dumps(summary, indent=2, default=str))
    summary["path"] = str(path)
    return summary


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
