"""Operator commands to the live loop: the one channel for "toggle recording" and "quit".

Commands come from places that must not block or allocate much: a signal handler
(SIGUSR1 toggles recording), a window sink's key press ('r', 'q'), a test. Each
command is a monotonically increasing count; a consumer remembers the count it
has acted on and acts on the difference. Counting (not queueing) is safe in a
signal handler and never grows.

Who consumes what: the loop (`edge.pipeline.Pipeline`) stops on ``QUIT``; the
recorder toggles manual recording on ``RECORD_TOGGLE``.
"""

from __future__ import annotations

RECORD_TOGGLE = "record_toggle"
QUIT = "quit"
COMMANDS = (RECORD_TOGGLE, QUIT)


class CommandChannel:
    """Counters of operator commands. ``request`` may be called from a signal handler or any thread."""

    def __init__(self) -> None:
        self._counts = dict.fromkeys(COMMANDS, 0)

    def request(self, command: str) -> None:
        """Ask for ``command`` once more (one of `COMMANDS`; ValueError otherwise)."""
        if command not in self._counts:
            raise ValueError(f"unknown command {command!r}; known: {', '.join(COMMANDS)}")
        self._counts[command] += 1  # one int store under the GIL: safe in a signal handler

    def count(self, command: str) -> int:
        """How many times ``command`` has been requested since the channel was made."""
        return self._counts[command]
