"""The live loop with real sources, the real shipped model and real sinks.

The only stand-ins are sinks that play a slow or recording display (a
hardware edge) and a source that fails on purpose.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edge.config import Config, SinkConfig, SourceConfig, with_overrides
from edge.errors import SourceExhausted
from edge.models import default_model_path
from edge.pipeline import STAGES, LatestSlot, Pipeline
from edge.plan import resolve_run
from edge.runner import ModelRunner
from edge.sinks import open_sink
from edge.sinks.base import SinkBase
from edge.sources import open_source
from edge.sources.base import SourceBase
from edge.types import Frame


class RecordingSink(SinkBase):
    """A display that keeps copies of what it was shown and can be slow (like a real one at 1080p)."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.shown: list[np.ndarray] = []
        self.t_shown: list[float] = []

    def show(self, image: np.ndarray) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        self.shown.append(image.copy())
        self.t_shown.append(time.monotonic())

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "recording"


@pytest.fixture(scope="module")
def runner() -> ModelRunner:
    return ModelRunner(default_model_path(), threads=2)


def _frame(seq: int) -> Frame:
    return Frame(np.zeros((2, 2, 3), np.uint8), seq, time.monotonic_ns())


def test_latest_slot_keeps_newest_and_counts_drops():
    slot = LatestSlot()
    for i in range(5):
        slot.put(_frame(i))
    f = slot.get(0.01)
    assert f.seq == 4 and slot.dropped == 4 and slot.put_count == 5
    assert slot.get(0.01) is None


def test_slot_close_delivers_last_frame_then_none():
    slot = LatestSlot()
    slot.put(_frame(7))
    slot.close()
    assert slot.get(0.01).seq == 7
    t0 = time.monotonic()
    assert slot.get(5.0) is None and time.monotonic() - t0 < 0.5  # closed: no waiting


def test_lossless_slot_waits_for_consumer():
    stop = threading.Event()
    slot = LatestSlot(lossless=True, stop=stop)
    slot.put(_frame(0))
    done = threading.Event()

    def producer():
        slot.put(_frame(1))
        done.set()

    th = threading.Thread(target=producer)
    th.start()
    assert not done.wait(0.3)  # blocked: frame 0 not yet taken
    assert slot.get(0.1).seq == 0
    assert done.wait(1.0)
    assert slot.get(0.1).seq == 1 and slot.dropped == 0
    th.join()


def test_lung_clip_end_to_end_every_frame(lung_clips, runner):
    clip = lung_clips[-1]  # 208x208, 187 frames
    cfg = Config(source=SourceConfig(spec=f"file:{clip}", pace=False))
    sink = RecordingSink()
    with open_source(cfg.source) as src:
        stats = Pipeline(resolve_run(cfg, runner=runner), src, runner, sink, drop_frames=False).run()
    assert stats.frames == stats.captured == len(sink.shown) == 187
    assert stats.dropped == 0

    assert set(STAGES) - {"denoise"} <= set(stats.stages)
    assert stats.latency is not None and stats.fps > 0
    # the overlay was drawn on the frames (at least the permanent mark changes pixels)
    assert sink.shown[0].shape == (208, 208, 3)


def test_lossless_run_stopped_early_drops_nothing(lung_clips, runner):
    cfg = Config(source=SourceConfig(spec=f"file:{lung_clips[-1]}", pace=False))
    with open_source(cfg.source) as src:
        stats = Pipeline(resolve_run(cfg, runner=runner),
                         src, runner, RecordingSink(), drop_frames=False).run(max_frames=20)
    assert stats.frames == 20 and stats.dropped == 0


def test_overload_latency_stays_bounded_and_drops_are_counted(runner):
    # Source much faster than the pipeline: an unpaced phantom at 1280x720 against a display
    # that takes 25 ms a frame. Latest-wins must keep capture->display latency near one
    # processing period instead of letting it grow.
    cfg = Config(source=SourceConfig(spec="phantom", pace=False, width=1280, height=720))
    sink = RecordingSink(delay_s=0.025)
    with open_source(cfg.source) as src:
        w = _Watcher()
        stats = Pipeline(resolve_run(cfg, runner=runner), src, runner, sink, observers=[w]).run(max_frames=40)
    assert stats.frames == 40
    assert stats.dropped > 0
    assert stats.captured >= stats.frames + stats.dropped
    period_ms = stats.stages["total"].p99
    lat = np.array([e.latency_ms for e in w.events])
    # Latency of the last frames is no larger than of the first: it does not grow.
    assert lat[-10:].mean() < lat[:10].mean() + period_ms
    # One frame waiting in the slot at most, then its own processing.
    assert stats.latency.p99 < 2 * period_ms + 30


