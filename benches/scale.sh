#!/usr/bin/env bash
# How tocsin keeps its schedule with many HTTP targets, and what the same work costs
# blackbox_exporter + Prometheus.
#
#   benches/scale.sh [TARGETS] [INTERVAL_SECONDS] [SECONDS]     (defaults 1000 1 30)
#
# Starts nginx on loopback (the project's own tiny Python server when nginx is missing)
# serving /health, a release `tocsin run` with TARGETS http targets on it at the interval,
# lets it run for SECONDS, and prints one line per figure: probes due and done per second,
# missed, tocsin CPU µs per probe (from /proc accounting), RSS and RSS per target (above
# an empty daemon measured in the same run), scheduler lag p50/p99/max (from
# tocsin_scheduler_lag_seconds), probe errors and the time to render /metrics. The target
# server's own CPU per request is printed as the baseline: a prober cannot cost less than
# the client half of a request.
#
# Before the daemon starts, `tocsin check-config` of the file: its wall time and peak RSS,
# next to those of the empty file (the baseline). After the window, a reload (`POST
# /-/reload`) of the same file: how long it takes, the probes per second around it, and
# whether each target kept its schedule, read from the target server's request log (every
# target probes its own `/health?t=N`, every request is logged with its time).
#
# Then, when `prometheus` and `prometheus-blackbox-exporter` (or upstream's
# `blackbox_exporter`) are installed, tocsin is stopped and the blackbox_exporter +
# Prometheus stack probes the same target server, TARGETS targets at the same interval, for
# the same SECONDS (one stack after the other: they never compete for the cores). It prints
# the same figures prefixed `blackbox_` and the ratios to tocsin. Set
# TOCSIN_BENCH_BLACKBOX=0 to skip that half. TOCSIN_BENCH_SCRAPE=S scrapes /metrics with gzip
# every S seconds during the window, as a Prometheus does, and prints those scrapes' times. TOCSIN_BIN=/path/to/tocsin runs another build
# of the daemon (a before/after) instead of building this tree's.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=${1:-1000}
interval=${2:-1}
seconds=${3:-30}
bin=${TOCSIN_BIN:-${CARGO_TARGET_DIR:-target}/release/tocsin}
work=$(mktemp -d "${TMPDIR:-/tmp}/tocsin-scale-bench.XXXXXX")
pids=()

stop() {   # pid: SIGTERM, up to 10 s to exit, then SIGKILL; forgets the pid
    local p keep=()
    kill "$1" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    pids=("${keep[@]}")
}
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do stop "$p"; done   # Prometheus exits before its files go
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime, in clock ticks
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
now_ms() { date +%s%3N; }
hz=$(getconf CLK_TCK)
wait_for() {   # what, pid, command...: polls the command for up to 60 s while pid lives
    local what=$1 pid=$2
    shift 2
    for _ in $(seq 600); do
        "$@" >/dev/null 2>&1 && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "scale.sh: $what exited before it was ready" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "scale.sh: $what not ready after 60 s" >&2
    return 1
}

[ -n "${TOCSIN_BIN:-}" ] || cargo build --release --quiet
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
    log_format at '\$msec \$arg_t';
    access_log $work/requests.log at buffer=256k flush=1s;
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
import threading, time, urllib.parse
log, lock = open('$work/requests.log', 'a', buffering=1), threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        t = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get('t', ['-'])[0]
        with lock: log.write(f'{time.time():.3f} {t}\n')
        self.send_response(200); self.send_header('Content-Length', '3'); self.end_headers(); self.wfile.write(b'ok\n')
    def log_message(self, *a): pass
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(('127.0.0.1', $target_port), H).serve_forever()" &
    server_kind=python
fi
server_main=$!
pids+=("$server_main")
wait_for "the target server" "$server_main" curl -sf "http://127.0.0.1:$target_port/health"
server_pid=$server_main
if [ "$server_kind" = nginx ]; then   # our master's worker (not another nginx on the machine)
    server_pid=$(pgrep -P "$server_main" | head -1 || true)
    [ -n "$server_pid" ] || server_pid=$server_main
