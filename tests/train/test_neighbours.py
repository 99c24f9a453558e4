"""The near-duplicate check that tells whether presence labels can be learned from the images."""

from __future__ import annotations

import numpy as np
import pytest

from train.neighbours import main, nearest, thumbnails


def test_nearest_on_hand_made_unit_vectors():
    # 3 positives and 2 negatives as unit rows with known dot products.
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([0.8, 0.6, 0.0])
    c = np.array([0.0, 0.0, 1.0])
    n1 = np.array([0.6, 0.8, 0.0])  # n1.a = 0.6, n1.b = 0.96, n1.c = 0
    n2 = np.array([0.0, 0.6, 0.8])  # n2.a = 0, n2.b = 0.36, n2.c = 0.8
    x = np.stack([a, b, c, n1, n2])
    nb = nearest(x, np.array([True, True, True, False, False]))
    np.testing.assert_allclose(nb.negative_to_positive, [0.96, 0.8])
    np.testing.assert_allclose(nb.positive_to_positive, [0.8, 0.8, 0.0])  # a-b, b-a, c alone
    assert nb.negatives_as_close_as_positives == 2  # median positive 0.8: 0.96 and 0.8 both reach it


def test_thumbnails_are_unit_rows_and_ignore_gain():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 200, (186, 256)).astype(np.uint8)
    brighter = np.clip(img.astype(int) + 40, 0, 255).astype(np.uint8)
    t = thumbnails([img, brighter])
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    assert t[0] @ t[1] > 0.99


def test_needs_both_kinds():
    with pytest.raises(ValueError, match="positive"):
        nearest(np.eye(3), np.array([True, False, False]))


def test_on_the_real_empty_frames(data_dir, capsys):
    # subjects 1 and 2 hold the only real empty frames; both must be reported
    assert main(["--data", str(data_dir / "kaggle-bp")]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [ln.split() for ln in lines[1:]]
    assert sorted(r[0] for r in rows) == ["1", "2"]
    assert sum(int(r[3]) for r in rows) == 37  # every real empty frame compared
