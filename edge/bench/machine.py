"""The machine a benchmark ran on: CPU and the features that decide int8 speed, OS, board, software."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge import __version__
from edge.runner import load_interpreter_class

_ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd42": "Cortex-A78AE",
    "0xd4b": "Cortex-A78C",
}
# CPU features that decide int8 vs float32 speed (x86: AVX2/AVX-512/VNNI; ARM: dot product, i8mm).
_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm", "sve")


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _cpuinfo() -> tuple[str, list[str]]:
    """(CPU model, relevant feature flags) from /proc/cpuinfo, falling back to `platform`."""
    text = _read_text("/proc/cpuinfo") or ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep and k.strip() not in fields:
            fields[k.strip()] = v.strip()
    model = fields.get("model name") or fields.get("Model") or fields.get("Hardware") or ""
    part = fields.get("CPU part", "").lower()
    if not model or (part in _ARM_PARTS and "cortex" not in model.lower()):
        arm = _ARM_PARTS.get(part)
        model = f"{model} ({arm})".strip() if model and arm else (arm or model)
    model = model or platform.processor() or platform.machine() or "unknown"
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return model, [f for f in _FEATURES if f in flags]


def _os_pretty_name() -> str | None:
    for line in (_read_text("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return None


def machine_info(interpreter: str = "auto") -> dict[str, Any]:
    """The report's machine header (keys: see `edge.bench.report`). Raises `ModelError` without any TFLite
    interpreter, as `ModelRunner` would."""
    _, backend = load_interpreter_class(interpreter)
    cpu, features = _cpuinfo()
    board = _read_text("/proc/device-tree/model")
    l4t = _read_text("/etc/nv_tegra_release")
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu_model": cpu,
        "cpu_cores": os.cpu_count(),
        "cpu_usable": usable,
        "cpu_features": features,
        "arch": platform.machine(),
        "os": platform.platform(),
        "os_pretty_name": _os_pretty_name(),
        "board": board.strip("\x00 \n") if board else None,
        "l4t": l4t.splitlines()[0].strip("# ") if l4t and l4t.strip() else None,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "interpreter": backend,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "nerveseg": __version__,
        "loadavg": load,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
