#!/usr/bin/env bash
# Install alatau-gateway from this source tree onto Raspberry Pi OS bookworm / Debian 12.
#
#   sudo scripts/install.sh [--config FILE] [--token-file FILE] [--no-start]
#   sudo scripts/install.sh --uninstall [--purge]
#
# Safe to run again: it upgrades the code and the unit, keeps the config, token and buffer.
set -euo pipefail

PROG=install.sh
APP=alatau-gateway
PREFIX=/opt/$APP
VENV=$PREFIX/venv
ETC_DIR=/etc/$APP
CONFIG=$ETC_DIR/gateway.toml
TOKEN=$ETC_DIR/token
STATE_DIR=/var/lib/$APP
UNIT_DIR=/etc/systemd/system
UNIT=$UNIT_DIR/$APP.service
SYSUSERS=/etc/sysusers.d/$APP.conf
TMPFILES=/etc/tmpfiles.d/$APP.conf
APT_PACKAGES=(python3 python3-venv ca-certificates i2c-tools)
PLACEHOLDER_TOKEN="REPLACE-ME-with-this-gateways-token"

TREE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
    cat <<EOF
Usage: sudo $0 [options]

Installs $APP from $TREE:
  the system user $APP (groups i2c gpio dialout), a virtualenv in $VENV,
  config in $ETC_DIR/, the buffer in $STATE_DIR/, the unit $APP.service enabled
  and started.

Options:
  --config FILE      install FILE as $CONFIG (checked first; the old one is kept as .bak)
                     (default: keep the existing config, or install the documented example)
  --token-file FILE  install FILE as the uplink token $TOKEN (mode 0600)
                     (default: keep the existing token, or write a placeholder)
  --no-start         install and enable, but do not (re)start the service
  --no-raspi-config  do not enable I2C and the serial port with raspi-config
  --uninstall        stop and remove the unit and the virtualenv; keep config and buffer
  --purge            with --uninstall: also delete config, token, buffer and the user
  -h, --help         this text
EOF
}

say() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

config_src="" token_src="" start=1 raspi=1 uninstall=0 purge=0
while [ $# -gt 0 ]; do
    case $1 in
        --config) [ $# -ge 2 ] || die "--config needs a FILE"; config_src=$2; shift 2 ;;
        --config=*) config_src=${1#*=}; shift ;;
        --token-file) [ $# -ge 2 ] || die "--token-file needs a FILE"; token_src=$2; shift 2 ;;
        --token-file=*) token_src=${1#*=}; shift ;;
        --no-start) start=0; shift ;;
        --no-raspi-config) raspi=0; shift ;;
        --uninstall) uninstall=1; shift ;;
        --purge) purge=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "must run as root (try: sudo $0${*:+ $*})"
if [ "$purge" = 1 ] && [ "$uninstall" = 0 ]; then
    die "--purge only goes with --uninstall"
fi
umask 022

# systemd as PID 1 (not a chroot or an image being prepared): only then start things.
systemd_running() { [ -d /run/systemd/system ]; }

# --- uninstall -------------------------------------------------------------------------

if [ "$uninstall" = 1 ]; then
    say "Uninstalling $APP"
    if systemd_running; then
        systemctl disable --now "$APP.service" 2>/dev/null || true
    elif [ -e "$UNIT" ]; then
        systemctl disable "$APP.service" 2>/dev/null || true
    fi
    rm -f "$UNIT"
    rm -rf "$UNIT_DIR/$APP.service.d"
    systemd_running && systemctl daemon-reload
    rm -rf "$PREFIX"
    rm -f /usr/local/bin/$APP
    note "removed the unit, $PREFIX and /usr/local/bin/$APP"
    if [ "$purge" = 1 ]; then
        rm -rf "$ETC_DIR" "$STATE_DIR"
        rm -f "$SYSUSERS" "$TMPFILES"
        if getent passwd "$APP" >/dev/null; then userdel "$APP" || warn "could not remove user $APP"; fi
        if getent group "$APP" >/dev/null; then groupdel "$APP" 2>/dev/null || true; fi
        note "purged $ETC_DIR, $STATE_DIR and the user $APP (groups i2c, gpio kept)"
    else
        note "kept $ETC_DIR (config, token) and $STATE_DIR (buffer); --purge deletes them"
    fi
    say "Done"
    exit 0
fi

# --- checks ----------------------------------------------------------------------------

if [ ! -f "$TREE/pyproject.toml" ] || [ ! -d "$TREE/gateway" ]; then
    die "$TREE does not look like an $APP source tree (no pyproject.toml or gateway/)"
