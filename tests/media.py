"""Reading back what the code under test wrote: videos decoded by OpenCV, as a player would."""

from __future__ import annotations

from pathlib import Path

import cv2


def count_video_frames(path: Path) -> int:
    """Frames OpenCV decodes from ``path`` (fails the test when it cannot open it)."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n
