"""systemd's notify protocol, spoken by the live loop itself: READY, WATCHDOG, STATUS, STOPPING.

The protocol is one datagram of ``KEY=value`` lines sent to the AF_UNIX socket
named by ``$NOTIFY_SOCKET`` (a leading ``@`` means Linux's abstract namespace).
That is a handful of lines, so nerveseg speaks it directly rather than
depending on a binding to libsystemd. Without ``$NOTIFY_SOCKET`` (a plain
``nerveseg run`` from a shell) everything here is a no-op.

What the loop says, and why (the unit is ``systemd/nerveseg.service``):

- ``READY=1`` after the first processed frame: the model is loaded and the whole
  path source -> model -> sink works. If no frame comes (the ultrasound machine
  is still off at power-on, or the capture card is unplugged), READY=1 is sent
  once NO SIGNAL is on screen instead: the box is up and showing the right
  thing, and a unit left "activating" would hold back ``multi-user.target`` and
  be killed by ``TimeoutStartSec`` over and over.
- ``WATCHDOG=1`` only while frames are processed: it is sent from
  `PipelineObserver.on_frame`, so a hung loop (inference, sink or an observer
  stuck) stops it and systemd restarts the service after ``WatchdogSec``. One
  exception, on by default (``health.watchdog_during_outage``): while no frame
  arrives but a live source (v4l2, picamera2) visibly keeps retrying, i.e. the
  failure/reconnect counters of its ``status()`` (`SourceStatus`) moved within
  the last ``retry_max_s + 15`` s, the
  heartbeat goes on. An unplugged cable is not cured by a restart, and
  restarting every ``WatchdogSec`` would blank the NO SIGNAL screen and run into
  the unit's start limit, leaving it dead when the cable comes back. A capture
  thread stuck in the driver moves no counter, so its heartbeat stops and
  systemd restarts the service.
- ``STATUS=`` with the state (`edge.types.PipelineSnapshot.state`) and fps, on every
  change of state and every couple of seconds (``systemctl status nerveseg``).
- ``STOPPING=1`` when the loop ends; the CLI also sends it the moment SIGTERM
  arrives (`notify_stopping`). It always goes in a datagram of its own, before
  the STATUS= that explains it: a STATUS= carrying a long error text must never
  cost the STOPPING=1.

Size: systemd reads a notify datagram into a 4096-byte buffer and ignores one
that does not fit, whole. Every field is therefore made one line without control
characters (a newline would start a new ``KEY=value``, a NUL makes systemd drop
the message) and cut to `MAX_FIELD_BYTES`; `Notifier.send` refuses a datagram
over `MAX_DATAGRAM_BYTES` rather than send one that would be ignored.

Heartbeat interval: a quarter of ``$WATCHDOG_USEC`` (at most 1 s), so a slow
frame or two never costs a restart. Without ``$WATCHDOG_USEC`` (or with a
``$WATCHDOG_PID`` that is not this process) no WATCHDOG=1 is sent at all.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from edge.pipeline import FrameEvent, PipelineObserver
from edge.sources.settings import DEFAULT_RETRY_MAX_S

if TYPE_CHECKING:
    from edge.pipeline import Pipeline
    from edge.types import SourceStatus, Stats

logger = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
#: Longest gap between two WATCHDOG=1 while alive, whatever WatchdogSec is.
MAX_PING_INTERVAL_S = 1.0
#: Seconds between periodic STATUS= updates (a change of state is sent at once).
STATUS_INTERVAL_S = 2.0
#: Added to ``source.retry_max_s``: how long after the last movement of a live source's retry counters the
#: loop still counts as "visibly retrying". Covers OpenCV's V4L2 select timeout (1 s here, 10 s if an operator
#: raised it) plus the backoff between two attempts.
OUTAGE_PROGRESS_MARGIN_S = 15.0
#: Stands in for ``source.retry_max_s`` when the source's config has none (files, folders, the phantom): the
#: live sources' default.
FALLBACK_RETRY_MAX_S = DEFAULT_RETRY_MAX_S
#: systemd's manager reads a notify datagram into PIPE_BUF (4096) bytes and ignores a longer one entirely;
#: one byte less keeps clear of the boundary whichever way a systemd version counts it.
MAX_DATAGRAM_BYTES = 4095
#: Longest single field (``STATUS=`` with an error text in it): ``systemctl status`` shows one line anyway,
#: and three such fields still fit one datagram.
MAX_FIELD_BYTES = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def socket_address(raw: str | None) -> str | None:
    """The address to send to for a ``$NOTIFY_SOCKET`` value, or None if there is none we can use.

    ``/path`` is a filesystem socket; ``@name`` is Linux's abstract namespace (a leading NUL byte).
    Other forms (``vsock:...``) are for virtual machines and not supported here.
    """
    if not raw:
        return None
    if raw.startswith("@"):
        return "\0" + raw[1:]
    if raw.startswith("/"):
        return raw
    return None


def clean_field(field: str, limit: int = MAX_FIELD_BYTES) -> bytes:
    """``field`` as one protocol line: control characters (newline, NUL, ...) become one space each run,
    and the UTF-8 bytes are cut to ``limit`` (at a character boundary, ending in ``...``)."""
    data = _CONTROL.sub(" ", field).encode("utf-8", "replace")
    if len(data) <= limit:
        return data
    return data[: limit - 3].decode("utf-8", "ignore").encode("utf-8") + b"..."


def watchdog_timeout_s(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """``WatchdogSec`` as systemd passed it (``$WATCHDOG_USEC``), in seconds; None when no watchdog watches us.

    ``$WATCHDOG_PID``, when set, names the process the watchdog is for; another process (a child that
    inherited the environment) must not ping on its behalf.
    """
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    wpid = env.get("WATCHDOG_PID")
    if wpid:
        try:
            if int(wpid) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return usec / 1e6


class Notifier:
    """A non-blocking sender of notify messages; every call is a no-op without a socket.

    Never blocks: the socket is non-blocking, and a message the manager's queue cannot take is
    dropped and counted (``dropped``), because it runs on the processing thread of the live loop.
    """

    def __init__(self, address: str | None = None, env: Mapping[str, str] | None = None):
        """``address``: a ``$NOTIFY_SOCKET``-style value; None = read ``$NOTIFY_SOCKET`` from ``env``."""
        env = os.environ if env is None else env
        raw = env.get(NOTIFY_SOCKET_ENV) if address is None else address
        self.address = socket_address(raw)
        if raw and self.address is None:
            logger.warning("%s=%r: unsupported address form, not notifying systemd", NOTIFY_SOCKET_ENV, raw)
        self.sent = 0
        self.dropped = 0
        self._warned = False
        self._sock: socket.socket | None = None
        if self.address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> bool:
        """Send ``fields`` (``"KEY=value"`` each) as one datagram. True if it went out.

        Each field is made one line and cut to `MAX_FIELD_BYTES` (`clean_field`). Raises ValueError
        when the datagram would still be over `MAX_DATAGRAM_BYTES` (too many fields for one message:
        systemd would ignore all of them).
        """
        if self._sock is None:
            return False
        msg = b"\n".join(clean_field(f) for f in fields)
        if len(msg) > MAX_DATAGRAM_BYTES:
            raise ValueError(f"notify message of {len(msg)} bytes: systemd ignores one over "
                             f"{MAX_DATAGRAM_BYTES}; send fewer fields at a time")
        try:
            self._sock.sendto(msg, self.address)
        except BlockingIOError:
            self.dropped += 1
            return False
        except OSError as e:
            self.dropped += 1
            if not self._warned:  # once: a manager that went away must not flood the log at 30 fps
                self._warned = True
                logger.warning("cannot notify systemd at %s: %s", self.address.replace("\0", "@"), e)
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def notify_stopping(reason: str = "stopping") -> None:
    """Tell systemd at once that we are on the way out (called from the SIGTERM/SIGINT handler)."""
    n = Notifier()
    if n.enabled:
        n.send("STOPPING=1")  # alone: nothing in the same datagram can make systemd ignore it
        n.send(f"STATUS={reason}")
    n.close()


def _source_progress(status: SourceStatus | None) -> tuple[int | None, ...] | None:
    """A live source's retry counters (`SourceStatus`); any movement = it is retrying. None: it has none."""
    if status is None:
        return None
    values = (status.failed_reads, status.open_failures, status.reconnects)
    return None if all(v is None for v in values) else values


