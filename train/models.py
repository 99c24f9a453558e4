"""Model builders: the U-Net family (mini-U-Net and classic U-Net), with a presence head.

`build_unet` makes the mini-U-Net (``skips=3``: 3 down-samplings, 3 skip
concatenations) or the classic U-Net (``skips=4``). Both answer two questions
from one pass:

* ``mask``: per-pixel P(nerve), float ``(batch, H, W, 1)`` in [0, 1];
* ``nerve_present``: P(a nerve is in view), float ``(batch, 1)``, from a
  GlobalAveragePooling2D -> Dense(1, sigmoid) head on the bottleneck.

The model's outputs are a dict keyed by those names, so the SavedModel and
TFLite signatures carry them and the runner finds them by name.

Only ops that XNNPACK runs in int8 are used (Conv2D, DepthwiseConv2D,
Conv2DTranspose, MaxPool, Concatenate, ReLU, sigmoid, mean; plus
RESIZE_BILINEAR for ``upsample="bilinear"``). BatchNorm folds into the
convolutions at conversion time.

Layer names are deterministic (``enc1_1_conv``, ``bott_2_bn``, ``dec3_concat``,
...) so weights can be matched by name and reports are readable.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import keras
from keras import layers

logger = logging.getLogger(__name__)

CONVS = ("plain", "separable")
UPSAMPLES = ("transpose", "bilinear")
MAX_SKIPS = 5
# Keras's default BatchNorm momentum (0.99) left the running statistics far off
# after a few hundred steps on this data (inference-mode Dice near 0 while
# training-mode Dice looked fine); 0.9 tracks them
# within a few dozen steps.
BN_MOMENTUM = 0.9


def _validate(
    input_shape: Sequence[int],
    base_filters: int,
    skips: int,
    conv: str,
    upsample: str,
    batch_size: int | None,
) -> tuple[int, int, int]:
    """Check the builder's options; return ``(H, W, C)``. Raises ValueError saying what is allowed."""
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ValueError(f"input_shape must be (height, width, channels) of positive ints, got {input_shape!r}")
    if not isinstance(skips, int) or isinstance(skips, bool) or not 1 <= skips <= MAX_SKIPS:
        raise ValueError(
            f"skips must be an int from 1 to {MAX_SKIPS} (3 = mini-U-Net, 4 = classic U-Net), got {skips!r}"
        )
    h, w, c = shape
    step = 2**skips
    if h % step or w % step:
        raise ValueError(
            f"input height and width must be divisible by 2**skips = {step} for skips={skips}, got {h}x{w}; "
            f"e.g. {h // step * step or step}x{w // step * step or step}"
        )
    if not isinstance(base_filters, int) or isinstance(base_filters, bool) or base_filters < 1:
        raise ValueError(f"base_filters must be a positive int, got {base_filters!r}")
    if conv not in CONVS:
        raise ValueError(f"conv must be one of {', '.join(CONVS)}, got {conv!r}")
    if upsample not in UPSAMPLES:
        raise ValueError(f"upsample must be one of {', '.join(UPSAMPLES)}, got {upsample!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(
            f"batch_size must be None (flexible, for training) or a positive int (1 for conversion), got {batch_size!r}"
        )
    return h, w, c


def _conv_bn_relu(x, filters: int, name: str, batch_norm: bool, separable: bool):
    """3x3 'same' conv (-> BN) -> ReLU, layers named ``{name}_conv{i}``/``_bn``/``_relu`` by the caller's suffix."""
    if separable:
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=not batch_norm, name=f"{name}_sepconv")(x)
    else:
        x = layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm, name=f"{name}_conv")(x)
    if batch_norm:
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _double_conv(x, filters: int, name: str, batch_norm: bool, separable: bool):
    x = _conv_bn_relu(x, filters, f"{name}_1", batch_norm, separable)
    return _conv_bn_relu(x, filters, f"{name}_2", batch_norm, separable)


def build_unet(
    input_shape: Sequence[int] = (96, 128, 1),
    base_filters: int = 16,
    skips: int = 3,
    batch_norm: bool = True,
    conv: str = "plain",
    upsample: str = "transpose",
    batch_size: int | None = None,
    name: str | None = None,
) -> keras.Model:
    """Build a U-Net with ``skips`` levels and a presence head.

    input_shape: ``(H, W, C)``; H and W divisible by ``2**skips``. The network
        input is float32 as produced by `edge.preprocess.preprocess` (gray/255,
        then mean/std of the model spec).
    base_filters: filters of the first level; they double per level, the
        bottleneck has ``base_filters * 2**skips``.
    skips: number of down-samplings = skip concatenations (3: the
        mini-U-Net, 4: the classic U-Net).
    batch_norm: conv -> BN -> ReLU (convs without bias) instead of conv+bias -> ReLU.
        Keep it on for int8: without BN the top skip was wiped out (its small range had to share
        one scale with the upsampled path's large one in the concatenation).
    conv: ``"plain"`` 3x3 Conv2D, or ``"separable"`` (depthwise 3x3 + pointwise 1x1)
        for every 3x3 conv except the first, whose input has one channel.
    upsample: ``"transpose"`` Conv2DTranspose 2x2 stride 2, or ``"bilinear"``
        UpSampling2D followed by a 1x1 conv (so both give the same widths).
    batch_size: None for training; 1 for the model to convert (a flexible batch
        adds shape ops around Conv2DTranspose and splits the XNNPACK graph).
    name: model name; default ``unet_s{skips}_f{base_filters}``.

    Returns a functional `keras.Model` with outputs ``{"mask": (B, H, W, 1),
    "nerve_present": (B, 1)}``, both float32 sigmoid probabilities.
    """
    h, w, c = _validate(input_shape, base_filters, skips, conv, upsample, batch_size)
    separable = conv == "separable"
    inputs = keras.Input(shape=(h, w, c), batch_size=batch_size, name="image")

    x = inputs
    skip_tensors = []
    for level in range(1, skips + 1):
        filters = base_filters * 2 ** (level - 1)
        # Depthwise on a 1-channel image is a plain conv with extra overhead.
        first_sep = separable and level > 1
        x = _conv_bn_relu(x, filters, f"enc{level}_1", batch_norm, first_sep)
        x = _conv_bn_relu(x, filters, f"enc{level}_2", batch_norm, separable)
        skip_tensors.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)

    x = _double_conv(x, base_filters * 2**skips, "bott", batch_norm, separable)
    bottleneck = x

    for level in range(skips, 0, -1):
        filters = base_filters * 2 ** (level - 1)
        if upsample == "transpose":
            x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"dec{level}_up")(x)
        else:
            x = layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{level}_up")(x)
            x = layers.Conv2D(filters, 1, name=f"dec{level}_upconv")(x)
        x = layers.Concatenate(name=f"dec{level}_concat")([x, skip_tensors[level - 1]])
        x = _double_conv(x, filters, f"dec{level}", batch_norm, separable)

    mask = layers.Conv2D(1, 1, activation="sigmoid", name="mask")(x)
    p = layers.GlobalAveragePooling2D(name="presence_pool")(bottleneck)
    present = layers.Dense(1, activation="sigmoid", name="nerve_present")(p)

    return keras.Model(
        inputs=inputs,
        outputs={"mask": mask, "nerve_present": present},
        name=name or f"unet_s{skips}_f{base_filters}",
    )


def _shape(t) -> tuple[int, ...]:
    return tuple(int(d) for d in t.shape[1:])


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass for ONE sample (batch ignored).

    Counts Conv2D, SeparableConv2D, DepthwiseConv2D, Conv2DTranspose and Dense
    layers (including those of nested models); BatchNorm, pooling, activations and
    concatenation are ignored (they fold away or are memory-bound). Input shapes
    must be static apart from the batch.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_macs(layer)
            continue
        if not isinstance(
            layer,
            (layers.Conv2D, layers.SeparableConv2D, layers.DepthwiseConv2D, layers.Conv2DTranspose, layers.Dense),
        ):
            continue
        ins, outs = _shape(layer.input), _shape(layer.output)
        out_pixels = 1
        for d in outs[:-1]:
            out_pixels *= d
        cin, cout = ins[-1], outs[-1]
        if isinstance(layer, layers.Dense):
            total += out_pixels * cin * cout
        elif isinstance(layer, layers.SeparableConv2D):
            kh, kw = layer.kernel_size
            mid = cin * layer.depth_multiplier
            total += out_pixels * (kh * kw * mid + mid * cout)
        elif isinstance(layer, layers.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            total += out_pixels * kh * kw * cout
        elif isinstance(layer, layers.Conv2DTranspose):
            # Each input pixel scatters a kh x kw x cout patch.
            kh, kw = layer.kernel_size
            in_pixels = 1
            for d in ins[:-1]:
                in_pixels *= d
            total += in_pixels * kh * kw * cin * cout
        else:  # Conv2D
            kh, kw = layer.kernel_size
            total += out_pixels * kh * kw * (cin // layer.groups) * cout
    return int(total)
