"""systemd notify protocol: messages on a real AF_UNIX datagram socket, heartbeat while frames flow.

The live-loop tests run the real shipped model on real ultrasound video; the stand-ins are at the
hardware edges only: the capture card (a file source behind a gate that the test opens and closes,
i.e. a stalled device), a display whose driver wedges (a sink that stops returning), and systemd's
receiving side (a datagram socket that reads as systemd does: 4096 bytes, a longer message ignored).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from edge.config import Config, SourceConfig, with_overrides
from edge.models import default_model_path
from edge.notify import (
    MAX_DATAGRAM_BYTES,
    MAX_FIELD_BYTES,
    Notifier,
    SystemdNotifier,
    clean_field,
    notify_stopping,
    socket_address,
    watchdog_timeout_s,
)
from edge.observers import observers_from_config
from edge.pipeline import Pipeline, PipelineObserver
from edge.plan import resolve_run
from edge.runner import ModelRunner
from edge.sinks.null import NullSink
from edge.sources import open_source
from edge.sources.base import SourceBase
from edge.sources.file import VideoFileSource
from edge.types import SourceStatus

REPO = Path(__file__).resolve().parents[2]


#: systemd's manager reads a notify datagram into this many bytes (PIPE_BUF) and ignores one that is longer.
SYSTEMD_NOTIFY_BUFFER = 4096
IGNORED = "<ignored by systemd>"


class Listener:
    """The service manager's side: a bound AF_UNIX datagram socket that records what arrives, with times.

    It reads as systemd does: a datagram longer than `SYSTEMD_NOTIFY_BUFFER`, or one with a NUL byte in it,
    is recorded as `IGNORED`, since systemd drops it whole (every field in it is lost).
    """

    def __init__(self, address: str | None = None):
        self.address = address or f"@nerveseg-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(socket_address(self.address))
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, _, flags, _ = self.sock.recvmsg(SYSTEMD_NOTIFY_BUFFER)
            except TimeoutError:
                continue
            except OSError:
                return
            text = IGNORED if flags & socket.MSG_TRUNC or b"\0" in data else data.decode()
            with self._lock:
                self.messages.append((time.monotonic(), text))

    def all(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self.messages)

    def with_field(self, field: str, after: float = 0.0) -> list[tuple[float, str]]:
        return [(t, m) for t, m in self.all() if t >= after and field in m.split("\n")]

    def pings(self, after: float = 0.0, before: float = float("inf")) -> list[float]:
        return [t for t, _ in self.with_field("WATCHDOG=1", after) if t < before]

    def wait_for(self, field: str, timeout: float, after: float = 0.0) -> tuple[float, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.with_field(field, after)
            if got:
                return got[0]
            time.sleep(0.01)
        raise AssertionError(f"no {field} within {timeout} s; got {self.all()[-10:]}")

    def wait_count(self, n: int, timeout: float) -> list[str]:
        """The messages once at least ``n`` have arrived (all of them, in order)."""
        deadline = time.monotonic() + timeout
        while len(self.all()) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        got = [m for _, m in self.all()]
        assert len(got) >= n, f"{len(got)} messages within {timeout} s, expected {n}: {got}"
        return got

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)
        self.sock.close()


@pytest.fixture
def listener():
    lst = Listener()
    yield lst
    lst.close()


@pytest.fixture(scope="module")
def runner() -> ModelRunner:
    return ModelRunner(default_model_path(), threads=2)


class GatedSource(SourceBase):
    """A real video clip behind a gate: while the gate is closed, ``read`` delivers nothing (a stalled card).

    ``counters=True`` gives it the retry counters of a live source (v4l2, picamera2) in its ``status()``;
    ``retrying`` decides whether they move while stalled (a source visibly retrying) or freeze (a stuck
    driver). Without counters ``status()`` is None, as for a file.
    """

    def __init__(self, clip: Path, counters: bool = False, retrying: bool = False):
        super().__init__()
        self.inner = VideoFileSource(SourceConfig(spec=f"file:{clip}", loop=True, fps=30))
        self.nominal_fps = 30.0
        self.gate = threading.Event()
        self.gate.set()
        self.counters = counters
        self.retrying = retrying
        self.failed_reads = 0

    def read(self, timeout: float = 0.5):
        if not self.gate.is_set():
            self.gate.wait(timeout)
            if self.retrying:
                self.failed_reads += 1
            return None
        return self.inner.read(timeout)

    def status(self) -> SourceStatus | None:
        if not self.counters:
            return None
        return SourceStatus(connected=True, reconnects=0, open_failures=0, failed_reads=self.failed_reads)

    def close(self) -> None:
        self.inner.close()

    def describe(self) -> str:
        return "gated " + self.inner.describe()


class WedgedDisplaySink(NullSink):
    """A display whose driver stops returning from ``show`` once ``wedge`` is set, until ``release`` is."""

    def __init__(self) -> None:
        super().__init__()
        self.wedge = threading.Event()
        self.release = threading.Event()
        self.stuck_at: float | None = None  # monotonic time the processing thread got stuck in show()

    def show(self, image) -> None:
        if self.wedge.is_set() and not self.release.is_set():
            self.stuck_at = time.monotonic()
            self.release.wait()
        super().show(image)

    def wait_stuck(self, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while self.stuck_at is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.stuck_at is not None, f"the loop did not call show() within {timeout} s"
        return self.stuck_at


def _start(cfg: Config, source, runner, notifier: SystemdNotifier, sink=None,
           observers=()) -> tuple[Pipeline, threading.Thread]:
    pipe = Pipeline(resolve_run(cfg, runner=runner),
                    source, runner, sink or NullSink(), observers=[*observers, notifier])
    th = threading.Thread(target=pipe.run, daemon=True)
    th.start()
    return pipe, th


def _stop(pipe: Pipeline, th: threading.Thread) -> None:
    pipe.stop.set()
    th.join(5.0)
    assert not th.is_alive()


CFG = with_overrides(Config(), overlay={"no_signal_after_s": 0.3})

# -- the protocol ---------------------------------------------------------------------------------


def test_socket_address_forms():
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@abstract/name") == "\0abstract/name"
    assert socket_address(None) is None and socket_address("") is None
    assert socket_address("vsock:2:1234") is None


def test_watchdog_timeout_from_environment():
    assert watchdog_timeout_s({"WATCHDOG_USEC": "10000000"}) == 10.0
    assert watchdog_timeout_s({}) is None
    assert watchdog_timeout_s({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_timeout_s({"WATCHDOG_USEC": "soon"}) is None
    # The watchdog belongs to another process (we are a child that inherited the variables): no pinging.
    assert watchdog_timeout_s({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_timeout_s({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": str(os.getpid())}) == 5.0


def test_messages_arrive_on_a_filesystem_socket():
    folder = tempfile.mkdtemp(prefix="ns-", dir="/tmp")  # short: AF_UNIX paths are limited to 107 bytes
    path = os.path.join(folder, "notify.sock")
    lst = Listener(path)
    try:
        n = Notifier(env={"NOTIFY_SOCKET": path})
        assert n.enabled and n.send("READY=1", "STATUS=live, 30.0 fps")
        _, msg = lst.wait_for("READY=1", 2.0)
        assert msg == "READY=1\nSTATUS=live, 30.0 fps"
        n.close()
    finally:
        lst.close()
        os.unlink(path)
        os.rmdir(folder)


def test_fields_are_one_line_and_cut_to_size():
    assert clean_field("STATUS=a\r\nb\0c\td") == b"STATUS=a b c d"  # NUL would make systemd drop the message
    long = clean_field("STATUS=" + "é" * 4000)
    assert len(long) <= MAX_FIELD_BYTES and long.endswith(b"...") and long.decode("utf-8")  # cut between characters
    assert MAX_FIELD_BYTES * 3 + 2 <= MAX_DATAGRAM_BYTES < SYSTEMD_NOTIFY_BUFFER


def test_a_message_systemd_would_ignore_is_refused_not_sent(listener):
    n = Notifier(env={"NOTIFY_SOCKET": listener.address})
    with pytest.raises(ValueError, match="systemd ignores one over"):
        n.send(*[f"X_{i}=" + "x" * 1000 for i in range(5)])
    assert n.send("STATUS=" + "y" * 20000)  # one field: cut to size, delivered
    (got,) = listener.wait_count(1, 2.0)
    assert got != IGNORED and got.startswith("STATUS=yyy") and len(got.encode()) <= MAX_FIELD_BYTES
    n.close()


def test_messages_arrive_on_an_abstract_socket(listener):
    n = Notifier(env={"NOTIFY_SOCKET": listener.address})
    assert n.send("STATUS=multi\nline")  # a newline inside a value would start a new field: flattened
    _, msg = listener.wait_for("STATUS=multi line", 2.0)
    assert msg == "STATUS=multi line"
    n.close()
    assert not n.enabled and n.send("READY=1") is False  # closed: a no-op, not an error


def test_without_notify_socket_everything_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled and n.send("READY=1") is False
    notify_stopping()  # no socket: nothing happens, nothing raises
    assert not any(isinstance(o, SystemdNotifier) for o in observers_from_config(Config()))


def test_sending_never_blocks_when_the_manager_does_not_read(listener):
    listener._stop.set()  # stop reading: the socket's queue fills up
    listener._thread.join(1.0)
    n = Notifier(env={"NOTIFY_SOCKET": listener.address})
    t0 = time.monotonic()
    for _ in range(5000):
        n.send("WATCHDOG=1")
    assert time.monotonic() - t0 < 2.0
    assert n.dropped > 0 and n.sent + n.dropped == 5000
    n.close()


def test_notify_stopping_and_observer_wiring(listener, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    notify_stopping("stopping (SIGTERM)\n" + "x" * 8000)  # a reason far over systemd's 4096 bytes
    stopping, status = listener.wait_count(2, 2.0)
    assert stopping == "STOPPING=1"  # first and alone: nothing in its datagram can make systemd ignore it
    assert status.startswith("STATUS=stopping (SIGTERM) xxx") and len(status.encode()) <= MAX_FIELD_BYTES
    obs = observers_from_config(with_overrides(Config(), health={"watchdog_during_outage": False}))
    notifiers = [o for o in obs if isinstance(o, SystemdNotifier)]
    assert len(notifiers) == 1 and notifiers[0].during_outage is False


# -- the live loop --------------------------------------------------------------------------------


def test_ready_after_first_frame_then_heartbeat_stops_when_the_source_stalls_and_resumes(
    listener, runner, lung_clips
):
    src = GatedSource(lung_clips[0])
    # Heartbeat every 0.1 s; STATUS= every 0.3 s instead of 2 s, to see a few in a short test.
    notifier = SystemdNotifier(Notifier(listener.address), watchdog_s=0.4, status_interval_s=0.3)
    assert notifier.ping_interval_s == pytest.approx(0.1)
    pipe, th = _start(CFG, src, runner, notifier)
    try:
        t_ready, ready = listener.wait_for("READY=1", 10.0)
        # READY=1 comes with the first processed frame, not before it: its STATUS counts that one frame.
        assert "STATUS=live" in ready and ", 1 frames," in ready, ready
        assert listener.with_field("STATUS=starting, 0.0 fps, 0 frames, 0 dropped")  # on_start, before READY
        time.sleep(0.8)
        assert len(listener.pings(after=t_ready)) >= 4
        # While frames flow, STATUS= says how fast (the clip plays at 30 fps; this box keeps up or nearly).
        rates = [float(m.group(1)) for _, text in listener.all()
                 if (m := re.match(r"STATUS=live, ([0-9.]+) fps, [0-9]+ frames", text))]
        assert len(rates) >= 2 and all(r > 1 for r in rates[1:]), rates  # rates[0]: READY's, over one frame

        # The capture card stalls: no frame is processed, so the heartbeat must stop.
        src.gate.clear()
        t_stall = time.monotonic()
        frames_at_stall = pipe.snapshot().frames
        time.sleep(1.5)
        late = listener.pings(after=t_stall + 0.3)
        assert late == [], f"{len(late)} heartbeats while no frame was processed"
        # At most the frames already on their way: one being processed, one in the slot, one the capture
        # thread was reading when the gate closed.
        assert pipe.snapshot().frames - frames_at_stall <= 3
        assert any(m.startswith("STATUS=no_signal, ") for t, m in listener.all() if t >= t_stall)

        # It recovers: frames flow again, and so does the heartbeat.
        src.gate.set()
        t_back = time.monotonic()
        t_first, _ = listener.wait_for("WATCHDOG=1", 2.0, after=t_back)
        assert t_first - t_back < 1.0
        time.sleep(0.8)
        assert len(listener.pings(after=t_back)) >= 4
        assert len(listener.with_field("READY=1")) == 1  # once per run
    finally:
        _stop(pipe, th)
    t_stop, last = listener.wait_for("STOPPING=1", 2.0)
    assert last == "STOPPING=1" and listener.wait_for("STATUS=stopped", 2.0, after=t_stop)


def test_no_signal_at_power_on_is_ready_and_an_unplugged_card_keeps_the_heartbeat(listener, runner):
    # A real V4L2 source on a device that is not there: it retries forever (its counters move).
    cfg = with_overrides(CFG, source={"spec": "v4l2:/dev/video-nerveseg-test-absent", "retry_max_s": 0.25})
    notifier = SystemdNotifier(Notifier(listener.address), watchdog_s=0.4)
    with open_source(cfg.source) as src:
        pipe, th = _start(cfg, src, runner, notifier)
        try:
            t_ready, ready = listener.wait_for("READY=1", 5.0)
            assert "STATUS=no_signal" in ready and "capture device not connected" in ready, ready
            time.sleep(1.5)
            # The loop is healthy and the source visibly retries: a restart would not bring the cable back.
            assert len(listener.pings(after=t_ready + 0.2)) >= 8
            assert pipe.snapshot().frames == 0
        finally:
            _stop(pipe, th)


def test_heartbeat_only_on_frames_when_outage_heartbeat_is_off(listener, runner):
    cfg = with_overrides(CFG, source={"spec": "v4l2:/dev/video-nerveseg-test-absent", "retry_max_s": 0.25})
    notifier = SystemdNotifier(Notifier(listener.address), watchdog_s=0.4, during_outage=False)
    with open_source(cfg.source) as src:
        pipe, th = _start(cfg, src, runner, notifier)
        try:
            listener.wait_for("READY=1", 5.0)
            time.sleep(1.0)
            assert listener.pings() == []
        finally:
            _stop(pipe, th)


@pytest.mark.parametrize("retrying", [True, False], ids=["counters-moving", "counters-frozen"])
def test_live_source_outage_heartbeat_lasts_while_it_retries(listener, runner, lung_clips, retrying):
    src = GatedSource(lung_clips[0], counters=True, retrying=retrying)
    notifier = SystemdNotifier(Notifier(listener.address), watchdog_s=0.4, outage_window_s=0.5)
    pipe, th = _start(CFG, src, runner, notifier)
    try:
        listener.wait_for("READY=1", 10.0)
        time.sleep(0.3)
        src.gate.clear()
        t_stall = time.monotonic()
        time.sleep(2.0)
        late = listener.pings(after=t_stall + 0.5 + 0.3)  # past the outage window (+ margin)
        if retrying:
            assert len(late) >= 8, "a source that visibly retries keeps the heartbeat"
        else:
            assert late == [], "a source whose counters froze (stuck driver) must lose the heartbeat"
    finally:
        _stop(pipe, th)


def test_nerveseg_run_under_a_notify_socket_says_ready_pings_and_stops_on_sigterm(listener, lung_clips, tmp_path):
    status = tmp_path / "status.json"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"source: {{spec: 'file:{lung_clips[0]}', loop: true}}\n"
        f"health: {{status_file: '{status}', interval_s: 0.2}}\n"
    )
    env = {**os.environ, "NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "400000"}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(cfg), "--log-level", "INFO"],
        cwd=REPO, env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        t_ready, _ = listener.wait_for("READY=1", 30.0)
        time.sleep(0.8)
        assert len(listener.pings(after=t_ready)) >= 4
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        listener.wait_for("STOPPING=1", 2.0, after=t0)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 3.0  # well inside TimeoutStopSec
        # The stop messages in order: STOPPING=1 first, alone, the moment SIGTERM arrives (signal handler), then
        # its STATUS=; the loop's own pair when it ends. (Heartbeats and periodic STATUS= may interleave.)
        stop_msgs = [m for t, m in listener.all() if t >= t0 and ("STOPPING=1" in m or m.startswith("STATUS=stop"))]
        assert stop_msgs == ["STOPPING=1", "STATUS=stopping (SIGTERM)", "STOPPING=1", "STATUS=stopped"], stop_msgs
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    from edge.health import read_status

    final = read_status(status)
    assert final["state"] == "stopped" and final["frames"] > 0
    assert final["systemd"]["ready"] is True and final["systemd"]["heartbeats"] >= 4


class FailingObserver(PipelineObserver):
    """An observer whose every frame fails with a long, multi-line error (say, a dump of a device's state)."""

    name = "failing"

    def on_frame(self, pipeline, event) -> None:
        raise RuntimeError("device state:\n" + "register 0x1f = 0xdeadbeef\n" * 400)


def test_stopping_is_never_lost_to_a_long_error_text(listener, runner, lung_clips):
    # The loop's last error rides with the final STATUS=; here it is ~11 KB, far over what systemd reads.
    notifier = SystemdNotifier(Notifier(listener.address), watchdog_s=None)
    pipe, th = _start(CFG, GatedSource(lung_clips[0]), runner, notifier, observers=[FailingObserver()])
    listener.wait_for("READY=1", 10.0)
    _stop(pipe, th)
    assert len(pipe.last_error) > 10000
    t_stop, stopping = listener.wait_for("STOPPING=1", 2.0)
    assert stopping == "STOPPING=1"
    (_, status), = [(t, m) for t, m in listener.all() if t >= t_stop and m.startswith("STATUS=stopped")]
    assert status.startswith("STATUS=stopped: FailingObserver.on_frame: device state: register 0x1f")
    assert "\n" not in status and len(status.encode()) <= MAX_FIELD_BYTES
    assert IGNORED not in [m for _, m in listener.all()]


def _assert_heartbeat_stops(listener: Listener, sink: WedgedDisplaySink, seconds: float = 1.5) -> None:
    t_stuck = sink.wait_stuck(3.0)
    time.sleep(seconds)
    # A heartbeat sent just before the loop got stuck may be received a moment later (a loaded CI box); none
    # after that: 1.5 s at one every 0.1 s would be ~15.
    late = listener.pings(after=t_stuck + 0.3)
    assert late == [], f"{len(late)} heartbeats in {seconds} s while the loop was stuck in the display"


def test_heartbeat_stops_when_the_display_wedges_while_frames_flow(listener, runner, lung_clips):
    # Frames keep arriving, and the source's retry counters keep moving (the outage heartbeat would ping if it
    # were reached): only a loop that processes frames may ping.
    src = GatedSource(lung_clips[0], counters=True, retrying=True)
    sink = WedgedDisplaySink()
    notifier = SystemdNotifier(Notifier(listener.address), watchdog_s=0.4, outage_window_s=30.0)
    pipe, th = _start(CFG, src, runner, notifier, sink=sink)
    try:
        t_ready, _ = listener.wait_for("READY=1", 10.0)
        time.sleep(0.5)
        assert len(listener.pings(after=t_ready)) >= 3
        sink.wedge.set()
        _assert_heartbeat_stops(listener, sink)
        assert th.is_alive()  # still stuck: it is for the watchdog, not the loop, to act
    finally:
        sink.release.set()
        _stop(pipe, th)


def test_heartbeat_stops_when_the_display_wedges_during_an_outage(listener, runner):
    # An unplugged card (a real V4L2 source retrying) keeps the heartbeat by design; but that heartbeat is
    # sent from the processing thread too, so a wedged display (NO SIGNAL cannot be drawn) stops it.
    cfg = with_overrides(CFG, source={"spec": "v4l2:/dev/video-nerveseg-test-absent", "retry_max_s": 0.25})
    sink = WedgedDisplaySink()
    notifier = SystemdNotifier(Notifier(listener.address), watchdog_s=0.4, outage_window_s=30.0)
    with open_source(cfg.source) as src:
        pipe, th = _start(cfg, src, runner, notifier, sink=sink)
        try:
            t_ready, _ = listener.wait_for("READY=1", 5.0)
            time.sleep(0.6)
            assert len(listener.pings(after=t_ready)) >= 3  # the outage heartbeat runs
            sink.wedge.set()
            failures = src.open_failures
            _assert_heartbeat_stops(listener, sink)
            assert src.open_failures > failures  # the source went on retrying all along
        finally:
            sink.release.set()
            _stop(pipe, th)
