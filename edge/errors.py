"""Exceptions the library raises, and the exit code each one means.

Library code raises, it never exits: every error class carries its ``exit_code``, and
`edge.cli.main` prints the message and returns that code. The codes are the appliance's
contract with systemd (`RestartPreventExitStatus` in the unit names the codes a restart
cannot fix) and with scripts:

    0  finished (frame limit, source ended, stopped by SIGTERM/SIGINT/SIGHUP or the operator)
    1  unexpected internal error: a bug (the traceback is logged)
    2  bad command line, config or site profile (the message names the key); a workstation
       command run without its optional dependency (TensorFlow); calibrate: frames it cannot
       calibrate on
    3  model file or model spec missing, corrupt or inconsistent
    4  source cannot be opened (an unplugged capture card is not an error: it is retried)
    5  sink cannot work (no GUI OpenCV or no display for a window, an unsupported framebuffer
       format, an mp4 that cannot be encoded); a framebuffer not there yet is retried, not an error
    6  review --fail-on-disagree: the other model disagreed on some frame
    7  a recording session cannot be read (review)
    8  status: the loop is not running (no health file, stopped, or not updated)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_MODEL = 3
EXIT_SOURCE = 4
EXIT_SINK = 5
EXIT_DISAGREE = 6
EXIT_SESSION = 7
EXIT_NOT_RUNNING = 8


class NervesegError(Exception):
    """Base of every error the runtime raises on purpose. Subclasses set ``exit_code``."""

    exit_code: int = EXIT_ERROR


class ConfigError(NervesegError):
    """A config file or value is invalid.

    ``problems`` holds one human-readable line per fault, each naming the key
    path, the bad value and what is allowed.
    """

    exit_code = EXIT_CONFIG

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid config {source}:\n{lines}")


class UsageError(NervesegError):
    """A command-line option is invalid or options contradict each other (the message names the option)."""

    exit_code = EXIT_CONFIG


class MissingDependencyError(NervesegError):
    """An optional package a command needs is not installed (the message says which and how to install it)."""

    exit_code = EXIT_CONFIG


class ModelError(NervesegError):
    """A model file or its spec is missing, corrupt or inconsistent (message names the file)."""

    exit_code = EXIT_MODEL


class SourceError(NervesegError):
    """A frame source cannot be opened at all (bad path, bad spec, missing package).

    A capture card that is unplugged at run time is *not* a SourceError: the V4L2
    source retries it forever.
    """

    exit_code = EXIT_SOURCE


class SourceExhausted(NervesegError):
    """A finite source (file without loop, image folder) has delivered its last frame (a normal end)."""

    exit_code = EXIT_OK


class SinkError(NervesegError):
    """An output cannot be opened or written (no framebuffer, no display, bad path)."""

    exit_code = EXIT_SINK


class SessionError(NervesegError):
    """A recording session cannot be read: no such folder, not a session, unreadable manifest."""

    exit_code = EXIT_SESSION


class NotRunningError(NervesegError):
    """`nerveseg status`: the loop is not running (no health file, stopped, or not updated for too long)."""

    exit_code = EXIT_NOT_RUNNING
