"""`ImageFolderSource`: a folder of still frames played as a video (evaluation, recordings, Kaggle frames)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np

from edge.errors import SourceError, SourceExhausted
from edge.sources.base import SourceBase
from edge.sources.settings import ImagesSourceConfig
from edge.types import Frame

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
MASK_SUFFIX = "_mask"


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: ``1_2`` before ``1_10``, ``img9`` before ``img10``."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", name) if part
    )


def list_images(folder: Path) -> list[Path]:
    """Image files of ``folder`` (not recursive), naturally sorted, ``*_mask.*`` left out."""
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith(MASK_SUFFIX)
    ]
    return sorted(files, key=lambda p: natural_key(p.name))


class ImageFolderSource(SourceBase):
    """Frames from the images of one folder, in natural order.

    cfg.path: the folder. cfg.fps with cfg.pace: deliver at that rate; without fps,
    unpaced. cfg.loop: start over after the last image instead of raising
    `SourceExhausted`.

    An image that cannot be decoded is logged once (WARNING) and skipped for the
    rest of the run; the run goes on. Raises `SourceError` when the folder is
    missing, holds no image, or none of its images can be decoded.

    current_path: the file of the frame last returned (None before the first).
    Frames: HxWx3 uint8 BGR as ``cv2.imread(path, IMREAD_COLOR)`` gives them (gray
    files replicated to 3 channels), a new array per frame, at the file's own size.
    """

    def __init__(self, cfg: ImagesSourceConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.folder = Path(cfg.path).expanduser()
        if not self.folder.is_dir():
            raise SourceError(f"image folder not found: {self.folder}")
        try:
            self.paths = list_images(self.folder)
        except OSError as e:  # no read/search permission for the service user
            raise SourceError(f"image folder {self.folder} cannot be read: {e.strerror or e}") from None
        if not self.paths:
            raise SourceError(
                f"image folder holds no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}; "
                f"*{MASK_SUFFIX}.* skipped): {self.folder}"
            )
        self.nominal_fps = float(cfg.fps) if cfg.fps else None
        self.current_path: Path | None = None
        self.skipped: list[Path] = []  # files that failed to decode
        self.loops = 0
        self._index = 0  # position in self.paths of the next file to decode
        self._pending: tuple[Path, np.ndarray] | None = None

    def _decode_next(self) -> tuple[Path, np.ndarray]:
        wrapped_without_frame = False
        while True:
            if self._index >= len(self.paths):
                if not self.cfg.loop:
                    raise SourceExhausted(f"no more images in {self.folder}")
                if wrapped_without_frame or not self.paths:
                    raise SourceError(f"no image in {self.folder} could be decoded")
                wrapped_without_frame = True
                self._index = 0
                self.loops += 1
            path = self.paths[self._index]
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None or image.size == 0:
                logger.warning("skipping unreadable image %s", path)
                self.skipped.append(path)
                del self.paths[self._index]  # so a looping run warns once, not once per pass
                if not self.paths:
                    raise SourceError(f"no image in {self.folder} could be decoded")
                continue
            self._index += 1
            return path, image

    def read(self, timeout: float = 0.5) -> Frame | None:
        """Next frame; None when pacing says it is not due within ``timeout`` s.

        Raises `SourceExhausted` on the read after the last image (no loop).
        """
        if self._pending is None:
            self._pending = self._decode_next()  # decode first: its time hides inside the pacing wait
        if self.cfg.pace and self.nominal_fps and not self._wait_due(self.nominal_fps, timeout):
            return None
        (path, image), self._pending = self._pending, None
        self.current_path = path
        return self._make_frame(image)

    def describe(self) -> str:
        rate = f"paced @{self.nominal_fps:.4g}fps" if self.cfg.pace and self.nominal_fps else "unpaced"
        loop = ", loop" if self.cfg.loop else ""
        return f"images:{self.folder} {len(self.paths)} files, {rate}{loop}"
