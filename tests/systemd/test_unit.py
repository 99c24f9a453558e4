"""The unit file: systemd's own verifier, its hardening score, and the settings the appliance relies on."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from edge.config import load_config
from edge.health import DEFAULT_STATUS_FILE
from tests.systemd.helpers import SYSTEMD_DIR, UNIT, make_verify_root, require_tool


def _settings(text: str) -> dict[str, list[str]]:
    """``Section.Key`` -> values in order (keys may repeat, like ExecStartPre)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def _verify(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [require_tool("systemd-analyze"), "verify", f"--root={root}", "nerveseg.service"],
        capture_output=True, text=True, timeout=120,
    )


def _root_with_unit(tmp_path: Path, text: str) -> Path:
    root = make_verify_root(tmp_path / "root")
    unit = root / "etc/systemd/system/nerveseg.service"
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(text)
    return root


def test_unit_passes_systemd_analyze_verify(tmp_path):
    # The real file, unchanged, in a throwaway root: verify exits 0 on some faults, so output must be empty too.
    r = _verify(_root_with_unit(tmp_path, UNIT.read_text()))
    assert r.returncode == 0 and r.stderr == "" and r.stdout == "", r.stderr + r.stdout


def test_verify_harness_reports_faults_it_exits_0_on(tmp_path):
    bad = UNIT.read_text().replace("WatchdogSec=10s", "WatchdogSec=ten").replace("ProtectHome=yes", "ProtectHom=yes")
    r = _verify(_root_with_unit(tmp_path, bad))
    assert "Failed to parse sec value" in r.stderr and "Unknown key 'ProtectHom'" in r.stderr, r.stderr


def test_verify_needs_the_executable(tmp_path):
    root = _root_with_unit(tmp_path, UNIT.read_text())
    (root / "opt/nerveseg/venv/bin/nerveseg").unlink()
    r = _verify(root)
    assert r.returncode != 0 and "/opt/nerveseg/venv/bin/nerveseg" in r.stderr


