"""Measure a converted model for shipping and write its model card with those measurements.

    python -m convert.publish --cv runs/mini-unet-f8-gaussian --model edge/models/nerveseg.tflite

Adds to what the spec already carries (training data, cross-validation summary, int8
agreement): the out-of-fold mean Dice on positives with a subject-bootstrap 95% CI
(each frame judged by the fold model that never saw its subject), a sanity run on
trained-on kaggle-bp frames, the cross-machine runs on usgra-seg and the femoral
frames (through the bedside path: .tflite + ModelRunner), the inference time on the
machine it runs on (ModelRunner.infer, 1 and 2 threads, with the CPU named), and known
limits worded from those numbers. Prints the JSON it used, so a README table can quote it.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from convert.card import write_model_card

logger = logging.getLogger(__name__)

N_BOOT = 2000


def out_of_fold(cv_dir: Path, n_boot: int = N_BOOT) -> dict[str, Any]:
    """Pooled out-of-fold Dice on positives with a subject-bootstrap CI, from the run's fold models."""
    import yaml

    from train.cv import pooled_predictions
    from train.metrics import bootstrap_ci
    from train.train import TrainConfig

    cfg = TrainConfig.model_validate(yaml.safe_load((cv_dir / "fold-0" / "config.yaml").read_text()))
    pp = pooled_predictions(cfg.model_copy(update={"data": cfg.data.model_copy(update={"fold": None})}))
    pos = pp["present"]
    dice, subjects = pp["dice"][pos], pp["subject"][pos]
    lo, hi = bootstrap_ci(dice, subjects, n=n_boot)
    return {
        "label": f"out-of-fold mean Dice on positives ({cfg.data.folds}-fold CV, {len(set(subjects))} subjects, "
        f"{int(pos.sum())} frames, mask >= 0.5)",
        "value": round(float(np.mean(dice)), 4),
        "ci95": [round(lo, 4), round(hi, 4)],
    }


def cross_data(model: Path, data_root: Path) -> list[dict[str, Any]]:
    """The shipped model through the bedside path on the sanity and cross-machine sets."""
    from train.evaluate import evaluate

    runs = (
        ("kaggle-bp (600 frames of trained-on subjects; sanity only)", "kaggle-bp", None, 600),
        ("usgra-seg test split (Mindray TE7, 5 block regions; never trained on)", "usgra-seg", "test", None),
        ("usgra-seg all frames", "usgra-seg", None, None),
        ("nerveblocker-femoral (femoral frames; never trained on)", "nerveblocker-femoral", None, None),
    )
    out = []
    for label, folder, split, limit in runs:
        rep = evaluate(model, data_root / folder, split=split, limit=limit, n_boot=200)
        out.append({
            "set": label,
            "n_images": rep["n_images"],
            "mean_dice_positive": round(rep["mean_dice_positive"], 3),
            "presence_sensitivity@0.5": round(rep["presence_sensitivity"], 3),
        })
    return out


def latency(model: Path, calls: int = 300, warmup: int = 30) -> dict[str, Any]:
    """Median and p95 of ``ModelRunner.infer`` (ms) at 1 and 2 threads on this machine, which it names.

    Times depend on the CPU (int8 pays most where the CPU has int8 dot-product instructions: VNNI on x86,
    asimddp on ARM), so the machine travels with the numbers.
    """
    import time

    from edge.bench import machine_info
    from edge.runner import ModelRunner

    info = machine_info()
    out: dict[str, Any] = {
        "machine": f"{info.get('cpu_model')} ({info.get('cpu_usable')} usable cores; "
        f"{', '.join(info.get('cpu_features') or []) or 'no listed features'})",
    }
    for threads in (1, 2):
        runner = ModelRunner(model, threads=threads)
        x = np.zeros(runner.input_hw, np.float32)
        for _ in range(warmup):
            runner.infer(x)
        ts = []
        for _ in range(calls):
            t0 = time.perf_counter()
            runner.infer(x)
            ts.append((time.perf_counter() - t0) * 1e3)
        p50, p95 = np.percentile(ts, [50, 95])
        out[f"{threads}_thread_ms"] = {"p50": round(float(p50), 2), "p95": round(float(p95), 2)}
    return out


def limits(cv: dict[str, Any], evaluation: list[dict[str, Any]]) -> list[str]:
    """Known limits stated with this model's own numbers."""
    op = cv.get("presence_operating_point", {}).get("chosen", {})
    out = []
    if op.get("n_negative"):
        spec_ = op["specificity"]
        n_neg = op["n_negative"]
        out.append(
            f"Presence: at the CV operating point (sensitivity {op['sensitivity']:.2f}) only {100 * spec_:.0f}% "
            f"of real empty frames of unseen subjects are recognised as empty ({n_neg - op['false_positives']} of "
            f"{n_neg}); the <= 10% false-positive target is missed by {100 * (0.9 - spec_):.0f} points. "
            "Only 37 real empty frames (2 subjects) exist to learn and measure this, and some are near-duplicates of "
            "labelled frames (`python -m train.neighbours`)."
        )
    other = [e for e in evaluation if "never trained on" in e["set"]]
    if other:
        worst = ", ".join(f"{e['mean_dice_positive']:.3f} on {e['set'].split(' (')[0]}" for e in other)
        out.append(
            f"Does not transfer to another machine: mean Dice on positives {worst}. Use it only with images like "
            "the Kaggle set until retrained on the site's machine."
        )
    out.append(
        "Trained on 256x186 JPEG-derived frames (downscaled upstream, q~75 artifacts); the bedside sees "
        "full-resolution frames."
    )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m convert.publish", description=__doc__.split("\n\n")[0])
    p.add_argument("--cv", required=True, help="the cross-validation run folder (holds cv.json and fold-K/)")
    p.add_argument("--model", required=True, help="the converted .tflite whose card to write")
    p.add_argument("--data", default="../shared/data", help="shared data folder (default: %(default)s)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cv_dir, model = Path(args.cv), Path(args.model)
    cv = json.loads((cv_dir / "cv.json").read_text())
    metrics = out_of_fold(cv_dir)
    evaluation = cross_data(model, Path(args.data))
    timing = latency(model)
    extra = {
        "metrics": {metrics["label"]: {"value": metrics["value"], "ci95": metrics["ci95"]}},
        "inference time (ModelRunner.infer, median / p95 of 300 calls)": timing,
        "evaluation": {e["set"]: {k: v for k, v in e.items() if k != "set"} for e in evaluation},
        "limits": limits(cv, evaluation),
    }
    card = write_model_card(model, extra)
    print(json.dumps({"metrics": metrics, "evaluation": evaluation, "latency": timing, "card": str(card)}, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
