"""Tune the bedside's temporal rules on video, cross-validated by patient, for a stated clinical cost.

    python -m train.tune_live --cv runs/mini-unet-v2 --data ../shared/data/regional-us \
        [--cache runs/mini-unet-v2/oof_live.npz] [--false-outline-cost 2] [--flip-cost 5] [--tune-enter] \
        [--json runs/mini-unet-v2/live_tuning.json] [--write-spec MODEL.keras]

Inputs are out of fold: each video's frames are analysed by the fold model that never saw that patient
(``fold-K/model.keras`` on ``provenance.data.folds.regional_us[K]``), through the bedside preprocessing.
``--cache`` keeps those per-frame outputs in one ``.npz`` (written the first time, read after), so the
tuning can be rerun without the models. The rules are replayed with the bedside's own
`edge.presence.PresenceTracker` over the per-frame outputs, which is exactly what the live loop computes
from them (see `train.live` for the loop itself); the grid search uses `shown_states`, the same rules
vectorised over candidates, which a test holds equal to the tracker.

Cost, in frames of wrong screen: ``false_outline_cost`` for an outline on a frame without a nerve, 1 for a
nerve frame without one, and ``flip_cost`` for every change of the screen (outline appears or goes). A false
outline (the needle aimed at the wrong structure) costs more than a late or missing one (the anaesthetist
looks for themself); an outline that blinks on and off draws the eye from the needle and teaches the user to
ignore it, so each change costs like a quarter second of wrong screen (5 frames at 20 fps) on top of the
frames it gets wrong. The rules chosen minimise the pooled cost over the videos they are tuned on, among
those that show the outline within half a second of the nerve entering the view (``--max-show-s``), twice:
the median over the truth's episodes there, and a step of P from those videos' median on nerve-free frames
to their median on nerve frames (most episodes start at a video's first frame, which says little about a
probe sliding onto the plexus). Grid: presence averaging (the weight of the newest frame's P in the
running average the thresholds compare), exit (a gap below enter), frames on, frames off, whether the first
frame after a start decides the state by its own vote (else the screen starts at "no nerve"); presence enter
stays the spec's frame-level operating point (chosen for every source at once) unless ``--tune-enter``.
Mask smoothing does not change what is shown when, only the outline: it is chosen afterwards by outline
stability (median Dice between consecutive shown outlines) among values that do not lower the
outline-on-box rate.

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
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

ENTER = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97)
GAP = (0.05, 0.1, 0.2, 0.3)
FRAMES_ON = (1, 2, 3, 5, 8)
FRAMES_OFF = (1, 3, 5, 8, 12)
P_SMOOTHING = (1.0, 0.5, 0.3, 0.2, 0.1)
FIRST_FRAME = (False, True)
SMOOTHING = (0.3, 0.5, 0.7, 1.0)
FLIP_COST = 5.0  # frames of wrong screen one change of the screen costs (see the module doc)
MAX_SHOW_S = 0.5  # the median time to show an outline the rules must keep on the videos they are tuned on


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
                        rules.get("alpha", 0.5), rules.get("p_alpha", 1.0), rules.get("first_frame_decides", False))
    dummy = np.zeros((1, 1), np.float32)
    shown = np.zeros(len(p), bool)
    shown_masks = [] if masks is not None else None
    for i, pi in enumerate(p):
        d = t.update(Result(dummy if masks is None else masks[i].astype(np.float32), float(pi), 0))
        shown[i] = d.nerve
        if shown_masks is not None:
            shown_masks.append(d.mask)
    return shown, shown_masks


def grid(enter: tuple[float, ...] = ENTER, p_smoothing: tuple[float, ...] = P_SMOOTHING,
         first_frame: tuple[bool, ...] = FIRST_FRAME) -> list[dict[str, Any]]:
    return [{"enter": e, "exit": round(max(e - g, 0.01), 4), "min_frames_on": on, "min_frames_off": off, "p_alpha": a,
             "first_frame_decides": ff}
            for ff, a, e, g, on, off in itertools.product(first_frame, p_smoothing, enter, GAP, FRAMES_ON, FRAMES_OFF)]


def averaged(p: np.ndarray, p_alpha: float) -> np.ndarray:
    """The running average of P the tracker's thresholds compare, with the tracker's own arithmetic."""
    out = np.empty(len(p), np.float64)
    avg = None
    for i, x in enumerate(p.tolist()):
        avg = x if avg is None or p_alpha >= 1.0 else avg + p_alpha * (x - avg)
        out[i] = avg
    return out


def shown_states(p: np.ndarray, candidates: list[dict[str, Any]]) -> np.ndarray:
    """(frames, candidates) bool: what the screen shows under each candidate's rules, from a fresh tracker.

    The rules of `edge.presence.PresenceTracker` (averaging, hysteresis, frames on/off, the first frame's
    vote), vectorised over the candidates so that a grid of thousands replays in seconds."""
    n, c = len(p), len(candidates)
    out = np.zeros((n, c), bool)
    if n == 0 or c == 0:
        return out
    col = {k: np.array([r[k] for r in candidates]) for k in ("enter", "exit", "min_frames_on", "min_frames_off")}
    alphas = np.array([float(r.get("p_alpha", 1.0)) for r in candidates])
    first_decides = np.array([bool(r.get("first_frame_decides", False)) for r in candidates])
    votes = np.empty((n, c))
    for a in np.unique(alphas):
        votes[:, alphas == a] = averaged(p, float(a))[:, None]
    nerve = np.zeros(c, bool)
    on_run = np.zeros(c, np.int64)
    off_run = np.zeros(c, np.int64)
    for i in range(n):
        v = votes[i]
        up = v >= col["enter"]
        down = v < col["exit"]
        on_run = np.where(up, on_run + 1, 0)
        off_run = np.where(down, off_run + 1, 0)
        nerve = np.where(nerve, off_run < col["min_frames_off"], on_run >= col["min_frames_on"])
        if i == 0:
            nerve = np.where(first_decides, up, nerve)
        out[i] = nerve
    return out


@dataclass
class Replayed:
    """A grid replayed over videos: ``counts`` (candidates, videos, 3) of false-outline frames, missed frames
    and screen changes; ``show_s`` per video, (truth episodes, candidates) seconds from an episode's first
    frame to the first outline within it (NaN: never shown), as `train.live` measures time to show."""

    counts: np.ndarray
    show_s: list[np.ndarray]


def replay_grid(outputs: list[VideoOutputs], candidates: list[dict[str, Any]]) -> Replayed:
    from train.live import episodes

    counts = np.zeros((len(candidates), len(outputs), 3))
    show_s = []
    for j, o in enumerate(outputs):
        shown = shown_states(o.p, candidates)
        truth = o.truth[:, None]
        counts[:, j, 0] = (shown & ~truth).sum(axis=0)
        counts[:, j, 1] = (~shown & truth).sum(axis=0)
        counts[:, j, 2] = np.count_nonzero(np.diff(shown.astype(np.int8), axis=0), axis=0)
        rows = []
        for a, b in episodes(o.truth):
            seg = shown[a:b]
            first = np.argmax(seg, axis=0).astype(float)
            first[~seg.any(axis=0)] = np.nan
            rows.append(first / o.video.fps)
        show_s.append(np.array(rows).reshape(len(rows), len(candidates)))
    return Replayed(counts, show_s)


def costs(outputs: list[VideoOutputs], candidates: list[dict[str, Any]]) -> np.ndarray:
    """(candidates, videos, 3): false-outline frames, missed frames and screen changes of each candidate on
    each video (weighted into the stated cost by `weighted`)."""
    return replay_grid(outputs, candidates).counts


def median_show_s(r: Replayed, idx: np.ndarray) -> np.ndarray:
    """(candidates,) median time to show over the truth episodes of the videos ``idx`` (episodes never shown
    left out, as in `train.live.pool`; NaN where none was shown)."""
    rows = [r.show_s[int(j)] for j in idx if r.show_s[int(j)].size]
    if not rows:
        return np.full(r.counts.shape[0], np.nan)
    allv = np.concatenate(rows, axis=0)
    out = np.full(allv.shape[1], np.nan)
    seen = ~np.isnan(allv).all(axis=0)
    out[seen] = np.nanmedian(allv[:, seen], axis=0)
    return out


def weighted(c: np.ndarray, idx: np.ndarray, false_outline_cost: float, flip_cost: float = FLIP_COST) -> np.ndarray:
    """The stated cost of each candidate, summed over the videos ``idx``."""
    total = false_outline_cost * c[:, idx, 0].sum(axis=1) + c[:, idx, 1].sum(axis=1)
    if c.shape[2] > 2:
        total = total + flip_cost * c[:, idx, 2].sum(axis=1)
    return total


def step_show_s(candidates: list[dict[str, Any]], p_low: float, p_high: float, fps: float) -> np.ndarray:
    """(candidates,) seconds each candidate's screen takes to show the outline when P steps from ``p_low``
    (held long enough to settle at "no nerve") to ``p_high``: how fast the rules themselves are, whatever the
    videos' episodes happen to be (most of them start at a video's first frame). inf: never shown."""
    settle = 60
    p = np.r_[np.full(settle, p_low), np.full(int(10 * fps) + 1, p_high)]
    shown = shown_states(p, candidates)
    out = np.full(len(candidates), np.inf)
    after = shown[settle:]
    hit = after.any(axis=0) & ~shown[settle - 1]
    out[hit] = np.argmax(after[:, hit], axis=0) / fps
    return out


def fast_enough(outputs: list[VideoOutputs], idx: np.ndarray, candidates: list[dict[str, Any]], r: Replayed,
                max_show_s: float) -> np.ndarray:
    """(candidates,) bool: the median time to show on the videos ``idx`` is at most ``max_show_s``, and so is
    the step from those videos' median P on nerve-free frames to their median P on nerve frames."""
    p = np.concatenate([outputs[int(j)].p for j in idx])
    truth = np.concatenate([outputs[int(j)].truth for j in idx])
    ok = median_show_s(r, idx) <= max_show_s  # NaN (nothing ever shown) is not ok
    if truth.any() and (~truth).any():
        fps = float(np.median([outputs[int(j)].video.fps for j in idx]))
        ok &= step_show_s(candidates, float(np.median(p[~truth])), float(np.median(p[truth])), fps) <= max_show_s
    return ok