fi

write_config() {   # file, targets, port
    python3 - "$1" "$2" "$3" "$work" "$interval" "$target_port" <<'PY'
import sys
path, n, port, work, interval, target = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
with open(path, "w") as f:
    f.write(f'[server]\nlisten = "127.0.0.1:{port}"\nadmin_token_file = "{work}/token"\n')
    f.write(f'[storage]\nsqlite = "{work}/{port}.db"\n')
    f.write(f'[defaults]\ninterval = "{interval}s"\ntimeout = "{float(interval) * 0.8}s"\n')
    f.write('[[services]]\nid = "web"\nsubscribers = 1000000\n')
    for i in range(n):
        f.write(f'[[targets]]\nid = "t{i:05}"\nservice = "web"\n')
        f.write(f'probe = {{ type = "http", url = "http://127.0.0.1:{target}/health?t={i}" }}\n')
PY
}
start_tocsin() {   # config, port; sets $started
    "$bin" --log-level error run --config "$1" &
    started=$!
    pids+=("$started")
    wait_for tocsin "$started" curl -sf "http://127.0.0.1:$2/readyz"
}
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 ~ "^"m {s += $2} END {print s + 0}'; }

head -c 32 /dev/urandom | base64 > "$work/token"   # for POST /-/reload
chmod 600 "$work/token"
# `tocsin check-config`: wall seconds, CPU seconds and peak RSS (KiB) of the child, from
# getrusage (CPU too: wall time says little on a machine shared with builds).
check_config() {
    python3 - "$bin" "$1" <<'PY'
import resource, subprocess, sys, time
t = time.perf_counter()
subprocess.run([sys.argv[1], "check-config", "--config", sys.argv[2]], check=True,
               stdout=subprocess.DEVNULL)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{time.perf_counter() - t:.3f} {r.ru_utime + r.ru_stime:.3f} {r.ru_maxrss}")
PY
}

# The empty daemon, for the RSS baseline.
empty_port=$(free_port)
write_config "$work/empty.toml" 0 "$empty_port"
read -r empty_check_s empty_check_cpu empty_check_kib < <(check_config "$work/empty.toml")
start_tocsin "$work/empty.toml" "$empty_port"
empty_pid=$started
sleep 2
empty_rss=$(rss_kib "$empty_pid")
stop "$empty_pid"

port=$(free_port)
write_config "$work/scale.toml" "$targets" "$port"
read -r check_s check_cpu check_kib < <(check_config "$work/scale.toml")
start_tocsin "$work/scale.toml" "$port"
pid=$started
sleep "$interval"   # every target has had its first run placed
lag_buckets() { curl -s "http://127.0.0.1:$port/metrics" | grep '^tocsin_scheduler_lag_seconds_bucket'; }
# Everything read at both ends of the window; figures are the differences, over the
# window's measured length.
window0=$(date +%s.%N)
probes0=$(metric "$port" 'tocsin_probes_total')
skipped0=$(metric "$port" 'tocsin_scheduler_skipped_total')
failures0=$(metric "$port" 'tocsin_probes_total{.*result="failure"')
cpu0=$(ticks "$pid"); server0=$(ticks "$server_pid")
rss0=$(rss_kib "$pid")
lag_buckets > "$work/lag0"
# TOCSIN_BENCH_SCRAPE=S: a Prometheus-like scrape (gzip asked for) every S seconds during
# the window, so that the lag and CPU figures include what serving it costs.
scraper=
: > "$work/scrapes"
if [ "${TOCSIN_BENCH_SCRAPE:-0}" != 0 ]; then
    while :; do
        curl -s -H 'Accept-Encoding: gzip' -o /dev/null -w '%{time_total} %{size_download}\n' \
            "http://127.0.0.1:$port/metrics" >> "$work/scrapes"
        sleep "$TOCSIN_BENCH_SCRAPE"
    done &
    scraper=$!
    pids+=("$scraper")
