"""The model card's known limits are worded from the model's own numbers, not fixed text."""

from __future__ import annotations

from convert.publish import limits


def test_limits_quote_the_operating_point_and_cross_machine_dice():
    cv = {"presence_operating_point": {"chosen": {"sensitivity": 0.951, "specificity": 0.27, "n_negative": 37,
                                                  "false_positives": 27}}}
    evaluation = [
        {"set": "kaggle-bp (600 frames of trained-on subjects; sanity only)", "mean_dice_positive": 0.8},
        {"set": "usgra-seg test split (Mindray TE7; never trained on)", "mean_dice_positive": 0.004},
    ]
    text = " ".join(limits(cv, evaluation))
    assert "sensitivity 0.95" in text and "27% of real empty frames" in text and "(10 of 37)" in text
    assert "missed by 63 points" in text
    assert "0.004 on usgra-seg test split" in text and "kaggle-bp" not in text.split("Does not transfer")[1]


def test_limits_without_negatives_or_other_machines_say_only_what_applies():
    text = " ".join(limits({}, []))
    assert "Presence" not in text and "transfer" not in text and "JPEG" in text


def test_latency_is_measured_on_the_named_machine():
    from pathlib import Path

    from convert.publish import latency
    from edge.bench import machine_info
    from edge.models import default_model_path

    t = latency(Path(default_model_path()), calls=10, warmup=2)
    assert str(machine_info()["cpu_model"]) in t["machine"]
    for key in ("1_thread_ms", "2_thread_ms"):
        assert 0 < t[key]["p50"] <= t[key]["p95"] < 1000


def test_limits_of_a_multi_source_model_name_each_missed_target():
    by_source = {"threshold": 0.7, "folds": [0, 1, 2],
                 "kaggle": {"sensitivity": 0.95, "specificity": 0.40},
                 "regional_us": {"sensitivity": 0.88, "specificity": 0.90}}
    evaluation = [{"set": "usgra-seg test split (Mindray TE7; never trained on)", "mean_dice_positive": 0.21}]
    text = " ".join(limits({}, evaluation, by_source))
    assert "unseen kaggle subjects: specificity 0.40" in text and "about 60% of nerve-free frames" in text
    assert "unseen regional_us subjects: sensitivity 0.88" in text
    assert "regional_us subjects: specificity" not in text and "kaggle subjects: sensitivity" not in text
    assert "0.210 on usgra-seg test split" in text and "--init" in text
