"""`nerveseg review`: a real session recorded by the live loop from real frames, then played back,
exported and re-run with the shipped int8 model and its float32 twin."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.cli import EXIT_DISAGREE, EXIT_OK, EXIT_SESSION, EXIT_SINK, main
from edge.config import Config, with_overrides
from edge.models import default_model_path
from edge.pipeline import Pipeline
from edge.plan import resolve_run
from edge.recording.recorder import Recorder
from edge.recording.session import ANNOTATED_FILE, FRAMES_FILE, MANIFEST_FILE, list_sessions
from edge.review import compare_session, export_session, load_session, resolve_session
from edge.runner import ModelRunner
from edge.sinks.null import NullSink
from edge.sources import open_source
from tests.media import count_video_frames

FLOAT_MODEL = default_model_path().with_name("nerveseg-float32.tflite")
FRAMES = 30
KAGGLE_ROI = {"x": 0, "y": 0, "w": 580, "h": 420}  # the Kaggle frames are the ultrasound image alone


@pytest.fixture(scope="module")
def session_dir(tmp_path_factory, kaggle_fullres) -> Path:
    """One session of 30 real Kaggle frames, recorded in 'always' mode; several are called 'nerve'."""
    root = tmp_path_factory.mktemp("recordings")
    cfg = with_overrides(
        Config(), roi=KAGGLE_ROI, source={"spec": f"images:{kaggle_fullres}", "pace": False},
        presence={"enter": 0.7, "exit": 0.5, "min_frames_on": 1, "min_frames_off": 1, "smoothing": 1.0},
        loop={"max_frames": FRAMES}, record={"mode": "always", "dir": str(root)},
    )
    runner = ModelRunner(default_model_path(), threads=2)
    with open_source(cfg.source) as src:
        Pipeline(resolve_run(cfg, runner=runner),
                 src, runner, NullSink(), drop_frames=False, observers=[Recorder(cfg.record)]).run()
    [s] = list_sessions(root)
    return s



def test_export_opens_in_opencv_and_counts_match_the_manifest(session_dir, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["review", str(session_dir), "--export", str(out)]) == EXIT_OK
    assert f"{FRAMES} frames" in capsys.readouterr().out
    manifest = json.loads((session_dir / MANIFEST_FILE).read_text())
    assert manifest["frames"] == FRAMES

    clip = out / "clip.mp4"
    assert count_video_frames(clip) == manifest["frames"]
    cap = cv2.VideoCapture(str(clip))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == manifest["frames"]
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (580, 420)
    cap.release()
    assert count_video_frames(session_dir / ANNOTATED_FILE) == manifest["frames"]

    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[1] >= 6 * 240 and sheet.std() > 10

    rows = list(csv.DictReader((out / "detections.csv").open()))
    lines = [json.loads(x) for x in (session_dir / FRAMES_FILE).read_text().splitlines()]
    assert len(rows) == manifest["frames"]
    assert [int(r["seq"]) for r in rows] == [x["seq"] for x in lines]
    assert [r["decision"] for r in rows] == [x["decision"] for x in lines]
    assert 0 < sum(r["decision"] == "nerve" for r in rows) < FRAMES
    for p in (out, *out.iterdir()):
        assert stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600)


def test_export_clip_is_the_recorded_frames_with_the_overlay_where_nerve(session_dir, tmp_path):
    from edge.overlay import Overlay, OverlayStatus
    from edge.types import Decision

    ex = export_session(load_session(session_dir), tmp_path / "x")
    manifest = json.loads((session_dir / MANIFEST_FILE).read_text())
    lines = [json.loads(x) for x in (session_dir / FRAMES_FILE).read_text().splitlines()]
    cfg = Config.model_validate(manifest["config"])
    overlay = Overlay(cfg.overlay, None, manifest["model"]["thresholds"]["mask"])
    body = (slice(60, 380), slice(0, 580))  # below the status lines, above the footer
    cap = cv2.VideoCapture(str(ex.clip))
    outlined = 0
    for line in lines:
        ok, got = cap.read()
        assert ok, line["i"]
        raw = cv2.imread(str(session_dir / line["raw"]), cv2.IMREAD_COLOR)  # the PNG as recorded
        nerve = line["decision"] == "nerve"
        mask = cv2.imread(str(session_dir / line["mask"]), cv2.IMREAD_UNCHANGED).astype(np.float32) / 255
        want = overlay.draw(raw.copy(), Decision(nerve, line["p_nerve"], mask if nerve else None),
                            OverlayStatus(state="live", fps=30.0, latency_ms=0.0))
        assert got[body].mean() > 20  # an ultrasound image, not black
        assert np.abs(got[body].astype(int) - want[body]).mean() < 4  # lossy codec: close, not equal
        drawn = np.any(want[body] != raw[body], axis=-1)  # outline and fill pixels
        if not nerve:
            assert not drawn.any(), line["i"]
            continue
        if drawn.any():
            outlined += 1
            g, w, r = (a[body][drawn].astype(int) for a in (got, want, raw))
            assert np.abs(g - w).mean() < np.abs(g - r).mean() / 2, line["i"]  # the outline is in the clip
    assert not cap.read()[0]
    cap.release()
    assert outlined > 0

    rows = list(csv.DictReader(ex.detections.open()))
    assert [float(r["p_nerve"]) for r in rows] == [x["p_nerve"] for x in lines]
    assert [float(r["p_vote"]) for r in rows] == [x["p_vote"] for x in lines]
    assert [r["clip_frame"] for r in rows] == [str(k) for k in range(FRAMES)]


def test_an_unreadable_frame_is_skipped_with_one_warning(session_dir, tmp_path, capsys):
    cut = tmp_path / session_dir.name
    shutil.copytree(session_dir, cut)
    (cut / "raw" / "000005.png").unlink()  # a crash or a full disk lost one image
    (cut / "masks" / "000011.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    assert main(["review", str(cut), "--export", str(out)]) == EXIT_OK
    err = capsys.readouterr().err
    assert "2 recorded frames" in err and "#5, #11" in err and "Traceback" not in err
    assert count_video_frames(out / "clip.mp4") == FRAMES - 2
    rows = list(csv.DictReader((out / "detections.csv").open()))
    assert len(rows) == FRAMES  # the verdicts are in the JSONL even where an image is lost
    assert rows[5]["clip_frame"] == rows[11]["clip_frame"] == "" and rows[6]["clip_frame"] == "5"
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4", "contact_sheet.png", "detections.csv"]
    ex = export_session(load_session(cut), tmp_path / "out2")
    assert ex.skipped == [5, 11] and ex.frames == FRAMES - 2
    report = compare_session(load_session(cut), ModelRunner(default_model_path(), threads=2))
    assert report.skipped == [5, 11] and report.frames == FRAMES - 2 and report.disagreements == 0


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
    from edge.preprocess import preprocess

    s = load_session(session_dir)
    float_runner = ModelRunner(FLOAT_MODEL, threads=2)
    report = compare_session(s, float_runner, dice_threshold=0.999)
    assert report.frames == FRAMES and report.inputs_reproduced == FRAMES
    # The same comparison computed here from the files: the raw PNG through the float model, the
    # recorded p_nerve and mask PNG, the recorded run's presence.enter (0.7) for both votes.
    manifest = json.loads((session_dir / MANIFEST_FILE).read_text())
    enter = manifest["config"]["presence"]["enter"]
    assert enter == 0.7 and manifest["model"]["thresholds"]["presence_enter"] == 0.7
    new_mask_thr = float_runner.spec.thresholds.mask
    expected_disagree = 0
    dices = []
    for line, row in zip(s.frames, report.rows, strict=True):
        raw = cv2.imread(str(session_dir / line["raw"]), cv2.IMREAD_COLOR)
        res = float_runner.infer(preprocess(raw, None, float_runner.spec.preprocess))
        rec_mask = cv2.imread(str(session_dir / line["mask"]), cv2.IMREAD_UNCHANGED) >= 128  # p >= 0.5
        new_mask = res.mask >= new_mask_thr
        vote_rec, vote_new = line["p_nerve"] >= enter, res.p_nerve >= enter
        total = int(rec_mask.sum()) + int(new_mask.sum())
        d = 1.0 if total == 0 else 2 * int((rec_mask & new_mask).sum()) / total
        assert (row["vote_recorded"], row["vote_new"]) == (vote_rec, vote_new), line["i"]
        assert row["p_new"] == pytest.approx(res.p_nerve, abs=1e-6)
        assert row["dice"] == pytest.approx(d, abs=1e-4), line["i"]
        disagree = vote_rec != vote_new or (vote_rec and vote_new and d < 0.999)
        assert row["disagree"] == disagree, line["i"]
        expected_disagree += disagree
        if vote_rec and vote_new:
            dices.append(d)
    assert dices, "the float twin should call some of these frames 'nerve' too"
    assert report.disagreements == expected_disagree > 0  # int8 and float32 differ on some pixels...
    assert report.mean_dice_both_nerve == pytest.approx(np.mean(dices), abs=1e-4) and np.mean(dices) > 0.8

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
    m = json.loads((cut / MANIFEST_FILE).read_text())
    m.update(stopped_utc=None, frames=0)  # the state a crash leaves: the start manifest only
    (cut / MANIFEST_FILE).write_text(json.dumps(m))
    lines = (cut / FRAMES_FILE).read_text().splitlines()
    (cut / FRAMES_FILE).write_text("\n".join(lines[:10]) + "\n" + lines[10][: len(lines[10]) // 2])
    s = load_session(cut)
    assert not s.complete and len(s.frames) == 10
    ex = export_session(s, tmp_path / "out")
    assert ex.frames == 10 and count_video_frames(ex.clip) == 10


def test_recordings_folder_means_its_newest_session(session_dir):
    assert resolve_session(session_dir.parent) == session_dir


def test_bad_session_and_no_display_exit_codes(session_dir, tmp_path, capsys):
    assert main(["review", str(tmp_path / "nope")]) == EXIT_SESSION
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["review", str(tmp_path / "empty")]) == EXIT_SESSION
    from edge.sinks.window import _has_display, gui_backend

    if not gui_backend().upper().startswith("NONE") and _has_display():
        pytest.skip("this OpenCV has a GUI and a display: window playback would open")
    assert main(["review", str(session_dir)]) == EXIT_SINK
    err = capsys.readouterr().err
    assert "GUI" in err or "display" in err


def test_mirrored_site_profile_is_reproduced(tmp_path, kaggle_fullres):
    # A site whose probe is held the other way round: the loop mirrors the network input
    # (and the mask back); review must do the same to reproduce the recording.
    cfg = with_overrides(Config(), roi=KAGGLE_ROI, source={"spec": f"images:{kaggle_fullres}", "pace": False},
                         loop={"max_frames": 8}, record={"mode": "always", "dir": str(tmp_path)})
    runner = ModelRunner(default_model_path(), threads=2)
    with open_source(cfg.source) as src:
        plan = dataclasses.replace(resolve_run(cfg, runner=runner), flips=(True, False))  # as a site profile says
        Pipeline(plan, src, runner, NullSink(), drop_frames=False, observers=[Recorder(cfg.record)]).run()
    s = load_session(resolve_session(tmp_path))
    assert s.manifest["flips"] == [True, False]
    report = compare_session(s, runner)
    assert report.inputs_reproduced == 8 and report.disagreements == 0
    assert all(r["p_recorded"] == pytest.approx(r["p_new"], abs=1e-6) and r["dice"] == 1.0 for r in report.rows)
