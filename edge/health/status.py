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


#: A status file is a few kB; anything this large is not one (a link to /dev/zero, a log written there).
MAX_STATUS_BYTES = 1 << 20

_NUMBER = "a number"
# field -> what it must be when not null: "a number" (finite, not a bool), or a Python type
_FIELD_TYPES: dict[str, str | type] = {
    "schema_version": int, "time": str, "time_unix": _NUMBER, "version": str, "pid": int, "state": str,
    "uptime_s": _NUMBER, "fps": _NUMBER, "fps_mean": _NUMBER, "frames": int, "captured": int, "dropped": int,
    "nerve_frames": int, "stale_frames": int, "inference_ms_p50": _NUMBER, "latency_ms_p50": _NUMBER,
    "latency_ms_p95": _NUMBER, "p_nerve": _NUMBER, "nerve": bool, "last_frame_age_s": _NUMBER,
    "source": dict, "model": dict, "disk": dict, "recorder": dict, "systemd": dict, "notices": list,
    "last_error": str,
}
# the keys of the nested objects that `format_status` reads
_NESTED_TYPES: dict[str, dict[str, str | type]] = {
    "source": {"describe": str, "connected": bool, "reconnects": int},
    "model": {"name": str, "sha256": str, "quantization": str, "backend": str, "untrained": bool},
    "disk": {"path": str, "free_bytes": _NUMBER, "total_bytes": _NUMBER},
}
_TYPE_NAMES = {int: "an integer", str: "a string", bool: "true or false", dict: "an object", list: "a list"}


def _quote(value: Any, limit: int = 40) -> str:
    """``value`` for a message, cut to about ``limit`` characters (a file may hold anything)."""
    text = json.dumps(value, default=str) if not isinstance(value, float) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _type_problem(key: str, value: Any, want: str | type) -> str | None:
    if value is None:
        return None
    if want == _NUMBER:
        ok = _is_number(value)
    elif want is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, want)  # type: ignore[arg-type]
    if ok:
        return None
    return f"{key} is {_quote(value)}, expected {want if isinstance(want, str) else _TYPE_NAMES[want]} or null"


def status_problems(status: dict[str, Any]) -> list[str]:
    """What is wrong with a status dict read from a file: one line per field of the wrong type (fields
    `STATUS_FIELDS` names and the nested ones `format_status` shows; other keys are not checked), or a
    state that is not one of `STATES`. Empty: `format_status` and `status_age_s` can trust it."""
    problems = []
    for key, want in _FIELD_TYPES.items():
        problem = _type_problem(key, status.get(key), want)
        if problem:
            problems.append(problem)
        elif isinstance(status.get(key), dict):
            for sub, sub_want in _NESTED_TYPES.get(key, {}).items():
                problem = _type_problem(f"{key}.{sub}", status[key].get(sub), sub_want)
                if problem:
                    problems.append(problem)
    state = status.get("state")
    if isinstance(state, str) and state not in STATES:
        problems.append(f"state is {_quote(state)}, expected one of {', '.join(STATES)}")
    return problems


def read_status(path: str | Path) -> dict[str, Any]:
    """The status file as a dict.

    Raises OSError (missing, unreadable) or ValueError naming the fault: larger than `MAX_STATUS_BYTES`,
    not JSON, not a JSON object, or a field of the wrong type (`status_problems`).
    """
    with open(path, "rb") as f:
        raw = f.read(MAX_STATUS_BYTES + 1)
    if len(raw) > MAX_STATUS_BYTES:
        raise ValueError(f"{path}: larger than {MAX_STATUS_BYTES // 1024} kB, not a status file")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not text (UTF-8): {e.reason} at byte {e.start}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    except RecursionError:
        raise ValueError(f"{path}: not a status file (nested too deep)") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object but {type(data).__name__ if data is not None else 'null'}")
    problems = status_problems(data)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ValueError(f"{path}: not a valid status file: {'; '.join(problems[:3])}{more}")
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


def _fmt_bytes(n: Any) -> str:
    if not _is_number(n):
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000.0
    return f"{n:.1f} TB"  # pragma: no cover


def _fmt_duration(s: Any) -> str:
    if not _is_number(s):
        return "?"
    s = int(s)
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    return (f"{d}d " if d else "") + (f"{h}h{m:02d}m" if d or h else f"{m}m{sec:02d}s")


def status_age_s(status: dict[str, Any], now_unix: float | None = None) -> float | None:
    """Seconds since ``status`` was taken (its ``time_unix``); None when that is missing or not a number."""
    t = status.get("time_unix")
    if not _is_number(t):
        return None
    return (time.time() if now_unix is None else now_unix) - float(t)


def format_status(status: dict[str, Any], now_unix: float | None = None) -> str:
    """A few human lines from a status dict, for `nerveseg status` over SSH.

    Never raises: a value of the wrong type (a file `status_problems` would refuse) shows as "?".
    """
    s = status
    age = status_age_s(s, now_unix)

    def obj(key: str) -> dict[str, Any]:
        v = s.get(key)
        return v if isinstance(v, dict) else {}

    def num(v: Any, fmt: str, missing: str = "?") -> str:
        return format(v, fmt) if _is_number(v) else missing

    def text(v: Any) -> str:
        return "?" if v is None else _quote(v) if not isinstance(v, (str, int)) or isinstance(v, bool) else str(v)

    model, src, disk = obj("model"), obj("source"), obj("disk")
    p = s.get("p_nerve")
    conn = src.get("connected")
    reconnects = src.get("reconnects")
    lines = [
        f"nerveseg {text(s.get('version'))} (pid {text(s.get('pid'))}): {text(s.get('state'))}, "
        f"up {_fmt_duration(s.get('uptime_s'))}, written {num(age, '.1f')} s ago",
        f"  fps {num(s.get('fps'), '.1f')} (mean {num(s.get('fps_mean'), '.1f')}) | "
        f"frames {num(s.get('frames'), '.0f')} | dropped {num(s.get('dropped'), '.0f')} | "
        f"inference p50 {num(s.get('inference_ms_p50'), '.2f', '-')} ms | "
        f"latency p50 {num(s.get('latency_ms_p50'), '.2f', '-')} p95 {num(s.get('latency_ms_p95'), '.2f', '-')} ms",
        f"  nerve {'shown' if s.get('nerve') is True else 'not shown'}"
        + (f" (P {p:.2f})" if _is_number(p) else ""),
        f"  source {text(src.get('describe'))}"
        + ("" if not isinstance(conn, bool) else (" connected" if conn else " NOT CONNECTED"))
        + (f", {reconnects} reconnects" if _is_number(reconnects) and reconnects else ""),
        f"  model {text(model.get('name'))} {str(model.get('sha256') or '')[:12]} "
        f"({text(model.get('quantization'))}, {text(model.get('backend'))}"
        + (", UNTRAINED" if model.get("untrained") is True else "") + ")",
        f"  disk {_fmt_bytes(disk.get('free_bytes'))} free of {_fmt_bytes(disk.get('total_bytes'))}"
        f" ({text(disk.get('path'))})" if disk else "  disk ?",
    ]
    for key in ("recorder", "systemd"):
        if s.get(key) is not None:
            lines.append(f"  {key} {_quote(s[key], 400)}")
    notices = s.get("notices")
    for n in notices if isinstance(notices, list) else [notices] if notices else []:
        lines.append(f"  notice: {text(n)}")
    lines.append(f"  last error: {text(s.get('last_error') or 'none')}")
    return "\n".join(lines)
