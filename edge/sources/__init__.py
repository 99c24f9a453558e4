"""Frame sources: one `FrameSource` interface, one implementation per module, one table of kinds.

`SOURCES` joins each kind to its config model (`edge.sources.settings`, light)
and its implementation (module and class, imported only when that kind is
opened), so a missing optional package (picamera2 off the Pi) matters only for
that kind, and importing this package opens nothing and loads no OpenCV.

Kinds (``source.spec`` shorthand, or ``source.kind`` with the keys of that kind):
    v4l2:/dev/video0 | v4l2:0   USB HDMI-capture dongle or any V4L2 device (`edge.sources.v4l2`)
    picamera2[:N]               HDMI-to-CSI bridge via picamera2 (`edge.sources.picamera2`)
    file:PATH                   a video file (`edge.sources.file`)
    images:DIR                  a folder of still frames (`edge.sources.images`)
    phantom                     synthetic B-mode ultrasound (`edge.sources.phantom`)
"""

from __future__ import annotations

import stat
from pathlib import Path

from edge.errors import SourceError
from edge.sections import Registered, Registry
from edge.sources.base import FrameSource, SourceBase
from edge.sources.settings import (
    FileSourceConfig,
    ImagesSourceConfig,
    PhantomSourceConfig,
    Picamera2SourceConfig,
    SourceConfig,
    V4L2SourceConfig,
)

__all__ = ["FrameSource", "SourceBase", "SourceConfig", "SOURCES", "open_source", "source_spec_from_arg",
           "SPEC_FORMS"]

#: kind -> (config model, implementation module, class); the implementation takes its kind's model
SOURCES = Registry("source", default="phantom", entries={
    "v4l2": Registered(V4L2SourceConfig, "edge.sources.v4l2", "V4L2Source"),
    "picamera2": Registered(Picamera2SourceConfig, "edge.sources.picamera2", "Picamera2Source"),
    "file": Registered(FileSourceConfig, "edge.sources.file", "VideoFileSource"),
    "images": Registered(ImagesSourceConfig, "edge.sources.images", "ImageFolderSource"),
    "phantom": Registered(PhantomSourceConfig, "edge.sources.phantom", "PhantomSource"),
})

SPEC_FORMS = (
    "v4l2:/dev/video0, v4l2:0, picamera2, file:clip.mp4, images:DIR, phantom, or a path to a video file or folder"
)


def open_source(cfg: SourceConfig) -> FrameSource:
    """Build the source ``cfg`` (one kind's model) describes. Raises `SourceError` when it cannot be opened at all.

    A V4L2 or picamera2 device that is merely absent does not raise: those
    sources keep retrying (see their modules).
    """
    if cfg.kind not in SOURCES.entries:  # pragma: no cover - the config models only know registered kinds
        raise SourceError(f"unknown source kind {cfg.kind!r}; allowed: {', '.join(SOURCES.kinds)}")
    return SOURCES[cfg.kind].load()(cfg)


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
    if kind_l in SOURCES.entries:
        arg = arg.strip()
        model = SOURCES[kind_l].config
        if model.spec_arg is None and arg:
            raise SourceError(f"source {raw!r}: {kind_l} takes no argument; allowed: {SPEC_FORMS}")
        if model.spec_arg is not None and not arg and model.model_fields[model.spec_arg].is_required():
            raise SourceError(f"source {raw!r}: {kind_l} needs a {model.spec_arg}, e.g. {model.spec_example}; "
                              f"allowed: {SPEC_FORMS}")
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
