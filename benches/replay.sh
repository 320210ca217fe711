#!/usr/bin/env bash
# Replay throughput: a day of TARGETS targets probed every INTERVAL seconds (default 1 000 ×
# 30 s × 24 h ≈ 2.88 M results, with realistic outages) through `tocsin replay`, on one core.
#
#   benches/replay.sh [TARGETS] [INTERVAL_SECONDS] [HOURS]
#
# Prints one line per figure. The baseline is a plain Python json.loads pass over the same
# file, pinned to the same core in the same run (see benches/README.md for why).
set -euo pipefail

targets=${1:-1000}
interval=${2:-30}
hours=${3:-24}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
bin=$target_dir/release/tocsin
work=$(mktemp -d "${TMPDIR:-/tmp}/tocsin-replay-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pin=()
if command -v taskset >/dev/null 2>&1 && taskset -c 0 true 2>/dev/null; then
    pin=(taskset -c 0)
fi

echo "building tocsin (release)…" >&2
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin tocsin

echo "generating $targets targets × ${interval}s × ${hours}h into $work…" >&2
python3 "$root/benches/replay_input.py" --out "$work" \
    --targets "$targets" --interval "$interval" --hours "$hours" >/dev/null
cat "$work/input.jsonl" >/dev/null # in the page cache for both runs

# measure NAME CMD...: runs CMD (stdout to $work/NAME.out, stderr to $work/NAME.err) and
# leaves "wall user sys maxrss_kib" in $work/NAME.time.
measure() {
    local name=$1
    shift
    if [[ -x /usr/bin/time ]]; then
        /usr/bin/time -o "$work/$name.time" -f '%e %U %S %M' \
            "$@" >"$work/$name.out" 2>"$work/$name.err"
    else
        local TIMEFORMAT='%R %U %S -'
        { time "$@" >"$work/$name.out" 2>"$work/$name.err"; } 2>"$work/$name.time"
    fi
}

echo "baseline: python3 json.loads over every line…" >&2
measure baseline "${pin[@]}" python3 -c '
import json, sys
n = 0
for line in sys.stdin.buffer:
    json.loads(line)
    n += 1
print(n)' <"$work/input.jsonl"

echo "replay…" >&2
if ! measure replay "${pin[@]}" "$bin" replay --config "$work/tocsin.toml" \
    --input "$work/input.jsonl" --output "$work/events.jsonl"; then
    cat "$work/replay.err" >&2
    exit 1
fi

read -r wall user sys rss <"$work/replay.time"
read -r _ b_user b_sys _ <"$work/baseline.time"
lines=$(wc -l <"$work/input.jsonl")
events=$(($(wc -l <"$work/events.jsonl") - 1))
incidents=$(tail -n 1 "$work/events.jsonl" |
    python3 -c 'import json, sys; print(len(json.load(sys.stdin)["incidents"]))')

awk -v lines="$lines" -v wall="$wall" -v user="$user" -v sys="$sys" -v rss="$rss" \
    -v events="$events" -v incidents="$incidents" -v b_user="$b_user" -v b_sys="$b_sys" \
    -v pinned="${pin[*]:-not pinned}" 'BEGIN {
    cpu = user + sys; b_cpu = b_user + b_sys
    printf "pinning:              %s\n", pinned
    printf "lines:                %d\n", lines
    printf "wall_seconds:         %.2f\n", wall
    printf "cpu_seconds:          %.2f (user %.2f + sys %.2f)\n", cpu, user, sys
    printf "lines_per_second:     %.0f (wall); %.0f per CPU second\n", lines / (wall > 0 ? wall : 0.01), lines / (cpu > 0 ? cpu : 0.01)
    printf "events:               %d\n", events
    printf "incidents:            %d\n", incidents
    if (rss != "-") printf "max_rss_mib:          %.1f\n", rss / 1024
    printf "baseline_cpu_seconds: %.2f (python3 json.loads of every line)\n", b_cpu
    printf "ratio_to_baseline:    %.2f (replay CPU / baseline CPU)\n", cpu / (b_cpu > 0 ? b_cpu : 0.01)
}'
