"""Box-labelled video (the ``regional-us`` layout): which frames show a nerve, and where the boxes are.

A folder holds ``manifest.csv`` (one row per video: ``path``, ``boxes_path``, ``subject``, optional
``label``, ``fps``), ``videos/<id>.mp4`` and ``boxes/<id>.txt``: one JSON object per line,
``{"<frame>": {"tracker": "human"|"csrt", "bounding_boxes": "[[x, y, w, h], ...]"}}`` in pixels of the
video frame. A frame with an empty list, or without a line (some files are shorter than their video),
shows no nerve. The boxes of a frame mean only their union: "where the nerve cluster is".

Subject = video (one patient each): split by video, never by frame. Consecutive frames are
near-duplicates (20 fps), so training takes every ``every``-th frame; evaluation may take all.

Used by training (`box_video_frames`: frames at model size with the box union as a weak mask) and
by ``nerveseg eval`` on such a folder (`iter_video`, `box_mask`). numpy/OpenCV only.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.preprocess import resize_mask, to_model_size
from edge.spec import PreprocessSpec
from edge.truth import Box, parse_boxes  # noqa: F401 - parse_boxes is part of this module's interface


@dataclass(frozen=True)
class BoxVideo:
    """One video of a box-labelled folder. ``boxes[i]``: the boxes of frame i (empty = no nerve);
    frames past the end of the annotation file have no entry and count as no nerve."""

    path: Path
    subject: str
    label: str
    fps: float
    boxes: dict[int, list[Box]] = field(repr=False)
    trackers: dict[int, str] = field(repr=False)

    def boxes_at(self, frame: int) -> list[Box]:
        return self.boxes.get(frame, [])


def is_box_video_folder(folder: str | Path) -> bool:
    """True when ``folder/manifest.csv`` has the ``boxes_path`` column of this layout."""
    mf = Path(folder) / "manifest.csv"
    if not mf.is_file():
        return False
    with mf.open(newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), [])
    return "boxes_path" in header and "path" in header


def read_box_videos(folder: str | Path) -> list[BoxVideo]:
    """Every video of a box-labelled folder, in manifest order. Raises FileNotFoundError/ValueError
    naming the file (no manifest, missing column, missing video or annotation, malformed line)."""
    folder = Path(folder)
    mf = folder / "manifest.csv"
    if not mf.is_file():
        raise FileNotFoundError(f"{mf} not found")
    with mf.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{mf} has no rows")
    for col in ("path", "boxes_path"):
        if col not in rows[0]:
            raise ValueError(f"{mf} has no {col!r} column (columns: {', '.join(rows[0])})")
    out = []
    for i, r in enumerate(rows, start=2):
        video, ann = folder / r["path"], folder / r["boxes_path"]
        for p, what in ((video, "video"), (ann, "annotation")):
            if not p.is_file():
                raise ValueError(f"{mf} line {i}: {what} {p} does not exist")
        boxes, trackers = parse_boxes(ann)
        try:
            fps = float(r.get("fps") or 0) or 20.0
        except ValueError:
            raise ValueError(f"{mf} line {i}: fps {r.get('fps')!r} is not a number") from None
        out.append(
            BoxVideo(
                path=video,
                subject=(r.get("subject") or "").strip() or video.stem,
                label=(r.get("label") or "").strip(),
                fps=fps,
                boxes=boxes,
                trackers=trackers,
            )
        )
    return out


def iter_video(video: BoxVideo, every: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """``(frame index, BGR frame)`` of every ``every``-th frame, decoded with OpenCV.
    Raises ValueError when the file does not open or yields no frame."""
    cap = cv2.VideoCapture(str(video.path))
    if not cap.isOpened():
        raise ValueError(f"cannot open video {video.path}")
    i = n = 0
    try:
        while True:
            if i % every == 0:
                ok, frame = cap.read()
                if not ok:
                    break
                n += 1
                yield i, frame
            elif not cap.grab():
                break
            i += 1
    finally:
        cap.release()
    if n == 0:
        raise ValueError(f"video {video.path} has no decodable frame")


def box_mask(boxes: Sequence[Box], frame_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """bool ``out_hw``: pixels whose centre, mapped back to the frame, lies inside any box."""
    fh, fw = frame_hw
    h, w = out_hw
    m = np.zeros((h, w), bool)
    if not boxes:
        return m
    cx = (np.arange(w) + 0.5) * fw / w
    cy = (np.arange(h) + 0.5) * fh / h
    for x, y, bw, bh in boxes:
        cols = (cx >= x) & (cx < x + bw)
        rows = (cy >= y) & (cy < y + bh)
        m |= rows[:, None] & cols[None, :]
    return m


def box_cover(boxes: Sequence[Box], frame_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """float32 ``out_hw`` in [0, 1]: the share of each output pixel covered by the union of the boxes
    (drawn at frame resolution, shrunk with `edge.preprocess.resize_mask` like a polygon mask)."""
    full = np.zeros(frame_hw, np.uint8)
    for x, y, bw, bh in boxes:
        x0, y0 = max(int(round(x)), 0), max(int(round(y)), 0)
        full[y0 : int(round(y + bh)), x0 : int(round(x + bw))] = 255
    return resize_mask(full, *out_hw)


def box_video_frames(
    videos: Sequence[BoxVideo], spec: PreprocessSpec, every: int = 3, kind: str = "video"
):
    """Every ``every``-th frame of each video at model size (stage 1 of the bedside preprocessing),
    its mask the box union's cover, marked weak (the mask is a box, not an outline).

    Returns a `train.data.FrameSet` with groups ``<prefix>/<subject>``; kinds ``kind`` for frames with a
    nerve and ``<kind>_empty`` for frames without.
    """
    from train.data import FrameSet

    h, w = spec.height, spec.width
    imgs, masks, groups, kinds, names = [], [], [], [], []
    for v in videos:
        for i, frame in iter_video(v, every):
            bb = v.boxes_at(i)
            imgs.append(to_model_size(frame, None, spec))
            masks.append(box_cover(bb, frame.shape[:2], (h, w)) if bb else np.zeros((h, w), np.float32))
            groups.append(v.subject)
            kinds.append(kind if bb else f"{kind}_empty")
            names.append(f"{v.subject}#{i}")
    k = len(imgs)
    kinds_arr = np.array(kinds, dtype=object)
    return FrameSet(
        np.array(imgs, np.uint8).reshape(k, h, w),
        np.array(masks, np.float32).reshape(k, h, w),
        np.array(groups, dtype=object),
        kinds_arr,
        names,
        weak=kinds_arr == kind,
    )
