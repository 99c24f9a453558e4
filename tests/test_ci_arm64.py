"""The emulated arm64 check's own parts: its comparison fails on a real difference, its scripts are clean."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import numpy as np

from tests.systemd.helpers import require_tool

REPO = Path(__file__).resolve().parents[1]


def _check_module():
    spec = importlib.util.spec_from_file_location("arm64_check", REPO / ".ci" / "arm64_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _outputs(path: Path, p_shift: float = 0.0, flip_pixels: int = 0) -> Path:
    masks = np.zeros((3, 96, 128), bool)
    masks[:, 30:60, 40:80] = True
    masks[1].flat[:flip_pixels] = ~masks[1].flat[:flip_pixels]
    p = np.array([0.2, 0.9, 0.5])
    np.savez(path, int8_masks=masks, int8_p=p + p_shift, int8_p_step=np.array(1 / 256),
             float32_masks=masks, float32_p=p)
    return path


def test_compare_passes_equal_outputs_and_fails_on_each_kind_of_difference(tmp_path, capsys):
    check = _check_module()
    ref = _outputs(tmp_path / "x86.npz")
    assert check.compare(ref, _outputs(tmp_path / "same.npz")) == 0
    assert "worst mask Dice 1.0000, worst |dP| 0.00000" in capsys.readouterr().out
    assert check.compare(ref, _outputs(tmp_path / "p.npz", p_shift=3 / 256)) == 1  # three quantisation steps
    assert "FAULT int8 frame 0: |dP|" in capsys.readouterr().out
    assert check.compare(ref, _outputs(tmp_path / "m.npz", flip_pixels=2000)) == 1
    assert "FAULT int8 frame 1: mask Dice" in capsys.readouterr().out


def test_ci_scripts_pass_shellcheck():
    for script in (REPO / ".ci" / "run", REPO / ".ci" / "arm64"):
        r = subprocess.run([require_tool("shellcheck"), "--shell=bash", str(script)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout
