"""The observers a configured run attaches to the live loop.

Each feature that watches the loop from the side (recording, health file,
systemd watchdog, site-profile check) is a `edge.pipeline.PipelineObserver`;
this is the one place that decides, from the config, which of them a
`nerveseg run` gets, so the CLI and tests build runs the same way.
"""

from __future__ import annotations

from edge.config import Config
from edge.pipeline import PipelineObserver


def observers_from_config(cfg: Config) -> list[PipelineObserver]:
    """The observers ``cfg`` asks for, in the order they are called after each frame."""
    observers: list[PipelineObserver] = []
    return observers
