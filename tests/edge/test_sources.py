"""Frame sources: file, image folder, phantom, V4L2 (reconnect path), picamera2 (absent), factory and spec parsing.

Real data: the lung clips stand in for live video and for a capture card (the V4L2
source is driven through its injectable opener with a real OpenCV capture on a
real clip); the Kaggle full-resolution frames feed the image-folder source.
"""

from __future__ import annotations

import csv
import inspect
import logging
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import SourceError, SourceExhausted
from edge.sources import SOURCES, FrameSource, open_source, source_spec_from_arg
from edge.sources.file import VideoFileSource
from edge.sources.images import ImageFolderSource, natural_key
from edge.sources.phantom import IMAGE_H, IMAGE_W, PhantomSource
from edge.sources.picamera2 import INSTALL_HINT, Picamera2Source
from edge.sources.settings import (
    FileSourceConfig,
    ImagesSourceConfig,
    PhantomSourceConfig,
    Picamera2SourceConfig,
    SourceConfig,
    V4L2SourceConfig,
)
from edge.sources.v4l2 import V4L2Source, parse_device
from edge.types import Roi

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------------------------- helpers / fixtures
def decode_all(path: Path) -> list[np.ndarray]:
    """Every frame of a clip, decoded independently of the code under test."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


@pytest.fixture(scope="session")
def lung_manifest(data_dir: Path) -> dict[str, dict[str, str]]:
    with open(data_dir / "video-us-lung-linear" / "manifest.csv", newline="") as f:
        return {row["path"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="session")
def short_clip(lung_clips: list[Path], lung_manifest: dict[str, dict[str, str]]) -> Path:
    """The clip with the fewest frames (keeps loop/reconnect tests short)."""
    return min(lung_clips, key=lambda p: int(lung_manifest[p.name]["frames"]))


@pytest.fixture(scope="session")
def short_clip_frames(short_clip: Path) -> list[np.ndarray]:
    return decode_all(short_clip)


def file_cfg(path: Path, **kw) -> FileSourceConfig:
    return FileSourceConfig(path=str(path), **kw)


# ------------------------------------------------------------------------------------------------------ file source
def test_file_delivers_every_frame_of_the_real_clips_then_exhausts(lung_clips, lung_manifest):
    for clip in lung_clips:
        reference = decode_all(clip)
        assert len(reference) == int(lung_manifest[clip.name]["frames"]), "clip decodes to the manifest's count"
        with VideoFileSource(file_cfg(clip, pace=False)) as src:
            assert isinstance(src, FrameSource)
            assert src.nominal_fps == pytest.approx(float(lung_manifest[clip.name]["fps"]), abs=0.01)
            frames = []
            with pytest.raises(SourceExhausted):
                while True:
                    f = src.read(timeout=0.5)
                    assert f is not None, "unpaced file source never times out"
                    frames.append(f)
            with pytest.raises(SourceExhausted):  # stays ended
                src.read(timeout=0.01)
            assert str(clip) in src.describe()
        assert len(frames) == len(reference)
        assert [f.seq for f in frames] == list(range(len(reference)))
        t = [f.t_capture_ns for f in frames]
        assert all(b >= a for a, b in zip(t, t[1:], strict=False))
        w, h = int(lung_manifest[clip.name]["width"]), int(lung_manifest[clip.name]["height"])
        for i in (0, len(frames) // 2, len(frames) - 1):
            img = frames[i].image
            assert img.shape == (h, w, 3) and img.dtype == np.uint8 and img.flags.c_contiguous
            # Held frames are still intact after the whole clip was read: the source never reuses a buffer.
            np.testing.assert_array_equal(img, reference[i])


def test_file_paces_at_its_own_fps_and_at_cfg_fps(short_clip):
    with VideoFileSource(file_cfg(short_clip)) as src:
        fps = src.file_fps
        assert 15 < fps < 25
        t0 = time.monotonic()
        for _ in range(12):
            assert src.read(timeout=1.0) is not None
        elapsed = time.monotonic() - t0
        # The first frame is due at once, then one every 1/fps.
        assert elapsed == pytest.approx(11 / fps, rel=0.12)
        # A frame that is not due within the timeout: None, after about the timeout.
        t1 = time.monotonic()
        assert src.read(timeout=0.005) is None
        assert time.monotonic() - t1 < 0.04

    with VideoFileSource(file_cfg(short_clip, fps=60)) as src:
        assert src.nominal_fps == 60
        t0 = time.monotonic()
        for _ in range(21):
            assert src.read(timeout=1.0) is not None
        assert time.monotonic() - t0 == pytest.approx(20 / 60, rel=0.15)


def test_file_unpaced_is_faster_than_real_time(short_clip):
    with VideoFileSource(file_cfg(short_clip, pace=False)) as src:
        t0 = time.monotonic()
        for _ in range(40):
            src.read()
        assert time.monotonic() - t0 < 40 / src.file_fps / 4


def test_file_loop_wraps_to_the_first_frame(short_clip, short_clip_frames):
    n = len(short_clip_frames)
    with VideoFileSource(file_cfg(short_clip, pace=False, loop=True)) as src:
        frames = [src.read() for _ in range(n + 3)]
        assert src.loops == 1
    assert all(f is not None for f in frames)
    assert [f.seq for f in frames] == list(range(n + 3)), "seq keeps counting across the wrap"
    np.testing.assert_array_equal(frames[n].image, short_clip_frames[0])
    np.testing.assert_array_equal(frames[n + 2].image, short_clip_frames[2])
    np.testing.assert_array_equal(frames[n - 1].image, short_clip_frames[-1])


class _NoSeek:
    """A capture whose seek fails (some containers/streams), to drive the reopen fallback of looping."""

    def __init__(self, cap: cv2.VideoCapture):
        self.cap = cap

    def read(self):
        return self.cap.read()

    def set(self, prop, value):
        return False

    def get(self, prop):
        return self.cap.get(prop)

    def release(self):
        self.cap.release()


def test_file_loop_reopens_when_seek_fails(short_clip, short_clip_frames):
    n = len(short_clip_frames)
    with VideoFileSource(file_cfg(short_clip, pace=False, loop=True)) as src:
        src._cap = _NoSeek(src._cap)
        frames = [src.read() for _ in range(n + 2)]
        assert not isinstance(src._cap, _NoSeek), "reopened"
        assert src.loops == 1
    np.testing.assert_array_equal(frames[n].image, short_clip_frames[0])
    np.testing.assert_array_equal(frames[n + 1].image, short_clip_frames[1])


def test_file_scales_to_1080p(short_clip, short_clip_frames):
    with VideoFileSource(file_cfg(short_clip, pace=False, width=1920, height=1080)) as src:
        f0, f1 = src.read(), src.read()
        assert "1920x1080" in src.describe()
    assert f0.image.shape == (1080, 1920, 3) and f0.image.dtype == np.uint8
    np.testing.assert_array_equal(
        f1.image, cv2.resize(short_clip_frames[1], (1920, 1080), interpolation=cv2.INTER_LINEAR)
    )


def test_file_width_alone_keeps_aspect(short_clip, short_clip_frames):
    h, w = short_clip_frames[0].shape[:2]
    with VideoFileSource(file_cfg(short_clip, pace=False, width=2 * w)) as src:
        assert src.read().image.shape == (2 * h, 2 * w, 3)


def test_file_missing_or_not_a_video_names_the_path(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(SourceError, match="nope.mp4"):
        VideoFileSource(file_cfg(missing))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(SourceError, match="junk.mp4"):
        VideoFileSource(file_cfg(junk))


# ---------------------------------------------------------------------------------------------- image-folder source
def kaggle_key(p: Path) -> tuple[int, int]:
    subject, index = p.stem.split("_")
    return int(subject), int(index)


def test_images_real_kaggle_frames_natural_order_and_pixel_exact(kaggle_fullres):
    expected = sorted((p for p in kaggle_fullres.glob("*.png") if not p.stem.endswith("_mask")), key=kaggle_key)
    assert len(expected) == 55
    with ImageFolderSource(SourceConfig(spec=f"images:{kaggle_fullres}", pace=False)) as src:
        assert src.current_path is None
        assert src.nominal_fps is None
        got = []
        with pytest.raises(SourceExhausted):
            while True:
                f = src.read(timeout=0.5)
                assert f is not None
                got.append((src.current_path, f))
    assert [p.name for p, _ in got] == [p.name for p in expected]
    assert [p.name for p, _ in got][:12] == [
        "1_1.png",
        "1_2.png",
        "1_3.png",
        "1_4.png",
        "1_5.png",
        "1_6.png",
        "1_7.png",
        "1_8.png",
        "1_9.png",
        "1_10.png",
        "1_11.png",
        "1_12.png",
    ]
    assert [f.seq for _, f in got] == list(range(55))
    for path, f in got[::6]:
        assert f.image.shape == (420, 580, 3) and f.image.dtype == np.uint8
        np.testing.assert_array_equal(f.image, cv2.imread(str(path), cv2.IMREAD_COLOR))


def test_natural_key():
    names = ["1_10.png", "1_2.png", "10_1.png", "2_1.png", "1_1.png", "img9.png", "img10.png"]
    assert sorted(names, key=natural_key) == [
        "1_1.png",
        "1_2.png",
        "1_10.png",
        "2_1.png",
        "10_1.png",
        "img9.png",
        "img10.png",
    ]


@pytest.fixture
def mixed_folder(tmp_path: Path, kaggle_fullres: Path) -> Path:
    """Real frames (symlinked, not copied), their masks, a corrupt image and a non-image file."""
    masks = kaggle_fullres.parent / "masks"
    for stem in ("1_10", "1_2", "1_1"):
        (tmp_path / f"{stem}.png").symlink_to(kaggle_fullres / f"{stem}.png")
        (tmp_path / f"{stem}_mask.png").symlink_to(masks / f"{stem}_mask.png")
    (tmp_path / "1_3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"corrupt" * 50)
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_images_skip_masks_and_warn_on_corrupt_file(mixed_folder, caplog):
    caplog.set_level(logging.WARNING, logger="edge.sources.images")
    with ImageFolderSource(SourceConfig(spec=f"images:{mixed_folder}", pace=False)) as src:
        assert [p.name for p in src.paths] == ["1_1.png", "1_2.png", "1_3.png", "1_10.png"]
        names = []
        with pytest.raises(SourceExhausted):
            while True:
                src.read()
                names.append(src.current_path.name)
        assert [p.name for p in src.skipped] == ["1_3.png"]
    assert names == ["1_1.png", "1_2.png", "1_10.png"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1_3.png" in warnings[0].getMessage()


def test_images_loop_warns_once_and_wraps(mixed_folder, caplog):
    caplog.set_level(logging.WARNING, logger="edge.sources.images")
    with ImageFolderSource(SourceConfig(spec=f"images:{mixed_folder}", pace=False, loop=True)) as src:
        names = []
        for _ in range(7):
            assert src.read() is not None
            names.append(src.current_path.name)
    assert names == ["1_1.png", "1_2.png", "1_10.png"] * 2 + ["1_1.png"]
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1


def test_images_paced_at_cfg_fps(mixed_folder):
    with ImageFolderSource(SourceConfig(spec=f"images:{mixed_folder}", fps=40, loop=True)) as src:
        t0 = time.monotonic()
        for _ in range(9):
            assert src.read(timeout=1.0) is not None
        assert time.monotonic() - t0 == pytest.approx(8 / 40, rel=0.2)


def test_images_empty_missing_or_unreadable_folder(tmp_path):
    with pytest.raises(SourceError, match="no images"):
        ImageFolderSource(SourceConfig(spec=f"images:{tmp_path}"))
    (tmp_path / "a_mask.png").write_bytes(b"x")
    with pytest.raises(SourceError, match="no images"):
        ImageFolderSource(SourceConfig(spec=f"images:{tmp_path}"))
    with pytest.raises(SourceError, match="not found"):
        ImageFolderSource(SourceConfig(spec=f"images:{tmp_path / 'absent'}"))
    (tmp_path / "b.png").write_bytes(b"garbage")
    src = ImageFolderSource(SourceConfig(spec=f"images:{tmp_path}", pace=False, loop=True))
    with pytest.raises(SourceError, match="could be decoded"):
        src.read()


# --------------------------------------------------------------------------------------------------- phantom source
def phantom(**kw) -> PhantomSource:
    kw.setdefault("pace", False)
    return PhantomSource(SourceConfig(spec="phantom", **kw))


def test_phantom_is_deterministic_by_seed():
    a, b, c = phantom(seed=7), phantom(seed=7), phantom(seed=8)
    fa = [a.read() for _ in range(4)]
    fb = [b.read() for _ in range(4)]
    for x, y in zip(fa, fb, strict=True):
        np.testing.assert_array_equal(x.image, y.image)
    np.testing.assert_array_equal(a.render(3), fa[3].image)  # random access = sequential
    np.testing.assert_array_equal(phantom(seed=7).render(100), a.render(100))
    assert np.mean(np.abs(c.render(0).astype(int) - fa[0].image.astype(int))) > 10


def test_phantom_frames_change_and_are_not_reused():
    src = phantom(seed=1)
    f0 = src.read()
    kept = f0.image.copy()
    later = [src.read() for _ in range(15)]
    np.testing.assert_array_equal(f0.image, kept)  # not written into after it was returned
    assert [f.seq for f in later] == list(range(1, 16))
    diff = np.abs(later[-1].image.astype(int) - f0.image.astype(int))
    assert diff.mean() > 5
    # Consecutive frames are similar (video, not noise), yet not identical.
    d1 = np.abs(later[0].image.astype(int) - f0.image.astype(int)).mean()
    assert 0 < d1 < diff.mean() * 2


def test_phantom_looks_like_speckled_bmode():
    img = phantom(seed=0).render(0)
    assert img.shape == (IMAGE_H, IMAGE_W, 3) and img.dtype == np.uint8
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()  # gray replicated
    g = img[..., 0].astype(np.float32)
    assert 40 < g.mean() < 140 and g.std() > 25
    # Speckle: grain at the pixel scale everywhere, with the coefficient of variation of compressed speckle.
    hf = g - cv2.GaussianBlur(g, (0, 0), 3)
    assert hf.std() > 8
    tiles = g[40:360, :].reshape(20, 16, -1, 20).transpose(0, 2, 1, 3).reshape(-1, 16 * 20)
    bright = tiles[tiles.mean(axis=1) > 30]
    cv = np.median(bright.std(axis=1) / bright.mean(axis=1))
    assert 0.2 < cv < 0.8
    # Neighbouring pixels are correlated (a speckle grain spans several pixels), but not a blur.
    r = np.corrcoef(hf[:, :-1].ravel(), hf[:, 1:].ravel())[0, 1]
    assert 0.3 < r < 0.98
    # Depth attenuation: the deep third is darker than the middle third.
    assert g[280:400].mean() < g[140:280].mean()


def test_phantom_nerve_drifts_in_and_out_of_view():
    src = phantom(seed=0)
    boxes = [src.nerve_box(i) for i in range(0, 30 * 40, 10)]
    visible = [b for b in boxes if b is not None]
    assert 0.2 < len(visible) / len(boxes) < 0.8
    for b in visible:
        assert b.clip_to(IMAGE_W, IMAGE_H) and b.w > 0 and b.h > 0
    # The honeycomb is where the box says: inside it the picture differs from the same tissue without it.
    i = next(k for k in range(0, 1200, 10) if src.nerve_box(k) and 150 < src.nerve_box(k).x < 350)
    j = next(k for k in range(0, 1200, 10) if src.nerve_box(k) is None)
    b = src.nerve_box(i)
    crop = src.render(i)[b.y : b.y + b.h, b.x : b.x + b.w, 0].astype(np.float32)
    assert crop.std() > 35, "fascicles (dark) inside a bright ring give strong contrast"
    assert np.abs(src.render(j).astype(int) - src.render(i).astype(int))[b.y : b.y + b.h, b.x : b.x + b.w].mean() > 20


def test_phantom_ui_frame_places_image_and_keeps_ui_static():
    ui = phantom(seed=5, width=1920, height=1080)
    plain = phantom(seed=5)
    assert ui.ui and not plain.ui
    assert plain.image_roi == Roi(0, 0, IMAGE_W, IMAGE_H)
    r = ui.image_roi
    assert r.clip_to(1920, 1080) and r.w > IMAGE_W and r.h > IMAGE_H
    assert r.w / r.h == pytest.approx(IMAGE_W / IMAGE_H, rel=0.01)
    f0, f1 = ui.read(), None
    for _ in range(20):
        f1 = ui.read()
    a, b = f0.image, f1.image
    assert a.shape == (1080, 1920, 3)
    outside = np.ones((1080, 1920), bool)
    outside[r.y : r.y + r.h, r.x : r.x + r.w] = False
    np.testing.assert_array_equal(a[outside], b[outside])  # the UI never changes
    assert a[outside].std() > 3, "UI has text/scale, not a flat border"
    inside_a, inside_b = a[r.y : r.y + r.h, r.x : r.x + r.w], b[r.y : r.y + r.h, r.x : r.x + r.w]
    assert np.abs(inside_a.astype(int) - inside_b.astype(int)).mean() > 5
    # Placement is exact: the ROI holds the plain 580x420 image scaled to the ROI size.
    want = cv2.resize(plain.render(0)[..., 0], (r.w, r.h), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(inside_a[..., 0], want)
    # Ground truth maps into frame coordinates.
    i = next(k for k in range(0, 1200, 10) if ui.nerve_box(k))
    nb, pb = ui.nerve_box(i), plain.nerve_box(i)
    assert nb.x == pytest.approx(r.x + pb.x * r.w / IMAGE_W, abs=2)
    assert nb.w == pytest.approx(pb.w * r.w / IMAGE_W, abs=2)


def test_phantom_small_size_renders_image_without_ui():
    src = phantom(width=256, height=186)
    assert not src.ui and src.image_roi.w == 256 and src.image_roi.h == 186
    assert src.read().image.shape == (186, 256, 3)


def test_phantom_is_cheap():
    src = phantom(seed=2)
    src.render(0)
    n = 60
    t0 = time.perf_counter()
    for i in range(n):
        src.render(i)
    ms = (time.perf_counter() - t0) / n * 1e3
    assert ms < 6, f"phantom frame took {ms:.2f} ms (target < 3 ms)"


def test_phantom_paced_rate_and_timeout():
    src = phantom(fps=50, pace=True)
    t0 = time.monotonic()
    for _ in range(11):
        assert src.read(timeout=1.0) is not None
    assert time.monotonic() - t0 == pytest.approx(0.2, rel=0.2)
    t1 = time.monotonic()
    assert src.read(timeout=0.0) is None
    assert time.monotonic() - t1 < 0.03


# ------------------------------------------------------------------------------------------------------ v4l2 source
def test_parse_device():
    assert parse_device("") == "/dev/video0"
    assert parse_device("2") == 2
    assert parse_device("/dev/video3") == "/dev/video3"


@pytest.mark.parametrize("spec", ["v4l2:/dev/video99", "v4l2:63"])
def test_v4l2_missing_device_never_raises_and_read_honours_timeout(spec):
    src = V4L2Source(SourceConfig(spec=spec, retry_max_s=0.5))
    assert not src.connected
    worst = 0.0
    deadline = time.monotonic() + 0.8
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        assert src.read(timeout=0.05) is None
        worst = max(worst, time.monotonic() - t0)
    assert worst < 0.05 + 0.05
    assert src.open_failures >= 3  # tried at 0, 0.25, 0.75 s
    assert "not connected" in src.describe()
    src.close()
    assert src.read(timeout=0.01) is None


class ScriptedOpener:
    """Opens a real clip with OpenCV like a capture card; can be told to fail the next N opens ("unplugged")."""

    def __init__(self, clip: Path, fail_next: int = 0, raise_every_other: bool = False):
        self.clip = clip
        self.fail_next = fail_next
        self.raise_every_other = raise_every_other
        self.calls: list[float] = []
        self.caps: list[cv2.VideoCapture] = []

    def __call__(self) -> cv2.VideoCapture:
        self.calls.append(time.monotonic())
        if self.fail_next > 0:
            self.fail_next -= 1
            if self.raise_every_other and self.fail_next % 2:
                raise OSError("No such device")
            return cv2.VideoCapture()  # not opened, like a vanished /dev/videoN
        cap = cv2.VideoCapture(str(self.clip))
        self.caps.append(cap)
        return cap


def test_v4l2_backoff_grows_caps_and_logs_once(short_clip, caplog):
    caplog.set_level(logging.DEBUG, logger="edge.sources")
    opener = ScriptedOpener(short_clip, fail_next=10**6, raise_every_other=True)
    src = V4L2Source(SourceConfig(spec="v4l2:0", retry_max_s=0.5), opener=opener)
    delays = []
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        assert src.read(timeout=0.04) is None
        assert time.monotonic() - t0 < 0.04 + 0.05
        delays.append(src.retry_delay_s)
    gaps = np.diff(opener.calls)
    # 0.25 s, then doubling, capped at retry_max_s.
    assert len(gaps) >= 3
    expected = [0.25, 0.5, 0.5, 0.5, 0.5][: len(gaps)]
    for got, want in zip(gaps, expected, strict=True):
        assert want - 0.01 <= got <= want + 0.1, (list(gaps), expected)
    assert max(delays) == pytest.approx(0.5)
    assert src.reconnects == 0 and not src.connected
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "one warning per outage, not one per attempt"


def test_v4l2_reconnects_after_unplug_and_frames_resume(short_clip, short_clip_frames, caplog):
    caplog.set_level(logging.INFO, logger="edge.sources")
    opener = ScriptedOpener(short_clip)
    src = V4L2Source(SourceConfig(spec="v4l2:/dev/video0", retry_max_s=0.25), opener=opener)
    assert src.connected and src.reconnects == 0
    before = [src.read(timeout=0.5) for _ in range(10)]
    assert all(f is not None for f in before)
    np.testing.assert_array_equal(before[3].image, short_clip_frames[3])

    # Unplug: the open capture dies and the device stays away for 3 attempts.
    opener.caps[-1].release()
    opener.fail_next = 3
    after = None
    worst = 0.0
    nones = 0
    deadline = time.monotonic() + 5.0
    while after is None and time.monotonic() < deadline:
        t0 = time.monotonic()
        after = src.read(timeout=0.05)
        worst = max(worst, time.monotonic() - t0)
        nones += after is None
    assert after is not None, "frames resume after the device comes back"
    assert worst < 0.05 + 0.1
    assert nones >= 3
    assert src.connected
    assert src.reconnects == 1
    assert src.open_failures == 3
    assert src.failed_reads >= 3
    assert after.seq == before[-1].seq + 1, "seq continues across the outage"
    np.testing.assert_array_equal(after.image, short_clip_frames[0])  # reopened device: from its first frame
    assert [r.levelno for r in caplog.records if r.name == "edge.sources.base"] == [logging.WARNING, logging.INFO]
    src.close()


# ------------------------------------------------------------------------------------------------- picamera2 source
def test_picamera2_absent_raises_with_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails even on a Pi that has it
    with pytest.raises(SourceError) as e:
        Picamera2Source(SourceConfig(spec="picamera2"))
    msg = str(e.value)
    assert "picamera2 not installed" in msg and "sudo apt install python3-picamera2" in msg
    assert "--system-site-packages" in msg and INSTALL_HINT in msg
    with pytest.raises(SourceError, match="python3-picamera2"):
        open_source(SourceConfig(spec="picamera2"))


class FakeJob:
    def __init__(self, result=None, error=None, ready=True):
        self.result, self.error, self.ready = result, error, ready

    def get_result(self, timeout=None):
        if not self.ready:
            time.sleep(min(timeout or 0, 0.01))
            raise TimeoutError
        if self.error:
            raise self.error
        return self.result


class FakePicamera2:
    """Just the calls Picamera2Source makes, after picamera2's API (Job with get_result(timeout))."""

    instances: list[FakePicamera2] = []
    fail_opens = 0

    def __init__(self, num):
        if FakePicamera2.fail_opens:
            FakePicamera2.fail_opens -= 1
            raise RuntimeError("camera __init__ sequence did not complete")
        self.num, self.jobs, self.closed, self.camera_config = num, [], False, None
        self.n = 0
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, main, controls, buffer_count):
        return {"main": dict(main), "controls": controls, "buffer_count": buffer_count}

    def configure(self, config):
        self.camera_config = config

    def start(self, show_preview=False):
        assert show_preview is False

    def capture_array(self, name="main", wait=None):
        assert name == "main" and wait is False
        job = self.jobs.pop(0) if self.jobs else FakeJob(self._image())
        return job

    def _image(self):
        w, h = self.camera_config["main"]["size"]
        self.n += 1
        padded = np.full((h, w + 8, 3), self.n, np.uint8)  # row padding, as picamera2 can return
        return padded[:, :w]

    def stop(self):
        pass

    def close(self):
        self.closed = True


