"""The model card: ``<model>.md`` beside ``<model>.tflite``, written from its spec and provenance.

A clinician or engineer who finds a model file should learn from its card what
it is and is not, what it expects and returns, how far the int8 file is from the
float model, what it was trained and measured on, and where it is known to fail.
Every number comes from the spec (`edge.spec`, hash checked) or from ``extra``;
what is not recorded is said to be "not recorded" / "not yet measured", never
guessed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from edge.spec import ModelSpec, load_spec

logger = logging.getLogger(__name__)

NOT_MEASURED = "not yet measured"
# Provenance keys that hold training data / split and measured performance, in the order they are shown.
DATA_KEYS = ("data", "training_data", "dataset", "datasets", "split", "subjects", "train_subjects")
METRIC_KEYS = ("metrics", "cv", "validation", "test", "evaluation")
# Shown in their own sections; the provenance section lists the rest.
_SHOWN = {"int8_agreement", "float32_agreement", "conversion", "what", *DATA_KEYS, *METRIC_KEYS}


def _fmt(v: Any) -> str:
    """One table cell: floats to 4 significant digits, [lo, hi] pairs as ranges, '|' escaped."""
    if isinstance(v, bool) or v is None:
        text = str(v)
    elif isinstance(v, float):
        text = f"{v:.4g}"
    elif isinstance(v, (list, tuple)):
        text = "[" + ", ".join(_fmt(x) for x in v) + "]"
    elif isinstance(v, dict):
        text = ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    else:
        text = str(v)
    return text.replace("|", "\\|").replace("\n", " ")


def _is_scalar(v: Any) -> bool:
    return not isinstance(v, (dict, list, tuple)) or (
        isinstance(v, (list, tuple)) and all(not isinstance(x, (dict, list, tuple)) for x in v)
    )


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            rows += _flatten(v, key + ".")
        else:
            rows.append((key, v))
    return rows


def render_table(value: Any) -> str:
    """Markdown for whatever a metrics entry holds.

    - dict of dicts of scalars (``{"dice": {"mean": .., "ci95": [lo, hi]}, ...}``): one row per outer
      key, one column per inner key;
    - list of dicts (e.g. one per cross-validation fold): one row per item;
    - any other dict: two columns, nested keys joined with dots;
    - anything else: the value itself.
    """
    if (
        isinstance(value, dict)
        and value
        and all(isinstance(v, dict) and all(map(_is_scalar, v.values())) for v in value.values())
    ):
        cols = list(dict.fromkeys(c for v in value.values() for c in v))
        lines = ["| | " + " | ".join(map(_fmt, cols)) + " |", "|---" * (len(cols) + 1) + "|"]
        lines += [f"| {_fmt(k)} | " + " | ".join(_fmt(v.get(c, "")) for c in cols) + " |" for k, v in value.items()]
        return "\n".join(lines)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        cols = list(dict.fromkeys(c for v in value for c in v))
        lines = ["| " + " | ".join(map(_fmt, cols)) + " |", "|---" * len(cols) + "|"]
        lines += ["| " + " | ".join(_fmt(v.get(c, "")) for c in cols) + " |" for v in value]
        return "\n".join(lines)
    if isinstance(value, dict) and value:
        lines = ["| | |", "|---|---|"]
        lines += [f"| {_fmt(k)} | {_fmt(v)} |" for k, v in _flatten(value)]
        return "\n".join(lines)
    return _fmt(value)


def _agreement_section(spec: ModelSpec) -> list[str]:
    from convert.check import judge, tolerances_for

    prov = spec.provenance
    conv = prov.get("conversion") or {}
    out = ["## Quantisation and agreement with the float model", ""]
    if spec.quantization == "int8":
        out.append(
            "Full-integer int8: every op, the input and both outputs are int8; the runner quantises the "
            "preprocessed input and dequantises the outputs with the file's own scale and zero point."
        )
    else:
        out.append(
            "float32: no quantisation (about 4x the size of the int8 file; on ARM cores with dot-product "
            "instructions int8 is usually faster)."
        )
    calib = conv.get("calibration")
    if spec.quantization == "int8":
        if isinstance(calib, dict):
            what = calib.get("summary") or _fmt(calib)
            what += "".join(f"; {n}" for n in calib.get("notes") or [])
            what += f"; {calib['preprocess']}" if calib.get("preprocess") else ""
        else:
            what = prov.get("representative", "not recorded")
        out += ["", f"Calibration (representative frames): {what}"]
    rep = prov.get(f"{spec.quantization}_agreement")
    out.append("")
    if not rep:
        out.append(
            f"Agreement with the float Keras model: {NOT_MEASURED} (this file was not made by `nerveseg convert`)."
        )
        return out
    out += [
        f"Agreement of this {spec.quantization} file (run through the bedside `ModelRunner`) with the float Keras "
        f"model on {rep.get('frames', '?')} held-out real frames, none of them a calibration frame: "
        f"{rep.get('held_out', 'set not recorded')}. Masks thresholded at {rep.get('mask_threshold')}, "
        f"P(nerve) at {rep.get('presence_threshold')}. Verdict: **{'passed' if rep.get('passed') else 'FAILED'}**.",
        "",
        "| metric | value | bound | |",
        "|---|---|---|---|",
    ]
    tol_dict = rep.get("tolerances")
    tol = tolerances_for(spec.quantization)
    if isinstance(tol_dict, dict):
        try:
            tol = type(tol)(**tol_dict)
        except TypeError:
            logger.warning("tolerances recorded in %s are not understood; showing the defaults", spec.name)
    for key, v, op, bound, ok in judge(rep, tol):
        verdict = "not judged" if ok is None else ("ok" if ok else "FAIL")
        out.append(f"| {key} | {_fmt(v) if v is not None else 'n/a'} | {op} {_fmt(bound)} | {verdict} |")
    for key in ("mask_dice_frame_min", "mask_frame_mae_max", "p_std_keras", "p_std_tflite"):
        if rep.get(key) is not None:
            out.append(f"| {key} | {_fmt(rep[key])} | | reported |")
    return out


def _model_section(spec: ModelSpec, size: int) -> list[str]:
    prov = spec.provenance
    opts = prov.get("builder_options") or prov.get("options") or {}
    arch = "a mini-U-Net (U-Net with 3 skip concatenations) with a nerve-presence head"
    if opts:
        bits = [f"{k}={_fmt(v)}" for k, v in opts.items()]
        arch += f" ({', '.join(bits)})"
    out = [
        "## What it is",
        "",
        f"One TFLite network ({size / 1024:.0f} KB) that answers two questions per ultrasound frame: is a nerve "
        f"(brachial plexus) in view, and where. Architecture: {arch}"
        + (f"; {prov['params']:,} parameters" if isinstance(prov.get("params"), int) else "")
        + (f", {prov['macs'] / 1e6:.0f} M multiply-accumulates a frame" if isinstance(prov.get("macs"), int) else "")
        + ".",
        "",
        "## What it is not",
        "",
        "- **Not a medical device.** A research tool: not cleared or approved by any regulator, not validated "
        "for clinical use. It must not guide a needle or a clinical decision; the operator's own reading of the "
        "ultrasound image decides.",
        "- Not a detector of other nerves, vessels, pleura or needles; not trained for other block regions.",
        "- Not calibrated probabilities: P(nerve) is a score from a small network, not a clinical likelihood.",
    ]
    if prov.get("what"):
        out += ["", f"Note from the builder: {prov['what']}"]
    return out


def _io_section(spec: ModelSpec) -> list[str]:
    pp, th, names = spec.preprocess, spec.thresholds, spec.outputs
    averaged = ("it " if th.presence_smoothing >= 1 else
                f"its running average over frames (weight {th.presence_smoothing:g} on the newest) ")
    filt = (
        "none"
        if pp.filter == "none"
        else (
            f"{pp.filter}, kernel {pp.filter_size} px"
            + (f", sigma {pp.filter_sigma:g}" if pp.filter in ("gaussian", "bilateral", "lee") else "")
            + (" at the model's input size" if pp.filter_at == "input" else " on the full-resolution ROI crop")
        )
    )
    return [
        "## Input and preprocessing",
        "",
        f"- Input: one frame, float32 `(1, {pp.height}, {pp.width}, 1)` (batch, height, width, channel)"
        + (", quantised to int8 by the runner" if spec.quantization == "int8" else ""),
        "- The ultrasound image is cropped out of the video-out frame (site calibration profile), converted to "
        f"gray and resized to {pp.width}x{pp.height} px (INTER_AREA when shrinking more than 2x, else linear)",
        f"- Speckle filter: {filt}",
        f"- Normalisation: `(gray / 255 - {pp.mean:g}) / {pp.std:g}`",
        "- Preprocessing is `edge.preprocess.preprocess` with this spec, the same code in training and at the bedside.",
        "",
        "## Outputs and thresholds",
        "",
        f"- `{names.mask}`: per-pixel P(nerve), float `(1, {pp.height}, {pp.width}, 1)` in [0, 1]; a pixel is "
        f"nerve above {th.mask:g}.",
        f"- `{names.presence}`: P(a nerve is in view), float `(1, 1)` in [0, 1]. The bedside shows a nerve when "
        f"{averaged}rises above {th.presence_enter:g} on {th.min_frames_on} consecutive frames and stops when it "
        f"falls below {th.presence_exit:g} on {th.min_frames_off} (hysteresis); the outline shown is a running average "
        f"of the masks (weight {th.mask_smoothing:g} on the newest)."
        + (" After a start or a gap in the video, the first frame's own vote sets the state." if
           th.first_frame_decides else "")
        + " A runtime config's `presence` section "
        "overrides each of these.",
    ]


def _data_section(prov: dict[str, Any]) -> list[str]:
    out = ["## Training data and split", ""]
    found = [(k, prov[k]) for k in DATA_KEYS if prov.get(k)]
    if not found:
        return out + ["Not recorded in this model's provenance."]
    for k, v in found:
        out += [f"**{k}**", "", render_table(v), ""]
    return out


def _metrics_section(prov: dict[str, Any], extra: dict[str, Any]) -> list[str]:
    out = ["## Measured performance", ""]
    merged = {k: prov[k] for k in METRIC_KEYS if prov.get(k)}
    merged.update({k: v for k, v in extra.items() if k not in DATA_KEYS and k != "limits"})
    if not merged:
        return out + [f"Segmentation and presence metrics with confidence intervals: {NOT_MEASURED}."]
    out.append("As recorded (confidence intervals where the evaluation gave them; read each table's own keys):")
    out.append("")
    for k, v in merged.items():
        out += [f"**{k}**", "", render_table(v), ""]
    return out


def _terms_section(prov: dict[str, Any]) -> list[str]:
    """The terms of the training data, which a trained model inherits."""
    terms = (prov.get("data") or {}).get("terms") if isinstance(prov.get("data"), dict) else None
    out = ["## Terms of use", ""]
    if not terms:
        return out + ["The training data's terms are not recorded in this model's provenance: find them before "
                      "sharing this file."]
    out.append("This model was trained on the data below and inherits its terms. "
               "**Research use only; not for commercial use; not a medical device.**")
    out.append("")
    out += [f"- {t}" for t in terms]
    return out


def _sources(prov: dict[str, Any]) -> set[str]:
    data = prov.get("data")
    return set((data.get("sources") or {}) if isinstance(data, dict) else ())


def _limits_section(spec: ModelSpec, extra: dict[str, Any]) -> list[str]:
    out = ["## Known limits", ""]
    if spec.untrained:
        out.append("- **UNTRAINED: random weights. Its output means nothing**; the overlay says so on screen.")
    sources = _sources(spec.provenance)
    if {"regional_us", "usgra"} & sources:
        out += [
            "- Brachial plexus only: Kaggle 2016 interscalene/supraclavicular frames, supraclavicular videos of "
            "the Regional-US set"
            + (" and the usgra-seg regions (Mindray TE7; five block regions)" if "usgra" in sources else "")
            + "; other nerves and block regions are out of scope.",
            "- Trained on " + str(1 + len({"regional_us", "usgra"} & sources)) + " machine types; a machine, probe or "
            "preset unlike them may give worse results. Check on your own machine (`nerveseg eval`) and fine-tune "
            "on its frames (`nerveseg train --init`) before relying on it.",
            "- Video boxes are coarse (the union of an annotator's boxes, propagated by a tracker between drawn "
            "frames): the outline was taught to stay inside them, not to follow the nerve's edge there.",
        ]
    else:
        out += [
            "- Brachial plexus only (interscalene / supraclavicular views of the Kaggle 2016 data); other nerves "
            "and block regions are out of scope.",
            "- Training frames come from one ultrasound machine type (the Kaggle set); other machines, probes, "
            "presets, gain and depth settings may give worse results. Check on your own machine before relying "
            "on it.",
            '- Few real "no nerve" frames were available (37 of subjects 1-2); false alarms on empty views are '
            "less well measured than misses.",
        ]
    out += [
        "- Kaggle label noise: near-identical frames of one scan sometimes carry a mask and sometimes not; "
        "masks are approximate outlines.",
        "- Quantised to int8: small differences from the float model (see the agreement table), largest where "
        "P(nerve) is near its threshold.",
    ]
    for item in extra.get("limits", []) or []:
        out.append(f"- {item}")
    return out


def _provenance_section(spec: ModelSpec, sha: str | None) -> list[str]:
    prov = spec.provenance
    conv = prov.get("conversion") or {}
    out = ["## Provenance", ""]
    out.append(f"- File SHA-256: `{sha or 'not recorded'}`")
    for label, v in (
        ("Converted by", conv.get("command")),
        ("Converted from", conv.get("source")),
        ("Source SHA-256", conv.get("source_sha256")),
        ("Converted on", conv.get("date")),
        ("TensorFlow / Keras", " / ".join(str(x) for x in (conv.get("tensorflow"), conv.get("keras")) if x)),
        ("Ops", conv.get("ops")),
        ("Made by", prov.get("command") if not conv else None),
    ):
        if v:
            out.append(f"- {label}: {_fmt(v) if not isinstance(v, str) else v}")
    rest = {k: v for k, v in prov.items() if k not in _SHOWN}
    if rest:
        out += [
            "",
            "Builder options, versions and everything else recorded at training/conversion time:",
            "",
            "```yaml",
            yaml.safe_dump(rest, sort_keys=False).rstrip(),
            "```",
        ]
    return out


def card_path_for(tflite_path: str | Path) -> Path:
    """``model.tflite`` -> ``model.md``."""
    return Path(tflite_path).with_suffix(".md")


def write_model_card(tflite_path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``<model>.md`` beside ``tflite_path`` from its spec (hash checked) and return its path.

    extra: more to show, e.g. ``{"cv": {...}, "metrics": {...}}`` from an evaluation run (each
        entry rendered as a table; these override provenance entries of the same name), and
        ``"limits": [str, ...]`` appended to the known limits. Data keys (`DATA_KEYS`) in
        ``extra`` are shown with the training data.

    Raises `edge.errors.ModelError` when the model's spec is missing, invalid or belongs to another file.
    """
    tflite_path = Path(tflite_path)
    spec = load_spec(tflite_path)
    extra = dict(extra or {})
    prov = {**spec.provenance, **{k: v for k, v in extra.items() if k in DATA_KEYS}}
    size = tflite_path.stat().st_size if tflite_path.is_file() else 0
    head = [
        f"# Model card: {spec.name}",
        "",
        f"`{tflite_path.name}` · {spec.quantization} · {size / 1024:.0f} KB · "
        f"spec `{tflite_path.with_suffix('.yaml').name}`" + (" · **UNTRAINED**" if spec.untrained else ""),
        "",
        "Finds the brachial plexus in ultrasound video, live, on a small ARM board (nerveseg). "
        "Research software, **not a medical device**.",
        "",
    ]
    sections = [
        _model_section(spec, size),
        _io_section(spec),
        _agreement_section(spec),
        _data_section(prov),
        _metrics_section(spec.provenance, extra),
        _limits_section(spec, extra),
        _terms_section(spec.provenance),
        _provenance_section(spec, spec.tflite_sha256),
    ]
    text = "\n".join(head + [line for s in sections for line in (*s, "")]).rstrip() + "\n"
    out = card_path_for(tflite_path)
    out.write_text(text, encoding="utf-8")
    logger.info("wrote model card %s", out)
    return out


