"""Training data: manifests, subject-wise folds, negatives, augmentation, bedside preprocessing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.preprocess import preprocess
from edge.spec import PreprocessSpec
from train.data import NO_AUGMENT, Augment, FrameSet, batches, kaggle_frames, nerve_free_crops, subject_folds
from train.manifest import read_manifest

SPEC = PreprocessSpec(height=96, width=128, filter="median", filter_size=5)


@pytest.fixture(scope="module")
def kaggle(data_dir):
    return kaggle_frames(data_dir, SPEC)


def test_manifests_of_every_shared_layout(data_dir):
    kb = read_manifest(data_dir / "kaggle-bp")
    assert sum(s.mask is None for s in kb) == 25  # the unlabelled test frames
    assert len({s.name for s in kb}) == len(kb)  # names unique although 1_* exist at two sizes
    us = read_manifest(data_dir / "usgra-seg")
    assert len(us) == 244 and all(s.mask and "masks_nerve" in str(s.mask) for s in us)
    assert {s.split for s in us} == {"train", "test"}
    nb = read_manifest(data_dir / "nerveblocker-femoral")
    assert len(nb) == 15 and all(s.subject is None for s in nb)


def test_manifest_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.csv"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.csv").write_text("path,mask_path\nmissing.png,\n")
    with pytest.raises(ValueError, match="missing.png does not exist"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.csv").write_text("image,mask\na,b\n")
    with pytest.raises(ValueError, match="no 'path' column"):
        read_manifest(tmp_path)


def test_kaggle_frames_go_through_bedside_stage_one(kaggle, data_dir):
    pos, empty = kaggle
    assert len(pos) == 2037 and pos.present.all()
    assert len(empty) == 37 and not empty.present.any()
    assert set(empty.groups) == {"1", "2"}
    # stage 1 + stage 2 of training == edge.preprocess.preprocess at the bedside
    i = pos.names.index("img_256x186/3_1")
    img = cv2.imread(str(data_dir / "kaggle-bp" / "img_256x186" / "3_1.png"), cv2.IMREAD_COLOR)
    x, _ = next(batches(pos.subset(np.array([i])), SPEC, 1, None, 0, shuffle=False))
    np.testing.assert_allclose(x[0, :, :, 0], preprocess(img, None, SPEC), atol=1e-6)


def test_folds_are_disjoint_cover_all_and_separate_the_empty_subjects(kaggle):
    pos, _ = kaggle
    subjects = sorted(set(pos.groups))
    folds = subject_folds(subjects, 5, seed=0)
    flat = [s for f in folds for s in f]
    assert sorted(flat) == sorted(subjects) and len(flat) == len(set(flat)) == 40
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    assert not any({"1", "2"} <= set(f) for f in folds)
    assert folds == subject_folds(subjects, 5, seed=0)
    assert folds != subject_folds(subjects, 5, seed=1)
    with pytest.raises(ValueError):
        subject_folds(subjects, 41)


def test_crops_never_contain_nerve_and_keep_subject(kaggle):
    pos, _ = kaggle
    sub = pos.subset(np.arange(200))
    crops = nerve_free_crops(sub, 1.0, np.random.default_rng(0))
    assert len(crops) > 50
    assert not crops.present.any() and crops.masks.max() == 0
    assert set(crops.groups) <= set(sub.groups)
    # each crop is a real window: its content is not a rescaled copy of the whole frame
    src = {n: i for i, n in enumerate(sub.names)}
    first = crops.names[0].split("#")[0]
    assert not np.array_equal(crops.images[0], sub.images[src[first]])


def test_augment_keeps_mask_aligned_with_image():
    img = np.full((96, 128), 20, np.uint8)
    img[30:50, 40:70] = 220  # a bright "nerve"
    mask = np.zeros((96, 128), np.float32)
    mask[30:50, 40:70] = 1.0
    aug = Augment(speckle=0.0, gain=0.0, gamma=0.0)
    rng = np.random.default_rng(3)
    for _ in range(10):
        a, m = aug(img, mask, rng)
        bright = a > 120
        assert (m > 0.5).sum() > 0
        inter = (bright & (m > 0.5)).sum()
        assert inter / max((m > 0.5).sum(), 1) > 0.9


def test_elastic_warp_is_bounded_smooth_and_keeps_mask_aligned():
    img = np.full((96, 128), 20, np.uint8)
    img[30:50, 40:70] = 220
    mask = np.zeros((96, 128), np.float32)
    mask[30:50, 40:70] = 1.0
    aug = Augment(shift=0, scale=0, rotate_deg=0, flip=False, gain=0, gamma=0, speckle=0, elastic=4.0)
    rng = np.random.default_rng(5)
    changed = 0
    for _ in range(5):
        a, m = aug(img, mask, rng)
        changed += not np.array_equal(m, mask)
        # aligned: the warped bright block is where the warped mask is
        assert ((a > 120) == (m > 0.5)).mean() > 0.99
        # bounded: nothing moves further than the 4-pixel peak displacement
        grown = cv2.dilate(mask, np.ones((11, 11), np.uint8))
        shrunk = cv2.erode(mask, np.ones((11, 11), np.uint8))
        assert (m[grown == 0] <= 0.01).all() and (m[shrunk > 0] >= 0.99).all()
    assert changed == 5


def test_augment_photometric_changes_only_intensity():
    rng = np.random.default_rng(0)
    img = rng.integers(30, 200, (96, 128)).astype(np.uint8)
    mask = (rng.random((96, 128)) > 0.8).astype(np.float32)
    aug = Augment(shift=0, scale=0, rotate_deg=0, flip=False, gain=0.2, gamma=0.2, speckle=0.1)
    a, m = aug(img, mask, rng)
    np.testing.assert_array_equal(m, mask)
    assert not np.array_equal(a, img)
    assert np.corrcoef(a.ravel(), img.ravel())[0, 1] > 0.8


def test_no_augment_is_identity():
    img = np.arange(96 * 128, dtype=np.uint8).reshape(96, 128)
    mask = np.zeros((96, 128), np.float32)
    a, m = NO_AUGMENT(img, mask, np.random.default_rng(0))
    np.testing.assert_array_equal(a, img)


def test_presence_target_follows_augmented_mask():
    # a nerve at the very edge can be shifted out of view: the target must then say "absent"
    img = np.zeros((96, 128), np.uint8)
    mask = np.zeros((96, 128), np.float32)
    mask[0:3, 0:3] = 1.0
    fs = FrameSet(img[None], mask[None], np.array(["s"], object), np.array(["positive"], object), ["x"])
    aug = Augment(shift=0.3, scale=0, rotate_deg=0, flip=False, gain=0, gamma=0, speckle=0)
    seen = set()
    it = batches(fs, SPEC, 1, aug, seed=0)
    for _ in range(30):
        _, y = next(it)
        present = bool(y["nerve_present"][0, 0])
        assert present == bool((y["mask"][0] > 0.5).any())
        seen.add(present)
    assert seen == {True, False}


def test_lung_frames_as_other_anatomy(lung_clips):
    from train.data import video_frames

    fs = video_frames(lung_clips, SPEC, every=10)
    assert len(fs) > 20 and not fs.present.any()
    assert set(fs.kinds) == {"other_anatomy"}
    assert {Path(g).name for g in fs.groups} == {p.stem for p in lung_clips}


def test_tf_dataset_yields_the_seeded_batches_in_order(kaggle):
    """What training is fed is exactly `batches`: same frames, same augmentation draws, same order."""
    pytest.importorskip("tensorflow")
    from train.data import make_tf_dataset

    pos, empty = kaggle
    data = FrameSet.concat([pos.subset(np.arange(0, 40, 4)), empty.subset(np.arange(3))])
    aug = Augment()
    ds = make_tf_dataset(data, SPEC, 4, aug, seed=7)
    ref = batches(data, SPEC, 4, aug, seed=7)
    for got in ds.take(5):  # more than one pass over the 13 frames
        x, y = next(ref)
        np.testing.assert_array_equal(got[0].numpy(), x)
        np.testing.assert_array_equal(got[1]["mask"].numpy(), y["mask"])
        np.testing.assert_array_equal(got[1]["nerve_present"].numpy(), y["nerve_present"])
        assert got[0].shape[1:] == (96, 128, 1)
