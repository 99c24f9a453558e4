"""`nerveseg review`: a real session recorded by the live loop from real frames, then played back,
exported and re-run with the shipped int8 model and its float32 twin."""

from __future__ import annotations

import csv
import json
import shutil
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

import edge.record as record
from edge.cli import EXIT_CONFIG, EXIT_DISAGREE, EXIT_OK, EXIT_SINK, main
from edge.config import Config, with_overrides
from edge.models import default_model_path
from edge.pipeline import Pipeline
from edge.record import Recorder, list_sessions
from edge.review import compare_session, export_session, load_session, resolve_session
from edge.runner import ModelRunner
from edge.sinks.null import NullSink
from edge.sources import open_source
from tests.media import count_video_frames

FLOAT_MODEL = default_model_path().with_name("nerveseg-float32.tflite")
FRAMES = 30


@pytest.fixture(scope="module")
def session_dir(tmp_path_factory, kaggle_fullres) -> Path:
    """One session of 30 real Kaggle frames, recorded in 'always' mode; several are called 'nerve'."""
    root = tmp_path_factory.mktemp("recordings")
    cfg = with_overrides(
        Config(), source={"spec": f"images:{kaggle_fullres}", "pace": False},
        presence={"enter": 0.7, "exit": 0.5, "min_frames_on": 1, "min_frames_off": 1},
        loop={"max_frames": FRAMES}, record={"mode": "always", "dir": str(root)},
    )
    runner = ModelRunner(default_model_path(), threads=2)
    with open_source(cfg.source) as src:
        Pipeline(cfg, src, runner, NullSink(), drop_frames=False, observers=[Recorder(cfg.record)]).run()
    [s] = list_sessions(root)
    return s



def test_export_opens_in_opencv_and_counts_match_the_manifest(session_dir, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["review", str(session_dir), "--export", str(out)]) == EXIT_OK
    assert f"{FRAMES} frames" in capsys.readouterr().out
    manifest = json.loads((session_dir / record.MANIFEST_FILE).read_text())
    assert manifest["frames"] == FRAMES

    clip = out / "clip.mp4"
    assert count_video_frames(clip) == manifest["frames"]
    cap = cv2.VideoCapture(str(clip))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == manifest["frames"]
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (580, 420)
    cap.release()
    assert count_video_frames(session_dir / record.ANNOTATED_FILE) == manifest["frames"]

    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[1] >= 6 * 240 and sheet.std() > 10

    rows = list(csv.DictReader((out / "detections.csv").open()))
    lines = [json.loads(x) for x in (session_dir / record.FRAMES_FILE).read_text().splitlines()]
    assert len(rows) == manifest["frames"]
    assert [int(r["seq"]) for r in rows] == [x["seq"] for x in lines]
    assert [r["decision"] for r in rows] == [x["decision"] for x in lines]
    assert 0 < sum(r["decision"] == "nerve" for r in rows) < FRAMES
    for p in (out, *out.iterdir()):
        assert stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600)


def test_review_draws_the_recorded_verdicts(session_dir):
    from edge.review import _Renderer

    s = load_session(session_dir)
    r = _Renderer(s)
    color = np.array(s.overlay_config().color, np.uint8)
    for rec in s.frames:
        img = r.frame(rec)
        raw = s.raw(rec)
        body = (slice(60, 380), slice(0, 580))  # below the status lines, above the footer
        outline = np.all(img[body] == color, axis=-1) & np.any(img[body] != raw[body], axis=-1)
        mask_on = (s.mask(rec) >= s.thresholds["mask"]).any()
        assert outline.any() == (rec["decision"] == "nerve" and mask_on), rec["i"]


