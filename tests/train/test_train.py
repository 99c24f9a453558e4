"""`nerveseg train` on a few real subjects: outputs, inference-mode validation, resume, then convert and eval."""

from __future__ import annotations

import csv
import json

import cv2
import pytest
import yaml

pytest.importorskip("tensorflow")

from edge.cli import main  # noqa: E402
from edge.errors import ConfigError  # noqa: E402
from edge.spec import load_spec  # noqa: E402
from train.train import load_train_config  # noqa: E402

TINY = {
    "name": "tiny",
    "data": {
        "folds": 2,
        "fold": 0,
        "subjects": ["1", "2", "3", "4", "5", "7"],
        "negatives": {"crops_per_frame": 0.2, "other_anatomy": False},
    },
    "model": {"base_filters": 4},
    "optim": {"epochs": 1, "batch_size": 16},
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("runs")
    cfg_path = out / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(TINY | {"out_dir": str(out), "data": TINY["data"] | {"root": str(data_dir)}}))
    assert main(["train", "--config", str(cfg_path), "--log-level", "WARNING"]) == 0
    return cfg_path, out / "tiny" / "fold-0"


def test_run_writes_model_spec_history_curves(tiny_run):
    _, run = tiny_run
    for f in ("config.yaml", "history.csv", "curves.png", "last.keras", "model.keras", "model.yaml", "result.json"):
        assert (run / f).is_file(), f
    spec = load_spec(run / "model.keras")
    assert not spec.untrained and spec.quantization == "float32"
    assert spec.preprocess.height == 96 and spec.preprocess.filter == "median"
    assert spec.provenance["data"]["held_out_fold"] == 0
    assert spec.provenance["options"]["skips"] == 3
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert len(rows) == 1 and "val_kaggle_score" in rows[0] and "loss" in rows[0]
    res = json.loads((run / "result.json").read_text())
    v = res["validation"]
    # held-out fold 0 holds subject 1: real empty frames, so specificity is measured
    assert v["n_negative"] > 0 and v["presence_specificity"] is not None
    assert 0.0 <= v["kaggle_score"] <= 1.0 and v["n_positive"] > 0
    assert cv2.imread(str(run / "curves.png")) is not None


def test_resume_continues_from_last_epoch(tiny_run):
    cfg_path, run = tiny_run
    assert main(["train", "--config", str(cfg_path), "--epochs", "2", "--resume", "--log-level", "WARNING"]) == 0
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    # A fold's model is its last epoch, whatever its validation score did (as for the final model, which has
    # none): choosing the best epoch on the held-out subjects would flatter cross-validation.
    import keras
    import numpy as np

    model, last = keras.models.load_model(run / "model.keras"), keras.models.load_model(run / "last.keras")
    for a, b in zip(model.get_weights(), last.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    res = json.loads((run / "result.json").read_text())
    assert res["epochs"] == 2 and res["best_epoch"] in (1, 2)


def test_bad_training_config_names_the_key(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("model:\n  skip: 3\n")
    with pytest.raises(ConfigError) as ei:
        load_train_config(p)
    assert "model.skip: unknown key" in ei.value.problems[0] and "skips" in ei.value.problems[0]
    assert main(["train", "--config", str(p)]) == 2
    with pytest.raises(ConfigError, match="fold 7 does not exist"):
        load_train_config(None, **{"data.fold": 7, "data.folds": 5})


def test_tiny_run_converts_and_evaluates_through_the_bedside_path(tiny_run, tmp_path, data_dir):
    # train -> convert -> eval on real frames: the chain a model takes to the device.
    _, run = tiny_run
    out = tmp_path / "tiny.tflite"
    # float32: a 4-filter model after one epoch is too weak to judge int8 agreement by.
    assert main(["convert", "--model", str(run / "model.keras"), "--out", str(out), "--float32"]) == 0
    assert out.is_file() and out.with_suffix(".yaml").is_file() and out.with_suffix(".md").is_file()
    folder = tmp_path / "frames"
    (folder / "img").mkdir(parents=True)
    (folder / "msk").mkdir()
    rows = ["path,mask_path,subject"]
    for name in ("1_1", "1_5", "2_1", "2_2", "1_10", "2_10"):
        for sub, src in (("img", f"images/{name}.png"), ("msk", f"masks/{name}_mask.png")):
            (folder / sub / f"{name}.png").symlink_to(data_dir / "kaggle-bp" / "fullres" / src)
        rows.append(f"img/{name}.png,msk/{name}.png,{name.split('_')[0]}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    report = tmp_path / "r.json"
    assert main(["eval", "--model", str(out), "--data", str(folder), "--json", str(report)]) == 0
    rep = json.loads(report.read_text())
    assert rep["n_images"] == 6 and rep["model"]["quantization"] == "float32"
    keras_rep = tmp_path / "k.json"
    assert main(["eval", "--model", str(run / "model.keras"), "--data", str(folder), "--json", str(keras_rep)]) == 0
    # the .tflite at the bedside scores what the Keras model scores
    assert abs(json.loads(keras_rep.read_text())["kaggle_score"] - rep["kaggle_score"]) < 0.02


def test_every_shipped_training_recipe_is_valid():
    from pathlib import Path

    recipes = sorted((Path(__file__).resolve().parents[2] / "train" / "configs").rglob("*.yaml"))
    assert len(recipes) >= 6
    for p in recipes:
        cfg = load_train_config(p)
        assert cfg.preprocess.height == 96 and cfg.preprocess.width == 128, p


def test_publish_measures_int8_against_float_on_each_folds_unseen_subjects(tiny_run, tmp_path, data_dir):
    from convert.publish import _subset_manifest, quantization_on_unseen
    from train.manifest import read_manifest

    _, fold0 = tiny_run
    held = {str(s) for s in load_spec(fold0 / "model.keras", verify_hash=False).provenance["data"]["folds"][0]}
    kaggle = data_dir / "kaggle-bp"
    val = read_manifest(_subset_manifest(kaggle, held, True, tmp_path / "val"))
    train = read_manifest(_subset_manifest(kaggle, held, False, tmp_path / "train"))
    assert {s.subject for s in val} == held and not held & {s.subject for s in train}
    assert len(val) + len(train) == len(read_manifest(kaggle))
    assert all(s.image.is_file() and s.image.is_absolute() for s in val[:5])

    q = quantization_on_unseen(fold0.parent, data_dir, tmp_path / "work")
    [row] = q["per_fold"]
    assert row["fold"] == 0, row
    assert "rejected" not in row, row  # a 1-epoch 4-filter model still converts within the int8 bounds
    assert 0 <= row["float"] <= 1 and 0 <= row["int8"] <= 1
    assert row["difference"] == pytest.approx(row["int8"] - row["float"], abs=1e-4)
    assert q["max_abs_difference"] == abs(row["difference"])
