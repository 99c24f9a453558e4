"""Another model over a recording: where it disagrees with what the box showed (`compare_session`)."""

from __future__ import annotations

import csv
import io
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.analyze import Analyzer, network_input
from edge.errors import UsageError
from edge.plan import settle_rules
from edge.recording.session import make_private_dir
from edge.review.read import Session
from edge.review.show import warn_skipped, write_export
from edge.runner import ModelRunner
from edge.spec import PreprocessSpec
from edge.types import Result

logger = logging.getLogger(__name__)

DEFAULT_DICE_THRESHOLD = 0.7
COMPARE_COLUMNS = ("i", "seq", "t_capture", "p_recorded", "p_new", "vote_recorded", "vote_new",
                   "decision_recorded", "decision_new", "dice", "input_reproduced", "disagree", "reason")

# -- another model over the recording ---------------------------------------------------------------


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty."""
    sa, sb = int(a.sum()), int(b.sum())
    if sa + sb == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / (sa + sb)


@dataclass
class CompareReport:
    """Where a model re-run over a session disagrees with what the box said.

    A frame disagrees when the per-frame presence votes differ (P >= each model's
    ``enter`` threshold), or when both vote "nerve" and the masks' Dice is below
    ``dice_threshold``. ``decision_*`` are the smoothed verdicts (hysteresis; the new
    model's starts from a fresh state at the session's first frame), reported only.
    """

    session: str
    model_recorded: str
    model_new: str
    dice_threshold: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # ``i`` of frames whose PNGs could not be read

    @property
    def frames(self) -> int:
        return len(self.rows)

    @property
    def disagreements(self) -> int:
        return sum(r["disagree"] for r in self.rows)

    def count(self, reason: str) -> int:
        return sum(r["reason"] == reason for r in self.rows)

    @property
    def decision_disagreements(self) -> int:
        return sum(r["decision_recorded"] != r["decision_new"] for r in self.rows)

    @property
    def mean_dice_both_nerve(self) -> float | None:
        d = [r["dice"] for r in self.rows if r["vote_recorded"] and r["vote_new"]]
        return float(np.mean(d)) if d else None

    @property
    def inputs_checked(self) -> int:
        return sum(r["input_reproduced"] is not None for r in self.rows)

    @property
    def inputs_reproduced(self) -> int:
        return sum(r["input_reproduced"] is True for r in self.rows)


def compare_session(session: Session, runner: ModelRunner, dice_threshold: float = DEFAULT_DICE_THRESHOLD,
                    ) -> CompareReport:
    """Run ``runner``'s model over every recorded raw frame and compare with the recorded outputs.

    Preprocessing is `edge.preprocess.preprocess` with the new model's spec on the
    recorded ROI crop (the crop *is* the ROI). The recorded run's thresholds come
    from its manifest; the new model's from the recorded config's ``presence``
    overrides, else its own spec. ``input_reproduced`` says whether preprocessing the
    recorded raw frame with the *recorded* model's spec gives the exact model input
    the box used (CRC-32 match): it checks the recording itself.
    """
    if not 0.0 <= dice_threshold <= 1.0:
        raise UsageError(f"--dice-threshold must be in [0, 1], got {dice_threshold}")
    rec_t = session.thresholds
    spec = runner.spec
    # the recorded config's presence overrides on the new model's spec, settled as the live loop does
    rules = settle_rules(session.presence_config(), spec.thresholds, where=f"recorded config of {session.name}",
                         model=f"model spec of {Path(runner.model_path).name}")
    enter, mask_thr = rules.enter, rules.mask_threshold
    rec_pre = None
    try:
        rec_pre = PreprocessSpec.model_validate(session.model.get("preprocess"))
    except Exception:  # noqa: BLE001 - an older session without it: the input check is skipped
        logger.info("session %s records no preprocessing spec: input reproduction not checked", session.name)
    fh, fv = (bool(f) for f in (session.manifest.get("flips") or (False, False)))
    # the raw frames are the ROI crops: no ROI; mirrored as the recorded run's site profile said
    analyzer = Analyzer(runner, rules, roi=None, flips=(fh, fv))

    model_new = f"{spec.name}@{runner.sha256[:12]}"
    report = CompareReport(session.name, session.model.get("id", "?"), model_new,
                           dice_threshold)
    x_rec = None
    reasons: list[str] = []
    for rec in session.frames:
        try:
            raw = session.raw(rec)
            m_rec = session.mask(rec)
        except ValueError as e:  # a missing or damaged PNG: nothing to compare on this frame
            report.skipped.append(int(rec["i"]))
            reasons.append(str(e))
            continue
        res: Result = analyzer.infer(analyzer.model_input(raw))
        decision_new = analyzer.decide(res)
        reproduced = None
        if rec_pre is not None and rec.get("input_crc32") is not None:
            if x_rec is None or x_rec.shape != (rec_pre.height, rec_pre.width):
                x_rec = np.zeros((rec_pre.height, rec_pre.width), np.float32)
            reproduced = zlib.crc32(network_input(raw, None, rec_pre, (fh, fv), out=x_rec)) == rec["input_crc32"]
        p_rec = float(rec.get("p_nerve") or 0.0)
        vote_rec = p_rec >= rec_t["presence_enter"]
        vote_new = res.p_nerve >= enter
        if m_rec is not None and m_rec.shape != res.mask.shape:
            m_rec = cv2.resize(m_rec, (res.mask.shape[1], res.mask.shape[0]), interpolation=cv2.INTER_LINEAR)
        d = dice(m_rec >= rec_t["mask"], res.mask >= mask_thr) if m_rec is not None else float("nan")
        if vote_rec != vote_new:
            reason = "recorded nerve, new none" if vote_rec else "recorded none, new nerve"
        elif vote_rec and vote_new and not d >= dice_threshold:
            reason = "mask dice below threshold"
        else:
            reason = ""
        report.rows.append({
            "i": rec["i"], "seq": rec["seq"], "t_capture": rec.get("t_capture"),
            "p_recorded": round(p_rec, 6), "p_new": round(res.p_nerve, 6),
            "vote_recorded": vote_rec, "vote_new": vote_new,
            "decision_recorded": rec.get("decision") == "nerve", "decision_new": decision_new.nerve,
            "dice": round(d, 4), "input_reproduced": reproduced, "disagree": bool(reason), "reason": reason,
        })
    warn_skipped(session, report.skipped, reasons)
    return report


def write_compare_csv(report: CompareReport, path: str | Path) -> Path:
    """One row per frame (`COMPARE_COLUMNS`); returns the path."""
    p = Path(path).expanduser()
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COMPARE_COLUMNS)
    w.writeheader()
    w.writerows(report.rows)
    try:
        make_private_dir(p.parent)
        write_export(p, buf.getvalue().encode())
    except OSError as e:
        raise UsageError(f"--export: cannot write {p}: {e.strerror or e}") from None
    return p


def format_compare(report: CompareReport, show: int = 10) -> str:
    """Summary counts and the first ``show`` disagreeing frames, for the terminal."""
    md = report.mean_dice_both_nerve
    lines = [
        f"review {report.session}: {report.model_new} vs recorded {report.model_recorded}",
        f"  frames                : {report.frames}",
        f"  disagreements         : {report.disagreements}"
        f" (recorded nerve/new none {report.count('recorded nerve, new none')},"
        f" recorded none/new nerve {report.count('recorded none, new nerve')},"
        f" mask dice < {report.dice_threshold:g} {report.count('mask dice below threshold')})",
        f"  mean dice (both nerve): {'-' if md is None else f'{md:.3f}'}",
        f"  smoothed decisions differ on {report.decision_disagreements} frames",
        f"  recorded inputs reproduced bit-exactly: {report.inputs_reproduced}/{report.inputs_checked}",
    ]
    if report.skipped:
        lines.append(f"  unreadable frames skipped: {len(report.skipped)} "
                     f"({', '.join(f'#{i}' for i in report.skipped[:10])}{' ...' if len(report.skipped) > 10 else ''})")
    bad = [r for r in report.rows if r["disagree"]]
    for r in bad[:show]:
        lines.append(f"    #{r['i']} seq {r['seq']}: {r['reason']} (p {r['p_recorded']:.2f} -> {r['p_new']:.2f}, "
                     f"dice {r['dice']:.2f})")
    if len(bad) > show:
        lines.append(f"    ... {len(bad) - show} more")
    return "\n".join(lines)

