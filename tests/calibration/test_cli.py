"""`nerveseg calibrate` end to end on video files: real frames pasted into a machine screen, MJPG like a dongle."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from calibration.calibrate import MAX_KEPT, calibrate
from edge.cli import EXIT_CONFIG, EXIT_OK, EXIT_SOURCE, main
from edge.config import SourceConfig
from edge.models import default_model_path
from edge.profile import apply_blank, blank_in_roi, load_profile
from edge.spec import load_spec
from edge.types import Roi
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


def read_video(path: Path) -> list[np.ndarray]:
    """Every frame of a video file as the file source decodes it (BGR)."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    return frames


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
    assert max(side_errors(profile.image_roi, lay.truth)) <= TOLERANCE
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


RED, YELLOW, GREEN = (0, 0, 255), (0, 255, 255), (0, 255, 0)


def test_preview_paints_the_blanking_regions_solid_and_draws_the_roi(screen_video, tmp_path):
    """The preview shows exactly what recordings hide, and nothing of it: it may leave the device."""
    video, lay = screen_video
    res = calibrate(SourceConfig(spec=f"file:{video}"), tmp_path / "s.yaml", frames=12)
    preview = cv2.imread(str(res.preview_path))
    last = read_video(video)[-1]  # the preview is drawn on the last grabbed frame
    h, w = last.shape[:2]
    roi, blanks = res.profile.image_roi, res.profile.blank_rois
    assert preview.shape == last.shape and len(blanks) >= 3
    blanked = np.zeros((h, w), bool)
    for b in blanks:
        blanked[b.y : b.y + b.h, b.x : b.x + b.w] = True
    t = max(2, round(min(h, w) / 360))
    band = np.zeros((h, w), np.uint8)
    cv2.rectangle(band, (roi.x, roi.y), (roi.x + roi.w - 1, roi.y + roi.h - 1), 255, t)
    label_rows = np.zeros((h, w), bool)
    label_rows[max(0, roi.y - 25) : roi.y] = True  # the ROI's label sits just above the box (at 720p)
    drawn = blanked | (band > 0) | label_rows
    is_colour = lambda c: np.all(preview == c, axis=2)  # noqa: E731
    # The ROI box: green all along its bottom and right edges (blanking regions never hide it).
    assert is_colour(GREEN)[roi.y + roi.h - 1, roi.x : roi.x + roi.w].all()
    assert is_colour(GREEN)[roi.y : roi.y + roi.h, roi.x + roi.w - 1].all()
    # The blanking regions: opaque red with a yellow outline, not a blend that keeps the text readable.
    solid = is_colour(RED) | is_colour(YELLOW)
    assert solid[blanked & ~(band > 0) & ~label_rows].all()
    assert is_colour(YELLOW)[blanked].mean() < 0.3 < is_colour(RED)[blanked].mean()
    p = lay.patient
    assert not label_rows[p.y : p.y + p.h, p.x : p.x + p.w].any()
    name = np.zeros((h, w), bool)
    name[p.y : p.y + p.h, p.x : p.x + p.w] = lay.ink_mask[p.y : p.y + p.h, p.x : p.x + p.w] > 128
    assert name.sum() > 200 and solid[name].all()  # the patient's name: not one of its pixels left
    # Everything else is the frame as grabbed.
    np.testing.assert_array_equal(preview[~drawn], last[~drawn])


def test_calibration_frames_are_mirrored_and_blanked_as_the_profile_says(screen_video, tmp_path):
    video, _ = screen_video
    res = calibrate(SourceConfig(spec=f"file:{video}"), tmp_path / "s.yaml", frames=12, flips=(True, True))
    assert res.profile.flips == (True, True)
    roi = res.profile.image_roi
    inner = blank_in_roi(res.profile.blank_rois, roi)
    assert inner  # the logo over the image's corner
    for i, bgr in enumerate(read_video(video)[:3]):
        crop = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w].copy()
        apply_blank(crop, inner)
        written = cv2.imread(str(res.frames_dir / f"frame_{i + 1:04d}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(written, crop[::-1, ::-1])
        assert not np.array_equal(written, crop)


def test_representative_frames_span_the_frames_actually_read(lung_clips, tmp_path):
    """--frames 1000 on a 187-frame clip: the crops are spread over the 187 frames, not over 1000."""
    clip = lung_clips[1]
    frames = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in read_video(clip)]
    assert len(frames) == 187
    res = calibrate(SourceConfig(spec=f"file:{clip}"), tmp_path / "s.yaml", frames=1000)
    assert res.profile.detection.frames == 187
    roi = res.profile.image_roi
    inner = blank_in_roi(res.profile.blank_rois, roi)
    crops = [f[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w].copy() for f in frames]
    for c in crops:
        apply_blank(c, inner)
    written = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(res.frames_dir.glob("frame_*.png"))]
    assert MAX_KEPT // 2 <= res.frames_written == len(written) <= MAX_KEPT
    # Which grabbed frame each crop is.
    index = [next(i for i, c in enumerate(crops) if np.array_equal(c, wr)) for wr in written]
    steps = set(np.diff(index).tolist())
    assert len(steps) == 1, f"unevenly spaced: {index}"
    assert index[0] == 0 and index[-1] >= 187 - steps.pop()


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
    # A box over the static UI: refused, naming the box that does change.
    assert main(["calibrate", "--source", str(video), "--out", out, "--roi", "10,10,5,5"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "--roi x=10 y=10 w=5 h=5 barely changes: only 0% of it changed" in err
    m = re.search(r"give --roi (\d+),(\d+),(\d+),(\d+)", err)
    assert m and max(side_errors(Roi(*map(int, m.groups())), screen_video[1].truth)) <= TOLERANCE
    assert not (tmp_path / "p.yaml").exists()
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


def test_calibration_frames_and_preview_are_private_whatever_the_umask(screen_video, tmp_path):
    # they hold video-out content (the machine's screen, the patient's image): like recordings, owner only
    video, _ = screen_video
    out = tmp_path / "site.yaml"
    old = os.umask(0)
    try:
        assert main(["calibrate", "--source", str(video), "--frames", "8", "--out", str(out)]) == EXIT_OK
    finally:
        os.umask(old)
    frames = out.with_name("site-frames")
    assert stat.S_IMODE(frames.stat().st_mode) == 0o700
    pngs = list(frames.glob("frame_*.png"))
    assert pngs and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in pngs)
    assert stat.S_IMODE(out.with_name("site-preview.png").stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # the profile itself is geometry only, read by the service
