"""The observers a configured run attaches to the live loop.

Each feature that watches the loop from the side (recording, health file,
systemd watchdog, site-profile check) is a `edge.pipeline.PipelineObserver`;
this is the one place that decides, from the config, which of them a
`nerveseg run` gets, so the CLI and tests build runs the same way.
"""

from __future__ import annotations

import logging
import os

from edge.config import Config
from edge.pipeline import PipelineObserver
from edge.plan import RunPlan, resolve_run

logger = logging.getLogger(__name__)


def observers_for(plan: RunPlan) -> list[PipelineObserver]:
    """The observers ``plan``'s config asks for, in the order they are called after each frame."""
    cfg = plan.config
    observers: list[PipelineObserver] = []
    if plan.profile is not None:
        # Warns on screen and in the log when live frames stop matching the site profile.
        from edge.profile import ProfileWatcher

        observers.append(ProfileWatcher(plan.profile))
    if cfg.record.mode != "off":
        from edge.recording.recorder import Recorder

        observers.append(Recorder(cfg.record, blank=plan.blank, profile_path=plan.profile_path))
    observers.extend(_health_observers(cfg))
    return observers


def observers_from_config(cfg: Config) -> list[PipelineObserver]:
    """`observers_for` the plan of ``cfg`` (for callers that hold only a config)."""
    return observers_for(resolve_run(cfg))


def _health_observers(cfg: Config) -> list[PipelineObserver]:
    """Status file / metrics when configured; the systemd notifier when systemd started us ($NOTIFY_SOCKET)."""
    out: list[PipelineObserver] = []
    health = cfg.health
    if health.status_file or health.metrics_port is not None:
        from edge.health import HealthMonitor

        out.append(HealthMonitor(health, disk_path=cfg.record.dir))
    if os.environ.get("NOTIFY_SOCKET"):
        from edge.notify import SystemdNotifier

        out.append(SystemdNotifier(during_outage=health.watchdog_during_outage))
    return out