def pick(c: np.ndarray, idx: np.ndarray, false_outline_cost: float, flip_cost: float = FLIP_COST,
         ok: np.ndarray | None = None) -> int:
    """The candidate of least stated cost on the videos ``idx`` (the first of equals: the grid's order),
    among the ``ok`` ones (e.g. `fast_enough`); when none is, the least cost of all, with a warning."""
    total = weighted(c, idx, false_outline_cost, flip_cost)
    if ok is not None:
        if ok.any():
            total = np.where(ok, total, np.inf)
        else:
            logger.warning("no candidate is fast enough: the least cost is taken")
    return int(np.argmin(total))


def live_scores(outputs: list[VideoOutputs], rules: dict[str, Any] | dict[int, dict[str, Any]],
                model_hw: tuple[int, int], false_outline_cost: float, flip_cost: float = FLIP_COST) -> dict[str, Any]:
    """`train.live` scores of the screen these rules give on these videos (outlines included), pooled, plus
    ``cost_per_frame``. ``rules``: one rule set, or fold -> rule set (each video played with its fold's)."""
    from train.live import Trace, pool, score_trace

    per_fold = all(isinstance(k, int) for k in rules)
    rows = []
    for o in outputs:
        r = rules[o.fold] if per_fold else rules
        shown, masks = replay(o.p, r, o.masks)
        trace = Trace(o.video.subject, o.video.fps, o.frame_hw, list(o.p), list(shown),
                      [None if m is None else m >= r.get("mask_threshold", 0.5) for m in masks],
                      p_vote=list(averaged(o.p, r.get("p_alpha", 1.0))))
        rows.append(score_trace(trace, o.video, model_hw))
    pooled = pool(rows, outputs[0].video.fps)
    pooled["cost_per_frame"] = (false_outline_cost * sum(r["false_outline_frames"] for r in rows)
                                + sum(r["missed_frames"] for r in rows)
                                + flip_cost * sum(r["flips"] for r in rows)) / sum(r["frames"] for r in rows)
    return pooled


