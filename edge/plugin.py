"""The public helpers for `nerveseg` subcommands, including those plugged in from other packages.

A workstation package adds a subcommand through the ``nerveseg.commands`` entry-point group
(setup.cfg): a ``register(subparsers)`` function. What such a command shares with the built-in
ones lives here, so no package reaches into `edge.cli`'s private helpers:

- `common_options()`: a parent parser with ``--log-level`` (``parents=[common_options()]``);
- `setup_logging(level)`: the one logging setup of every command (stderr, one format);
- `source_override(text)`: ``--source`` text (a spec or a path) as a ``source`` config override;
- the exit codes (`edge.errors`); a command returns one, or raises a `edge.errors.NervesegError`
  whose ``exit_code`` `edge.cli.main` returns.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from edge.errors import (  # noqa: F401 - re-exported for plug-in commands
    EXIT_CONFIG,
    EXIT_DISAGREE,
    EXIT_ERROR,
    EXIT_MODEL,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_SESSION,
    EXIT_SINK,
    EXIT_SOURCE,
)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def common_options() -> argparse.ArgumentParser:
    """A parent parser holding the options every subcommand has (``--log-level``)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--log-level", choices=LOG_LEVELS, help="override logging.level")
    return p


def setup_logging(level: str) -> None:
    """Configure the root logger once for a command: ``level`` by name, to stderr."""
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def source_override(text: str | None) -> dict[str, Any]:
    """``--source`` text (``v4l2:/dev/video0``, ``clip.mp4``, a folder...) as a ``source`` override (or {})."""
    if not text:
        return {}
    from edge.sources import source_spec_from_arg

    return {"spec": source_spec_from_arg(text)}
