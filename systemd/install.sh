#!/bin/bash
# Install nerveseg as an appliance: power on, and the live overlay appears on HDMI.
#
# Raspberry Pi OS (Bookworm) on a Pi 5, or Ubuntu on a Jetson. Idempotent: run it again to upgrade or
# repair; what is already in place is left as it is, and an existing /etc/nerveseg/config.yaml is never
# overwritten. Every action is printed ("+ command"); "= ..." means nothing to do, "- ..." skipped.
#
# What it does:
#   1. system user nerveseg in groups video and render      /etc/sysusers.d/nerveseg.conf, systemd-sysusers
#   2. state and recordings folders (0750, nerveseg)        /etc/tmpfiles.d/nerveseg.conf, systemd-tmpfiles
#   3. config, only if absent                               /etc/nerveseg/config.yaml
#   4. venv with nerveseg                                   /opt/nerveseg/venv (--system-site-packages
#                                                           when Debian's python3-picamera2 is installed),
#                                                           and /usr/local/bin/nerveseg linking to it
#   5. the unit                                             /etc/systemd/system/nerveseg.service
#   6. console blanking off: consoleblank=0 on the kernel command line on Raspberry Pi OS (next boot);
#      on every box the unit itself switches blanking off on tty1 before each start
#   7. boot target: a box that boots to a desktop (graphical.target with a display manager: Raspberry Pi OS
#      desktop, stock Jetson Ubuntu) gets a warning, since the desktop's compositor owns the screen and the
#      framebuffer overlay never shows; --console-boot makes it boot to the console (multi-user.target)
#   8. systemctl daemon-reload, enable, restart (--no-block: it does not wait for a video signal)
#
# DESTDIR (--destdir DIR or the DESTDIR variable) installs into a folder instead of the running system,
# for tests and image builds: users, folders and enablement are written there by systemd's own tools
# (--root), nothing on this machine changes, and daemon-reload/start are skipped.
set -euo pipefail
# Whatever umask the admin's shell has: 000 would leave the venv (the code root runs as the service) writable
# by every user, 077 would hide it from the service user. Code, venv, unit and config: root's, readable by all,
# writable by none else. State and recordings get their own private modes from systemd-tmpfiles (0750, 0700),
# and what the service writes there, from its UMask=0027.
umask 022

usage() {
    cat <<'EOF'
usage: systemd/install.sh [--dry-run] [--destdir DIR] [--no-start] [--no-venv] [--python PY] [--from SRC]
                          [--console-boot]

  --dry-run      print every action, change nothing (no root needed)
  --destdir DIR  install into DIR instead of / (also: DESTDIR=DIR); nothing is started
  --no-start     install and enable, but do not (re)start the service now
  --no-venv      skip the venv step (tests, or a venv you manage yourself at /opt/nerveseg/venv)
  --python PY    interpreter for the venv (default: python3)
  --from SRC     what pip installs into the venv: a source folder or a wheel (default: this checkout)
  --console-boot boot to the console (systemctl set-default multi-user.target), not to a desktop whose
                 compositor would hide the framebuffer overlay; the desktop no longer starts at boot
EOF
}

HERE=$(cd "$(dirname "$0")" && pwd)
DESTDIR=${DESTDIR:-}
DRY_RUN=0
START=1
WITH_VENV=1
PYTHON=python3
FROM=$(cd "$HERE/.." && pwd)
CONSOLE_BOOT=0

while [ $# -gt 0 ]; do
    case $1 in
        -n | --dry-run) DRY_RUN=1 ;;
        --destdir) DESTDIR=${2:?--destdir needs a folder}; shift ;;
        --destdir=*) DESTDIR=${1#*=} ;;
        --no-start) START=0 ;;
        --no-venv) WITH_VENV=0 ;;
        --python) PYTHON=${2:?--python needs an interpreter}; shift ;;
        --python=*) PYTHON=${1#*=} ;;
        --from) FROM=${2:?--from needs a folder or wheel}; shift ;;
        --from=*) FROM=${1#*=} ;;
        --console-boot) CONSOLE_BOOT=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "install.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

# Paths on the target system; ROOT is prefixed when touching them.
UNIT=/etc/systemd/system/nerveseg.service
SYSUSERS=/etc/sysusers.d/nerveseg.conf
TMPFILES=/etc/tmpfiles.d/nerveseg.conf
CONFIG=/etc/nerveseg/config.yaml
VENV=/opt/nerveseg/venv

ROOT=${DESTDIR%/}
if [ -n "$ROOT" ] && [ "${ROOT#/}" = "$ROOT" ]; then
    ROOT=$PWD/$ROOT
fi

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$HERE/common.sh"
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

