"""Config models of the output sinks, one per kind (``sink:`` in the YAML file).

Light on purpose, like `edge.sources.settings`: no OpenCV, no highgui. The
table joining a kind to its model and implementation is `edge.sinks.SINKS`.
``sink: {spec: "video:out.mp4"}`` and ``sink: {kind: video, path: out.mp4}`` are
the same sink.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from edge.paths import DEFAULT_FRAMEBUFFER
from edge.sections import KindSection

DEFAULT_VIDEO_FPS = 30.0  # a video file's rate when neither the config nor the source says


class SinkConfig(KindSection):
    """Where annotated frames go: the base of the per-kind models.

    ``SinkConfig(spec=..., **keys)`` (or ``kind=...``) builds the model of the
    kind named, e.g. ``SinkConfig(spec="video:out.mp4")`` is a `VideoSinkConfig`;
    with neither, the null sink. Raises pydantic's ValidationError.
    """

    section = "sink"

    def __new__(cls, *args: Any, **data: Any) -> SinkConfig:
        if cls is SinkConfig:
            from edge.sinks import SINKS  # the registry knows the kinds; imported here to avoid a cycle

            # The instance returned is then initialised again by Python with ``data``: the same result.
            return SINKS.parse(data)
        return super().__new__(cls)


class FbdevSinkConfig(SinkConfig):
    """The Linux console framebuffer (the appliance: HDMI out without a desktop)."""

    spec_arg = "device"
    spec_example = "fbdev:/dev/fb0"

    kind: Literal["fbdev"] = Field(
        "fbdev", description="draw into a Linux framebuffer, letterboxed; spec shorthand: fbdev:DEVICE"
    )
    device: str = Field(
        DEFAULT_FRAMEBUFFER, min_length=1,
        description="framebuffer device (/dev/fbN: geometry read from /sys/class/graphics/fbN) or a pre-sized file",
    )
    width: int | None = Field(
        None, gt=0, description="framebuffer width, pixels; overrides sysfs (needed for a plain file)"
    )
    height: int | None = Field(
        None, gt=0, description="framebuffer height, pixels; overrides sysfs (needed for a plain file)"
    )
    bpp: Literal[16, 32] | None = Field(
        None, description="bits per pixel: 16 (RGB565) or 32 (XRGB8888); overrides sysfs (needed for a plain file)"
    )
    stride: int | None = Field(
        None, gt=0, description="bytes per framebuffer line; overrides sysfs (null: sysfs's, else width*bpp/8)"
    )


class WindowSinkConfig(SinkConfig):
    """An OpenCV window on a desktop (needs an OpenCV build with a GUI and a display)."""

    spec_example = "window"

    kind: Literal["window"] = Field(
        "window", description="an OpenCV highgui window ('q' quits, 'r' toggles recording); spec shorthand: window"
    )
    fullscreen: bool = Field(True, description="borderless full screen (true) or a normal, resizable window (false)")


class VideoSinkConfig(SinkConfig):
    """An mp4 file of the annotated frames (demos, review material)."""

    spec_arg = "path"
    spec_example = "video:out.mp4"

    kind: Literal["video"] = Field(
        "video", description="write the annotated frames to an mp4 file; spec shorthand: video:PATH"
    )
    path: str = Field(
        ..., min_length=1, description="the mp4 file; its folder must exist; an existing file is overwritten"
    )
    fps: float | None = Field(
        None, gt=0, le=240,
        description=f"container frame rate, frames/s (null: the source's nominal rate, else {DEFAULT_VIDEO_FPS:g})",
    )


class NullSinkConfig(SinkConfig):
    """Shows nothing (benchmarks, headless runs, recording-only runs)."""

    spec_example = "null"

    kind: Literal["null"] = Field(
        "null", description="show nothing; spec shorthand: null"
    )