def test_stale_results_are_marked(runner):
    cfg = with_overrides(Config(), source={"spec": "phantom", "pace": False}, overlay={"stale_after_ms": 0.001})
    with open_source(cfg.source) as src:
        pipe = Pipeline(resolve_run(cfg, runner=runner), src, runner, RecordingSink())
        pipe.run(max_frames=5)
    assert pipe.snapshot().stale_frames == 5


def test_clean_stop_within_a_second(runner):
    cfg = Config(source=SourceConfig(spec="phantom", fps=30))
    stop = threading.Event()
    with open_source(cfg.source) as src:
        pipe = Pipeline(resolve_run(cfg, runner=runner), src, runner, RecordingSink(), stop=stop)
        th = threading.Thread(target=pipe.run)
        th.start()
        time.sleep(0.7)
        assert pipe.snapshot().frames > 3
        t0 = time.monotonic()
        stop.set()
        th.join(timeout=2.0)
        assert not th.is_alive()
        assert time.monotonic() - t0 < 1.0
        assert not [t for t in threading.enumerate() if t.name == "nerveseg-capture" and t.is_alive()]
        assert pipe.snapshot().state == "stopped"


def test_no_signal_screen_when_the_capture_card_is_gone(runner):
    # A real V4L2 source on a device that does not exist: it retries forever and
    # never delivers; the monitor must say NO SIGNAL instead of freezing.
    cfg = with_overrides(
        Config(), source={"spec": "v4l2:/dev/video-nerveseg-test-absent"}, overlay={"no_signal_after_s": 0.2}
    )
    stop = threading.Event()
    sink = RecordingSink()
    with open_source(cfg.source) as src:
        pipe = Pipeline(resolve_run(cfg, runner=runner), src, runner, sink, stop=stop)
        th = threading.Thread(target=pipe.run)
        th.start()
        time.sleep(1.0)
        stop.set()
        th.join(timeout=2.0)
    assert not th.is_alive()
    assert len(sink.shown) >= 1
    expected = pipe.overlay.no_signal(420, 580, "capture device not connected: retrying")
    np.testing.assert_array_equal(sink.shown[0], expected)
    assert not np.array_equal(expected, pipe.overlay.no_signal(420, 580))
    assert pipe.snapshot().frames == 0


class _FailingSource(SourceBase):
    def __init__(self, good: int):
        super().__init__()
        self.good = good
        self.n = 0

    def read(self, timeout: float = 0.5):
        self.n += 1
        if self.n > self.good:
            raise RuntimeError("driver exploded")
        return Frame(np.full((120, 160, 3), 80, np.uint8), self.n, time.monotonic_ns())

    def close(self):
        pass

    def describe(self):
        return "failing"


def test_capture_thread_error_reaches_the_caller(runner):
    with pytest.raises(RuntimeError, match="driver exploded"):
        Pipeline(resolve_run(Config(),
                 runner=runner), _FailingSource(3), runner, RecordingSink(), drop_frames=False).run()


def test_phantom_ui_image_roi_is_used(runner):
    cfg = Config(source=SourceConfig(spec="phantom", pace=False, width=1280, height=720))
    with open_source(cfg.source) as src:
        pipe = Pipeline(resolve_run(cfg, runner=runner), src, runner, RecordingSink())
        assert pipe.roi == src.image_roi and pipe.roi.w < 1280
        assert pipe.run(max_frames=3).frames == 3


def test_frame_limit_counts_frames_shown_without_analysis(runner):
    # `nerveseg run --frames N` must end even when no frame can be analysed (ROI does not fit).
    cfg = with_overrides(Config(), source={"spec": "phantom", "pace": False}, roi={"x": 0, "y": 0, "w": 4000, "h": 10})
    sink = RecordingSink()
    with open_source(cfg.source) as src:
        stats = Pipeline(resolve_run(cfg, runner=runner), src, runner, sink, drop_frames=False).run(max_frames=7)
    assert stats.frames == 0 and len(sink.shown) == 7


