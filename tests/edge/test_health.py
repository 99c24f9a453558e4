"""Health file and metrics: atomic rewrites, the fields a running loop reports, a real HTTP scrape.

The loop runs the real shipped model on real ultrasound video; the status file is a real file and the
metrics are fetched over a real TCP connection to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from edge import cli, fileio
from edge.cli import main
from edge.config import Config, with_overrides
from edge.errors import EXIT_NOT_RUNNING, EXIT_OK, ConfigError
from edge.health import (
    DEFAULT_STATUS_FILE,
    STATES,
    STATUS_FIELDS,
    HealthMonitor,
    read_status,
    render_metrics,
    write_json_atomic,
)
from edge.health import metrics as health_metrics
from edge.models import default_model_path
from edge.observers import observers_from_config
from edge.pipeline import Pipeline, PipelineObserver
from edge.plan import resolve_run
from edge.runner import ModelRunner
from edge.sinks.null import NullSink
from edge.sources import open_source


@pytest.fixture(scope="module")
def runner() -> ModelRunner:
    return ModelRunner(default_model_path(), threads=2)


def _hammer(path: Path, writer, n: int = 400) -> tuple[int, int]:
    """Rewrite ``path`` n times with ``writer`` while a thread reads it in a tight loop.

    Returns (reads, reads that were not valid JSON). Payload sizes vary, so a torn write shows.
    """
    write_json_atomic(path, {"i": -1})
    stop = threading.Event()
    counts = [0, 0]

    def reader() -> None:
        while not stop.is_set():
            try:
                json.loads(path.read_text())
            except ValueError:
                counts[1] += 1
            counts[0] += 1

    th = threading.Thread(target=reader)
    th.start()
    try:
        for i in range(n):
            writer(path, {"i": i, "pad": "x" * (500 + 37 * (i % 200)), "list": list(range(i % 50))})
    finally:
        stop.set()
        th.join()
    return counts[0], counts[1]


def test_status_file_is_always_valid_json_while_being_rewritten(tmp_path):
    path = tmp_path / "status.json"
    old = os.umask(0o027)  # the unit's UMask=: without an explicit chmod the file would come out 0640
    try:
        reads, bad = _hammer(path, write_json_atomic)
    finally:
        os.umask(old)
    assert reads > 400 and bad == 0, f"{bad} of {reads} reads were not valid JSON"
    assert read_status(path)["i"] == 399
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]  # no temporary files left behind
    assert path.stat().st_mode & 0o777 == 0o644  # readable by an engineer over ssh, whatever the umask


def test_a_temporary_file_left_by_a_killed_process_does_not_block_writes(tmp_path):
    # A process killed mid-write leaves its temporary file. After a restart (or a reboot) the next process
    # can have the same pid, and its writing thread the same ident: its writes must not depend on that name.
    path = tmp_path / "status.json"
    leftover = tmp_path / f".status.json.{os.getpid()}.{threading.get_ident()}.tmp"
    leftover.write_text('{"half": ')
    write_json_atomic(path, {"i": 1})
    write_json_atomic(path, {"i": 2})
    assert read_status(path) == {"i": 2}
    assert leftover.exists()  # young: it might still be another writer's, so it stays for now


def test_old_leftover_temporary_files_are_removed_young_ones_kept(tmp_path, monkeypatch):
    path = tmp_path / "status.json"
    old = tmp_path / ".status.json.4242.0f0f0f0f0f0f0f0f.tmp"
    young = tmp_path / ".status.json.4343.1e1e1e1e1e1e1e1e.tmp"  # a writer that is still at it
    others = [tmp_path / ".status.json.bak", tmp_path / ".site.yaml.4242.aa.tmp", tmp_path / "status.json.tmp"]
    for p in (old, young, *others):
        p.write_text("x")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    write_json_atomic(path, {"i": 1})
    assert not old.exists() and young.exists() and all(p.exists() for p in others)

    # A leftover of a process killed seconds before this one started is too young at the first write; the
    # sweep comes again every STALE_TMP_S, so it goes once it is old.
    monkeypatch.setattr(fileio, "STALE_TMP_S", 0.3)
    path2 = tmp_path / "other.json"
    recent = tmp_path / ".other.json.4444.2d2d2d2d2d2d2d2d.tmp"
    recent.write_text("x")
    write_json_atomic(path2, {"i": 1})
    assert recent.exists()
    write_json_atomic(path2, {"i": 2})  # not due yet: no directory listing on every write
    assert recent.exists()
    time.sleep(0.4)
    write_json_atomic(path2, {"i": 3})
    assert not recent.exists() and read_status(path2) == {"i": 3}


def test_the_harness_sees_torn_writes(tmp_path):
    # Control: a plain overwrite (truncate, then write) is caught by the same reader.
    def naive(path: Path, obj: object) -> None:
        path.write_text(json.dumps(obj))

    reads, bad = _hammer(tmp_path / "naive.json", naive)
    assert bad > 0, f"no torn read in {reads}: the atomicity test above would prove nothing"


def test_non_finite_numbers_become_null(tmp_path):
    write_json_atomic(tmp_path / "s.json", {"fps": float("nan"), "x": [float("inf"), 1.5]})
    assert read_status(tmp_path / "s.json") == {"fps": None, "x": [None, 1.5]}


class FakeRecorder(PipelineObserver):
    """Stands in for the recorder's health() contract only: name + health() -> dict."""

    name = "recorder"

    def health(self) -> dict:
        return {"state": "idle", "sessions": 2}


