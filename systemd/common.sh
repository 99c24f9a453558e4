# Shared by install.sh and uninstall.sh (sourced, not run): how both report and perform each action.
# The caller sets DRY_RUN (0 or 1) before calling run.
# shellcheck shell=bash

say() { printf '%s\n' "$*"; }
same() { printf '= %s\n' "$*"; }
skipped() { printf -- '- %s\n' "$*"; }
warn() { printf '! %s\n' "$*" >&2; }

# Print a command as it could be pasted into a shell, then run it unless --dry-run.
run() {
    local arg line=""
    for arg in "$@"; do
        case $arg in
            "" | *[!A-Za-z0-9_./=:@%+,-]*) arg="'${arg//\'/\'\\\'\'}'" ;;
        esac
        line+="$arg "
    done
    printf '+ %s\n' "${line% }"
    if [ "${DRY_RUN:?}" -eq 0 ]; then
        "$@"
    fi
}
