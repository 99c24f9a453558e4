"""`nerveseg eval` on a box-labelled video folder (the regional-us layout): hand-computed reports,
then a real model on a hand-built folder of real frames written as video."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edge.cli import EXIT_CONFIG, EXIT_OK, main
from tests import model_fixtures
from train.evaluate import box_video_report, evaluate

kaggle_sets = model_fixtures.kaggle_sets
trained_unet = model_fixtures.trained_unet
tflite_models = model_fixtures.tflite_models


def _sq(y, x, s=2, shape=(6, 6)):
    m = np.zeros(shape, bool)
    m[y : y + s, x : x + s] = True
    return m


def test_report_hand_computed():
    box = _sq(1, 1, 3)  # rows/cols 1..3
    none = np.zeros((6, 6), bool)
    # video a: nerve frames 0, 1, 2 and one empty frame 3; video b: one nerve frame, one empty
    probs = [_sq(1, 1), _sq(4, 4), _sq(1, 1), _sq(0, 0), _sq(2, 2), none]
    ps = [0.9, 0.8, 0.3, 0.7, 0.95, 0.1]
    boxes = [box, box, box, none, box, none]
    present = [True, True, True, False, True, False]
    vids = ["a", "a", "a", "a", "b", "b"]
    rep = box_video_report(probs, ps, boxes, present, vids, mask_threshold=0.5, presence_threshold=0.75,
                           n_boot=200)
    # shown: frames 0 (p .9), 1 (.8), 4 (.95); frame 2 is under the threshold, frame 3 (.7) too
    assert rep["presence_sensitivity"] == pytest.approx(3 / 4)
    assert rep["presence_specificity"] == pytest.approx(1.0)
    # AUC: positives .9 .8 .3 .95 vs negatives .7 .1 -> pairs won: 2+2+1+2 = 7 of 8
    assert rep["presence_auc"] == pytest.approx(7 / 8)
    # centroids: frame 0 (1.5,1.5)->(2,2) in; frame 1 (4.5,4.5)->(5,5) out; frame 2 not shown; frame 4 (2.5)->(3,3) in
    assert rep["centroid_in_box"] == pytest.approx(2 / 4)
    assert rep["centroid_in_box_when_shown"] == pytest.approx(2 / 3)
    # pixels inside: frame 0 4/4, frame 1 0/4, frame 4 rows/cols 2..3 all inside -> 4/4
    assert rep["mask_in_box"] == pytest.approx((1 + 0 + 1) / 3)
    # ungated: frame 2 counts too (in the box)
    assert rep["centroid_in_box_ungated"] == pytest.approx(3 / 4)
    a, b = rep["per_video"]
    assert (a["video"], a["n"], a["n_positive"], a["sensitivity"], a["specificity"]) == ("a", 4, 3, 2 / 3, 1.0)
    assert a["presence_auc"] == pytest.approx(2 / 3)  # .9 .8 beat .7; .3 does not
    assert b["centroid_in_box"] == 1.0 and b["specificity"] == 1.0
    ci = rep["ci95"]
    assert ci["unit"] == "video" and ci["n_videos"] == 2
    lo, hi = ci["centroid_in_box"]
    assert lo <= rep["centroid_in_box"] <= hi
    assert [r["shown"] for r in rep["per_image"]] == [True, True, False, False, True, False]
    json.dumps(rep, allow_nan=False)


@pytest.fixture(scope="module")
def video_folder(data_dir, tmp_path_factory):
    """Two 'patients' made of real Kaggle frames written as MJPG video, boxes around the real masks;
    video 'v1' has an annotation file one line shorter than the video (the last frame: no nerve)."""
    root = tmp_path_factory.mktemp("rus")
    (root / "videos").mkdir()
    (root / "boxes").mkdir()
    full = data_dir / "kaggle-bp" / "fullres"
    pos, neg = [], []
    for p in sorted((full / "masks").glob("*_mask.png")):
        (pos if cv2.imread(str(p), cv2.IMREAD_GRAYSCALE).any() else neg).append(p.name.replace("_mask.png", ""))
    plan = {"v1": pos[:2] + neg[:2], "v2": pos[2:4] + neg[2:4]}
    rows = ["path,boxes_path,subject,label,fps"]
    for vid, names in plan.items():
        w = cv2.VideoWriter(str(root / "videos" / f"{vid}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 20, (580, 420))
        lines = []
        for i, n in enumerate(names):
            img = cv2.imread(str(full / "images" / f"{n}.png"))
            w.write(img)
            m = cv2.imread(str(full / "masks" / f"{n}_mask.png"), cv2.IMREAD_GRAYSCALE)
            bb = [list(cv2.boundingRect((m > 0).astype(np.uint8)))] if m.any() else []
            lines.append(json.dumps({str(i): {"tracker": "human", "bounding_boxes": json.dumps(bb)}}))
        w.release()
        if vid == "v1":
            lines = lines[:-1]
        (root / "boxes" / f"{vid}.txt").write_text("\n".join(lines) + "\n")
        rows.append(f"videos/{vid}.avi,boxes/{vid}.txt,{vid},sc,20")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def test_real_model_on_hand_built_video_folder(video_folder, tflite_models):
    from edge.spec import load_spec

    model = tflite_models["float32"]
    rep = evaluate(model, video_folder, presence_threshold=None, n_boot=100)
    spec = load_spec(model)
    assert rep["layout"] == "box-video" and rep["n_videos"] == 2 and rep["n_images"] == 8
    assert (rep["n_positive"], rep["n_negative"]) == (4, 4)
    assert rep["thresholds"]["presence"] == spec.thresholds.presence_enter
    rows = rep["per_image"]
    assert [(r["video"], r["frame"]) for r in rows] == [(v, i) for v in ("v1", "v2") for i in range(4)]
    # the pooled numbers are what the per-frame rows say
    t = spec.thresholds.presence_enter
    pos = [r for r in rows if r["truth_present"]]
    neg = [r for r in rows if not r["truth_present"]]
    assert rep["presence_sensitivity"] == pytest.approx(np.mean([r["p_nerve"] >= t for r in pos]))
    assert rep["presence_specificity"] == pytest.approx(np.mean([r["p_nerve"] < t for r in neg]))
    assert rep["centroid_in_box"] == pytest.approx(np.mean([r["centroid_in_box"] for r in pos]))
    assert all(not r["centroid_in_box"] for r in rows if not r["shown"])
    # the fixture was trained on subjects 1-2: with the gate open its outlines land on the boxed nerve
    ungated = evaluate(model, video_folder, presence_threshold=0.0, n_boot=100)
    assert ungated["centroid_in_box"] >= 0.5 and ungated["mask_in_box"] > 0.3
    # every other frame
    half = evaluate(model, video_folder, every=2, n_boot=100)
    assert [r["frame"] for r in half["per_image"]] == [0, 2, 0, 2]


def test_cli_on_video_folder_prints_table_and_writes_json(video_folder, tflite_models, tmp_path, capsys):
    out = tmp_path / "v.json"
    argv = ["eval", "--model", str(tflite_models["int8"]), "--data", str(video_folder), "--json", str(out)]
    assert main(argv) == EXIT_OK
    text = capsys.readouterr().out
    assert "box-labelled video, 2 videos, 8 frames" in text and "centroid in box" in text and "v2" in text
    rep = json.loads(out.read_text())
    assert rep["ci95"]["unit"] == "video" and "per_image" not in rep and len(rep["per_video"]) == 2
    assert main([*argv, "--split", "test"]) == EXIT_CONFIG
    assert "use --every N" in capsys.readouterr().err


def test_malformed_annotation_names_file_and_line(video_folder, tflite_models, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(video_folder, bad)
    with (bad / "boxes" / "v2.txt").open("a") as f:
        f.write("{not json\n")
    assert main(["eval", "--model", str(tflite_models["float32"]), "--data", str(bad)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "v2.txt line 5" in err