def test_configured_roi_that_does_not_fit_shows_picture_without_analysis(runner):
    cfg = with_overrides(Config(), source={"spec": "phantom", "pace": False}, roi={"x": 0, "y": 0, "w": 4000, "h": 10})
    sink = RecordingSink()
    with open_source(cfg.source) as src:
        pipe = Pipeline(resolve_run(cfg, runner=runner), src, runner, sink)
        # no analysed frames ever reach max_frames, so stop by time
        th = threading.Thread(target=pipe.run)
        th.start()
        time.sleep(0.5)
        pipe.stop.set()
        th.join(2.0)
    assert len(sink.shown) > 0 and pipe.snapshot().frames == 0
    # The picture is shown marked NOT ANALYSED, never with a "No nerve found" verdict.
    from edge.overlay import OverlayStatus
    from edge.types import Decision

    with open_source(cfg.source) as src:
        raw = src.read(1.0).image
    as_not_analysed = pipe.overlay.draw(
        raw.copy(), Decision(False, 0.0, None), OverlayStatus("not_analysed", 0.0, 0.0, True, "m", "x")
    )
    as_no_nerve = pipe.overlay.draw(raw.copy(), Decision(False, 0.0, None), OverlayStatus("live", 0.0, 0.0, True, "m"))
    top = slice(0, 40)
    assert not np.array_equal(as_not_analysed[top], as_no_nerve[top])


def test_finite_source_ends_the_run(data_dir, runner):
    folder = data_dir / "kaggle-bp" / "fullres" / "images"
    cfg = Config(source=SourceConfig(spec=f"images:{folder}", pace=False))
    with open_source(cfg.source) as src:
        w = _Watcher()
        stats = Pipeline(resolve_run(cfg, runner=runner), src, runner, RecordingSink(), drop_frames=False,
                         observers=[w]).run()
    assert stats.frames == 55 and [e.frame.seq for e in w.events] == list(range(55))


def test_sink_from_config_receives_frames(tmp_path, lung_clips, runner):
    out = tmp_path / "o.mp4"
    cfg = Config(source=SourceConfig(spec=f"file:{lung_clips[-1]}", pace=False), sink=SinkConfig(spec=f"video:{out}"))
    with open_source(cfg.source) as src, open_sink(cfg.sink, fps_hint=src.nominal_fps) as sink:
        Pipeline(resolve_run(cfg, runner=runner), src, runner, sink, drop_frames=False).run(max_frames=10)
    assert out.stat().st_size > 0


def test_source_exhausted_is_not_an_error():
    class Empty(SourceBase):
        def read(self, timeout=0.5):
            raise SourceExhausted

        def close(self):
            pass

        def describe(self):
            return "empty"

    r = ModelRunner(default_model_path(), threads=1)
    stats = Pipeline(resolve_run(Config(), runner=r), Empty(), r, RecordingSink()).run()
    assert stats.frames == 0


@pytest.mark.parametrize("filter_at", ["input", "roi"])
def test_the_loop_feeds_the_network_what_training_preprocessing_makes(tmp_path, kaggle_fullres, filter_at):
    # The bedside promise: the live loop's model input is edge.preprocess.preprocess's output, bit for bit,
    # wherever the spec puts the speckle filter, and every stage is timed on the way.
    import shutil

    import cv2

    from edge.preprocess import preprocess
    from edge.spec import load_spec, save_spec

    model = tmp_path / "m.tflite"
    shutil.copy(default_model_path(), model)
    spec = load_spec(default_model_path())
    save_spec(spec.model_copy(update={"preprocess": spec.preprocess.model_copy(update={"filter_at": filter_at})}),
              model)
    runner = ModelRunner(model, threads=1)
    img = cv2.imread(str(kaggle_fullres / "1_1.png"), cv2.IMREAD_COLOR)
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "000.png"), img)
    cfg = with_overrides(Config(), roi={"x": 30, "y": 20, "w": 500, "h": 380})
    seen = _Watcher()
    with open_source(SourceConfig(spec=f"images:{folder}")) as src:
        Pipeline(resolve_run(cfg, runner=runner),
                 src, runner, RecordingSink(), drop_frames=False, observers=[seen]).run()
    (event,) = seen.events
    np.testing.assert_array_equal(event.model_input, preprocess(img, cfg.roi.to_roi(), runner.spec.preprocess))
    assert {"roi_gray", "denoise", "resize", "normalise", "infer", "smooth"} <= set(event.stages_ms)


