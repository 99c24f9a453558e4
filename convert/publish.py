"""Measure a converted model for shipping and write its model card with those measurements.

    python -m convert.publish --cv runs/mini-unet-f8-gaussian --model edge/models/nerveseg.tflite

Adds to what the spec already carries (training data, cross-validation summary, int8
agreement): the out-of-fold mean Dice on positives with a subject-bootstrap 95% CI
(each frame judged by the fold model that never saw its subject), a sanity run on
trained-on kaggle-bp frames, the cross-machine runs on usgra-seg and the femoral
frames (through the bedside path: .tflite + ModelRunner), what int8 costs in Dice on
unseen subjects (each fold model converted like the shipped one, calibrated on its
own training subjects, and scored as float and as int8 on its held-out fold), the inference time on the
machine it runs on (ModelRunner.infer, 1 and 2 threads, with the CPU named), and known
limits worded from those numbers. Prints the JSON it used, so docs/results.md can quote it.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from convert.card import write_model_card
from edge.errors import ModelError

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


def out_of_fold_by_source(cv_dir: Path, threshold: float, n_boot: int = N_BOOT) -> dict[str, Any]:
    """Per source, each frame judged by the fold model that never saw its subject: presence AUC, sensitivity
    and specificity at ``threshold`` (the shipped operating point), Dice on outlined nerve frames, and on
    box-labelled nerve frames the share whose ungated mask has its centroid in a box; subject-bootstrap
    95% CIs (usgra-seg's test split has no subject ids: each frame is its own group, so its CI is narrow)."""
    import yaml

    from train.cv import pooled_predictions
    from train.evaluate import _auc_ci
    from train.metrics import auc_mann_whitney, bootstrap_ci
    from train.train import TrainConfig

    cv = json.loads((cv_dir / "cv.json").read_text())
    folds = cv.get("folds_finished")
    cfg = TrainConfig.model_validate(yaml.safe_load((cv_dir / f"fold-{(folds or [0])[0]}" / "config.yaml").read_text()))
    pp = pooled_predictions(cfg, folds)
    out: dict[str, Any] = {"threshold": threshold, "folds": folds or list(range(cfg.data.folds))}

    def ci(v: np.ndarray, g: np.ndarray) -> list[float] | None:
        if v.size == 0:
            return None
        lo, hi = bootstrap_ci(v, g, n=n_boot)
        return [round(lo, 4), round(hi, 4)]

    for src in dict.fromkeys(pp["source"]):
        m = pp["source"] == src
        p, present = pp["p"][m], pp["present"][m].astype(bool)
        subj = np.array([f"{x}#{i}" if str(src) == "usgra_test" else str(x)
                         for i, x in enumerate(pp["subject"][m])], dtype=object)
        called = p >= threshold
        row: dict[str, Any] = {"n_subjects": len(set(subj)), "n_positive": int(present.sum()),
                               "n_negative": int((~present).sum())}
        auc = auc_mann_whitney(p, present)
        row["presence_auc"] = None if auc is None else round(auc, 4)
        row["presence_auc_ci95"] = _auc_ci(p, present, list(subj), n_boot, 0)
        row["sensitivity"] = round(float(called[present].mean()), 4) if present.any() else None
        row["sensitivity_ci95"] = ci(called[present].astype(float), subj[present])
        row["specificity"] = round(float((~called[~present]).mean()), 4) if (~present).any() else None
        row["specificity_ci95"] = ci((~called[~present]).astype(float), subj[~present])
        d = pp["dice"][m]
        ok = np.isfinite(d)
        if ok.any():
            row["mean_dice_positive"] = round(float(d[ok].mean()), 4)
            row["mean_dice_positive_ci95"] = ci(d[ok], subj[ok])
        c = pp["centroid_in"][m]
        ok = np.isfinite(c)
        if ok.any():
            row["centroid_in_box_ungated"] = round(float(c[ok].mean()), 4)
            row["centroid_in_box_ungated_ci95"] = ci(c[ok], subj[ok])
        out[str(src)] = row
    return out


def cross_data(model: Path, data_root: Path, trained_on: set[str] | None = None) -> list[dict[str, Any]]:
    """The shipped model through the bedside path, at its spec's operating point, on the sanity and
    cross-machine sets. ``trained_on``: the sources the model was trained on (labels say so)."""
    from train.evaluate import evaluate

    trained_on = trained_on or {"kaggle"}
    rus = "regional_us" in trained_on
    usgra = "usgra" in trained_on
    runs = (
        ("kaggle-bp (600 frames of trained-on subjects; sanity only)", "kaggle-bp", None, 600, 1),
        ("usgra-seg test split (Mindray TE7, 5 block regions; never trained on)", "usgra-seg", "test", None, 1),
        (f"usgra-seg all frames{' (train split trained on)' if usgra else ''}", "usgra-seg", None, None, 1),
        ("nerveblocker-femoral (femoral frames; never trained on)", "nerveblocker-femoral", None, None, 1),
        (f"regional-us every 5th frame ({'trained-on patients; sanity only' if rus else 'never trained on'})",
         "regional-us", None, None, 5),
    )
    out = []
    for label, folder, split, limit, every in runs:
        if not (data_root / folder).is_dir():
            continue
        rep = evaluate(model, data_root / folder, presence_threshold=None, split=split, limit=limit, n_boot=200,
                       every=every)
        row = {"set": label, "n_images": rep["n_images"],
               "presence_threshold": rep["thresholds"]["presence"],
               "presence_sensitivity": _r(rep["presence_sensitivity"]),
               "presence_specificity": _r(rep["presence_specificity"]),
               "presence_auc": _r(rep["presence_auc"])}
        if rep.get("layout") == "box-video":
            row["centroid_in_box"] = _r(rep["centroid_in_box"])
            row["mask_in_box"] = _r(rep["mask_in_box"])
        else:
            row["mean_dice_positive"] = _r(rep["mean_dice_positive"])
        out.append(row)
    return out


def _r(v: float | None) -> float | None:
    return None if v is None else round(float(v), 3)


def _subset_manifest(source: Path, subjects: set[str], keep: bool, folder: Path) -> Path:
    """``folder/manifest.csv``: the rows of ``source/manifest.csv`` whose subject is (keep) or is not in
    ``subjects``, with absolute paths, so the converter and `evaluate` read the same real files."""
    import csv

    with (source / "manifest.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = [r for r in reader if (r.get("subject") in subjects) == keep]
    for r in rows:
        for col in ("path", "mask_path"):
            if r.get(col):
                r[col] = str((source / r[col]).resolve())
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return folder


def quantization_on_unseen(cv_dir: Path, data_root: Path, work: Path) -> dict[str, Any]:
    """Dice on positives of each fold's held-out subjects, float Keras model vs its int8 conversion.

    The shipped model saw every subject, so int8's cost on unseen subjects is measured on the fold
    models: each is converted as the shipped one was (``nerveseg convert``, agreement check included),
    calibrated and checked on its own training subjects only, then both are scored by `evaluate` on the
    fold's held-out subjects (.keras in Keras, .tflite through the bedside path).
    """
    import yaml

    from convert.cli import convert
    from train.evaluate import evaluate

    kaggle = data_root / "kaggle-bp"
    rows = []
    for fold_dir in sorted(cv_dir.glob("fold-*")):
        keras_model = fold_dir / "model.keras"
        data = yaml.safe_load((fold_dir / "model.yaml").read_text())["provenance"]["data"]
        k = int(data["held_out_fold"])
        held = {str(s) for s in data["folds"][k]}
        train_dir = _subset_manifest(kaggle, held, False, work / f"fold-{k}" / "train")
        val_dir = _subset_manifest(kaggle, held, True, work / f"fold-{k}" / "val")
        tfl = work / f"fold-{k}" / "int8.tflite"
        try:
            convert(argparse.Namespace(
                model=str(keras_model), out=str(tfl), float32=False, calibration=str(train_dir),
                check=str(train_dir), calibration_limit=None, check_limit=None, name=None, force=True,
            ))
        except ModelError as e:  # the fold's int8 file fails the agreement check: say so, measure the rest
            rows.append({"fold": k, "rejected": str(e).splitlines()[0]})
            continue
        f32 = evaluate(keras_model, val_dir, n_boot=50)["mean_dice_positive"]
        i8 = evaluate(tfl, val_dir, n_boot=50)["mean_dice_positive"]
        rows.append({"fold": k, "float": round(f32, 4), "int8": round(i8, 4), "difference": round(i8 - f32, 4)})
    worst = max((abs(r["difference"]) for r in rows if "difference" in r), default=None)
    return {"per_fold": rows, "max_abs_difference": worst}


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


def limits(cv: dict[str, Any], evaluation: list[dict[str, Any]], by_source: dict[str, Any] | None = None) -> list[str]:
    """Known limits stated with this model's own numbers."""
    op = cv.get("presence_operating_point", {}).get("chosen", {})
    out = []
    if by_source:
        for src, row in by_source.items():
            if not isinstance(row, dict):
                continue
            sens, spec_ = row.get("sensitivity"), row.get("specificity")
            if spec_ is not None and spec_ < 0.85:
                out.append(f"Presence on unseen {src} subjects: specificity {spec_:.2f} at the shipped threshold "
                           f"(target 0.85): about {100 * (1 - spec_):.0f}% of nerve-free frames get an outline.")
            if sens is not None and sens < 0.90:
                out.append(f"Presence on unseen {src} subjects: sensitivity {sens:.2f} at the shipped threshold "
                           "(target 0.90).")
        other = [e for e in evaluation if "never trained on" in e["set"] and e.get("mean_dice_positive") is not None]
        if other:
            worst = ", ".join(f"{e['mean_dice_positive']:.3f} on {e['set'].split(' (')[0]}" for e in other)
            out.append(f"Outlines on machines or regions it was not trained on are weak: mean Dice on positives "
                       f"{worst}. Fine-tune on the site's own labelled frames (`nerveseg train --init`).")
        out.append("Kaggle frames were downscaled upstream to 256x186 JPEG-derived images; the bedside sees "
                   "full-resolution frames.")
        return out
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
    p.add_argument("--float-twin", help="the float32 .tflite of the same weights: int8 minus float on every set")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cv_dir, model = Path(args.cv), Path(args.model)
    cv = json.loads((cv_dir / "cv.json").read_text())
    from edge.spec import load_spec

    spec = load_spec(model)
    sources = set((spec.provenance.get("data") or {}).get("sources") or {"kaggle": 1})
    if sources != {"kaggle"}:
        return _publish_multi(cv_dir, cv, model, spec, sources, Path(args.data), Path(args.float_twin)
                              if args.float_twin else None)
    metrics = out_of_fold(cv_dir)
    evaluation = cross_data(model, Path(args.data))
    with tempfile.TemporaryDirectory(prefix="nerveseg-publish-") as tmp:
        quant = quantization_on_unseen(cv_dir, Path(args.data), Path(tmp))
    timing = latency(model)
    extra = {
        "metrics": {metrics["label"]: {"value": metrics["value"], "ci95": metrics["ci95"]}},
        "int8 vs float: Dice on positives of each fold's unseen subjects (mask >= 0.5)": {
            **{f"fold {r['fold']}": {k: v for k, v in r.items() if k != "fold"} for r in quant["per_fold"]},
            "largest difference": {"difference": quant["max_abs_difference"]},
        },
        "inference time (ModelRunner.infer, median / p95 of 300 calls)": timing,
        "evaluation": {e["set"]: {k: v for k, v in e.items() if k != "set"} for e in evaluation},
        "limits": limits(cv, evaluation),
    }
    card = write_model_card(model, extra)
    print(json.dumps({"metrics": metrics, "int8_vs_float_unseen": quant, "evaluation": evaluation, "latency": timing,
                      "card": str(card)}, indent=2))
    return 0


def _publish_multi(cv_dir: Path, cv: dict[str, Any], model: Path, spec, sources: set[str], data: Path,
                   float_twin: Path | None) -> int:
    """The card of a model trained on several sources: out-of-fold results per source at the shipped
    threshold, the shipped file on every set through the bedside path, int8 vs its float twin on the same
    sets, inference time, limits."""
    by_source = out_of_fold_by_source(cv_dir, spec.thresholds.presence_enter)
    evaluation = cross_data(model, data, sources)
    quant = None
    if float_twin is not None:
        twin = {e["set"]: e for e in cross_data(float_twin, data, sources)}
        quant = {}
        for e in evaluation:
            f = twin.get(e["set"], {})
            quant[e["set"]] = {k: round(e[k] - f[k], 4) for k in ("mean_dice_positive", "presence_auc",
                                                                  "presence_sensitivity", "centroid_in_box")
                               if e.get(k) is not None and f.get(k) is not None}
    timing = latency(model)
    label = (f"out of fold ({len(by_source['folds'])} of {cv.get('folds')} folds by subject within each source), "
             f"at the shipped presence threshold {by_source['threshold']:g}")
    extra = {
        "metrics": {label: {k: v for k, v in by_source.items() if k not in ("threshold", "folds")}},
        "evaluation": {e["set"]: {k: v for k, v in e.items() if k != "set"} for e in evaluation},
        "inference time (ModelRunner.infer, median / p95 of 300 calls)": timing,
        "limits": limits(cv, evaluation, by_source),
    }
    if quant is not None:
        extra[f"int8 minus float32 ({float_twin.name}), same sets, same path"] = quant
    card = write_model_card(model, extra)
    print(json.dumps({"out_of_fold_by_source": by_source, "evaluation": evaluation, "int8_minus_float": quant,
                      "latency": timing, "card": str(card)}, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
