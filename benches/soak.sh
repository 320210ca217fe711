#!/usr/bin/env bash
# Soak: many loopback targets, a few of them flapping, for a long time; does tocsin stay
# flat, and does everything settle once the flapping stops?
#
#   benches/soak.sh [TARGETS] [FLAP_PERCENT]          (defaults 1000 5)
#
#   TOCSIN_SOAK_SECONDS   how long the targets flap             (default 1800: 30 min)
#   TOCSIN_SOAK_SAMPLE    seconds between samples               (default 60)
#   TOCSIN_SOAK_INTERVAL  probe interval of every target, s     (default 10)
#   TOCSIN_SOAK_PERIOD    a flapping target is down this many seconds, then up as long
#                         (default 60)
#   TOCSIN_SOAK_RESOLVE   resolve_after, s: quiet time before an incident resolves
#                         (default 30)
#   TOCSIN_SOAK_DRAIN     how long, once flapping stops, everything may take to settle
#                         (default 120 s)
#   TOCSIN_SOAK_BIN       a tocsin binary to run instead of building the release one
#
# Starts a loopback target server (Python: /ok always 200, /flap 503 every other PERIOD
# until told to stop), a webhook receiver that counts what it gets, and a release
# `tocsin run` with TARGETS http targets in 20 services, FLAP_PERCENT of them on /flap
# (one failure or success changes a state, incidents resolve after RESOLVE quiet). Every
# SAMPLE seconds it prints one line: RSS, open file descriptors, OS threads, probes in
# flight, open incidents, alerts pending in the outbox. Then the flapping stops and it
# waits (polling, up to DRAIN) for no incident open and an empty outbox, and prints the
# drift of each figure from the first sample to the last. It fails (exit 1) when
# something is still open or pending at the end; it only prints the other figures.
# tokio's own task count needs `--cfg tokio_unstable`: probes in flight (a task each) and
# OS threads stand in for it.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=${1:-1000}
flap_percent=${2:-5}
seconds=${TOCSIN_SOAK_SECONDS:-1800}
sample=${TOCSIN_SOAK_SAMPLE:-60}
interval=${TOCSIN_SOAK_INTERVAL:-10}
period=${TOCSIN_SOAK_PERIOD:-60}
drain=${TOCSIN_SOAK_DRAIN:-120}
resolve=${TOCSIN_SOAK_RESOLVE:-30}
bin=${TOCSIN_SOAK_BIN:-${CARGO_TARGET_DIR:-target}/release/tocsin}
work=$(mktemp -d "${TMPDIR:-/tmp}/tocsin-soak.XXXXXX")
pids=()

cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() {   # what, pid, command...: polls the command for up to 60 s while pid lives
    local what=$1 pid=$2
    shift 2
    for _ in $(seq 600); do
        "$@" >/dev/null 2>&1 && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "soak.sh: $what exited before it was ready" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "soak.sh: $what not ready after 60 s" >&2
    return 1
}

[ -n "${TOCSIN_SOAK_BIN:-}" ] || cargo build --release --quiet
target_port=$(free_port)
hook_port=$(free_port)
port=$(free_port)

