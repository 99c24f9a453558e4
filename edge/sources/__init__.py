"""Frame sources: one `FrameSource` interface, one implementation per module.

`open_source` imports the chosen kind's module only when it is used, so a
missing optional package (picamera2 off the Pi) matters only for that kind, and
importing this package opens nothing.

Kinds (``SourceConfig.spec``):
    v4l2:/dev/video0 | v4l2:0   USB HDMI-capture dongle or any V4L2 device (`edge.sources.v4l2`)
    picamera2[:N]               HDMI-to-CSI bridge via picamera2 (`edge.sources.picamera2`)
    file:PATH                   a video file (`edge.sources.file`)
    images:DIR                  a folder of still frames (`edge.sources.images`)
    phantom                     synthetic B-mode ultrasound (`edge.sources.phantom`)
"""

from __future__ import annotations

import importlib
import stat
from pathlib import Path

from edge.config import SOURCE_KINDS, SourceConfig
from edge.errors import SourceError
from edge.sources.base import FrameSource, SourceBase

__all__ = ["FrameSource", "SourceBase", "open_source", "source_spec_from_arg", "SPEC_FORMS"]

# kind -> (module, class); modules are imported on first use only.
_IMPLEMENTATIONS = {
    "v4l2": ("edge.sources.v4l2", "V4L2Source"),
    "picamera2": ("edge.sources.picamera2", "Picamera2Source"),
    "file": ("edge.sources.file", "VideoFileSource"),
    "images": ("edge.sources.images", "ImageFolderSource"),
    "phantom": ("edge.sources.phantom", "PhantomSource"),
}

SPEC_FORMS = (
    "v4l2:/dev/video0, v4l2:0, picamera2, file:clip.mp4, images:DIR, phantom, or a path to a video file or folder"
)


def open_source(cfg: SourceConfig) -> FrameSource:
    """Build the source ``cfg.spec`` names. Raises `SourceError` when it cannot be opened at all.

    A V4L2 or picamera2 device that is merely absent does not raise: those
    sources keep retrying (see their modules).
    """
    kind = cfg.kind
    if kind not in _IMPLEMENTATIONS:  # pragma: no cover - SourceConfig already validates the kind
        raise SourceError(f"unknown source kind {kind!r}; allowed: {', '.join(SOURCE_KINDS)}")
    module_name, class_name = _IMPLEMENTATIONS[kind]
    module = importlib.import_module(module_name)
    return getattr(module, class_name)(cfg)


def source_spec_from_arg(text: str) -> str:
    """Turn a command-line ``--source`` value into a source spec.

    Accepts a spec (``v4l2:/dev/video0``, ``v4l2:0``, ``picamera2``, ``file:clip.mp4``,
    ``images:DIR``, ``phantom``; the kind is case-insensitive and returned lower
    case) or a bare path: an existing folder -> ``images:DIR``, an existing file
    -> ``file:PATH``, an existing V4L2 character device (``/dev/video2``) ->
    ``v4l2:/dev/video2``. A spec's path is not checked here; the source does that
    when it opens. Anything else raises `SourceError` naming the allowed forms.
    """
    raw = text.strip()
    if not raw:
        raise SourceError(f"empty source; allowed: {SPEC_FORMS}")
    kind, sep, arg = raw.partition(":")
    kind_l = kind.strip().lower()
    if kind_l in SOURCE_KINDS:
        arg = arg.strip()
        if kind_l in ("file", "images") and not arg:
            raise SourceError(f"source {raw!r}: {kind_l} needs a path, e.g. {kind_l}:PATH; allowed: {SPEC_FORMS}")
        if kind_l in ("phantom",) and arg:
            raise SourceError(f"source {raw!r}: phantom takes no argument; allowed: {SPEC_FORMS}")
        return f"{kind_l}:{arg}" if arg else kind_l
    path = Path(raw).expanduser()
    if path.is_dir():
        return f"images:{raw}"
    if path.is_file():
        return f"file:{raw}"
    try:
        if raw.startswith("/dev/video") and stat.S_ISCHR(path.stat().st_mode):
            return f"v4l2:{raw}"
    except OSError:
        pass
    raise SourceError(f"source {raw!r} is neither a spec nor an existing file or folder; allowed: {SPEC_FORMS}")
