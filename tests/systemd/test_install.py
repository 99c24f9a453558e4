"""install.sh / uninstall.sh: shellcheck, a real install into a throwaway root (twice), dry runs.

The DESTDIR install runs systemd's real tools (systemd-sysusers, systemd-tmpfiles, systemctl with
--root), so the tree it leaves is the one a Pi would get; only the venv step is left out (--no-venv):
it would download and build the whole runtime. Nothing on this machine changes: users and folders are
written into the throwaway root.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import load_config
from tests.systemd.helpers import REPO, SYSTEMD_DIR, UNIT, make_verify_root, require_root, require_tool

INSTALL = SYSTEMD_DIR / "install.sh"
UNINSTALL = SYSTEMD_DIR / "uninstall.sh"
CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait\n"


def _seed(root: Path, kind: str = "pi") -> Path:
    """A minimal OS image: os-release, a user database with Debian's video/render groups, boot files."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000::/home/pi:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\nvideo:x:44:pi\nrender:x:105:\npi:x:1000:\n")
    if kind == "pi":
        (root / "etc/os-release").write_text(
            'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_CODENAME=bookworm\n'
        )
        (root / "etc/rpi-issue").write_text("Raspberry Pi reference 2024-11-19\n")
        (root / "boot/firmware").mkdir(parents=True)
        (root / "boot/firmware/cmdline.txt").write_text(CMDLINE)
    else:
        (root / "etc/os-release").write_text('PRETTY_NAME="Ubuntu 22.04.4 LTS"\nID=ubuntu\nVERSION_CODENAME=jammy\n')
        (root / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 3.0\n")
        (root / "boot/extlinux").mkdir(parents=True)
        (root / "boot/extlinux/extlinux.conf").write_text("LABEL primary\n  APPEND ${cbootargs} quiet\n")
    return root


def _sh(script: Path, *args: str, env: dict[str, str] | None = None,
        umask: int | None = None) -> subprocess.CompletedProcess:
    """Run ``script`` with ``args``; ``umask``: the caller's umask (an admin's shell may have any)."""
    r = subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=120,
                       env={**os.environ, **(env or {})},
                       preexec_fn=None if umask is None else (lambda: os.umask(umask)))
    assert r.returncode == 0, f"{script.name} {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


