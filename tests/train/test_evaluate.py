"""``nerveseg eval``: the report from arrays (hand values), real models on real frames, sheet, JSON, CLI.

The models are the session fixtures of tests/model_fixtures.py (an 8-filter mini-U-Net
trained briefly on kaggle-bp, converted to float32 and int8 TFLite). The data is a tiny
manifest folder in tmp_path whose files are symlinks to real kaggle-bp frames: subjects
1 and 2 at full resolution (with and without a nerve) and subjects 41-42 at 256x186.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.cli import EXIT_CONFIG, EXIT_MODEL, EXIT_OK, main
from edge.errors import ConfigError, ModelError
from edge.spec import save_spec, sha256_file
from tests import model_fixtures
from tests.model_fixtures import make_spec
from train.evaluate import (
    SheetTile,
    contact_sheet,
    evaluate,
    evaluate_predictions,
    predict_fn,
    select_sheet_frames,
    truth_at_model_size,
    write_report,
)

# pytest finds fixtures by name in the test module (tests/conftest.py is shared and kept lean).
kaggle_sets = model_fixtures.kaggle_sets
trained_unet = model_fixtures.trained_unet
tflite_models = model_fixtures.tflite_models

REQUIRED_KEYS = {
    "n_images",
    "kaggle_score",
    "mean_dice_positive",
    "presence_sensitivity",
    "presence_specificity",
    "presence_auc",
    "n_positive",
    "n_negative",
    "n_unlabelled_skipped",
    "ci95",
    "per_subject",
    "model",
    "data",
    "thresholds",
    "per_image",
}
# (manifest path relative to kaggle-bp, mask path or "" = unlabelled, subject)
POSITIVE_FULL = ["1_1", "1_2", "2_8", "2_12"]
NEGATIVE_FULL = ["1_5", "1_6", "2_1", "2_2"]
SMALL = ["41_1", "41_40", "42_1", "42_40"]


def _link_rows(root: Path, folder: Path, rows: list[tuple[str, str, str]]) -> None:
    """Symlink each image/mask of ``rows`` into ``folder`` and write its manifest.csv."""
    with open(folder / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "subject", "mask_path"])
        for img, mask, subject in rows:
            for rel in (img, mask):
                if rel:
                    (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                    (folder / rel).symlink_to(root / rel)
            w.writerow([img, subject, mask])


@pytest.fixture(scope="module")
def eval_dir(data_dir, tmp_path_factory) -> Path:
    """8 positives (4 subjects), 4 negatives (subjects 1, 2) and 1 unlabelled Kaggle test frame."""
    root = data_dir / "kaggle-bp"
    rows = [(f"fullres/images/{n}.png", f"fullres/masks/{n}_mask.png", n.split("_")[0]) for n in POSITIVE_FULL]
    rows += [(f"fullres/images/{n}.png", f"fullres/masks/{n}_mask.png", n.split("_")[0]) for n in NEGATIVE_FULL]
    rows += [(f"img_256x186/{n}.png", f"mask_256x186/{n}_mask.png", n.split("_")[0]) for n in SMALL]
    rows.append(("fullres/unlabeled_test/1.png", "", ""))
    folder = tmp_path_factory.mktemp("eval_data")
    _link_rows(root, folder, rows)
    return folder


@pytest.fixture(scope="module")
def positives_dir(data_dir, tmp_path_factory) -> Path:
    """Only frames with a nerve (the 256x186 set has no others)."""
    root = data_dir / "kaggle-bp"
    rows = [(f"img_256x186/{n}.png", f"mask_256x186/{n}_mask.png", n.split("_")[0]) for n in SMALL]
    folder = tmp_path_factory.mktemp("positives")
    _link_rows(root, folder, rows)
    return folder


@pytest.fixture(scope="module")
def keras_model(trained_unet, tmp_path_factory) -> Path:
    """The fixture's trained model as a .keras checkpoint with its sidecar spec (same weights as the .tflite)."""
    path = tmp_path_factory.mktemp("keras") / "unet.keras"
    save_spec(make_spec(), path)  # written before the model: no hash (a .keras spec is not hash-checked)
    trained_unet.save(path)
    return path


