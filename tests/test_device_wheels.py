"""The device's dependencies (setup.cfg install_requires) resolve to aarch64 wheels for every box's Python.

Raspberry Pi OS bookworm has Python 3.11, trixie 3.13; JetPack 6 (Ubuntu 22.04) has 3.10. A requirement
with no aarch64 wheel would make `pip install` on the box try to compile it (OpenCV, LiteRT: hours, or
never). pip resolves against PyPI's metadata only (--dry-run), so nothing large is downloaded. Every
manylinux tag the boxes' glibc accepts is listed: with only some of them pip silently picks an older
ai-edge-litert (1.4.0) that has a wheel for fewer tags.
"""

from __future__ import annotations

import configparser
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLATFORMS = ("manylinux_2_27_aarch64", "manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")
BOXES = {"3.10": "Jetson, JetPack 6", "3.11": "Raspberry Pi OS bookworm", "3.13": "Raspberry Pi OS trixie"}


def device_requirements() -> list[str]:
    c = configparser.ConfigParser()
    c.read(REPO / "setup.cfg")
    return [r.strip() for r in c["options"]["install_requires"].splitlines() if r.strip()]


def resolve(python: str, tmp: Path) -> dict[str, dict]:
    """name -> pip's report entry for every package pip would install for ``python`` on aarch64 Linux."""
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
           "--python-version", python, "--implementation", "cp", "--target", str(tmp), "--report", str(tmp / "r.json"),
           "-q", "--disable-pip-version-check"]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    r = subprocess.run(cmd + device_requirements(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"Python {python} ({BOXES[python]}): no aarch64 wheel for some requirement:\n{r.stderr}"
    report = json.loads((tmp / "r.json").read_text())
    return {i["metadata"]["name"].lower().replace("_", "-"): i for i in report["install"]}


@pytest.mark.parametrize("python", sorted(BOXES))
def test_every_device_requirement_has_an_aarch64_wheel(python, tmp_path):
    got = resolve(python, tmp_path)
    names = {r.split(">")[0].split("=")[0].split("<")[0].strip().lower() for r in device_requirements()}
    assert names <= set(got), f"not resolved for {python}: {names - set(got)}"
    for name, item in got.items():
        assert item["download_info"]["url"].endswith(".whl"), (python, name)
    litert = got["ai-edge-litert"]
    wheel = litert["download_info"]["url"].rsplit("/", 1)[-1]
    assert f"cp{python.replace('.', '')}" in wheel and "aarch64" in wheel, wheel
    assert int(litert["metadata"]["version"].split(".")[0]) >= 2, f"old LiteRT picked: {wheel}"
