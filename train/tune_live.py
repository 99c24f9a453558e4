"""Tune the bedside's temporal rules on video, cross-validated by patient, for a stated clinical cost.

    python -m train.tune_live --cv runs/mini-unet-v2 --data ../shared/data/regional-us \
        [--false-outline-cost 2] [--json runs/mini-unet-v2/live_tuning.json] [--write-spec MODEL.keras]

Inputs are out of fold: each video's frames are analysed by the fold model that never saw that patient
(``fold-K/model.keras`` on ``provenance.data.folds.regional_us[K]``), through the bedside preprocessing.
The rules are then replayed with the bedside's own `edge.presence.PresenceTracker` over those per-frame
outputs, which is exactly what the live loop computes from them (see `train.live` for the loop itself).

Cost per frame: ``false_outline_cost`` for an outline on a frame without a nerve, 1 for a nerve frame
without one: a false outline (the needle aimed at the wrong structure) costs more than a late or missing
one (the anaesthetist looks for themself). The rules chosen minimise the pooled cost over the videos they
are tuned on. Grid: exit (a gap below enter), frames on, frames off; presence enter stays the spec's
frame-level operating point (chosen for every source at once) unless ``--tune-enter``. Mask smoothing
does not change what is shown when, only the outline: it is chosen afterwards by outline stability
(median Dice between consecutive shown outlines) among values that do not lower the outline-on-box rate.

Reported: for each fold of patients, the rules chosen on the other folds and, on the held-out videos,
before (the spec's rules) and after (the chosen ones): cost, screen right, flips per minute, time to
show. ``--write-spec`` puts the rules chosen on all videos into a trained model's spec, from where
``nerveseg convert`` carries them into the shipped ``.tflite``'s spec.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

ENTER = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97)
GAP = (0.05, 0.1, 0.2, 0.3)
FRAMES_ON = (1, 2, 3, 5, 8)
FRAMES_OFF = (1, 3, 5, 8, 12)
SMOOTHING = (0.3, 0.5, 0.7, 1.0)


@dataclass
class VideoOutputs:
    video: Any  # train.boxes.BoxVideo
    fold: int
    frame_hw: tuple[int, int]
    p: np.ndarray  # (N,) P(nerve)
    masks: np.ndarray  # (N, H, W) float16 mask probabilities
    truth: np.ndarray  # (N,) bool: the frame has a box


def oof_outputs(cv_dir: Path, folder: Path) -> list[VideoOutputs]:
    """Every video of ``folder`` analysed by the fold model of ``cv_dir`` that did not train on it."""
    import keras

    from edge.preprocess import preprocess
    from edge.spec import load_spec
    from train.boxes import iter_video, read_box_videos

    videos = {v.subject: v for v in read_box_videos(folder)}
    out = []
    for fold_dir in sorted(cv_dir.glob("fold-*")):
        if not (fold_dir / "model.keras").is_file():
            continue
        spec = load_spec(fold_dir / "model.keras", verify_hash=False)
        folds = spec.provenance["data"]["folds"]
        k = int(spec.provenance["data"]["held_out_fold"])
        held = folds["regional_us"][k] if isinstance(folds, dict) else []
        model = keras.models.load_model(fold_dir / "model.keras", compile=False)
        pp = spec.preprocess
        for vid in held:
            v = videos.get(str(vid))
            if v is None:
                continue
            frames = list(iter_video(v))
            x = np.stack([preprocess(f, None, pp) for _, f in frames])[..., None]
            y = model.predict(x, batch_size=64, verbose=0)
            n = len(frames)
            out.append(VideoOutputs(v, k, frames[0][1].shape[:2], y["nerve_present"][:, 0].astype(np.float64),
                                    y["mask"][..., 0].astype(np.float16),
                                    np.array([bool(v.boxes_at(i)) for i in range(n)])))
        logger.info("fold %d: %d held-out videos analysed", k, len(held))
    if not out:
        raise ValueError(f"no fold model of {cv_dir} held out any video of {folder}")
    return out


def replay(p: np.ndarray, rules: dict[str, Any], masks: np.ndarray | None = None):
    """What the screen shows with ``rules``: (shown bool (N,), shown masks or None) via PresenceTracker."""
    from edge.presence import PresenceTracker
    from edge.types import Result

    t = PresenceTracker(rules["enter"], rules["exit"], rules["min_frames_on"], rules["min_frames_off"],
                        rules.get("alpha", 0.5))
    dummy = np.zeros((1, 1), np.float32)
    shown = np.zeros(len(p), bool)
    shown_masks = [] if masks is not None else None
    for i, pi in enumerate(p):
        d = t.update(Result(dummy if masks is None else masks[i].astype(np.float32), float(pi), 0))
        shown[i] = d.nerve
        if shown_masks is not None:
            shown_masks.append(d.mask)
    return shown, shown_masks


def grid(enter: tuple[float, ...] = ENTER) -> list[dict[str, Any]]:
    return [{"enter": e, "exit": round(max(e - g, 0.01), 4), "min_frames_on": on, "min_frames_off": off}
            for e, g, on, off in itertools.product(enter, GAP, FRAMES_ON, FRAMES_OFF)]


def costs(outputs: list[VideoOutputs], candidates: list[dict[str, Any]], false_outline_cost: float) -> np.ndarray:
    """(candidates, videos, 2): false-outline frames and missed frames of each candidate on each video."""
    c = np.zeros((len(candidates), len(outputs), 2))
    for j, o in enumerate(outputs):
        for i, rules in enumerate(candidates):
            shown, _ = replay(o.p, rules)
            c[i, j] = ((shown & ~o.truth).sum(), (~shown & o.truth).sum())
    return c


def pick(c: np.ndarray, idx: np.ndarray, false_outline_cost: float) -> int:
    total = false_outline_cost * c[:, idx, 0].sum(axis=1) + c[:, idx, 1].sum(axis=1)
    return int(np.argmin(total))


def live_scores(outputs: list[VideoOutputs], rules: dict[str, Any] | dict[int, dict[str, Any]],
                model_hw: tuple[int, int], false_outline_cost: float) -> dict[str, Any]:
    """`train.live` scores of the screen these rules give on these videos (outlines included), pooled, plus
    ``cost_per_frame``. ``rules``: one rule set, or fold -> rule set (each video played with its fold's)."""
    from train.live import Trace, pool, score_trace

    per_fold = all(isinstance(k, int) for k in rules)
    rows = []
    for o in outputs:
        r = rules[o.fold] if per_fold else rules
        shown, masks = replay(o.p, r, o.masks)
        trace = Trace(o.video.subject, o.video.fps, o.frame_hw, list(o.p), list(shown),
                      [None if m is None else m >= r.get("mask_threshold", 0.5) for m in masks])
        rows.append(score_trace(trace, o.video, model_hw))
    pooled = pool(rows, outputs[0].video.fps)
    pooled["cost_per_frame"] = (false_outline_cost * sum(r["false_outline_frames"] for r in rows)
                                + sum(r["missed_frames"] for r in rows)) / sum(r["frames"] for r in rows)
    return pooled


def _brief(s: dict[str, Any]) -> dict[str, Any]:
    return {"cost_per_frame": round(s["cost_per_frame"], 4), "state_accuracy": round(s["state_accuracy"], 4),
            "flips_per_min": round(s["flips_per_min"], 2), "truth_flips_per_min": round(s["truth_flips_per_min"], 2),
            "time_to_show_median_s": s["time_to_show_s"]["median"], "time_to_show_p90_s": s["time_to_show_s"]["p90"],
            "episodes_never_shown": s["time_to_show_s"]["never_shown"],
            "time_to_clear_median_s": s["time_to_clear_s"]["median"], "outline_on_box": s["outline_on_box"],
            "jitter_centroid_px_median": s["jitter"]["centroid_px_median"],
            "consecutive_dice_median": s["jitter"]["consecutive_dice_median"]}


def tune(outputs: list[VideoOutputs], before: dict[str, Any], model_hw: tuple[int, int],
         false_outline_cost: float = 2.0, tune_enter: bool = False) -> dict[str, Any]:
    """Cross-validated choice of the rules (see the module doc). ``tune_enter`` False keeps the spec's
    ``presence_enter``: it is the frame-level operating point chosen for every training source at once,
    and these videos are one source; the rest (exit, frames on/off, smoothing) is tuned here."""
    cands = grid(ENTER if tune_enter else (float(before["enter"]),))
    c = costs(outputs, cands, false_outline_cost)
    folds = sorted({o.fold for o in outputs})
    per_fold = []
    for k in folds:
        train_idx = np.array([j for j, o in enumerate(outputs) if o.fold != k], dtype=int)
        if train_idx.size == 0:  # one fold only: nothing to tune on without its own videos
            logger.warning("fold %d is the only fold with videos: no out-of-fold choice for it", k)
            continue
        held = [o for o in outputs if o.fold == k]
        chosen = cands[pick(c, train_idx, false_outline_cost)] | {"alpha": before["alpha"],
                                                                  "mask_threshold": before["mask_threshold"]}
        per_fold.append({
            "fold": k, "held_out_videos": [o.video.subject for o in held], "chosen_on_other_folds": chosen,
            "before": _brief(live_scores(held, before, model_hw, false_outline_cost)),
            "after": _brief(live_scores(held, chosen, model_hw, false_outline_cost)),
        })
    all_idx = np.arange(len(outputs), dtype=int)
    final = cands[pick(c, all_idx, false_outline_cost)] | {"mask_threshold": before["mask_threshold"]}
    # mask smoothing: by outline stability, not lowering the outline-on-box rate
    smooth = []
    for a in SMOOTHING:
        s = live_scores(outputs, final | {"alpha": a}, model_hw, false_outline_cost)
        smooth.append({"alpha": a, "consecutive_dice_median": s["jitter"]["consecutive_dice_median"],
                       "jitter_centroid_px_median": s["jitter"]["centroid_px_median"],
                       "outline_on_box": s["outline_on_box"], "time_to_show_median_s": s["time_to_show_s"]["median"]})
    base = next(r for r in smooth if r["alpha"] == before["alpha"])
    ok = [r for r in smooth if (r["outline_on_box"] or 0) >= (base["outline_on_box"] or 0) - 0.005]
    best = max(ok, key=lambda r: r["consecutive_dice_median"] or 0)
    final["alpha"] = best["alpha"]
    chosen_of = {f["fold"]: f["chosen_on_other_folds"] for f in per_fold}
    pooled_before = {k: float(np.mean(v)) if (v := [f["before"][k] for f in per_fold if f["before"][k] is not None])
                     else None for k in ("cost_per_frame", "state_accuracy", "flips_per_min")}
    return {
        "false_outline_cost": false_outline_cost,
        "grid": {"enter": ENTER if tune_enter else [before["enter"]], "gap": GAP, "frames_on": FRAMES_ON,
                 "frames_off": FRAMES_OFF, "smoothing": SMOOTHING},
        "videos": len(outputs),
        "before_rules": before,
        "per_fold": per_fold,
        # every video played with the rules chosen without its fold (the spec's for a fold that had none)
        "out_of_fold_after_all": _brief(live_scores(
            outputs, {o.fold: chosen_of.get(o.fold, before) for o in outputs}, model_hw, false_outline_cost)),
        "out_of_fold_before_all": _brief(live_scores(outputs, before, model_hw, false_outline_cost)),
        "mean_before_over_folds": pooled_before,
        "smoothing": smooth,
        "chosen": final,
    }


def write_rules(model: Path, rules: dict[str, Any], note: dict[str, Any]) -> None:
    """Put the chosen rules into the spec beside a trained ``model`` (keras or tflite sidecar)."""
    from edge.spec import load_spec, save_spec

    spec = load_spec(model, verify_hash=False)
    th = spec.thresholds.model_copy(update={
        "presence_enter": rules["enter"], "presence_exit": rules["exit"], "min_frames_on": rules["min_frames_on"],
        "min_frames_off": rules["min_frames_off"], "mask_smoothing": rules["alpha"]})
    th = type(th).model_validate(th.model_dump())
    prov = dict(spec.provenance) | {"live_tuning": note}
    save_spec(spec.model_copy(update={"thresholds": th, "provenance": prov}), model)


def main(argv: list[str] | None = None) -> int:
    from edge.config import PresenceConfig
    from edge.plan import settle_rules
    from edge.spec import load_spec

    ap = argparse.ArgumentParser(prog="python -m train.tune_live", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cv", required=True, help="the cross-validation run folder (fold-K/model.keras)")
    ap.add_argument("--data", default="../shared/data/regional-us", help="box-labelled video folder")
    ap.add_argument("--false-outline-cost", type=float, default=2.0)
    ap.add_argument("--tune-enter", action="store_true", help="also tune presence_enter (default: keep the spec's, "
                    "the frame-level operating point shared by every source)")
    ap.add_argument("--json", help="write the tuning report here")
    ap.add_argument("--write-spec", help="put the chosen rules into this trained model's spec")
    ap.add_argument("--before-from", help="model whose spec's rules are 'before' (default: --write-spec, "
                    "else fold-0's)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cv_dir = Path(args.cv)
    ref = Path(args.before_from or args.write_spec or cv_dir / "fold-0" / "model.keras")
    spec = load_spec(ref, verify_hash=False)
    before = settle_rules(PresenceConfig(), spec.thresholds).as_dict()
    outputs = oof_outputs(cv_dir, Path(args.data))
    rep = tune(outputs, before, (spec.preprocess.height, spec.preprocess.width), args.false_outline_cost,
               args.tune_enter)
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=2, default=float))
    print(json.dumps({k: rep[k] for k in ("chosen", "out_of_fold_before_all", "out_of_fold_after_all")}, indent=2,
                     default=float))
    if args.write_spec:
        write_rules(Path(args.write_spec), rep["chosen"], {
            "false_outline_cost": rep["false_outline_cost"], "videos": rep["videos"],
            "out_of_fold_before": rep["out_of_fold_before_all"], "out_of_fold_after": rep["out_of_fold_after_all"]})
        print(f"rules written to the spec of {args.write_spec}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
