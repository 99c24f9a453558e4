"""Real ultrasound sequences for the calibration tests, read once per session from the shared data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.calibration.synth import read_clip, read_kaggle


@pytest.fixture(scope="session")
def scans(data_dir: Path, lung_clips: list[Path]) -> dict[str, list[np.ndarray]]:
    """Short gray sequences that change from frame to frame, as live scanning does.

    lung-a / lung-b: 12 frames, every 3rd, of the two real lung clips (234x234 and
    208x208 after trimming their own black strips); kaggle: 12 full-resolution
    580x420 frames of one subject's scan (Kaggle brachial plexus, subject 1).
    """
    return {
        "lung-a": read_clip(lung_clips[0], 12, 3),
        "lung-b": read_clip(lung_clips[1], 12, 3),
        "kaggle": read_kaggle(data_dir / "kaggle-bp" / "fullres" / "images", 1, 12),
    }
