"""Calibration and check frames drawn from every training source, for a model that serves several machines.

    python -m convert.mixed --data ../shared/data --out runs/frames-v2 [--per-source 120]

int8 ranges fitted on one machine's frames can clip another machine's activations (the
balanced-calibration rule, one level up: balanced over machines as well as over "nerve / no
nerve"). This writes two folders of real frames, ``calibration/`` and ``check/``, each a
`train.manifest` folder (``manifest.csv`` with ``path, mask_path, subject, source``) that
``nerveseg convert --calibration DIR --check DIR`` reads. Frames of a source alternate between the
two folders, so no frame is in both. Per source and folder about ``per_source`` frames, half with a
nerve where the source has both kinds:

* kaggle-bp: full-resolution frames (with and without a nerve) and 256x186 positives;
* regional-us: frames spread over all videos, written as lossless PNG exactly as OpenCV decodes them,
  the mask the box union (only whether a frame shows a nerve matters here);
* usgra-seg: the ``train`` split (its ``test`` split stays for evaluation).

Frames are written, never linked, so the folders outlive the data mount; they are derived from
restricted data (research use only): keep them out of the repository (``runs/`` is ignored).
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path

import cv2
import numpy as np

from convert.cli import _spaced

logger = logging.getLogger(__name__)


def _kaggle(root: Path) -> tuple[list, list]:
    from train.manifest import load_mask, read_manifest

    pos, neg = [], []
    for s in read_manifest(root / "kaggle-bp"):
        if s.mask is None:
            continue
        full = "fullres" in s.image.parts
        if not full and s.image.parent.name != "img_256x186":
            continue
        has = bool(load_mask(s.mask).any())
        item = ("kaggle", s.subject or "", s.image, s.mask, None)
        (pos if has else neg).append(item)
    return pos, neg


def _usgra(root: Path) -> tuple[list, list]:
    from train.manifest import read_manifest

    folder = root / "usgra-seg"
    if not (folder / "manifest.csv").is_file():
        return [], []
    rows = [s for s in read_manifest(folder) if s.split == "train" and s.mask is not None]
    return [("usgra", "", s.image, s.mask, None) for s in rows], []


def _video(root: Path, want: int) -> tuple[list, list]:
    """(with nerve, without) as decoded frames: items carry the frame array and its box-union mask."""
    from train.boxes import box_cover, iter_video, read_box_videos

    folder = root / "regional-us"
    if not (folder / "manifest.csv").is_file():
        return [], []
    videos = read_box_videos(folder)
    # enough candidates for both folders: every k-th frame of each video
    total = sum(max(v.boxes) + 1 if v.boxes else 0 for v in videos) or 1
    step = max(1, total // max(8 * want, 1))
    pos, neg = [], []
    for v in videos:
        for i, frame in iter_video(v, step):
            bb = v.boxes_at(i)
            mask = (box_cover(bb, frame.shape[:2], frame.shape[:2]) > 0.5).astype(np.uint8) * 255
            (pos if bb else neg).append(("regional_us", v.subject, f"{v.subject}_{i:05d}", mask, frame))
    return pos, neg


def write_folders(data_root: Path, out: Path, per_source: int = 120) -> dict[str, dict[str, int]]:
    """Write ``out/calibration`` and ``out/check``; returns the counts per folder and source."""
    sources = {"kaggle": _kaggle(data_root), "regional_us": _video(data_root, per_source), "usgra": _usgra(data_root)}
    counts: dict[str, dict[str, int]] = {}
    folders = {name: out / name for name in ("calibration", "check")}
    rows: dict[str, list[list[str]]] = {name: [] for name in folders}
    for f in folders.values():
        (f / "images").mkdir(parents=True, exist_ok=True)
        (f / "masks").mkdir(parents=True, exist_ok=True)
    for src, (pos, neg) in sources.items():
        if not pos and not neg:
            logger.warning("%s: not found under %s, left out", src, data_root)
            continue
        n_pos = per_source // 2 if neg else per_source
        picks = _spaced(pos, 2 * n_pos) + _spaced(neg, 2 * (per_source - n_pos))
        for k, (source, subject, image, mask, frame) in enumerate(picks):
            name = "calibration" if k % 2 == 0 else "check"
            folder = folders[name]
            stem = f"{source}_{k:04d}"
            if frame is not None:
                img, m = frame, mask
            else:
                img = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
                m = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)
            if img is None or m is None:
                raise ValueError(f"cannot read {image} or its mask {mask}")
            cv2.imwrite(str(folder / "images" / f"{stem}.png"), img)
            cv2.imwrite(str(folder / "masks" / f"{stem}.png"), np.where(m > 0, 255, 0).astype(np.uint8))
            rows[name].append([f"images/{stem}.png", f"masks/{stem}.png", f"{source}/{subject}", source])
            counts.setdefault(name, {}).setdefault(source, 0)
            counts[name][source] += 1
    for name, folder in folders.items():
        with (folder / "manifest.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "mask_path", "subject", "source"])
            w.writerows(rows[name])
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m convert.mixed", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data", help="shared data folder (default: %(default)s)")
    p.add_argument("--out", required=True, help="folder to write calibration/ and check/ into")
    p.add_argument("--per-source", type=int, default=120, help="frames per source and folder (default %(default)s)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    counts = write_folders(Path(args.data), Path(args.out), args.per_source)
    for name, c in counts.items():
        print(f"{Path(args.out) / name}: " + ", ".join(f"{k} {v}" for k, v in c.items()))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
