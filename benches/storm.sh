#!/usr/bin/env bash
# An outage storm: TARGETS HTTP targets over 20 services × 10 regions × 5 platforms all fail
# at once, ROUNDS times, against a release `tocsin run` on loopback; one `name: value` line
# per figure, each storm beside the steady state measured in the same run.
#
#   benches/storm.sh [TARGETS] [ROUNDS] [INTERVAL_S]     (defaults 10000 3 5)
#
# TOCSIN_BIN=/path/to/tocsin runs another build of the daemon (a before/after).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --locked --quiet --bench storm -- "${1:-10000}" "${2:-3}" "${3:-5}"
