#!/usr/bin/env bash
# How tocsin keeps its schedule with many HTTP targets.
#
#   benches/scale.sh [TARGETS] [INTERVAL_SECONDS] [SECONDS]     (defaults 1000 1 30)
#
# Starts nginx on loopback (the project's own tiny Python server when nginx is missing)
# serving /health, a release `tocsin run` with TARGETS http targets on it at the interval,
# lets it run for SECONDS, and prints one line per figure: probes due and done per second,
# missed, tocsin CPU µs per probe (from /proc accounting), RSS and RSS per target (above
# an empty daemon measured in the same run), scheduler lag p50/p99 (from
# tocsin_scheduler_lag_seconds) and probe errors. The target server's own CPU per request
# is printed as the baseline: a prober cannot cost less than the client half of a request.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=${1:-1000}
interval=${2:-1}
seconds=${3:-30}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime, in clock ticks
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

cargo build --release --quiet
target_port=$(free_port)
if command -v nginx >/dev/null 2>&1; then
    mkdir -p "$work/nginx"
    cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log crit;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/nginx; proxy_temp_path $work/nginx;
    fastcgi_temp_path $work/nginx; uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
    server { listen 127.0.0.1:$target_port; location /health { return 200 "ok\n"; } }
}
CONF
    nginx -c "$work/nginx/nginx.conf" &
    server_kind=nginx
else
    python3 -c "
import http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header('Content-Length', '3'); self.end_headers(); self.wfile.write(b'ok\n')
    def log_message(self, *a): pass
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(('127.0.0.1', $target_port), H).serve_forever()" &
    server_kind=python
fi
pids+=($!)
until curl -sf "http://127.0.0.1:$target_port/health" >/dev/null; do sleep 0.1; done
server_pid=$(pgrep -f "nginx: worker" | head -1 || true)
[ -n "$server_pid" ] || server_pid=${pids[0]}

write_config() {   # file, targets, port
    python3 - "$1" "$2" "$3" "$work" "$interval" "$target_port" <<'PY'
import sys
path, n, port, work, interval, target = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
with open(path, "w") as f:
    f.write(f'[server]\nlisten = "127.0.0.1:{port}"\n[storage]\nsqlite = "{work}/{port}.db"\n')
    f.write(f'[defaults]\ninterval = "{interval}s"\ntimeout = "{float(interval) * 0.8}s"\n')
    f.write('[[services]]\nid = "web"\nsubscribers = 1000000\n')
    for i in range(n):
        f.write(f'[[targets]]\nid = "t{i:05}"\nservice = "web"\n')
        f.write(f'probe = {{ type = "http", url = "http://127.0.0.1:{target}/health" }}\n')
PY
}
start_tocsin() {   # config, port; sets $started
    ./target/release/tocsin --log-level error run --config "$1" &
    started=$!
    pids+=("$started")
    until curl -sf "http://127.0.0.1:$2/readyz" >/dev/null; do sleep 0.1; done
}
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 ~ "^"m {s += $2} END {print s + 0}'; }

# The empty daemon, for the RSS baseline.
empty_port=$(free_port)
write_config "$work/empty.toml" 0 "$empty_port"
start_tocsin "$work/empty.toml" "$empty_port"
empty_pid=$started
sleep 2
empty_rss=$(rss_kib "$empty_pid")
kill "$empty_pid"

port=$(free_port)
write_config "$work/scale.toml" "$targets" "$port"
start_tocsin "$work/scale.toml" "$port"
pid=$started
sleep "$interval"   # every target has had its first run placed
probes0=$(metric "$port" 'tocsin_probes_total')
cpu0=$(ticks "$pid"); server0=$(ticks "$server_pid")
sleep "$seconds"
probes1=$(metric "$port" 'tocsin_probes_total')
cpu1=$(ticks "$pid"); server1=$(ticks "$server_pid")
failures=$(metric "$port" 'tocsin_probes_total{.*result="failure"')
rss=$(rss_kib "$pid")
curl -s "http://127.0.0.1:$port/metrics" | grep '^tocsin_scheduler_lag_seconds_bucket' > "$work/lag"

python3 - "$targets" "$interval" "$seconds" "$probes0" "$probes1" "$cpu0" "$cpu1" "$hz" \
    "$rss" "$empty_rss" "$work/lag" "$failures" "$server0" "$server1" "$server_kind" <<'PY'
import sys, re
(n, interval, seconds, p0, p1, c0, c1, hz, rss, empty, lagfile, failures, s0, s1, kind) = sys.argv[1:16]
n, interval, seconds = int(n), float(interval), float(seconds)
done = float(p1) - float(p0)
due = n / interval * seconds
cpu = (int(c1) - int(c0)) / int(hz)
server_cpu = (int(s1) - int(s0)) / int(hz)
buckets = []
for line in open(lagfile):
    le = re.search(r'le="([^"]+)"', line).group(1)
    buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
total = buckets[-1][1] if buckets else 0
def quantile(q):
    for le, c in buckets:
        if total and c >= q * total:
            return le
    return float("nan")
print(f"targets:              {n} at {interval:g}s, {seconds:g}s window, target server {kind}")
print(f"probes_due_per_s:     {due / seconds:.0f}")
print(f"probes_done_per_s:    {done / seconds:.0f}")
print(f"missed:               {max(0.0, 1 - done / due) * 100:.2f}%")
print(f"cpu_us_per_probe:     {cpu / done * 1e6:.0f} (tocsin {cpu:.2f} CPU-s)")
print(f"server_us_per_request:{server_cpu / done * 1e6:7.0f} (baseline: the target server's half)")
print(f"ratio_tocsin_to_server: {cpu / max(server_cpu, 1e-9):.1f}")
print(f"rss_mib:              {int(rss) / 1024:.1f} (empty daemon {int(empty) / 1024:.1f})")
print(f"rss_kib_per_target:   {(int(rss) - int(empty)) / max(n, 1):.2f}")
print(f"lag_p50_le_s:         {quantile(0.5)}")
print(f"lag_p99_le_s:         {quantile(0.99)}")
print(f"failures:             {float(failures):.0f}")
PY
