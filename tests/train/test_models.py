"""The U-Net builder: shapes, names, structure per option, validation, MAC count."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from train.models import build_unet, count_macs

OPTIONS = [
    {},
    {"conv": "separable"},
    {"upsample": "bilinear"},
    {"batch_norm": False},
    {"conv": "separable", "upsample": "bilinear", "batch_norm": False},
    {"batch_size": 1},
]


def _count(model, cls) -> int:
    return sum(isinstance(layer, cls) for layer in model.layers)


@pytest.mark.parametrize("skips", [3, 4])
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_outputs_and_structure(skips, opts):
    model = build_unet(input_shape=(96, 128, 1), base_filters=4, skips=skips, **opts)
    batch = opts.get("batch_size")
    assert isinstance(model.output, dict)
    assert set(model.output) == {"mask", "nerve_present"}
    assert tuple(model.output["mask"].shape) == (batch, 96, 128, 1)
    assert tuple(model.output["nerve_present"].shape) == (batch, 1)
    assert tuple(model.inputs[0].shape) == (batch, 96, 128, 1)
    assert model.name == f"unet_s{skips}_f4"

    assert _count(model, layers.Concatenate) == skips
    assert _count(model, layers.MaxPooling2D) == skips
    up = layers.Conv2DTranspose if opts.get("upsample", "transpose") == "transpose" else layers.UpSampling2D
    assert _count(model, up) == skips
    n_bn = _count(model, layers.BatchNormalization)
    # two 3x3 convs per level: skips encoder levels + bottleneck + skips decoder levels
    assert n_bn == (2 * (2 * skips + 1) if opts.get("batch_norm", True) else 0)
    n_sep = _count(model, layers.SeparableConv2D)
    assert n_sep == (2 * (2 * skips + 1) - 1 if opts.get("conv") == "separable" else 0)

    # the heads: 1x1 sigmoid conv named mask, GAP -> Dense(1, sigmoid) named nerve_present on the bottleneck
    mask = model.get_layer("mask")
    assert isinstance(mask, layers.Conv2D) and mask.kernel_size == (1, 1)
    head = model.get_layer("nerve_present")
    assert isinstance(head, layers.Dense) and head.units == 1
    bottleneck_side = 96 // 2**skips
    assert tuple(model.get_layer("presence_pool").input.shape)[1] == bottleneck_side

    # channels double per level: deepest encoder level has base * 2**(skips-1), bottleneck base * 2**skips
    assert model.get_layer("bott_2_relu").output.shape[-1] == 4 * 2**skips
    assert model.get_layer("enc1_2_relu").output.shape[-1] == 4


def test_forward_pass_gives_probabilities():
    keras.utils.set_random_seed(0)
    model = build_unet(input_shape=(32, 48, 1), base_filters=4, skips=3)
    x = np.random.default_rng(0).random((2, 32, 48, 1), dtype=np.float32)
    out = model.predict(x, verbose=0)
    assert out["mask"].shape == (2, 32, 48, 1) and out["nerve_present"].shape == (2, 1)
    for v in out.values():
        assert v.dtype == np.float32 and np.all((v >= 0) & (v <= 1))


def test_layer_names_are_deterministic_and_unique():
    a = [layer.name for layer in build_unet(base_filters=4).layers]
    b = [layer.name for layer in build_unet(base_filters=4).layers]
    assert a == b
    assert len(set(a)) == len(a)
    expected = {"image", "enc1_1_conv", "enc3_pool", "bott_2_bn", "dec3_up", "dec1_concat", "mask", "nerve_present"}
    assert expected <= set(a)


def test_default_is_the_mini_unet():
    model = build_unet()
    assert tuple(model.inputs[0].shape) == (None, 96, 128, 1)
    assert _count(model, layers.Concatenate) == 3
    assert model.get_layer("enc1_1_conv").filters == 16


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"input_shape": (100, 128, 1)}, ["divisible by 2**skips = 8", "100x128", "96x128"]),
        ({"input_shape": (96, 120, 1), "skips": 4}, ["divisible by 2**skips = 16", "96x120"]),
        ({"input_shape": (96, 128)}, ["(height, width, channels)"]),
        ({"input_shape": (96, 0, 1)}, ["positive ints"]),
        ({"skips": 0}, ["skips must be an int from 1 to 5", "3 = mini-U-Net", "4 = classic"]),
        ({"skips": 6}, ["skips must be an int from 1 to 5"]),
        ({"skips": 3.0}, ["skips must be an int"]),
        ({"base_filters": 0}, ["base_filters must be a positive int"]),
        ({"conv": "depthwise"}, ["conv must be one of plain, separable", "'depthwise'"]),
        ({"upsample": "nearest"}, ["upsample must be one of transpose, bilinear", "'nearest'"]),
        ({"batch_size": 0}, ["batch_size must be None", "1 for conversion"]),
    ],
)
def test_invalid_options_say_what_is_allowed(kwargs, fragments):
    with pytest.raises(ValueError) as e:
        build_unet(**kwargs)
    for f in fragments:
        assert f in str(e.value)


def test_count_macs_by_hand():
    # 16x16x1, 2 filters, 1 skip, no BN (bias does not count):
    # enc1_1 256*9*1*2, enc1_2 256*9*2*2, bott_1 64*9*2*4, bott_2 64*9*4*4,
    # dec1_up (transpose 2x2, scatters from 64 px) 64*4*4*2, dec1_1 256*9*4*2, dec1_2 256*9*2*2,
    # mask 256*2*1, dense 4*1
    model = build_unet(input_shape=(16, 16, 1), base_filters=2, skips=1, batch_norm=False)
    expected = 4608 + 9216 + 4608 + 9216 + 2048 + 18432 + 9216 + 512 + 4
    assert count_macs(model) == expected


def test_count_macs_orders_variants():
    plain = count_macs(build_unet(base_filters=16))
    assert 4.0e8 < plain < 4.6e8  # the 16-filter mini-U-Net: ~431 M MACs at 96x128
    assert 1.0e8 < count_macs(build_unet(base_filters=8)) < plain / 3.8  # the shipped 8-filter one: ~108 M
    assert count_macs(build_unet(base_filters=16, conv="separable")) < plain / 3
    assert count_macs(build_unet(base_filters=16, skips=4)) > plain
    # batch does not change the per-sample count
    assert count_macs(build_unet(base_filters=16, batch_size=1)) == plain
