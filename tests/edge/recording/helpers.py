"""What the recording tests share: the real loop with stand-ins only at the edges.

A spy observer that sees what the loop saw (and presses 'record' through the command
channel), a sink that types keys like the window sink, fake statvfs results for a disk
that fills up, small tmpfs mounts where the kernel allows them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from edge.config import Config, RecordConfig
from edge.control import RECORD_TOGGLE
from edge.pipeline import FrameEvent, Pipeline, PipelineObserver
from edge.plan import resolve_run
from edge.recording.session import FRAMES_FILE, MANIFEST_FILE, list_sessions
from edge.recording.trigger import Open, Trigger, Write
from edge.runner import ModelRunner
from edge.sinks.null import NullSink
from edge.sources import open_source

REPO = Path(__file__).resolve().parents[3]
# The lung clips and the Kaggle frames hold the ultrasound image alone, no machine interface: their ROI is the
# whole frame, said explicitly because a recording config must say where the image is.
LUNG_ROI = ({"x": 0, "y": 0, "w": 234, "h": 234}, {"x": 0, "y": 0, "w": 208, "h": 208})  # lung_clips[0], [1]
KAGGLE_ROI = {"x": 0, "y": 0, "w": 580, "h": 420}


class Spy(PipelineObserver):
    """Sees what the loop saw; optionally presses 'record' (a manual toggle) at given frames.

    Placed before the recorder, a toggle at seq N applies from frame N on.
    """

    def __init__(self, toggles_at: tuple[int, ...] = (), keep_images: bool = False):
        self.toggles_at = set(toggles_at)
        self.keep_images = keep_images
        self.frames: list[dict] = []
        self.notices: list[str | None] = []

    def on_frame(self, pipeline: Pipeline, event: FrameEvent) -> None:
        from edge.recording.recorder import NOTICE_KEY

        if event.seq in self.toggles_at:
            pipeline.commands.request(RECORD_TOGGLE)
        d = {"seq": event.seq, "t": event.frame.t_capture_ns,
             "nerve": bool(event.decision and event.decision.nerve),
             "analysed": event.result is not None,
             "p": event.result.p_nerve if event.result else None,
             "p_vote": event.decision.p_vote if event.decision else None}
        if self.keep_images and event.roi_raw is not None:
            d["raw"] = event.roi_raw.copy()  # the recorder may blank its own copy later
            d["input"] = event.model_input.copy()
        self.frames.append(d)
        self.notices.append(pipeline.notices.get(NOTICE_KEY))


class KeySink(NullSink):
    """A display whose operator presses 'r' after the frames numbered in ``presses_after`` were shown
    (0 = the first frame): `take_commands` hands the presses to the loop like `WindowSink` does."""

    def __init__(self, presses_after: tuple[int, ...]) -> None:
        super().__init__()
        self._presses = set(presses_after)
        self._shown = 0
        self._typed: list[str] = []

    def show(self, image: np.ndarray) -> None:
        if self._shown in self._presses:
            self._typed.append(RECORD_TOGGLE)
        self._shown += 1

    def take_commands(self) -> tuple[str, ...]:
        out, self._typed = tuple(self._typed), []
        return out


class ShownSink(NullSink):
    """A monitor that keeps what it was shown."""

    def __init__(self) -> None:
        super().__init__()
        self.shown: list[np.ndarray] = []

    def show(self, image: np.ndarray) -> None:
        self.shown.append(image.copy())


def run_loop(cfg: Config, runner: ModelRunner, observers, sink=None, drop_frames: bool = False):
    """Run the live loop over ``cfg.source`` with ``observers``; (pipeline, stats)."""
    with open_source(cfg.source) as src:
        pipe = Pipeline(resolve_run(cfg, runner=runner), src, runner, sink or NullSink(), drop_frames=drop_frames,
                        observers=observers)
        stats = pipe.run()
    return pipe, stats


def fps_run(cfg: Config, runner: ModelRunner, observers) -> tuple[float, Pipeline]:
    """The loop as live (frames dropped when busy): its fps, and the pipeline."""
    pipe, stats = run_loop(cfg, runner, observers, drop_frames=True)
    return stats.fps, pipe


def sessions(root: Path) -> list[tuple[dict, list[dict], Path]]:
    """(manifest, frame lines, folder) of each session under ``root``, oldest first."""
    out = []
    for s in list_sessions(root):
        manifest = json.loads((s / MANIFEST_FILE).read_text())
        lines = [json.loads(x) for x in (s / FRAMES_FILE).read_text().splitlines()]
        out.append((manifest, lines, s))
    return out


def expected_sessions(frames: list[dict], cfg: RecordConfig, toggles_at=()) -> list[list[int]]:
    """Which seqs each session should hold, by the rules (`Trigger`, tested on its own in test_trigger.py)
    applied to what the loop saw. Sessions are split only by time here (no byte sizes)."""
    trigger = Trigger(cfg.mode, cfg.pre_roll_s, cfg.post_roll_s, cfg.max_session_s)
    out: list[list[int]] = []
    for f in frames:
        frame = SimpleNamespace(seq=f["seq"], t_ns=f["t"], nerve=f["nerve"], analysed=f["analysed"],
                                toggles=int(f["seq"] in toggles_at), drops=0, nbytes=0)
        for a in trigger.step(frame):
            if isinstance(a, Open):
                out.append([])
            elif isinstance(a, Write):
                out[-1].append(a.frame.seq)
    return out


def fake_session(root: Path, name: str, nbytes: int) -> Path:
    """A finished session folder ``name`` holding ``nbytes`` as retention counts them (apparent size: a
    sparse file, so megabytes cost no disk)."""
    d = root / name
    d.mkdir(parents=True)
    with open(d / "raw.bin", "wb") as f:
        f.truncate(nbytes)
    return d


def free_space(nbytes: dict[str, float]):
    """A statvfs stand-in reporting ``nbytes["free"]`` free bytes (changeable while the loop runs)."""

    def statvfs(path: Path) -> SimpleNamespace:
        os.stat(path)  # a missing folder still fails as it would
        return SimpleNamespace(f_bavail=int(nbytes["free"]), f_frsize=1)

    return statvfs


def mount_tmpfs(path: Path, size: str) -> str | None:
    """Mount a small tmpfs at ``path``; the reason it cannot be done, or None."""
    if not sys.platform.startswith("linux"):
        return "tmpfs mounts need Linux"
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {r.stderr.strip() or r.returncode}"
    return None


def umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], check=False)
