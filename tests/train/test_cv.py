"""Cross-validation summary logic on hand-made numbers."""

from __future__ import annotations

import numpy as np
import pytest

from train.cv import choose_presence_threshold


def test_threshold_is_the_highest_that_keeps_sensitivity():
    # 10 positives, 4 negatives. Requiring 90% sensitivity allows missing one positive (p=0.30),
    # so the threshold becomes the next positive score, 0.55, which rejects the negatives below it.
    pos = [0.30, 0.55, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99]
    neg = [0.2, 0.5, 0.6, 0.9]
    p = np.array(pos + neg)
    present = np.array([True] * 10 + [False] * 4)
    r = choose_presence_threshold(p, present, min_sensitivity=0.9)
    c = r["chosen"]
    assert c["threshold"] == pytest.approx(0.55)
    assert c["sensitivity"] == pytest.approx(0.9)
    assert c["false_positives"] == 2 and c["specificity"] == pytest.approx(0.5)
    assert r["at_0.5"]["false_positives"] == 3
    assert 0.5 < r["auc"] < 1.0


def test_full_sensitivity_takes_the_lowest_positive():
    p = np.array([0.3, 0.8, 0.1, 0.35])
    present = np.array([True, True, False, False])
    c = choose_presence_threshold(p, present, min_sensitivity=1.0)["chosen"]
    assert c["threshold"] == pytest.approx(0.3) and c["sensitivity"] == 1.0 and c["false_positives"] == 1


def test_no_negatives():
    r = choose_presence_threshold(np.array([0.6, 0.7]), np.array([True, True]))
    assert r["chosen"]["specificity"] is None and r["auc"] is None


def test_final_model_thresholds_come_from_cv():
    from train.train import thresholds_from_cv

    t = thresholds_from_cv({"presence_operating_point": {"chosen": {"threshold": 0.83}}})
    assert t.presence_enter == pytest.approx(0.83) and t.presence_exit == pytest.approx(0.73)
    low = thresholds_from_cv({"presence_operating_point": {"chosen": {"threshold": 0.05}}})
    assert 0 < low.presence_exit < low.presence_enter
    assert thresholds_from_cv(None).presence_enter == 0.6


def test_presence_scores_are_compared_pooled_and_within_subject():
    from train.cv import compare_presence_scores

    # Subject "a": the head separates perfectly, the mask maximum is reversed. Subject "b": positives only,
    # so it has no within-subject AUC. Hand-computed: head within "a" = 1.0, mask_max within "a" = 0.0.
    pp = {
        "p": np.array([0.9, 0.8, 0.2, 0.1, 0.7]),
        "mask_max": np.array([0.1, 0.2, 0.8, 0.9, 0.6]),
        "present": np.array([True, True, False, False, True]),
        "subject": np.array(["a", "a", "a", "a", "b"]),
    }
    r = compare_presence_scores(pp, min_sensitivity=1.0)
    assert set(r) == {"head", "mask_max", "geo_mean"}
    assert r["head"]["auc_within_subject"] == {"a": 1.0}
    assert r["mask_max"]["auc_within_subject"] == {"a": 0.0}
    # pooled head: every positive (0.9, 0.8, 0.7) above every negative (0.2, 0.1)
    assert r["head"]["auc_pooled"] == 1.0 and r["head"]["specificity"] == 1.0
    assert r["head"]["threshold"] == pytest.approx(0.7)
    # geometric mean: positives 0.3, 0.4, 0.648; negatives 0.4, 0.3 -> ties count one half
    assert r["geo_mean"]["auc_pooled"] == pytest.approx((0.5 + 0 + 1 + 0.5 + 1 + 1) / 6)
