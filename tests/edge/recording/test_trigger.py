"""The recording rules alone: per-frame inputs -> the actions the writer is told to carry out.

No threads, no files, no model. Each case is a row of frames, one every 10 ms of capture
time, written as one character each:

    .  analysed, "no nerve"       n  analysed, "nerve"        -  not analysed (nothing to write)
    t  a manual toggle, then a "no nerve" frame               d  "no nerve", 1 frame dropped before it
    !  the disk is full (between frames)                      ?  recording fails (between frames)

and the expected actions, one line per frame that has any, "SEQ: ACTIONS": ``open(REASON,pre=K)``,
``wS`` (write frame S; ``wSp``: as pre-roll), ``dropN`` (N frames lost inside the session),
``close(REASON)``. The loop's end comes last ("end: ...").
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from edge.config import RecordConfig
from edge.recording.trigger import QUOTA_SHARE, Close, Dropped, Open, PreRoll, Trigger, Write

POST = "close(trigger ended (post-roll done))"
MAX_S = "close(record.max_session_s reached)"


@dataclass
class F:
    seq: int
    t_ns: int
    nerve: bool = False
    analysed: bool = True
    toggles: int = 0
    drops: int = 0
    nbytes: int = 1


def _render(actions) -> str:
    out = []
    for a in actions:
        if isinstance(a, Open):
            out.append(f"open({a.reason},pre={a.pre_roll})")
        elif isinstance(a, Write):
            out.append(f"w{a.frame.seq}{'p' if a.pre_roll else ''}")
        elif isinstance(a, Dropped):
            out.append(f"drop{a.n}")
        elif isinstance(a, Close):
            out.append(f"close({a.reason})")
    return " ".join(out)


def play(trigger: Trigger, frames: str, late_drops: int = 0, session_bytes: list[float] | None = None) -> list[str]:
    """Feed ``frames`` (the notation above) to ``trigger``; the non-empty action lines."""
    lines = []
    seq = 0

    def emit(label, actions):
        if actions:
            lines.append(f"{label}: {_render(actions)}")

    for c in frames:
        if c == "!":
            emit("!", trigger.disk_full())
            continue
        if c == "?":
            emit("?", trigger.fail("error: broken"))
            continue
        f = F(seq, seq * 10_000_000, nerve=c == "n", analysed=c != "-", toggles=int(c == "t"), drops=int(c == "d"))
        emit(seq, trigger.step(f, session_bytes=session_bytes[seq] if session_bytes else 0))
        seq += 1
    emit("end", trigger.finish("loop ended", late_drops))
    return lines


CASES = {
    "always: from the first analysed frame; a stretch not analysed neither writes nor ends it": (
        Trigger("always", pre_roll_s=1.0), "--..---..",
        ["2: open(always,pre=0) w2", "3: w3", "7: w7", "8: w8", "end: close(loop ended)"],
    ),
    "on-detection: pre-roll within 25 ms before the trigger, post-roll 20 ms after the last nerve": (
        Trigger("on-detection", pre_roll_s=0.025, post_roll_s=0.02), "....nn....",
        ["4: open(nerve detected,pre=2) w2p w3p w4", "5: w5", "6: w6", "7: w7", f"8: {POST}"],
    ),
    "on-detection: a nerve within the post-roll keeps the session going": (
        Trigger("on-detection", post_roll_s=0.02), "n.n...",
        ["0: open(nerve detected,pre=0) w0", "1: w1", "2: w2", "3: w3", "4: w4", f"5: {POST}"],
    ),
    "on-detection: the next pre-roll never repeats frames already written": (
        Trigger("on-detection", pre_roll_s=0.5, post_roll_s=0.01), "nn..n",
        ["0: open(nerve detected,pre=0) w0", "1: w1", "2: w2", f"3: {POST}",
         "4: open(nerve detected,pre=1) w3p w4", "end: close(loop ended)"],
    ),
    "pre-roll: frames not analysed are not in it": (
        Trigger("on-detection", pre_roll_s=1.0), "..-.n",
        ["4: open(nerve detected,pre=3) w0p w1p w3p w4", "end: close(loop ended)"],
    ),
    "pre-roll: held within its memory cap (newest frames kept)": (
        Trigger("on-detection", pre_roll_s=1.0, buffer_bytes=2), "....n",
        ["4: open(nerve detected,pre=2) w2p w3p w4", "end: close(loop ended)"],
    ),
    "manual: a toggle starts with its own frame, the next one stops (no post-roll)": (
        Trigger("manual", pre_roll_s=0.0), "..t..t...",
        ["2: open(manual,pre=0) w2", "3: w3", "4: w4", f"5: {POST}"],
    ),
    "manual: a stretch not analysed does not end it; 'off' waits for the post-roll": (
        Trigger("manual", post_roll_s=0.02), "t.---t...",
        ["0: open(manual,pre=0) w0", "1: w1", "5: w5", "6: w6", f"7: {POST}"],
    ),
    "always / on-detection: toggles are ignored": (
        Trigger("on-detection"), "t.tn",
        ["3: open(nerve detected,pre=0) w3", "end: close(loop ended)"],
    ),
    "split at max_session_s (from the first frame, pre-roll included); the post-roll deadline carries over": (
        Trigger("manual", pre_roll_s=0.01, post_roll_s=0.03, max_session_s=0.025), ".t..t.....",
        ["1: open(manual,pre=1) w0p w1", "2: w2", f"3: {MAX_S} open(continued,pre=0) w3", "4: w4", "5: w5",
         f"6: {MAX_S} open(continued,pre=0) w6", f"7: {POST}"],
    ),
    "drops: between a session's frames are its own, before its first frame are not": (
        Trigger("on-detection", pre_roll_s=1.0, post_roll_s=0.0), "dd.nd-d.",
        ["3: open(nerve detected,pre=3) drop1 w0p w1p w2p w3", f"4: {POST}"],
    ),
    "drops: a frame not analysed still books them; the loop's end books the late ones": (
        Trigger("always"), ".d-d",
        ["0: open(always,pre=0) w0", "1: drop1 w1", "3: drop1 w3", "end: drop2 close(loop ended)"],
    ),
    "full disk: closes the session, frames meanwhile are not kept, a manual toggle retries": (
        Trigger("manual", pre_roll_s=1.0), "t.!..t.",
        ["0: open(manual,pre=0) w0", "1: w1", "!: close(disk full)", "4: open(manual,pre=0) w4", "5: w5",
         "end: close(loop ended)"],
    ),
    "full disk: after a retry the next toggle is 'off' again": (
        Trigger("manual"), "t!t.t.",
        ["0: open(manual,pre=0) w0", "!: close(disk full)", "1: open(manual,pre=0) w1", "2: w2", f"3: {POST}"],
    ),
    "full disk: in always mode nothing restarts recording": (
        Trigger("always"), "..!.t.",
        ["0: open(always,pre=0) w0", "1: w1", "!: close(disk full)"],
    ),
    "full disk while idle: nothing to close, recording stays stopped": (
        Trigger("on-detection"), "..!n",
        [],
    ),
    "an error stops recording for good, toggles or not": (
        Trigger("manual"), "t.?t.t",
        ["0: open(manual,pre=0) w0", "1: w1", "?: close(error: broken)"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_trigger_rules(case):
    trigger, frames, expected = CASES[case]
    late = 2 if case.startswith("drops: a frame not analysed") else 0
    assert play(trigger, frames, late_drops=late) == expected


def test_split_by_size_once_the_session_holds_a_frame():
    # session_bytes is what the open session holds before each frame; split at 100 bytes.
    t = Trigger("always", split_bytes=100)
    assert play(t, ".....", session_bytes=[0, 120, 50, 100, 10]) == [
        "0: open(always,pre=0) w0",  # 0 bytes: nothing written yet
        "1: close(session size reached 0.25 of record.max_gb) open(continued,pre=0) w1",
        "2: w2",
        "3: close(session size reached 0.25 of record.max_gb) open(continued,pre=0) w3",
        "4: w4",
        "end: close(loop ended)",
    ]
    # the very first frame of a session never splits it, whatever the size
    assert play(Trigger("always", split_bytes=0), "..", session_bytes=[500, 500])[:2] == [
        "0: open(always,pre=0) w0", "1: close(session size reached 0.25 of record.max_gb) open(continued,pre=0) w1"]


def test_state_follows_the_rules():
    t = Trigger("manual")
    assert t.state == "idle" and not t.recording
    t.step(F(0, 0, toggles=1))
    assert t.state == "recording" and t.manual_on
    t.disk_full()
    assert t.state == "stopped_disk_full" and not t.manual_on
    t.toggle()  # a retry
    assert t.state == "idle" and t.manual_on
    t.fail("error: x")
    assert t.state == "error"
    t.toggle(2)
    assert t.state == "error"


def test_discard_books_a_lost_frame_only_inside_a_session():
    t = Trigger("always")
    assert t.discard(F(0, 0, drops=3)) == []
    t.step(F(0, 0))
    assert t.discard(F(1, 10, drops=3)) == [Dropped(4)]


def test_from_config_uses_the_record_section():
    cfg = RecordConfig(mode="on-detection", pre_roll_s=0.02, post_roll_s=0.01, max_gb=0.01, buffer_mb=1)
    t = Trigger.from_config(cfg)
    # pre-roll 20 ms: two frames; post-roll 10 ms; split at QUOTA_SHARE of max_gb = 2.5 MB
    split = 0.01e9 * QUOTA_SHARE
    assert play(t, "...n.n", session_bytes=[0, 0, 0, 0, split - 1, split]) == [
        "3: open(nerve detected,pre=2) w1p w2p w3", "4: w4",
        "5: close(session size reached 0.25 of record.max_gb) open(continued,pre=0) w5", "end: close(loop ended)"]
    with pytest.raises(ValueError, match="off"):
        Trigger("off")


def test_pre_roll_ring_alone():
    ring = PreRoll(0.02, max_bytes=10)
    for k in range(5):
        ring.add(F(k, k * 10_000_000, nbytes=3))
    assert [f.seq for f in ring.take(45_000_000)] == [3, 4]  # within 20 ms before 45 ms (2 at 20 ms left the ring)
    assert len(ring) == 0
    ring.add(F(0, 0, nbytes=100))  # over the cap alone: still kept, it is the newest
    assert len(ring) == 1
    assert len(PreRoll(0.0)) == 0 and PreRoll(0.0).take(0) == []
