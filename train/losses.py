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
