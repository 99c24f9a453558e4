"""Preprocessing functions on real ultrasound frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.preprocess import crop_roi, denoise, lee_filter, normalise, preprocess, resize, resize_mask, to_gray
from edge.spec import FILTERS, PreprocessSpec
from edge.types import Roi


@pytest.fixture(scope="module")
def frame_bgr(kaggle_fullres) -> np.ndarray:
    img = cv2.imread(str(kaggle_fullres / "1_1.png"), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == (420, 580, 3)
    return img


@pytest.fixture(scope="module")
def gray(frame_bgr) -> np.ndarray:
    return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)


def _local_std(g: np.ndarray, k: int = 7) -> float:
    """Mean local standard deviation: a speckle measure."""
    x = g.astype(np.float32)
    m = cv2.blur(x, (k, k))
    return float(np.sqrt(np.maximum(cv2.blur(x * x, (k, k)) - m * m, 0)).mean())


def test_crop_roi_is_a_view_of_the_right_pixels(frame_bgr):
    roi = Roi(10, 20, 100, 50)
    c = crop_roi(frame_bgr, roi)
    assert c.shape == (50, 100, 3)
    assert np.shares_memory(c, frame_bgr)
    np.testing.assert_array_equal(c, frame_bgr[20:70, 10:110])
    assert crop_roi(frame_bgr, None) is frame_bgr


def test_crop_roi_outside_frame_names_both(frame_bgr):
    with pytest.raises(ValueError, match=r"x=500 y=0 w=100 h=10 lies outside the 580x420 frame"):
        crop_roi(frame_bgr, Roi(500, 0, 100, 10))


def test_to_gray_variants(frame_bgr, gray):
    np.testing.assert_array_equal(to_gray(frame_bgr), gray)
    assert to_gray(gray) is gray
    np.testing.assert_array_equal(to_gray(gray[:, :, None]), gray)
    np.testing.assert_array_equal(to_gray(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2BGRA)), gray)
    with pytest.raises(ValueError, match="uint8"):
        to_gray(frame_bgr.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        to_gray(np.zeros((4, 4, 2), np.uint8))


@pytest.mark.parametrize("name", [f for f in FILTERS if f != "none"])
def test_each_filter_reduces_speckle_on_a_real_frame(gray, name):
    out = denoise(gray, name, 5, 2.0)
    assert out.dtype == np.uint8 and out.shape == gray.shape
    # Speckle at 580x420 is spatially correlated: 5-px filters remove ~10-20% of it.
    assert _local_std(out) < 0.93 * _local_std(gray), name
    # Denoising must not shift brightness (the network was trained on the same levels).
    assert abs(float(out.mean()) - float(gray.mean())) < 2.0


def test_none_filter_is_identity(gray):
    assert denoise(gray, "none") is gray


def test_unknown_filter(gray):
    with pytest.raises(ValueError, match="allowed: none, median"):
        denoise(gray, "nlm")


def test_lee_smooths_flat_speckle_but_keeps_edges():
    rng = np.random.default_rng(0)
    truth = np.full((120, 120), 60.0)
    truth[:, 60:] = 180.0  # a strong edge, like a fascia
    speckled = np.clip(truth * rng.rayleigh(1.0, truth.shape) / np.sqrt(np.pi / 2), 0, 255).astype(np.uint8)
    lee = lee_filter(speckled, 7).astype(np.float32)
    box = cv2.blur(speckled, (7, 7)).astype(np.float32)
    # flat area: speckle variance reduced a lot
    assert lee[:, 5:50].std() < 0.6 * speckled[:, 5:50].astype(np.float32).std()
    # edge: Lee keeps the step sharper than a box filter of the same size
    step_lee = lee[:, 61:63].mean() - lee[:, 57:59].mean()
    step_box = box[:, 61:63].mean() - box[:, 57:59].mean()
    assert step_lee > step_box


def test_resize_uses_area_when_shrinking_a_lot(gray):
    out = resize(gray, 96, 128)
    assert out.shape == (96, 128)
    np.testing.assert_array_equal(out, cv2.resize(gray, (128, 96), interpolation=cv2.INTER_AREA))
    small = resize(gray, 300, 400)  # < 2x: linear
    np.testing.assert_array_equal(small, cv2.resize(gray, (400, 300), interpolation=cv2.INTER_LINEAR))
    assert resize(gray, 420, 580) is gray


def test_normalise_range_and_buffer_reuse(gray):
    out = np.empty(gray.shape, np.float32)
    r = normalise(gray, out=out)
    assert r is out and r.dtype == np.float32
    np.testing.assert_allclose(r, gray / 255.0, atol=1e-6)
    z = normalise(gray, mean=0.5, std=0.25)
    np.testing.assert_allclose(z, (gray / 255.0 - 0.5) / 0.25, atol=1e-5)


@pytest.mark.parametrize("filter_at", ["input", "roi"])
def test_preprocess_is_the_composition_of_the_steps(frame_bgr, filter_at):
    spec = PreprocessSpec(height=96, width=128, filter="median", filter_size=5, filter_at=filter_at, mean=0.1, std=0.5)
    roi = Roi(40, 30, 500, 360)
    out = np.zeros((96, 128), np.float32)
    x = preprocess(frame_bgr, roi, spec, out=out)
    assert x is out and x.shape == (96, 128) and x.dtype == np.float32
    g = cv2.cvtColor(frame_bgr[30:390, 40:540], cv2.COLOR_BGR2GRAY)
    if filter_at == "roi":
        g = cv2.medianBlur(g, 5)
    g = cv2.resize(g, (128, 96), interpolation=cv2.INTER_AREA)
    if filter_at == "input":
        g = cv2.medianBlur(g, 5)
    np.testing.assert_allclose(x, (g / 255.0 - 0.1) / 0.5, atol=1e-5)


def test_resize_mask_keeps_covered_fraction(data_dir):
    m = cv2.imread(str(data_dir / "kaggle-bp" / "fullres" / "masks" / "1_1_mask.png"), cv2.IMREAD_GRAYSCALE)
    assert m is not None and m.max() == 255  # manifest: 1_1 has a non-empty mask
    r = resize_mask(m, 96, 128)
    assert r.dtype == np.float32 and r.shape == (96, 128) and 0 <= r.min() and r.max() <= 1
    assert abs(r.mean() - (m > 0).mean()) < 0.01
