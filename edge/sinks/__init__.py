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

Faults of the settings (a video file's folder that does not exist, a framebuffer file without its
geometry) are found by each kind's ``check()`` without opening anything: `edge.plan.resolve_run` calls
it, so `nerveseg check-config` reports them (exit code 2). A framebuffer that is not there yet at start
is retried from the loop (`RetryingSink`), never fatal.
"""

from __future__ import annotations

from edge.errors import ConfigError
from edge.sections import Registered, Registry
from edge.sinks.base import RetryingSink, Sink, SinkBase, SinkNotReady
from edge.sinks.settings import (
    DEFAULT_VIDEO_FPS,
    FbdevSinkConfig,
    NullSinkConfig,
    SinkConfig,
    VideoSinkConfig,
    WindowSinkConfig,
)

__all__ = ["RetryingSink", "Sink", "SinkBase", "SinkConfig", "SinkNotReady", "SINKS", "check_sink", "open_sink"]

#: kind -> (config model, implementation module, class); the implementation takes its kind's model
SINKS = Registry("sink", default="null", entries={
    "fbdev": Registered(FbdevSinkConfig, "edge.sinks.fbdev", "FramebufferSink"),
    "window": Registered(WindowSinkConfig, "edge.sinks.window", "WindowSink"),
    "video": Registered(VideoSinkConfig, "edge.sinks.video", "VideoSink"),
    "null": Registered(NullSinkConfig, "edge.sinks.null", "NullSink"),
})


def check_sink(cfg: SinkConfig, where: str = "<config>") -> None:
    """Raise `ConfigError` (exit code 2) listing the faults ``cfg.check()`` finds; opens nothing."""
    problems = cfg.check()
    if problems:
        raise ConfigError(where, problems)


def open_sink(cfg: SinkConfig, fps_hint: float | None = None) -> Sink:
    """Open the sink ``cfg`` (one kind's model) describes.

    fps_hint: the source's nominal rate, used as the video file's rate when
        ``cfg.fps`` is not set (else 30).
    Raises `ConfigError` (exit code 2) for faults of the settings (`check_sink`: the same check
    `resolve_run` makes), `edge.errors.SinkError` (exit code 5) when the output cannot be opened for a
    reason no wait fixes. A kind whose output may appear later (the framebuffer: its class sets
    ``retry_until_ready``) comes wrapped in a `RetryingSink`, which retries it from the loop.
    """
    check_sink(cfg, where=f"sink {cfg.spec}")
    if isinstance(cfg, VideoSinkConfig) and cfg.fps is None:
        # The container needs a rate before the first frame: the source's, when the config leaves it open.
        cfg = cfg.model_copy(update={"fps": fps_hint or DEFAULT_VIDEO_FPS})
    cls = SINKS[cfg.kind].load()
    if getattr(cls, "retry_until_ready", False):
        return RetryingSink(lambda: cls(cfg), name=f"display {cfg.spec}", what=cfg.spec)
    return cls(cfg)
