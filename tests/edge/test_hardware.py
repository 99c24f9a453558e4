"""Tests on the real devices of a box. Skipped where the device is absent (as on CI).

Run them on a Pi or Jetson with a capture dongle and HDMI attached:
    NERVESEG_V4L2=/dev/video0 NERVESEG_FB=/dev/fb0 python -m pytest -m hardware tests/edge/test_hardware.py
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from edge.config import SinkConfig, SourceConfig
from edge.sinks import open_sink
from edge.sources import open_source

V4L2 = os.environ.get("NERVESEG_V4L2", "/dev/video0")
FB = os.environ.get("NERVESEG_FB", "/dev/fb0")

pytestmark = pytest.mark.hardware


@pytest.mark.skipif(not Path(V4L2).exists(), reason=f"no capture device at {V4L2}")
def test_capture_card_delivers_frames():
    with open_source(SourceConfig(spec=f"v4l2:{V4L2}")) as src:
        t_end = time.monotonic() + 10
        frames = []
        while time.monotonic() < t_end and len(frames) < 10:
            f = src.read(0.5)
            if f is not None:
                frames.append(f)
    assert len(frames) == 10, "the capture card delivered fewer than 10 frames in 10 s"
    assert frames[0].image.ndim == 3 and frames[0].image.shape[2] == 3
    assert [f.seq for f in frames] == sorted(f.seq for f in frames)


@pytest.mark.skipif(not (Path(FB).exists() and os.access(FB, os.W_OK)), reason=f"no writable framebuffer at {FB}")
def test_framebuffer_shows_a_frame():
    frame = np.zeros((420, 580, 3), np.uint8)
    frame[:, :, 2] = 255  # red
    with open_sink(SinkConfig(spec=f"fbdev:{FB}")) as sink:
        sink.show(frame)
        assert sink.frames_written == 1
