"""`python -m convert.variant_costs`: each variant is really built, converted and timed."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tensorflow")

from convert.variant_costs import VARIANTS, main  # noqa: E402


def test_variants_are_built_converted_and_timed(data_dir, capsys):
    assert main(["--variant", "mini-f8", "--variant", "classic-f8", "--float32", "--calls", "5",
                 "--data", str(data_dir)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["variant"], r["quantization"]) for r in rows] == [
        ("mini-f8", "int8"), ("mini-f8", "float32"), ("classic-f8", "int8"), ("classic-f8", "float32")]
    by = {(r["variant"], r["quantization"]): r for r in rows}
    # the fourth skip adds a level: more parameters and MACs than the mini-U-Net of the same width
    assert by["classic-f8", "int8"]["params"] > 3 * by["mini-f8", "int8"]["params"]
    assert by["classic-f8", "int8"]["macs"] > by["mini-f8", "int8"]["macs"] > 1e8
    assert by["mini-f8", "int8"]["size_kb"] < 0.5 * by["mini-f8", "float32"]["size_kb"]  # int8 weights
    for r in rows:
        assert r["options"] == {"conv": "plain", "upsample": "transpose", **VARIANTS[r["variant"]]}
        assert 0 < r["ms_1_thread"] < 1000 and 0 < r["ms_2_threads"] < 1000 and r["machine"]


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    assert main(["--variant", "mini-f8", "--data", str(tmp_path)]) == 2
    assert "kaggle-bp full-resolution frames not found" in capsys.readouterr().out
