#!/usr/bin/env bash
# Creates the Python venvs the end-to-end tests need (idempotent; a no-op when already done).
#   tests/.venv/mcp2 : mcp==2.3.0 + pytest + jsonschema (runs the suite and the modern/legacy 2.x clients and server_v2)
#   tests/.venv/mcp1 : mcp==1.30.0 (legacy-only server_v1 and client_v1)
# A stamp file keyed by the pinned requirements makes a rerun skip pip entirely.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venvs="$here/.venv"
python="${PYTHON:-python3}"

MCP2_REQS=(mcp==2.3.0 pytest==8.4.2 pytest-timeout==2.4.0 trustme==1.2.1 jsonschema==4.26.0)
MCP1_REQS=(mcp==1.30.0)

make_venv() {
    local name="$1"; shift
    local dir="$venvs/$name"
    local key
    key="$("$python" -c 'import sys; print(sys.version.split()[0])') $*"
    if [[ -x "$dir/bin/python" && -f "$dir/.stamp" && "$(cat "$dir/.stamp")" == "$key" ]]; then
        echo "setup: $name up to date"
        return
    fi
    echo "setup: building $dir ($*)"
    rm -rf "$dir"
    "$python" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    printf '%s' "$key" > "$dir/.stamp"
}

mkdir -p "$venvs"
make_venv mcp2 "${MCP2_REQS[@]}"
make_venv mcp1 "${MCP1_REQS[@]}"
