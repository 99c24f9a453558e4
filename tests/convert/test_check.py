"""convert.check: the int8/float32-vs-Keras agreement check, on real models and real held-out frames.

The bounds themselves (`convert.check.INT8`, `FLOAT32`) were measured; see the comment above them.
Here: the fixture's good conversions pass, a different model's file fails on every output, and
`failures` names metric, value and bound.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from convert.check import FLOAT32, INT8, Tolerances, check_agreement, failures, format_report, tolerances_for
from edge.models import default_model_path
from tests import model_fixtures

kaggle_sets = model_fixtures.kaggle_sets
trained_unet = model_fixtures.trained_unet
tflite_models = model_fixtures.tflite_models

GOOD = {  # a report that meets every INT8 bound (values of a real int8 conversion)
    "frames": 144,
    "mask_dice_pooled": 0.964,
    "mask_dice_frame_mean": 0.963,
    "mask_mae": 0.0034,
    "presence_agreement": 0.993,
    "p_abs_diff_mean": 0.0107,
    "p_abs_diff_max": 0.089,
    "p_corr": 0.998,
    "p_std_ratio": 1.033,
}


@pytest.fixture(scope="session")
def held_out(kaggle_sets) -> list[np.ndarray]:
    """31 preprocessed (H, W) frames never used for training or calibration: subjects 41-47 + Kaggle test frames."""
    x = np.concatenate([kaggle_sets["eval"].x, kaggle_sets["unlabeled"].x])
    return [f[..., 0] for f in x]


# --- failures(): bounds and messages --------------------------------------------------------------------------


def test_good_report_passes():
    assert failures(GOOD, INT8) == []


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("frames", 12, "frames 12 < 20 (too few held-out frames"),
        ("mask_dice_pooled", 0.5, "mask_dice_pooled 0.5 < 0.92"),
        ("mask_dice_frame_mean", 0.91, "mask_dice_frame_mean 0.91 < 0.92"),
        ("mask_mae", 0.02, "mask_mae 0.02 > 0.01"),
        ("presence_agreement", 0.9, "presence_agreement 0.9 < 0.95"),
        ("p_abs_diff_mean", 0.05, "p_abs_diff_mean 0.05 > 0.04"),
        ("p_abs_diff_max", 0.3, "p_abs_diff_max 0.3 > 0.15"),
        ("p_corr", 0.5, "p_corr 0.5 < 0.98"),
        ("p_std_ratio", 0.01, "p_std_ratio 0.01 < 0.8 (P(nerve) lost its spread: presence output collapsed?)"),
        ("p_std_ratio", 2.0, "p_std_ratio 2 > 1.25"),
        ("p_corr", math.nan, "p_corr nan < 0.98"),
    ],
)
def test_each_bound_names_metric_value_and_bound(key, value, fragment):
    bad = failures({**GOOD, key: value}, INT8)
    assert len(bad) == 1, bad
    assert bad[0].startswith(fragment), bad[0]


def test_bounds_are_inclusive_and_none_is_not_judged():
    at_bounds = {
        "frames": INT8.min_frames,
        "mask_dice_pooled": INT8.mask_dice_pooled_min,
        "mask_dice_frame_mean": None,  # no frame with a mask of >= 1%: not measurable, not judged
        "mask_mae": INT8.mask_mae_max,
        "presence_agreement": INT8.presence_agreement_min,
        "p_abs_diff_mean": INT8.p_abs_diff_mean_max,
        "p_abs_diff_max": INT8.p_abs_diff_max_max,
        "p_corr": None,  # float model's P(nerve) constant over the frames
        "p_std_ratio": None,
    }
    assert failures(at_bounds, INT8) == []
    assert "not judged" in format_report(at_bounds, INT8)


def test_missing_metric_fails():
    report = {k: v for k, v in GOOD.items() if k != "presence_agreement"}
    assert failures(report, INT8) == ["presence_agreement missing from the report (bound >= 0.95)"]


def test_float32_bounds_are_tighter():
    assert tolerances_for("float32") is FLOAT32 and tolerances_for("int8") is INT8
    for f in ("mask_dice_pooled_min", "mask_dice_frame_mean_min", "presence_agreement_min", "p_corr_min"):
        assert getattr(FLOAT32, f) > getattr(INT8, f)
    for f in ("mask_mae_max", "p_abs_diff_mean_max", "p_abs_diff_max_max"):
        assert getattr(FLOAT32, f) < getattr(INT8, f)
    assert len(failures(GOOD, FLOAT32)) >= 7  # a good int8 report is far outside float32 rounding
    with pytest.raises(ValueError, match="int8 or float32"):
        tolerances_for("int4")
    assert Tolerances(mask_mae_max=0.5).as_dict()["mask_mae_max"] == 0.5


# --- check_agreement(): real models ----------------------------------------------------------------------------


def test_int8_conversion_agrees(trained_unet, tflite_models, held_out):
    report = check_agreement(trained_unet, tflite_models["int8"], held_out)
    assert failures(report, INT8) == [], format_report(report, INT8)
    assert report["frames"] == 31
    assert report["mask_dice_frames"] >= 10, "too few frames with a mask: the Dice checks would mean little"
    assert report["p_std_keras"] > 0.2, "the fixture model must vary its P(nerve) for the spread checks to bite"
    assert 0 < report["mask_mae"] < 0.01
    assert report["tflite_backend"].startswith("ai_edge_litert")
    # int8 is measurably not float: the float32 bounds catch the difference
    assert failures(report, FLOAT32)


def test_float32_conversion_agrees_to_rounding(trained_unet, tflite_models, held_out):
    report = check_agreement(trained_unet, tflite_models["float32"], held_out)
    assert failures(report, FLOAT32) == [], format_report(report, FLOAT32)
    assert report["p_abs_diff_max"] < 1e-5 and report["mask_dice_pooled"] == 1.0


def test_another_models_file_fails(trained_unet, held_out):
    """The shipped 16-filter model has the same input and spec but other weights: a real pair that must not agree."""
    report = check_agreement(trained_unet, default_model_path(), held_out)
    bad = failures(report, INT8)
    failed = {line.split()[0] for line in bad}
    assert {"mask_dice_pooled", "mask_mae", "presence_agreement", "p_abs_diff_mean", "p_corr"} <= failed, bad
    assert report["mask_dice_pooled"] < 0.5


def test_bad_frames_are_rejected(trained_unet, tflite_models):
    with pytest.raises(ValueError, match="no frames"):
        check_agreement(trained_unet, tflite_models["int8"], [])
    with pytest.raises(ValueError, match=r"frame 1 has shape \(64, 64\).*\(96, 128\)"):
        check_agreement(
            trained_unet, tflite_models["int8"], [np.zeros((96, 128), np.float32)] * 1 + [np.zeros((64, 64))]
        )


def test_presence_agreement_is_judged_at_every_given_threshold(trained_unet, tflite_models, held_out):
    # Put a threshold between the two models' P(nerve) on the frame where they differ most: that frame
    # must then count as a disagreement, even though the pair agrees at 0.5.
    from edge.runner import ModelRunner

    runner = ModelRunner(tflite_models["int8"], threads=1)
    x = np.stack(held_out)[..., None]
    kp = trained_unet.predict(x, verbose=0)["nerve_present"][:, 0]
    tp = np.array([runner.infer(f).p_nerve for f in held_out])
    i = int(np.argmax(np.abs(kp - tp)))
    assert kp[i] != tp[i]
    t = float((kp[i] + tp[i]) / 2)
    rep = check_agreement(trained_unet, tflite_models["int8"], held_out, presence_threshold=(0.5, t))
    assert rep["presence_threshold"] == [0.5, pytest.approx(t)]
    assert rep["presence_agreement"] <= 1 - 1 / len(held_out)