class Broken(PipelineObserver):
    name = "broken"

    def health(self) -> dict:
        raise RuntimeError("sensor gone")


def _run(cfg: Config, runner, observers, seconds: float, source_spec: str | None = None) -> Pipeline:
    with open_source(cfg.source) as src:
        pipe = Pipeline(resolve_run(cfg, runner=runner), src, runner, NullSink(), observers=observers)
        th = threading.Thread(target=pipe.run)
        th.start()
        time.sleep(seconds)
        pipe.stop.set()
        th.join(5.0)
        assert not th.is_alive()
    return pipe


def test_status_file_of_a_live_run(tmp_path, runner, lung_clips):
    status = tmp_path / "status.json"
    cfg = with_overrides(
        Config(),
        source={"spec": f"file:{lung_clips[0]}", "loop": True},
        health={"status_file": str(status), "interval_s": 0.2},
        record={"dir": str(tmp_path)},
    )
    mon = HealthMonitor(cfg.health, disk_path=tmp_path)
    seen: list[dict] = []
    stop_reading = threading.Event()

    def watch() -> None:  # what an engineer polling the file sees during the run
        while not stop_reading.is_set():
            if status.exists():
                s = read_status(status)
                if not seen or s["time_unix"] != seen[-1]["time_unix"]:
                    seen.append(s)
            time.sleep(0.02)

    w = threading.Thread(target=watch)
    w.start()
    pipe = _run(cfg, runner, [FakeRecorder(), Broken(), mon], seconds=1.5)
    stop_reading.set()
    w.join()

    live = [s for s in seen if s["state"] == "live"]
    assert len(seen) >= 4 and live, [s["state"] for s in seen]
    s = live[-1]
    assert set(STATUS_FIELDS) - {"systemd"} <= set(s)
    assert s["schema_version"] == 1 and s["frames"] > 0 and s["fps"] > 1
    assert s["inference_ms_p50"] > 0 and s["latency_ms_p50"] > 0
    assert isinstance(s["p_nerve"], float) and 0 <= s["p_nerve"] <= 1 and isinstance(s["nerve"], bool)
    assert s["model"]["sha256"] == runner.sha256 and s["model"]["name"] == runner.spec.name
    assert s["disk"]["path"] == str(tmp_path) and s["disk"]["free_bytes"] > 0
    assert s["recorder"] == {"state": "idle", "sessions": 2}
    assert s["broken"] == {"error": "RuntimeError: sensor gone"}  # one broken observer costs only its own entry
    assert s["last_error"] is None and s["uptime_s"] > 0

    final = read_status(status)  # written on stop
    assert final["state"] == "stopped" and final["frames"] == pipe.snapshot().frames


