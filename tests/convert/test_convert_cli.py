"""``nerveseg convert`` end to end through `edge.cli.main`, on a small trained .keras and real kaggle-bp frames.

Each conversion costs ~10 s here (export, int8 calibration, agreement check), so only three run:
a good int8 one, a float32 one and a deliberately broken one; the refusals stop before TensorFlow.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from convert.card import NOT_MEASURED, write_model_card
from convert.tflite import split_by_nerve
from edge.cli import EXIT_CONFIG, EXIT_MODEL, EXIT_OK, main
from edge.runner import ModelRunner
from edge.spec import load_spec
from tests import model_fixtures

kaggle_sets = model_fixtures.kaggle_sets
trained_unet = model_fixtures.trained_unet
tflite_models = model_fixtures.tflite_models
keras_model_file = model_fixtures.keras_model_file
untrained_model = model_fixtures.untrained_model


def _manifest(folder: Path, pairs: list[tuple[Path, Path]]) -> Path:
    """A manifest folder whose rows point at real frames and masks elsewhere (absolute paths; nothing copied)."""
    folder.mkdir()
    with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "mask_path", "subject"])
        w.writerows([str(img), str(mask), img.stem.split("_")[0]] for img, mask in pairs)
    return folder


@pytest.fixture(scope="module")
def fullres(data_dir: Path) -> dict[str, list[tuple[Path, Path]]]:
    """kaggle-bp full-resolution (image, mask) pairs by kind: 18 with a nerve, 37 without."""
    root = data_dir / "kaggle-bp" / "fullres"
    pos, neg = split_by_nerve(root / "images", root / "masks")
    pair = lambda p: (p, root / "masks" / f"{p.stem}_mask.png")  # noqa: E731
    return {"pos": [pair(p) for p in pos], "neg": [pair(p) for p in neg]}


def _convert(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["convert", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _no_leftovers(folder: Path) -> None:
    assert not list(folder.glob(".nerveseg-convert-*")), "scratch folder left behind"


# --- conversions ------------------------------------------------------------------------------------------------


def test_int8_conversion_with_manifest_calibration(keras_model_file, fullres, tmp_path, capsys):
    # 18 with a nerve + 19 without (every other empty frame): balanced and >= 30 frames
    calib = _manifest(tmp_path / "calib", fullres["pos"] + fullres["neg"][::2])
    out = tmp_path / "unet.tflite"
    rc, stdout, stderr = _convert(
        capsys, "--model", str(keras_model_file), "--out", str(out), "--calibration", str(calib), "--check-limit", "150"
    )
    assert rc == EXIT_OK, stderr
    assert "OK:" in stdout and "mask_dice_pooled" in stdout and "KB" in stdout

    runner = ModelRunner(out)  # the bedside loads it: spec present, hash matches, int8 in and out
    spec = runner.spec
    assert spec.quantization == "int8" and spec.name == "test-unet"
    r = runner.infer(np.zeros(runner.input_hw, np.float32))
    assert 0.0 <= r.p_nerve <= 1.0

    prov = spec.provenance
    rep = prov["int8_agreement"]
    assert rep["passed"] is True and "failures" not in rep
    assert rep["frames"] == 150 and rep["mask_dice_pooled"] >= 0.92 and rep["presence_agreement"] >= 0.95
    assert rep["tolerances"]["mask_dice_pooled_min"] == 0.92
    conv = prov["conversion"]
    assert (conv["calibration"]["with_nerve"], conv["calibration"]["without_nerve"]) == (18, 19)
    assert conv["calibration"]["layout"] == "manifest"
    # the calibration frames are also in the default held-out pool (kaggle-bp): they were left out
    assert "37 calibration frames left out" in conv["check"]["notes"]
    assert conv["ops"]["CONV_2D"] > 0 and conv["size_bytes"] == out.stat().st_size
    assert prov["data"]["steps"] == model_fixtures.TRAIN_STEPS, "training provenance of the .keras spec is kept"

    card = out.with_suffix(".md").read_text(encoding="utf-8")
    assert "# Model card: test-unet" in card
    assert "Full-integer int8" in card and "Verdict: **passed**" in card
    assert f"| mask_dice_pooled | {rep['mask_dice_pooled']:.4g} | >= 0.92 | ok |" in card
    assert "18 with a nerve, 19 without" in card and "150 held-out real frames, none of them a calibration" in card
    assert "not a medical device" in card and NOT_MEASURED in card
    assert spec.tflite_sha256 in card
    assert not list(tmp_path.glob("*.rejected.*"))
    _no_leftovers(tmp_path)


def test_float32_conversion_is_checked_with_tight_bounds(keras_model_file, data_dir, tmp_path, capsys):
    out = tmp_path / "f32.tflite"
    test_frames = data_dir / "kaggle-bp" / "fullres" / "unlabeled_test"  # a plain folder of 25 frames
    rc, stdout, stderr = _convert(
        capsys,
        "--model",
        str(keras_model_file),
        "--out",
        str(out),
        "--float32",
        "--check",
        str(test_frames),
        "--name",
        "unet-f32",
    )
    assert rc == EXIT_OK, stderr
    spec = load_spec(out)
    assert spec.quantization == "float32" and spec.name == "unet-f32"
    assert "int8_agreement" not in spec.provenance
    rep = spec.provenance["float32_agreement"]
    assert rep["passed"] and rep["frames"] == 25 and rep["p_abs_diff_max"] < 1e-5
    assert rep["tolerances"]["p_abs_diff_max_max"] == 1e-3
    assert spec.provenance["conversion"]["calibration"] is None
    assert "float32: no quantisation" in out.with_suffix(".md").read_text(encoding="utf-8")
    _no_leftovers(tmp_path)


def test_broken_calibration_is_rejected(keras_model_file, tmp_path, capsys):
    """Black frames (a frozen or disconnected capture) as calibration: int8 ranges are wrong, the check says so."""
    black = tmp_path / "black"
    black.mkdir()
    for i in range(8):
        cv2.imwrite(str(black / f"frame_{i}.png"), np.zeros((420, 580), np.uint8))
    out = tmp_path / "bad.tflite"
    rc, _, stderr = _convert(
        capsys, "--model", str(keras_model_file), "--out", str(out), "--calibration", str(black), "--check-limit", "60"
    )
    assert rc == EXIT_MODEL, stderr
    assert "balance" in stderr and "cannot be checked" in stderr  # plain folder: warned
    assert "only 8 calibration frames" in stderr
    assert "conversion REJECTED" in stderr
    for metric in ("mask_dice_pooled", "presence_agreement", "p_std_ratio"):
        assert f"  - {metric} " in stderr, stderr
    # no accepted model, spec or card; the rejected file is kept with its report
    assert not out.exists() and not out.with_suffix(".yaml").exists() and not out.with_suffix(".md").exists()
    rejected = tmp_path / "bad.rejected.tflite"
    assert rejected.is_file()
    rep = load_spec(rejected).provenance["int8_agreement"]
    assert rep["passed"] is False and any(f.startswith("p_std_ratio") for f in rep["failures"])
    _no_leftovers(tmp_path)


# --- refusals (before any conversion) ---------------------------------------------------------------------------


def test_calibration_with_only_nerve_frames_is_refused(keras_model_file, fullres, tmp_path, capsys):
    calib = _manifest(tmp_path / "calib", fullres["pos"])
    out = tmp_path / "m.tflite"
    rc, _, stderr = _convert(capsys, "--model", str(keras_model_file), "--out", str(out), "--calibration", str(calib))
    assert rc == EXIT_CONFIG
    assert "18 frames with a nerve and 0 without" in stderr
    assert "balanced" in stderr and "collapsed the presence output" in stderr
    assert not out.exists()


def test_missing_spec(keras_model_file, tmp_path, capsys):
    model = tmp_path / "nospec.keras"
    shutil.copy(keras_model_file, model)
    rc, _, stderr = _convert(capsys, "--model", str(model), "--out", str(tmp_path / "m.tflite"))
    assert rc == EXIT_MODEL
    assert str(tmp_path / "nospec.yaml") in stderr and "not found" in stderr


def test_missing_model(tmp_path, capsys):
    rc, _, stderr = _convert(capsys, "--model", str(tmp_path / "none.keras"), "--out", str(tmp_path / "m.tflite"))
    assert rc == EXIT_MODEL and "none.keras not found" in stderr


def test_existing_output_needs_force(keras_model_file, tmp_path, capsys):
    out = tmp_path / "m.tflite"
    out.write_bytes(b"an earlier model")
    rc, _, stderr = _convert(capsys, "--model", str(keras_model_file), "--out", str(out))
    assert rc == EXIT_CONFIG and "--force" in stderr
    assert out.read_bytes() == b"an earlier model"


def test_calibration_frames_are_not_held_out(keras_model_file, fullres, tmp_path, capsys):
    calib = _manifest(tmp_path / "calib", fullres["pos"] + fullres["neg"])
    rc, _, stderr = _convert(
        capsys,
        "--model",
        str(keras_model_file),
        "--out",
        str(tmp_path / "m.tflite"),
        "--calibration",
        str(calib),
        "--check",
        str(calib),
    )
    assert rc == EXIT_CONFIG and "every frame is also a calibration frame" in stderr


def test_bad_options(keras_model_file, tmp_path, capsys):
    rc, _, stderr = _convert(capsys, "--model", str(keras_model_file), "--out", str(tmp_path / "m.onnx"))
    assert rc == EXIT_CONFIG and "must end in .tflite" in stderr
    rc, _, stderr = _convert(
        capsys, "--model", str(keras_model_file), "--out", str(tmp_path / "m.tflite"), "--calibration-limit", "1"
    )
    assert rc == EXIT_CONFIG and "--calibration-limit must be at least 2" in stderr


# --- the model card ---------------------------------------------------------------------------------------------


def test_card_renders_metrics_and_says_what_is_missing(tmp_path, untrained_model):
    """Beside a copy of an untrained placeholder model: no agreement recorded, metrics from ``extra``."""
    model = tmp_path / "shipped.tflite"
    shutil.copy(untrained_model, model)
    shutil.copy(untrained_model.with_suffix(".yaml"), model.with_suffix(".yaml"))

    card = write_model_card(model).read_text(encoding="utf-8")
    assert "**UNTRAINED: random weights" in card
    assert "Agreement with the float Keras model: not yet measured" in card
    assert f"Segmentation and presence metrics with confidence intervals: {NOT_MEASURED}" in card
    assert "kaggle-bp/fullres/images, all 55 frames" in card  # the builder's calibration note
    assert "base_filters=16" in card and "convert.make_untrained" in card

    extra = {
        "cv": {"dice": {"mean": 0.712345, "ci95": [0.65, 0.77]}, "presence_auc": {"mean": 0.9, "ci95": [0.85, 0.94]}},
        "metrics": [{"fold": 1, "dice": 0.7}, {"fold": 2, "dice": 0.72}],
        "limits": ["tested on one Pi 5 only"],
    }
    card = write_model_card(model, extra).read_text(encoding="utf-8")
    assert "| | mean | ci95 |" in card and "| dice | 0.7123 | [0.65, 0.77] |" in card
    assert "| fold | dice |" in card and "| 2 | 0.72 |" in card
    assert "- tested on one Pi 5 only" in card
    assert NOT_MEASURED not in card.split("## Measured performance")[1].split("##")[0]
    assert yaml.safe_load(model.with_suffix(".yaml").read_text())["tflite_sha256"] in card


def test_card_states_the_training_data_terms_and_limits_of_its_sources(tmp_path, untrained_model):
    """A model trained on restricted data says so: the terms come from its provenance, never fixed text."""
    from edge.spec import load_spec, save_spec

    model = tmp_path / "v2.tflite"
    shutil.copy(untrained_model, model)
    shutil.copy(untrained_model.with_suffix(".yaml"), model.with_suffix(".yaml"))
    card = write_model_card(model).read_text(encoding="utf-8")
    assert "terms are not recorded in this model's provenance" in card
    assert "one ultrasound machine type (the Kaggle set)" in card  # no sources recorded: v1's wording

    spec = load_spec(model)
    terms = ["kaggle-bp: internal research use only", "regional-us: non-commercial, research and teaching only"]
    prov = dict(spec.provenance) | {"data": {"sources": {"kaggle": 10, "regional_us": 5, "usgra": 2},
                                             "terms": terms}}
    save_spec(spec.model_copy(update={"provenance": prov}), model)
    card = write_model_card(model).read_text(encoding="utf-8")
    section = card.split("## Terms of use")[1].split("\n## ")[0]
    assert "Research use only" in section and all(f"- {t}" in section for t in terms)
    limits = card.split("## Known limits")[1].split("\n## ")[0]
    assert "Trained on 3 machine types" in limits and "Mindray TE7" in limits and "boxes are coarse" in limits
    assert "one ultrasound machine type" not in limits