def _tree(root: Path) -> dict[str, tuple]:
    """Everything about a tree a re-install could change: type, mode, owner, times, content, link target."""
    out: dict[str, tuple] = {}
    for p in sorted([root, *root.rglob("*")]):
        st = p.lstat()
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p), st.st_uid, st.st_gid)
        elif p.is_dir():
            out[rel] = ("dir", oct(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)
        else:
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            out[rel] = ("file", oct(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, digest)
    return out


def _writable_by_others(root: Path, below: str = "") -> list[str]:
    """Entries under ``root/below`` (links aside) that the group or other users may write, with their modes."""
    top = root / below
    return [f"{oct(p.lstat().st_mode & 0o7777)} {p.relative_to(root)}" for p in [top, *top.rglob("*")]
            if not p.is_symlink() and p.lstat().st_mode & 0o022]


def _actions(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith("+ ")]


@pytest.mark.parametrize("script", [INSTALL, UNINSTALL, INSTALL.parent / "common.sh"], ids=lambda p: p.name)
def test_scripts_pass_shellcheck(script):
    r = subprocess.run([require_tool("shellcheck"), "--shell=bash", "--external-sources", str(script)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr


def test_install_into_destdir_gives_the_appliance_tree_and_a_second_run_changes_nothing(tmp_path):
    require_root()
    for tool in ("systemd-sysusers", "systemd-tmpfiles", "systemctl"):
        require_tool(tool)
    root = _seed(tmp_path / "root")
    first = _sh(INSTALL, "--destdir", str(root), "--no-venv")
    assert "platform raspberry-pi" in first.stdout

    etc = root / "etc"
    unit = etc / "systemd/system/nerveseg.service"
    assert unit.read_text() == UNIT.read_text() and oct(unit.stat().st_mode & 0o777) == "0o644"
    link = etc / "systemd/system/multi-user.target.wants/nerveseg.service"
    assert os.readlink(link) == "/etc/systemd/system/nerveseg.service"  # enabled
    config = etc / "nerveseg/config.yaml"
    assert config.read_text() == (SYSTEMD_DIR / "config.yaml").read_text()
    assert load_config(config).health.status_file == "/run/nerveseg/status.json"
    assert (etc / "sysusers.d/nerveseg.conf").read_text() == (SYSTEMD_DIR / "nerveseg.sysusers").read_text()
    assert (etc / "tmpfiles.d/nerveseg.conf").read_text() == (SYSTEMD_DIR / "nerveseg.tmpfiles").read_text()

    # The system user, with the groups capture and framebuffer need; the image's own users untouched.
    users = {ln.split(":")[0]: ln.split(":") for ln in (etc / "passwd").read_text().splitlines()}
    groups = {ln.split(":")[0]: ln.split(":") for ln in (etc / "group").read_text().splitlines()}
    uid, gid = int(users["nerveseg"][2]), int(users["nerveseg"][3])
    assert uid < 1000 and users["nerveseg"][6] == "/usr/sbin/nologin" and "pi" in users
    assert set(groups["video"][3].split(",")) == {"pi", "nerveseg"} and groups["video"][2] == "44"
    assert groups["render"][3] == "nerveseg" and int(groups["nerveseg"][2]) == gid

    for d, mode in (("var/lib/nerveseg", "0o750"), ("var/lib/nerveseg/recordings", "0o700")):
        st = (root / d).stat()
        assert (oct(st.st_mode & 0o777), st.st_uid, st.st_gid) == (mode, uid, gid), d

    cmdline = root / "boot/firmware/cmdline.txt"
    assert cmdline.read_text() == CMDLINE.rstrip("\n") + " consoleblank=0\n"  # still one line
    assert (root / "boot/firmware/cmdline.txt.before-nerveseg").read_text() == CMDLINE
    assert not (root / "opt").exists()  # --no-venv
    assert "daemon-reload: DESTDIR" in first.stdout and "restart nerveseg.service: DESTDIR" in first.stdout

    before = _tree(root)
    second = _sh(INSTALL, "--destdir", str(root), "--no-venv")
    assert _tree(root) == before
    assert [a for a in _actions(second.stdout) if "enable" not in a and "tmpfiles" not in a] == []
    assert "kept: /etc/nerveseg/config.yaml" in second.stdout

    # The installed unit is valid where it landed.
    r = subprocess.run([require_tool("systemd-analyze"), "verify", f"--root={make_verify_root(root)}",
                        "nerveseg.service"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_install_under_umask_000_leaves_nothing_writable_by_others(tmp_path):
    # An admin's root shell may have umask 000: every file the installer makes must still be root's alone to
    # write, and the state folders keep their private modes. (The venv, where it mattered most, is checked in
    # test_venv_step_makes_the_executable_the_unit_runs.)
    require_root()
    root = _seed(tmp_path / "root")
    before = set(_writable_by_others(root))
    _sh(INSTALL, "--destdir", str(root), "--no-venv", umask=0)
    assert set(_writable_by_others(root)) - before == set()
    for d, mode in (("var/lib/nerveseg", 0o750), ("var/lib/nerveseg/recordings", 0o700)):
        assert (root / d).stat().st_mode & 0o777 == mode, d
    assert (root / "etc/nerveseg/config.yaml").stat().st_mode & 0o777 == 0o644


def test_an_existing_config_is_never_overwritten(tmp_path):
    require_root()
    root = _seed(tmp_path / "root")
    mine = root / "etc/nerveseg/config.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("source: {spec: 'v4l2:/dev/video2'}\n")
    out = _sh(INSTALL, "--no-venv", env={"DESTDIR": str(root)}).stdout  # DESTDIR from the environment
    assert mine.read_text() == "source: {spec: 'v4l2:/dev/video2'}\n"
    assert "kept: /etc/nerveseg/config.yaml" in out


def test_dry_run_prints_every_action_and_writes_nothing(tmp_path):
    root = _seed(tmp_path / "root")
    (root / "usr/lib/python3/dist-packages/picamera2").mkdir(parents=True)  # Debian's python3-picamera2
    before = _tree(root)
    out = _sh(INSTALL, "--dry-run", "--destdir", str(root), "--python", "python3").stdout
    assert _tree(root) == before
    r = str(root)
    expected = [
        f"+ install -D -m 0644 {SYSTEMD_DIR}/nerveseg.sysusers {r}/etc/sysusers.d/nerveseg.conf",
        f"+ systemd-sysusers --root={r} nerveseg.conf",
        f"+ install -D -m 0644 {SYSTEMD_DIR}/nerveseg.tmpfiles {r}/etc/tmpfiles.d/nerveseg.conf",
        f"+ systemd-tmpfiles --root={r} --create nerveseg.conf",
        f"+ install -D -m 0644 {SYSTEMD_DIR}/config.yaml {r}/etc/nerveseg/config.yaml",
        f"+ python3 -m venv --system-site-packages {r}/opt/nerveseg/venv",
        f"+ {r}/opt/nerveseg/venv/bin/python -m pip install --upgrade {REPO}",
        f"+ mkdir -p {r}/usr/local/bin",
        f"+ ln -sfn /opt/nerveseg/venv/bin/nerveseg {r}/usr/local/bin/nerveseg",
        f"+ install -D -m 0644 {SYSTEMD_DIR}/nerveseg.service {r}/etc/systemd/system/nerveseg.service",
        f"+ cp -p {r}/boot/firmware/cmdline.txt {r}/boot/firmware/cmdline.txt.before-nerveseg",
        f"+ sed -i '1 s/[[:space:]]*$/ consoleblank=0/' {r}/boot/firmware/cmdline.txt",
        f"+ systemctl --root={r} enable nerveseg.service",
    ]
    assert _actions(out) == expected
    assert "(dry run)" in out


def test_dry_run_on_the_running_system_starts_without_waiting_for_a_signal():
    # Nothing is executed; this only shows what a real install on this machine would run.
    out = _sh(INSTALL, "--dry-run", "--no-venv").stdout
    acts = _actions(out)
    assert acts[-3:] == ["+ systemctl daemon-reload", "+ systemctl enable nerveseg.service",
                         "+ systemctl restart --no-block nerveseg.service"]
    assert "+ systemd-sysusers nerveseg.conf" in acts or "unchanged: user nerveseg" in out
    no_start = _actions(_sh(INSTALL, "--dry-run", "--no-venv", "--no-start").stdout)
    assert not any("restart" in a for a in no_start)


def test_jetson_keeps_its_kernel_command_line(tmp_path):
    root = _seed(tmp_path / "root", kind="jetson")
    before = (root / "boot/extlinux/extlinux.conf").read_text()
    out = _sh(INSTALL, "--dry-run", "--destdir", str(root), "--no-venv").stdout
    assert "Ubuntu 22.04.4 LTS, platform jetson" in out
    assert "kernel command line left alone on jetson" in out
    assert not any("cmdline" in a or "extlinux" in a for a in _actions(out))
    assert (root / "boot/extlinux/extlinux.conf").read_text() == before


def test_dry_run_into_a_new_folder_prints_the_header_first(tmp_path):
    out = _sh(INSTALL, "--dry-run", "--destdir", str(tmp_path / "new"), "--no-venv").stdout
    lines = out.splitlines()
    assert lines[0].startswith("nerveseg install: ") and lines[0].endswith("(dry run)"), lines[:2]
    assert lines[1] == f"+ mkdir -p {tmp_path / 'new'}"
    assert not (tmp_path / "new").exists()


def _desktop(root: Path) -> Path:
    """Make ``root`` boot to a desktop as Raspberry Pi OS desktop does: graphical.target, lightdm enabled."""
    system = root / "etc/systemd/system"
    system.mkdir(parents=True, exist_ok=True)
    (system / "default.target").symlink_to("/lib/systemd/system/graphical.target")
    (system / "display-manager.service").symlink_to("/lib/systemd/system/lightdm.service")
    return root


def test_a_box_that_boots_to_a_desktop_is_warned_with_the_fix(tmp_path):
    root = _desktop(_seed(tmp_path / "root"))
    r = _sh(INSTALL, "--dry-run", "--destdir", str(root), "--no-venv")
    assert "boots to a desktop (default target graphical.target, display manager lightdm)" in r.stderr
    assert "framebuffer overlay (sink fbdev:/dev/fb0) never shows" in r.stderr and "--console-boot" in r.stderr
    assert not any("set-default" in a for a in _actions(r.stdout))  # only with --console-boot

    # A console box (or a headless one without a display manager) gets no warning.
    plain = _seed(tmp_path / "plain")
    r = _sh(INSTALL, "--dry-run", "--destdir", str(plain), "--no-venv")
    assert "desktop" not in r.stderr and "boot target: unknown; nothing hides the framebuffer" in r.stdout
    (plain / "etc/systemd/system").mkdir(parents=True)
    (plain / "etc/systemd/system/default.target").symlink_to("/lib/systemd/system/graphical.target")
    r = _sh(INSTALL, "--dry-run", "--destdir", str(plain), "--no-venv")  # Debian's default, no desktop
    assert "desktop" not in r.stderr and "boot target: graphical.target; nothing hides" in r.stdout


def test_console_boot_switches_a_desktop_box_to_the_console_once(tmp_path):
    require_root()
    root = _desktop(make_verify_root(_seed(tmp_path / "root")))  # systemctl --root needs the target units
    before = _tree(root)
    dry = _sh(INSTALL, "--dry-run", "--destdir", str(root), "--no-venv", "--console-boot")
    assert f"+ systemctl --root={root} set-default multi-user.target" in _actions(dry.stdout)
    assert _tree(root) == before

    first = _sh(INSTALL, "--destdir", str(root), "--no-venv", "--console-boot")
    assert "lightdm no longer starts" in first.stdout and "desktop" not in first.stderr
    default = root / "etc/systemd/system/default.target"
    assert Path(os.readlink(default)).name == "multi-user.target"
    r = subprocess.run([require_tool("systemctl"), f"--root={root}", "get-default"], capture_output=True, text=True)
    assert r.stdout.strip() == "multi-user.target"

    second = _sh(INSTALL, "--destdir", str(root), "--no-venv", "--console-boot")  # idempotent
    assert "unchanged: boots to the console" in second.stdout
    assert not any("set-default" in a for a in _actions(second.stdout))
    assert "desktop" not in _sh(INSTALL, "--dry-run", "--destdir", str(root), "--no-venv").stderr
    out = _sh(UNINSTALL, "--destdir", str(root)).stdout
    assert "sudo systemctl set-default graphical.target brings the desktop back" in out


def test_bad_option_is_refused(tmp_path):
    r = subprocess.run(["bash", str(INSTALL), "--destdir", str(tmp_path), "--frobnicate"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "unknown option '--frobnicate'" in r.stderr and list(tmp_path.iterdir()) == []


def test_uninstall_keeps_config_and_recordings_unless_purged(tmp_path):
    require_root()
    root = _seed(tmp_path / "root")
    _sh(INSTALL, "--destdir", str(root), "--no-venv")
    (root / "opt/nerveseg/venv/bin").mkdir(parents=True)  # as if the venv step had run
    rec = root / "var/lib/nerveseg/recordings/2026-01-01T10-00-00/roi.mp4"
    rec.parent.mkdir()
    rec.write_bytes(b"\0" * 64)

    _sh(UNINSTALL, "--destdir", str(root))
    assert not (root / "etc/systemd/system/nerveseg.service").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/nerveseg.service").is_symlink()
    assert not (root / "opt/nerveseg").exists()
    assert (root / "etc/nerveseg/config.yaml").exists() and rec.exists()

    again = _sh(UNINSTALL, "--destdir", str(root)).stdout  # idempotent
    assert "absent: /etc/systemd/system/nerveseg.service" in again

    dry = _tree(root)
    _sh(UNINSTALL, "--destdir", str(root), "--purge", "--dry-run")
    assert _tree(root) == dry

    _sh(UNINSTALL, "--destdir", str(root), "--purge")
    assert not (root / "etc/nerveseg").exists() and not (root / "var/lib/nerveseg").exists()
    assert not (root / "etc/sysusers.d/nerveseg.conf").exists()
    assert "nerveseg:" in (root / "etc/passwd").read_text()  # the user stays (files may still be its)


def _probe_wheel(folder: Path) -> Path:
    """A tiny wheel with a ``nerveseg`` console script and no dependencies: the venv step, offline."""
    import base64
    import zipfile

    files = {
        "nerveseg_probe/__init__.py": "def main():\n    print('nerveseg probe')\n    return 0\n",
        "nerveseg_probe-0.0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: nerveseg-probe\nVersion: 0.0.1\n",
        "nerveseg_probe-0.0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                                                "Tag: py3-none-any\n",
        "nerveseg_probe-0.0.1.dist-info/entry_points.txt": "[console_scripts]\nnerveseg = nerveseg_probe:main\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append("nerveseg_probe-0.0.1.dist-info/RECORD,,")
    files["nerveseg_probe-0.0.1.dist-info/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / "nerveseg_probe-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return wheel


@pytest.mark.slow
def test_venv_step_makes_the_executable_the_unit_runs(tmp_path):
    # The real venv step (python -m venv, pip install) with a tiny local wheel instead of nerveseg and its
    # dependencies, so it runs offline in seconds; Debian's picamera2 present -> --system-site-packages.
    # Run from a shell with umask 000: the venv (code the service runs) used to come out world-writable.
    require_root()
    root = _seed(tmp_path / "root")
    (root / "usr/lib/python3/dist-packages/picamera2").mkdir(parents=True)
    wheel = _probe_wheel(tmp_path)
    out = _sh(INSTALL, "--destdir", str(root), "--python", sys.executable, "--from", str(wheel),
              env={"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"}, umask=0).stdout
    assert "the venv will see Debian's packages" in out
    venv = root / "opt/nerveseg/venv"
    assert _writable_by_others(root, "opt") == [] and _writable_by_others(root, "usr/local") == []
    assert (venv / "bin/nerveseg").stat().st_mode & 0o777 == 0o755  # the service user may run it
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    r = subprocess.run([str(venv / "bin/nerveseg")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "nerveseg probe\n"
    assert os.readlink(root / "usr/local/bin/nerveseg") == "/opt/nerveseg/venv/bin/nerveseg"
    # The unit's ExecStart now exists for real in the tree: verify without a stand-in.
    verify_root = make_verify_root(root)
    v = subprocess.run([require_tool("systemd-analyze"), "verify", f"--root={verify_root}", "nerveseg.service"],
                       capture_output=True, text=True, timeout=120)
    assert v.returncode == 0 and v.stderr == "", v.stderr
    _sh(UNINSTALL, "--destdir", str(root))
    assert not (root / "usr/local/bin/nerveseg").is_symlink() and not venv.exists()