fi
for f in "$APP.service" "$APP.sysusers" "$APP.tmpfiles" gateway.example.toml; do
    [ -f "$TREE/systemd/$f" ] || die "missing $TREE/systemd/$f"
done
if [ -n "$config_src" ]; then
    [ -r "$config_src" ] || die "--config $config_src: no such readable file"
    config_src=$(readlink -f "$config_src")
fi
if [ -n "$token_src" ]; then
    [ -r "$token_src" ] || die "--token-file $token_src: no such readable file"
    [ -s "$token_src" ] || die "--token-file $token_src: the file is empty"
fi
if [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    . /etc/os-release
    if [ "${VERSION_CODENAME:-}" != bookworm ]; then
        warn "made for Debian 12 / Raspberry Pi OS bookworm, this is ${PRETTY_NAME:-unknown}"
    fi
fi
if ! command -v systemd-sysusers >/dev/null || ! command -v systemd-tmpfiles >/dev/null; then
    die "systemd-sysusers and systemd-tmpfiles are needed (package systemd)"
fi

# --- packages --------------------------------------------------------------------------

say "System packages: ${APT_PACKAGES[*]}"
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    note "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q || die "apt-get update failed (network? see above)"
    apt-get install -y -q --no-install-recommends "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed (see above)"
else
    note "all installed"
fi

# --- user, groups, directories -----------------------------------------------------------

say "User $APP in groups i2c gpio dialout (systemd-sysusers)"
install -D -m 0644 "$TREE/systemd/$APP.sysusers" "$SYSUSERS"
systemd-sysusers "$SYSUSERS" || die "systemd-sysusers $SYSUSERS failed"
note "$(id "$APP")"

say "Directories $ETC_DIR and $STATE_DIR (systemd-tmpfiles)"
install -D -m 0644 "$TREE/systemd/$APP.tmpfiles" "$TMPFILES"
systemd-tmpfiles --create "$TMPFILES" || die "systemd-tmpfiles --create $TMPFILES failed"

# --- virtualenv ------------------------------------------------------------------------

say "Virtualenv $VENV with $APP from $TREE"
if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    note "the existing virtualenv is broken (Python upgraded?): recreating it"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    # Debian's interpreter (the one python3-venv is for), not whatever python3 is first in PATH.
    /usr/bin/python3 -m venv "$VENV" || die "/usr/bin/python3 -m venv $VENV failed"
fi
# Build from a clean copy, so the checkout (often owned by the technician) gets no
# root-owned build/ or *.egg-info, and a developer's .venv is not copied along.
build=$(mktemp -d /tmp/$APP-build.XXXXXX)
trap 'rm -rf "$build"' EXIT
tar -C "$TREE" --exclude=.git --exclude=.venv --exclude=venv --exclude=build \
    --exclude='*.egg-info' --exclude=__pycache__ --exclude=.mypy_cache \
    --exclude=.pytest_cache --exclude=.ruff_cache --exclude=.hypothesis -cf - . \
    | tar -C "$build" -xf -
# pip always reinstalls a package given as a directory, so an edited tree lands even when
# its version number did not change; dependencies are only fetched when missing or too old.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir "$build" \
    || die "pip install into $VENV failed (network to the package index? see above)"
# On a Raspberry Pi, gpiozero drives the actuators through lgpio. Raspberry Pi OS ships it
# as python3-lgpio, outside the venv: link just that module in (it is built for this same
# interpreter), else take the wheel from the package index.
if grep -qs "Raspberry Pi" /proc/device-tree/model \
        && ! "$VENV/bin/python" -c 'import lgpio' 2>/dev/null; then
    site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')
    if lgpio_files=$(/usr/bin/python3 -c 'import lgpio, _lgpio; print(lgpio.__file__); print(_lgpio.__file__)' 2>/dev/null); then
        while IFS= read -r f; do ln -sf "$f" "$site/"; done <<<"$lgpio_files"
        note "lgpio (GPIO for gpiozero): linked from python3-lgpio"
    elif "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir lgpio; then
        note "lgpio (GPIO for gpiozero): installed from the package index"
    else
        warn "no lgpio for this Pi (apt-get install python3-lgpio): GPIO actuators will not work"
    fi
fi
# The unit runs with a read-only /opt: compile the byte code now, once.
"$VENV/bin/python" -m compileall -q "$VENV/lib" >/dev/null || true
install -D -m 0644 "$TREE/docs/deployment.md" "$PREFIX/share/deployment.md" 2>/dev/null || true
ln -sf "$VENV/bin/$APP" /usr/local/bin/$APP
note "$("$VENV/bin/$APP" --version)"

# --- config and token --------------------------------------------------------------------

check_config() { "$VENV/bin/$APP" check-config "$1"; }

if [ -n "$config_src" ]; then
    say "Config $CONFIG from $config_src"
    check_config "$config_src" || die "$config_src is not valid (see above); nothing changed"
    if [ -e "$CONFIG" ] && ! cmp -s "$config_src" "$CONFIG"; then
        backup="$CONFIG.bak.$(date +%Y%m%d%H%M%S)"
        cp -p "$CONFIG" "$backup"
        note "previous config kept as $backup"
    fi
    install -m 0640 -o root -g "$APP" "$config_src" "$CONFIG"
elif [ -e "$CONFIG" ]; then
    say "Config $CONFIG exists: kept as it is"
    check_config "$CONFIG" || warn "$CONFIG is not valid (see above): fix it before starting"
else
    say "Config $CONFIG: installing the documented example"
    install -m 0640 -o root -g "$APP" "$TREE/systemd/gateway.example.toml" "$CONFIG"
    note "edit it for this cabinet: gateway.id, uplink.url, the sensors"
fi
chown root:"$APP" "$CONFIG"
chmod 0640 "$CONFIG"

if [ -n "$token_src" ]; then
    say "Token $TOKEN from $token_src"
    install -m 0600 -o root -g root "$token_src" "$TOKEN"
elif [ -e "$TOKEN" ]; then
    say "Token $TOKEN exists: kept"
else
    say "Token $TOKEN: writing a placeholder"
    (umask 077 && printf '%s\n' "$PLACEHOLDER_TOKEN" > "$TOKEN")
fi
chown root:root "$TOKEN"
chmod 0600 "$TOKEN"
if grep -qx "$PLACEHOLDER_TOKEN" "$TOKEN"; then
    warn "$TOKEN holds a placeholder: the cloud will refuse uploads (readings stay buffered)"
    warn "put the real token there, then: sudo systemctl restart $APP"
fi

# --- I2C and serial on a Raspberry Pi -------------------------------------------------------

reboot_needed=0
if [ "$raspi" = 1 ] && command -v raspi-config >/dev/null; then
    say "Raspberry Pi: enabling I2C and the serial port (raspi-config)"
    # get_* answers 0 when enabled; anything that changes needs a reboot to take effect.
    if [ "$(raspi-config nonint get_i2c 2>/dev/null || echo 1)" != 0 ]; then
        raspi-config nonint do_i2c 0 || die "raspi-config nonint do_i2c 0 failed"
        reboot_needed=1
    fi
    if [ "$(raspi-config nonint get_serial_hw 2>/dev/null || echo 1)" != 0 ] \
        || [ "$(raspi-config nonint get_serial_cons 2>/dev/null || echo 0)" != 1 ]; then
        if raspi-config nonint do_serial_hw 0 2>/dev/null; then
            raspi-config nonint do_serial_cons 1 || die "raspi-config nonint do_serial_cons 1 failed"
        else
            # Older raspi-config: one switch, 2 = port on, login console off.
            raspi-config nonint do_serial 2 || die "raspi-config nonint do_serial 2 failed"
        fi
        reboot_needed=1
    fi
    note "I2C on, serial port on, serial login console off"
elif [ "$raspi" = 1 ]; then
    note "no raspi-config (not Raspberry Pi OS): enable I2C and the UART yourself if needed"
fi

# --- the unit ----------------------------------------------------------------------------

say "Unit $UNIT"
install -m 0644 "$TREE/systemd/$APP.service" "$UNIT"
if systemd_running; then
    systemctl daemon-reload
fi
systemctl enable "$APP.service" 2>&1 | sed 's/^/    /' || die "systemctl enable $APP failed"

if [ "$start" = 0 ]; then
    say "Not starting (--no-start): sudo systemctl start $APP"
elif ! systemd_running; then
    say "systemd is not running here: $APP starts at the next boot"
else
    say "Starting $APP"
    # Type=notify: restart returns once the service has sent READY=1, or fails.
    if ! systemctl restart "$APP.service"; then
        journalctl -u "$APP.service" -n 30 --no-pager >&2 || true
        die "$APP did not start (journal above; config: $CONFIG)"
    fi
    note "$(systemctl is-active "$APP.service"): $(systemctl show -p StatusText --value "$APP.service")"
fi

if [ "$reboot_needed" = 1 ]; then
    say "I2C or the serial port was just switched on: reboot to finish (sudo reboot)"
fi
say "Done. Next:"
note "edit $CONFIG, then: sudo $APP check-config $CONFIG"
note "sudo systemctl restart $APP; systemctl status $APP; journalctl -u $APP -f"
