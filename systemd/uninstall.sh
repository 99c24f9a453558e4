#!/bin/bash
# Remove the nerveseg appliance installed by systemd/install.sh. Idempotent.
#
# Stops and disables the service and removes the unit, the venv and its /usr/local/bin/nerveseg link. Config (/etc/nerveseg) and
# recordings (/var/lib/nerveseg) stay unless --purge. The system user nerveseg always stays (files may
# still belong to it: `userdel nerveseg` when you are sure), and so does consoleblank=0 on a Pi's kernel
# command line (install.sh kept the original as cmdline.txt.before-nerveseg), and so does the console boot
# that install.sh --console-boot set (it says how to boot to the desktop again).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: systemd/uninstall.sh [--dry-run] [--destdir DIR] [--purge]

  --dry-run      print every action, change nothing
  --destdir DIR  remove from DIR instead of / (also: DESTDIR=DIR)
  --purge        also remove the config, the state and ALL RECORDINGS, and the sysusers/tmpfiles entries
EOF
}

DESTDIR=${DESTDIR:-}
DRY_RUN=0
PURGE=0
while [ $# -gt 0 ]; do
    case $1 in
        -n | --dry-run) DRY_RUN=1 ;;
        --destdir) DESTDIR=${2:?--destdir needs a folder}; shift ;;
        --destdir=*) DESTDIR=${1#*=} ;;
        --purge) PURGE=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "uninstall.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

UNIT=/etc/systemd/system/nerveseg.service
ROOT=${DESTDIR%/}
if [ -n "$ROOT" ] && [ "${ROOT#/}" = "$ROOT" ]; then
    ROOT=$PWD/$ROOT
fi

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$HERE/common.sh"

# remove PATH...: delete what exists under ROOT, say so for what does not.
remove() {
    local p
    for p in "$@"; do
        if [ -e "$ROOT$p" ] || [ -L "$ROOT$p" ]; then
            run rm -rf "$ROOT$p"
        else
            same "absent: $p"
        fi
    done
}

if [ -z "$ROOT" ] && [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    printf 'uninstall.sh: run as root (sudo %s), or see what it would do with --dry-run\n' "$0" >&2
    exit 1
fi
say "nerveseg uninstall from ${ROOT:-/}$([ "$DRY_RUN" -eq 1 ] && echo ' (dry run)')"

if [ -e "$ROOT$UNIT" ]; then
    if [ -n "$ROOT" ]; then
        run systemctl "--root=$ROOT" disable nerveseg.service
    else
        run systemctl disable --now nerveseg.service
    fi
else
    same "absent: $UNIT (not installed)"
fi
remove "$UNIT" /opt/nerveseg
if [ "$(readlink "$ROOT/usr/local/bin/nerveseg" 2>/dev/null)" = /opt/nerveseg/venv/bin/nerveseg ]; then
    run rm -f "$ROOT/usr/local/bin/nerveseg"
fi
if [ -z "$ROOT" ]; then
    run systemctl daemon-reload
else
    skipped "systemctl daemon-reload: DESTDIR"
fi

# install.sh --console-boot may have switched a desktop box to the console; that outlives nerveseg on purpose
# (the box may have been a console box before), but say how to undo it.
if [ -L "$ROOT/etc/systemd/system/display-manager.service" ] \
    && [ "$(basename "$(readlink "$ROOT/etc/systemd/system/default.target" 2>/dev/null)")" = multi-user.target ]; then
    skipped "boot target stays multi-user.target (console): sudo systemctl set-default graphical.target brings the desktop back"
fi

if [ "$PURGE" -eq 1 ]; then
    remove /etc/nerveseg /var/lib/nerveseg /run/nerveseg /etc/tmpfiles.d/nerveseg.conf /etc/sysusers.d/nerveseg.conf
    say "the user nerveseg stays: userdel nerveseg removes it"
else
    same "kept: /etc/nerveseg (config) and /var/lib/nerveseg (state, recordings); --purge removes them"
fi
say "done."