# -- evaluate_predictions: hand-computed values ----------------------------------------------------


def _sq(y: int, x: int, size: int = 4) -> np.ndarray:
    m = np.zeros((8, 8), bool)
    m[y : y + size, x : x + size] = True
    return m


def _prob(mask: np.ndarray, inside: float = 0.9) -> np.ndarray:
    return np.where(mask, inside, 0.1).astype(np.float32)


def test_evaluate_predictions_hand_values():
    empty = np.zeros((8, 8), bool)
    truths = [_sq(0, 0), empty, empty, _sq(0, 0)]
    probs = [_prob(_sq(2, 2)), _prob(_sq(0, 0)), _prob(_sq(0, 0)), _prob(_sq(0, 0))]
    ps = [0.9, 0.3, 0.8, 0.4]
    # frame 0 (A): overlap of two squares, kept (p 0.9)         -> Dice 0.25, TP
    # frame 1 (A): no nerve, blob gated away (p 0.3)            -> Dice 1,    TN
    # frame 2 (B): no nerve, blob kept (p 0.8): false positive  -> Dice 0,    FP
    # frame 3 (B): perfect mask but gated away (p 0.4): missed  -> Dice 0,    FN
    rep = evaluate_predictions(probs, ps, truths, subjects=["A", "A", "B", "B"], names=list("wxyz"))
    assert rep["n_images"] == 4 and (rep["n_positive"], rep["n_negative"]) == (2, 2)
    assert rep["kaggle_score"] == pytest.approx(1.25 / 4)
    assert rep["mean_dice_positive"] == pytest.approx(0.25 / 2)
    assert rep["presence_sensitivity"] == 0.5 and rep["presence_specificity"] == 0.5
    assert rep["presence_accuracy"] == 0.5
    # pos {0.9, 0.4} vs neg {0.3, 0.8}: 0.9 beats both, 0.4 beats 0.3 -> 3/4
    assert rep["presence_auc"] == pytest.approx(0.75)
    assert [r["dice"] for r in rep["per_image"]] == pytest.approx([0.25, 1.0, 0.0, 0.0])
    assert [r["pred_present"] for r in rep["per_image"]] == [True, False, True, False]
    assert [r["name"] for r in rep["per_image"]] == list("wxyz")
    a, b = rep["per_subject"]
    assert a == {
        "subject": "A",
        "n": 2,
        "n_positive": 1,
        "kaggle_score": pytest.approx(0.625),
        "mean_dice_positive": pytest.approx(0.25),
        "sensitivity": 1.0,
        "specificity": 1.0,
    }
    assert (b["kaggle_score"], b["mean_dice_positive"], b["sensitivity"], b["specificity"]) == (0.0, 0.0, 0.0, 0.0)
    assert rep["ci95"]["n_subjects"] == 2 and rep["ci95"]["unit"] == "subject"
    lo, hi = rep["ci95"]["kaggle_score"]
    assert lo <= rep["kaggle_score"] <= hi
    assert rep["thresholds"] == {"mask": 0.5, "presence": 0.5}
    json.dumps(rep, allow_nan=False)

    # a stricter pixel threshold than the blobs' 0.9 empties every mask: only the negatives score (1 then 1)
    strict = evaluate_predictions(probs, ps, truths, mask_threshold=0.95)
    assert strict["kaggle_score"] == pytest.approx(0.5)
    # without subject ids: no per-subject rows and no interval (frames are not independent)
    assert strict["per_subject"] == [] and strict["ci95"] is None
    # bool masks (already thresholded) are taken as they are
    as_bool = evaluate_predictions([p >= 0.5 for p in probs], ps, truths)
    assert as_bool["kaggle_score"] == pytest.approx(rep["kaggle_score"])


