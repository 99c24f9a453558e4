"""Training from several sources (Kaggle outlines, box-labelled video, another machine's outlines) on
real frames: folds by subject within each source, per-source weights, box supervision, the operating
point from finished folds, fine-tuning with --init, then convert and eval on video."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

pytest.importorskip("tensorflow")

from edge.cli import EXIT_CONFIG, main  # noqa: E402
from edge.errors import ConfigError  # noqa: E402
from edge.spec import load_spec  # noqa: E402
from train.data import FrameSet, batches, epoch_order  # noqa: E402
from train.train import assemble, load_train_config  # noqa: E402

VIDEOS = ["1643", "2002", "2014", "4022", "4578", "7008"]  # 3 with the plexus, the 3 nerve-free `neg` ones
MULTI = {
    "name": "multi",
    "data": {
        "folds": 3,
        "fold": 0,
        "subjects": ["1", "2", "3", "4", "5", "7"],
        "negatives": {"crops_per_frame": 0.2, "other_anatomy": False},
        "sources": {
            "kaggle": {"weight": 0.5},
            "regional_us": {"weight": 0.3, "every": 15, "videos": VIDEOS},
            "usgra": {"weight": 0.2, "limit": 12},
        },
        "epoch_size": 96,
    },
    "model": {"base_filters": 4},
    "optim": {"epochs": 1, "batch_size": 16},
}


def _cfg(data_dir, out, **data):
    d = MULTI | {"out_dir": str(out), "data": MULTI["data"] | {"root": str(data_dir)} | data}
    return load_train_config(None, **{k: v for k, v in _flatten(d).items()})


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k not in ("sources", "negatives"):
            out |= _flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.fixture(scope="module")
def rus_root(data_dir):
    if not (data_dir / "regional-us" / "manifest.csv").is_file() or not (data_dir / "usgra-seg").is_dir():
        pytest.skip("regional-us or usgra-seg not present")
    return data_dir


def test_folds_by_subject_within_each_source(rus_root, tmp_path):
    train0, val0, folds = assemble(_cfg(rus_root, tmp_path))
    assert set(folds) == {"kaggle", "regional_us"}
    for src in ("kaggle", "regional_us"):
        tr = set(train0.groups[train0.source == src])
        va = set(val0.groups[val0.source == src])
        assert va == set(folds[src][0]) and not tr & va  # never a subject on both sides
    # the nerve-free videos are spread over the folds
    assert [sum(v in f for v in ("4022", "4578", "7008")) for f in folds["regional_us"]] == [1, 1, 1]
    # box frames are weak; usgra-seg train is trained on, its test split scored
    assert train0.weak[train0.source == "regional_us"].any() and not train0.weak[train0.source != "regional_us"].any()
    assert (train0.source == "usgra").sum() == 12 and (val0.source == "usgra_test").sum() == 40
    vals = [assemble(_cfg(rus_root, tmp_path, fold=k))[1] for k in range(3)]
    every_fold = [set(v.groups[v.source != "usgra_test"]) for v in vals]
    assert not (every_fold[0] & every_fold[1]) and not (every_fold[1] & every_fold[2])


def test_source_weights_set_the_share_of_draws():
    n = 100
    fs = FrameSet(np.zeros((n, 4, 4), np.uint8), np.zeros((n, 4, 4), np.float32), np.arange(n).astype(object),
                  np.array(["x"] * n, dtype=object), [str(i) for i in range(n)],
                  source=np.array(["a"] * 90 + ["b"] * 10, dtype=object))
    order = epoch_order(fs, np.random.default_rng(0), {"a": 0.5, "b": 0.5}, epoch_size=200)
    assert order.size == 200
    assert (order >= 90).sum() == 100  # half the draws from the 10 frames of b
    assert len(set(order[order >= 90])) == 10  # each of them, repeated evenly
    np.testing.assert_array_equal(np.bincount(order[order >= 90] - 90), np.full(10, 10))
    with pytest.raises(ValueError, match="no frames of the weighted sources"):
        epoch_order(fs, np.random.default_rng(0), {"c": 1.0})


def test_box_channel_batches_keep_outlines_and_boxes_apart(rus_root, tmp_path):
    cfg = _cfg(rus_root, tmp_path)
    train_set, _, _ = assemble(cfg)
    x, y = next(batches(train_set, cfg.preprocess, 64, None, 0, box_channel=True, weights={"kaggle": 1,
                                                                                           "regional_us": 1}))
    m = y["mask"]
    assert m.shape[-1] == 2 and x.shape[0] == m.shape[0]
    # no frame has both an outline and a box; presence is either
    both = (m[..., 0] > 0.5).reshape(len(m), -1).any(1) & (m[..., 1] > 0.5).reshape(len(m), -1).any(1)
    assert not both.any() and (m[..., 1] > 0.5).any() and (m[..., 0] > 0.5).any()
    np.testing.assert_array_equal(y["nerve_present"][:, 0] > 0.5, (m > 0.5).reshape(len(m), -1).any(1))


def test_config_errors_name_the_key(tmp_path, rus_root):
    with pytest.raises(ConfigError, match="every source is null"):
        load_train_config(None, **{"data.sources": {"kaggle": None}})
    with pytest.raises(ConfigError, match="boxes"):
        load_train_config(None, **{"data.sources": {"regional_us": {"boxes": "square"}}})
    with pytest.raises(ConfigError, match="regional_us.videos"):
        assemble(_cfg(rus_root, tmp_path, sources={"regional_us": {"videos": ["nope"]}}))


@pytest.fixture(scope="module")
def multi_run(rus_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    p = out / "multi.yaml"
    p.write_text(yaml.safe_dump(MULTI | {"out_dir": str(out), "data": MULTI["data"] | {"root": str(rus_root)}}))
    assert main(["train", "--config", str(p), "--log-level", "WARNING"]) == 0
    return p, out / "multi" / "fold-0"


def test_multi_source_run_reports_every_source(multi_run):
    _, run = multi_run
    res = json.loads((run / "result.json").read_text())
    per = res["validation"]["per_source"]
    assert set(per) == {"kaggle", "regional_us", "usgra_test"}
    assert per["regional_us"]["n_positive"] > 0 and "centroid_in_box" in per["regional_us"]
    assert "mean_dice_positive" in per["usgra_test"] and per["usgra_test"]["n"] == 40
    prov = load_spec(run / "model.keras", verify_hash=False).provenance
    assert prov["data"]["box_supervision"] == "tight" and prov["data"]["draws_per_epoch"] == 96
    assert prov["data"]["source_weights"] == {"kaggle": 0.5, "regional_us": 0.3, "usgra": 0.2}
    assert any("non-commercial" in t for t in prov["data"]["terms"])
    header = (run / "history.csv").read_text().splitlines()[0]
    assert "val_regional_us_centroid_in_box" in header and "val_usgra_test_mean_dice_positive" in header


def test_summarise_finished_folds_sets_the_operating_point(multi_run, capsys):
    cfg_path, run = multi_run
    assert main(["train", "--config", str(cfg_path), "--summarise", "--log-level", "WARNING"]) == 0
    cv = json.loads((run.parent / "cv.json").read_text())
    op = cv["presence_operating_point"]
    assert cv["folds_finished"] == [0] and "each of kaggle, regional_us" in op["rule"]
    assert set(op["per_source"]) == {"kaggle", "regional_us", "usgra_test"}
    t = op["chosen"]["threshold"]
    assert 0.0 < t <= 1.0 and op["per_source"]["kaggle"]["sensitivity"] >= 0.92
    assert op["per_source"]["regional_us"]["sensitivity"] >= 0.92


def test_init_fine_tunes_a_trained_model(multi_run, rus_root, tmp_path):
    import keras

    _, run = multi_run
    cfg = {"name": "ft", "out_dir": str(tmp_path), "init": str(run / "model.keras"),
           "data": {"root": str(rus_root), "sources": {"kaggle": None, "usgra": {"limit": 10}}},
           "model": {"base_filters": 4}, "optim": {"epochs": 1, "batch_size": 8, "lr": 1e-4}}
    p = tmp_path / "ft.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(p), "--log-level", "WARNING"]) == 0
    before = keras.models.load_model(run / "model.keras", compile=False).get_weights()
    after = keras.models.load_model(tmp_path / "ft" / "model.keras", compile=False).get_weights()
    assert len(before) == len(after) and any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))
    spec = load_spec(tmp_path / "ft" / "model.keras", verify_hash=False)
    assert spec.provenance["init"] == str(run / "model.keras") and spec.provenance["data"]["n_train"] == 10
    # a model trained on another input size cannot be fine-tuned by this config
    bad = cfg | {"preprocess": {"height": 64, "width": 96}}
    p.write_text(yaml.safe_dump(bad))
    assert main(["train", "--config", str(p), "--log-level", "WARNING"]) == EXIT_CONFIG
    with pytest.raises(ConfigError, match="init: .* not found"):
        from train.train import train

        train(load_train_config(None, init=str(tmp_path / "none.keras"), **{"data.root": str(rus_root)}))


def test_multi_source_model_converts_and_evaluates_on_video(multi_run, rus_root, tmp_path, capsys):
    _, run = multi_run
    out = tmp_path / "m.tflite"
    assert main(["convert", "--model", str(run / "model.keras"), "--out", str(out), "--float32"]) == 0
    rep_path = tmp_path / "rus.json"
    assert main(["eval", "--model", str(out), "--data", str(rus_root / "regional-us"), "--every", "60",
                 "--json", str(rep_path)]) == 0
    rep = json.loads(rep_path.read_text())
    assert rep["n_videos"] == 39 and rep["layout"] == "box-video" and rep["presence_auc"] is not None
    assert rep["thresholds"]["presence"] == load_spec(out).thresholds.presence_enter


def test_adapt_curve_fine_tunes_scores_and_plots(multi_run, rus_root, tmp_path):
    pytest.importorskip("matplotlib")
    from train.adapt import plot_curve, run_curve

    _, run = multi_run
    curve = run_curve(run / "model.keras", rus_root, [0, 6], tmp_path / "adapt", draws=32, batch=8)
    r0, r6 = curve["rows"]
    assert (r0["frames"], r0["fine_tune_seconds"]) == (0, 0.0) and r6["frames"] == 6 and r6["fine_tune_seconds"] > 0
    for r in (r0, r6):
        assert 0.0 <= r["mean_dice_positive_ungated"] <= 1.0
    spec = load_spec(tmp_path / "adapt" / "n006" / "model.keras", verify_hash=False)
    assert spec.provenance["data"]["n_train"] == 6 and spec.provenance["init"] == str(run / "model.keras")
    assert json.loads((tmp_path / "adapt" / "curve.json").read_text())["rows"][1]["frames"] == 6
    import cv2

    png = plot_curve(curve, tmp_path / "c.png")
    assert cv2.imread(str(png)) is not None


def test_mixed_calibration_and_check_folders(rus_root, tmp_path):
    from convert.cli import read_folder
    from convert.mixed import write_folders

    counts = write_folders(rus_root, tmp_path, per_source=8)
    assert set(counts) == {"calibration", "check"}
    for name in ("calibration", "check"):
        assert set(counts[name]) == {"kaggle", "regional_us", "usgra"}
        layout, pos, neg, unl = read_folder(tmp_path / name, "--calibration")
        assert layout == "manifest" and pos and neg and not unl
    # no frame in both folders (compared by content)
    import hashlib

    def digests(folder):
        return {hashlib.sha256(p.read_bytes()).hexdigest() for p in (folder / "images").glob("*.png")}

    assert not digests(tmp_path / "calibration") & digests(tmp_path / "check")


def test_ablation_scores_every_run_on_every_source(multi_run, tmp_path):
    from train.ablation import markdown, score_runs

    _, run = multi_run
    rows = score_runs([run.parent], 0)
    per = rows[0]["per_source"]
    assert set(per) == {"kaggle", "regional_us", "usgra_test"} and per["usgra_test"]["n"] == 40
    table = markdown(rows)
    assert "| regional-us centroid in box (ungated) |" in table and "| multi |" in table.splitlines()[0]


def test_tune_live_on_real_out_of_fold_video(multi_run, rus_root, tmp_path):
    from edge.config import PresenceConfig
    from edge.plan import settle_rules
    from train.tune_live import oof_outputs, tune, write_rules

    _, run = multi_run
    outs = oof_outputs(run.parent, rus_root / "regional-us")
    held = load_spec(run / "model.keras", verify_hash=False).provenance["data"]["folds"]["regional_us"][0]
    assert sorted(o.video.subject for o in outs) == sorted(held)
    for o in outs:  # every frame of each held-out video, analysed once
        assert len(o.p) == len(o.truth) == o.masks.shape[0] > 100
    spec = load_spec(run / "model.keras", verify_hash=False)
    before = settle_rules(PresenceConfig(), spec.thresholds).as_dict()
    rep = tune(outs, before, (spec.preprocess.height, spec.preprocess.width))
    assert rep["videos"] == len(outs) and rep["chosen"]["enter"] == before["enter"]
    assert 0.0 <= rep["out_of_fold_before_all"]["state_accuracy"] <= 1.0
    model = tmp_path / "m.keras"
    model.write_bytes((run / "model.keras").read_bytes())
    (tmp_path / "m.yaml").write_text((run / "model.yaml").read_text())
    write_rules(model, rep["chosen"], {"videos": rep["videos"]})
    assert load_spec(model, verify_hash=False).thresholds.min_frames_off == rep["chosen"]["min_frames_off"]