def test_hardening_exposure_score(tmp_path):
    root = _root_with_unit(tmp_path, UNIT.read_text())
    r = subprocess.run(
        [require_tool("systemd-analyze"), "security", "--offline=true", f"--root={root}", "nerveseg.service"],
        capture_output=True, text=True, timeout=120,
    )
    m = re.search(r"Overall exposure level for nerveseg.service: ([0-9.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    # 0 = locked down, 10 = exposed. The unit scores 1.8 (systemd 252); the score has one decimal, and dropping
    # any scored setting (RestrictRealtime, the least) makes it 1.9 or more. Settings the score does not weigh
    # are checked one by one in the next test.
    assert float(m.group(1)) <= 1.85, r.stdout


#: Every hardening setting of the unit (docs/operator.md, "What the unit does"), with its value.
HARDENING = {
    "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",  # empty: no capabilities at all
    "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes", "ProtectClock": "yes", "ProtectHostname": "yes", "ProtectProc": "invisible",
    "RestrictSUIDSGID": "yes", "RestrictRealtime": "yes", "RestrictNamespaces": "yes", "LockPersonality": "yes",
    "RemoveIPC": "yes", "UMask": "0027",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    "IPAddressDeny": "any", "IPAddressAllow": "localhost",
    "SystemCallArchitectures": "native", "SystemCallFilter": "@system-service", "SystemCallErrorNumber": "EPERM",
}


def test_restart_is_prevented_exactly_for_the_codes_a_restart_cannot_fix():
    # A restart loop on a fault that will be there again is what the start limit then turns into a dark
    # screen: config (2), model (3), a source (4) or sink (5) that cannot work. A device not there yet is
    # retried inside the loop (no exit), so 5 no longer means "try again"; 1 (a bug) and the watchdog's kill
    # may well pass with a restart.
    from edge import errors

    s = _settings(UNIT.read_text())
    codes = {int(c) for c in s["Service.RestartPreventExitStatus"][-1].split()}
    assert codes == {errors.EXIT_CONFIG, errors.EXIT_MODEL, errors.EXIT_SOURCE, errors.EXIT_SINK}
    assert errors.ConfigError.exit_code in codes and errors.SinkError.exit_code in codes
    assert errors.EXIT_ERROR not in codes and errors.EXIT_OK not in codes


def test_unit_settings_the_appliance_relies_on():
    s = _settings(UNIT.read_text())

    def one(key: str) -> str:
        assert key in s, f"{key} missing"
        return s[key][-1]

    assert one("Service.Type") == "notify" and one("Service.NotifyAccess") == "main"
    assert one("Service.Restart") == "always" and one("Service.RestartSec") == "2s"
    assert one("Service.WatchdogSec") == "10s"
    assert one("Unit.StartLimitIntervalSec") and int(one("Unit.StartLimitBurst")) >= 5
    assert one("Service.User") == "nerveseg" and one("Service.Group") == "nerveseg"
    assert one("Service.ExecStart") == "/opt/nerveseg/venv/bin/nerveseg run --config /etc/nerveseg/config.yaml"
    for key, value in HARDENING.items():
        assert one(f"Service.{key}") == value, key
    assert s["Service.ReadWritePaths"] == ["/var/lib/nerveseg"]  # state and recordings, nothing else
    assert one("Service.StandardError") == "journal"
    assert float(one("Service.TimeoutStopSec").rstrip("s")) >= 5  # the loop stops within ~1 s of SIGTERM
    assert one("Install.WantedBy") == "multi-user.target"


def test_paths_agree_between_unit_config_installer_and_code():
    s = _settings(UNIT.read_text())
    cfg = load_config(SYSTEMD_DIR / "config.yaml")  # the appliance's config is valid
    assert cfg.health.status_file == DEFAULT_STATUS_FILE
    assert Path(DEFAULT_STATUS_FILE).parent == Path("/run") / s["Service.RuntimeDirectory"][0]
    assert Path(cfg.record.dir).is_relative_to(s["Service.ReadWritePaths"][0])
    assert cfg.sink.spec.startswith("fbdev:") and cfg.source.spec.startswith("v4l2:")
    tmpfiles = (SYSTEMD_DIR / "nerveseg.tmpfiles").read_text()
    assert re.search(r"^d /var/lib/nerveseg +0750 nerveseg nerveseg", tmpfiles, re.M)
    assert re.search(rf"^d {re.escape(cfg.record.dir)} +0700 nerveseg nerveseg", tmpfiles, re.M)
    sysusers = (SYSTEMD_DIR / "nerveseg.sysusers").read_text()
    assert {"m nerveseg video", "m nerveseg render"} <= set(sysusers.splitlines())
    install = (SYSTEMD_DIR / "install.sh").read_text()
    assert "CONFIG=/etc/nerveseg/config.yaml" in install and "VENV=/opt/nerveseg/venv" in install


def _stop_post_script() -> str:
    """The unit's ExecStopPost= command line for /bin/sh, as systemd hands it over ("$$" -> "$")."""
    (line,) = _settings(UNIT.read_text())["Service.ExecStopPost"]
    prefix, _, rest = line.partition("/bin/sh -c ")
    assert prefix == "-+", line  # as root, and a failure never fails the stop
    assert rest.startswith("'") and rest.endswith("'"), rest
    return rest[1:-1].replace("$$", "$")


def test_after_a_stop_the_screen_says_no_overlay_instead_of_keeping_the_last_picture(tmp_path):
    # Run the unit's own ExecStopPost script with a pseudo-terminal for tty1 and a missing framebuffer.
    import os
    import pty
    import resource

    script = _stop_post_script()
    master, slave = pty.openpty()
    tty = os.ttyname(slave)
    fb = tmp_path / "fb0"  # absent: the box has no framebuffer
    script = script.replace("/dev/tty1", tty).replace("/dev/fb0", str(fb))
    try:
        # A file-size limit: were the device check gone, dd would fill the disk with zeros, not just fail this.
        r = subprocess.run(["/bin/sh", "-c", script], env={**os.environ, "SERVICE_RESULT": "watchdog"},
                           capture_output=True, text=True, timeout=10,
                           preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16)))
        os.set_blocking(master, False)
        shown = os.read(master, 65536).decode(errors="replace")
    finally:
        os.close(master)
        os.close(slave)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "\x1b[2J" in shown or "\x1b[J" in shown, repr(shown)  # the console is cleared first
    assert "NO OVERLAY (stopped: watchdog)" in shown and "systemctl status nerveseg" in shown, repr(shown)
    assert not fb.exists()  # no plain file made where the framebuffer device is missing