def test_picamera2_frames_timeouts_and_reconnect():
    FakePicamera2.instances, FakePicamera2.fail_opens = [], 1
    cfg = SourceConfig(spec="picamera2", width=64, height=48, fps=30, retry_max_s=0.25)
    src = Picamera2Source(cfg, camera_factory=FakePicamera2)
    assert not src.connected  # first open failed: retry scheduled, no exception
    f = None
    deadline = time.monotonic() + 2
    while f is None and time.monotonic() < deadline:
        f = src.read(timeout=0.05)
    assert f is not None and src.reconnects == 1
    cam = FakePicamera2.instances[-1]
    assert cam.camera_config["main"] == {"format": "RGB888", "size": (64, 48)}
    assert cam.camera_config["controls"] == {"FrameRate": 30.0}
    assert f.image.shape == (48, 64, 3) and f.image.flags.c_contiguous and f.image.dtype == np.uint8
    # A capture that has not completed: None within the timeout, and the same job is polled again.
    pending = FakeJob(np.zeros((48, 64, 3), np.uint8), ready=False)
    cam.jobs.append(pending)
    assert src.read(timeout=0.02) is None
    pending.ready = True
    assert src.read(timeout=0.02) is not None
    # A camera error at run time: closed, reopened, frames resume.
    cam.jobs.append(FakeJob(error=RuntimeError("Camera frontend has timed out!")))
    assert src.read(timeout=0.02) is None
    assert cam.closed and not src.connected
    g = src.read(timeout=0.05)
    assert g is not None and src.reconnects == 2 and FakePicamera2.instances[-1] is not cam
    assert g.seq == f.seq + 2