def test_status_file_reports_no_signal_while_no_frame_comes(tmp_path, runner):
    status = tmp_path / "status.json"
    cfg = with_overrides(
        Config(),
        source={"spec": "v4l2:/dev/video-nerveseg-test-absent", "retry_max_s": 0.25},
        overlay={"no_signal_after_s": 0.2},
        health={"status_file": str(status), "interval_s": 0.2},
    )
    states = []
    mon = HealthMonitor(cfg.health, disk_path=tmp_path)
    with open_source(cfg.source) as src:
        pipe = Pipeline(resolve_run(cfg, runner=runner), src, runner, NullSink(), observers=[mon])
        th = threading.Thread(target=pipe.run)
        th.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if status.exists():
                s = read_status(status)
                states.append(s["state"])
                if s["state"] == "no_signal":
                    break
            time.sleep(0.05)
        pipe.stop.set()
        th.join(5.0)
    assert "no_signal" in states
    assert s["frames"] == 0 and s["source"]["connected"] is False and s["source"]["open_failures"] > 0


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), ""


SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9.e+-]+$')


@contextlib.contextmanager
def _live_metrics(tmp_path, runner, lung_clips):
    """A looping clip through the live loop with the metrics server on a free port: (monitor, pipeline),
    once the port is bound; the loop is stopped on leaving."""
    cfg = with_overrides(
        Config(),
        source={"spec": f"file:{lung_clips[0]}", "loop": True},
        health={"metrics_port": 0, "interval_s": 0.2},  # 0: any free port; the bound one is on the monitor
    )
    mon = HealthMonitor(cfg.health, disk_path=tmp_path)
    with open_source(cfg.source) as src:
        pipe = Pipeline(resolve_run(cfg, runner=runner), src, runner, NullSink(), observers=[mon])
        th = threading.Thread(target=pipe.run)
        th.start()
        try:
            deadline = time.monotonic() + 10
            while mon.metrics_port is None and time.monotonic() < deadline:
                time.sleep(0.02)
            yield mon, pipe
        finally:
            pipe.stop.set()
            th.join(5.0)


def test_metrics_over_http_on_loopback(tmp_path, runner, lung_clips):
    with _live_metrics(tmp_path, runner, lung_clips) as (mon, _):
        assert mon._server.server_address[0] == "127.0.0.1"
        url = f"http://127.0.0.1:{mon.metrics_port}"
        time.sleep(1.0)
        code, ctype, text = _get(url + "/metrics")
        assert code == 200 and ctype.startswith("text/plain; version=0.0.4")
        assert _get(url + "/nope")[0] == 404
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    bad = [ln for ln in lines if not SAMPLE.match(ln)]
    assert not bad, bad
    values = {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in lines}
    assert values["nerveseg_up"] == 1 and values["nerveseg_frames_total"] > 0 and values["nerveseg_fps"] > 0
    assert values['nerveseg_state{state="live"}'] == 1
    assert sum(values[f'nerveseg_state{{state="{st}"}}'] for st in STATES) == 1
    assert 0 < values["nerveseg_inference_p50_seconds"] < 1
    assert values[f'nerveseg_disk_free_bytes{{path="{tmp_path}"}}'] > 0
    assert "# TYPE nerveseg_frames_total counter" in text
    # The server is gone with the loop.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=1).close()


