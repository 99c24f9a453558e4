"""Labelled frames listed by a folder's ``manifest.csv`` (no TensorFlow here).

Works for every layout in ``../shared/data`` and for any folder laid out like
``kaggle-bp``: a CSV with at least a ``path`` column (image, relative to the
folder) and a mask column (``mask_path``, else ``mask_nerve_path``); an empty
mask cell means "no label". ``subject`` and ``split`` are optional.

A frame's truth is its mask: an all-zero mask means "no nerve in view".
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

MASK_COLUMNS = ("mask_path", "mask_nerve_path")


@dataclass(frozen=True)
class Sample:
    """One frame of a manifest. Paths are absolute; ``mask`` None = unlabelled."""

    image: Path
    mask: Path | None
    subject: str | None
    split: str | None
    dataset: str
    name: str  # image path relative to the folder, without suffix: unique within a dataset

    def group(self) -> str:
        """Subject id for subject-wise splits; frames without one are their own group."""
        return self.subject if self.subject else f"{self.dataset}/{self.name}"


def read_manifest(folder: str | Path, mask_column: str | None = None) -> list[Sample]:
    """All rows of ``folder/manifest.csv`` as `Sample`s, in file order.

    Raises FileNotFoundError / ValueError naming the file and the problem (no
    manifest, no ``path`` column, no mask column, a listed file missing).
    """
    folder = Path(folder)
    mf = folder / "manifest.csv"
    if not mf.is_file():
        raise FileNotFoundError(f"{mf} not found: a data folder needs a manifest.csv with 'path' and 'mask_path'")
    with mf.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{mf} has no rows")
    cols = rows[0].keys()
    if "path" not in cols:
        raise ValueError(f"{mf} has no 'path' column (columns: {', '.join(cols)})")
    if mask_column is None:
        mask_column = next((c for c in MASK_COLUMNS if c in cols), None)
        if mask_column is None:
            raise ValueError(f"{mf} has no mask column; expected one of {', '.join(MASK_COLUMNS)}")
    elif mask_column not in cols:
        raise ValueError(f"{mf} has no column {mask_column!r} (columns: {', '.join(cols)})")
    out = []
    for i, r in enumerate(rows, start=2):
        img = folder / r["path"]
        if not img.is_file():
            raise ValueError(f"{mf} line {i}: image {img} does not exist")
        m = (r.get(mask_column) or "").strip()
        mask = folder / m if m else None
        if mask is not None and not mask.is_file():
            raise ValueError(f"{mf} line {i}: mask {mask} does not exist")
        out.append(
            Sample(
                image=img,
                mask=mask,
                subject=(r.get("subject") or "").strip() or None,
                split=(r.get("split") or "").strip() or None,
                dataset=folder.name,
                name=str(Path(r["path"]).with_suffix("")),
            )
        )
    return out


def load_gray(path: Path) -> np.ndarray:
    """uint8 HxW gray image; raises ValueError naming an unreadable file."""
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"cannot read image {path}")
    return img


def load_mask(path: Path) -> np.ndarray:
    """uint8 HxW mask, 255 = nerve, 0 = not (any non-zero value counts as nerve)."""
    m = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise ValueError(f"cannot read mask {path}")
    return np.where(m > 0, 255, 0).astype(np.uint8)
