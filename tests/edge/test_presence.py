"""Presence hysteresis and mask stabilisation."""

from __future__ import annotations

import numpy as np
import pytest

from edge.presence import PresenceTracker
from edge.types import Result


def _r(p: float, mask: np.ndarray | None = None) -> Result:
    return Result(mask=np.full((4, 5), p, np.float32) if mask is None else mask, p_nerve=p, t_infer_ns=0)


def _run(tracker: PresenceTracker, ps: list[float]) -> list[bool]:
    return [tracker.update(_r(p)).nerve for p in ps]


def test_switches_on_only_after_min_frames_on():
    t = PresenceTracker(enter=0.6, exit=0.4, min_frames_on=3, min_frames_off=2)
    assert _run(t, [0.9, 0.9, 0.9, 0.9]) == [False, False, True, True]


def test_interrupted_run_does_not_switch_on():
    t = PresenceTracker(enter=0.6, exit=0.4, min_frames_on=3, min_frames_off=2)
    assert _run(t, [0.9, 0.9, 0.1, 0.9, 0.9]) == [False] * 5


def test_switches_off_only_after_min_frames_off():
    t = PresenceTracker(enter=0.6, exit=0.4, min_frames_on=1, min_frames_off=3)
    assert _run(t, [0.9, 0.1, 0.1, 0.1, 0.1]) == [True, True, True, False, False]


def test_between_thresholds_holds_state_and_resets_runs():
    t = PresenceTracker(enter=0.6, exit=0.4, min_frames_on=2, min_frames_off=2)
    assert _run(t, [0.9, 0.5, 0.9, 0.5, 0.9, 0.9]) == [False, False, False, False, False, True]
    assert _run(t, [0.5] * 10) == [True] * 10
    assert _run(t, [0.1, 0.5, 0.1, 0.1]) == [True, True, True, False]


def test_no_flicker_around_a_single_threshold():
    # Raw per-frame decisions at 0.5 would toggle every frame; the tracker must not.
    t = PresenceTracker(enter=0.6, exit=0.4, min_frames_on=3, min_frames_off=5)
    ps = [0.58, 0.42] * 20
    decisions = _run(t, ps)
    assert len(set(decisions)) == 1


def test_mask_only_while_nerve_and_smoothed():
    t = PresenceTracker(enter=0.6, exit=0.4, min_frames_on=1, min_frames_off=1, alpha=0.5)
    d0 = t.update(_r(0.1, np.zeros((4, 5), np.float32)))
    assert not d0.nerve and d0.mask is None
    d1 = t.update(_r(0.9, np.ones((4, 5), np.float32)))
    assert d1.nerve
    np.testing.assert_allclose(d1.mask, 0.5)  # EMA of 0 then 1 with alpha 0.5
    d2 = t.update(_r(0.9, np.ones((4, 5), np.float32)))
    np.testing.assert_allclose(d2.mask, 0.75)
    d2.mask[:] = 99  # the decision owns its copy; the tracker's state is untouched
    d3 = t.update(_r(0.9, np.ones((4, 5), np.float32)))
    np.testing.assert_allclose(d3.mask, 0.875)


def test_alpha_one_means_no_smoothing():
    t = PresenceTracker(enter=0.6, exit=0.4, min_frames_on=1, min_frames_off=1, alpha=1.0)
    rng = np.random.default_rng(0)
    for _ in range(3):
        m = rng.random((4, 5)).astype(np.float32)
        np.testing.assert_array_equal(t.update(_r(0.9, m)).mask, m)


def test_reset_forgets_state():
    t = PresenceTracker(enter=0.6, exit=0.4, min_frames_on=1, min_frames_off=5)
    assert t.update(_r(0.9)).nerve
    t.reset()
    assert not t.update(_r(0.5)).nerve


@pytest.mark.parametrize(
    "kw", [dict(enter=0.4, exit=0.6), dict(enter=0.6, exit=0.0), dict(min_frames_on=0), dict(alpha=0.0),
           dict(p_alpha=0.0), dict(p_alpha=1.5)]
)
def test_invalid_parameters(kw):
    args = dict(enter=0.6, exit=0.4) | kw
    with pytest.raises(ValueError):
        PresenceTracker(**args)


