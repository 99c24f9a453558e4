"""Config models of the frame sources, one per kind (``source:`` in the YAML file).

Light on purpose: pydantic and `edge.paths` only, so `edge.config` (and
``nerveseg check-config``) never loads OpenCV or a device package. The
implementations live in their own modules and take these models; the table that
joins a kind to its model and its implementation is `edge.sources.SOURCES`.

Each model accepts ``spec: "kind:arg"`` as a shorthand for ``kind`` plus the
kind's main argument (see `edge.sections.KindSection`), so both of these are the
same file source::

    source: {spec: "file:clip.mp4", loop: true}
    source: {kind: file, path: clip.mp4, loop: true}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from edge.paths import DEFAULT_V4L2_DEVICE
from edge.sections import KindSection

MAX_WIDTH, MAX_HEIGHT, MAX_FPS = 7680, 4320, 240.0  # 8K at most; no capture card or clip goes beyond
DEFAULT_RETRY_MAX_S = 5.0


class SourceConfig(KindSection):
    """Where frames come from: the base of the per-kind models.

    Calling ``SourceConfig(spec=..., **keys)`` (or ``kind=...``) builds the model
    of the kind named, as `pathlib.Path` builds a `PosixPath`: e.g.
    ``SourceConfig(spec="file:clip.mp4", loop=True)`` is a `FileSourceConfig`.
    With neither, the kind is the phantom. Raises pydantic's ValidationError.
    """

    section = "source"

    def frame_size(self) -> tuple[int, int] | None:
        """(width, height) of the frames this source will deliver when its config fixes both, else None."""
        size = self.model_dump(include={"width", "height"})  # kinds without these fields (images) give {}
        width, height = size.get("width"), size.get("height")
        return (width, height) if width and height else None

    def __new__(cls, *args: Any, **data: Any) -> SourceConfig:
        if cls is SourceConfig:
            from edge.sources import SOURCES  # the registry knows the kinds; imported here to avoid a cycle

            # The instance returned is then initialised again by Python with ``data``: the same result.
            return SOURCES.parse(data)
        return super().__new__(cls)


class V4L2SourceConfig(SourceConfig):
    """A USB (UVC) HDMI-capture dongle or any V4L2 device, through OpenCV; reconnects forever."""

    spec_arg = "device"
    spec_example = "v4l2:/dev/video0"

    kind: Literal["v4l2"] = Field(
        "v4l2", description="a V4L2 capture device (USB HDMI-capture dongle); spec shorthand: v4l2:DEVICE"
    )
    device: str = Field(
        DEFAULT_V4L2_DEVICE, min_length=1, description="device path (/dev/video0) or index (0 = /dev/video0)"
    )
    width: int | None = Field(
        None, gt=0, le=MAX_WIDTH,
        description="requested capture width, pixels; the driver picks its nearest mode (null: the device's)",
    )
    height: int | None = Field(
        None, gt=0, le=MAX_HEIGHT,
        description="requested capture height, pixels; the driver picks its nearest mode (null: the device's)",
    )
    fps: float | None = Field(
        None, gt=0, le=MAX_FPS, description="requested frame rate, frames/s (null: the device's)"
    )
    fourcc: Literal["MJPG", "YUYV"] = Field(
        "MJPG", description="pixel format requested: MJPG (USB2 dongles give 1080p30 only so) or YUYV (raw)"
    )
    retry_max_s: float = Field(
        DEFAULT_RETRY_MAX_S, gt=0, le=300,
        description="ceiling of the reconnect backoff after an unplug, seconds (retries start at 0.25 s and double)",
    )

    @field_validator("device", mode="before")
    @classmethod
    def _index_as_text(cls, v: Any) -> Any:
        # YAML reads `device: 0` as a number; the index form is the same device as 'v4l2:0'.
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


class Picamera2SourceConfig(SourceConfig):
    """An HDMI-to-CSI bridge (TC358743) on a Raspberry Pi, through picamera2; reconnects forever."""

    spec_arg = "camera"
    spec_example = "picamera2:0"

    kind: Literal["picamera2"] = Field(
        "picamera2", description="a libcamera camera (HDMI-to-CSI bridge); spec shorthand: picamera2:CAMERA"
    )
    camera: int = Field(0, ge=0, le=15, description="libcamera camera number (0 = the first camera)")
    width: int | None = Field(
        None, gt=0, le=MAX_WIDTH,
        description="main stream width, pixels; set it and height to the HDMI input's mode (null: 1280x720)",
    )
    height: int | None = Field(
        None, gt=0, le=MAX_HEIGHT,
        description="main stream height, pixels; set it and width to the HDMI input's mode (null: 1280x720)",
    )
    fps: float | None = Field(
        None, gt=0, le=MAX_FPS, description="FrameRate control, frames/s (null: the camera's default)"
    )
    retry_max_s: float = Field(
        DEFAULT_RETRY_MAX_S, gt=0, le=300,
        description="ceiling of the reconnect backoff after a camera error, seconds (retries start at 0.25 s and "
        "double)",
    )


class FileSourceConfig(SourceConfig):
    """A recorded video file played as if it were live video (demos, benchmarks, tests)."""

    spec_arg = "path"
    spec_example = "file:/path/to/clip.mp4"

    kind: Literal["file"] = Field(
        "file", description="a video file, decoded by OpenCV (FFmpeg); spec shorthand: file:PATH"
    )
    path: str = Field(..., min_length=1, description="the video file (~ is expanded; relative to the working "
                      "directory)")
    width: int | None = Field(
        None, gt=0, le=MAX_WIDTH,
        description="scale every frame to this width, pixels; alone it keeps the aspect ratio (null: the file's)",
    )
    height: int | None = Field(
        None, gt=0, le=MAX_HEIGHT,
        description="scale every frame to this height, pixels; alone it keeps the aspect ratio (null: the file's)",
    )
    fps: float | None = Field(
        None, gt=0, le=MAX_FPS, description="delivery rate when pace is on, frames/s (null: the file's own rate)"
    )
    pace: bool = Field(True, description="deliver at fps, as live video would (true) or as fast as decoded (false)")
    loop: bool = Field(False, description="start over at the end (true) or end the run after the last frame (false)")


class ImagesSourceConfig(SourceConfig):
    """A folder of still frames played in natural order (``*_mask.*`` files left out), at their own size."""

    spec_arg = "path"
    spec_example = "images:/path/to/folder"

    kind: Literal["images"] = Field(
        "images", description="a folder of png/tif/jpg/bmp frames; spec shorthand: images:PATH"
    )
    path: str = Field(..., min_length=1, description="the folder (not recursive; ~ is expanded)")
    fps: float | None = Field(
        None, gt=0, le=MAX_FPS, description="delivery rate when pace is on, frames/s (null: unpaced)"
    )
    pace: bool = Field(True, description="deliver at fps (true) or as fast as read (false); no effect without fps")
    loop: bool = Field(False, description="start over after the last image (true) or end the run (false)")


class PhantomSourceConfig(SourceConfig):
    """Synthetic B-mode ultrasound: demos and tests without data or hardware. Never ends."""

    spec_example = "phantom"

    kind: Literal["phantom"] = Field(
        "phantom", description="synthetic B-mode video of a nerve block; spec shorthand: phantom"
    )
    width: int | None = Field(
        None, gt=0, le=MAX_WIDTH,
        description="frame width, pixels: above 580 a video-out frame with a machine screen around the 580x420 "
        "image, below it the image alone at that size; alone it keeps 580:420 (null: 580)",
    )
    height: int | None = Field(
        None, gt=0, le=MAX_HEIGHT,
        description="frame height, pixels: above 420 a video-out frame around the image, as for width (null: 420)",
    )
    fps: float | None = Field(
        None, gt=0, le=MAX_FPS, description="frame rate, frames/s: frame i shows time i/fps (null: 30)"
    )
    pace: bool = Field(True, description="deliver in real time at fps (true) or as fast as rendered (false)")
    seed: int = Field(0, description="random seed of anatomy, motion and speckle; the same seed gives the same "
                      "frames")
