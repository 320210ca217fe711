#!/usr/bin/env bash
# Status page cost with many services and a full 90-day history.
#
#   benches/status_page.sh [SERVICES] [REQUESTS]     (defaults 200 and 50)
#
# Starts a release `tocsin run` with SERVICES services (one target each, probing tocsin's own
# /healthz on loopback), seeds 90 days of daily rollups for every service, then fetches
# GET / REQUESTS times and prints the page size and the time to serve it. The baseline,
# measured in the same run, is GET /healthz: what a request costs with no page to build.
set -euo pipefail
cd "$(dirname "$0")/.."

services=${1:-200}
requests=${2:-50}
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cargo build --release --quiet
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 - "$work/tocsin.toml" "$services" "$port" "$work/tocsin.db" <<'PY'
import sys
path, n, port, db = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
with open(path, "w") as f:
    f.write(f'[server]\nlisten = "127.0.0.1:{port}"\n[storage]\nsqlite = "{db}"\n')
    f.write('[defaults]\ninterval = "10s"\ntimeout = "2s"\n')
    for i in range(n):
        f.write(f'[[services]]\nid = "svc-{i:03}"\nname = "Service {i}"\nsubscribers = 100000\n')
        f.write(f'[[targets]]\nid = "t-{i:03}"\nservice = "svc-{i:03}"\n')
        f.write(f'probe = {{ type = "http", url = "http://127.0.0.1:{port}/healthz" }}\n')
PY
"${CARGO_TARGET_DIR:-target}/release/tocsin" --log-level warn run --config "$work/tocsin.toml" &
pid=$!
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.1; done

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
read -r page_size page_p50 page_p95 < <(measure /)
read -r _ base_p50 base_p95 < <(measure /healthz)
echo "services:            $services"
echo "history_days:        90"
gzip_size=$(curl -s -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download}' "http://127.0.0.1:$port/")
echo "page_bytes:          $page_size (gzip on the wire: $gzip_size)"
echo "page_ms_p50:         $page_p50"
echo "page_ms_p95:         $page_p95"
echo "baseline_healthz_ms: $base_p50 (p50), $base_p95 (p95)"
python3 -c "print(f'ratio_page_to_baseline_p50: {float(\"$page_p50\")/float(\"$base_p50\"):.1f}')"