# --------------------------------------------------------------------------------------------- factory and specs
def test_open_source_each_kind(short_clip, kaggle_fullres, monkeypatch):
    with open_source(SourceConfig(spec="phantom", pace=False)) as s:
        assert isinstance(s, PhantomSource) and s.read() is not None and "phantom" in s.describe()
    with open_source(SourceConfig(spec=f"file:{short_clip}", pace=False)) as s:
        assert isinstance(s, VideoFileSource) and s.read() is not None
    with open_source(SourceConfig(spec=f"images:{kaggle_fullres}", pace=False)) as s:
        assert isinstance(s, ImageFolderSource) and s.read() is not None
    with open_source(SourceConfig(spec="v4l2:/dev/video98")) as s:
        assert isinstance(s, V4L2Source) and not s.connected and s.read(timeout=0.01) is None
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(SourceError):
        open_source(SourceConfig(spec="picamera2"))


def test_importing_sources_opens_nothing_and_imports_no_implementation():
    code = ("import sys, edge.sources as s; print(sorted(m for m in sys.modules if m.startswith('edge.sources.'))); "
            "assert 'cv2' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['edge.sources.base', 'edge.sources.settings']"  # settings: pydantic only


@pytest.mark.parametrize(
    "arg, spec, model",
    [
        ("v4l2:/dev/video0", "v4l2:/dev/video0", V4L2SourceConfig(device="/dev/video0")),
        ("V4L2:0", "v4l2:0", V4L2SourceConfig(device="0")),
        ("v4l2", "v4l2", V4L2SourceConfig()),
        ("picamera2", "picamera2", Picamera2SourceConfig(camera=0)),
        ("picamera2:1", "picamera2:1", Picamera2SourceConfig(camera=1)),
        ("phantom", "phantom", PhantomSourceConfig()),
        ("file:clip.mp4", "file:clip.mp4", FileSourceConfig(path="clip.mp4")),  # the path is checked on open
        ("images:/some/dir", "images:/some/dir", ImagesSourceConfig(path="/some/dir")),
    ],
)
def test_source_spec_from_arg_specs(arg, spec, model):
    assert source_spec_from_arg(arg) == spec
    cfg = SourceConfig(spec=source_spec_from_arg(arg))
    assert cfg == model and type(cfg) is type(model)
    assert SourceConfig(spec=cfg.spec) == cfg  # the canonical one-string form means the same source


def test_each_kind_is_registered_with_its_model_and_implementation():
    classes = {"v4l2": V4L2Source, "picamera2": Picamera2Source, "file": VideoFileSource,
               "images": ImageFolderSource, "phantom": PhantomSource}
    assert set(SOURCES) == set(classes)
    for kind, cls in classes.items():
        entry = SOURCES[kind]
        assert entry.load() is cls and entry.config.kind_name() == kind
        assert inspect.signature(cls).parameters["cfg"].annotation in (entry.config.__name__,
                                                                       f"{entry.config.__name__} | None")


def test_source_spec_from_arg_bare_paths(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    assert source_spec_from_arg(str(tmp_path)) == f"images:{tmp_path}"
    assert source_spec_from_arg(str(clip)) == f"file:{clip}"


@pytest.mark.parametrize("arg", ["", "nope/missing.mp4", "rtsp://cam/stream", "file:", "images:", "phantom:3"])
def test_source_spec_from_arg_rejects(arg):
    with pytest.raises(SourceError) as e:
        source_spec_from_arg(arg)
    msg = str(e.value)
    for form in ("v4l2:/dev/video0", "v4l2:0", "picamera2", "file:", "images:", "phantom"):
        assert form in msg
