"""An expert's per-frame boxes (the regional-us annotation format), read and drawn on the device side.

One JSON object per line: ``{"<frame>": {"tracker": "human"|"csrt", "bounding_boxes": "[[x, y, w, h], ...]"}}``
in pixels of the video frame; a frame with an empty list, or without a line, shows no nerve. Training
(`train.boxes`) reads the same files through `parse_boxes`; ``nerveseg demo --truth`` draws them beside the
outline so agreement shows at a glance. numpy/OpenCV only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from edge.errors import ConfigError

Box = tuple[float, float, float, float]  # x, y, w, h in video pixels
TRUTH_COLOR = (80, 220, 80)  # B,G,R: the expert's boxes (the outline keeps overlay.color)


def parse_boxes(path: str | Path) -> tuple[dict[int, list[Box]], dict[int, str]]:
    """``(boxes per frame, tracker per frame)`` of one annotation file.

    Raises ValueError naming the file and line of a malformed entry (FileNotFoundError when missing).
    """
    path = Path(path)
    boxes: dict[int, list[Box]] = {}
    trackers: dict[int, str] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
                for key, entry in obj.items():
                    raw = entry.get("bounding_boxes", "[]")
                    bb = json.loads(raw) if isinstance(raw, str) else raw
                    got = []
                    for b in bb:
                        x, y, w, h = (float(v) for v in b)
                        if w > 0 and h > 0:
                            got.append((x, y, w, h))
                    boxes[int(key)] = got
                    trackers[int(key)] = str(entry.get("tracker", ""))
            except (ValueError, TypeError, AttributeError) as e:
                raise ValueError(f"{path} line {lineno}: not a box annotation ({type(e).__name__}: {e})") from None
    return boxes, trackers


def load_truth(path: str | Path) -> dict[int, list[Box]]:
    """`parse_boxes` for the command line: raises ConfigError naming ``--truth`` and the problem."""
    try:
        return parse_boxes(path)[0]
    except FileNotFoundError:
        raise ConfigError("<command line>", [f"--truth: {path} not found"]) from None
    except (OSError, ValueError) as e:
        raise ConfigError("<command line>", [f"--truth: {e}"]) from None


def draw_truth(image: np.ndarray, boxes: Sequence[Box], color: tuple[int, int, int] = TRUTH_COLOR) -> None:
    """Draw the expert's boxes (thin rectangles, the union is what they mean) and a legend onto ``image``."""
    for x, y, w, h in boxes:
        cv2.rectangle(image, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))), color, 1)
    label = "expert: nerve" if boxes else "expert: no nerve"
    cv2.putText(image, label, (8, image.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