class _Watcher:
    """An observer that keeps what it was given; optionally fails on every frame."""

    def __init__(self, needs_raw: bool = False, fail: bool = False):
        self.needs_raw = needs_raw
        self.fail = fail
        self.calls: list[str] = []
        self.events = []

    def on_start(self, pipe):
        self.calls.append("start")

    def on_frame(self, pipe, event):
        self.calls.append("frame")
        if self.fail:
            raise OSError("disk on fire")
        self.events.append(event)

    def on_idle(self, pipe, no_signal):
        self.calls.append("idle")

    def on_stop(self, pipe, stats):
        self.calls.append("stop")
        self.stats = stats


def test_observers_see_every_frame_with_the_raw_roi_and_timings(lung_clips, runner):
    # The raw ROI must be the frame as captured, before the overlay drew on it.
    import cv2

    clip = lung_clips[-1]
    cap = cv2.VideoCapture(str(clip))
    originals = []
    while len(originals) < 12:
        ok, img = cap.read()
        assert ok
        originals.append(img)
    cap.release()
    cfg = with_overrides(Config(source=SourceConfig(spec=f"file:{clip}", pace=False)),
                         roi={"x": 10, "y": 20, "w": 150, "h": 120})
    w = _Watcher(needs_raw=True)
    sink = RecordingSink()
    with open_source(cfg.source) as src:
        stats = Pipeline(resolve_run(cfg, runner=runner),
                         src, runner, sink, drop_frames=False, observers=[w]).run(max_frames=12)
    assert w.calls[0] == "start" and w.calls[-1] == "stop" and w.calls.count("frame") == 12
    assert w.stats is stats
    assert [e.seq for e in w.events] == list(range(12))
    for e, orig, shown in zip(w.events, originals, sink.shown, strict=True):
        np.testing.assert_array_equal(e.roi_raw, orig[20:140, 10:160])
        assert not np.shares_memory(e.roi_raw, e.frame.image)
        np.testing.assert_array_equal(e.frame.image, shown)  # the annotated picture as displayed
        assert e.state == "live" and e.result is not None and e.decision is not None
        assert set(e.stages_ms) == set(STAGES) and all(v >= 0 for v in e.stages_ms.values())
        assert e.latency_ms > 0 and e.model_input.shape == (runner.spec.preprocess.height, runner.spec.preprocess.width)


def test_failing_observer_never_stops_the_overlay(lung_clips, runner):
    cfg = Config(source=SourceConfig(spec=f"file:{lung_clips[-1]}", pace=False))
    bad, good = _Watcher(fail=True), _Watcher()
    with open_source(cfg.source) as src:
        pipe = Pipeline(resolve_run(cfg, runner=runner),
                        src, runner, RecordingSink(), drop_frames=False, observers=[bad, good])
        stats = pipe.run(max_frames=20)
    assert stats.frames == 20 and len(good.events) == 20 and bad.calls.count("frame") == 20
    assert "disk on fire" in pipe.last_error and pipe.state == "stopped"
    assert bad.events == [] and good.events[0].roi_raw is None  # nobody asked for the raw copy


def test_observer_notice_is_drawn_on_screen(lung_clips, runner):
    class Notifier(_Watcher):
        def on_frame(self, pipe, event):
            pipe.notices["rec"] = "RECORDING OFF: DISK FULL"

    cfg = with_overrides(Config(source=SourceConfig(spec=f"file:{lung_clips[-1]}", pace=False)),
                         overlay={"show_stats": False})  # fps/latency text differs run to run
    plain, noted = RecordingSink(), RecordingSink()
    for sink, obs in ((plain, []), (noted, [Notifier()])):
        with open_source(cfg.source) as src:
            Pipeline(resolve_run(cfg, runner=runner),
                     src, runner, sink, drop_frames=False, observers=obs).run(max_frames=3)
    np.testing.assert_array_equal(plain.shown[0], noted.shown[0])  # set after frame 0 was drawn
    assert not np.array_equal(plain.shown[2], noted.shown[2])


def test_observers_get_idle_calls_while_no_frame_arrives(runner):
    class Silent(SourceBase):
        def read(self, timeout=0.5):
            time.sleep(timeout)
            return None

        def close(self):
            pass

        def describe(self):
            return "silent"

    cfg = with_overrides(Config(), overlay={"no_signal_after_s": 0.2})
    w = _Watcher()
    stop = threading.Event()
    threading.Timer(0.6, stop.set).start()
    pipe = Pipeline(resolve_run(cfg, runner=runner), Silent(), runner, RecordingSink(), stop=stop, observers=[w])
    pipe.run()
    assert w.calls.count("idle") >= 3 and w.calls[-1] == "stop"