fi
# RSS ten times over the window (whole seconds), to see whether memory stays flat.
step=$(( seconds >= 10 ? seconds / 10 : 1 ))
slept=0
: > "$work/rss_samples"
while [ "$slept" -lt "$seconds" ]; do
    nap=$(( seconds - slept < step ? seconds - slept : step ))
    sleep "$nap"
    slept=$(( slept + nap ))
    rss_kib "$pid" >> "$work/rss_samples"
done
[ -z "$scraper" ] || stop "$scraper"
window1=$(date +%s.%N)   # like window0, just before the probes counter is read
probes1=$(metric "$port" 'tocsin_probes_total')
skipped1=$(metric "$port" 'tocsin_scheduler_skipped_total')
failures1=$(metric "$port" 'tocsin_probes_total{.*result="failure"')
cpu1=$(ticks "$pid"); server1=$(ticks "$server_pid")
rss=$(rss_kib "$pid")
lag_buckets > "$work/lag"
# /metrics as a scraper sees it (no Accept-Encoding: curl asks for no compression), under
# load, after the window's counters were read so it does not count in the CPU figures.
for _ in $(seq 10); do
    curl -s -o /dev/null -w '%{time_total} %{size_download}\n' "http://127.0.0.1:$port/metrics"
done > "$work/render"

# A reload of the same file: the requests the target server logged from 10 s before it to
# two intervals after it say what it did to the schedule.
sleep 10
reload0=$(date +%s.%N)
curl -sf -X POST -H "Authorization: Bearer $(cat "$work/token")" \
    "http://127.0.0.1:$port/-/reload" > /dev/null
reload1=$(date +%s.%N)
python3 -c "import time; time.sleep(2 * $interval + 2)"   # the log is flushed every second
stop "$pid"   # the blackbox stack below must not compete with it

python3 - "$targets" "$interval" "$window0" "$window1" "$probes0" "$probes1" "$cpu0" "$cpu1" "$hz" \
    "$rss" "$empty_rss" "$work/lag" "$((${failures1%.*} - ${failures0%.*}))" "$server0" "$server1" "$server_kind" \
    "$work/render" "$work/tocsin.figures" "$rss0" "$((${skipped1%.*} - ${skipped0%.*}))" "$work/lag0" \
    "$work/rss_samples" <<'PY'
import sys, re, statistics
(n, interval, w0, w1, p0, p1, c0, c1, hz, rss, empty, lagfile, failures, s0, s1, kind,
 renderfile, figures, rss0, skipped, lag0file, rss_samples_file) = sys.argv[1:23]
n, interval = int(n), float(interval)
seconds = float(w1) - float(w0)
done = float(p1) - float(p0)
due = n / interval * seconds
cpu = (int(c1) - int(c0)) / int(hz)
server_cpu = (int(s1) - int(s0)) / int(hz)
def read_buckets(path):
    out = []
    for line in open(path):
        le = re.search(r'le="([^"]+)"', line).group(1)
        out.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
    return out
# Lag of the probes started inside the window only: the end counts minus the start counts.
start_counts = dict(read_buckets(lag0file))
buckets = [(le, c - start_counts.get(le, 0.0)) for le, c in read_buckets(lagfile)]
total = buckets[-1][1] if buckets else 0
def quantile(q):
    for le, c in buckets:
        if total and c >= q * total:
            return le
    return float("nan")
