"""Output sinks: where annotated frames go. `SINKS` is the table of kinds; `open_sink` builds one.

Each kind lives in its own module and is imported only when asked for, so a box
without a display never touches highgui, and importing this package opens
nothing and loads no OpenCV. Each implementation takes its kind's config model
(`edge.sinks.settings`).

Kinds (``sink.spec`` shorthand, or ``sink.kind`` with the keys of that kind):
    fbdev[:/dev/fbN]   the console framebuffer (`edge.sinks.fbdev`)
    window             an OpenCV window (`edge.sinks.window`)
    video:PATH         an mp4 file (`edge.sinks.video`)
    null               nothing (`edge.sinks.null`)
"""

from __future__ import annotations

from edge.sections import Registered, Registry
from edge.sinks.base import Sink, SinkBase
from edge.sinks.settings import (
    DEFAULT_VIDEO_FPS,
    FbdevSinkConfig,
    NullSinkConfig,
    SinkConfig,
    VideoSinkConfig,
    WindowSinkConfig,
)

__all__ = ["Sink", "SinkBase", "SinkConfig", "SINKS", "open_sink"]

#: kind -> (config model, implementation module, class); the implementation takes its kind's model
SINKS = Registry("sink", default="null", entries={
    "fbdev": Registered(FbdevSinkConfig, "edge.sinks.fbdev", "FramebufferSink"),
    "window": Registered(WindowSinkConfig, "edge.sinks.window", "WindowSink"),
    "video": Registered(VideoSinkConfig, "edge.sinks.video", "VideoSink"),
    "null": Registered(NullSinkConfig, "edge.sinks.null", "NullSink"),
})


def open_sink(cfg: SinkConfig, fps_hint: float | None = None) -> Sink:
    """Open the sink ``cfg`` (one kind's model) describes.

    fps_hint: the source's nominal rate, used as the video file's rate when
        ``cfg.fps`` is not set (else 30).
    Raises `edge.errors.SinkError` when the output cannot be opened.
    """
    if isinstance(cfg, VideoSinkConfig) and cfg.fps is None:
        # The container needs a rate before the first frame: the source's, when the config leaves it open.
        cfg = cfg.model_copy(update={"fps": fps_hint or DEFAULT_VIDEO_FPS})
    return SINKS[cfg.kind].load()(cfg)
