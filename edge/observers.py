"""The observers a configured run attaches to the live loop.

Each feature that watches the loop from the side (recording, health file,
systemd watchdog, site-profile check) is a `edge.pipeline.PipelineObserver`;
this is the one place that decides, from the config, which of them a
`nerveseg run` gets, so the CLI and tests build runs the same way.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from edge.config import Config
from edge.pipeline import PipelineObserver
from edge.types import Roi

logger = logging.getLogger(__name__)


def observers_from_config(cfg: Config) -> list[PipelineObserver]:
    """The observers ``cfg`` asks for, in the order they are called after each frame."""
    observers: list[PipelineObserver] = []
    if cfg.profile:
        # Warns on screen and in the log when live frames stop matching the site profile.
        from edge.profile import ProfileWatcher, load_profile

        observers.append(ProfileWatcher(load_profile(cfg.profile)))
    if cfg.record.mode != "off":
        from edge.record import Recorder

        profile_path = getattr(cfg, "profile", None)
        observers.append(Recorder(cfg.record, blank=_blank_regions(profile_path), profile_path=profile_path))
    observers.extend(_health_observers(cfg))
    return observers


def _health_observers(cfg: Config) -> list[PipelineObserver]:
    """Status file / metrics when configured; the systemd notifier when systemd started us ($NOTIFY_SOCKET)."""
    out: list[PipelineObserver] = []
    health = cfg.health
    if health.status_file or health.metrics_port is not None:
        from edge.health import HealthMonitor

        record = getattr(cfg, "record", None)
        out.append(HealthMonitor(health, disk_path=getattr(record, "dir", None)))
    if os.environ.get("NOTIFY_SOCKET"):
        from edge.notify import SystemdNotifier

        out.append(SystemdNotifier(during_outage=health.watchdog_during_outage))
    return out


def _blank_regions(profile_path: object) -> Sequence[Roi]:
    """Blanking rectangles (full-frame pixels) of the site profile ``profile_path``; none without one."""
    if not profile_path:
        return ()
    from edge.profile import load_profile

    return tuple(load_profile(profile_path).blank_rois)
