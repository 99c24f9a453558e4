"""`nerveseg demo --truth`: the expert's boxes drawn beside the outline, after the analysis."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edge.cli import EXIT_CONFIG, EXIT_OK, main
from edge.truth import TRUTH_COLOR, draw_truth, parse_boxes


def test_draw_truth_marks_the_box_edges():
    img = np.zeros((60, 80, 3), np.uint8)
    draw_truth(img, [(10, 20, 30, 15)])
    assert tuple(img[20, 25]) == TRUTH_COLOR and tuple(img[35, 40]) == TRUTH_COLOR  # top and bottom edges
    assert not img[27, 25].any()  # inside stays as it was


@pytest.fixture(scope="module")
def rus_video(data_dir):
    v = data_dir / "regional-us" / "videos" / "1643.mp4"
    if not v.is_file():
        pytest.skip("regional-us not present")
    return v, data_dir / "regional-us" / "boxes" / "1643.txt"


def test_demo_draws_the_truth_on_real_video(rus_video, tmp_path):
    video, ann = rus_video
    boxes, _ = parse_boxes(ann)
    out = tmp_path / "truth.mp4"
    assert main(["demo", "--source", str(video), "--truth", str(ann), "--frames", "40", "--out", str(out)]) == EXIT_OK
    plain = tmp_path / "plain.mp4"
    assert main(["demo", "--source", str(video), "--frames", "40", "--out", str(plain)]) == EXIT_OK
    cap, cap0 = cv2.VideoCapture(str(out)), cv2.VideoCapture(str(plain))
    with_box = [i for i in range(40) if boxes.get(i)]
    without = [i for i in range(40) if not boxes.get(i)]
    assert with_box and without
    for i in range(40):
        ok, f = cap.read()
        ok0, f0 = cap0.read()
        assert ok and ok0
        x, y, w, h = (int(round(v)) for v in (boxes.get(i) or [(356, 135, 133, 29)])[0])
        edge = f[y, x + 2 : x + w - 2].astype(int)
        edge0 = f0[y, x + 2 : x + w - 2].astype(int)
        greener = float(np.mean((edge[:, 1] - edge[:, 2]) - (edge0[:, 1] - edge0[:, 2])))
        if i in with_box:
            assert greener > 40, (i, greener)
        else:
            assert abs(greener) < 15, (i, greener)


def test_truth_errors_are_config_errors(rus_video, tmp_path, capsys):
    video, ann = rus_video
    out = str(tmp_path / "o.mp4")
    assert main(["demo", "--source", str(video), "--truth", str(tmp_path / "none.txt"), "--out", out]) == EXIT_CONFIG
    assert "--truth" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_text(json.dumps({"0": {"bounding_boxes": "[[1, 2]]"}}) + "\n")
    assert main(["demo", "--source", str(video), "--truth", str(bad), "--out", out]) == EXIT_CONFIG
    assert "bad.txt line 1" in capsys.readouterr().err
    assert main(["demo", "--source", str(video), "--truth", str(ann), "--realtime", "--out", out]) == EXIT_CONFIG
