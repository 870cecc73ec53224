#!/usr/bin/env bash
# Type-check the project with pyright, twice:
#   host      pyrightconfig.json           host/, hil/, protocol/host_codec.py, tests/ (CPython
#                                          3.11, bundled typeshed, the project's .venv)
#   firmware  pyrightconfig.firmware.json  firmware/, board-side protocol/*.py, hil/rigctl/ (MicroPython on
#                                          the Pico: rp2 stubs + MicroPython stdlib stubs)
# The MicroPython stubs are installed from PyPI on first run (pinned; about 1.5 MB) into
# .venv/micropython-rp2, a venv-shaped folder that holds only them, so they never reach the host
# check. Later runs reuse them. Usage: bash tools/pyright.sh [host|firmware]...
set -euo pipefail

cd "$(dirname "$0")/.."

# Pinned together: the rp2 stubs require micropython-stdlib-stubs~=1.29.0.
STUBS_SPEC="micropython-rp2-rpi_pico-stubs==1.29.0.post1 micropython-stdlib-stubs==1.29.0.post2"
STUBS_ENV=.venv/micropython-rp2
STUBS_DIR=$STUBS_ENV/lib/site-packages
STUBS_STAMP=$STUBS_ENV/.installed

PYRIGHT=node_modules/.bin/pyright
if [ ! -x "$PYRIGHT" ]; then
    echo "pyright.sh: $PYRIGHT is missing; run 'make setup' (npm ci) first" >&2
    exit 2
fi

install_stubs() {
    if [ -f "$STUBS_STAMP" ] && [ "$(cat "$STUBS_STAMP")" = "$STUBS_SPEC" ] \
        && [ -f "$STUBS_DIR/machine.pyi" ] && [ -f "$STUBS_DIR/stdlib/builtins.pyi" ]; then
        return 0
    fi
    local py=python3
    [ -x .venv/bin/python ] && py=.venv/bin/python
    echo "pyright.sh: installing MicroPython stubs into $STUBS_DIR"
    mkdir -p .venv
    local tmp log
    tmp=$(mktemp -d .venv/.micropython-rp2.XXXXXX)
    log=$tmp/pip.log
    # shellcheck disable=SC2086  # STUBS_SPEC is a list of requirements
    if ! "$py" -m pip install --disable-pip-version-check --no-input --no-user --no-deps \
        --only-binary=:all: --no-compile --target "$tmp/lib/site-packages" $STUBS_SPEC \
        >"$log" 2>&1; then
        cat "$log" >&2
        rm -rf "$tmp"
        echo "pyright.sh: could not install $STUBS_SPEC" >&2
        exit 2
    fi
    rm -f "$log"
    printf '%s\n' "$STUBS_SPEC" >"$tmp/.installed"
    # Swap in whole, so an interrupted install never leaves a half-filled folder behind.
    rm -rf "$STUBS_ENV"
    chmod 755 "$tmp"
    mv "$tmp" "$STUBS_ENV"
}

run() {
    local name=$1 config=$2
    echo "pyright ($name): $config"
    "$PYRIGHT" --warnings -p "$config"
}

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(host firmware)

status=0
for t in "${targets[@]}"; do
    case $t in
        host) run host pyrightconfig.json || status=1 ;;
        firmware) install_stubs && { run firmware pyrightconfig.firmware.json || status=1; } ;;
        *) echo "pyright.sh: unknown target '$t' (host, firmware)" >&2; exit 2 ;;
    esac
done
exit $status