python3 - "$target_port" "$period" "$work/stop-flapping" <<'PY' &
import http.server, os, socketserver, sys, time
port, period, stop = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        down = (self.path == "/flap" and not os.path.exists(stop)
                and int(time.time() / period) % 2 == 1)
        self.send_response(503 if down else 200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")
    def log_message(self, *a): pass
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
socketserver.ThreadingTCPServer(("127.0.0.1", port), H).serve_forever()
PY
pids+=("$!")
wait_for "the target server" "$!" curl -sf "http://127.0.0.1:$target_port/ok"

python3 - "$hook_port" "$work/received" <<'PY' &
import http.server, json, socketserver, sys
port, out = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        event = json.loads(body)
        with open(out, "a") as f:
            f.write(f'{event["type"]} {event["id"]} {event["incident"]["id"]}\n')
        self.send_response(204)
        self.end_headers()
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
    def log_message(self, *a): pass
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
socketserver.ThreadingTCPServer(("127.0.0.1", port), H).serve_forever()
PY
pids+=("$!")
wait_for "the webhook receiver" "$!" curl -sf "http://127.0.0.1:$hook_port/"
: > "$work/received"

python3 - "$work/soak.toml" "$targets" "$flap_percent" "$port" "$work" "$interval" \
    "$target_port" "$hook_port" "$resolve" <<'PY'
import sys
path, n, flap, port, work, interval, target, hook, resolve = sys.argv[1:10]
n, flap, interval = int(n), float(flap), float(interval)
flapping = round(n * flap / 100)
every = n // flapping if flapping else n + 1
with open(path, "w") as f:
    f.write(f'[server]\nlisten = "127.0.0.1:{port}"\n[storage]\nsqlite = "{work}/soak.db"\n')
    f.write(f'[defaults]\ninterval = "{interval}s"\ntimeout = "{interval * 0.5}s"\n')
    f.write(f'failure_threshold = 1\nsuccess_threshold = 1\nresolve_after = "{resolve}s"\n')
    for s in range(20):
        f.write(f'[[services]]\nid = "svc{s:02}"\nsubscribers = 100000\n')
    for i in range(n):
        url = "flap" if i % every == 0 else "ok"
        f.write(f'[[targets]]\nid = "t{i:05}"\nservice = "svc{i % 20:02}"\nsubscribers = 100\n')
        f.write(f'probe = {{ type = "http", url = "http://127.0.0.1:{target}/{url}" }}\n')
    f.write(f'[[receivers]]\nname = "soak"\ntype = "webhook"\nurl = "http://127.0.0.1:{hook}/"\n')
print(f"soak: {n} targets at {interval:g} s, {flapping} flapping", file=sys.stderr)
PY

"$bin" --log-level warn run --config "$work/soak.toml" 2> "$work/tocsin.log" &
pid=$!
pids+=("$pid")
wait_for tocsin "$pid" curl -sf "http://127.0.0.1:$port/readyz"

metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 ~ "^"m {s += $2} END {print s + 0}'; }
figures() {   # elapsed: one sample line
    printf '%6s s  rss %7s KiB  fds %5s  threads %3s  in_flight %4s  open %3s  pending %4s\n' \
        "$1" "$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")" \
        "$(ls "/proc/$pid/fd" | wc -l)" "$(awk '/Threads/ {print $2}' "/proc/$pid/status")" \
        "$(metric tocsin_probes_in_flight)" "$(metric tocsin_incidents_open)" \
        "$(metric tocsin_alert_outbox_pending)"
}

start=$(date +%s)
figures 0 | tee "$work/samples"
while [ $(( $(date +%s) - start )) -lt "$seconds" ]; do
    left=$(( seconds - ($(date +%s) - start) ))
    sleep $(( left < sample ? left : sample ))
    figures $(( $(date +%s) - start )) | tee -a "$work/samples"
done

touch "$work/stop-flapping"
settled=""
stopped=$(date +%s)
while [ $(( $(date +%s) - stopped )) -lt "$drain" ]; do
    if [ "$(metric tocsin_incidents_open)" = 0 ] && [ "$(metric tocsin_alert_outbox_pending)" = 0 ] \
        && [ "$(metric 'tocsin_target_state{.*state="down"')" = 0 ]; then
        settled=$(( $(date +%s) - stopped ))
        break
    fi
    sleep 1
done
figures "$(( $(date +%s) - start ))" | tee -a "$work/samples"

python3 - "$work/samples" "$work/received" "$settled" "$(metric tocsin_incidents_total)" \
    "$(metric 'tocsin_alert_deliveries_total{.*result="delivered"')" \
    "$(metric 'tocsin_alert_deliveries_total{.*result="dropped"')" \
    "$(metric tocsin_store_errors_total)" <<'PY'
import re, sys
samples, received, settled = sys.argv[1:4]
opened, delivered, dropped, store_errors = (float(v) for v in sys.argv[4:8])
rows = [dict(re.findall(r"(\w+) +(-?[\d.]+)", line)) for line in open(samples)]
for key in ("rss", "fds", "threads"):
    first, last = float(rows[1 if len(rows) > 2 else 0][key]), float(rows[-1][key])
    peak = max(float(r[key]) for r in rows)
    print(f"{key}: first {first:g} (after one sample period), last {last:g}, max {peak:g}, "
          f"drift {100 * (last - first) / first:+.1f}%")
events = [line.split() for line in open(received)]
kinds = {}
for kind, event, incident in events:
    kinds.setdefault(kind, set()).add(event)
opened_ids = {i for k, _, i in events if k == "incident.opened"}
resolved_ids = {i for k, _, i in events if k == "incident.resolved"}
print(f"incidents opened {opened:g}; events received: "
      + ", ".join(f"{k} {len(v)}" for k, v in sorted(kinds.items()))
      + f" ({len(events)} deliveries); delivered {delivered:g}, dropped {dropped:g}; "
      f"store errors {store_errors:g}")
print(f"incidents opened but never resolved at the receiver: {len(opened_ids - resolved_ids)}")
if settled:
    print(f"settled {settled} s after the flapping stopped: nothing open, outbox empty")
else:
    print("NOT SETTLED: incidents open or alerts pending when the drain time ran out")
    sys.exit(1)
if opened_ids - resolved_ids:
    sys.exit(1)
PY
