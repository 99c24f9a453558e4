"""The recorder in the real live loop, with the real shipped model, real video and real files: what it writes.

The rules of when to record are tested alone in test_trigger.py and through the loop in
test_recorder_triggers.py; disk limits in test_storage.py; the writer's queue in test_writer.py.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from edge import __version__
from edge.config import Config, ConfigError, parse_config, with_overrides
from edge.control import RECORD_TOGGLE, CommandChannel
from edge.models import default_model_path
from edge.overlay import Overlay
from edge.preprocess import crop_roi, preprocess
from edge.recording.recorder import Recorder
from edge.recording.session import ANNOTATED_FILE, FULL_FILE, load_mask, load_raw, render_annotated
from edge.sources import open_source
from edge.spec import sha256_file
from edge.types import Roi
from tests.edge.recording.helpers import KAGGLE_ROI, LUNG_ROI, ShownSink, Spy, run_loop, sessions
from tests.media import count_video_frames


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
    assert obs[0].state == "off" and obs[0].health()["state"] == "off"


# -- always: every frame, bit-exact, private files ------------------------------------------------------


def test_always_records_every_frame_bit_exact_to_what_the_model_saw(tmp_path, lung_clips, runner):
    clip = lung_clips[0]  # 234x234
    roi = {"x": 10, "y": 20, "w": 200, "h": 180}
    cfg = with_overrides(Config(), source={"spec": f"file:{clip}", "pace": False}, roi=roi,
                         loop={"max_frames": 40}, record={"mode": "always", "dir": str(tmp_path / "rec")},
                         presence={"smoothing": 0.5})
    rec = Recorder(cfg.record)
    spy = Spy(keep_images=True)
    pipe, stats = run_loop(cfg, runner, [spy, rec])
    assert stats.frames == 40 and rec.frames_dropped == 0

    [(manifest, lines, sdir)] = sessions(tmp_path / "rec")
    assert manifest["frames"] == len(lines) == 40 == len(list((sdir / "raw").iterdir()))
    assert [x["seq"] for x in lines] == list(range(40))
    assert count_video_frames(sdir / ANNOTATED_FILE) == manifest["annotated_frames"] == 40
    assert not (sdir / FULL_FILE).exists()

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
        assert line["p_vote"] == pytest.approx(spy.frames[k]["p_vote"], abs=1e-6)  # the averaged P that decided
        mask = load_mask(sdir / line["mask"])
        assert mask.shape == runner.input_hw
    cap.release()

    assert any(abs(x["p_vote"] - x["p_nerve"]) > 1e-3 for x in lines)
    first = lines[0]
    assert first["model"] == manifest["model"]["id"] and first["decision"] in ("nerve", "no_nerve")
    assert {"roi_gray", "infer", "overlay", "sink"} <= set(first["stages_ms"])
    assert first["t_capture"].endswith("Z") and first["pre_roll"] is False
    assert manifest["model"]["sha256"] == sha256_file(default_model_path())
    assert manifest["software"]["nerveseg"] == __version__
    assert manifest["config"]["record"]["mode"] == "always" and manifest["profile"] is None
    assert manifest["started_utc"] and manifest["stopped_utc"] and manifest["stop_reason"] == "loop ended"
    assert manifest["roi"] == roi and manifest["frame_size"] == [234, 234]
    assert manifest["flips"] == [False, False] and manifest["source"] == pipe.source.describe()

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
    run_loop(cfg, runner, [spy, Recorder(cfg.record)])
    [(_, lines, sdir)] = sessions(tmp_path)
    from edge.sources.images import list_images

    files = list_images(kaggle_fullres)[:12]
    assert len(lines) == len(spy.frames) == 12  # every frame recorded: the loop below compares them all
    for k, line in enumerate(lines):
        raw = load_raw(sdir / line["raw"])
        np.testing.assert_array_equal(raw, cv2.imread(str(files[k]), cv2.IMREAD_COLOR))
        np.testing.assert_array_equal(preprocess(raw, None, runner.spec.preprocess), spy.frames[k]["input"])


def test_annotated_video_draws_what_the_monitor_showed(tmp_path, kaggle_fullres, runner):
    cfg = with_overrides(Config(), roi=KAGGLE_ROI, source={"spec": f"images:{kaggle_fullres}", "pace": False},
                         # each frame's own P decides (no averaging), so the state changes within 20 frames
                         presence={"enter": 0.7, "exit": 0.5, "min_frames_on": 1, "min_frames_off": 1,
                                   "smoothing": 1.0},
                         # unpaced on a busy box a frame may turn stale; its marker's age is not the event's
                         overlay={"stale_after_ms": 1e9},
                         loop={"max_frames": 20}, record={"mode": "always", "dir": str(tmp_path)})

    class Keep(Spy):
        def on_frame(self, pipeline, event):
            super().on_frame(pipeline, event)
            self.frames[-1].update(mask=event.decision.mask, state=event.state, lat=event.latency_ms)

    sink, spy = ShownSink(), Keep(keep_images=True)
    pipe, _ = run_loop(cfg, runner, [spy, Recorder(cfg.record)], sink=sink)
    [(_, lines, sdir)] = sessions(tmp_path)
    body = (slice(60, 380), slice(0, 580))  # between the status lines and the footer
    overlay = Overlay(cfg.overlay, None, pipe.overlay.mask_threshold)
    cap = cv2.VideoCapture(str(sdir / ANNOTATED_FILE))
    nerve_frames = 0
    for k, f in enumerate(spy.frames):
        # the writer's drawing code, on the recorded raw frame, gives the monitor's pixels exactly
        drawn = render_annotated(overlay, load_raw(sdir / lines[k]["raw"]), f["nerve"], f["p_vote"], f["mask"],
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
        run_loop(cfg, runner, [spy, Recorder(cfg.record, blank=[ui_box, across], profile_path=None)])
        [(manifest, lines, sdir)] = sessions(root)
        assert manifest["blank"] == [[0, 0, 470, 48], [across.x, across.y, 80, 50]]
        for k, line in enumerate(lines):
            raw = load_raw(sdir / line["raw"])
            assert raw.shape[:2] == (roi.h, roi.w)  # only the ROI, never the machine's UI
            want = spy.frames[k]["raw"].copy()
            want[30:80, 0:60] = 0  # `across` shifted into the ROI and clipped to it
            np.testing.assert_array_equal(raw, want)
        cap = cv2.VideoCapture(str(sdir / ANNOTATED_FILE))
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        assert size == (roi.w + roi.w % 2, roi.h + roi.h % 2)  # padded to even sizes: no row lost
        cap.release()
        written = {p.name for p in sdir.iterdir()}
        if not full:
            assert FULL_FILE not in written and manifest["full_frames"] is None
            continue
        assert count_video_frames(sdir / FULL_FILE) == manifest["full_frames"] == len(lines)
        cap = cv2.VideoCapture(str(sdir / FULL_FILE))
        ok, img = cap.read()
        cap.release()
        assert ok and img.shape == (720, 1280, 3)
        # blanked in the video too (lossy codec: near black, where the UI had text)
        assert img[4:44, 4:466].mean() < 4 and shown[4:44, 4:466].mean() > 20
        assert img[across.y + 4 : across.y + 46, across.x + 4 : across.x + 76].mean() < 4


# -- refusals and errors -----------------------------------------------------------------------------


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
    _, stats = run_loop(cfg, runner, [spy, rec])
    assert stats.frames == 5 and rec.state == "error" and "roi" in rec.last_error
    assert "RECORDING ERROR" in spy.notices and not (tmp_path / "rec").exists()


def test_unusable_record_dir_is_an_error_on_screen_not_a_stop(tmp_path, lung_clips, runner):
    (tmp_path / "afile").write_text("not a folder")
    cfg = with_overrides(Config(), roi=LUNG_ROI[1], source={"spec": f"file:{lung_clips[1]}", "pace": False},
                         loop={"max_frames": 30},
                         record={"mode": "always", "dir": str(tmp_path / "afile" / "rec")})
    rec = Recorder(cfg.record)
    spy = Spy()
    _, stats = run_loop(cfg, runner, [spy, rec])
    assert stats.frames == 30 and rec.state == "error" and rec.health()["last_error"]
    assert "RECORDING ERROR" in spy.notices


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
    spy = Spy(toggles_at=(0,) if mode == "manual" else ())  # manual: on from the first frame
    pipe, _ = run_loop(cfg, runner, [spy, rec])
    assert pipe.snapshot().not_analysed_frames == 15  # 0.3 s of frames, longer than the post-roll
    [(manifest, lines, _)] = sessions(tmp_path / "rec")
    assert manifest["frames"] == len(lines) == 20 and manifest["stop_reason"] == "loop ended"


# -- the command channel while no frame arrives ---------------------------------------------------------


def test_a_toggle_without_frames_reaches_the_writer_at_once(tmp_path, caplog):
    """No signal (no frames): a toggle typed now acts now (and says so in the log), not at the next frame.
    Driven without a loop: only the observer calls the recorder would get."""
    import logging

    cfg = with_overrides(Config(), record={"mode": "manual", "dir": str(tmp_path), "full_frame": True})
    rec = Recorder(cfg.record)
    commands = CommandChannel()
    commands.request(RECORD_TOGGLE)  # before the start: not for this recorder
    runner = SimpleNamespace(spec=SimpleNamespace(name="m", tflite_sha256=None, quantization="int8", untrained=False,
                                                  preprocess=SimpleNamespace(model_dump=lambda mode: {})),
                             sha256="ab" * 32, model_path=Path("m.tflite"), backend="test", threads=1)
    pipeline = SimpleNamespace(
        commands=commands, roi=None, flips=(False, False), cfg=cfg, runner=runner, notices={},
        plan=SimpleNamespace(rules=SimpleNamespace(enter=0.5, exit=0.4, mask_threshold=0.5)),
        source=SimpleNamespace(nominal_fps=None, describe=lambda: "none"),
    )
    def toggled() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("recorder: manual recording")]

    with caplog.at_level(logging.INFO, logger="edge.recording"):
        rec.on_start(pipeline)
        rec.on_idle(pipeline, no_signal=True)
        commands.request(RECORD_TOGGLE)
        rec.on_idle(pipeline, no_signal=True)
        t_end = time.monotonic() + 5
        while not toggled() and time.monotonic() < t_end:
            time.sleep(0.01)
        assert toggled() == ["recorder: manual recording on"]  # once: the toggle before the start was not taken
        rec.on_stop(pipeline, None)
    assert rec.state == "off" and not list(tmp_path.iterdir())  # nothing to record without frames
