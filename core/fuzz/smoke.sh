#!/usr/bin/env bash
# Smoke-runs every fuzz target of ferry-core for a short fixed time.
# Exits non-zero if a target fails to build or finds a crash (the crashing
# input is left in core/fuzz/artifacts/<target>/).
#
# Needs: the nightly toolchain (rustup) and cargo-fuzz
# (`cargo install cargo-fuzz --locked`; installed here if missing).
#
# Usage: core/fuzz/smoke.sh [seconds per target, default 20] [target ...]
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_PER_TARGET="${1:-20}"
shift || true

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "smoke.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "smoke.sh: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
    exit 2
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build
logs="$(mktemp -d)"

failed=()
for target in "${targets[@]}"; do
    echo "=== fuzz $target for ${SECONDS_PER_TARGET}s"
    corpus="corpus/$target"
    mkdir -p "$corpus"
    dirs=("$corpus")
    if [ -d "seeds/$target" ]; then
        dirs+=("seeds/$target")
    fi
    if cargo +nightly fuzz run "$target" "${dirs[@]}" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 2>"$logs/$target.log"; then
        grep -E '^(Done|stat::number_of_executed_units)' "$logs/$target.log" || true
    else
        echo "!!! $target FAILED; last lines of its log:" >&2
        tail -n 40 "$logs/$target.log" >&2
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz smoke: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz smoke: ${#targets[@]} targets ran ${SECONDS_PER_TARGET}s each, no crash"