def _brief(s: dict[str, Any]) -> dict[str, Any]:
    return {"cost_per_frame": round(s["cost_per_frame"], 4), "state_accuracy": round(s["state_accuracy"], 4),
            "flips_per_min": round(s["flips_per_min"], 2), "truth_flips_per_min": round(s["truth_flips_per_min"], 2),
            "time_to_show_median_s": s["time_to_show_s"]["median"], "time_to_show_p90_s": s["time_to_show_s"]["p90"],
            "episodes_never_shown": s["time_to_show_s"]["never_shown"], "episodes": s["time_to_show_s"]["n"]
            + s["time_to_show_s"]["never_shown"],
            "time_to_clear_median_s": s["time_to_clear_s"]["median"], "outline_on_box": s["outline_on_box"],
            "jitter_centroid_px_median": s["jitter"]["centroid_px_median"],
            "consecutive_dice_median": s["jitter"]["consecutive_dice_median"]}


def tune(outputs: list[VideoOutputs], before: dict[str, Any], model_hw: tuple[int, int],
         false_outline_cost: float = 2.0, tune_enter: bool = False, flip_cost: float = FLIP_COST,
         p_smoothing: tuple[float, ...] = P_SMOOTHING, max_show_s: float | None = MAX_SHOW_S) -> dict[str, Any]:
    """Cross-validated choice of the rules (see the module doc). ``tune_enter`` False keeps the spec's
    ``presence_enter``: it is the frame-level operating point chosen for every training source at once,
    and these videos are one source; the rest (averaging, exit, frames on/off, smoothing) is tuned here."""
    enters = tuple(sorted(set(ENTER) | {float(before["enter"])})) if tune_enter else (float(before["enter"]),)
    cands = grid(enters, p_smoothing)
    replayed = replay_grid(outputs, cands)
    c = replayed.counts

    def best(idx: np.ndarray) -> int:
        ok = None if max_show_s is None else fast_enough(outputs, idx, cands, replayed, max_show_s)
        return pick(c, idx, false_outline_cost, flip_cost, ok)
    folds = sorted({o.fold for o in outputs})
    per_fold = []
    keep = {"alpha": before["alpha"], "mask_threshold": before["mask_threshold"]}
    for k in folds:
        train_idx = np.array([j for j, o in enumerate(outputs) if o.fold != k], dtype=int)
        if train_idx.size == 0:  # one fold only: nothing to tune on without its own videos
            logger.warning("fold %d is the only fold with videos: no out-of-fold choice for it", k)
            continue
        held = [o for o in outputs if o.fold == k]
        chosen = cands[best(train_idx)] | keep
        per_fold.append({
            "fold": k, "held_out_videos": [o.video.subject for o in held], "chosen_on_other_folds": chosen,
            "before": _brief(live_scores(held, before, model_hw, false_outline_cost, flip_cost)),
            "after": _brief(live_scores(held, chosen, model_hw, false_outline_cost, flip_cost)),
        })
    all_idx = np.arange(len(outputs), dtype=int)
    total = weighted(c, all_idx, false_outline_cost, flip_cost)
    order = np.argsort(total, kind="stable")
    final = cands[best(all_idx)] | {"mask_threshold": before["mask_threshold"]}
    # mask smoothing: by outline stability, not lowering the outline-on-box rate
    smooth = []
    for a in SMOOTHING:
        s = live_scores(outputs, final | {"alpha": a}, model_hw, false_outline_cost, flip_cost)
        smooth.append({"alpha": a, "consecutive_dice_median": s["jitter"]["consecutive_dice_median"],
                       "jitter_centroid_px_median": s["jitter"]["centroid_px_median"],
                       "outline_on_box": s["outline_on_box"], "time_to_show_median_s": s["time_to_show_s"]["median"]})
    base = next((r for r in smooth if r["alpha"] == before["alpha"]), smooth[0])
    ok = [r for r in smooth if (r["outline_on_box"] or 0) >= (base["outline_on_box"] or 0) - 0.005]
    best = max(ok, key=lambda r: r["consecutive_dice_median"] or 0)
    final["alpha"] = best["alpha"]
    chosen_of = {f["fold"]: f["chosen_on_other_folds"] for f in per_fold}
    frames = sum(len(o.p) for o in outputs)
    show_all = median_show_s(replayed, all_idx)
    return {
        "false_outline_cost": false_outline_cost,
        "flip_cost": flip_cost,
        "max_show_s": max_show_s,
        "grid": {"enter": enters, "gap": GAP, "frames_on": FRAMES_ON,
                 "frames_off": FRAMES_OFF, "p_smoothing": p_smoothing, "first_frame_decides": FIRST_FRAME,
                 "smoothing": SMOOTHING},
        "videos": len(outputs),
        "before_rules": before,
        "per_fold": per_fold,
        # every video played with the rules chosen without its fold (the spec's for a fold that had none)
        "out_of_fold_after_all": _brief(live_scores(
            outputs, {o.fold: chosen_of.get(o.fold, before) for o in outputs}, model_hw, false_outline_cost,
            flip_cost)),
        "out_of_fold_before_all": _brief(live_scores(outputs, before, model_hw, false_outline_cost, flip_cost)),
        # the ten best rule sets on all videos: how flat the optimum is (cost per frame, in-sample)
        "best_on_all": [cands[int(i)] | {"cost_per_frame": round(float(total[i]) / frames, 4),
                                         "time_to_show_median_s": float(show_all[i])} for i in order[:10]],
        "smoothing": smooth,
        "chosen": final,
    }