def test_evaluate_predictions_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="one each per frame"):
        evaluate_predictions([np.zeros((2, 2))], [0.5, 0.5], [np.zeros((2, 2), bool)])
    with pytest.raises(ValueError, match="no frames"):
        evaluate_predictions([], [], [])


def test_truth_at_model_size_keeps_presence():
    big = np.zeros((420, 580), np.uint8)
    big[100:200, 100:300] = 255
    small = truth_at_model_size(big, 96, 128)
    assert small.dtype == bool and small.shape == (96, 128)
    # 100x200 px of 420x580 -> about 22.9 x 44.1 model px
    assert abs(int(small.sum()) - 22.9 * 44.1) < 60
    tiny = np.zeros((420, 580), np.uint8)
    tiny[10, 10] = 255  # below one model pixel: the most-covered pixel is kept
    assert truth_at_model_size(tiny, 96, 128).sum() >= 1
    assert not truth_at_model_size(np.zeros((420, 580), np.uint8), 96, 128).any()


def test_select_sheet_frames_sections():
    d = np.array([0.9, 0.1, 1.0, 0.0, 0.5, 0.0])
    t = np.array([True, True, False, False, True, False])
    p = np.array([0.9, 0.6, 0.1, 0.8, 0.7, 0.95])
    pred = np.array([True, True, False, True, True, True])
    sections = dict(select_sheet_frames(d, t, p, pred, n=2))
    assert sections["Best: frames with a nerve, highest Dice"] == [0, 4]
    assert sections["Worst: frames with a nerve, lowest Dice"] == [1]  # 4 is already among the best
    assert sections["False positives: no nerve in the truth, outline drawn"] == [5, 3]  # by P(nerve)
    # nothing wrong on a negatives-only set with no outline: only the (empty) best/worst are left out
    assert select_sheet_frames(np.ones(2), np.zeros(2, bool), np.zeros(2), np.zeros(2, bool)) == []


def test_contact_sheet_draws_truth_and_prediction():
    img = np.full((186, 256), 90, np.uint8)
    truth, pred = np.zeros((96, 128), bool), np.zeros((96, 128), bool)
    truth[20:40, 20:50] = True
    pred[50:70, 70:100] = True
    sheet = contact_sheet([("Best", [SheetTile(img, truth, pred, ("a", "dice 0.00"))])], title="t", per_row=2)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3 and sheet.shape[1] == 2 * 256 + 3 * 6
    green = (sheet[..., 1] > 200) & (sheet[..., 0] < 80) & (sheet[..., 2] < 80)
    yellow = (sheet[..., 2] > 200) & (sheet[..., 1] > 180) & (sheet[..., 0] < 80)
    assert green.sum() > 100 and yellow.sum() > 100


# -- real models on real frames ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["float32", "int8"])
def test_report_on_real_frames(kind, tflite_models, eval_dir):
    model = tflite_models[kind]
    rep = evaluate(model, eval_dir)
    assert REQUIRED_KEYS <= set(rep)
    assert rep["n_images"] == 12 and rep["n_positive"] == 8 and rep["n_negative"] == 4
    assert rep["n_unlabelled_skipped"] == 1
    for key in ("kaggle_score", "mean_dice_positive", "presence_sensitivity", "presence_specificity", "presence_auc"):
        assert isinstance(rep[key], float) and 0.0 <= rep[key] <= 1.0, key
    per = rep["per_image"]
    assert len(per) == 12
    assert set(per[0]) >= {"name", "subject", "dice", "p_nerve", "truth_present"}
    assert rep["kaggle_score"] == pytest.approx(np.mean([r["dice"] for r in per]))
    assert sum(r["truth_present"] for r in per) == 8
    assert [s["subject"] for s in rep["per_subject"]] == ["1", "2", "41", "42"]
    assert sum(s["n"] for s in rep["per_subject"]) == 12
    assert set(rep["per_subject"][0]) >= {
        "subject",
        "n",
        "kaggle_score",
        "mean_dice_positive",
        "sensitivity",
        "specificity",
    }
    ci = rep["ci95"]
    assert ci["n_subjects"] == 4
    for key in ("kaggle_score", "mean_dice_positive"):
        lo, hi = ci[key]
        assert lo <= rep[key] <= hi, key
    assert rep["model"] == {
        "path": str(model),
        "name": "test-unet",
        "sha256": sha256_file(model),
        "quantization": kind,
        "untrained": False,
        "format": "tflite",
    }
    assert rep["thresholds"] == {"mask": 0.5, "presence": 0.5}  # mask threshold from the spec
    assert rep["data"]["path"] == str(eval_dir)
    # the fixture model was trained on subjects 1-2: it must at least find some of their nerves
    assert rep["mean_dice_positive"] > 0.1
    json.dumps(rep, allow_nan=False)


