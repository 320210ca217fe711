#!/usr/bin/env bash
# Status page cost with many services and a full 90-day history.
#
#   benches/status_page.sh [SERVICES] [REQUESTS] [TARGETS] [INTERVAL]
#                                        (defaults 200, 50, one target a service, 10s)
#
# Starts a release `tocsin run` with SERVICES services and TARGETS targets spread over them
# (probing tocsin's own /healthz on loopback every INTERVAL), seeds 90 days of daily rollups
# for every service, then fetches GET / and GET /api/v1/status REQUESTS times each and
# prints their sizes (plain and gzip) and the time to serve them. The baseline, measured in
# the same run under the same probing, is GET /healthz: what a request costs with no page
# to build. TOCSIN_BIN=/path/to/tocsin runs another build of the daemon (a before/after).
set -euo pipefail
cd "$(dirname "$0")/.."

services=${1:-200}
requests=${2:-50}
targets=${3:-$services}
interval=${4:-10s}
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bin=${TOCSIN_BIN:-${CARGO_TARGET_DIR:-target}/release/tocsin}
[ -n "${TOCSIN_BIN:-}" ] || cargo build --release --quiet
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 - "$work/tocsin.toml" "$services" "$port" "$work/tocsin.db" "$targets" "$interval" <<'PY'
import sys
path, n, port, db, targets, interval = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
with open(path, "w") as f:
    f.write(f'[server]\nlisten = "127.0.0.1:{port}"\n[storage]\nsqlite = "{db}"\n')
    f.write(f'[defaults]\ninterval = "{interval}"\ntimeout = "2s"\n')
    for i in range(n):
        f.write(f'[[services]]\nid = "svc-{i:03}"\nname = "Service {i}"\nsubscribers = 100000\n')
    for t in range(targets):   # round robin over the services
        f.write(f'[[targets]]\nid = "t-{t:03}"\nservice = "svc-{t % n:03}"\n')
        f.write(f'probe = {{ type = "http", url = "http://127.0.0.1:{port}/healthz" }}\n')
PY
"$bin" --log-level warn run --config "$work/tocsin.toml" &
pid=$!
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "status_page.sh: tocsin exited" >&2; exit 1; }
    sleep 0.1
done

python3 - "$work/tocsin.db" "$services" <<'PY'
import sqlite3, sys, time, random
db, n = sys.argv[1], int(sys.argv[2])
today = int(time.time()) // 86400 * 86400
conn = sqlite3.connect(db, timeout=10)
rows = []
for i in range(n):
    for d in range(1, 90):
        down = random.choice([0] * 20 + [60, 600, 3600])
        worst = 0 if down == 0 else random.choice([2, 3, 4])
        # Subscriber-seconds observed and lost: 100 000 subscribers, 3 % of them out
        # while the service is down.
        rows.append((1, f"svc-{i:03}", today - d * 86400, 8640, 0, 86.4, 0.05, b"",
                     86400.0, float(down), 0.0, worst, 100000 * 86400.0, 3000.0 * down))
conn.executemany(
    "INSERT OR REPLACE INTO rollup_day (kind, id, start, probes, failures, latency_sum,"
    " latency_max, histogram, observed, downtime, maintenance, worst, user_seconds,"
    " user_seconds_lost) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
conn.commit()
print(f"seeded {len(rows)} daily rows")
PY

measure() {
    local path=$1
    python3 - "http://127.0.0.1:$port$path" "$requests" <<'PY'
import sys, time, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
times, size = [], 0
for _ in range(n):
    t = time.perf_counter()
    body = urllib.request.urlopen(url).read()
    times.append(time.perf_counter() - t)
    size = len(body)
times.sort()
print(f"{size} {times[len(times)//2]*1000:.2f} {times[int(len(times)*0.95)-1]*1000:.2f}")
PY
}
gzip_bytes() { curl -s -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download}' "http://127.0.0.1:$port$1"; }
read -r page_size page_p50 page_p95 < <(measure /)
read -r api_size api_p50 api_p95 < <(measure /api/v1/status)
read -r _ base_p50 base_p95 < <(measure /healthz)
echo "services:            $services"
echo "targets:             $targets at $interval"
echo "history_days:        90"
echo "page_bytes:          $page_size (gzip on the wire: $(gzip_bytes /))"
echo "page_ms_p50:         $page_p50"
echo "page_ms_p95:         $page_p95"
echo "api_status_bytes:    $api_size (gzip on the wire: $(gzip_bytes /api/v1/status))"
echo "api_status_ms_p50:   $api_p50"
echo "api_status_ms_p95:   $api_p95"
echo "baseline_healthz_ms: $base_p50 (p50), $base_p95 (p95)"
python3 -c "print(f'ratio_page_to_baseline_p50: {float(\"$page_p50\")/float(\"$base_p50\"):.1f}')"
python3 -c "print(f'ratio_api_status_to_baseline_p50: {float(\"$api_p50\")/float(\"$base_p50\"):.1f}')"