# put_file SRC DEST MODE: install SRC at ROOT/DEST unless an identical file with that mode is there.
put_file() {
    local src=$1 dest=$ROOT$2 mode=$3
    if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
        if [ "$(stat -c %a "$dest")" = "${mode#0}" ]; then
            same "unchanged: $2"
        else
            run chmod "$mode" "$dest"
        fi
        return
    fi
    run install -D -m "$mode" "$src" "$dest"
}

root_opt=()
if [ -n "$ROOT" ]; then
    root_opt=("--root=$ROOT")
fi

# -- checks ---------------------------------------------------------------------------------------------------
if [ -z "$ROOT" ] && [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0), or see what it would do with --dry-run"
fi
for tool in systemd-sysusers systemd-tmpfiles systemctl; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        if [ "$DRY_RUN" -eq 1 ]; then
            warn "$tool not found (needed for a real install)"
        else
            die "$tool not found: nerveseg needs systemd"
        fi
    fi
done
# -- platform -------------------------------------------------------------------------------------------------
os_field() {
    [ -r "$ROOT/etc/os-release" ] || return 0
    sed -n "s/^$1=//p" "$ROOT/etc/os-release" | head -n 1 | tr -d '"'
}
OS_ID=$(os_field ID)
OS_NAME=$(os_field PRETTY_NAME)
if [ -e "$ROOT/etc/nv_tegra_release" ]; then
    PLATFORM=jetson
elif [ "$OS_ID" = raspbian ] || [ -e "$ROOT/etc/rpi-issue" ] || [ -e "$ROOT/boot/firmware/cmdline.txt" ]; then
    PLATFORM=raspberry-pi
else
    PLATFORM=generic
fi
say "nerveseg install: ${OS_NAME:-unknown OS}, platform $PLATFORM, into ${ROOT:-/}$([ "$DRY_RUN" -eq 1 ] && echo ' (dry run)')"
if [ -n "$ROOT" ] && [ ! -d "$ROOT" ]; then
    run mkdir -p "$ROOT"
fi

# -- 1. user and groups ---------------------------------------------------------------------------------------
# True when ROOT's user database already has nerveseg as a member of video and render. systemd-sysusers
# would change nothing then, but it still rewrites /etc's lock file; skipping it keeps a re-run a no-op.
user_in_place() {
    local g
    grep -q '^nerveseg:' "$ROOT/etc/passwd" 2>/dev/null || return 1
    for g in video render; do
        grep -Eq "^$g:[^:]*:[^:]*:(.*,)?nerveseg(,|\$)" "$ROOT/etc/group" 2>/dev/null || return 1
    done
}
put_file "$HERE/nerveseg.sysusers" "$SYSUSERS" 0644
if user_in_place; then
    same "unchanged: user nerveseg, member of video and render"
else
    run systemd-sysusers "${root_opt[@]}" nerveseg.conf
fi

# -- 2. state and recordings folders --------------------------------------------------------------------------
put_file "$HERE/nerveseg.tmpfiles" "$TMPFILES" 0644
run systemd-tmpfiles "${root_opt[@]}" --create nerveseg.conf

# -- 3. config ------------------------------------------------------------------------------------------------
if [ -e "$ROOT$CONFIG" ]; then
    same "kept: $CONFIG (an existing config is never overwritten; the shipped one is $HERE/config.yaml)"
else
    put_file "$HERE/config.yaml" "$CONFIG" 0644
fi

# -- 4. venv --------------------------------------------------------------------------------------------------
if [ "$WITH_VENV" -eq 1 ]; then
    venv_opts=()
    if [ -d "$ROOT/usr/lib/python3/dist-packages/picamera2" ]; then
        # Debian's picamera2 matches the system libcamera; a PyPI copy does not.
        venv_opts=(--system-site-packages)
        say "python3-picamera2 found: the venv will see Debian's packages"
    fi
    if [ -n "$ROOT" ]; then
        warn "a venv is not relocatable: its scripts will name $ROOT$VENV"
    fi
    if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        if [ -z "$ROOT" ] && command -v apt-get >/dev/null 2>&1; then
            run apt-get install -y python3-venv
        elif [ "$DRY_RUN" -eq 0 ]; then
            die "$PYTHON cannot make a venv (install python3-venv), or use --no-venv"
        fi
    fi
    run "$PYTHON" -m venv "${venv_opts[@]}" "$ROOT$VENV"
    run "$ROOT$VENV/bin/python" -m pip install --upgrade "$FROM"
    # `nerveseg status` for an engineer over SSH, without typing the venv's path.
    if [ "$(readlink "$ROOT/usr/local/bin/nerveseg" 2>/dev/null)" = "$VENV/bin/nerveseg" ]; then
        same "unchanged: /usr/local/bin/nerveseg -> $VENV/bin/nerveseg"
    else
        run mkdir -p "$ROOT/usr/local/bin"
        run ln -sfn "$VENV/bin/nerveseg" "$ROOT/usr/local/bin/nerveseg"
    fi