def test_same_model_agrees_with_its_recording(session_dir, tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = main(["review", str(session_dir), "--model", str(default_model_path()), "--fail-on-disagree",
               "--export", str(out)])
    text = capsys.readouterr().out
    assert rc == EXIT_OK, text
    assert "disagreements         : 0" in text and f"reproduced bit-exactly: {FRAMES}/{FRAMES}" in text
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert len(rows) == FRAMES and all(r["disagree"] == "False" for r in rows)
    assert all(float(r["p_recorded"]) == pytest.approx(float(r["p_new"]), abs=1e-6) for r in rows)


def test_another_model_reports_where_it_disagrees(session_dir, tmp_path, capsys):
    s = load_session(session_dir)
    report = compare_session(s, ModelRunner(FLOAT_MODEL, threads=2), dice_threshold=0.999)
    assert report.frames == FRAMES and report.inputs_reproduced == FRAMES
    both = [r for r in report.rows if r["vote_recorded"] and r["vote_new"]]
    assert both, "the float twin should call some of these frames 'nerve' too"
    assert report.disagreements == sum(r["vote_recorded"] != r["vote_new"] for r in report.rows) + sum(
        r["dice"] < 0.999 for r in both)
    assert report.mean_dice_both_nerve > 0.8  # int8 and float32 draw nearly the same outline
    assert report.disagreements > 0  # ...but not pixel for pixel on every frame

    rc = main(["review", str(session_dir), "--model", str(FLOAT_MODEL), "--dice-threshold", "0.999",
               "--export", str(tmp_path / "x")])
    assert rc == EXIT_OK
    rc = main(["review", str(session_dir), "--model", str(FLOAT_MODEL), "--dice-threshold", "0.999",
               "--fail-on-disagree"])
    assert rc == EXIT_DISAGREE
    assert f"disagreements         : {report.disagreements}" in capsys.readouterr().out


def test_a_session_cut_off_by_a_crash_is_still_reviewable(session_dir, tmp_path):
    cut = tmp_path / session_dir.name
    shutil.copytree(session_dir, cut)
    m = json.loads((cut / record.MANIFEST_FILE).read_text())
    m.update(stopped_utc=None, frames=0)  # the state a crash leaves: the start manifest only
    (cut / record.MANIFEST_FILE).write_text(json.dumps(m))
    lines = (cut / record.FRAMES_FILE).read_text().splitlines()
    (cut / record.FRAMES_FILE).write_text("\n".join(lines[:10]) + "\n" + lines[10][: len(lines[10]) // 2])
    s = load_session(cut)
    assert not s.complete and len(s.frames) == 10
    ex = export_session(s, tmp_path / "out")
    assert ex.frames == 10 and count_video_frames(ex.clip) == 10


def test_recordings_folder_means_its_newest_session(session_dir):
    assert resolve_session(session_dir.parent) == session_dir


def test_bad_session_and_no_display_exit_codes(session_dir, tmp_path, capsys):
    assert main(["review", str(tmp_path / "nope")]) == EXIT_CONFIG
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["review", str(tmp_path / "empty")]) == EXIT_CONFIG
    from edge.sinks.window import _has_display, gui_backend

    if not gui_backend().upper().startswith("NONE") and _has_display():
        pytest.skip("this OpenCV has a GUI and a display: window playback would open")
    assert main(["review", str(session_dir)]) == EXIT_SINK
    err = capsys.readouterr().err
    assert "GUI" in err or "display" in err


def test_mirrored_site_profile_is_reproduced(tmp_path, kaggle_fullres):
    # A site whose probe is held the other way round: the loop mirrors the network input
    # (and the mask back); review must do the same to reproduce the recording.
    cfg = with_overrides(Config(), source={"spec": f"images:{kaggle_fullres}", "pace": False},
                         loop={"max_frames": 8}, record={"mode": "always", "dir": str(tmp_path)})
    runner = ModelRunner(default_model_path(), threads=2)
    with open_source(cfg.source) as src:
        Pipeline(cfg, src, runner, NullSink(), drop_frames=False, observers=[Recorder(cfg.record)],
                 flips=(True, False)).run()
    s = load_session(resolve_session(tmp_path))
    assert s.manifest["flips"] == [True, False]
    report = compare_session(s, runner)
    assert report.inputs_reproduced == 8 and report.disagreements == 0
    assert all(r["p_recorded"] == pytest.approx(r["p_new"], abs=1e-6) and r["dice"] == 1.0 for r in report.rows)
