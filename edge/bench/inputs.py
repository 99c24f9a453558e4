"""The frame sizes a benchmark runs at: ``us-WxH``, ``hdmi-WxH`` or ``native``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge.errors import ConfigError

DEFAULT_INPUTS = ("us-580x420", "hdmi-1920x1080")

_INPUT_RE = re.compile(r"^(us|hdmi)-(\d+)x(\d+)$")


@dataclass(frozen=True)
class InputSpec:
    """One input size to benchmark.

    name: as given, e.g. ``"hdmi-1920x1080"``. kind: ``"us"`` (the ultrasound image alone), ``"hdmi"`` (a
    video-out frame with the image inside), ``"native"`` (the source's own size). size: (width, height) in
    pixels, None for native.
    """

    name: str
    kind: str
    size: tuple[int, int] | None


def parse_input(text: str) -> InputSpec:
    """``us-WxH`` | ``hdmi-WxH`` | ``native`` -> `InputSpec`. Raises `ConfigError` naming the allowed forms."""
    t = text.strip().lower()
    if t == "native":
        return InputSpec("native", "native", None)
    m = _INPUT_RE.match(t)
    if not m or int(m.group(2)) <= 0 or int(m.group(3)) <= 0:
        raise ConfigError(
            "<command line>",
            [f"--input: got {text!r}; allowed: us-WxH (the ultrasound frame, e.g. us-580x420), "
             "hdmi-WxH (a video-out frame, e.g. hdmi-1920x1080) or native"],
        )
    return InputSpec(t, m.group(1), (int(m.group(2)), int(m.group(3))))