renders = [line.split() for line in open(renderfile) if line.strip()]
render_ms = sorted(float(t) * 1000 for t, _ in renders)
metrics_bytes = int(float(renders[-1][1])) if renders else 0
us_per_probe = cpu / done * 1e6 if done else float("nan")
# Per successful probe: the useful work, and the fair unit once a stack saturates (a probe
# that times out costs little CPU and tells nothing).
succeeded = done - float(failures)
us_per_success = cpu / succeeded * 1e6 if succeeded > 0 else float("nan")
print(f"targets:              {n} at {interval:g}s, {seconds:g}s window, target server {kind}")
print(f"probes_due_per_s:     {due / seconds:.0f}")
print(f"probes_done_per_s:    {done / seconds:.0f}")
print(f"missed:               {int(skipped) / due * 100 if due else 0:.3f}% ({skipped} planned runs skipped, tocsin_scheduler_skipped_total)")
print(f"cpu_us_per_probe:     {us_per_probe:.0f} (tocsin {cpu:.2f} CPU-s)")
print(f"cpu_us_per_successful_probe: {us_per_success:.0f}")
print(f"server_us_per_request:{server_cpu / max(done, 1) * 1e6:7.0f} (baseline: the target server's half)")
print(f"ratio_tocsin_to_server: {cpu / server_cpu if server_cpu else float('nan'):.1f}")
print(f"rss_mib:              {int(rss) / 1024:.1f} (empty daemon {int(empty) / 1024:.1f})")
print(f"rss_kib_per_target:   {(int(rss) - int(empty)) / max(n, 1):.2f}")
print(f"rss_growth_mib:       {(int(rss) - int(rss0)) / 1024:+.1f} over the window ({int(rss0) / 1024:.1f} at its start)")
samples = [int(x) / 1024 for x in open(rss_samples_file).read().split()]
print("rss_samples_mib:      " + " ".join(f"{x:.1f}" for x in samples) + " (evenly over the window)")
print(f"lag_p50_le_s:         {quantile(0.5)}")
print(f"lag_p99_le_s:         {quantile(0.99)}")
print(f"lag_max_le_s:         {quantile(1.0)} (highest non-empty bucket; lag of the window's probes)")
print(f"failures:             {float(failures):.0f}")
if render_ms:
    print(f"metrics_render_ms_p50: {statistics.median(render_ms):.1f}")
    print(f"metrics_render_ms_max: {render_ms[-1]:.1f}")
print(f"metrics_bytes:        {metrics_bytes}")
with open(figures, "w") as f:
    f.write(f"{us_per_success} {rss}\n")
PY
if [ -s "$work/scrapes" ]; then
    sort -n "$work/scrapes" | awk -v every="$TOCSIN_BENCH_SCRAPE" '
        { ms[NR] = $1 * 1000; bytes = $2 }
        END {
            printf "scrape_gzip_ms_p50:   %.1f (%d scrapes in the window, one every %s s, gzip)\n", ms[int((NR + 1) / 2)], NR, every
            printf "scrape_gzip_ms_max:   %.1f\n", ms[NR]
            printf "scrape_gzip_bytes:    %d\n", bytes
        }'
fi
python3 - "$interval" "$check_s" "$check_kib" "$empty_check_s" "$empty_check_kib" \
    "$reload0" "$reload1" "$check_cpu" "$empty_check_cpu" "$work/requests.log" <<'PY'
import sys, collections
interval, check_s, check_kib, empty_s, empty_kib, r0, r1, cpu, empty_cpu = map(float, sys.argv[1:10])
print(f"config_check_s:       {check_s:.2f} (tocsin check-config; empty file {empty_s:.2f})")
print(f"config_check_cpu_s:   {cpu:.2f} (user + system; empty file {empty_cpu:.2f})")
print(f"config_check_peak_mib: {check_kib / 1024:.1f} (empty file {empty_kib / 1024:.1f})")
print(f"reload_s:             {r1 - r0:.2f} (POST /-/reload of the same file, until answered)")
# Requests the target server logged: per second, and per target in time order.
before, after = r0 - 10, r1 + 2 * interval
per_second = collections.Counter()
runs = collections.defaultdict(list)
for line in open(sys.argv[10]):
    at, _, target = line.partition(" ")
    at = float(at)
    if before <= at < after:
        per_second[int(at - before)] += 1
        runs[target].append(at)
