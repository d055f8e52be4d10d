#!/usr/bin/env bash
# The whole test suite, as README.md and CI run it:
#   1. formatting and lints (warnings are errors),
#   2. Rust unit tests, in-process proxy and policy tests (cargo test --workspace; the policy components are
#      built first by policies/build.sh),
#   3. a short bounded run of the fuzz targets (tests/fuzz.sh: nightly + cargo-fuzz, FUZZ_SECONDS each),
#   4. end-to-end tests: the real mcp-gateway binary with real Python MCP SDK peers over TLS (pytest),
#   5. the packaging checked by the real tools: the Helm chart rendered and linted by Helm's Go SDK and validated
#      against the Kubernetes schemas, the Dockerfile linted by hadolint (pytest, tests/deploy).
# Installs what it needs that a fresh machine lacks (rustfmt/clippy components, the wasm32-wasip2 target,
# the Python venvs, the nightly toolchain and cargo-fuzz for the fuzz step).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "python peers (tests/setup.sh)"
bash tests/setup.sh

step "policy components (wasm32-wasip2)"
bash policies/build.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test (unit + in-process)"
cargo test --workspace

step "fuzz targets, ${FUZZ_SECONDS:-30}s each (tests/fuzz.sh)"
bash tests/fuzz.sh

step "end-to-end with real MCP SDK peers"
cargo build -p mcp-gateway
export MCP_GATEWAY_BIN="${MCP_GATEWAY_BIN:-$PWD/target/debug/mcp-gateway}"
tests/.venv/mcp2/bin/python -m pytest tests/e2e -q

step "packaging: Helm chart (Helm SDK, kubernetes-validate) and Dockerfile (hadolint)"
tests/.venv/mcp2/bin/python -m pytest tests/deploy -q
