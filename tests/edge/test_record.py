"""Recording for review: the real live loop, the real shipped model, real video and real files.

Stand-ins only at the edges: a spy observer that sees what the loop saw, a sink that
counts key presses like the window sink, a slow write (a slow SD card) and, where no
filesystem can be mounted, a write path into /dev/full (the kernel's ENOSPC).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import edge.record as record
from edge.config import Config, ConfigError, parse_config, with_overrides
from edge.models import default_model_path
from edge.pipeline import FrameEvent, Pipeline, PipelineObserver
from edge.preprocess import crop_roi, preprocess
from edge.record import Recorder, apply_retention, list_sessions, load_mask, load_raw
from edge.runner import ModelRunner
from edge.sinks.null import NullSink
from edge.sources import open_source
from edge.spec import sha256_file
from edge.types import Roi
from tests.media import count_video_frames

REPO = Path(__file__).resolve().parents[2]
# The lung clips and the Kaggle frames hold the ultrasound image alone, no machine interface: their ROI is the
# whole frame, said explicitly because a recording config must say where the image is.
LUNG_ROI = ({"x": 0, "y": 0, "w": 234, "h": 234}, {"x": 0, "y": 0, "w": 208, "h": 208})  # lung_clips[0], [1]
KAGGLE_ROI = {"x": 0, "y": 0, "w": 580, "h": 420}


@pytest.fixture(scope="module")
def runner() -> ModelRunner:
    return ModelRunner(default_model_path(), threads=2)


class Spy(PipelineObserver):
    """Sees what the loop saw; optionally presses 'record' (the recorder's toggle) at given frames.

    Placed before the recorder, so a toggle at seq N applies from frame N on.
    """

    def __init__(self, toggles_at: tuple[int, ...] = (), recorder: Recorder | None = None, keep_images: bool = False,
                 sink: object | None = None):
        self.toggles_at = set(toggles_at)
        self.recorder = recorder
        self.sink = sink
        self.keep_images = keep_images
        self.frames: list[dict] = []
        self.notices: list[str | None] = []

    def on_frame(self, pipeline: Pipeline, event: FrameEvent) -> None:
        if event.seq in self.toggles_at:
            if self.sink is not None:
                self.sink.record_toggle_requests += 1
            else:
                self.recorder.request_toggle()
        d = {"seq": event.seq, "t": event.frame.t_capture_ns,
             "nerve": bool(event.decision and event.decision.nerve),
             "p": event.result.p_nerve if event.result else None}
        if self.keep_images and event.roi_raw is not None:
            d["raw"] = event.roi_raw.copy()  # the recorder may blank its own copy later
            d["input"] = event.model_input.copy()
        self.frames.append(d)
        self.notices.append(pipeline.notices.get(record.NOTICE_KEY))


class KeySink(NullSink):
    """A display whose operator presses keys: counts 'r' presses like `WindowSink`."""

    def __init__(self) -> None:
        super().__init__()
        self.record_toggle_requests = 0


def _run(cfg: Config, runner: ModelRunner, observers, sink=None, drop_frames: bool = False):
    with open_source(cfg.source) as src:
        pipe = Pipeline(cfg, src, runner, sink or NullSink(), drop_frames=drop_frames, observers=observers)
        stats = pipe.run()
    return pipe, stats


def _sessions(root: Path) -> list[tuple[dict, list[dict], Path]]:
    out = []
    for s in list_sessions(root):
        manifest = json.loads((s / record.MANIFEST_FILE).read_text())
        lines = [json.loads(x) for x in (s / record.FRAMES_FILE).read_text().splitlines()]
        out.append((manifest, lines, s))
    return out



def _expected_sessions(frames: list[dict], want, pre_s: float, post_s: float) -> list[list[int]]:
    """The recording rules in their plainest form: which seqs each session holds."""
    pre_ns, post_ns = int(pre_s * 1e9), int(post_s * 1e9)
    sessions: list[list[int]] = []
    cur: list[int] | None = None
    off = None
    ring: list[tuple[int, int]] = []
    for f in frames:
        w = want(f)
        if cur is not None:
            if w:
                off = None
            elif off is None:
                off = f["t"]
            if off is not None and f["t"] - off >= post_ns:
                sessions.append(cur)
                cur, off, ring = None, None, []
            else:
                cur.append(f["seq"])
                continue
        if w:
            cur = [s for s, t in ring if t >= f["t"] - pre_ns] + [f["seq"]]
            ring = []
        else:
            ring.append((f["seq"], f["t"]))
    if cur:
        sessions.append(cur)
    return sessions


# -- config -----------------------------------------------------------------------------------------


def test_record_config_errors_name_the_key():
    with pytest.raises(ConfigError) as e:
        parse_config({"record": {"mode": "sometimes"}})
    assert any(p.startswith("record.mode:") and "on-detection" in p for p in e.value.problems)
    with pytest.raises(ConfigError) as e:
        parse_config({"record": {"pre_roll_s": -1, "max_gb": 0, "colour": 1}})
    text = "\n".join(e.value.problems)
    assert "record.pre_roll_s:" in text and "record.max_gb:" in text and "record.colour: unknown key" in text
    assert parse_config({"record": {"mode": "on-detection"}}).record.mode == "on-detection"
    assert Config().record.mode == "off"


def test_observers_from_config_adds_the_recorder_only_when_asked(tmp_path):
    from edge.observers import observers_from_config

    assert observers_from_config(Config()) == []
    obs = observers_from_config(with_overrides(Config(), record={"mode": "manual", "dir": str(tmp_path)}))
    assert [o.name for o in obs] == ["recorder"] and obs[0].needs_raw is False  # not started yet


# -- always: every frame, bit-exact, private files ------------------------------------------------------


def test_always_records_every_frame_bit_exact_to_what_the_model_saw(tmp_path, lung_clips, runner):
    clip = lung_clips[0]  # 234x234
    roi = {"x": 10, "y": 20, "w": 200, "h": 180}
    cfg = with_overrides(Config(), source={"spec": f"file:{clip}", "pace": False}, roi=roi,
                         loop={"max_frames": 40}, record={"mode": "always", "dir": str(tmp_path / "rec")})
    rec = Recorder(cfg.record)
    spy = Spy(keep_images=True)
    pipe, stats = _run(cfg, runner, [spy, rec])
    assert stats.frames == 40 and rec.frames_dropped == 0

    [(manifest, lines, sdir)] = _sessions(tmp_path / "rec")
    assert manifest["frames"] == len(lines) == 40 == len(list((sdir / "raw").iterdir()))
    assert [x["seq"] for x in lines] == list(range(40))
    assert count_video_frames(sdir / record.ANNOTATED_FILE) == manifest["annotated_frames"] == 40
    assert not (sdir / record.FULL_FILE).exists()

    # The raw crop read back is the captured ROI, and preprocessing it again gives the very
    # input the model was fed (compared bit for bit).
    cap = cv2.VideoCapture(str(clip))
    spec = runner.spec.preprocess
    for k, line in enumerate(lines):
        ok, captured = cap.read()
        assert ok
        raw = load_raw(sdir / line["raw"])
        np.testing.assert_array_equal(raw, crop_roi(captured, Roi(**roi)))
        np.testing.assert_array_equal(raw, spy.frames[k]["raw"])
        np.testing.assert_array_equal(preprocess(raw, None, spec), spy.frames[k]["input"])
        assert line["p_nerve"] == pytest.approx(spy.frames[k]["p"], abs=1e-6)
        mask = load_mask(sdir / line["mask"])
        assert mask.shape == runner.input_hw
    cap.release()

    first = lines[0]
    assert first["model"] == manifest["model"]["id"] and first["decision"] in ("nerve", "no_nerve")
    assert {"roi_gray", "infer", "overlay", "sink"} <= set(first["stages_ms"])
    assert first["t_capture"].endswith("Z") and first["pre_roll"] is False
    assert manifest["model"]["sha256"] == sha256_file(default_model_path())
    assert manifest["software"]["nerveseg"] == record.__version__
    assert manifest["config"]["record"]["mode"] == "always" and manifest["profile"] is None
    assert manifest["started_utc"] and manifest["stopped_utc"] and manifest["stop_reason"] == "loop ended"
    assert manifest["roi"] == roi and manifest["frame_size"] == [234, 234]

    # 0700 folders, 0600 files, owned by the user the loop runs as
    for path in [sdir, *sdir.rglob("*")]:
        st = path.stat()
        assert st.st_uid == os.getuid()
        assert stat.S_IMODE(st.st_mode) == (0o700 if path.is_dir() else 0o600), path
    assert stat.S_IMODE((tmp_path / "rec").stat().st_mode) == 0o700

    h = rec.health()
    json.dumps(h)
    assert h["frames_written"] == 40 and h["frames_dropped"] == 0 and h["state"] == "off"


def test_real_kaggle_frames_bit_exact(tmp_path, kaggle_fullres, runner):
    cfg = with_overrides(Config(), roi=KAGGLE_ROI, source={"spec": f"images:{kaggle_fullres}", "pace": False},
                         loop={"max_frames": 12}, record={"mode": "always", "dir": str(tmp_path)})
    spy = Spy(keep_images=True)
    _run(cfg, runner, [spy, Recorder(cfg.record)])
    [(_, lines, sdir)] = _sessions(tmp_path)
    from edge.sources.images import list_images

    files = list_images(kaggle_fullres)[:12]
    for k, line in enumerate(lines):
        raw = load_raw(sdir / line["raw"])
        np.testing.assert_array_equal(raw, cv2.imread(str(files[k]), cv2.IMREAD_COLOR))
        np.testing.assert_array_equal(preprocess(raw, None, runner.spec.preprocess), spy.frames[k]["input"])


class ShownSink(NullSink):
    """A monitor that keeps what it was shown."""

    def __init__(self) -> None:
        super().__init__()
        self.shown: list[np.ndarray] = []

    def show(self, image: np.ndarray) -> None:
        self.shown.append(image.copy())


def test_annotated_video_draws_what_the_monitor_showed(tmp_path, kaggle_fullres, runner):
    cfg = with_overrides(Config(), roi=KAGGLE_ROI, source={"spec": f"images:{kaggle_fullres}", "pace": False},
                         presence={"enter": 0.7, "exit": 0.5, "min_frames_on": 1, "min_frames_off": 1},
                         # unpaced on a busy box a frame may turn stale; its marker's age is not the event's
                         overlay={"stale_after_ms": 1e9},
                         loop={"max_frames": 20}, record={"mode": "always", "dir": str(tmp_path)})

    class Keep(Spy):
        def on_frame(self, pipeline, event):
            super().on_frame(pipeline, event)
            self.frames[-1].update(mask=event.decision.mask, state=event.state, lat=event.latency_ms)

    sink, spy = ShownSink(), Keep(keep_images=True)
    pipe, _ = _run(cfg, runner, [spy, Recorder(cfg.record)], sink=sink)
    [(_, lines, sdir)] = _sessions(tmp_path)
    body = (slice(60, 380), slice(0, 580))  # between the status lines and the footer
    overlay = record.Overlay(cfg.overlay, None, pipe.overlay.mask_threshold)
    cap = cv2.VideoCapture(str(sdir / record.ANNOTATED_FILE))
    nerve_frames = 0
    for k, f in enumerate(spy.frames):
        # the writer's drawing code, on the recorded raw frame, gives the monitor's pixels exactly
        drawn = record.render_annotated(overlay, load_raw(sdir / lines[k]["raw"]), f["nerve"], f["p"], f["mask"],
                                        f["state"], 0.0, f["lat"], runner.spec.untrained, runner.spec.name)
        np.testing.assert_array_equal(drawn[body], sink.shown[k][body])
        ok, frame = cap.read()  # and the mp4 holds it (lossy codec: close, not equal)
        assert ok and np.abs(frame[body].astype(int) - sink.shown[k][body]).mean() < 4
        nerve_frames += f["nerve"]
    cap.release()
    assert 0 < nerve_frames < 20


def test_blanking_and_full_frame_only_when_opted_in(tmp_path, runner):
    # The phantom draws a machine UI around the image at 1280x720 (like an HDMI video-out frame).
    base = with_overrides(Config(), source={"spec": "phantom", "pace": False, "width": 1280, "height": 720},
                          loop={"max_frames": 8})
    with open_source(base.source) as src:
        roi = src.image_roi
        shown = src.read(1.0).image
    ui_box = Roi(0, 0, 470, 48)  # the UI's title bar, above the image: where a machine shows the patient's name
    across = Roi(roi.x - 20, roi.y + 30, 80, 50)  # straddles the image's left edge
    assert roi.y >= 48 and shown[:48, :470].max() > 100 and crop_roi(shown, roi)[30:80, :60].max() > 0

    for full in (False, True):
        root = tmp_path / f"full-{full}"
        cfg = with_overrides(base, record={"mode": "always", "dir": str(root), "full_frame": full})
        spy = Spy(keep_images=True)
        _run(cfg, runner, [spy, Recorder(cfg.record, blank=[ui_box, across], profile_path=None)])
        [(manifest, lines, sdir)] = _sessions(root)
        assert manifest["blank"] == [[0, 0, 470, 48], [across.x, across.y, 80, 50]]
        for k, line in enumerate(lines):
            raw = load_raw(sdir / line["raw"])
            assert raw.shape[:2] == (roi.h, roi.w)  # only the ROI, never the machine's UI
            want = spy.frames[k]["raw"].copy()
            want[30:80, 0:60] = 0  # `across` shifted into the ROI and clipped to it
            np.testing.assert_array_equal(raw, want)
        cap = cv2.VideoCapture(str(sdir / record.ANNOTATED_FILE))
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        assert size == (roi.w + roi.w % 2, roi.h + roi.h % 2)  # padded to even sizes: no row lost
        cap.release()
        written = {p.name for p in sdir.iterdir()}
        if not full:
            assert record.FULL_FILE not in written and manifest["full_frames"] is None
            continue
        assert count_video_frames(sdir / record.FULL_FILE) == manifest["full_frames"] == len(lines)
        cap = cv2.VideoCapture(str(sdir / record.FULL_FILE))
        ok, img = cap.read()
        cap.release()
        assert ok and img.shape == (720, 1280, 3)
        # blanked in the video too (lossy codec: near black, where the UI had text)
        assert img[4:44, 4:466].mean() < 4 and shown[4:44, 4:466].mean() > 20
        assert img[across.y + 4 : across.y + 46, across.x + 4 : across.x + 76].mean() < 4


# -- triggers -----------------------------------------------------------------------------------------


def test_manual_pre_roll_holds_exactly_the_frames_before_the_trigger(tmp_path, lung_clips, runner):
    # Paced at 100 fps: ~10 ms between captures, so 0.1 s of pre-roll is about 10 frames.
    cfg = with_overrides(
        Config(), roi=LUNG_ROI[1], source={"spec": f"file:{lung_clips[1]}", "fps": 100},
        loop={"max_frames": 150},
        record={"mode": "manual", "dir": str(tmp_path), "pre_roll_s": 0.1, "post_roll_s": 0.05, "queue_frames": 500},
    )
    rec = Recorder(cfg.record)
    spy = Spy(toggles_at=(30, 60, 75, 120), recorder=rec)
    _run(cfg, runner, [spy, rec])
    assert rec.frames_dropped == 0

    on = set()
    state = False
    for f in spy.frames:
        if f["seq"] in spy.toggles_at:
            state = not state
        if state:
            on.add(f["seq"])
    expected = _expected_sessions(spy.frames, lambda f: f["seq"] in on, 0.1, 0.05)
    got = _sessions(tmp_path)
    assert [[x["seq"] for x in lines] for _, lines, _ in got] == expected
    assert len(expected) == 2

    (m1, l1, _), (m2, l2, _) = got
    pre1 = [x["seq"] for x in l1 if x["pre_roll"]]
    t = {f["seq"]: f["t"] for f in spy.frames}
    # about 10 frames at 100 fps; fewer where a busy box cannot keep that pace
    assert pre1 == [s for s in range(30) if t[30] - 0.1e9 <= t[s]] and 2 <= len(pre1) <= 15
    assert l1[len(pre1)]["seq"] == 30 and m1["trigger"]["pre_roll_frames"] == len(pre1)
    # post-roll: frames captured less than 0.05 s after the toggle-off at 60
    assert l1[-1]["seq"] >= 60 and all(t[s] - t[60] < 0.05e9 for s in range(60, l1[-1]["seq"] + 1))
    assert t[l1[-1]["seq"] + 1] - t[60] >= 0.05e9
    # the second session's pre-roll never repeats frames of the first
    assert l2[0]["seq"] > l1[-1]["seq"] and m2["trigger"]["seq"] == 75 and l2[-1]["seq"] >= 120
    assert m1["trigger"]["mode"] == "manual"


def test_on_detection_starts_with_pre_roll_and_stops_after_post_roll(tmp_path, kaggle_fullres, runner):
    # Kaggle frames of subjects 1-2: the model calls some "nerve", some not; with single-frame
    # hysteresis the decision flips often, giving several sessions in one pass.
    cfg = with_overrides(
        Config(), roi=KAGGLE_ROI, source={"spec": f"images:{kaggle_fullres}", "fps": 50},
        presence={"enter": 0.7, "exit": 0.5, "min_frames_on": 1, "min_frames_off": 1},
        record={"mode": "on-detection", "dir": str(tmp_path), "pre_roll_s": 0.05, "post_roll_s": 0.03,
                "queue_frames": 500},
    )
    rec = Recorder(cfg.record)
    spy = Spy()
    _run(cfg, runner, [spy, rec])
    assert len(spy.frames) == 55 and rec.frames_dropped == 0
    expected = _expected_sessions(spy.frames, lambda f: f["nerve"], 0.05, 0.03)
    got = _sessions(tmp_path)
    assert len(expected) >= 3
    assert [[x["seq"] for x in lines] for _, lines, _ in got] == expected
    nerve_seqs = {f["seq"] for f in spy.frames if f["nerve"]}
    for manifest, lines, _ in got:
        assert manifest["trigger"]["seq"] in nerve_seqs and manifest["trigger"]["reason"] == "nerve detected"
        assert [x["decision"] == "nerve" for x in lines] == [x["seq"] in nerve_seqs for x in lines]


def test_always_mode_splits_long_sessions_without_losing_frames(tmp_path, lung_clips, runner):
    cfg = with_overrides(Config(), roi=LUNG_ROI[1], source={"spec": f"file:{lung_clips[1]}", "fps": 100},
                         loop={"max_frames": 60},
                         record={"mode": "always", "dir": str(tmp_path), "max_session_s": 0.2, "queue_frames": 500})
    _run(cfg, runner, [Recorder(cfg.record)])
    got = _sessions(tmp_path)
    assert len(got) >= 2
    seqs = [x["seq"] for _, lines, _ in got for x in lines]
    assert seqs == list(range(60))
    assert [m["stop_reason"] for m, _, _ in got][:-1] == ["record.max_session_s reached"] * (len(got) - 1)


def test_window_key_toggles_manual_recording(tmp_path, lung_clips, runner):
    cfg = with_overrides(Config(), roi=LUNG_ROI[1], source={"spec": f"file:{lung_clips[1]}", "pace": False},
                         loop={"max_frames": 40},
                         record={"mode": "manual", "dir": str(tmp_path), "pre_roll_s": 0, "post_roll_s": 0})
    sink = KeySink()
    rec = Recorder(cfg.record)
    _run(cfg, runner, [Spy(toggles_at=(10, 20), sink=sink), rec], sink=sink)
    [(_, lines, _)] = _sessions(tmp_path)
    assert [x["seq"] for x in lines] == list(range(10, 20))


def test_window_sink_counts_the_record_key():
    from edge.sinks.window import WindowSink

    win = WindowSink.__new__(WindowSink)  # no GUI here: exercise the key handling alone
    win.stop_requested, win.record_toggle_requests = False, 0
    for key in (ord("r"), -1, ord("x"), ord("R") | 0x100000):
        win._handle_key(key)
    assert win.record_toggle_requests == 2 and not win.stop_requested
    win._handle_key(ord("q"))
    assert win.stop_requested


def test_sigusr1_toggles_recording_in_nerveseg_run(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    rec_dir = tmp_path / "rec"
    cfg.write_text(f"record: {{mode: manual, dir: '{rec_dir}', pre_roll_s: 0.2, post_roll_s: 0}}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(cfg), "--source", "phantom", "--log-level", "INFO"],
        cwd=REPO, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []

    def wait_for(text: str) -> None:
        t_end = time.monotonic() + 30
        while time.monotonic() < t_end:
            line = proc.stderr.readline()
            lines.append(line)
            if text in line:
                return
        pytest.fail(f"no {text!r} in the log: " + "".join(lines))

    try:
        wait_for("running:")
        time.sleep(0.5)
        proc.send_signal(signal.SIGUSR1)
        wait_for("recording started")
        time.sleep(0.7)
        proc.send_signal(signal.SIGUSR1)
        wait_for("recording stopped")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    [(manifest, lines_, _)] = _sessions(rec_dir)
    assert manifest["trigger"]["pre_roll_frames"] >= 3  # 0.2 s of a 30 fps phantom
    assert 10 <= manifest["frames"] == len(lines_) <= 60


# -- full disk, slow disk --------------------------------------------------------------------------------


def _fps_run(cfg: Config, runner: ModelRunner, observers) -> tuple[float, Pipeline]:
    pipe, stats = _run(cfg, runner, observers, drop_frames=True)
    return stats.fps, pipe


def _mount_tmpfs(path: Path, size: str) -> str | None:
    """Mount a small tmpfs at ``path``; the reason it cannot be done, or None."""
    if not sys.platform.startswith("linux"):
        return "tmpfs mounts need Linux"
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {r.stderr.strip() or r.returncode}"
    return None


def _check_disk_full_run(cfg_on: Config, cfg_off: Config, runner: ModelRunner, caplog) -> Recorder:
    fps_off, _ = _fps_run(cfg_off, runner, [])
    rec = Recorder(cfg_on.record)
    spy = Spy()
    with caplog.at_level(logging.ERROR, logger="edge.record"):
        fps_on, pipe = _fps_run(cfg_on, runner, [spy, rec])
    assert rec.state == "stopped_disk_full", rec.health()
    assert "RECORDING STOPPED: DISK FULL" in spy.notices  # visible on the monitor
    assert any("disk full" in r.getMessage() for r in caplog.records)
    # The loop went on at the source's pace: fps within 10% of the run without recording.
    assert len(spy.frames) == cfg_on.loop.max_frames
    assert fps_on >= 0.9 * fps_off, (fps_on, fps_off)
    # What was written is consistent: every JSONL line has its frame, nothing half-written, and the
    # session was closed properly: final manifest, videos finalised (a player opens them), reserve gone.
    [(manifest, lines, sdir)] = _sessions(Path(cfg_on.record.dir))
    assert 0 < len(lines) < len(spy.frames)
    assert len(list((sdir / "raw").iterdir())) == len(lines)
    for line in lines:
        assert load_raw(sdir / line["raw"]).shape[:2] == (234, 234)
    assert manifest["frames"] == len(lines) and manifest["stop_reason"] == "disk full"
    assert manifest["stopped_utc"] is not None
    assert manifest["videos_finalised"] == {"annotated": True, "full": None}
    assert count_video_frames(sdir / record.ANNOTATED_FILE) == manifest["annotated_frames"] == len(lines)
    assert not (sdir / record.RESERVE_FILE).exists()
    return rec


def test_full_tmpfs_stops_recording_and_the_loop_keeps_its_fps(tmp_path, lung_clips, runner, caplog):
    # 2.5 MB: the session's 1 MiB reserve, the videos' headroom and ~25 frames of ~35 kB.
    mnt = tmp_path / "small"
    why = _mount_tmpfs(mnt, "2500k")
    if why:
        pytest.skip(why)
    try:
        base = with_overrides(Config(), roi=LUNG_ROI[0], source={"spec": f"file:{lung_clips[0]}", "fps": 40},
                              loop={"max_frames": 60})
        cfg_on = with_overrides(base, record={"mode": "always", "dir": str(mnt / "rec"), "min_free_mb": 0})
        rec = _check_disk_full_run(cfg_on, base, runner, caplog)
        assert "No space left on device" in (rec.last_error or "")
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_a_disk_filled_by_someone_else_still_finalises_the_session(tmp_path, lung_clips, runner):
    # Another program fills the disk while a session is open: the recorder finds no room for its next
    # frame, and only its reserve is left for FFmpeg's buffered output, the video's index and the
    # final manifest.
    mnt = tmp_path / "small"
    why = _mount_tmpfs(mnt, "3m")
    if why:
        pytest.skip(why)
    try:
        cfg = with_overrides(Config(), roi=LUNG_ROI[0], source={"spec": f"file:{lung_clips[0]}", "fps": 40},
                             loop={"max_frames": 40},
                             record={"mode": "always", "dir": str(mnt / "rec"), "min_free_mb": 0})
        rec = Recorder(cfg.record)

        class Filler(PipelineObserver):
            def on_frame(self, pipeline, event):
                if event.seq == 10:
                    t_end = time.monotonic() + 20
                    while rec.frames_written < 5 and time.monotonic() < t_end:  # a session with an mp4 is open
                        time.sleep(0.01)
                    fd = os.open(mnt / "other-program.bin", os.O_WRONLY | os.O_CREAT)
                    with pytest.raises(OSError) as e:
                        while True:
                            os.write(fd, b"\0" * 65536)
                    os.close(fd)
                    assert e.value.errno == errno.ENOSPC

        _run(cfg, runner, [Filler(), rec])
        assert rec.state == "stopped_disk_full" and "No space left on device" in rec.last_error
        [(manifest, lines, sdir)] = _sessions(mnt / "rec")
        assert manifest["frames"] == len(lines) >= 5 and manifest["stop_reason"] == "disk full"
        assert manifest["videos_finalised"]["annotated"] is True
        assert count_video_frames(sdir / record.ANNOTATED_FILE) == manifest["annotated_frames"] == len(lines)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_a_full_disk_never_costs_the_videos(tmp_path, runner):
    # Two videos (full_frame at 1280x720) and ~300 kB PNGs on a 4 MB disk: FFmpeg writes each mp4 in
    # 256 KiB pieces, and one piece that does not fit loses that mp4 for good (no index). The recorder
    # stops while both still fit, so both open, holding every recorded frame.
    mnt = tmp_path / "small"
    why = _mount_tmpfs(mnt, "4m")
    if why:
        pytest.skip(why)
    try:
        cfg = with_overrides(Config(), source={"spec": "phantom", "pace": False, "width": 1280, "height": 720},
                             loop={"max_frames": 30},
                             record={"mode": "always", "full_frame": True, "dir": str(mnt / "rec"), "min_free_mb": 0,
                                     "queue_frames": 500})
        rec = Recorder(cfg.record)
        _run(cfg, runner, [rec])
        assert rec.state == "stopped_disk_full"
        [(manifest, lines, sdir)] = _sessions(mnt / "rec")
        assert manifest["frames"] == len(lines) > 0
        assert manifest["videos_finalised"] == {"annotated": True, "full": True}
        assert count_video_frames(sdir / record.ANNOTATED_FILE) == manifest["annotated_frames"] == len(lines)
        assert count_video_frames(sdir / record.FULL_FILE) == manifest["full_frames"] == len(lines)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_a_manifest_update_that_does_not_fit_keeps_the_old_one(tmp_path):
    mnt = tmp_path / "small"
    why = _mount_tmpfs(mnt, "64k")
    if why:
        pytest.skip(why)
    try:
        path = mnt / record.MANIFEST_FILE
        good = json.dumps({"format": record.SESSION_FORMAT, "frames": 0}).encode()
        record._replace_private(path, good)
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)  # the disk fills up
        with pytest.raises(OSError) as e:
            while True:
                os.write(fd, b"x" * 4096)
        os.close(fd)
        assert e.value.errno == errno.ENOSPC
        with pytest.raises(OSError) as e:
            record._replace_private(path, b"y" * 200_000)  # the bigger final manifest
        assert e.value.errno == errno.ENOSPC
        assert path.read_bytes() == good  # intact, not truncated
        assert sorted(p.name for p in mnt.iterdir()) == ["filler", record.MANIFEST_FILE]  # no temporary left
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_enospc_from_the_kernel_stops_recording_without_a_mount(tmp_path, lung_clips, runner, caplog, monkeypatch):
    # Where no filesystem can be mounted: after 8 frames every new file is /dev/full, whose
    # writes the kernel itself fails with ENOSPC.
    calls = {"n": 0}
    real_open = record._open_new

    def open_new(path: Path, extra_flags: int = 0) -> int:
        calls["n"] += 1
        if calls["n"] > 3 + 2 * 8:  # reserve, jsonl, annotated.mp4, then (raw, mask) per frame
            return os.open("/dev/full", os.O_WRONLY)
        return real_open(path, extra_flags)

    monkeypatch.setattr(record, "_open_new", open_new)
    base = with_overrides(Config(), roi=LUNG_ROI[0], source={"spec": f"file:{lung_clips[0]}", "fps": 40},
                          loop={"max_frames": 60})
    cfg_on = with_overrides(base, record={"mode": "always", "dir": str(tmp_path / "rec"), "min_free_mb": 0})
    rec = _check_disk_full_run(cfg_on, base, runner, caplog)
    assert str(errno.ENOSPC) in rec.last_error or "No space" in rec.last_error


def test_min_free_space_stops_recording(tmp_path, lung_clips, runner):
    cfg = with_overrides(Config(), roi=LUNG_ROI[1], source={"spec": f"file:{lung_clips[1]}", "pace": False},
                         loop={"max_frames": 5},
                         record={"mode": "always", "dir": str(tmp_path), "min_free_mb": 1e12})
    rec = Recorder(cfg.record)
    spy = Spy()
    _run(cfg, runner, [spy, rec])
    assert rec.state == "stopped_disk_full" and "min_free_mb" in rec.last_error
    assert list_sessions(tmp_path) == [] and "RECORDING STOPPED: DISK FULL" in spy.notices


def test_unusable_record_dir_is_an_error_on_screen_not_a_stop(tmp_path, lung_clips, runner):
    (tmp_path / "afile").write_text("not a folder")
    cfg = with_overrides(Config(), roi=LUNG_ROI[1], source={"spec": f"file:{lung_clips[1]}", "pace": False},
                         loop={"max_frames": 30},
                         record={"mode": "always", "dir": str(tmp_path / "afile" / "rec")})
    rec = Recorder(cfg.record)
    spy = Spy()
    _, stats = _run(cfg, runner, [spy, rec])
    assert stats.frames == 30 and rec.state == "error" and rec.health()["last_error"]
    assert "RECORDING ERROR" in spy.notices


def test_slow_disk_drops_frames_and_the_overlay_never_waits(tmp_path, lung_clips, runner, monkeypatch):
    real_write = record.write_private

    def slow_write(path: Path, data: bytes) -> int:
        time.sleep(0.03)  # an SD card in trouble: ~15 frames/s at two files a frame
        return real_write(path, data)

    monkeypatch.setattr(record, "write_private", slow_write)
    base = with_overrides(Config(), roi=LUNG_ROI[0], source={"spec": f"file:{lung_clips[0]}", "fps": 60},
                          loop={"max_frames": 90})
    fps_off, _ = _fps_run(base, runner, [])
    cfg = with_overrides(base, record={"mode": "always", "dir": str(tmp_path), "queue_frames": 8})
    rec = Recorder(cfg.record)
    fps_on, _ = _fps_run(cfg, runner, [rec])
    h = rec.health()
    assert h["frames_dropped"] > 20 and h["frames_written"] + h["frames_dropped"] == 90
    assert fps_on >= 0.9 * fps_off, (fps_on, fps_off)
    assert h["offer_ms_mean"] < 0.5
    [(manifest, lines, _)] = _sessions(tmp_path)
    assert manifest["frames"] == len(lines) == h["frames_written"]
    assert manifest["frames_dropped"] == h["frames_dropped"]
    seqs = [x["seq"] for x in lines]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


# -- retention -------------------------------------------------------------------------------------------


def _fake_session(root: Path, name: str, nbytes: int) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "raw.bin").write_bytes(b"x" * nbytes)
    return d


def test_retention_deletes_the_oldest_sessions_first(tmp_path):
    from datetime import datetime, timezone

    now = datetime(2025, 3, 20, 12, 0, tzinfo=timezone.utc)
    names = ["20250301T080000.000Z", "20250310T080000.000Z", "20250315T080000.000Z", "20250319T080000.000Z",
             "20250320T115900.000Z"]
    for n in names:
        _fake_session(tmp_path, n, 1000)
    other = _fake_session(tmp_path, "not-a-session", 10_000)  # never touched
    # max age 12 days: the 1 March session goes; quota 2500 bytes: then 10 and 15 March go,
    # oldest first, even though the newest ("being written") is kept whatever its size.
    deleted = apply_retention(tmp_path, max_bytes=2500, max_age_s=12 * 86400, now=now, keep=[tmp_path / names[-1]])
    assert [d.name for d in deleted] == names[:3]
    assert [s.name for s in list_sessions(tmp_path)] == names[3:] and other.is_dir()
    # the kept session alone over quota: it stays, the other one goes
    deleted = apply_retention(tmp_path, max_bytes=500, max_age_s=1e9, now=now, keep=[tmp_path / names[-1]])
    assert [d.name for d in deleted] == [names[3]] and list_sessions(tmp_path) == [tmp_path / names[-1]]


def test_retention_counts_kept_sessions_and_extra_bytes_once(tmp_path):
    from datetime import datetime, timezone

    now = datetime(2025, 3, 20, 12, 0, tzinfo=timezone.utc)
    old = _fake_session(tmp_path, "20250319T080000.000Z", 1000)
    kept = _fake_session(tmp_path, "20250320T115900.000Z", 1000)
    # on disk 2000 bytes; extra_bytes comes on top of the kept session's measured size, once
    for extra, gone in ((0, []), (400, []), (500, []), (501, [old.name])):
        assert [d.name for d in apply_retention(tmp_path, max_bytes=2500, max_age_s=1e9, now=now, keep=[kept],
                                                extra_bytes=extra)] == gone, extra
    assert kept.is_dir()


def test_retention_forgets_sessions_deleted_by_hand(tmp_path):
    from datetime import datetime, timezone

    now = datetime(2025, 3, 20, 12, 0, tzinfo=timezone.utc)
    a = _fake_session(tmp_path, "20250318T080000.000Z", 1000)
    b = _fake_session(tmp_path, "20250319T080000.000Z", 1000)
    sizes: dict[str, int] = {}
    assert apply_retention(tmp_path, 5000, 1e9, now=now, sizes=sizes) == []
    assert sizes == {a.name: 1000, b.name: 1000}
    shutil.rmtree(a)  # an engineer frees space by hand
    assert apply_retention(tmp_path, 5000, 1e9, now=now, sizes=sizes) == []
    assert sizes == {b.name: 1000}  # what the recorder sums as "other sessions" is what is on disk


def test_recorder_applies_age_and_quota_at_start_and_while_recording(tmp_path, lung_clips, runner, caplog):
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    expired = _fake_session(tmp_path, record._session_name(now - timedelta(days=40)), 10)
    older = _fake_session(tmp_path, record._session_name(now - timedelta(days=2)), 800_000)
    newer = _fake_session(tmp_path, record._session_name(now - timedelta(days=1)), 800_000)
    # Quota 3 MB. At start only the expired session goes: 1.6 MB + the open session's 1 MiB reserve
    # fit. Once the new session holds 0.35 MB (~12 frames of ~30 kB), the older young one goes, the
    # newer one stays.
    cfg = with_overrides(Config(), roi=LUNG_ROI[0], source={"spec": f"file:{lung_clips[0]}", "pace": False},
                         loop={"max_frames": 20},
                         record={"mode": "always", "dir": str(tmp_path), "max_gb": 0.003, "max_days": 30,
                                 "queue_frames": 500})
    rec = Recorder(cfg.record)
    with caplog.at_level(logging.INFO, logger="edge.record"):
        _run(cfg, runner, [rec])
    msgs = [r.getMessage() for r in caplog.records]
    deleted = [m.split()[3] for m in msgs if m.startswith("retention: deleted session")]
    started = next(k for k, m in enumerate(msgs) if m.startswith("recording started"))
    first_delete = next(k for k, m in enumerate(msgs) if m.startswith("retention: deleted session"))
    assert first_delete < started and deleted == [expired.name, older.name], msgs
    assert "older than record.max_days" in msgs[first_delete]
    assert any(m.startswith(f"retention: deleted session {older.name} (over record.max_gb") for m in msgs)
    current = [s for s in list_sessions(tmp_path) if s != newer]
    assert newer.is_dir() and rec.frames_written == 20
    # the recording may have been split at a quarter of the quota; no frame lost
    got = [json.loads((c / record.MANIFEST_FILE).read_text()) for c in current]
    assert sum(m["frames"] for m in got) == 20
    assert all(m["trigger"]["reason"] == "continued" for m in got[1:])
    assert sum(record.dir_size(s) for s in list_sessions(tmp_path)) <= 3_000_000


def _probe_size(tmp_path: Path, cfg: Config, runner: ModelRunner) -> int:
    """Bytes of the session ``cfg`` records, measured by recording it once into a folder of its own."""
    probe = with_overrides(cfg, record={"dir": str(tmp_path / "probe"), "max_gb": 10})
    _run(probe, runner, [Recorder(probe.record)])
    [s] = list_sessions(tmp_path / "probe")
    return record.dir_size(s)


def test_the_open_session_is_counted_once(tmp_path, lung_clips, runner, monkeypatch):
    from datetime import datetime, timedelta, timezone

    cfg = with_overrides(Config(), roi=LUNG_ROI[0], source={"spec": f"file:{lung_clips[0]}", "pace": False},
                         loop={"max_frames": 60}, record={"mode": "always", "queue_frames": 500})
    size = _probe_size(tmp_path, cfg, runner)
    root = tmp_path / "rec"
    old = _fake_session(root, record._session_name(datetime.now(timezone.utc) - timedelta(days=1)), 1_000_000)
    # Everything fits: the old session, the new one and its reserve while it is open, with 10% to spare.
    # Counting the open session twice (once measured, once as "extra") would delete the old one.
    quota = 1_000_000 + size + record._RESERVE_BYTES + 0.1 * size
    monkeypatch.setattr(record, "_RETENTION_EVERY_S", 0.0)  # the every-minute pass after every frame
    cfg = with_overrides(cfg, record={"dir": str(root), "max_gb": quota / 1e9})
    rec = Recorder(cfg.record)
    _run(cfg, runner, [rec])
    assert old.is_dir(), rec.health()
    assert rec.frames_written == 60 and rec.state == "off"


def test_a_session_deleted_by_hand_frees_the_quota(tmp_path, lung_clips, runner):
    from datetime import datetime, timedelta, timezone

    old = _fake_session(tmp_path, record._session_name(datetime.now(timezone.utc) - timedelta(days=1)), 2_000_000)
    cfg = with_overrides(Config(), roi=LUNG_ROI[0], source={"spec": f"file:{lung_clips[0]}", "pace": False},
                         loop={"max_frames": 50},
                         record={"mode": "always", "dir": str(tmp_path), "max_gb": 0.003, "queue_frames": 500})

    class Admin(PipelineObserver):
        def on_frame(self, pipeline, event):
            if event.seq == 5:
                shutil.rmtree(old)  # the recorder knows its size from the start-up pass

    rec = Recorder(cfg.record)
    _run(cfg, runner, [Admin(), rec])
    got = _sessions(tmp_path)
    # 50 frames (~1.7 MB) in at most three sessions (split at a quarter of the 3 MB quota), not one
    # session a frame because the deleted 2 MB were still counted.
    assert 1 <= len(got) <= 3 and rec.sessions_started == len(got), [m["stop_reason"] for m, _, _ in got]
    assert [x["seq"] for _, lines, _ in got for x in lines] == list(range(50))


def test_the_quota_counts_the_videos(tmp_path, runner):
    # full_frame at 1280x720: full.mp4 is most of what is written. An old session must go once the
    # new one's PNGs, JSONL and videos no longer fit beside it: counting PNGs and JSONL alone would
    # keep it and overrun the quota.
    from datetime import datetime, timedelta, timezone

    cfg = with_overrides(Config(), source={"spec": "phantom", "pace": False, "width": 1280, "height": 720},
                         loop={"max_frames": 24},
                         record={"mode": "always", "full_frame": True, "queue_frames": 500})
    probe = with_overrides(cfg, record={"dir": str(tmp_path / "probe")})
    _run(probe, runner, [Recorder(probe.record)])
    [ps] = list_sessions(tmp_path / "probe")
    videos = sum(os.stat(ps / f).st_size for f in (record.ANNOTATED_FILE, record.FULL_FILE))
    others = record.dir_size(ps) - videos
    assert videos > 2 * 512 * 1024, (videos, others)  # FFmpeg writes in 256 KiB steps: enough of them to see
    root = tmp_path / "rec"
    old = _fake_session(root, record._session_name(datetime.now(timezone.utc) - timedelta(days=1)), 1_000_000)
    # room for the old session, the reserve, the PNGs and JSONL and half the videos: not for all of it
    quota = 1_000_000 + record._RESERVE_BYTES + others + videos / 2
    cfg = with_overrides(cfg, record={"dir": str(root), "max_gb": quota / 1e9, "max_session_s": 1e6})
    rec = Recorder(cfg.record)
    _run(cfg, runner, [rec])
    assert not old.exists() and rec.frames_written == 24
    assert sum(record.dir_size(s) for s in list_sessions(root)) <= quota


def test_a_long_session_is_split_so_the_quota_keeps_most_of_it(tmp_path, lung_clips, runner):
    # Quota 8 MB, 300 frames ~10 MB (raw PNGs, masks, annotated mp4): one session that grew to the quota
    # would stop the recording (or be deleted whole as soon as the next began). Split at a quarter of the
    # quota, only the oldest pieces go. The open session also holds the 1 MiB full-disk reserve, so the
    # finished ones may use about quota - reserve - one piece.
    n, quota = 300, 8e6
    cfg = with_overrides(Config(), roi=LUNG_ROI[0], source={"spec": f"file:{lung_clips[0]}", "pace": False},
                         loop={"max_frames": n},
                         record={"mode": "always", "dir": str(tmp_path), "max_gb": quota / 1e9, "queue_frames": 500})
    rec = Recorder(cfg.record)
    _run(cfg, runner, [rec])
    got = _sessions(tmp_path)
    assert rec.frames_written == n and rec.state == "off" and len(got) >= 3
    recorded = sum(record.dir_size(s) for s in list_sessions(tmp_path))
    seqs = [x["seq"] for _, lines, _ in got for x in lines]
    assert seqs == list(range(n - len(seqs), n))  # the newest frames, none missing
    assert len(seqs) >= n // 3, (len(seqs), recorded)  # a third of the 300 is still there (~half of the quota)
    for manifest, lines, sdir in got:
        assert manifest["frames"] == len(lines) and record.dir_size(sdir) <= 0.25 * quota + 300_000
        assert manifest["trigger"]["reason"] in ("always", "continued")
    assert recorded <= quota


# -- stop, drops, privacy, trigger edge cases --------------------------------------------------------


def _slow_writes(monkeypatch, seconds: float) -> None:
    real_write = record.write_private

    def slow_write(path: Path, data: bytes) -> int:
        time.sleep(seconds)  # an SD card in trouble
        return real_write(path, data)

    monkeypatch.setattr(record, "write_private", slow_write)


def test_stop_with_a_long_backlog_drops_it_and_closes_the_session(tmp_path, lung_clips, runner, monkeypatch):
    _slow_writes(monkeypatch, 0.05)  # ~10 frames/s
    monkeypatch.setattr(record, "_CLOSE_TIMEOUT_S", 0.5)  # stands in for a backlog longer than the real 10 s
    cfg = with_overrides(Config(), roi=LUNG_ROI[0], source={"spec": f"file:{lung_clips[0]}", "pace": False},
                         loop={"max_frames": 60}, record={"mode": "always", "dir": str(tmp_path), "queue_frames": 64})
    rec = Recorder(cfg.record)
    t0 = time.monotonic()
    _run(cfg, runner, [rec])
    assert not rec._thread.is_alive() and time.monotonic() - t0 < 30
    h = rec.health()
    [(manifest, lines, sdir)] = _sessions(tmp_path)
    assert manifest["stopped_utc"] is not None and "dropped" in manifest["stop_reason"]
    assert 0 < manifest["frames"] == len(lines) == h["frames_written"] < 60
    assert manifest["frames"] + manifest["frames_dropped"] == 60 == h["frames_written"] + h["frames_dropped"]
    assert manifest["videos_finalised"]["annotated"] is True
    assert count_video_frames(sdir / record.ANNOTATED_FILE) == manifest["annotated_frames"] == len(lines)
    assert [x["seq"] for x in lines] == list(range(len(lines)))  # the backlog's tail went, not random frames


def test_drops_count_in_the_session_that_lost_them(tmp_path, lung_clips, runner, monkeypatch):
    _slow_writes(monkeypatch, 0.02)
    cfg = with_overrides(Config(), roi=LUNG_ROI[0], source={"spec": f"file:{lung_clips[0]}", "pace": False},
                         loop={"max_frames": 120},
                         record={"mode": "always", "dir": str(tmp_path), "queue_frames": 4, "max_session_s": 0.15})
    rec = Recorder(cfg.record)
    _run(cfg, runner, [rec])
    got = _sessions(tmp_path)
    h = rec.health()
    assert len(got) >= 2 and h["frames_dropped"] > 10
    prev_last = -1
    for k, (manifest, lines, _) in enumerate(got):
        seqs = [x["seq"] for x in lines]
        # The loop numbers every frame (seq): what a session misses between its first frame and its
        # last, before its first when it continues the previous one, and, for the session open at
        # the stop, after its last, is what it dropped.
        first = prev_last + 1 if manifest["trigger"]["reason"] == "continued" else seqs[0]
        last = 119 if k == len(got) - 1 else seqs[-1]
        assert manifest["frames_dropped"] == last + 1 - first - len(seqs), manifest["session"]
        prev_last = seqs[-1]
    assert sum(m["frames_dropped"] for m, _, _ in got) == h["frames_dropped"] == 120 - h["frames_written"]


def test_recording_without_a_roi_is_refused_unless_whole_frames_are_wanted(tmp_path, lung_clips, runner, capsys):
    from edge.cli import EXIT_CONFIG, main

    clip = f"file:{lung_clips[0]}"
    for mode in ("always", "on-detection", "manual"):
        with pytest.raises(ConfigError) as e:
            parse_config({"source": {"spec": clip}, "record": {"mode": mode}})
        [problem] = e.value.problems
        assert problem.startswith(f"record.mode: got {mode!r}:")
        for hint in ("roi", "profile", "nerveseg calibrate", "record.full_frame: true"):
            assert hint in problem
    assert parse_config({"source": {"spec": clip}, "record": {"mode": "always"}, "roi": LUNG_ROI[0]})
    assert parse_config({"source": {"spec": clip}, "record": {"mode": "always", "full_frame": True}})
    assert parse_config({"source": {"spec": clip}})  # not recording
    assert parse_config({"record": {"mode": "always"}})  # the phantom knows its image area
    # The rule sees the effective config: a --source override on the command line counts.
    with pytest.raises(ConfigError) as e:
        with_overrides(parse_config({"record": {"mode": "always"}}), source={"spec": clip})
    assert e.value.problems[0].startswith("record.mode:")
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(f"record: {{mode: always, dir: '{tmp_path / 'rec'}'}}\n")
    assert main(["run", "--config", str(cfg_file), "--source", str(lung_clips[0]), "--frames", "3"]) == EXIT_CONFIG
    assert "record.mode" in capsys.readouterr().err and not (tmp_path / "rec").exists()

    # A loop built without a ROI in code (no config check): the recorder refuses, the loop runs on.
    cfg = with_overrides(Config(), source={"spec": clip, "pace": False}, loop={"max_frames": 5})
    rec = Recorder(with_overrides(Config(), record={"mode": "always", "dir": str(tmp_path / "rec")}).record)
    spy = Spy()
    _, stats = _run(cfg, runner, [spy, rec])
    assert stats.frames == 5 and rec.state == "error" and "roi" in rec.last_error
    assert "RECORDING ERROR" in spy.notices and not (tmp_path / "rec").exists()


def _mixed_folder(tmp_path: Path, kaggle_fullres: Path, data_dir: Path) -> Path:
    """10 frames of 580x420, 15 of 256x186 (the 500x400 ROI does not fit them), 10 of 580x420."""
    from edge.sources.images import list_images

    big = list_images(kaggle_fullres)
    small = list_images(data_dir / "kaggle-bp" / "img_256x186")
    folder = tmp_path / "mixed"
    folder.mkdir()
    for k in range(10):
        shutil.copy(big[k], folder / f"a{k:03d}.png")
        shutil.copy(big[10 + k], folder / f"c{k:03d}.png")
    for k in range(15):
        shutil.copy(small[k], folder / f"b{k:03d}.png")
    return folder


@pytest.mark.parametrize("mode", ["always", "manual"])
def test_a_stretch_the_loop_cannot_analyse_does_not_end_the_session(tmp_path, kaggle_fullres, data_dir, runner,
                                                                     mode):
    folder = _mixed_folder(tmp_path, kaggle_fullres, data_dir)
    cfg = with_overrides(Config(), roi={"x": 0, "y": 0, "w": 500, "h": 400},
                         source={"spec": f"images:{folder}", "fps": 50},
                         record={"mode": mode, "dir": str(tmp_path / "rec"), "post_roll_s": 0.1,
                                 "pre_roll_s": 0, "queue_frames": 500})
    rec = Recorder(cfg.record)
    spy = Spy(toggles_at=(0,) if mode == "manual" else (), recorder=rec)  # manual: on from the first frame
    pipe, _ = _run(cfg, runner, [spy, rec])
    assert pipe.counters.not_analysed_frames == 15  # 0.3 s of frames, longer than the post-roll
    [(manifest, lines, _)] = _sessions(tmp_path / "rec")
    assert manifest["frames"] == len(lines) == 20 and manifest["stop_reason"] == "loop ended"


def test_a_split_keeps_the_post_roll_deadline(tmp_path, lung_clips, runner):
    # Manual on at seq 10, off at 20; post-roll 0.3 s. At 100 fps the session is split (0.25 s)
    # during the post-roll: the continued session must end when the post-roll ends, not 0.3 s
    # after the split.
    cfg = with_overrides(
        Config(), roi=LUNG_ROI[1], source={"spec": f"file:{lung_clips[1]}", "fps": 100}, loop={"max_frames": 90},
        record={"mode": "manual", "dir": str(tmp_path), "pre_roll_s": 0, "post_roll_s": 0.3, "max_session_s": 0.25,
                "queue_frames": 500},
    )
    rec = Recorder(cfg.record)
    spy = Spy(toggles_at=(10, 20), recorder=rec)
    _run(cfg, runner, [spy, rec])
    t = {f["seq"]: f["t"] for f in spy.frames}
    expected = _expected_sessions(spy.frames, lambda f: 10 <= f["seq"] < 20, 0, 0.3)
    got = _sessions(tmp_path)
    merged: list[list[int]] = []
    for manifest, lines, _ in got:
        seqs = [x["seq"] for x in lines]
        if manifest["trigger"]["reason"] == "continued":
            merged[-1].extend(seqs)
        else:
            merged.append(seqs)
    assert len(got) >= 2 and got[0][0]["stop_reason"] == "record.max_session_s reached"
    assert t[got[0][1][-1]["seq"]] - t[20] < 0.3e9  # the split fell inside the post-roll
    assert merged == expected


def test_one_toggle_retries_after_a_full_disk_from_the_toggling_frame(tmp_path, lung_clips, runner):
    cfg = with_overrides(Config(), roi=LUNG_ROI[1], source={"spec": f"file:{lung_clips[1]}", "fps": 30},
                         loop={"max_frames": 50},
                         record={"mode": "manual", "dir": str(tmp_path), "pre_roll_s": 0, "post_roll_s": 0,
                                 "min_free_mb": 1e12})
    rec = Recorder(cfg.record)

    class Operator(PipelineObserver):
        """After the recorder: a toggle here arrives between frames, as SIGUSR1 does."""

        def on_frame(self, pipeline, event):
            if event.seq in (4, 19, 39):
                rec.request_toggle()  # applies from the next frame on
            if event.seq == 12:
                t_end = time.monotonic() + 10
                while rec.state != "stopped_disk_full" and time.monotonic() < t_end:
                    time.sleep(0.01)
                assert rec.state == "stopped_disk_full"
                rec._min_free = 0  # the operator frees space

    _run(cfg, runner, [rec, Operator()])
    [(manifest, lines, _)] = _sessions(tmp_path)
    assert [x["seq"] for x in lines] == list(range(20, 40))
    assert manifest["trigger"]["seq"] == 20


def test_mp4_frame_count_reads_the_index_of_finalised_files_only(tmp_path):
    path = tmp_path / "v.mp4"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 48))
    rng = np.random.default_rng(0)
    for k in range(40):
        w.write(rng.integers(0, 255, (48, 64, 3), np.uint8))
        if k == 30:
            cut = path.read_bytes()  # what a crash leaves: FFmpeg's data, no index yet
    w.release()
    assert record.mp4_frame_count(path) == count_video_frames(path) == 40
    (tmp_path / "cut.mp4").write_bytes(cut)
    assert record.mp4_frame_count(tmp_path / "cut.mp4") is None
    (tmp_path / "short.mp4").write_bytes(path.read_bytes()[:-100])  # index cut short
    assert record.mp4_frame_count(tmp_path / "short.mp4") is None
    assert record.mp4_frame_count(tmp_path / "none.mp4") is None
