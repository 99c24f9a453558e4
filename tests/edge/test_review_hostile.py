"""`nerveseg review` on sessions that are damaged, hostile or unreadable: a clear message and its own exit code,
never a traceback, never a file from outside the session, never unbounded memory.

A session comes from anywhere (a USB stick, an archive): its JSONL and its links are not trusted.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.cli import EXIT_CONFIG, EXIT_OK, EXIT_SESSION, main
from edge.config import Config, with_overrides
from edge.models import default_model_path
from edge.pipeline import Pipeline
from edge.plan import resolve_run
from edge.recording.recorder import Recorder
from edge.recording.session import FRAMES_FILE, MANIFEST_FILE, list_sessions
from edge.review import export_session, load_session, resolve_session
from edge.runner import ModelRunner
from edge.sinks.null import NullSink
from edge.sources import open_source
from tests.media import count_video_frames
from tests.unprivileged import need_root, run_as_nobody

REPO = Path(__file__).resolve().parents[2]
FRAMES = 8
KAGGLE_ROI = {"x": 0, "y": 0, "w": 580, "h": 420}  # the Kaggle frames are the ultrasound image alone

def _record(root: Path, frames_dir: Path, n: int, roi: dict) -> Path:
    cfg = with_overrides(Config(), roi=roi, source={"spec": f"images:{frames_dir}", "pace": False},
                         loop={"max_frames": n}, record={"mode": "always", "dir": str(root)})
    runner = ModelRunner(default_model_path(), threads=2)
    with open_source(cfg.source) as src:
        Pipeline(resolve_run(cfg, runner=runner), src, runner, NullSink(), drop_frames=False,
                 observers=[Recorder(cfg.record)]).run()
    [s] = list_sessions(root)
    return s


@pytest.fixture(scope="module")
def session_dir(tmp_path_factory, kaggle_fullres) -> Path:
    """A closed session of 8 real Kaggle frames."""
    return _record(tmp_path_factory.mktemp("recordings"), kaggle_fullres, FRAMES, KAGGLE_ROI)


@pytest.fixture()
def copy(session_dir, tmp_path) -> Path:
    """A copy of the session to damage."""
    d = tmp_path / session_dir.name
    shutil.copytree(session_dir, d)
    return d


def _lines(s: Path) -> list[str]:
    return (s / FRAMES_FILE).read_text().splitlines()


def _write_lines(s: Path, lines: list[str]) -> None:
    (s / FRAMES_FILE).write_text("\n".join(lines) + "\n")


def _review(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", "review", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=60, **kw)


# -- 2: one damaged line does not make the session unreviewable ----------------------------------------------


def test_damaged_lines_are_skipped_with_one_warning_and_counted(copy, tmp_path, capsys):
    lines = _lines(copy)
    lines[2] = lines[2][:40] + "#garbage"  # a flipped bit on a card: no longer JSON
    lines[4] = "[1, 2, 3]"  # JSON, of the wrong type
    rec = json.loads(lines[5])
    rec["i"], rec["p_nerve"] = "five", "high"  # an object with fields of the wrong type
    lines[5] = json.dumps(rec)
    rec = json.loads(lines[7])
    rec["t_capture_ns"] = 10**30  # would overflow the playback rate's arithmetic
    lines[7] = json.dumps(rec)
    _write_lines(copy, lines)
    out = tmp_path / "out"
    assert main(["review", str(copy), "--export", str(out)]) == EXIT_OK
    err = capsys.readouterr().err
    assert "4 damaged lines of frames.jsonl skipped" in err and "line 3 (not JSON)" in err, err
    assert "line 5 (a JSON list, not an object)" in err and "line 6 ('i' must be a 64-bit integer" in err
    assert "line 8 ('t_capture_ns' must be a 64-bit integer" in err
    assert "Traceback" not in err and "invalid config" not in err
    s = load_session(copy)
    assert [n for n, _ in s.bad_lines] == [3, 5, 6, 8] and len(s.frames) == FRAMES - 4
    assert count_video_frames(out / "clip.mp4") == FRAMES - 4
    rows = list(csv.DictReader((out / "detections.csv").open()))
    assert [int(r["i"]) for r in rows] == [0, 1, 3, 6]


def test_a_line_too_long_or_empty_is_damaged_too(copy):
    lines = _lines(copy)
    lines[1] = "x" * (1 << 20)  # 1 MiB of one line: bounded, skipped
    lines[3] = ""
    _write_lines(copy, lines)
    s = load_session(copy)
    assert [n for n, _ in s.bad_lines] == [2, 4] and "longer than" in s.bad_lines[0][1]
    assert [r["i"] for r in s.frames] == [0, 2, 4, 5, 6, 7]


# -- 13: nothing from outside the session ------------------------------------------------------------------


def test_links_and_paths_out_of_the_session_are_refused(copy, tmp_path, caplog):
    secret = tmp_path / "elsewhere" / "secret.png"
    secret.parent.mkdir()
    cv2.imwrite(str(secret), np.full((420, 580), 255, np.uint8))  # would show as a white frame
    (copy / "raw" / "000000.png").unlink()
    (copy / "raw" / "000000.png").symlink_to(secret)  # a link inside the session to a file outside
    recs = [json.loads(x) for x in _lines(copy)]
    recs[1]["raw"] = str(secret)  # an absolute path
    recs[2]["raw"] = os.path.relpath(secret, copy)  # ../ out of the session
    recs[3]["mask"] = "raw/../../elsewhere/secret.png"
    _write_lines(copy, [json.dumps(r) for r in recs])
    s = load_session(copy)
    for k in range(3):
        with pytest.raises(ValueError, match="refused"):
            s.raw(s.frames[k])
    with pytest.raises(ValueError, match="refused"):
        s.mask(s.frames[3])
    ex = export_session(s, tmp_path / "out")
    assert ex.skipped == [0, 1, 2, 3] and ex.frames == FRAMES - 4
    cap = cv2.VideoCapture(str(ex.clip))
    while (got := cap.read())[0]:
        assert got[1][60:380].mean() < 200  # ultrasound, never the outside white image
    cap.release()
    assert "4 recorded frames" in caplog.text and "refused" in caplog.text

    shutil.rmtree(copy / "masks")
    (copy / "masks").symlink_to(secret.parent, target_is_directory=True)  # a linked folder
    with pytest.raises(ValueError, match="link"):
        s.mask(s.frames[4])
    assert export_session(load_session(copy), tmp_path / "out2").frames == 0


def test_frames_jsonl_linked_to_dev_zero_is_refused_in_bounded_memory(copy, tmp_path):
    (copy / FRAMES_FILE).unlink()
    (copy / FRAMES_FILE).symlink_to("/dev/zero")

    def limit_memory():  # a review that reads /dev/zero would otherwise take the machine's memory
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    r = _review(str(copy), "--export", str(tmp_path / "out"), preexec_fn=limit_memory)
    assert r.returncode == EXIT_SESSION, r.stderr[-2000:]
    assert "frames.jsonl" in r.stderr and "link" in r.stderr and "Traceback" not in r.stderr


def test_a_device_a_pipe_or_a_huge_file_is_refused(copy, tmp_path):
    (copy / FRAMES_FILE).unlink()
    os.mkfifo(copy / FRAMES_FILE)  # would block a reader forever
    r = _review(str(copy), "--export", str(tmp_path / "out"))
    assert r.returncode == EXIT_SESSION and "not a regular file" in r.stderr, r.stderr[-2000:]
    os.unlink(copy / FRAMES_FILE)
    with open(copy / FRAMES_FILE, "wb") as f:
        f.truncate(300 << 20)  # sparse: costs no disk
    r = _review(str(copy), "--export", str(tmp_path / "out"))
    assert r.returncode == EXIT_SESSION and "larger than" in r.stderr, r.stderr[-2000:]


def test_a_png_that_declares_gigapixels_is_not_decoded(copy):
    png = (copy / "raw" / "000000.png").read_bytes()
    bomb = bytearray(png)
    bomb[16:24] = (100_000).to_bytes(4, "big") * 2  # IHDR width and height
    (copy / "raw" / "000000.png").write_bytes(bytes(bomb))
    s = load_session(copy)
    with pytest.raises(ValueError, match="more than any recorded frame"):
        s.raw(s.frames[0])


# -- 16: wrong types and unreadable inputs: their own exit codes ------------------------------------------


@pytest.mark.parametrize("change, named", [
    ({"model": "mini-unet"}, "'model' must be an object"),
    ({"fps": "fast"}, "'fps' must be a finite number"),
    ({"frames": [8]}, "'frames' must be a 64-bit integer"),
    ({"config": {"overlay": 3}}, "'config.overlay' must be an object"),
    ({"model": {"thresholds": {"mask": "half"}}}, "'model.thresholds.mask' must be a finite number"),
    ({"flips": [1]}, "'flips' must be [horizontal, vertical]"),
    ({"fps": -5}, "'fps' must be above 0"),
])
def test_a_manifest_of_wrong_types_is_a_session_fault(copy, capsys, change, named):
    m = json.loads((copy / MANIFEST_FILE).read_text())
    m.update(change)
    (copy / MANIFEST_FILE).write_text(json.dumps(m))
    assert main(["review", str(copy), "--export", str(copy.parent / "out")]) == EXIT_SESSION
    err = capsys.readouterr().err
    assert named in err and MANIFEST_FILE in err and "Traceback" not in err, err


@pytest.mark.parametrize("text", ["[1, 2]", "{\"format\": " + "[" * 5000 + "]" * 5000 + "}", "\xff\xfe"])
def test_a_manifest_that_is_no_object_is_a_session_fault(copy, capsys, text):
    (copy / MANIFEST_FILE).write_bytes(text.encode("latin-1"))
    assert main(["review", str(copy), "--export", str(copy.parent / "out")]) == EXIT_SESSION
    err = capsys.readouterr().err
    assert MANIFEST_FILE in err and "Traceback" not in err and len(err) < 2000, err


def test_an_export_folder_that_cannot_be_made_is_a_usage_fault(session_dir, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["review", str(session_dir), "--export", str(blocker / "out")]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "--export: cannot write into" in err and "Traceback" not in err, err


def test_unreadable_session_and_unwritable_export_as_the_service_user(session_dir, open_dir):
    need_root()  # CI runs as root, for whom permissions do not apply: 'nobody' in a child makes the faults real
    private = open_dir / "private"
    shutil.copytree(session_dir, private)  # 0700 like every session: not nobody's
    r = run_as_nobody(["review", str(private), "--export", str(open_dir / "out")], open_dir)
    assert r.returncode == EXIT_SESSION, r.stderr[-1000:]
    assert "Permission denied" in r.stderr and "Traceback" not in r.stderr
    private.chmod(0o755)  # the folder readable, its manifest (0600) not
    r = run_as_nobody(["review", str(private), "--export", str(open_dir / "out")], open_dir)
    assert r.returncode == EXIT_SESSION and "manifest.json" in r.stderr and "Traceback" not in r.stderr, r.stderr

    shared = open_dir / "shared"
    shutil.copytree(session_dir, shared)
    for p in (shared, *shared.rglob("*")):
        p.chmod(0o755 if p.is_dir() else 0o644)  # a session handed over, readable by all
    locked = open_dir / "locked"
    locked.mkdir(mode=0o755)  # root's: nobody may not write in it
    r = run_as_nobody(["review", str(shared), "--export", str(locked / "out")], open_dir)
    assert r.returncode == EXIT_CONFIG, r.stderr[-1000:]
    assert "--export: cannot write into" in r.stderr and "Permission denied" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_folder_named_in_the_future_is_not_the_newest_session(session_dir, tmp_path):
    root = tmp_path / "recordings"
    real = root / session_dir.name
    shutil.copytree(session_dir, real)
    bogus = root / "20991231T235959.000Z"  # a hand-made name, or a clock far ahead when it was recorded
    shutil.copytree(session_dir, bogus)
    m = json.loads((bogus / MANIFEST_FILE).read_text())
    m["started_utc"] = "2099-12-31T23:59:59.000Z"
    (bogus / MANIFEST_FILE).write_text(json.dumps(m))
    assert resolve_session(root) == real
