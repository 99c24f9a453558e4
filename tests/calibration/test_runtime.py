"""The runtime side of a site profile: crop with its ROI, mirror as it says, warn when live frames stop matching."""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from edge.app import run_plan
from edge.config import Config, RoiConfig, with_overrides
from edge.observers import observers_for
from edge.pipeline import FrameEvent, Pipeline, PipelineObserver
from edge.plan import resolve_run
from edge.preprocess import normalise, resize
from edge.profile import ProfileWatcher, save_profile
from edge.types import Frame
from tests.calibration.test_profile import make_profile


class FakeLoop:
    """What the watcher uses of a pipeline: the notices it writes and the model's normalisation."""

    def __init__(self) -> None:
        self.notices: dict[str, str] = {}
        self.runner = SimpleNamespace(spec=SimpleNamespace(preprocess=SimpleNamespace(mean=0.0, std=1.0)))


def _inputs(scans: list[np.ndarray]) -> list[np.ndarray]:
    """Real frames as the network sees them: gray, 128x96, normalised to 0-1."""
    return [normalise(resize(s, 96, 128)) for s in scans]


def _event(i: int, t_s: float, size: tuple[int, int], x: np.ndarray) -> FrameEvent:
    image = np.zeros((size[1], size[0], 3), np.uint8)
    return FrameEvent(seq=i, frame=Frame(image, i, int(t_s * 1e9)), roi_raw=None, model_input=x, result=None,
                      decision=None, state="live")


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "edge.profile" and r.levelno == logging.WARNING]


def test_watcher_warns_on_frozen_black_and_resolution_and_clears(scans, caplog):
    caplog.set_level(logging.INFO, logger="edge.profile")
    profile = make_profile()
    size = (profile.source.width, profile.source.height)
    live = _inputs(scans["lung-a"])
    black = normalise(np.zeros((96, 128), np.uint8))
    loop = FakeLoop()
    w = ProfileWatcher(profile, static_after_s=5.0, black_after_s=1.0, log_every_s=60.0)
    t = 0.0
    i = 0

    def feed(x: np.ndarray, n: int, at_size: tuple[int, int] = size) -> None:
        nonlocal t, i
        for _ in range(n):
            w.on_frame(loop, _event(i, t, at_size, x if not callable(x) else x(i)))
            t += 0.1
            i += 1

    feed(lambda k: live[k % len(live)], 30)  # 3 s of live scanning at 10 fps
    assert loop.notices == {} and _warnings(caplog) == []

    feed(live[0], 45)  # frozen 4.5 s: not yet
    assert loop.notices == {}
    feed(live[0], 10)  # past 5 s
    assert "unchanged" in loop.notices["profile"] and "frozen" in loop.notices["profile"]
    assert len(_warnings(caplog)) == 1 and "site profile mismatch: ROI unchanged" in _warnings(caplog)[0]
    feed(lambda k: live[k % len(live)], 3)
    assert loop.notices == {}  # cleared as soon as the image changes again
    assert any("match again (frozen lasted" in r.getMessage() for r in caplog.records)

    feed(black, 5)  # black for 0.5 s: a mode switch, not yet
    assert loop.notices == {}
    feed(black, 10)
    assert "ROI is black" in loop.notices["profile"]
    assert "ROI is black" in _warnings(caplog)[-1]
    feed(lambda k: live[k % len(live)], 2)
    assert loop.notices == {}

    feed(live[1], 1, at_size=(1280, 720))
    assert loop.notices["profile"].startswith("input 1280x720, site profile 1920x1080")
    assert "input 1280x720" in _warnings(caplog)[-1]
    feed(lambda k: live[k % len(live)], 1)
    assert loop.notices == {}
    assert len(_warnings(caplog)) == 3  # one line per mismatch, not one per frame


def test_watcher_log_is_rate_limited(scans, caplog):
    caplog.set_level(logging.INFO, logger="edge.profile")
    profile = make_profile()
    size = (profile.source.width, profile.source.height)
    loop = FakeLoop()
    w = ProfileWatcher(profile, log_every_s=10.0)
    for i in range(250):  # 25 s at 1280x720
        w.on_frame(loop, _event(i, i * 0.1, (1280, 720), _inputs(scans["kaggle"][:1])[0]))
    warnings = _warnings(caplog)
    assert len(warnings) == 3  # at 0 s, 10 s and 20 s
    assert "mismatch for 10 s" in warnings[1] and "mismatch for 20 s" in warnings[2]
    assert "profile" in loop.notices
    w.on_frame(loop, _event(250, 25.0, size, _inputs(scans["kaggle"][:1])[0]))
    assert loop.notices == {}


