"""Hostile or broken YAML fails with a clear message and its own exit code, never a traceback or a memory blow-up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.cli import EXIT_CONFIG, EXIT_MODEL, EXIT_SOURCE, main
from edge.models import default_model_path
from edge.yamlio import MAX_DEPTH, YamlTooComplex, load_yaml, quote
from tests.unprivileged import need_root, run_as_nobody

REPO = Path(__file__).resolve().parents[2]
DEEP = "fps: " + "[" * 1000 + "]" * 1000 + "\n"
# nine levels of nine aliases: a few hundred bytes, 9**9 values once expanded
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
) + "source: *i\n"


def test_depth_and_expansion_are_bounded():
    with pytest.raises(YamlTooComplex, match="nested deeper"):
        load_yaml(DEEP)
    assert load_yaml("a: " + "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2))  # deep enough for any real file
    t0 = time.monotonic()
    with pytest.raises(YamlTooComplex, match="expands to more than"):
        load_yaml(BOMB)
    assert time.monotonic() - t0 < 2.0
    assert load_yaml("x: &v 3\ny: *v\n") == {"x": 3, "y": 3}  # a plain alias is fine


def test_a_quoted_value_is_bounded():
    assert quote("abc") == "'abc'"
    long = quote("x" * 10_000)
    assert len(long) < 120 and "10002 characters" in long


@pytest.mark.parametrize("text", [DEEP, BOMB])
def test_config_and_profile_refuse_it_as_a_config_fault_in_a_real_process(tmp_path, text):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(text)
    profile = tmp_path / "site.yaml"
    profile.write_text(text)
    ref = tmp_path / "ref.yaml"
    ref.write_text(f"profile: {profile}\n")
    for args in (["check-config", str(cfg)], ["check-config", str(ref)]):
        r = subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, cwd=REPO,
                           timeout=60)
        assert r.returncode == EXIT_CONFIG, (args, r.returncode, r.stderr[-500:])
        assert "Traceback" not in r.stderr and len(r.stderr) < 2000


@pytest.mark.parametrize("text", [DEEP, BOMB])
def test_a_model_spec_like_that_is_a_model_fault(tmp_path, text, capsys):
    model = tmp_path / "m.tflite"
    shutil.copy(default_model_path(), model)
    model.with_suffix(".yaml").write_text(text)
    assert main(["run", "--model", str(model), "--frames", "1"]) == EXIT_MODEL
    err = capsys.readouterr().err
    assert "m.yaml" in err and len(err) < 2000


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: the permission fault cannot be made")
def test_unreadable_model_is_a_model_fault(tmp_path, capsys):
    model = tmp_path / "m.tflite"
    shutil.copy(default_model_path(), model)
    shutil.copy(default_model_path().with_suffix(".yaml"), model.with_suffix(".yaml"))
    model.chmod(0)
    assert main(["run", "--model", str(model), "--frames", "1"]) == EXIT_MODEL
    assert "cannot be read" in capsys.readouterr().err


def test_unreadable_model_as_the_service_user_is_a_model_fault(open_dir):
    # CI runs as root, for whom permissions do not apply: drop to 'nobody' in a child to make the fault real
    need_root()
    tmp_path = open_dir
    model = tmp_path / "m.tflite"
    shutil.copy(default_model_path(), model)
    shutil.copy(default_model_path().with_suffix(".yaml"), model.with_suffix(".yaml"))
    model.chmod(0o600)
    model.with_suffix(".yaml").chmod(0o644)
    r = run_as_nobody(["run", "--model", str(model), "--frames", "1"], tmp_path)
    assert r.returncode == EXIT_MODEL, r.stderr[-1000:]
    assert "cannot be read" in r.stderr and "Traceback" not in r.stderr


def test_unreadable_images_folder_is_a_source_fault(open_dir):
    need_root()
    tmp_path = open_dir
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    folder.chmod(0o711)  # searchable, not listable
    r = run_as_nobody(["run", "--source", f"images:{folder}", "--frames", "1"], tmp_path)
    assert r.returncode == EXIT_SOURCE, r.stderr[-1000:]
    assert "cannot be read" in r.stderr and "Traceback" not in r.stderr