steady = sum(per_second[s] for s in range(10)) / 10
span = range(10, int(after - before))
low = min((per_second[s] for s in span), default=0)
print(f"reload_probes_per_s:  min {low} in a second from the reload to two intervals after it, "
      f"{steady:.0f} over the 10 s before (ratio {low / steady if steady else float('nan'):.2f})")
# A target that keeps its schedule runs one interval after its run before the reload.
# Its spacings over the reload: much longer is a run lost, much shorter a run doubled.
late = doubled = 0
longest = 0.0
for times in runs.values():
    times.sort()
    gaps = [b - a for a, b in zip(times, times[1:]) if b > r0 - interval and a < r1 + interval]
    if not gaps:
        continue
    longest = max(longest, max(gaps))
    late += any(g > 1.5 * interval for g in gaps)
    doubled += any(g < 0.5 * interval for g in gaps)
print(f"reload_targets_late:  {late} (a run more than 1.5 intervals after the one before)")
print(f"reload_targets_doubled: {doubled} (a run less than half an interval after the one before)")
print(f"reload_longest_gap_intervals: {longest / interval:.2f}")
PY

# ---------------------------------------------------------------------------------------
# The same targets through blackbox_exporter, scraped by Prometheus.
blackbox=$(command -v prometheus-blackbox-exporter || command -v blackbox_exporter || true)
if [ "${TOCSIN_BENCH_BLACKBOX:-1}" = 0 ]; then
    echo "blackbox_side_by_side: skipped (TOCSIN_BENCH_BLACKBOX=0)"
    exit 0
elif ! command -v prometheus >/dev/null 2>&1 || [ -z "$blackbox" ]; then
    missing=()
    command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
    [ -n "$blackbox" ] || missing+=(prometheus-blackbox-exporter)
    echo "blackbox_side_by_side: skipped (not installed: ${missing[*]})"
    exit 0
fi

bb_port=$(free_port)
prom_port=$(free_port)
# Same timeout as tocsin's (0.8 × interval) for the module and for the scrape. The exporter
# probes for min(module timeout, Prometheus' scrape timeout − its --timeout-offset, 0.5 s by
# default); left at the default, as deployed. Keep-alive: the exporter's HTTP prober
# disables it, so every probe is a fresh connection like tocsin's (checked below by its
# dialer counter: connections per probe).
python3 - "$work" "$targets" "$interval" "$target_port" "$bb_port" <<'PY'
import sys
work, n, interval, target, bb = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
interval_ms = round(interval * 1000)
timeout_ms = round(interval * 800)
with open(f"{work}/blackbox.yml", "w") as f:
    f.write("modules:\n  http_2xx:\n    prober: http\n"
            f"    timeout: {timeout_ms}ms\n    http:\n      preferred_ip_protocol: ip4\n")
with open(f"{work}/prometheus.yml", "w") as f:
    f.write(f"global:\n  scrape_interval: {interval_ms}ms\n  scrape_timeout: {timeout_ms}ms\n"
            "scrape_configs:\n  - job_name: blackbox\n    metrics_path: /probe\n"
            "    params:\n      module: [http_2xx]\n    static_configs:\n      - targets:\n")
    # Distinct URLs (Prometheus dedups identical targets); nginx ignores the query.
    for i in range(n):
        f.write(f"          - http://127.0.0.1:{target}/health?t={i}\n")
    f.write("    relabel_configs:\n"
            "      - source_labels: [__address__]\n        target_label: __param_target\n"
            "      - source_labels: [__param_target]\n        target_label: instance\n"
            f"      - target_label: __address__\n        replacement: 127.0.0.1:{bb}\n")
PY
"$blackbox" --config.file="$work/blackbox.yml" --web.listen-address="127.0.0.1:$bb_port" \
    --log.level=warn > "$work/blackbox.log" 2>&1 &