class SystemdNotifier(PipelineObserver):
    """The observer that keeps systemd informed (see the module docstring for what and why).

    Per frame it costs a clock read and a comparison; a datagram goes out at most once a
    ``ping interval`` (WATCHDOG=1) and once a `STATUS_INTERVAL_S` (STATUS=).
    ``health()`` (shown in the status file under ``"systemd"``) says whether it is ready and pinging.
    """

    name = "systemd"

    def __init__(
        self,
        notifier: Notifier | None = None,
        watchdog_s: float | None | str = "env",
        during_outage: bool = True,
        outage_window_s: float | None = None,
        status_interval_s: float = STATUS_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        """``watchdog_s``: WatchdogSec in seconds, None = no watchdog, "env" = from ``$WATCHDOG_USEC``.

        ``outage_window_s``: see `OUTAGE_PROGRESS_MARGIN_S`; None = ``source.retry_max_s`` + that margin.
        """
        self.notifier = notifier or Notifier()
        self.watchdog_s = watchdog_timeout_s() if watchdog_s == "env" else watchdog_s
        self.ping_interval_s = (
            None if self.watchdog_s is None else max(0.01, min(self.watchdog_s / 4, MAX_PING_INTERVAL_S))
        )
        self.during_outage = during_outage
        self.outage_window_s = outage_window_s
        self.status_interval_s = status_interval_s
        self._clock = clock
        self.ready = False
        self.pings = 0
        self._next_ping = 0.0
        self._last_ping: float | None = None
        self._next_status = 0.0
        self._last_state: str | None = None
        self._status_t = 0.0
        self._status_frames = 0
        self._progress: tuple[object, ...] | None = None
        self._progress_t = 0.0

    # -- messages ---------------------------------------------------------------------------------

    def _ping(self, now: float) -> None:
        if self.ping_interval_s is None or now < self._next_ping:
            return
        if self.notifier.send("WATCHDOG=1"):
            self.pings += 1
            self._last_ping = now
        self._next_ping = now + self.ping_interval_s

    def _status(self, pipeline: Pipeline, now: float, *extra: str) -> None:
        state = pipeline.state
        if extra or state != self._last_state or now >= self._next_status:
            snap = pipeline.snapshot()  # only when a line is due: on_idle calls this every ~0.1 s
            dt = now - self._status_t
            fps = (snap.frames - self._status_frames) / dt if self._status_t and dt > 0 else 0.0
            self._status_t, self._status_frames = now, snap.frames
            text = f"{state}, {fps:.1f} fps, {snap.frames} frames, {snap.dropped} dropped"
            if state == "no_signal" and snap.source is not None and snap.source.connected is False:
                text += "; capture device not connected, retrying"
            self.notifier.send(*extra, f"STATUS={text}")
            self._last_state = state
            self._next_status = now + self.status_interval_s

    def _ready(self, pipeline: Pipeline, now: float, why: str) -> None:
        self.ready = True
        logger.info("ready: %s", why)
        self._status(pipeline, now, "READY=1")

    # -- observer ---------------------------------------------------------------------------------

    def on_start(self, pipeline: Pipeline) -> None:
        now = self._clock()
        if self.outage_window_s is None:
            # Only the live sources' configs (v4l2, picamera2) have a backoff ceiling; the other sources report
            # no retry counters, so for them the window never comes into play.
            retry_max_s = getattr(pipeline.cfg.source, "retry_max_s", FALLBACK_RETRY_MAX_S)
            self.outage_window_s = retry_max_s + OUTAGE_PROGRESS_MARGIN_S
        self._progress = _source_progress(pipeline.source.status())
        self._progress_t = now
        self._status_t, self._status_frames = now, 0
        if self.watchdog_s is not None:
            logger.info("systemd watchdog %.3g s: heartbeat every %.3g s while frames are processed%s",
                        self.watchdog_s, self.ping_interval_s,
                        " or a live source is visibly retrying" if self.during_outage else "")
        self._status(pipeline, now)

    def on_frame(self, pipeline: Pipeline, event: FrameEvent) -> None:
        now = self._clock()
        if not self.ready:
            self._ready(pipeline, now, "first frame processed")
        if self.ping_interval_s is not None and now >= self._next_ping:
            # Frames are progress too: an outage that starts now gets its full window of heartbeat.
            self._progress_t = now
            self._progress = _source_progress(pipeline.source.status())
            self._ping(now)
        if now >= self._next_status:
            self._status(pipeline, now)

    def on_idle(self, pipeline: Pipeline, no_signal: bool) -> None:
        now = self._clock()
        if no_signal and not self.ready:
            self._ready(pipeline, now, "no frame yet: NO SIGNAL on screen")
        if self.during_outage and self._source_retrying(pipeline, now):
            self._ping(now)
        self._status(pipeline, now)

    def on_stop(self, pipeline: Pipeline, stats: Stats | None) -> None:
        error = pipeline.snapshot().last_error
        text = "stopped" if error is None else f"stopped: {error}"
        # STOPPING=1 first and alone; the error text, however long, only rides with STATUS= (cut to size).
        self.notifier.send("STOPPING=1")
        self.notifier.send(f"STATUS={text}")
        self.notifier.close()

    def _source_retrying(self, pipeline: Pipeline, now: float) -> bool:
        """True while a live source's retry counters moved within the outage window."""
        progress = _source_progress(pipeline.source.status())
        if progress is None:
            return False
        if progress != self._progress:
            self._progress, self._progress_t = progress, now
        return now - self._progress_t <= (self.outage_window_s or 0.0)

    def health(self) -> dict[str, object]:
        now = self._clock()
        return {
            "notify_socket": bool(self.notifier.enabled),
            "ready": self.ready,
            "watchdog_s": self.watchdog_s,
            "heartbeats": self.pings,
            "last_heartbeat_age_s": None if self._last_ping is None else round(now - self._last_ping, 3),
        }