else
    skipped "venv: --no-venv; the unit runs $VENV/bin/nerveseg"
fi

# -- 5. the unit ----------------------------------------------------------------------------------------------
put_file "$HERE/nerveseg.service" "$UNIT" 0644

# -- 6. console blanking --------------------------------------------------------------------------------------
if [ "$PLATFORM" = raspberry-pi ]; then
    cmdline=""
    for c in /boot/firmware/cmdline.txt /boot/cmdline.txt; do
        if [ -f "$ROOT$c" ]; then
            cmdline=$c
            break
        fi
    done
    if [ -z "$cmdline" ]; then
        warn "no cmdline.txt found: console blanking is switched off by the unit at each start only"
    elif grep -Eq '(^|[[:space:]])consoleblank=0([[:space:]]|$)' "$ROOT$cmdline"; then
        same "unchanged: $cmdline has consoleblank=0"
    else
        # cmdline.txt is one line; a broken one does not boot, so keep a copy of the original once.
        if [ ! -e "$ROOT$cmdline.before-nerveseg" ]; then
            run cp -p "$ROOT$cmdline" "$ROOT$cmdline.before-nerveseg"
        fi
        if grep -Eq '(^|[[:space:]])consoleblank=' "$ROOT$cmdline"; then
            run sed -i -E '1 s/(^|[[:space:]])consoleblank=[0-9]+/\1consoleblank=0/' "$ROOT$cmdline"
        else
            run sed -i '1 s/[[:space:]]*$/ consoleblank=0/' "$ROOT$cmdline"
        fi
        say "  consoleblank=0 takes effect at the next boot"
    fi
else
    same "console blanking: switched off on tty1 by the unit before each start; kernel command line left alone on $PLATFORM"
fi

# -- 7. boot target ------------------------------------------------------------------------------------------
# The target the box boots to: systemd's answer on the running system; in a DESTDIR the default.target link
# there (/etc first, then the packaged default), as systemd itself resolves it.
default_target() {
    local link
    if [ -z "$ROOT" ] && command -v systemctl >/dev/null 2>&1; then
        systemctl get-default 2>/dev/null && return 0
    fi
    for link in /etc/systemd/system/default.target /usr/lib/systemd/system/default.target \
        /lib/systemd/system/default.target; do
        if [ -L "$ROOT$link" ]; then
            basename "$(readlink "$ROOT$link")"
            return 0
        fi
    done
}
# The display manager enabled on the box (lightdm, gdm3, ...), empty when there is none.
display_manager() {
    local link=$ROOT/etc/systemd/system/display-manager.service
    if [ -L "$link" ]; then
        basename "$(readlink "$link")" .service
    elif [ -e "$link" ]; then
        echo display-manager
    fi
}
TARGET=$(default_target || true)
DM=$(display_manager)
if [ "$CONSOLE_BOOT" -eq 1 ]; then
    if [ "$TARGET" = multi-user.target ]; then
        same "unchanged: boots to the console (default target multi-user.target)"
    else
        run systemctl "${root_opt[@]}" set-default multi-user.target
        say "  boots to the console from the next boot${DM:+ ($DM no longer starts; sudo systemctl start $DM starts the desktop by hand)}"
        if [ -z "$ROOT" ] && [ -n "$DM" ]; then
            say "  now: sudo systemctl isolate multi-user.target stops the running desktop"
        fi
    fi
elif [ "$TARGET" = graphical.target ] && [ -n "$DM" ]; then
    warn "this box boots to a desktop (default target graphical.target, display manager $DM): its compositor"
    warn "  owns the screen, so the framebuffer overlay (sink fbdev:/dev/fb0) never shows on HDMI."
    warn "  Fix: run again with --console-boot (systemctl set-default multi-user.target; on Raspberry Pi OS"
    warn "  raspi-config > System > Boot > Console does the same), or keep the desktop and set"
    warn "  sink.spec: window in $CONFIG (docs/operator.md: Window output)."
else
    same "boot target: ${TARGET:-unknown}${DM:+, display manager $DM}; nothing hides the framebuffer"
fi

# -- 8. enable and start --------------------------------------------------------------------------------------
if [ -n "$ROOT" ]; then
    skipped "systemctl daemon-reload: DESTDIR install"
    run systemctl "${root_opt[@]}" enable nerveseg.service
    skipped "systemctl restart nerveseg.service: DESTDIR install"
else
    run systemctl daemon-reload
    run systemctl enable nerveseg.service
    if [ "$START" -eq 1 ]; then
        run systemctl restart --no-block nerveseg.service
    else
        skipped "start: --no-start (systemctl start nerveseg)"
    fi
fi

say "done. Logs: journalctl -u nerveseg -f | health: nerveseg status (or cat /run/nerveseg/status.json)"
say "      config: $CONFIG, then systemctl restart nerveseg | remove: $HERE/uninstall.sh [--purge]"