def write_rules(model: Path, rules: dict[str, Any], note: dict[str, Any]) -> None:
    """Put the chosen rules into the spec beside a trained ``model`` (keras or tflite sidecar); a converted
    model's card then gets its thresholds and provenance sections redrawn (the rest of it is kept)."""
    from edge.spec import load_spec, save_spec

    spec = load_spec(model, verify_hash=False)
    th = spec.thresholds.model_copy(update={
        "presence_enter": rules["enter"], "presence_exit": rules["exit"], "min_frames_on": rules["min_frames_on"],
        "min_frames_off": rules["min_frames_off"], "mask_smoothing": rules["alpha"],
        "presence_smoothing": rules.get("p_alpha", 1.0),
        "first_frame_decides": rules.get("first_frame_decides", False)})
    th = type(th).model_validate(th.model_dump())
    prov = dict(spec.provenance) | {"live_tuning": note}
    save_spec(spec.model_copy(update={"thresholds": th, "provenance": prov}), model)
    if Path(model).suffix == ".tflite":
        from convert.card import refresh_model_card

        refresh_model_card(model)


def save_outputs(outputs: list[VideoOutputs], path: Path) -> None:
    """Keep the out-of-fold per-frame outputs (P, masks, truth, fold) of every video in one ``.npz``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, subjects=np.array([o.video.subject for o in outputs]), folds=np.array([o.fold for o in outputs]),
             frame_hw=np.array([o.frame_hw for o in outputs]), lengths=np.array([len(o.p) for o in outputs]),
             p=np.concatenate([o.p for o in outputs]), masks=np.concatenate([o.masks for o in outputs]),
             truth=np.concatenate([o.truth for o in outputs]))
    tmp.replace(path)


def load_outputs(path: Path, folder: Path) -> list[VideoOutputs]:
    """The outputs `save_outputs` kept, joined again to the videos of ``folder`` (their boxes score the outlines).
    Raises ValueError when a kept video is not in ``folder`` or its truth no longer matches its boxes."""
    from train.boxes import read_box_videos

    videos = {v.subject: v for v in read_box_videos(folder)}
    with np.load(path) as z:
        ends = np.cumsum(z["lengths"])
        out = []
        for j, subject in enumerate(z["subjects"].tolist()):
            v = videos.get(str(subject))
            if v is None:
                raise ValueError(f"{path}: video {subject} is not in {folder}")
            sl = slice(int(ends[j] - z["lengths"][j]), int(ends[j]))
            truth = z["truth"][sl].astype(bool)
            if [bool(v.boxes_at(i)) for i in range(len(truth))] != truth.tolist():
                raise ValueError(f"{path}: the kept truth of video {subject} differs from {folder}'s boxes")
            out.append(VideoOutputs(v, int(z["folds"][j]), tuple(int(x) for x in z["frame_hw"][j]),
                                    z["p"][sl].astype(np.float64), z["masks"][sl], truth))
    return out


def main(argv: list[str] | None = None) -> int:
    from edge.config import PresenceConfig
    from edge.plan import settle_rules
    from edge.spec import load_spec

    ap = argparse.ArgumentParser(prog="python -m train.tune_live", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cv", required=True, help="the cross-validation run folder (fold-K/model.keras)")
    ap.add_argument("--data", default="../shared/data/regional-us", help="box-labelled video folder")
    ap.add_argument("--cache", help="keep the out-of-fold outputs in this .npz (read it when it exists)")
    ap.add_argument("--false-outline-cost", type=float, default=2.0, help="frames a false outline frame costs")
    ap.add_argument("--flip-cost", type=float, default=FLIP_COST, help="frames one change of the screen costs")
    ap.add_argument("--max-show-s", type=float, default=MAX_SHOW_S, help="rules whose median time to show the "
                    "outline on the tuning videos is longer are not chosen (seconds)")
    ap.add_argument("--tune-enter", action="store_true", help="also tune presence_enter (default: keep the spec's, "
                    "the frame-level operating point shared by every source)")
    ap.add_argument("--json", help="write the tuning report here")
    ap.add_argument("--write-spec", nargs="+", metavar="MODEL", help="put the chosen rules into these trained "
                    "models' specs (e.g. the shipped int8 file and its float32 twin)")
    ap.add_argument("--before-from", help="model whose spec's rules are 'before' (default: the first --write-spec, "
                    "else fold-0's)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cv_dir = Path(args.cv)
    ref = Path(args.before_from or (args.write_spec or [None])[0] or cv_dir / "fold-0" / "model.keras")
    spec = load_spec(ref, verify_hash=False)
    before = settle_rules(PresenceConfig(), spec.thresholds).as_dict()
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.is_file():
        outputs = load_outputs(cache, Path(args.data))
        logger.info("out-of-fold outputs of %d videos read from %s", len(outputs), cache)
    else:
        outputs = oof_outputs(cv_dir, Path(args.data))
        if cache is not None:
            save_outputs(outputs, cache)
    rep = tune(outputs, before, (spec.preprocess.height, spec.preprocess.width), args.false_outline_cost,
               args.tune_enter, args.flip_cost, max_show_s=args.max_show_s)
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=2, default=float))
    print(json.dumps({k: rep[k] for k in ("chosen", "out_of_fold_before_all", "out_of_fold_after_all")}, indent=2,
                     default=float))
    for model in args.write_spec or []:
        write_rules(Path(model), rep["chosen"], {
            "false_outline_cost": rep["false_outline_cost"], "flip_cost": rep["flip_cost"],
            "max_show_s": rep["max_show_s"], "videos": rep["videos"], "command": " ".join(
                ["python -m train.tune_live", *(argv if argv is not None else sys.argv[1:])]),
            "out_of_fold_before": rep["out_of_fold_before_all"], "out_of_fold_after": rep["out_of_fold_after_all"]})
        print(f"rules written to the spec of {model}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
