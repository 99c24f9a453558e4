"""Exceptions the library raises; `edge.cli.main` maps them to exit codes.

Library code raises, it never exits: the command line decides the message and
the exit status (see `EXIT_*` in `edge.cli`).
"""

from __future__ import annotations


class NervesegError(Exception):
    """Base of every error the runtime raises on purpose."""


class ConfigError(NervesegError):
    """A config file or value is invalid.

    ``problems`` holds one human-readable line per fault, each naming the key
    path, the bad value and what is allowed.
    """

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid config {source}:\n{lines}")


class ModelError(NervesegError):
    """A model file or its spec is missing, corrupt or inconsistent (message names the file)."""


class SourceError(NervesegError):
    """A frame source cannot be opened at all (bad path, bad spec, missing package).

    A capture card that is unplugged at run time is *not* a SourceError: the V4L2
    source retries it forever.
    """


class SourceExhausted(NervesegError):
    """A finite source (file without loop, image folder) has delivered its last frame."""


class SinkError(NervesegError):
    """An output cannot be opened or written (no framebuffer, no display, bad path)."""