def test_keras_and_tflite_of_the_same_weights_agree(tflite_models, keras_model, eval_dir):
    rt = evaluate(tflite_models["float32"], eval_dir)
    rk = evaluate(keras_model, eval_dir)
    assert rk["model"]["format"] == "keras" and rk["model"]["sha256"] == sha256_file(keras_model)
    np.testing.assert_allclose(
        [r["p_nerve"] for r in rk["per_image"]], [r["p_nerve"] for r in rt["per_image"]], atol=1e-3
    )
    np.testing.assert_allclose([r["dice"] for r in rk["per_image"]], [r["dice"] for r in rt["per_image"]], atol=0.02)
    assert rk["kaggle_score"] == pytest.approx(rt["kaggle_score"], abs=0.01)


def test_predict_fn_shapes(tflite_models, keras_model, kaggle_fullres):
    frame = cv2.imread(str(kaggle_fullres / "1_1.png"))  # BGR at 580x420: gray conversion is the predictor's job
    for path in (tflite_models["int8"], keras_model):
        predict, spec = predict_fn(path)
        prob, p = predict(frame)
        assert prob.shape == (spec.preprocess.height, spec.preprocess.width) and prob.dtype == np.float32
        assert 0.0 <= prob.min() <= prob.max() <= 1.0 and 0.0 <= p <= 1.0


def test_never_present_scores_the_fraction_of_negatives(tflite_models, eval_dir):
    # presence threshold above 1: every mask is gated away, whatever the mask output says
    rep = evaluate(tflite_models["float32"], eval_dir, presence_threshold=1.01)
    assert rep["kaggle_score"] == pytest.approx(4 / 12)  # each negative scores 1, each positive 0
    assert rep["mean_dice_positive"] == 0.0
    assert rep["presence_sensitivity"] == 0.0 and rep["presence_specificity"] == 1.0
    assert not any(r["pred_present"] for r in rep["per_image"])
    # and at 0 every frame is called present: sensitivity 1, specificity 0
    rep0 = evaluate(tflite_models["float32"], eval_dir, presence_threshold=0.0)
    assert rep0["presence_sensitivity"] == 1.0 and rep0["presence_specificity"] == 0.0


def test_specificity_is_null_without_negatives(tflite_models, positives_dir, tmp_path):
    rep = evaluate(tflite_models["float32"], positives_dir)
    assert rep["n_negative"] == 0 and rep["presence_specificity"] is None and rep["presence_auc"] is None
    out = write_report(rep, tmp_path / "r.json")
    loaded = json.loads(out.read_text())
    assert loaded["presence_specificity"] is None and "per_image" not in loaded


def test_limit_spreads_over_the_manifest(tflite_models, eval_dir):
    rep = evaluate(tflite_models["float32"], eval_dir, limit=4)
    names = [r["name"] for r in rep["per_image"]]
    assert len(names) == 4 and names[0] == "fullres/images/1_1" and names[-1] == "img_256x186/42_40"


