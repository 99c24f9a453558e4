"""Output sinks: where annotated frames go. `open_sink` builds one from the config.

Each kind lives in its own module and is imported only when asked for, so a box
without a display never touches highgui and importing this package opens nothing.
"""

from __future__ import annotations

from edge.config import SinkConfig
from edge.sinks.base import Sink, SinkBase

__all__ = ["Sink", "SinkBase", "open_sink"]

DEFAULT_VIDEO_FPS = 30.0


def open_sink(cfg: SinkConfig, fps_hint: float | None = None) -> Sink:
    """Open the sink ``cfg.spec`` names.

    fps_hint: the source's nominal rate, used as the video file's rate when
        ``cfg.fps`` is not set (else 30).
    Raises `edge.errors.SinkError` when the output cannot be opened.
    """
    kind, arg = cfg.kind, cfg.arg
    if kind == "fbdev":
        from edge.sinks.fbdev import FramebufferSink

        return FramebufferSink(
            arg or "/dev/fb0", width=cfg.fb_width, height=cfg.fb_height, bpp=cfg.fb_bpp, stride=cfg.fb_stride
        )
    if kind == "window":
        from edge.sinks.window import WindowSink

        return WindowSink(fullscreen=cfg.fullscreen)
    if kind == "video":
        from edge.sinks.video import VideoSink

        return VideoSink(arg, cfg.fps or fps_hint or DEFAULT_VIDEO_FPS)
    if kind == "null":
        from edge.sinks.null import NullSink

        return NullSink()
    raise ValueError(f"unknown sink kind {kind!r}")  # unreachable: SinkConfig validates the spec
