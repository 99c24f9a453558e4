"""Preprocessing as pure functions, shared by training (`train/`) and the bedside loop.

One call, `preprocess(image, roi, spec)`, turns a full video-out frame into the
network input. It is two stages, `to_model_size` then `finish`, so training can
augment in between; every step is also a function of its own:

    crop_roi -> to_gray -> [denoise if filter_at == "roi"] -> resize
             -> [denoise if filter_at == "input"] -> normalise

Each stage function takes an optional ``lap(stage)`` callback, called after each step with the
step's name ("roi_gray", "denoise", "resize", "normalise"): the live loop times its stages with it,
so the timed path and the trained-on path are the same code.

Images are uint8 until `normalise`; the result is float32 ``(H, W)`` at the
model's input size. Resizing uses INTER_AREA only when shrinking by more than
2x (where aliasing of speckle matters), INTER_LINEAR otherwise: AREA costs
milliseconds on large frames, LINEAR microseconds.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from edge.spec import FILTERS, PreprocessSpec
from edge.types import Roi


def crop_roi(image: np.ndarray, roi: Roi | None) -> np.ndarray:
    """View of ``image`` inside ``roi`` (no copy). ``roi`` None returns the image.

    Raises ValueError when the ROI does not lie inside the image, naming both.
    """
    if roi is None:
        return image
    h, w = image.shape[:2]
    if not roi.clip_to(w, h):
        raise ValueError(f"ROI x={roi.x} y={roi.y} w={roi.w} h={roi.h} lies outside the {w}x{h} frame")
    return image[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w]


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 HxW gray from HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA) uint8."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"expected HxW, HxWx1, HxWx3 or HxWx4, got shape {image.shape}")


def lee_filter(gray: np.ndarray, size: int, noise_var: float | None = None) -> np.ndarray:
    """Lee speckle filter: local mean + (local var - noise var)/local var * (x - mean).

    gray: uint8 HxW. size: odd window in pixels. noise_var: variance of the noise
    in (0-255 units)^2; None estimates it as the mean of the local variances
    (the usual global estimate). Returns uint8 HxW.
    """
    x = gray.astype(np.float32)
    mean = cv2.blur(x, (size, size))
    sq_mean = cv2.blur(x * x, (size, size))
    var = np.maximum(sq_mean - mean * mean, 0.0)
    nv = float(var.mean()) if noise_var is None else float(noise_var)
    gain = np.clip((var - nv) / np.maximum(var, 1e-6), 0.0, 1.0)
    out = mean + gain * (x - mean)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def denoise(gray: np.ndarray, name: str, size: int = 5, sigma: float = 1.0) -> np.ndarray:
    """Speckle reduction on uint8 HxW; returns uint8 HxW (a new array, or ``gray`` for 'none').

    name: one of ``edge.spec.FILTERS``. size: odd kernel width in pixels.
    sigma: strength, per filter: gaussian sigma in pixels; bilateral range sigma
    of ``25 * sigma`` gray levels (spatial sigma ``size / 2``); Lee noise standard
    deviation of ``10 * sigma`` gray levels.
    """
    if name == "none":
        return gray
    if name == "median":
        return cv2.medianBlur(gray, size)
    if name == "gaussian":
        return cv2.GaussianBlur(gray, (size, size), sigma)
    if name == "bilateral":
        return cv2.bilateralFilter(gray, size, sigma * 25.0, size / 2.0)
    if name == "lee":
        return lee_filter(gray, size, (sigma * 10.0) ** 2)
    raise ValueError(f"unknown speckle filter {name!r}; allowed: {', '.join(FILTERS)}")


def resize(gray: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 HxW -> uint8 ``height`` x ``width`` (see module doc for the interpolation choice)."""
    h, w = gray.shape[:2]
    if (h, w) == (height, width):
        return gray
    shrink = max(h / height, w / width)
    interp = cv2.INTER_AREA if shrink > 2.0 else cv2.INTER_LINEAR
    return cv2.resize(gray, (width, height), interpolation=interp)


def normalise(gray: np.ndarray, mean: float = 0.0, std: float = 1.0, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 -> float32 ``(gray / 255 - mean) / std``; writes into ``out`` when given (same shape, float32)."""
    if out is None:
        out = np.empty(gray.shape, np.float32)
    np.multiply(gray, np.float32(1.0 / (255.0 * std)), out=out, casting="unsafe")
    if mean:
        out -= np.float32(mean / std)
    return out


Lap = Callable[[str], None]


def _no_lap(_stage: str) -> None:
    pass


def to_model_size(image: np.ndarray, roi: Roi | None, spec: PreprocessSpec, lap: Lap | None = None) -> np.ndarray:
    """Stage 1 of `preprocess`: crop, gray, [ROI-level filter], resize -> uint8 ``(height, width)``.

    Training caches this output and augments it before stage 2 (`finish`), so the
    augmentation sees what the bedside sees at that point.
    """
    lap = lap or _no_lap
    g = to_gray(crop_roi(image, roi))
    lap("roi_gray")
    if spec.filter_at == "roi":
        g = denoise(g, spec.filter, spec.filter_size, spec.filter_sigma)
        lap("denoise")
    g = resize(g, spec.height, spec.width)
    lap("resize")
    return g


def finish(gray_small: np.ndarray, spec: PreprocessSpec, out: np.ndarray | None = None,
           lap: Lap | None = None) -> np.ndarray:
    """Stage 2 of `preprocess`: [input-level filter], normalise -> float32 ``(height, width)``."""
    lap = lap or _no_lap
    if spec.filter_at == "input":
        gray_small = denoise(gray_small, spec.filter, spec.filter_size, spec.filter_sigma)
        lap("denoise")
    x = normalise(gray_small, spec.mean, spec.std, out)
    lap("normalise")
    return x


def preprocess(image: np.ndarray, roi: Roi | None, spec: PreprocessSpec, out: np.ndarray | None = None,
               lap: Lap | None = None) -> np.ndarray:
    """Full video-out frame -> float32 ``(spec.height, spec.width)`` network input.

    ``out`` (optional, float32 of that shape) is reused to avoid an allocation
    per frame in the live loop; the returned array is ``out`` when given.
    ``lap``: called after each step with its stage name (see the module doc).
    """
    return finish(to_model_size(image, roi, spec, lap), spec, out, lap)


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Binary/probability mask to the model's size, for training targets.

    uint8 0/255 or float masks; returns float32 in [0, 1]. INTER_AREA keeps the
    covered fraction when shrinking, so a target pixel is the share of nerve in it.
    """
    m = mask.astype(np.float32)
    if m.max(initial=0.0) > 1.0:
        m /= 255.0
    h, w = m.shape[:2]
    if (h, w) == (height, width):
        return m
    interp = cv2.INTER_AREA if (h > height or w > width) else cv2.INTER_LINEAR
    return cv2.resize(m, (width, height), interpolation=interp)