def test_metrics_port_taken_does_not_stop_the_overlay(runner, lung_clips, tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        cfg = with_overrides(
            Config(), source={"spec": f"file:{lung_clips[0]}", "loop": True}, health={"metrics_port": port}
        )
        pipe = _run(cfg, runner, [HealthMonitor(cfg.health, disk_path=tmp_path)], seconds=0.8)
    finally:
        busy.close()
    assert pipe.snapshot().frames > 0
    assert pipe.last_error and f"127.0.0.1:{port}" in pipe.last_error


def test_unwritable_status_file_does_not_stop_the_overlay(runner, lung_clips, tmp_path, caplog):
    cfg = with_overrides(
        Config(),
        source={"spec": f"file:{lung_clips[0]}", "loop": True},
        health={"status_file": str(tmp_path / "missing-dir" / "status.json"), "interval_s": 0.1},
    )
    pipe = _run(cfg, runner, [HealthMonitor(cfg.health, disk_path=tmp_path)], seconds=0.8)
    assert pipe.snapshot().frames > 0
    warnings = [r for r in caplog.records if "cannot write status file" in r.getMessage()]
    assert len(warnings) == 1  # once, not every interval


def _threads_beyond(baseline: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t not in baseline]


def test_stuck_metrics_clients_neither_block_scrapes_nor_pile_up_threads(tmp_path, runner, lung_clips, monkeypatch):
    monkeypatch.setattr(health_metrics, "METRICS_CLIENT_TIMEOUT_S", 1.0)  # 2 s on the box; shorter keeps the test quick
    clients: list[socket.socket] = []
    try:
        with _live_metrics(tmp_path, runner, lung_clips) as (mon, pipe):
            url = f"http://127.0.0.1:{mon.metrics_port}/metrics"
            assert _get(url)[0] == 200
            baseline = set(threading.enumerate())

            # One client that connects and says nothing, one that stops half-way through its request.
            clients.append(socket.create_connection(("127.0.0.1", mon.metrics_port)))
            clients.append(socket.create_connection(("127.0.0.1", mon.metrics_port)))
            clients[-1].sendall(b"GET /metrics HTTP/1.1\r\nHost: x")
            time.sleep(0.1)
            t0 = time.monotonic()
            assert _get(url)[0] == 200 and time.monotonic() - t0 < 0.8  # not waiting out their 1 s timeout

            # Many of them: a bounded number of handler threads, however many connect.
            clients += [socket.create_connection(("127.0.0.1", mon.metrics_port)) for _ in range(20)]
            time.sleep(0.2)
            frames = pipe.snapshot().frames
            assert len(_threads_beyond(baseline)) <= health_metrics.METRICS_MAX_HANDLERS, _threads_beyond(baseline)

            # Each is dropped after its timeout: the threads end, and scrapes work again.
            deadline = time.monotonic() + 3.0
            while _threads_beyond(baseline) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _threads_beyond(baseline) == []
            assert _get(url)[0] == 200
            assert pipe.snapshot().frames > frames  # the overlay ran on meanwhile
    finally:
        for c in clients:
            c.close()


class WedgedDisplaySink(NullSink):
    """A display whose driver stops returning from ``show`` once ``wedge`` is set, until ``release`` is."""

    def __init__(self) -> None:
        super().__init__()
        self.wedge = threading.Event()
        self.release = threading.Event()
        self.stuck = threading.Event()

    def show(self, image) -> None:
        if self.wedge.is_set() and not self.release.is_set():
            self.stuck.set()
            self.release.wait()
        super().show(image)


def _metrics(text: str) -> dict[str, float]:
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    return {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in lines}


def test_a_hung_loop_shows_as_a_growing_status_age(tmp_path, runner, lung_clips, capsys):
    # Snapshots come from the processing thread: once it hangs (here in the display), the metrics keep their
    # last values and nerveseg_up stays 1. The age, computed at scrape time, is what shows it.
    status = tmp_path / "status.json"
    cfg = with_overrides(
        Config(),
        source={"spec": f"file:{lung_clips[0]}", "loop": True},
        health={"metrics_port": 0, "interval_s": 0.2, "status_file": str(status)},
    )
    mon = HealthMonitor(cfg.health, disk_path=tmp_path)
    sink = WedgedDisplaySink()
    with open_source(cfg.source) as src:
        pipe = Pipeline(resolve_run(cfg, runner=runner), src, runner, sink, observers=[mon])
        th = threading.Thread(target=pipe.run)
        th.start()
        try:
            deadline = time.monotonic() + 10
            while (mon.metrics_port is None or pipe.snapshot().frames < 5) and time.monotonic() < deadline:
                time.sleep(0.02)
            url = f"http://127.0.0.1:{mon.metrics_port}/metrics"
            time.sleep(0.3)
            live = _metrics(_get(url)[2])
            assert live["nerveseg_up"] == 1 and live["nerveseg_status_age_seconds"] < 1.5  # 0.2 s, unless loaded

            sink.wedge.set()
            assert sink.stuck.wait(3.0)
            t_stuck = time.monotonic()
            time.sleep(1.5)
            hung = _metrics(_get(url)[2])
            stuck_for = time.monotonic() - t_stuck
            assert hung["nerveseg_up"] == 1  # the process still answers...
            # ...but its values were taken before the loop got stuck, and the age says so.
            assert hung["nerveseg_status_age_seconds"] >= stuck_for - 0.05, (hung, stuck_for)
            assert hung["nerveseg_last_frame_age_seconds"] >= stuck_for - 0.05
            assert hung["nerveseg_status_timestamp_seconds"] == pytest.approx(
                time.time() - hung["nerveseg_status_age_seconds"], abs=0.5)
            # The status file says the same to `nerveseg status`.
            assert main(["status", "--file", str(status), "--max-age", "1"]) == EXIT_NOT_RUNNING
            assert "the loop is hung or gone" in capsys.readouterr().err
        finally:
            sink.release.set()
            pipe.stop.set()
            th.join(5.0)


def test_status_age_is_computed_when_scraped():
    snap = {"state": "live", "time_unix": 1000.0, "last_frame_age_s": 0.25}
    values = _metrics(render_metrics(snap, now_unix=1030.0))
    assert values["nerveseg_status_age_seconds"] == 30.0
    assert values["nerveseg_last_frame_age_seconds"] == 30.25
    assert values["nerveseg_status_timestamp_seconds"] == 1000.0


def test_render_metrics_without_a_snapshot_and_with_nan():
    assert render_metrics(None).splitlines()[-1] == "nerveseg_up 1"
    text = render_metrics({"state": "no_signal", "fps": float("nan"), "frames": 3, "p_nerve": None})
    assert "nerveseg_fps" not in text and "nerveseg_p_nerve" not in text and "nerveseg_frames_total 3" in text
    assert 'nerveseg_state{state="no_signal"} 1' in text


def test_health_config_and_wiring(tmp_path):
    cfg = with_overrides(Config(), health={"status_file": str(tmp_path / "s.json")}, record={"dir": "/srv/rec"})
    mons = [o for o in observers_from_config(cfg) if isinstance(o, HealthMonitor)]
    assert len(mons) == 1 and mons[0].disk_path == Path("/srv/rec")
    assert not any(isinstance(o, HealthMonitor) for o in observers_from_config(Config()))  # off by default
    with pytest.raises(ConfigError, match="health.metrics_port"):
        with_overrides(Config(), health={"metrics_port": 70000})
    with pytest.raises(ConfigError, match="health.metrics_host: unknown key"):
        with_overrides(Config(), health={"metrics_host": "0.0.0.0"})  # loopback only, by design


def test_status_command(tmp_path, capsys):
    assert cli.STATUS_FILE == DEFAULT_STATUS_FILE
    path = tmp_path / "status.json"
    base = {
        "state": "live", "version": "0.1.0", "pid": 42, "uptime_s": 3725, "fps": 29.9, "fps_mean": 29.5,
        "frames": 1000, "dropped": 2, "inference_ms_p50": 1.2, "latency_ms_p50": 30.0, "latency_ms_p95": 41.0,
        "p_nerve": 0.83, "nerve": True, "source": {"describe": "v4l2:/dev/video0", "connected": True},
        "model": {"name": "nerveseg", "sha256": "ab" * 32}, "disk": {"path": "/var", "free_bytes": 5e9,
                                                                   "total_bytes": 3e10},
        "recorder": {"state": "idle"}, "last_error": None,
    }
    write_json_atomic(path, {**base, "time_unix": time.time()})
    assert main(["status", "--file", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "live" in out and "up 1h02m" in out and "fps 29.9" in out and "P 0.83" in out and "5.0 GB free" in out

    write_json_atomic(path, {**base, "time_unix": time.time() - 60})
    assert main(["status", "--file", str(path)]) == EXIT_NOT_RUNNING
    assert "hung or gone" in capsys.readouterr().err
    write_json_atomic(path, {**base, "state": "stopped", "time_unix": time.time()})
    assert main(["status", "--file", str(path), "--json"]) == EXIT_NOT_RUNNING
    assert json.loads(capsys.readouterr().out)["state"] == "stopped"
    assert main(["status", "--file", str(tmp_path / "none.json")]) == EXIT_NOT_RUNNING
    assert "cannot read" in capsys.readouterr().err


WRONG_STATUS_FILES = {
    "fps-text": ('{"state": "live", "fps": "fast", "time_unix": 1}', 'fps is "fast", expected a number'),
    "a-list": ("[1, 2]", "not a JSON object but list"),
    "garbage": ("garbage{", "not JSON"),
    "not-utf8": (b'{"state": "\xff"}', "not text (UTF-8)"),
    "nested-wrong": ('{"state": "live", "model": "x", "notices": 5, "source": {"connected": "yes"}}',
                     'model is "x", expected an object'),
    "infinite-time": ('{"state": "live", "time_unix": 1e999}', "time_unix is inf"),
    "bool-time": ('{"state": "live", "time_unix": true}', "time_unix is true"),
    "unknown-state": ('{"state": "exploded", "time_unix": 1}', 'state is "exploded", expected one of starting'),
    "huge": (b" " * (2 << 20), "larger than 1024 kB"),
}


@pytest.mark.parametrize("name", list(WRONG_STATUS_FILES))
def test_status_of_a_wrong_typed_file_says_what_is_wrong_and_exits_not_running(tmp_path, capsys, name):
    # A hand-edited, truncated or foreign file used to end in a traceback (rc 1): now the fault, and 8.
    content, said = WRONG_STATUS_FILES[name]
    path = tmp_path / "status.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for extra in ([], ["--json"]):
        assert main(["status", "--file", str(path), *extra]) == EXIT_NOT_RUNNING
        err = capsys.readouterr().err
        assert said in err and str(path) in err and "Traceback" not in err, err
        assert len(err) < 600  # quoted values are cut short


def test_status_command_in_a_real_process_exits_8_without_a_traceback(tmp_path):
    path = tmp_path / "status.json"
    path.write_text('{"state": "live", "fps": "fast", "time_unix": 1}')
    r = subprocess.run([sys.executable, "-m", "edge.cli", "status", "--file", str(path)], capture_output=True,
                       text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert r.returncode == EXIT_NOT_RUNNING and "Traceback" not in r.stderr, r.stderr
    assert 'fps is "fast"' in r.stderr


def test_format_status_never_raises_on_wrong_types():
    from edge.health import format_status

    weird = {"version": ["x"], "pid": None, "state": 3, "uptime_s": "long", "fps": "fast", "fps_mean": float("nan"),
             "frames": "many", "dropped": True, "inference_ms_p50": {}, "p_nerve": "high", "nerve": "yes",
             "source": [1], "model": {"name": 5, "untrained": "no"}, "disk": {"free_bytes": "lots", "path": 1},
             "recorder": "x" * 1000, "notices": "one", "last_error": {"deep": [1, 2]}, "time_unix": "now"}
    text = format_status(weird)
    assert "fps ? (mean ?)" in text and "written ? s ago" in text and "notice: one" in text
    assert len(text) < 2000
    assert format_status({}).startswith("nerveseg ? (pid ?): ?")