def refresh_model_card(tflite_path: str | Path) -> Path | None:
    """Re-render, in the existing card beside ``tflite_path``, the sections drawn from the spec alone (input,
    outputs and thresholds, provenance), keeping every other section as it was: the measured numbers a
    publish run added come from outside the spec and cannot be redrawn from it. Used when only the spec
    changed (e.g. temporal rules tuned on video). Returns the card's path, or None when there is none.
    Raises `edge.errors.ModelError` like `write_model_card`."""
    tflite_path = Path(tflite_path)
    out = card_path_for(tflite_path)
    if not out.is_file():
        return None
    spec = load_spec(tflite_path)
    fresh = _split_sections(_io_section(spec) + [""] + _provenance_section(spec, spec.tflite_sha256))
    head, *pieces = out.read_text(encoding="utf-8").split("\n## ")
    titles = [piece.split("\n", 1)[0] for piece in pieces]
    missing = set(fresh) - set(titles)
    if missing:
        raise ValueError(f"{out} has no section {', '.join(sorted(missing))}: write it again with write_model_card")
    pieces = [fresh.get(t, piece) for t, piece in zip(titles, pieces, strict=True)]
    out.write_text("\n## ".join([head, *pieces]), encoding="utf-8")
    logger.info("refreshed the spec's sections of model card %s", out)
    return out


def _split_sections(lines: list[str]) -> dict[str, str]:
    """``{heading: text}`` of rendered card lines, in the card file's own layout (the text after ``## `` up to
    the next section's, its blank line included)."""
    out: dict[str, list[str]] = {}
    cur = None
    for line in lines:
        if line.startswith("## "):
            cur = line[3:]
            out[cur] = [cur]
        elif cur is not None:
            out[cur].append(line)
    return {k: "\n".join(v).rstrip("\n") + "\n" for k, v in out.items()}
