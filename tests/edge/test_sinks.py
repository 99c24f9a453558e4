"""Sinks: framebuffer (against plain files and a fake sysfs), video file, window (headless), null, factory."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import ConfigError, SinkError
from edge.sinks import RetryingSink, Sink, SinkNotReady, open_sink
from edge.sinks import fbdev as fbdev_mod
from edge.sinks import window as window_mod
from edge.sinks.fbdev import FramebufferSink
from edge.sinks.null import NullSink
from edge.sinks.settings import FbdevSinkConfig, SinkConfig, VideoSinkConfig, WindowSinkConfig
from edge.sinks.video import VideoSink
from edge.sinks.window import WindowSink

FILL = 0xAB  # initial file content: shows which bytes the sink wrote


def fb(path: Path, **geometry) -> FbdevSinkConfig:
    """The sink config for framebuffer ``path`` (a device or a plain file) with explicit geometry."""
    return FbdevSinkConfig(device=str(path), **geometry)


def fb_file(tmp_path: Path, width: int, height: int, bpp: int, stride: int | None = None, name: str = "fb.raw"):
    stride = stride or width * bpp // 8
    path = tmp_path / name
    path.write_bytes(bytes([FILL]) * (stride * height))
    return path, stride


def read_fb(path: Path, width: int, height: int, bpp: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode a framebuffer file independently of the sink: (HxWx3 uint8 BGR, HxN padding bytes)."""
    raw = np.fromfile(path, np.uint8).reshape(height, stride)
    vis, pad = raw[:, : width * bpp // 8], raw[:, width * bpp // 8 :]
    if bpp == 32:
        px = vis.reshape(height, width, 4)
        return px[..., :3].copy(), pad  # bytes B, G, R, X
    v = vis.reshape(height, width, 2).astype(np.uint16)
    v = v[..., 0] | (v[..., 1] << 8)  # little-endian RGB565
    r, g, b = (v >> 11) & 31, (v >> 5) & 63, v & 31
    bgr = np.stack([(b << 3) | (b >> 2), (g << 2) | (g >> 4), (r << 3) | (r >> 2)], axis=-1)
    return bgr.astype(np.uint8), pad


def test_frame(h: int, w: int, seed: int = 1) -> np.ndarray:
    """Smooth colour frame (quantisation-friendly) with pure-colour blocks."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) * 255 // (w + h)], axis=-1)
    img = img.astype(np.uint8)
    img[h // 4 : h // 2, w // 4 : w // 2] = (0, 0, 255)  # red
    img[h // 2 : 3 * h // 4, w // 2 : 3 * w // 4] = (255, 255, 255)
    return img


test_frame.__test__ = False  # a helper, not a test


def expected_rect(fb_w: int, fb_h: int, src_w: int, src_h: int) -> tuple[int, int, int, int]:
    s = min(fb_w / src_w, fb_h / src_h)
    w, h = round(src_w * s), round(src_h * s)
    return (fb_w - w) // 2, (fb_h - h) // 2, w, h


# ---------------------------------------------------------------- fbdev


@pytest.mark.parametrize(
    "fb_w,fb_h,src_w,src_h",
    [
        pytest.param(200, 100, 160, 120, id="pillarbox"),  # bars left and right
        pytest.param(200, 150, 400, 100, id="letterbox"),  # bars top and bottom
        pytest.param(160, 120, 160, 120, id="same-size"),
    ],
)
def test_fbdev_32bpp_with_stride_padding(tmp_path, fb_w, fb_h, src_w, src_h):
    stride = fb_w * 4 + 64
    path, _ = fb_file(tmp_path, fb_w, fb_h, 32, stride)
    frame = test_frame(src_h, src_w)
    with FramebufferSink(fb(path, width=fb_w, height=fb_h, bpp=32, stride=stride)) as sink:
        sink.show(frame)
        x, y, w, h = expected_rect(fb_w, fb_h, src_w, src_h)
        assert sink.picture_rect == (x, y, w, h)
        sink.show(frame)
        assert sink.frames_written == 2
    bgr, pad = read_fb(path, fb_w, fb_h, 32, stride)
    want = frame if (w, h) == (src_w, src_h) else cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(bgr[y : y + h, x : x + w], want)
    raw = np.fromfile(path, np.uint8).reshape(fb_h, stride)[:, : fb_w * 4].reshape(fb_h, fb_w, 4)
    assert (raw[y : y + h, x : x + w, 3] == 255).all()  # the X byte
    bars = np.ones((fb_h, fb_w), bool)
    bars[y : y + h, x : x + w] = False
    assert (raw[bars] == 0).all(), "bars not black"
    assert (pad == FILL).all(), "wrote into the stride padding"


def test_fbdev_16bpp_rgb565(tmp_path):
    fb_w, fb_h, stride = 240, 100, 240 * 2 + 32
    path, _ = fb_file(tmp_path, fb_w, fb_h, 16, stride)
    frame = test_frame(120, 160)
    sink = FramebufferSink(fb(path, width=fb_w, height=fb_h, bpp=16, stride=stride))
    sink.show(frame)
    x, y, w, h = sink.picture_rect
    assert (x, y, w, h) == expected_rect(fb_w, fb_h, 160, 120)
    sink.close()
    bgr, pad = read_fb(path, fb_w, fb_h, 16, stride)
    want = cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR).astype(int)
    err = np.abs(bgr[y : y + h, x : x + w].astype(int) - want)
    assert err[..., 0].max() <= 8 and err[..., 2].max() <= 8 and err[..., 1].max() <= 4  # 5/6/5 bits
    raw = np.fromfile(path, np.uint8).reshape(fb_h, stride)
    # Pure red inside the red block is exactly 0xF800, stored little-endian.
    ry, rx = y + h * 3 // 8, x + w * 3 // 8
    assert raw[ry, rx * 2] == 0x00 and raw[ry, rx * 2 + 1] == 0xF8
    assert (raw[:, : x * 2] == 0).all() and (raw[:, (x + w) * 2 : fb_w * 2] == 0).all()
    assert (pad == FILL).all()


def test_fbdev_bars_are_written_once_and_again_on_a_new_size(tmp_path):
    fb_w, fb_h = 200, 100
    path, stride = fb_file(tmp_path, fb_w, fb_h, 32)
    sink = FramebufferSink(fb(path, width=fb_w, height=fb_h, bpp=32))
    sink.show(test_frame(120, 160))
    x = sink.picture_rect[0]
    assert x > 0
    with open(path, "r+b") as f:  # scribble on the left bar behind the sink's back
        f.seek(0)
        f.write(b"\x55" * 8)
    sink.show(test_frame(120, 160))
    raw = np.fromfile(path, np.uint8)
    assert (raw[:8] == 0x55).all(), "bars rewritten on every frame"
    sink.show(test_frame(100, 400))  # another size: new geometry, bars cleared once more
    raw = np.fromfile(path, np.uint8)
    assert (raw[:8] == 0).all()
    sink.close()


def test_fbdev_file_too_small(tmp_path):
    path = tmp_path / "fb.raw"
    path.write_bytes(b"\0" * 1000)
    with pytest.raises(SinkError, match=r"1000 bytes.*80000 bytes"):
        FramebufferSink(fb(path, width=200, height=100, bpp=32))
    assert path.stat().st_size == 1000, "the sink must not grow the file"


@pytest.mark.parametrize("bpp", [8, 24])
def test_fbdev_unsupported_bpp(tmp_path, bpp):
    # The config allows only 16 and 32 (tests/edge/test_config.py); a framebuffer's sysfs may say anything.
    sysfs = fake_sysfs(tmp_path / "sys", 4, {"virtual_size": "64,48", "bits_per_pixel": str(bpp)})
    path, _ = fb_file(tmp_path, 64, 48, 32, name="fb4")
    with pytest.raises(SinkError, match=rf"{bpp} bits per pixel.*16.*32"):
        FramebufferSink(fb(path), sysfs_root=sysfs)


def test_fbdev_plain_file_needs_explicit_geometry(tmp_path):
    path, _ = fb_file(tmp_path, 64, 48, 32)
    with pytest.raises(SinkError, match=r"unknown height, bpp"):
        FramebufferSink(fb(path, width=64))


def test_fbdev_stride_smaller_than_a_row(tmp_path):
    path, _ = fb_file(tmp_path, 64, 48, 32)
    with pytest.raises(SinkError, match="stride 100"):
        FramebufferSink(fb(path, width=64, height=48, bpp=32, stride=100))


def fake_sysfs(root: Path, n: int, files: dict[str, str]) -> Path:
    d = root / f"fb{n}"
    d.mkdir(parents=True)
    for name, text in files.items():
        (d / name).write_text(text + "\n")
    return root


def test_fbdev_geometry_from_sysfs(tmp_path):
    sysfs = fake_sysfs(tmp_path / "sys", 1, {"virtual_size": "200,100", "bits_per_pixel": "16", "stride": "448"})
    dev = tmp_path / "dev"
    dev.mkdir()
    path, _ = fb_file(dev, 200, 100, 16, 448, name="fb1")
    sink = FramebufferSink(fb(path), sysfs_root=sysfs)
    assert (sink.width, sink.height, sink.bpp, sink.stride) == (200, 100, 16, 448)
    assert "200x100 16bpp stride 448" in sink.describe()
    sink.show(test_frame(100, 200))
    sink.close()
    bgr, pad = read_fb(path, 200, 100, 16, 448)
    assert np.abs(bgr.astype(int) - test_frame(100, 200)).max() <= 8
    assert (pad == FILL).all()


def test_fbdev_explicit_values_override_sysfs(tmp_path):
    sysfs = fake_sysfs(tmp_path / "sys", 0, {"virtual_size": "200,100", "bits_per_pixel": "16", "stride": "400"})
    path, _ = fb_file(tmp_path, 200, 100, 32, name="fb0")
    sink = FramebufferSink(fb(path, bpp=32, stride=800), sysfs_root=sysfs)
    assert (sink.width, sink.height, sink.bpp, sink.stride) == (200, 100, 32, 800)
    sink.close()


def test_fbdev_visible_mode_smaller_than_virtual_size(tmp_path):
    # A double-buffered framebuffer: 200x200 virtual, 200x100 shown.
    sysfs = fake_sysfs(tmp_path / "sys", 2, {"virtual_size": "200,200", "mode": "U:200x100p-0", "bits_per_pixel": "32"})
    path, _ = fb_file(tmp_path, 200, 200, 32, name="fb2")
    sink = FramebufferSink(fb(path), sysfs_root=sysfs)
    assert (sink.width, sink.height, sink.stride) == (200, 100, 800)
    sink.close()


def test_fbdev_missing_sysfs_names_what_is_missing(tmp_path):
    path, _ = fb_file(tmp_path, 64, 48, 32, name="fb3")
    with pytest.raises(SinkNotReady, match=r"width, height, bpp.*fb3"):  # not registered yet: retried
        FramebufferSink(fb(path), sysfs_root=tmp_path / "nowhere")


def test_fbdev_permission_denied_hints_the_video_group(tmp_path, monkeypatch):
    path, _ = fb_file(tmp_path, 64, 48, 32)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(fbdev_mod.os, "open", denied)  # works as root too, where chmod would not
    # Late at boot udev may not have given the node its group yet: not ready (retried), with the hint.
    with pytest.raises(SinkNotReady, match=r"permission denied.*'video' group"):
        FramebufferSink(fb(path, width=64, height=48, bpp=32))


def test_fbdev_missing_device(tmp_path):
    with pytest.raises(SinkNotReady, match="no framebuffer"):
        FramebufferSink(fb(tmp_path / "fb9", width=64, height=48, bpp=32), sysfs_root=tmp_path)


def test_fbdev_faults_no_wait_fixes_are_not_retried(tmp_path):
    sysfs = fake_sysfs(tmp_path / "sys", 4, {"virtual_size": "64,48", "bits_per_pixel": "24"})
    path, _ = fb_file(tmp_path, 64, 48, 32, name="fb4")
    with pytest.raises(SinkError) as e:
        FramebufferSink(fb(path), sysfs_root=sysfs)
    assert not isinstance(e.value, SinkNotReady)
    with pytest.raises(SinkError) as e:
        RetryingSink(lambda: FramebufferSink(fb(path), sysfs_root=sysfs), "display fbdev:fb4", "fbdev:fb4")
    assert not isinstance(e.value, SinkNotReady) and "24 bits per pixel" in str(e.value)


def test_a_framebuffer_that_appears_later_is_retried_from_the_loop(tmp_path, caplog):
    # /dev/fb0 late at boot: neither the device nor its sysfs folder exist when the service starts. The
    # loop must run on (frames dropped), retry on the capture source's schedule, and draw once it is there.
    sysfs, dev = tmp_path / "sys", tmp_path / "dev"
    dev.mkdir()
    path = dev / "fb0"
    frame = test_frame(48, 64)
    with caplog.at_level(logging.INFO):
        sink = RetryingSink(lambda: FramebufferSink(fb(path), sysfs_root=sysfs), "display fbdev:fb0", "fbdev:fb0",
                            max_s=0.2)
        assert sink.sink is None and "not ready" in sink.describe() and "fb0" in sink.describe()
        for _ in range(5):
            sink.show(frame)  # dropped, no exception, no sleep
        assert sink.frames_dropped == 5 and sink.attempts >= 1
        fake_sysfs(sysfs, 0, {"virtual_size": "64,48", "bits_per_pixel": "32"})
        fb_file(dev, 64, 48, 32, name="fb0")
        t_end = time.monotonic() + 5
        while sink.sink is None and time.monotonic() < t_end:
            sink.show(frame)
            time.sleep(0.02)
        assert isinstance(sink.sink, FramebufferSink), "never reopened"
        sink.show(frame)
        assert sink.sink.frames_written >= 1 and "64x48 32bpp" in sink.describe()
        assert sink.frames_written == sink.sink.frames_written and sink.picture_rect == (0, 0, 64, 48)  # stands for it
        sink.close()
    bgr, _ = read_fb(path, 64, 48, 32, 64 * 4)
    assert np.array_equal(bgr, frame)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "display fbdev:fb0: not ready" in warnings[0], warnings  # once per outage
    assert any("display fbdev:fb0: connected after" in r.getMessage() for r in caplog.records)


def test_open_sink_retries_a_missing_framebuffer_device(tmp_path, monkeypatch):
    path = tmp_path / "fb6"  # a /dev/fbN name with explicit geometry: sysfs is not needed, the node is
    sink = open_sink(SinkConfig(spec=f"fbdev:{path}", width=64, height=48, bpp=32))
    assert isinstance(sink, RetryingSink) and sink.sink is None and "no framebuffer" in sink.not_ready
    sink.show(test_frame(48, 64))
    assert sink.frames_dropped == 1
    sink.close()

    # Permission denied until udev has set the group: retried too.
    fb_file(tmp_path, 64, 48, 32, name="fb6")
    real_open, calls = os.open, []

    def denied_once(p, *a, **k):
        calls.append(p)
        if len(calls) == 1:
            raise PermissionError(13, "Permission denied")
        return real_open(p, *a, **k)

    monkeypatch.setattr(fbdev_mod.os, "open", denied_once)
    sink = open_sink(SinkConfig(spec=f"fbdev:{path}", width=64, height=48, bpp=32))
    assert sink.sink is None and "'video' group" in sink.not_ready
    t_end = time.monotonic() + 5
    while sink.sink is None and time.monotonic() < t_end:
        sink.show(test_frame(48, 64))
        time.sleep(0.02)
    assert isinstance(sink.sink, FramebufferSink)
    sink.close()


@pytest.mark.parametrize("settings,said", [
    ({"width": 64}, "is not a /dev/fbN framebuffer, so its geometry cannot be read: set sink.height, sink.bpp"),
    ({"width": 64, "height": 48, "bpp": 32, "stride": 100}, "sink.stride 100 is less than sink.width 64 x 4"),
])
def test_fbdev_settings_faults_are_config_errors(tmp_path, settings, said):
    path, _ = fb_file(tmp_path, 64, 48, 32)
    cfg = SinkConfig(spec=f"fbdev:{path}", **settings)
    assert any(said in p for p in cfg.check()), cfg.check()
    with pytest.raises(ConfigError, match=said.split(",")[0]):
        open_sink(cfg)


def test_fbdev_plain_file_must_exist_pre_sized(tmp_path):
    missing = SinkConfig(spec=f"fbdev:{tmp_path / 'screen.raw'}", width=64, height=48, bpp=32)
    assert "does not exist: a framebuffer file must exist, pre-sized to 12288 bytes" in missing.check()[0]
    short = tmp_path / "short.raw"
    short.write_bytes(b"\0" * 100)
    assert "holds 100 bytes" in SinkConfig(spec=f"fbdev:{short}", width=64, height=48, bpp=32).check()[0]
    # a device node (any name under /dev, or /dev/fbN anywhere) may appear later: no config fault
    assert SinkConfig(spec="fbdev:/dev/fb-hdmi", width=64, height=48, bpp=32).check() == []
    assert SinkConfig(spec="fbdev:/dev/fb0").check() == []
    assert SinkConfig(spec=f"fbdev:{tmp_path / 'fb1'}").check() == []


def test_fbdev_show_after_close(tmp_path):
    path, _ = fb_file(tmp_path, 64, 48, 32)
    sink = FramebufferSink(fb(path, width=64, height=48, bpp=32))
    sink.close()
    sink.close()
    with pytest.raises(SinkError, match="closed"):
        sink.show(test_frame(48, 64))


# ---------------------------------------------------------------- video


def read_video(path: Path) -> tuple[int, tuple[int, int], float, list[np.ndarray]]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    size = (frames[0].shape[1], frames[0].shape[0]) if frames else (0, 0)
    return len(frames), size, fps, frames


def test_video_sink_writes_a_readable_mp4(tmp_path):
    path = tmp_path / "out.mp4"
    frame = test_frame(120, 160)
    with VideoSink(VideoSinkConfig(path=str(path), fps=15.0)) as sink:
        for _ in range(12):
            sink.show(frame)
        assert sink.frames_written == 12
        assert "160x120" in sink.describe()
    n, size, fps, frames = read_video(path)
    assert (n, size) == (12, (160, 120))
    assert fps == pytest.approx(15.0, abs=0.01)
    assert np.abs(frames[5].astype(int) - frame).mean() < 10


def test_video_sink_resizes_a_changed_frame_size(tmp_path, caplog):
    path = tmp_path / "out.mp4"
    sink = VideoSink(VideoSinkConfig(path=str(path), fps=10.0))
    with caplog.at_level(logging.WARNING, logger="edge.sinks.video"):
        for _ in range(3):
            sink.show(test_frame(120, 160))
        for _ in range(4):
            sink.show(test_frame(240, 320))
    sink.close()
    assert sum("frame size changed" in r.message for r in caplog.records) == 1
    n, size, _, _ = read_video(path)
    assert (n, size) == (7, (160, 120))


def test_video_sink_needs_an_existing_folder(tmp_path):
    # a settings fault (exit code 2, found by check-config), not an output that failed (5: restarted)
    with pytest.raises(ConfigError, match=str(tmp_path / "missing")):
        VideoSink(VideoSinkConfig(path=str(tmp_path / "missing" / "out.mp4"), fps=30.0))


def test_video_sink_settings_faults(tmp_path):
    def check(path) -> str:
        return " ".join(VideoSinkConfig(path=str(path)).check())

    assert "folder '/nonexistent/dir' does not exist" in check("/nonexistent/dir/out.mp4")
    assert "is a folder: give a file name in it" in check(tmp_path)
    (tmp_path / "file").write_text("x")
    assert "is not a folder" in check(tmp_path / "file" / "out.mp4")
    (tmp_path / "link.mp4").symlink_to(tmp_path / "elsewhere.mp4")
    assert "is a symbolic link" in check(tmp_path / "link.mp4")
    assert check(tmp_path / "out.mp4") == ""
    with pytest.raises(ConfigError, match="does not exist"):
        open_sink(SinkConfig(spec="video:/nonexistent/dir/out.mp4"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_video_sink_unwritable_folder_is_a_settings_fault(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    assert "is not writable by this user" in VideoSinkConfig(path=str(folder / "o.mp4")).check()[0]


def test_video_sink_file_is_private_whatever_the_umask(tmp_path):
    # It holds whole video-out frames (patient details): 0600 like a recording, even under umask 000, and an
    # existing file of another mode is made private too.
    old = os.umask(0)
    try:
        for name, existing in (("new.mp4", None), ("old.mp4", 0o666)):
            path = tmp_path / name
            if existing is not None:
                path.write_bytes(b"old")
                path.chmod(existing)
            with VideoSink(VideoSinkConfig(path=str(path), fps=10.0)) as sink:
                sink.show(test_frame(48, 64))
                assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
            assert read_video(path)[0] == 1
    finally:
        os.umask(old)


def test_video_sink_closed(tmp_path):
    sink = VideoSink(VideoSinkConfig(path=str(tmp_path / "out.mp4"), fps=30.0))
    sink.close()
    sink.close()
    with pytest.raises(SinkError, match="closed"):
        sink.show(test_frame(120, 160))


# ---------------------------------------------------------------- window


def test_window_sink_without_display_or_gui_raises(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SinkError, match=r"opencv-python.*DISPLAY"):
        WindowSink()


@pytest.mark.skipif(window_mod.gui_backend() != "NONE", reason="this OpenCV has a GUI backend")
def test_window_sink_on_headless_opencv_says_what_to_install(monkeypatch):
    monkeypatch.setenv("DISPLAY", ":99")  # a display alone does not help a headless build
    with pytest.raises(SinkError, match=r"without a GUI.*install 'opencv-python' instead of 'opencv-python-headless'"):
        WindowSink()


def test_window_sink_no_display_message(monkeypatch):
    monkeypatch.setattr(window_mod, "gui_backend", lambda: "GTK3")
    monkeypatch.setattr(window_mod.sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SinkError, match=r"no display.*\$DISPLAY"):
        WindowSink()


@pytest.mark.skipif(window_mod.gui_backend() != "NONE", reason="a real GUI build would try to open :99")
def test_window_sink_cv2_error_becomes_sink_error(monkeypatch):
    # The build-information check can be wrong (custom builds): namedWindow's cv2.error is caught too.
    monkeypatch.setattr(window_mod, "gui_backend", lambda: "UNKNOWN")
    monkeypatch.setenv("DISPLAY", ":99")
    with pytest.raises(SinkError, match="cannot open an OpenCV window"):
        WindowSink()


def test_window_sink_takes_its_config(monkeypatch):
    calls = []
    monkeypatch.setattr(window_mod, "gui_backend", lambda: "GTK3")
    monkeypatch.setattr(window_mod, "_has_display", lambda: True)
    monkeypatch.setattr(window_mod.cv2, "namedWindow", lambda *a: calls.append(("named", *a)))
    monkeypatch.setattr(window_mod.cv2, "setWindowProperty", lambda *a: calls.append(("property", *a)))
    sink = WindowSink(WindowSinkConfig(fullscreen=False), title="review")
    assert calls == [("named", "review", cv2.WINDOW_NORMAL)] and not sink.fullscreen
    calls.clear()
    sink = WindowSink(SinkConfig(spec="window"))
    assert calls[1] == ("property", "nerveseg", cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_FULLSCREEN) and sink.fullscreen


# ---------------------------------------------------------------- null and factory


def test_null_sink_counts():
    sink = NullSink()
    for _ in range(3):
        sink.show(test_frame(48, 64))
    assert sink.frames == 3 and sink.take_commands() == () and sink.describe() == "null"


def test_open_sink_kinds(tmp_path, monkeypatch):
    null = open_sink(SinkConfig(spec="null"))
    assert isinstance(null, NullSink) and isinstance(null, Sink)

    path, _ = fb_file(tmp_path, 64, 48, 16)
    fbs = open_sink(SinkConfig(spec=f"fbdev:{path}", width=64, height=48, bpp=16))
    # the framebuffer may appear late at boot: wrapped so that the loop retries it; here it opens at once
    assert isinstance(fbs, RetryingSink) and isinstance(fbs, Sink) and fbs.not_ready is None
    assert isinstance(fbs.sink, FramebufferSink) and fbs.sink.bpp == 16
    assert fbs.sink.cfg == fb(path, width=64, height=48, bpp=16)  # the sink keeps its own typed config
    fbs.close()

    for cfg_fps, hint, want in ((None, 19.0, 19.0), (None, None, 30.0), (10.0, 19.0, 10.0)):
        video = open_sink(SinkConfig(spec=f"video:{tmp_path / 'a.mp4'}", fps=cfg_fps), fps_hint=hint)
        assert isinstance(video, VideoSink) and isinstance(video, Sink) and video.fps == want
        video.close()

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SinkError):
        open_sink(SinkConfig(spec="window"))


def test_importing_sinks_opens_nothing_and_loads_no_backend():
    code = (
        "import sys, edge.sinks; "
        "print(sorted(m for m in sys.modules if m.startswith('edge.sinks.') and m != 'edge.sinks.base')); "
        "assert 'cv2' not in sys.modules"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2]
    )
    assert out.stdout.strip() == "['edge.sinks.settings']"  # the config models: pydantic only