bb_pid=$!
pids+=("$bb_pid")
wait_for blackbox_exporter "$bb_pid" curl -sf "http://127.0.0.1:$bb_port/metrics" \
    || { tail -5 "$work/blackbox.log" >&2; exit 1; }
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prometheus" \
    --web.listen-address="127.0.0.1:$prom_port" --log.level=warn > "$work/prometheus.log" 2>&1 &
prom_pid=$!
pids+=("$prom_pid")
wait_for prometheus "$prom_pid" curl -sf "http://127.0.0.1:$prom_port/-/ready" \
    || { tail -5 "$work/prometheus.log" >&2; exit 1; }
scraped() {   # every target has been scraped at least once
    curl -sf "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode 'query=count(up{job="blackbox"})' \
        | python3 -c "import json,sys; r=json.load(sys.stdin)['data']['result']; sys.exit(0 if r and float(r[0]['value'][1]) >= $targets else 1)"
}
wait_for "prometheus' first round of scrapes" "$prom_pid" scraped \
    || { tail -5 "$work/prometheus.log" >&2; exit 1; }
sleep "$interval"   # and a full interval of scrapes after that

dials0=$(metric "$bb_port" 'net_conntrack_dialer_conn_attempted_total')
t0=$(now_ms); bb0=$(ticks "$bb_pid"); prom0=$(ticks "$prom_pid"); bserver0=$(ticks "$server_pid")
sleep "$seconds"
t1=$(now_ms); bb1=$(ticks "$bb_pid"); prom1=$(ticks "$prom_pid"); bserver1=$(ticks "$server_pid")
dials1=$(metric "$bb_port" 'net_conntrack_dialer_conn_attempted_total')
bb_rss=$(rss_kib "$bb_pid"); prom_rss=$(rss_kib "$prom_pid")
# Scrapes that started before t1 finish within the scrape timeout; let Prometheus ingest
# them before asking about the window.
sleep "$interval"

python3 - "$targets" "$interval" "$prom_port" "$t0" "$t1" "$bb0" "$bb1" "$prom0" "$prom1" \
    "$bserver0" "$bserver1" "$hz" "$bb_rss" "$prom_rss" "$dials0" "$dials1" "$work/tocsin.figures" <<'PY'
import sys, json, urllib.parse, urllib.request
(n, interval, port, t0, t1, b0, b1, r0, r1, s0, s1, hz, bb_rss, prom_rss, d0, d1,
 figures) = sys.argv[1:18]
