"""train.metrics against values worked out by hand on tiny arrays."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from train.metrics import (
    auc_mann_whitney,
    bootstrap_ci,
    dice,
    dice_per_image,
    kaggle_score,
    mean_dice_positive,
    presence_metrics,
)


def _square(y: int, x: int, size: int = 4, shape: tuple[int, int] = (8, 8)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y : y + size, x : x + size] = True
    return m


EMPTY = np.zeros((8, 8), bool)


def test_dice_of_two_overlapping_squares():
    # two 4x4 squares offset by (2, 2): overlap 2x2 = 4 px; Dice = 2*4 / (16 + 16) = 0.25
    assert dice(_square(0, 0), _square(2, 2)) == pytest.approx(0.25)
    assert dice(_square(2, 2), _square(0, 0)) == pytest.approx(0.25)
    # a 2x2 inside a 4x4: 2*4 / (4 + 16) = 0.4
    assert dice(_square(1, 1, size=2), _square(0, 0)) == pytest.approx(0.4)
    assert dice(_square(0, 0), _square(0, 0)) == 1.0
    assert dice(_square(0, 0), _square(4, 4)) == 0.0


def test_dice_empty_conventions():
    assert dice(EMPTY, EMPTY) == 1.0  # "no nerve" said on a frame without one: perfect (Kaggle)
    assert dice(EMPTY, _square(0, 0)) == 0.0  # missed nerve
    assert dice(_square(0, 0), EMPTY) == 0.0  # outline on a frame without a nerve


def test_dice_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        dice(np.zeros((8, 8), bool), np.zeros((8, 9), bool))
    with pytest.raises(ValueError, match="bool"):
        dice(np.zeros((8, 8), np.float32), EMPTY)


def test_kaggle_score_and_mean_dice_positive():
    preds = [_square(0, 0), EMPTY, _square(0, 0), EMPTY, _square(0, 0)]
    truths = [_square(0, 0), EMPTY, _square(2, 2), _square(0, 0), EMPTY]
    # per frame: 1 (hit), 1 (empty on empty), 0.25 (overlap), 0 (missed), 0 (false positive)
    np.testing.assert_allclose(dice_per_image(preds, truths), [1.0, 1.0, 0.25, 0.0, 0.0])
    assert kaggle_score(preds, truths) == pytest.approx(2.25 / 5)
    # frames with a nerve: 0, 2, 3 -> (1 + 0.25 + 0) / 3
    assert mean_dice_positive(preds, truths) == pytest.approx(1.25 / 3)
    # the same as stacked (N, H, W) arrays
    assert kaggle_score(np.stack(preds), np.stack(truths)) == pytest.approx(2.25 / 5)


def test_mean_dice_positive_none_without_positives_and_kaggle_of_nothing():
    assert mean_dice_positive([_square(0, 0), EMPTY], [EMPTY, EMPTY]) is None
    with pytest.raises(ValueError):
        kaggle_score([], [])
    with pytest.raises(ValueError, match="2 predictions for 1"):
        kaggle_score([EMPTY, EMPTY], [EMPTY])


def test_presence_metrics_hand_counts():
    p = np.array([0.9, 0.6, 0.3, 0.2, 0.7])
    t = np.array([True, True, True, False, False])
    m = presence_metrics(p, t, threshold=0.5)
    # called present: 0.9, 0.6, 0.7 -> TP 2, FN 1 (0.3), TN 1 (0.2), FP 1 (0.7)
    assert (m["tp"], m["fn"], m["tn"], m["fp"]) == (2, 1, 1, 1)
    assert (m["n_positive"], m["n_negative"]) == (3, 2)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(1 / 2)
    assert m["accuracy"] == pytest.approx(3 / 5)
    # pos {0.9, 0.6, 0.3} vs neg {0.2, 0.7}: 0.9>0.2, 0.9>0.7, 0.6>0.2, 0.3>0.2 win; 0.6<0.7, 0.3<0.7 lose -> 4/6
    assert m["auc"] == pytest.approx(4 / 6)


def test_presence_threshold_is_inclusive():
    m = presence_metrics(np.array([0.5, 0.5]), np.array([True, False]), threshold=0.5)
    assert m["sensitivity"] == 1.0 and m["specificity"] == 0.0


def test_auc_with_ties_counts_half():
    # pos {0.4, 0.8} vs neg {0.1, 0.4}: 0.4>0.1 = 1, 0.4=0.4 = 0.5, 0.8>0.1 = 1, 0.8>0.4 = 1 -> 3.5/4
    assert auc_mann_whitney(np.array([0.1, 0.4, 0.4, 0.8]), np.array([False, False, True, True])) == 0.875
    # everything tied: chance
    assert auc_mann_whitney(np.full(4, 0.3), np.array([True, False, True, False])) == 0.5
    # perfectly separated, either way round
    assert auc_mann_whitney(np.array([0.1, 0.2, 0.8, 0.9]), np.array([False, False, True, True])) == 1.0
    assert auc_mann_whitney(np.array([0.9, 0.8, 0.2, 0.1]), np.array([False, False, True, True])) == 0.0


def test_undefined_presence_metrics_are_none():
    only_pos = presence_metrics(np.array([0.9, 0.2]), np.array([True, True]))
    assert only_pos["specificity"] is None and only_pos["auc"] is None
    assert only_pos["sensitivity"] == 0.5
    only_neg = presence_metrics(np.array([0.9, 0.2]), np.array([False, False]))
    assert only_neg["sensitivity"] is None and only_neg["auc"] is None
    assert only_neg["specificity"] == 0.5
    with pytest.raises(ValueError):
        presence_metrics(np.array([]), np.array([], bool))


def test_bootstrap_resamples_subjects_not_frames():
    # subject A: 100 near-duplicate frames scoring 1; subject B: one frame scoring 0.
    values = np.r_[np.ones(100), 0.0]
    subjects = ["A"] * 100 + ["B"]
    # replicates: AA (1/4) -> 1, BB (1/4) -> 0, AB/BA (1/2) -> 100/101; the 2.5/97.5 % quantiles are 0 and 1
    assert bootstrap_ci(values, subjects) == (0.0, 1.0)
    # treating every frame as independent would claim ~0.97-1: far too sure
    lo, hi = bootstrap_ci(values, [f"f{i}" for i in range(101)])
    assert lo > 0.9 and hi == 1.0


def test_bootstrap_contains_the_mean_and_shrinks_with_more_subjects():
    rng = np.random.default_rng(3)

    def data(n_subjects: int) -> tuple[np.ndarray, list[str]]:
        means = rng.uniform(0.3, 0.9, n_subjects)  # subjects differ a lot
        values, groups = [], []
        for s, m in enumerate(means):
            k = int(rng.integers(5, 15))
            values += list(np.clip(m + rng.normal(0, 0.02, k), 0, 1))  # frames of one subject: near-duplicates
            groups += [str(s)] * k
        return np.array(values), groups

    widths = []
    for n in (5, 80):
        v, g = data(n)
        lo, hi = bootstrap_ci(v, g, n=500)
        assert lo <= v.mean() <= hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2  # ~sqrt(16) = 4x narrower in theory


def test_bootstrap_deterministic_custom_stat_and_degenerate_cases():
    v = np.array([0.1, 0.2, 0.9, 0.8, 0.5])
    g = ["a", "a", "b", "b", "c"]
    assert bootstrap_ci(v, g, seed=7) == bootstrap_ci(v, g, seed=7)
    lo, hi = bootstrap_ci(v, g, stat=np.median, n=200)
    assert 0.1 <= lo <= hi <= 0.9
    assert bootstrap_ci(np.full(6, 0.4), list("aabbcc")) == pytest.approx((0.4, 0.4))
    assert bootstrap_ci(v, ["one"] * 5) == pytest.approx((v.mean(), v.mean()))  # a single subject
    with pytest.raises(ValueError, match="same length"):
        bootstrap_ci(v, g[:3])
    with pytest.raises(ValueError):
        bootstrap_ci(np.array([]), [])


def test_metrics_import_without_tensorflow():
    code = "import sys, train.metrics; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
