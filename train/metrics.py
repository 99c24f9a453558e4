"""Segmentation and presence metrics, numpy only (importable on the device: no TensorFlow here).

Conventions, shared by training, cross-validation and ``nerveseg eval``:

* Masks are boolean arrays of one frame, ``(H, W)``, compared at the same size
  (``nerveseg eval`` compares at the model's input size, see `train.evaluate`).
* Dice of one frame is ``2 |P & T| / (|P| + |T|)``; an empty prediction on an empty
  truth scores **1.0** (the Kaggle 2016 convention: saying "no nerve" on a frame
  without one is a perfect answer), an empty prediction on a non-empty truth (or the
  reverse) scores 0.0.
* `kaggle_score` is the mean of per-frame Dice over all frames, empty ones included;
  `mean_dice_positive` is the mean over the frames whose truth is non-empty only
  (how well the outline fits when there is a nerve to outline).
* Presence is judged from P(nerve) alone: "present" means ``p >= threshold``.
* Statistics that are undefined on the data given (specificity without negative frames,
  AUC with one class, ...) are ``None``, never NaN, so reports serialise to JSON.
* Confidence intervals resample **subjects**, not frames: the frames of one scan are
  near-duplicates, and a frame bootstrap would report intervals far too narrow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def _as_bool(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != bool:
        raise ValueError(f"{what} must be a bool array, got dtype {a.dtype}")
    return a


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient of two bool masks of the same shape, in [0, 1].

    Both empty -> 1.0 (Kaggle convention); exactly one empty -> 0.0.
    Raises ValueError for non-bool input or different shapes.
    """
    p, t = _as_bool(pred, "pred"), _as_bool(truth, "truth")
    if p.shape != t.shape:
        raise ValueError(f"pred and truth must have the same shape, got {p.shape} and {t.shape}")
    total = int(np.count_nonzero(p)) + int(np.count_nonzero(t))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(p & t)) / total