def test_bad_options_and_data_raise_config_error(tflite_models, eval_dir, tmp_path):
    model = tflite_models["float32"]
    with pytest.raises(ConfigError, match="manifest.csv"):
        evaluate(model, tmp_path)
    with pytest.raises(ConfigError, match="presence threshold"):
        evaluate(model, eval_dir, presence_threshold=-0.1)
    with pytest.raises(ConfigError, match="mask threshold"):
        evaluate(model, eval_dir, mask_threshold=1.5)
    with pytest.raises(ConfigError, match="split 'test'"):
        evaluate(model, eval_dir, split="test")


def test_model_problems_raise_model_error_naming_the_file(tflite_models, keras_model, tmp_path):
    with pytest.raises(ModelError, match="nope.tflite"):
        predict_fn(tmp_path / "nope.tflite")
    with pytest.raises(ModelError, match="unsupported type"):
        predict_fn(tflite_models["float32"].with_suffix(".yaml"))
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    save_spec(make_spec(), bad.with_name("bad_spec_only.keras"))  # unrelated spec: bad.keras has none
    with pytest.raises(ModelError, match="bad.yaml"):
        predict_fn(bad)
    shutil.copy(bad.with_name("bad_spec_only.yaml"), bad.with_suffix(".yaml"))
    with pytest.raises(ModelError, match="bad.keras"):
        predict_fn(bad)
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"\0" * 64)
    save_spec(make_spec(), corrupt)
    with pytest.raises(ModelError, match="corrupt.tflite"):
        predict_fn(corrupt)


# -- the command ------------------------------------------------------------------------------------


def test_cli_writes_json_and_sheet(tflite_models, eval_dir, tmp_path, capsys):
    out = tmp_path / "report.json"
    argv = ["eval", "--model", str(tflite_models["int8"]), "--data", str(eval_dir), "--json", str(out)]
    assert main(argv) == EXIT_OK
    text = capsys.readouterr().out
    assert "kaggle score" in text and "95% CI" in text and "per subject" in text and "specificity" in text
    rep = json.loads(out.read_text())
    assert REQUIRED_KEYS - {"per_image"} <= set(rep) and "per_image" not in rep
    sheet_path = tmp_path / "report_sheet.png"
    assert rep["sheet"] == str(sheet_path)
    sheet = cv2.imread(str(sheet_path))
    assert sheet is not None and sheet.ndim == 3
    # 6 tiles of 256 px a row; title + section headers + at least two rows of 192+ px tiles
    assert sheet.shape[1] == 6 * 256 + 7 * 6 and 2 * 192 < sheet.shape[0] < 3000

    assert main([*argv, "--per-image", "--sheet", str(tmp_path / "s.png"), "--presence-threshold", "0.7"]) == EXIT_OK
    rep = json.loads(out.read_text())
    assert len(rep["per_image"]) == 12 and rep["thresholds"]["presence"] == 0.7
    assert (tmp_path / "s.png").is_file()


def test_cli_default_sheet_in_cwd(tflite_models, positives_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--model", str(tflite_models["float32"]), "--data", str(positives_dir)]) == EXIT_OK
    assert (tmp_path / "eval_sheet.png").is_file()
    assert "specificity -" in capsys.readouterr().out


def test_cli_exit_codes(tflite_models, eval_dir, tmp_path, capsys):
    missing = tmp_path / "missing.tflite"
    assert main(["eval", "--model", str(missing), "--data", str(eval_dir), "--sheet", str(tmp_path / "s.png")]) == (
        EXIT_MODEL
    )
    assert str(missing) in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    model = str(tflite_models["float32"])
    assert main(["eval", "--model", model, "--data", str(empty), "--sheet", str(tmp_path / "s.png")]) == EXIT_CONFIG
    assert "manifest.csv" in capsys.readouterr().err
    assert main(["eval", "--model", model, "--data", str(tmp_path / "nowhere")]) == EXIT_CONFIG
    assert main(["eval", "--model", model, "--data", str(eval_dir), "--json", str(tmp_path / "no" / "r.json")]) == (
        EXIT_CONFIG
    )
    assert "--json" in capsys.readouterr().err
