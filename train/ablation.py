"""Which sources help: score several runs' fold models on the same held-out frames of every source.

    python -m train.ablation --fold 0 runs/v2-kaggle runs/v2-kaggle-rus runs/v2-kaggle-usgra runs/v2-all \
        [--data ../shared/data] [--json runs/ablation-fold0.json]

A run trained on Kaggle alone never validated on the videos; this scores every run's
``fold-K/model.keras`` on one validation set built with *all* sources enabled for fold K (folds are by
subject within each source and deterministic in ``data.folds`` and ``data.seed``, so fold K holds the
same subjects whatever sources a run used): Kaggle's held-out subjects (Dice on nerve frames, presence
AUC), regional-us's held-out videos (presence AUC, sensitivity and specificity at 0.5, centroid of the
ungated mask in a box), usgra-seg's test split (Dice on nerve frames). Inference mode, model size, as in
training's validation (`train.train.validation_report`). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

COLUMNS = (
    ("kaggle", "mean_dice_positive", "Kaggle Dice on nerve frames"),
    ("kaggle", "presence_auc", "Kaggle presence AUC"),
    ("regional_us", "presence_auc", "regional-us presence AUC"),
    ("regional_us", "sensitivity", "regional-us sensitivity @0.5"),
    ("regional_us", "specificity", "regional-us specificity @0.5"),
    ("regional_us", "centroid_in_box", "regional-us centroid in box (ungated)"),
    ("regional_us", "mask_in_box", "regional-us mask in boxes (ungated)"),
    ("regional_us", "rectangularity", "regional-us mask area / its bounding rectangle (1 = a painted box)"),
    ("usgra_test", "mean_dice_positive", "usgra-seg test Dice on nerve frames"),
)


def common_validation(run: Path, fold: int, data_root: str | None):
    """The validation frames of fold ``fold`` with every source enabled, for the recipe of ``run``."""
    from train.train import BoxVideoSource, KaggleSource, OutlineSource, TrainConfig, assemble

    cfg = TrainConfig.model_validate(yaml.safe_load((run / f"fold-{fold}" / "config.yaml").read_text()))
    src = cfg.data.sources
    sources = src.model_copy(update={
        "kaggle": src.kaggle or KaggleSource(),
        "regional_us": src.regional_us or BoxVideoSource(),
        "usgra": src.usgra or OutlineSource(),
    })
    data = cfg.data.model_copy(update={"sources": sources, "fold": fold, **({"root": data_root} if data_root else {})})
    _, val, _ = assemble(cfg.model_copy(update={"data": data}))
    return cfg, val


def score_runs(runs: list[Path], fold: int, data_root: str | None = None) -> list[dict[str, Any]]:
    import keras

    from train.data import eval_arrays
    from train.train import model_spec, validation_report

    rows = []
    cache: dict[str, Any] = {}
    for run in runs:
        cfg, val = common_validation(run, fold, data_root)
        key = json.dumps(cfg.preprocess.model_dump(), sort_keys=True)
        if key not in cache:
            cache[key] = eval_arrays(val, cfg.preprocess)
        model = keras.models.load_model(run / f"fold-{fold}" / "model.keras", compile=False)
        rep = validation_report(model, val, cache[key], model_spec(cfg, {}), n_boot=200)
        res = json.loads((run / f"fold-{fold}" / "result.json").read_text())
        rows.append({"run": run.name, "fold": fold, "train_seconds": res.get("train_seconds"),
                     "macs": res.get("macs"), "per_source": rep["per_source"]})
        logger.info("%s: %s", run.name, rep["per_source"])
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    head = "| | " + " | ".join(r["run"] for r in rows) + " |"
    lines = [head, "|---" * (len(rows) + 1) + "|"]
    for src, key, label in COLUMNS:
        cells = []
        for r in rows:
            v = (r["per_source"].get(src) or {}).get(key)
            cells.append("-" if v is None else f"{v:.3f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| training seconds (2 cores) | " + " | ".join(f"{r['train_seconds']:.0f}" for r in rows) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.ablation", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders (each with fold-K/model.keras)")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--data", help="data root (default: each run's data.root)")
    p.add_argument("--json", help="write the rows as JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    rows = score_runs([Path(r) for r in args.runs], args.fold, args.data)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    print(markdown(rows))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
