"""Losses against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from train.losses import dice_bce_loss, soft_dice_loss  # noqa: E402


def _t(a):
    return keras.ops.convert_to_tensor(np.asarray(a, np.float32))


def test_soft_dice_hand_values():
    t = np.zeros((2, 2, 2, 1), np.float32)
    p = np.zeros((2, 2, 2, 1), np.float32)
    # image 0: truth 2 pixels, prediction 0.5 on those 2 and on 1 other
    t[0, 0, :, 0] = 1
    p[0, 0, :, 0] = 0.5
    p[0, 1, 0, 0] = 0.5
    # image 1: empty truth, empty prediction -> perfect
    loss = keras.ops.convert_to_numpy(soft_dice_loss(_t(t), _t(p)))
    # dice0 = (2*1 + 1) / (2 + 1.5 + 1) = 3/4.5
    np.testing.assert_allclose(loss, [1 - 3 / 4.5, 0.0], atol=1e-6)


def test_empty_truth_penalises_false_positive():
    t = np.zeros((1, 4, 4, 1), np.float32)
    p = np.full((1, 4, 4, 1), 0.9, np.float32)
    loss = keras.ops.convert_to_numpy(soft_dice_loss(_t(t), _t(p)))
    np.testing.assert_allclose(loss, [1 - 1 / (16 * 0.9 + 1)], atol=1e-6)


def test_dice_bce_adds_pixel_bce():
    t = np.zeros((1, 2, 2, 1), np.float32)
    t[0, 0, 0, 0] = 1
    p = np.full((1, 2, 2, 1), 0.5, np.float32)
    got = keras.ops.convert_to_numpy(dice_bce_loss(_t(t), _t(p)))
    dice = (2 * 0.5 + 1) / (1 + 2 + 1)
    bce = -np.log(0.5)
    np.testing.assert_allclose(got, [1 - dice + bce], atol=1e-4)
