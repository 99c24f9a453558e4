"""Running `nerveseg` as the unprivileged user 'nobody', to make permission faults real.

CI runs as root, for whom file permissions do not apply; the appliance runs as its own service user.
A child process imports what the command needs first (the interpreter's own libraries may live where
'nobody' cannot read), then drops to uid/gid 65534 and runs `edge.cli.main`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOBODY = 65534
# every module a run or a review loads lazily, imported while still root
_PRELOAD = (
    "import os, sys, argparse, json, logging\n"
    "from edge.cli import main\n"
    "import edge.app, edge.plan, edge.observers, edge.pipeline, edge.sources, edge.sinks, edge.notify\n"
    "import edge.sources.images, edge.sources.phantom, edge.sinks.null\n"
    "import edge.review, edge.recording.session, edge.runner, edge.analyze\n"
    "from edge.runner import load_interpreter_class\n"
    "load_interpreter_class('auto')\n"
    f"os.setgid({NOBODY}); os.setuid({NOBODY})\n"
)


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to another user")


def run_as_nobody(argv: list[str], home: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """``nerveseg ARGV...`` as 'nobody' (HOME=``home``); returns the finished process (text output)."""
    code = _PRELOAD + f"sys.exit(main({list(argv)!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO), "HOME": str(home)})
