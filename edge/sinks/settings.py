"""Config models of the output sinks, one per kind (``sink:`` in the YAML file).

Light on purpose, like `edge.sources.settings`: no OpenCV, no highgui. The
table joining a kind to its model and implementation is `edge.sinks.SINKS`.
``sink: {spec: "video:out.mp4"}`` and ``sink: {kind: video, path: out.mp4}`` are
the same sink.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from edge.paths import DEFAULT_FRAMEBUFFER
from edge.sections import KindSection

DEFAULT_VIDEO_FPS = 30.0  # a video file's rate when neither the config nor the source says
_FB_NAME = re.compile(r"^fb\d+$")  # /dev/fbN: its geometry is in sysfs


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

    def check(self) -> list[str]:
        """Faults of these settings that no retry or restart can fix, found without opening anything (no
        device, no window, no file written): one line each, naming the key, its value and what is allowed.

        `edge.plan.resolve_run` calls it, so `nerveseg check-config` reports them and `run` refuses them
        with exit code 2 before the first frame. A device that is merely not there yet (a framebuffer late
        at boot) is not a fault here: the sink retries it in the loop. Empty: nothing found.
        """
        return []


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

    @property
    def is_fb_device(self) -> bool:
        """True for a /dev/fbN name (geometry from sysfs; may appear late at boot), False for any other file."""
        return bool(_FB_NAME.match(Path(self.device).name))

    def check(self) -> list[str]:
        problems = []
        missing = [k for k in ("width", "height", "bpp") if getattr(self, k) is None]
        if not self.is_fb_device and missing:
            problems.append(
                f"sink.device {self.device!r} is not a /dev/fbN framebuffer, so its geometry cannot be read: "
                f"set sink.{', sink.'.join(missing)}"
            )
        if self.stride is not None and self.width is not None and self.bpp is not None:
            if self.stride < self.width * self.bpp // 8:
                problems.append(
                    f"sink.stride {self.stride} is less than sink.width {self.width} x {self.bpp // 8} bytes per "
                    f"pixel: allowed: at least {self.width * self.bpp // 8}"
                )
        path = Path(self.device)
        if not self.is_fb_device and not missing and not str(path).startswith("/dev/"):
            # A plain file standing in for a framebuffer (screen captures, tests) must exist, pre-sized:
            # nothing will create it later, unlike a device node.
            need = (self.stride or self.width * self.bpp // 8) * self.height  # type: ignore[operator]
            if path.is_dir():
                problems.append(f"sink.device {self.device!r} is a folder, not a framebuffer")
            elif not path.exists():
                problems.append(f"sink.device {self.device!r} does not exist: a framebuffer file must exist, "
                                f"pre-sized to {need} bytes")
            elif path.is_file() and path.stat().st_size < need:
                problems.append(f"sink.device {self.device!r} holds {path.stat().st_size} bytes, but "
                                f"{self.width}x{self.height} at {self.bpp} bpp needs {need}")
        return problems


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

    def check(self) -> list[str]:
        path = Path(self.path)
        folder = path.parent
        said = f"sink.path {self.path!r}"
        if path.is_symlink():
            return [f"{said} is a symbolic link: the video sink writes only a file of its own (mode 0600); "
                    "give the real path"]
        if path.is_dir():
            return [f"{said} is a folder: give a file name in it, e.g. {str(path / 'out.mp4')!r}"]
        if not folder.exists():
            return [f"{said}: folder {str(folder)!r} does not exist: create it, or write to an existing folder"]
        if not folder.is_dir():
            return [f"{said}: {str(folder)!r} is not a folder"]
        if not os.access(folder, os.W_OK | os.X_OK):
            return [f"{said}: folder {str(folder)!r} is not writable by this user (uid {os.getuid()})"]
        return []


class NullSinkConfig(SinkConfig):
    """Shows nothing (benchmarks, headless runs, recording-only runs)."""

    spec_example = "null"

    kind: Literal["null"] = Field(
        "null", description="show nothing; spec shorthand: null"
    )