n, interval, t0, t1, hz = int(n), float(interval), int(t0), int(t1), int(hz)
window_s = (t1 - t0) / 1000
# Probes done = samples of `up` Prometheus stored for the job with a timestamp inside the
# window, asked at t1 over exactly the window (the range is closed, hence the −1 ms). Every
# scrape Prometheus attempts stores one `up` sample (1, or 0 when the probe request failed
# or overran the scrape timeout), so this counts what the stack actually delivered,
# including failed probes just like tocsin_probes_total, and a scrape Prometheus skipped
# because it fell behind is missing from it. The exporter has no counter of probes (its
# dialer counter counts connections attempted, including probes whose scrape Prometheus
# gave up on) and Prometheus' own counters are per process, not per job.
rng = f"[{t1 - t0 - 1}ms]"
def query(expr):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(
        {"query": expr, "time": f"{t1 / 1000:.3f}"})
    result = json.load(urllib.request.urlopen(url, timeout=60))["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0
job = '{job="blackbox"}'
done = query(f"sum(count_over_time(up{job}{rng}))")
scrape_failures = done - query(f"sum(sum_over_time(up{job}{rng}))")
probe_failures = (query(f"sum(count_over_time(probe_success{job}{rng}))")
                  - query(f"sum(sum_over_time(probe_success{job}{rng}))"))
scrape_avg = query(f"avg(avg_over_time(scrape_duration_seconds{job}{rng}))")
scrape_max = query(f"max(max_over_time(scrape_duration_seconds{job}{rng}))")
# How regularly Prometheus kept the schedule: its summary of the actual time between two
# scrapes of a target (a sliding 10-minute window, so it includes the warm-up).
spacing = {}
with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as resp:
    for line in resp.read().decode().splitlines():
        if line.startswith("prometheus_target_interval_length_seconds{"):
            q = line.split('quantile="')[1].split('"')[0]
            spacing[q] = max(spacing.get(q, 0.0), float(line.split()[-1]))
due = n / interval * window_s
bb_cpu, prom_cpu, server_cpu = ((int(b) - int(a)) / hz for a, b in ((b0, b1), (r0, r1), (s0, s1)))
per = lambda cpu: cpu / done * 1e6 if done else float("nan")
bb_us, prom_us = per(bb_cpu), per(prom_cpu)
succeeded = max(0.0, done - scrape_failures - probe_failures)
per_success = lambda cpu: cpu / succeeded * 1e6 if succeeded > 0 else float("nan")
bb_us_ok, prom_us_ok = per_success(bb_cpu), per_success(prom_cpu)
tocsin_us, tocsin_rss = (float(x) for x in open(figures).read().split())
print(f"blackbox_targets:     {n} at {interval:g}s, {window_s:g}s window, same target server")
print(f"blackbox_probes_due_per_s:  {due / window_s:.0f}")
print(f"blackbox_probes_done_per_s: {done / window_s:.0f} (samples of up stored by Prometheus)")
print(f"blackbox_missed:      {max(0.0, 1 - done / due) * 100 if due else 0:.2f}%")
print(f"blackbox_cpu_us_per_probe:   {bb_us:.0f} (blackbox_exporter {bb_cpu:.2f} CPU-s)")
print(f"prometheus_cpu_us_per_probe: {prom_us:.0f} (Prometheus {prom_cpu:.2f} CPU-s)")
print(f"blackbox_cpu_us_per_successful_probe:   {bb_us_ok:.0f}")
print(f"prometheus_cpu_us_per_successful_probe: {prom_us_ok:.0f}")
print(f"blackbox_server_us_per_request: {server_cpu / max(done, 1) * 1e6:.0f}")
print(f"blackbox_connections_per_probe: {(float(d1) - float(d0)) / max(done, 1):.2f} (exporter's dialer counter)")
print(f"blackbox_rss_mib:     {int(bb_rss) / 1024:.1f}")
print(f"prometheus_rss_mib:   {int(prom_rss) / 1024:.1f}")
print(f"blackbox_failures:    {scrape_failures + probe_failures:.0f} "
      f"({probe_failures:.0f} probe_success 0, {scrape_failures:.0f} up 0)")
print(f"blackbox_scrape_ms_avg: {scrape_avg * 1000:.1f} (scrape_duration_seconds)")
print(f"blackbox_scrape_ms_max: {scrape_max * 1000:.1f}")
print(f"prometheus_scrape_spacing_p50_s: {spacing.get('0.5', float('nan')):.4f} (configured {interval:g})")
print(f"prometheus_scrape_spacing_p99_s: {spacing.get('0.99', float('nan')):.4f}")
def ratio(a, b):
    if a != a:   # nan: the stack had no successful probe in the window (saturated)
        return "inf (no successful blackbox probe in the window)"
    return f"{a / b:.1f}" if b > 0 else "nan"
# CPU ratios per successful probe on each side (tocsin's figure file holds its own).
print(f"ratio_blackbox_cpu_to_tocsin: {ratio(bb_us_ok, tocsin_us)}")
print(f"ratio_blackbox_plus_prometheus_cpu_to_tocsin: {ratio(bb_us_ok + prom_us_ok, tocsin_us)}")
print(f"ratio_blackbox_rss_to_tocsin: {ratio(int(bb_rss), tocsin_rss)}")
print(f"ratio_blackbox_plus_prometheus_rss_to_tocsin: {ratio(int(bb_rss) + int(prom_rss), tocsin_rss)}")
PY