class Probe(PipelineObserver):
    """Keeps what the loop did: its ROI and flips, each frame's notices and model input/mask."""

    def __init__(self) -> None:
        self.pipeline: Pipeline | None = None
        self.notices: list[dict[str, str]] = []
        self.messages: list[str | None] = []
        self.events: list[tuple[np.ndarray, np.ndarray]] = []

    def on_start(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def on_frame(self, pipeline: Pipeline, event: FrameEvent) -> None:
        self.notices.append(dict(pipeline.notices))
        self.messages.append(pipeline._message(None))  # the status line the overlay draws
        if event.result is not None:
            self.events.append((event.model_input.copy(), event.result.mask.copy()))


def _run(cfg: Config, frames: int = 8) -> Probe:
    probe = Probe()
    cfg = with_overrides(cfg, loop={"max_frames": frames})
    plan = resolve_run(cfg)
    run_plan(plan, threading.Event(), drop_frames=False, observers=[*observers_for(plan), probe])
    return probe


@pytest.fixture()
def clip_cfg(lung_clips, tmp_path):
    """A config on the real 234x234 lung clip (unpaced) and a profile file beside it."""

    def make(**profile_changes) -> Config:
        path = save_profile(make_profile(**profile_changes), tmp_path / "site.yaml")
        return with_overrides(Config(), source={"spec": f"file:{lung_clips[0]}", "pace": False}).model_copy(
            update={"profile": str(path)}
        )

    return make


def test_run_crops_with_the_profile_roi_and_watches(clip_cfg, lung_clips):
    from edge.preprocess import preprocess
    from edge.profile import ProfileSource
    from edge.types import Roi
    from tests.calibration.test_cli import read_video

    cfg = clip_cfg(source=ProfileSource(width=234, height=234), roi=RoiConfig(x=10, y=20, w=180, h=150), blank=[],
                   flip_horizontal=False)
    probe = _run(cfg)
    assert probe.pipeline.flips == (False, False)
    # What the network received: each frame of the clip cropped at the profile's ROI, nothing else.
    spec = probe.pipeline.runner.spec.preprocess
    frames = read_video(lung_clips[0])
    assert len(probe.events) == 8
    for (x, _), frame in zip(probe.events, frames, strict=False):
        np.testing.assert_array_equal(x, preprocess(frame, Roi(10, 20, 180, 150), spec))
        assert not np.array_equal(x, preprocess(frame, Roi(0, 0, 180, 150), spec))
    assert any(isinstance(o, ProfileWatcher) for o in probe.pipeline.observers)
    assert probe.notices and all(n == {} for n in probe.notices)


def test_run_warns_on_screen_when_the_resolution_differs(clip_cfg, caplog):
    caplog.set_level(logging.INFO, logger="edge.profile")
    cfg = clip_cfg(roi=RoiConfig(x=0, y=0, w=200, h=200), blank=[])  # profile says 1920x1080; the clip is 234x234
    probe = _run(cfg, frames=4)
    assert all("input 234x234, site profile 1920x1080" in n["profile"] for n in probe.notices)
    assert all("input 234x234, site profile 1920x1080" in (m or "") for m in probe.messages)
    assert "site profile mismatch: input 234x234" in caplog.text


def test_flips_mirror_the_network_input_and_mirror_the_mask_back(clip_cfg):
    from edge.profile import ProfileSource

    common = dict(source=ProfileSource(width=234, height=234), roi=RoiConfig(x=0, y=0, w=200, h=230), blank=[])
    plain = _run(clip_cfg(**common, flip_horizontal=False), frames=3)
    mirrored = _run(clip_cfg(**common, flip_horizontal=True, flip_vertical=True), frames=3)
    assert mirrored.pipeline.flips == (True, True)
    runner = mirrored.pipeline.runner
    for (x0, _), (x1, mask1) in zip(plain.events, mirrored.events, strict=True):
        np.testing.assert_array_equal(x1, x0[::-1, ::-1])  # what the network saw: mirrored both ways
        again = runner.infer(x1.copy()).mask
        np.testing.assert_allclose(mask1, again[::-1, ::-1])  # its mask, mirrored back to the screen


def test_calibration_frames_look_like_the_network_input(tmp_path, scans):
    """Representative frames are saved mirrored as the profile says, like the flipped network input."""
    from calibration.calibrate import write_frames
    from edge.types import Roi

    kept = [cv2.resize(s, (300, 200)) for s in scans["kaggle"][:3]]
    n = write_frames(kept, Roi(10, 20, 200, 150), [Roi(0, 0, 40, 40)], (True, False), tmp_path / "f")
    assert n == 3
    img = cv2.imread(str(tmp_path / "f" / "frame_0001.png"), cv2.IMREAD_GRAYSCALE)
    expected = kept[0][20:170, 10:210].copy()
    expected[:20, :30] = 0  # the blank rectangle's part inside the ROI
    np.testing.assert_array_equal(img, expected[:, ::-1])
