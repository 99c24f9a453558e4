"""How alike are frames with and without a nerve? A check on what presence can learn from this data.

For each frame of a subject, the most similar *other* frame of the same subject
(normalised cross-correlation of blurred, standardised thumbnails). When the
frames labelled "no nerve" are about as close to a frame labelled "nerve" as
labelled frames are to each other, no image-based presence classifier can
separate them well: the labels, not the model, cap specificity.

    python -m train.neighbours --data ../shared/data/kaggle-bp

Only subjects that have both kinds of frame, and only frames of the same
variant (the full-resolution originals are not compared with the 256x186
re-encodes), are used.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from train.manifest import load_gray, load_mask, read_manifest


def thumbnails(images: list[np.ndarray], size: tuple[int, int] = (128, 96), blur_sigma: float = 1.5) -> np.ndarray:
    """(N, w*h) rows of unit norm: each image resized, blurred against speckle, standardised."""
    rows = []
    for img in images:
        g = cv2.resize(img, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        g = cv2.GaussianBlur(g, (0, 0), blur_sigma)
        g = (g - g.mean()) / max(float(g.std()), 1e-6)
        rows.append(g.ravel() / np.sqrt(g.size))
    return np.stack(rows)


@dataclass(frozen=True)
class Neighbours:
    n_positive: int
    n_negative: int
    negative_to_positive: np.ndarray  # per negative frame: correlation with its most similar positive frame
    positive_to_positive: np.ndarray  # per positive frame: with its most similar other positive frame

    @property
    def negatives_as_close_as_positives(self) -> int:
        """Negative frames at least as close to a positive as the median positive is to its nearest positive."""
        return int((self.negative_to_positive >= np.median(self.positive_to_positive)).sum())


def nearest(x: np.ndarray, positive: np.ndarray) -> Neighbours:
    """Nearest-neighbour correlations between unit rows ``x`` split by the boolean ``positive``."""
    positive = np.asarray(positive, bool)
    if positive.sum() < 2 or (~positive).sum() < 1:
        raise ValueError("need at least two positive frames and one negative frame")
    c = x @ x.T
    np.fill_diagonal(c, -np.inf)
    return Neighbours(
        n_positive=int(positive.sum()),
        n_negative=int((~positive).sum()),
        negative_to_positive=c[~positive][:, positive].max(axis=1),
        positive_to_positive=c[positive][:, positive].max(axis=1),
    )


def _variants(folder: Path) -> dict[str, str]:
    """Image path -> the manifest's ``variant`` column (empty when the column is absent)."""
    with (folder / "manifest.csv").open(newline="", encoding="utf-8") as f:
        return {r["path"]: r.get("variant", "") for r in csv.DictReader(f)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.neighbours", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data/kaggle-bp", help="folder with manifest.csv (default: %(default)s)")
    args = p.parse_args(argv)
    folder = Path(args.data)
    variant = _variants(folder)
    groups: dict[tuple[str, str], list] = {}
    for s in read_manifest(folder):
        if s.mask is None or s.subject is None:
            continue
        key = (s.subject, variant.get(str(s.image.relative_to(folder)), ""))
        groups.setdefault(key, []).append(s)
    print("subject  variant                              pos  neg  neg->nearest pos (median, min)  pos->nearest pos "
          "(median)  neg as close as the median pos")
    for (subject, var), samples in sorted(groups.items()):
        positive = np.array([load_mask(s.mask).any() for s in samples])
        if positive.sum() < 2 or positive.all():
            continue
        nb = nearest(thumbnails([load_gray(s.image) for s in samples]), positive)
        print(
            f"{subject:<8} {var[:36]:<36} {nb.n_positive:>4} {nb.n_negative:>4}  "
            f"{np.median(nb.negative_to_positive):.3f}, {nb.negative_to_positive.min():.3f}"
            f"{'':<22}{np.median(nb.positive_to_positive):.3f}{'':<18}"
            f"{nb.negatives_as_close_as_positives} of {nb.n_negative}"
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