def dice_per_image(preds: Sequence[np.ndarray] | np.ndarray, truths: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """float64 ``(N,)`` Dice of each frame; ``preds``/``truths``: N bool masks (a list or an ``(N, H, W)`` array)."""
    if len(preds) != len(truths):
        raise ValueError(f"got {len(preds)} predictions for {len(truths)} truths")
    return np.array([dice(p, t) for p, t in zip(preds, truths, strict=True)], dtype=np.float64)


def kaggle_score(preds: Sequence[np.ndarray] | np.ndarray, truths: Sequence[np.ndarray] | np.ndarray) -> float:
    """Mean per-frame Dice over all frames (empty-on-empty = 1), as scored by the Kaggle 2016 challenge.

    Raises ValueError when there are no frames.
    """
    d = dice_per_image(preds, truths)
    if d.size == 0:
        raise ValueError("kaggle_score of no frames is undefined")
    return float(d.mean())


def mean_dice_positive(
    preds: Sequence[np.ndarray] | np.ndarray, truths: Sequence[np.ndarray] | np.ndarray
) -> float | None:
    """Mean Dice over the frames whose truth mask is non-empty; None when there is no such frame."""
    keep = [i for i, t in enumerate(truths) if np.any(t)]
    if not keep:
        return None
    return float(dice_per_image([preds[i] for i in keep], [truths[i] for i in keep]).mean())


def auc_mann_whitney(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve as the Mann-Whitney U statistic: P(score of a positive > score of a negative).

    Ties count one half (average ranks). scores: float ``(N,)``; labels: bool ``(N,)``.
    None when only one class is present.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = _as_bool(labels, "labels").ravel()
    n_pos = int(np.count_nonzero(y))
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    # average rank (1-based) of each value, ties sharing the mean of their ranks
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # rank of the last member of each tie group
    avg_rank = last - (counts - 1) / 2.0
    ranks = avg_rank[inverse]
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def presence_metrics(p: np.ndarray, truth_present: np.ndarray, threshold: float = 0.5) -> dict:
    """How well P(nerve) says whether a nerve is in view.

    p: float ``(N,)`` P(nerve) per frame; truth_present: bool ``(N,)``; a frame is called
    "present" when ``p >= threshold``.

    Returns a dict: ``sensitivity`` (TP / positives; None without positive frames),
    ``specificity`` (TN / negatives; None without negative frames), ``accuracy``,
    ``auc`` (threshold-free, `auc_mann_whitney`; None with one class), and the counts
    ``tp``, ``fn``, ``tn``, ``fp``, ``n_positive``, ``n_negative``.
    Raises ValueError on empty or mismatched input.
    """
    p = np.asarray(p, dtype=np.float64).ravel()
    t = _as_bool(truth_present, "truth_present").ravel()
    if p.shape != t.shape:
        raise ValueError(f"p and truth_present must have the same length, got {p.size} and {t.size}")
    if p.size == 0:
        raise ValueError("presence metrics of no frames are undefined")
    called = p >= threshold
    tp = int(np.count_nonzero(called & t))
    fn = int(np.count_nonzero(~called & t))
    tn = int(np.count_nonzero(~called & ~t))
    fp = int(np.count_nonzero(called & ~t))
    return {
        "sensitivity": tp / (tp + fn) if tp + fn else None,
        "specificity": tn / (tn + fp) if tn + fp else None,
        "accuracy": (tp + tn) / p.size,
        "auc": auc_mann_whitney(p, t),
        "tp": tp,
        "fn": fn,
        "tn": tn,
        "fp": fp,
        "n_positive": tp + fn,
        "n_negative": tn + fp,
    }


def bootstrap_ci(
    values: np.ndarray,
    groups: Sequence,
    stat: Callable[[np.ndarray], float] = np.mean,
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat(values)`` that resamples whole groups (subjects).

    values: float ``(N,)`` one value per frame. groups: ``(N,)`` group id (subject) of each
    frame. Each of the ``n`` replicates draws as many groups as there are, with replacement,
    and applies ``stat`` to all frames of the drawn groups together (a subject drawn twice
    counts twice). Returns ``(lo, hi)``: the ``alpha/2`` and ``1 - alpha/2`` quantiles of the
    replicates. Deterministic for a given ``seed``.

    Resampling frames instead would treat near-duplicate frames of one scan as independent
    and give intervals far too narrow. With one group the interval is degenerate (lo = hi).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    g = np.asarray(groups, dtype=object).ravel()
    if v.size == 0:
        raise ValueError("bootstrap of no values is undefined")
    if g.size != v.size:
        raise ValueError(f"values and groups must have the same length, got {v.size} and {g.size}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n < 1:
        raise ValueError(f"n must be a positive number of replicates, got {n}")
    _, gid = np.unique(g.astype(str), return_inverse=True)
    members = [np.flatnonzero(gid == k) for k in range(int(gid.max()) + 1)]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(members), size=(n, len(members)))
    reps = np.empty(n, dtype=np.float64)
    for i, row in enumerate(draws):
        reps[i] = stat(v[np.concatenate([members[k] for k in row])])
    lo, hi = np.quantile(reps, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def box_localisation(masks: np.ndarray | Sequence[np.ndarray], boxes: np.ndarray | Sequence[np.ndarray]) -> dict:
    """Does a predicted mask fall on the boxed structure? Per frame, at one common size.

    masks: N bool predicted masks; boxes: N bool box-union masks (pixel inside an expert box).
    Returns ``centroid_in`` bool (N,): the mask is non-empty and the pixel nearest its centroid is
    inside a box (an empty mask counts as a miss); ``share_in`` float (N,): the share of the mask's
    pixels inside boxes (NaN for an empty mask).
    """
    n = len(masks)
    if len(boxes) != n:
        raise ValueError(f"got {n} masks and {len(boxes)} box masks")
    centroid_in = np.zeros(n, bool)
    share_in = np.full(n, np.nan)
    for i, (m, b) in enumerate(zip(masks, boxes, strict=True)):
        m, b = _as_bool(m, "mask"), _as_bool(b, "boxes")
        if m.shape != b.shape:
            raise ValueError(f"frame {i}: mask {m.shape} and boxes {b.shape} differ in size")
        ys, xs = np.nonzero(m)
        if ys.size == 0:
            continue
        cy, cx = int(np.floor(ys.mean() + 0.5)), int(np.floor(xs.mean() + 0.5))
        centroid_in[i] = bool(b[min(cy, b.shape[0] - 1), min(cx, b.shape[1] - 1)])
        share_in[i] = float(b[ys, xs].mean())
    return {"centroid_in": centroid_in, "share_in": share_in}


def rectangularity(masks: np.ndarray) -> float | None:
    """Mean over non-empty masks of (mask area / area of its bounding rectangle): about 0.6-0.8 for the
    round-ish outline of a nerve, 1.0 for a painted rectangle (what box-union targets teach)."""
    vals = []
    for m in masks:
        ys, xs = np.nonzero(m)
        if ys.size:
            vals.append(ys.size / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)))
    return float(np.mean(vals)) if vals else None
