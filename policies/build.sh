#!/usr/bin/env bash
# Builds the policy components (stock policies and the gateway's hostile test fixtures) for wasm32-wasip2
# with the workspace's `policy` profile, and prints each component's path and size.
#
#   bash policies/build.sh                    # all of them
#   bash policies/build.sh tool-allowlist     # only the named packages
#
# Idempotent: installs the wasm32-wasip2 target when missing (a fresh machine lacks it), and cargo rebuilds
# only what changed. Honours CARGO_TARGET_DIR. Output: <target>/wasm32-wasip2/policy/<crate_name>.wasm.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=("$@")
if [ ${#packages[@]} -eq 0 ]; then
    packages=(tool-allowlist mutation-guard argument-rules hostile-policy forbidden-import)
fi

if command -v rustup >/dev/null 2>&1; then
    rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
elif ! rustc --print target-list | grep -qx wasm32-wasip2; then
    echo "build.sh: rustc cannot target wasm32-wasip2 and rustup is not installed" >&2
    exit 1
fi

args=()
for p in "${packages[@]}"; do args+=(-p "$p"); done
cargo build --target wasm32-wasip2 --profile policy "${args[@]}"

target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
out="${target_dir:-target}/wasm32-wasip2/policy"
for p in "${packages[@]}"; do
    # A package's library (and so its .wasm) is named after the package with `-` → `_`, except where its
    # manifest says otherwise: hostile-policy's library is `hostile_policy` too.
    wasm="$out/${p//-/_}.wasm"
    if [ ! -f "$wasm" ]; then
        echo "build.sh: expected $wasm after building $p" >&2
        exit 1
    fi
    size=$(wc -c <"$wasm")
    printf '%s\t%d bytes (%d KiB)\n' "$wasm" "$size" $(((size + 1023) / 1024))
done
