"""`nerveseg calibrate` end to end on video files: real frames pasted into a machine screen, MJPG like a dongle."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edge.cli import EXIT_CONFIG, EXIT_OK, EXIT_SOURCE, main
from edge.models import default_model_path
from edge.profile import load_profile
from edge.spec import load_spec
from tests.calibration.synth import layouts, render_sequence
from tests.calibration.test_detect import TOLERANCE, side_errors


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    """Frames as an MJPG AVI (what a USB HDMI dongle delivers); fails the test if OpenCV cannot write it."""
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert vw.isOpened(), f"cannot write {path}"
    for f in frames:
        vw.write(f)
    vw.release()
    return path


@pytest.fixture(scope="module")
def screen_video(tmp_path_factory, scans):
    """720p light machine screen with a logo over the image, 12 changing lung frames; (video, layout)."""
    lay = layouts()[2]
    frames = render_sequence(lay, scans["lung-a"])
    return write_video(tmp_path_factory.mktemp("cal") / "screen.avi", frames), lay


def test_calibrate_writes_profile_frames_and_preview(screen_video, tmp_path, data_dir, capsys):
    video, lay = screen_video
    out = tmp_path / "site.yaml"
    rc = main(["calibrate", "--source", str(video), "--frames", "12", "--out", str(out), "--mm-per-pixel", "0.08"])
    stdout = capsys.readouterr().out
    assert rc == EXIT_OK, stdout
    assert f"OK: {out}" in stdout

    profile = load_profile(out)
    assert (profile.source.width, profile.source.height) == lay.size
    assert max(side_errors(profile.image_roi, lay.truth, lay.size)) <= TOLERANCE
    assert profile.mm_per_pixel == 0.08 and profile.flips == (False, False)
    assert profile.detection.method == "auto" and profile.detection.frames == 12
    assert "screen.avi" in profile.source.description
    p = lay.patient
    assert any(b.x <= p.x + p.w // 2 < b.x + b.w and b.y <= p.y + p.h // 2 < b.y + b.h for b in profile.blank_rois)
    assert yaml.safe_load(out.read_text())["created"].endswith("Z")

    preview = cv2.imread(str(out.with_name("site-preview.png")))
    assert preview is not None and preview.shape == (lay.size[1], lay.size[0], 3)

    frames_dir = profile.frames_path(out)
    assert frames_dir == tmp_path / "site-frames"
    files = sorted(frames_dir.glob("frame_*.png"))
    assert len(files) == 12
    r = profile.image_roi
    assert cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED).shape == (r.h, r.w)  # gray ROI crops

    # the folder is what `nerveseg convert --calibration DIR` takes: a plain folder of frames
    from convert.cli import calibration_set, load_frames

    fs = calibration_set(frames_dir, 300, data_dir)
    assert fs.layout == "plain" and fs.paths == files
    spec = load_spec(default_model_path())
    tensors = load_frames(fs.paths, spec.preprocess)
    assert tensors[0].shape == (spec.preprocess.height, spec.preprocess.width)

    # and the runtime runs with it
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"source": {"spec": f"file:{video}", "pace": False}, "profile": str(out)}))
    assert main(["check-config", str(cfg)]) == EXIT_OK
    assert main(["run", "--config", str(cfg), "--frames", "5", "--log-level", "WARNING"]) == EXIT_OK


def test_calibrate_with_config_roi_override_and_force(screen_video, tmp_path, capsys):
    video, lay = screen_video
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"source": {"spec": f"file:{video}"}}))
    out = tmp_path / "p.yaml"
    args = ["calibrate", "--config", str(cfg), "--frames", "8", "--out", str(out), "--roi", "250,70,760,560"]
    assert main([*args, "--flip-horizontal"]) == EXIT_OK
    profile = load_profile(out)
    assert profile.image_roi == lay.image and profile.detection.method == "manual"
    assert profile.flips == (True, False)
    capsys.readouterr()
    assert main(args) == EXIT_CONFIG  # exists
    assert "exists; give --force" in capsys.readouterr().err
    assert main([*args, "--force", "--frames", "6"]) == EXIT_OK
    assert len(list(out.with_name("p-frames").glob("frame_*.png"))) == 6  # the old frames went


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("static", "all 10 frames are identical"),
        ("black", "blank input"),
        ("noise", "looks like random noise"),
    ],
)
def test_calibrate_refuses_bad_input_with_exit_2(kind, message, tmp_path, scans, capsys):
    if kind == "static":  # a frozen machine: one 1024x768 screen, ten times
        frames = render_sequence(layouts()[4], scans["kaggle"][:1]) * 10
    elif kind == "black":
        frames = [np.zeros((768, 1024, 3), np.uint8)] * 10
    else:
        rng = np.random.default_rng(3)
        frames = [rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8) for _ in range(10)]
    video = write_video(tmp_path / f"{kind}.avi", frames)
    out = tmp_path / "p.yaml"
    assert main(["calibrate", "--source", str(video), "--frames", "10", "--out", str(out)]) == EXIT_CONFIG
    assert message in capsys.readouterr().err
    assert not out.exists() and not out.with_name("p-frames").exists()  # nothing written


def test_calibrate_command_line_errors(screen_video, tmp_path, capsys):
    video, _ = screen_video
    out = str(tmp_path / "p.yaml")
    assert main(["calibrate", "--source", str(video), "--out", out, "--roi", "1200,600,400,300"]) == EXIT_CONFIG
    assert "--roi x=1200 y=600 w=400 h=300 lies outside the 1280x720 frame" in capsys.readouterr().err
    assert main(["calibrate", "--source", str(tmp_path / "none.avi"), "--out", out]) == EXIT_SOURCE
    assert main(["calibrate", "--source", str(video), "--frames", "2", "--out", out]) == EXIT_CONFIG
    assert "--frames: got 2" in capsys.readouterr().err
    assert main(["calibrate", "--source", str(video), "--out", str(tmp_path / "no" / "p.yaml")]) == EXIT_CONFIG
    with pytest.raises(SystemExit) as e:
        main(["calibrate", "--roi", "1,2,3"])
    assert e.value.code == EXIT_CONFIG


def test_bad_profile_in_config_exits_2_naming_the_key(tmp_path, capsys):
    prof = tmp_path / "site.yaml"
    prof.write_text(yaml.safe_dump({"created": "2025-01-01T00:00:00Z", "source": {"width": 640, "height": 480},
                                    "roi": {"x": 0, "y": 0, "w": 0, "h": 10}}))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"profile": str(prof)}))
    assert main(["check-config", str(cfg)]) == EXIT_CONFIG
    assert "roi.w: got 0" in capsys.readouterr().err
    assert main(["run", "--config", str(cfg), "--frames", "1"]) == EXIT_CONFIG
    cfg.write_text(yaml.safe_dump({"profile": str(prof), "roi": {"x": 0, "y": 0, "w": 10, "h": 10}}))
    assert main(["check-config", str(cfg)]) == EXIT_CONFIG
    assert "roi and profile are both set" in capsys.readouterr().err
