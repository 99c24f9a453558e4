"""Health an engineer can read without a screen: a JSON status file and optional Prometheus metrics.

    status    the status file: its fields (`STATUS_FIELDS`), atomic writes, reading it back (`nerveseg status`)
    monitor   `HealthMonitor`, the observer that takes the loop's snapshots and has them written
    metrics   the Prometheus text of a snapshot and the loopback-only HTTP server
"""

from edge.health.metrics import METRICS_CLIENT_TIMEOUT_S, METRICS_MAX_HANDLERS, MetricsServer, render_metrics
from edge.health.monitor import HealthMonitor
from edge.health.status import (
    DEFAULT_STATUS_FILE,
    SCHEMA_VERSION,
    STATES,
    STATUS_FIELDS,
    disk_usage,
    format_status,
    read_status,
    status_age_s,
    write_json_atomic,
)

__all__ = [
    "DEFAULT_STATUS_FILE",
    "METRICS_CLIENT_TIMEOUT_S",
    "METRICS_MAX_HANDLERS",
    "SCHEMA_VERSION",
    "STATES",
    "STATUS_FIELDS",
    "HealthMonitor",
    "MetricsServer",
    "disk_usage",
    "format_status",
    "read_status",
    "render_metrics",
    "status_age_s",
    "write_json_atomic",
]
