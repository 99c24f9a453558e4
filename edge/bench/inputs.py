"""The frame sizes a benchmark runs at: ``us-WxH``, ``hdmi-WxH``, ``mjpeg-WxH`` or ``native``.

``mjpeg-WxH`` is the video-out frame of ``hdmi-WxH`` as a USB capture dongle delivers it at 1080p: JPEG
compressed, so every frame is decoded on the CPU (`edge.bench.source.MjpegSource`) as the V4L2 path does
for MJPG. ``hdmi-*`` skips that cost; the two side by side show what the decode takes from fps and latency.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge.errors import ConfigError

DEFAULT_INPUTS = ("us-580x420", "hdmi-1920x1080", "mjpeg-1920x1080")

_INPUT_RE = re.compile(r"^(us|hdmi|mjpeg)-(\d+)x(\d+)$")


@dataclass(frozen=True)
class InputSpec:
    """One input size to benchmark.

    name: as given, e.g. ``"hdmi-1920x1080"``. kind: ``"us"`` (the ultrasound image alone), ``"hdmi"`` (a
    video-out frame with the image inside), ``"mjpeg"`` (that frame JPEG-encoded, decoded per frame),
    ``"native"`` (the source's own size). size: (width, height) in
    pixels, None for native.
    """

    name: str
    kind: str
    size: tuple[int, int] | None


def parse_input(text: str) -> InputSpec:
    """``us-WxH`` | ``hdmi-WxH`` | ``mjpeg-WxH`` | ``native`` -> `InputSpec`.

    Raises `ConfigError` naming the allowed forms."""
    t = text.strip().lower()
    if t == "native":
        return InputSpec("native", "native", None)
    m = _INPUT_RE.match(t)
    if not m or int(m.group(2)) <= 0 or int(m.group(3)) <= 0:
        raise ConfigError(
            "<command line>",
            [f"--input: got {text!r}; allowed: us-WxH (the ultrasound frame, e.g. us-580x420), "
             "hdmi-WxH (a video-out frame, e.g. hdmi-1920x1080), mjpeg-WxH (that frame as a capture dongle's "
             "MJPG, decoded per frame) or native"],
        )
    return InputSpec(t, m.group(1), (int(m.group(2)), int(m.group(3))))
