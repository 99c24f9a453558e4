"""convert.tflite: conversion options and the files `to_tflite` writes; representative frames.

Moved from tests/edge/test_runner.py (they test the converter, not the runner).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.spec import OutputsSpec, load_spec
from tests import model_fixtures
from tests.model_fixtures import PP, make_spec

kaggle_sets = model_fixtures.kaggle_sets
trained_unet = model_fixtures.trained_unet
tflite_models = model_fixtures.tflite_models


def test_int8_file_is_full_integer_with_static_batch(tflite_models):
    from ai_edge_litert.interpreter import Interpreter

    for kind, dtype in (("float32", np.float32), ("int8", np.int8)):
        it = Interpreter(model_path=str(tflite_models[kind]))
        (inp,) = it.get_input_details()
        assert inp["dtype"] == dtype
        # a flexible batch (-1) adds shape ops around TRANSPOSE_CONV and splits the XNNPACK graph (guide pitfall)
        assert list(inp["shape_signature"]) == [1, PP.height, PP.width, 1]
        assert [d["dtype"] for d in it.get_output_details()] == [dtype, dtype]
        assert it.get_signature_list()["serving_default"]["outputs"] == ["mask", "nerve_present"]
    assert tflite_models["int8"].stat().st_size < tflite_models["float32"].stat().st_size / 3
    assert load_spec(tflite_models["int8"]).quantization == "int8"


# --- conversion options (convert.tflite), seen from the files it writes ---------------------------------------


def test_to_tflite_rejects_bad_options(trained_unet, tmp_path):
    from convert.tflite import to_tflite

    with pytest.raises(ValueError, match="quantization must be one of int8, float32"):
        to_tflite(trained_unet, tmp_path / "a.tflite", "int4", None, make_spec())
    with pytest.raises(ValueError, match="needs representative frames"):
        to_tflite(trained_unet, tmp_path / "a.tflite", "int8", None, make_spec())
    bad_size = make_spec().model_copy(update={"preprocess": PP.model_copy(update={"height": 64})})
    with pytest.raises(ValueError, match=r"spec says \(64, 128, 1\)"):
        to_tflite(trained_unet, tmp_path / "a.tflite", "float32", None, bad_size)
    bad_names = make_spec().model_copy(update={"outputs": OutputsSpec(mask="seg")})
    with pytest.raises(ValueError, match="'seg'"):
        to_tflite(trained_unet, tmp_path / "a.tflite", "float32", None, bad_names)
    with pytest.raises(ValueError, match="representative frame 0 has shape"):
        to_tflite(trained_unet, tmp_path / "a.tflite", "int8", [np.zeros((10, 10), np.float32)], make_spec())
    assert not (tmp_path / "a.tflite").exists()


def test_representative_frames_must_be_balanced(tmp_path):
    from convert.tflite import representative_frames

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(images / f"1_{i}.png"), rng.integers(0, 256, (42, 58), dtype=np.uint8))
        cv2.imwrite(str(masks / f"1_{i}_mask.png"), np.full((42, 58), 255 if i < 3 else 0, np.uint8))
    frames = representative_frames(images, PP, masks)
    assert len(frames) == 4 and all(f.shape == (1, 96, 128, 1) and f.dtype == np.float32 for f in frames)
    assert len(representative_frames(images, PP, masks, limit=2)) == 2  # one of each
    (masks / "1_3_mask.png").unlink()
    cv2.imwrite(str(masks / "1_3_mask.png"), np.full((42, 58), 255, np.uint8))
    with pytest.raises(ValueError, match="4 frames with a nerve and 0 without"):
        representative_frames(images, PP, masks)


def test_real_representative_set(data_dir):
    from convert.tflite import representative_frames, split_by_nerve

    fullres = data_dir / "kaggle-bp" / "fullres"
    pos, neg = split_by_nerve(fullres / "images", fullres / "masks")
    assert (len(pos), len(neg)) == (18, 37)
    frames = representative_frames(fullres / "images", PP, fullres / "masks")
    assert len(frames) == 55