def test_rules_come_from_the_spec_unless_the_config_sets_them():
    from edge.config import PresenceConfig
    from edge.errors import ConfigError
    from edge.plan import settle_rules
    from edge.spec import ThresholdsSpec

    spec = ThresholdsSpec(mask=0.4, presence_enter=0.8, presence_exit=0.7, min_frames_on=2, min_frames_off=9,
                          mask_smoothing=0.3, presence_smoothing=0.25)
    assert settle_rules(PresenceConfig(), spec).as_dict() == {
        "enter": 0.8, "exit": 0.7, "min_frames_on": 2, "min_frames_off": 9, "alpha": 0.3, "mask_threshold": 0.4,
        "p_alpha": 0.25, "first_frame_decides": False}
    cfg = PresenceConfig(enter=0.75, min_frames_off=4, mask_smoothing=1.0, smoothing=0.5, first_frame_decides=True)
    rules = settle_rules(cfg, spec)
    assert rules.as_dict() == {"enter": 0.75, "exit": 0.7, "min_frames_on": 2, "min_frames_off": 4,
                               "alpha": 1.0, "mask_threshold": 0.4, "p_alpha": 0.5, "first_frame_decides": True}
    assert rules.origin["p_alpha"] == "config" and rules.tracker().p_alpha == 0.5
    assert rules.tracker().first_frame_decides
    # an enter below the spec's exit is no hysteresis: refused, naming both and where each came from
    with pytest.raises(ConfigError, match=r"presence.exit = 0.7 \(the model spec\) is above presence.enter = 0.6 "
                       r"\(this config\)"):
        settle_rules(PresenceConfig(enter=0.6), spec)
    # a spec written before the temporal rules were part of it keeps the old defaults
    old = ThresholdsSpec.model_validate({"mask": 0.5, "presence_enter": 0.6, "presence_exit": 0.4})
    assert (old.min_frames_on, old.min_frames_off, old.mask_smoothing, old.presence_smoothing,
            old.first_frame_decides) == (3, 5, 0.5, 1.0, False)


def test_thresholds_compare_the_running_average_of_p():
    # P wandering either side of enter: frame by frame the outline blinks; averaged it comes on once and stays
    ps = [0.3] * 5 + [0.95, 0.80] * 20
    raw = PresenceTracker(enter=0.85, exit=0.84, min_frames_on=1, min_frames_off=1)
    blinking = _run(raw, ps)
    assert sum(a != b for a, b in zip(blinking, blinking[1:], strict=False)) > 30
    avg = PresenceTracker(enter=0.85, exit=0.84, min_frames_on=1, min_frames_off=1, p_alpha=0.2)
    steady = _run(avg, ps)
    assert steady[-20:] == [True] * 20 and sum(a != b for a, b in zip(steady, steady[1:], strict=False)) == 1


def test_decision_carries_the_frame_p_and_the_averaged_p():
    t = PresenceTracker(enter=0.6, exit=0.4, min_frames_on=1, min_frames_off=1, p_alpha=0.5)
    want = None
    for p in (0.2, 1.0, 0.6, 0.0):
        d = t.update(_r(p))
        want = p if want is None else want + 0.5 * (p - want)
        assert d.p_nerve == p and d.p_vote == pytest.approx(want) and d.p_shown == d.p_vote
    assert [d.nerve for d in [t.update(_r(0.1))]] == [False]
    # 0.2 -> 0.6 -> 0.6 -> 0.3: on at the second frame (0.6 >= enter), off at the fourth (0.3 < exit)
    t2 = PresenceTracker(enter=0.6, exit=0.4, min_frames_on=1, min_frames_off=1, p_alpha=0.5)
    assert _run(t2, [0.2, 1.0, 0.6, 0.0]) == [False, True, True, False]
    # without averaging the decision quotes the frame's own P
    d = PresenceTracker(enter=0.6, exit=0.4).update(_r(0.7))
    assert d.p_vote == 0.7 and d.p_shown == 0.7


def test_reset_forgets_the_average():
    t = PresenceTracker(enter=0.6, exit=0.4, min_frames_on=1, min_frames_off=1, p_alpha=0.1)
    assert t.update(_r(0.95)).nerve
    t.reset()
    d = t.update(_r(0.1))
    assert d.p_vote == pytest.approx(0.1) and not d.nerve


def test_the_first_frame_may_decide_the_state():
    # a probe placed on the plexus: by default "No nerve found" for min_frames_on - 1 frames, then the outline
    default = PresenceTracker(enter=0.6, exit=0.4, min_frames_on=3, min_frames_off=3)
    assert _run(default, [0.9] * 4) == [False, False, True, True]
    first = PresenceTracker(enter=0.6, exit=0.4, min_frames_on=3, min_frames_off=3, first_frame_decides=True)
    assert _run(first, [0.9] * 4) == [True] * 4
    # only the first frame: afterwards the hysteresis holds as before
    assert _run(first, [0.1, 0.1, 0.1, 0.9, 0.9, 0.9]) == [True, True, False, False, False, True]
    # a first frame voting "no nerve" (or between the thresholds) starts at "no nerve"
    for p0 in (0.1, 0.5):
        t = PresenceTracker(enter=0.6, exit=0.4, min_frames_on=3, min_frames_off=3, first_frame_decides=True)
        assert _run(t, [p0, 0.9, 0.9, 0.9]) == [False, False, False, True]
    # after a gap (reset) the first frame decides again
    first.reset()
    assert _run(first, [0.9]) == [True]
