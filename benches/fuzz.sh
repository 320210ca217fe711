#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (libFuzzer through cargo-fuzz) for SECONDS each, one after
# the other, and prints executions and crashes per target.
#
#   benches/fuzz.sh [SECONDS_PER_TARGET] [TARGET…]      (default 60 s, every target)
#
# Works on a stable toolchain: cargo-fuzz needs -Z flags (sanitizer, coverage passes), which
# RUSTC_BOOTSTRAP=1 lets stable rustc take. New inputs go to a working corpus seeded from
# fuzz/corpus/<target> (kept small in git): a temporary one, or $FUZZ_WORK/<target> to keep
# it across runs. Crashes land in fuzz/artifacts/<target>/ (not in git): make each a unit
# test in the crate, with the minimized input (`cargo fuzz tmin TARGET FILE`), and fix it.
# FUZZ_SANITIZER (address by default; `none` builds faster and runs ~2x faster) and
# FUZZ_PROFILE (release by default; `dev` builds faster, runs slower) pick the build.
set -euo pipefail

seconds=${1:-60}
shift || true
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root/fuzz"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz…" >&2
    cargo install cargo-fuzz --locked --quiet
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

build=(--sanitizer "${FUZZ_SANITIZER:-address}")
[ "${FUZZ_PROFILE:-release}" = dev ] && build+=(--dev)

if [ -n "${FUZZ_WORK:-}" ]; then
    work=$FUZZ_WORK
    mkdir -p "$work"
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/tocsin-fuzz.XXXXXX")
    trap 'rm -rf "$work"' EXIT
fi
trap 'exit 130' INT
trap 'exit 143' TERM

echo "building the fuzz targets (${build[*]})…" >&2
cargo fuzz build "${build[@]}" 2>&1 | { grep -v '^ *Compiling' || true; } >&2

failed=0
for target in "${targets[@]}"; do
    mkdir -p "$work/$target" "artifacts/$target"
    log="$work/$target.log"
    before=$(find "artifacts/$target" -type f | wc -l)
    status=0
    # -timeout: an input taking 10 s is a hang (a finding too); -rss_limit_mb: one of 2 GiB.
    cargo fuzz run "${build[@]}" "$target" "$work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    crashes=$(( $(find "artifacts/$target" -type f | wc -l) - before ))
    corpus=$(find "$work/$target" -type f | wc -l)
    echo "$target: seconds $seconds, executions ${execs:-0}, crashes $crashes, corpus $corpus, exit $status"
    if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        failed=1
        grep -m1 -A12 -E '^==[0-9]+==|panicked at|Test unit written' "$log" >&2 || tail -20 "$log" >&2
    fi
done
exit "$failed"
