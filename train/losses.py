"""Losses for the two outputs (TensorFlow/Keras; imported only by training code).

mask: soft Dice + binary cross-entropy. Soft Dice per image with smoothing 1,
so an empty prediction on an empty truth scores 1 (loss 0), matching the Kaggle
metric's convention; BCE keeps gradients useful while Dice is flat.
nerve_present: binary cross-entropy on P(nerve).
"""

from __future__ import annotations

import keras
from keras import ops

SMOOTH = 1.0


@keras.saving.register_keras_serializable(package="nerveseg")
def soft_dice_loss(y_true, y_pred):
    """1 - soft Dice per image (B,), over H, W, C; y in [0, 1]."""
    axes = (1, 2, 3)
    inter = ops.sum(y_true * y_pred, axis=axes)
    denom = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    return 1.0 - (2.0 * inter + SMOOTH) / (denom + SMOOTH)


@keras.saving.register_keras_serializable(package="nerveseg")
def dice_bce_loss(y_true, y_pred):
    """Soft Dice loss + pixel-mean binary cross-entropy, per image (B,)."""
    bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred), axis=(1, 2))
    return soft_dice_loss(y_true, y_pred) + bce


EPS = 1e-6


def _bce_toward(p, target: float):
    p = ops.clip(p, EPS, 1.0 - EPS)
    return -ops.log(p) if target == 1.0 else -ops.log(1.0 - p)


@keras.saving.register_keras_serializable(package="nerveseg")
def box_supervised_loss(y_true, y_pred):
    """Mask loss for a batch that mixes outlines and boxes, per image (B,).

    y_true (B, H, W, 2): channel 0 the outline target (polygon masks; all zero on frames without a
    nerve), channel 1 the box union of box-labelled frames (zero on the others). y_pred (B, H, W, 1).

    Frames without a box: `dice_bce_loss` on channel 0, as before. Box-labelled frames: the box says
    where the nerve may be, not its outline, so no pixel inside a box is told "nerve":
      * outside the boxes is background: mean BCE toward 0 over the pixels outside;
      * box tightness (a multiple-instance loss): an annotator's box touches the nerve on every side, so
        every row and every column that crosses the box union holds at least one nerve pixel. Each such
        line is a bag; its most probable pixel inside the box is pushed toward 1 (BCE), averaged over
        the bags. A rectangle of ones satisfies it, but so does the nerve itself; outside-background
        keeps the outline inside the box and the outlines of the other sources keep it nerve-shaped.
    """
    target, box = y_true[..., :1], y_true[..., 1:2]
    p = y_pred
    in_box = ops.cast(box > 0.5, p.dtype)
    weak = ops.cast(ops.max(in_box, axis=(1, 2, 3)) > 0.0, p.dtype)  # (B,)
    strong_loss = dice_bce_loss(target, p)

    outside = 1.0 - ops.cast(box > 0.0, p.dtype)  # any cover at all counts as "maybe nerve"
    out_bce = ops.sum(outside * _bce_toward(p, 0.0), axis=(1, 2, 3)) / (ops.sum(outside, axis=(1, 2, 3)) + 1.0)

    inside = p * in_box
    row_bag = ops.max(in_box, axis=2)  # (B, H, 1): the row crosses a box
    col_bag = ops.max(in_box, axis=1)  # (B, W, 1)
    row_max = ops.max(inside, axis=2)
    col_max = ops.max(inside, axis=1)
    row_l = ops.sum(row_bag * _bce_toward(row_max, 1.0), axis=(1, 2)) / (ops.sum(row_bag, axis=(1, 2)) + EPS)
    col_l = ops.sum(col_bag * _bce_toward(col_max, 1.0), axis=(1, 2)) / (ops.sum(col_bag, axis=(1, 2)) + EPS)
    weak_loss = out_bce + 0.5 * (row_l + col_l)
    return weak * weak_loss + (1.0 - weak) * strong_loss
