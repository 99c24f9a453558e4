"""Box-labelled video (regional-us layout): the loader on real files, box masks, localisation, the loss."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from edge.spec import PreprocessSpec
from train.boxes import (
    box_cover,
    box_mask,
    box_video_frames,
    is_box_video_folder,
    iter_video,
    parse_boxes,
    read_box_videos,
)
from train.metrics import box_localisation

SPEC = PreprocessSpec(height=96, width=128, filter="gaussian", filter_size=5)


@pytest.fixture(scope="module")
def rus(data_dir):
    folder = data_dir / "regional-us"
    if not (folder / "manifest.csv").is_file():
        pytest.skip("regional-us not present")
    return folder


def _frames_csv(folder):
    with (folder / "frames.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_real_folder_reads_every_video_with_its_boxes(rus):
    assert is_box_video_folder(rus) and not is_box_video_folder(rus.parent / "kaggle-bp")
    videos = read_box_videos(rus)
    assert len(videos) == 39 and len({v.subject for v in videos}) == 39
    assert sorted(v.subject for v in videos if v.label == "neg") == ["4022", "4578", "7008"]
    table = _frames_csv(rus)
    by_video = {v.subject: v for v in videos}
    # every row of the dataset's own table agrees with what the loader made of the JSON files
    for r in table:
        v = by_video[r["video"]]
        boxes = v.boxes_at(int(r["frame"]))
        assert bool(boxes) == (r["has_box"] == "1"), r
        if boxes:
            assert [list(map(int, b)) for b in boxes] == json.loads(r["boxes_xywh"])
    assert sum(bool(v.boxes_at(i)) for v in videos for i in v.boxes) == sum(r["has_box"] == "1" for r in table)


def test_frames_without_a_line_count_as_no_nerve(tmp_path):
    ann = tmp_path / "a.txt"
    ann.write_text('{"0": {"tracker": "human", "bounding_boxes": "[[10, 20, 30, 40]]"}}\n'
                   '{"1": {"tracker": "csrt", "bounding_boxes": "[]"}}\n')
    boxes, trackers = parse_boxes(ann)
    assert boxes == {0: [(10.0, 20.0, 30.0, 40.0)], 1: []} and trackers == {0: "human", 1: "csrt"}
    ann.write_text('{"0": {"tracker": "human", "bounding_boxes": "[[10, 20]]"}}\n')
    with pytest.raises(ValueError, match=r"a.txt line 1: not a box annotation"):
        parse_boxes(ann)


def test_box_mask_by_pixel_centre_hand_values():
    # frame 8x8 -> 4x4: output pixel (i, j) has its centre at frame (2j+1, 2i+1)
    m = box_mask([(2, 0, 2, 4)], (8, 8), (4, 4))  # x 2..4, y 0..4: centres x=3, y=1 and 3
    want = np.zeros((4, 4), bool)
    want[0:2, 1] = True
    np.testing.assert_array_equal(m, want)
    assert not box_mask([], (8, 8), (4, 4)).any()
    # union of two boxes, cover is the covered share of each output pixel
    c = box_cover([(0, 0, 2, 2), (6, 6, 2, 2)], (8, 8), (4, 4))
    assert c[0, 0] == pytest.approx(1.0) and c[3, 3] == pytest.approx(1.0) and c[1:3].sum() == 0


def test_box_localisation_hand_values():
    boxes = np.zeros((2, 6, 6), bool)
    boxes[:, 1:4, 1:4] = True
    masks = np.zeros((3, 6, 6), bool)
    masks[0, 2:4, 2:5] = True   # 6 px, 4 inside; centroid (2.5, 3) -> pixel (3, 3) inside
    masks[1, 4:6, 4:6] = True   # outside entirely
    loc = box_localisation(masks, np.concatenate([boxes, boxes[:1]]))
    np.testing.assert_array_equal(loc["centroid_in"], [True, False, False])  # empty mask = miss
    np.testing.assert_allclose(loc["share_in"][:2], [4 / 6, 0.0])
    assert np.isnan(loc["share_in"][2])


def test_box_video_frames_real_video_presence_and_weak_marks(rus):
    v = next(v for v in read_box_videos(rus) if v.subject == "1643")  # 147 frames, 9 with a nerve
    fs = box_video_frames([v], SPEC, every=7)
    frames = [int(n.split("#")[1]) for n in fs.names]
    assert frames == list(range(0, 147, 7))
    has = np.array([bool(v.boxes_at(i)) for i in frames])
    np.testing.assert_array_equal(fs.present, has)
    np.testing.assert_array_equal(fs.weak, has)
    assert set(fs.groups) == {"1643"} and fs.images.shape == (len(frames), 96, 128)
    # the stage-1 image is what the bedside computes from the decoded frame
    from edge.preprocess import to_model_size

    first = next(iter_video(v))[1]
    np.testing.assert_array_equal(fs.images[0], to_model_size(first, None, SPEC))


keras = pytest.importorskip("keras")


def _loss(y_true, y_pred):
    from train.losses import box_supervised_loss

    t = keras.ops.convert_to_tensor(np.asarray(y_true, np.float32))
    p = keras.ops.convert_to_tensor(np.asarray(y_pred, np.float32))
    return keras.ops.convert_to_numpy(box_supervised_loss(t, p))


def test_box_loss_equals_dice_bce_without_boxes():
    from train.losses import dice_bce_loss

    rng = np.random.default_rng(0)
    t = (rng.random((3, 8, 8, 1)) > 0.6).astype(np.float32)
    p = rng.uniform(0.05, 0.95, (3, 8, 8, 1)).astype(np.float32)
    y = np.concatenate([t, np.zeros_like(t)], axis=-1)
    want = keras.ops.convert_to_numpy(dice_bce_loss(keras.ops.convert_to_tensor(t), keras.ops.convert_to_tensor(p)))
    np.testing.assert_allclose(_loss(y, p), want, rtol=1e-5)


def test_box_loss_hand_values_on_a_box_frame():
    y = np.zeros((1, 4, 4, 2), np.float32)
    y[0, 1:3, 1:3, 1] = 1.0  # a 2x2 box; 12 pixels outside
    p = np.full((1, 4, 4, 1), 0.5, np.float32)
    # outside: 12 * -log(0.5) / (12 + 1); bags: 2 rows + 2 columns, each max 0.5 -> -log(0.5)
    want = 12 * np.log(2) / 13 + 0.5 * (np.log(2) + np.log(2))
    np.testing.assert_allclose(_loss(y, p), [want], rtol=1e-5)
    # an outline inside the box, one pixel per row and column, nothing outside: near zero
    good = np.full((1, 4, 4, 1), 1e-4, np.float32)
    good[0, 1, 1, 0] = good[0, 2, 2, 0] = 1 - 1e-4
    bad_outside = good.copy()
    bad_outside[0, 0, :, 0] = 0.9
    empty = np.full((1, 4, 4, 1), 1e-4, np.float32)
    lg, lo, le = _loss(y, good)[0], _loss(y, bad_outside)[0], _loss(y, empty)[0]
    assert lg < 0.01 and lo > lg + 0.1 and le > 5.0
    # it never asks for the whole box: the diagonal outline scores as well as the filled rectangle
    full = good.copy()
    full[0, 1:3, 1:3, 0] = 1 - 1e-4
    assert abs(_loss(y, full)[0] - lg) < 1e-3


def test_rectangularity_tells_a_painted_box_from_an_outline():
    from train.metrics import rectangularity

    box = np.zeros((1, 20, 20), bool)
    box[0, 5:15, 3:9] = True
    disc = np.zeros((1, 20, 20), bool)
    yy, xx = np.mgrid[:20, :20]
    disc[0] = (yy - 10) ** 2 + (xx - 10) ** 2 <= 36
    assert rectangularity(box) == 1.0
    assert 0.6 < rectangularity(disc) < 0.8  # pi/4 for a continuous disc, 113/169 for this one
    assert rectangularity(np.zeros((2, 4, 4), bool)) is None
