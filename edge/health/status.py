"""The status file: its fields, writing it atomically, reading it back (`nerveseg status`).

The appliance keeps the file in ``/run/nerveseg`` (tmpfs: rewriting it every two seconds wears no flash,
and it is gone after a reboot, when it would be stale anyway); the unit keeps that folder after a stop so
the last state and error stay readable. The file is world-readable: it holds counters and states, no image
data. A reader sees the old file or the new one, never a half-written one (`write_json_atomic`).

Fields of the status file (``schema_version`` 1) are listed in `STATUS_FIELDS`. Who writes it:
`edge.health.monitor.HealthMonitor`.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

from edge import paths
from edge.fileio import replace_atomic

SCHEMA_VERSION = 1
#: Where the appliance writes it (systemd/config.yaml) and where `nerveseg status` looks by default.
DEFAULT_STATUS_FILE = paths.STATUS_FILE
#: Every value `edge.pipeline.Pipeline.state` takes.
STATES = ("starting", "live", "stale", "not_analysed", "no_signal", "stopped")

STATUS_FIELDS: dict[str, str] = {
    "schema_version": "1",
    "time": "when this snapshot was taken (on the processing thread), UTC ISO 8601",
    "time_unix": "the same, seconds since the epoch",
    "version": "nerveseg version",
    "pid": "process id of the loop",
    "state": "starting | live | stale | not_analysed | no_signal | stopped",
    "uptime_s": "seconds since the loop started",
    "fps": "frames processed per second over the last interval",
    "fps_mean": "frames processed per second since start",
    "frames": "frames processed",
    "captured": "frames captured",
    "dropped": "frames replaced in the hand-off before processing (box slower than the video)",
    "nerve_frames": "processed frames with the decision 'nerve'",
    "stale_frames": "processed frames marked STALE",
    "inference_ms_p50": "median interpreter time over the last (up to) 4096 frames, ms",
    "latency_ms_p50": "median capture-to-display latency, same window, ms",
    "latency_ms_p95": "95th percentile of it, ms",
    "p_nerve": "P(nerve) of the last analysed frame (null before the first or when not analysed)",
    "nerve": "the smoothed decision on the last frame: outline shown",
    "last_frame_age_s": "seconds since the last processed frame (null before the first)",
    "source": "{describe, connected, reconnects, open_failures, failed_reads} (null where the source has none)",
    "model": "{name, path, sha256, quantization, untrained, backend, threads}",
    "disk": "{path, free_bytes, total_bytes, free_fraction} of the recordings folder, null if unreadable",
    "recorder": "the recorder's own health (null when recording is not configured)",
    "systemd": "{notify_socket, ready, watchdog_s, heartbeats, last_heartbeat_age_s}, when run by systemd",
    "notices": "operator lines shown on screen by observers",
    "last_error": "last error the loop or an observer met (null if none)",
}


# -- the file ------------------------------------------------------------------------------------


def _finite(obj: Any) -> Any:
    """JSON has no NaN or infinity: such floats become null (recursively)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json_atomic(path: str | Path, obj: Any, mode: int = 0o644) -> None:
    """Replace ``path`` with ``obj`` as JSON so that a reader only ever sees a complete file
    (`edge.fileio.replace_atomic`); NaN and infinity become null."""
    data = json.dumps(_finite(obj), indent=1, default=str).encode("utf-8") + b"\n"
    replace_atomic(path, data, mode)


def read_status(path: str | Path) -> dict[str, Any]:
    """The status file as a dict. Raises OSError or ValueError (not JSON, not an object)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


def disk_usage(path: str | Path) -> dict[str, Any] | None:
    """Free and total bytes of the file system holding ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        du = shutil.disk_usage(p)
    except OSError:
        return None
    return {
        "path": str(Path(path)),
        "free_bytes": du.free,
        "total_bytes": du.total,
        "free_fraction": round(du.free / du.total, 4) if du.total else None,
    }


# -- reading it back (nerveseg status) -----------------------------------------------------------


def _fmt_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000.0
    return f"{n:.1f} TB"  # pragma: no cover


def _fmt_duration(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(s)
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    return (f"{d}d " if d else "") + (f"{h}h{m:02d}m" if d or h else f"{m}m{sec:02d}s")


def status_age_s(status: dict[str, Any], now_unix: float | None = None) -> float | None:
    t = status.get("time_unix")
    if not isinstance(t, (int, float)):
        return None
    return (time.time() if now_unix is None else now_unix) - float(t)


def format_status(status: dict[str, Any], now_unix: float | None = None) -> str:
    """A few human lines from a status dict, for `nerveseg status` over SSH."""
    s = status
    age = status_age_s(s, now_unix)
    model = s.get("model") or {}
    src = s.get("source") or {}
    disk = s.get("disk") or {}
    p = s.get("p_nerve")

    def ms(v: object) -> str:
        return f"{v:.2f}" if isinstance(v, (int, float)) else "-"

    conn = src.get("connected")
    lines = [
        f"nerveseg {s.get('version', '?')} (pid {s.get('pid', '?')}): {s.get('state', '?')}, "
        f"up {_fmt_duration(s.get('uptime_s'))}, written {'?' if age is None else f'{age:.1f} s'} ago",
        f"  fps {s.get('fps', 0):.1f} (mean {s.get('fps_mean', 0):.1f}) | frames {s.get('frames', 0)} | "
        f"dropped {s.get('dropped', 0)} | inference p50 {ms(s.get('inference_ms_p50'))} ms | "
        f"latency p50 {ms(s.get('latency_ms_p50'))} p95 {ms(s.get('latency_ms_p95'))} ms",
        f"  nerve {'shown' if s.get('nerve') else 'not shown'}"
        + (f" (P {p:.2f})" if isinstance(p, (int, float)) else ""),
        f"  source {src.get('describe', '?')}"
        + ("" if conn is None else (" connected" if conn else " NOT CONNECTED"))
        + (f", {src['reconnects']} reconnects" if src.get("reconnects") else ""),
        f"  model {model.get('name', '?')} {str(model.get('sha256') or '')[:12]} "
        f"({model.get('quantization', '?')}, {model.get('backend', '?')}"
        + (", UNTRAINED" if model.get("untrained") else "") + ")",
        f"  disk {_fmt_bytes(disk.get('free_bytes'))} free of {_fmt_bytes(disk.get('total_bytes'))}"
        f" ({disk.get('path', '?')})" if disk else "  disk ?",
    ]
    for key in ("recorder", "systemd"):
        if s.get(key) is not None:
            lines.append(f"  {key} {json.dumps(s[key], default=str)}")
    for n in s.get("notices") or []:
        lines.append(f"  notice: {n}")
    lines.append(f"  last error: {s.get('last_error') or 'none'}")
    return "\n".join(lines)
