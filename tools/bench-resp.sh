#!/usr/bin/env bash
# reki-resp against redis-server, side by side, driven by the same client
# (redis-benchmark) in the same run.  Both servers are started here on free
# loopback ports, by pid, and stopped by pid; redis-server runs with
# persistence off.
#
#   tools/bench-resp.sh [output-dir]      (default docs/bench/issue11/latest)
#
# Runs, for each server:
#   1. SET, GET, INCR with -r 100000 -n $N -c 50 -P 16      (N default 2000000)
#   2. the same without pipelining (-n $N1, default 200000)
#   3. PUBLISH to a channel with 10 subscribers (redis-cli processes),
#      -n $N -c 50 -P 16
#   4. RSS holding 1,000,000 keys (SET key:<7 digits> to a 10-byte value,
#      loaded with redis-cli --pipe; reki-resp measured once its key actors
#      have passivated)
# and records each server's CPU time (utime + stime of its process) per run.
# Prints a markdown table (ratios reki-resp / redis-server) and keeps the raw
# CSV of redis-benchmark in the output directory.
# Environment: REKI_RESP_BIN (default build/examples/reki-resp),
# REKI_RESP_ARGS (extra arguments), N, N1, KEYS (default 1000000).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/docs/bench/issue11/latest}
bin=${REKI_RESP_BIN:-$root/build/examples/reki-resp}
N=${N:-2000000}
N1=${N1:-200000}
KEYS=${KEYS:-1000000}
mkdir -p "$out"
[ -x "$bin" ] || { echo "build reki-resp first (cmake --build build --target reki-resp)" >&2; exit 1; }
for t in redis-server redis-benchmark redis-cli; do
    command -v $t >/dev/null || { echo "$t missing: run tools/install-deps.sh" >&2; exit 1; }
done

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
        echo $((20000 + RANDOM % 20000))
}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { # port: the server's own figure (INFO used_memory_rss), in KiB
    redis-cli -p "$1" info memory | tr -d '\r' | awk -F: '/^used_memory_rss:/ {print int($2 / 1024)}'
}
hz=$(getconf CLK_TCK)

start_server() { # name -> sets spid sport
    local name=$1
    sport=$(free_port)
    if [ "$name" = redis ]; then
        redis-server --port "$sport" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize no --logfile "$out/redis-server.log" &
    else
        # shellcheck disable=SC2086 # word list
        "$bin" --port "$sport" ${REKI_RESP_ARGS:-} >"$out/reki-resp.log" 2>&1 &
    fi
    spid=$!
    pids+=("$spid")
    for _ in $(seq 100); do
        redis-cli -p "$sport" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "$name did not start" >&2
    exit 1
}

stop_server() {
    kill -TERM "$1"
    wait "$1" 2>/dev/null || true
}

# bench name server-label pid port args... : appends CSV rows "label,name,test,rps,p50,p99,cpu_s"
bench() {
    local name=$1 label=$2 pid=$3 port=$4
    shift 4
    local t0 t1 csv
    t0=$(cpu_ticks "$pid")
    csv=$(redis-benchmark -p "$port" --csv "$@" 2>/dev/null | grep -v '^"test"')
    t1=$(cpu_ticks "$pid")
    local cpu
    cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$hz" 'BEGIN {printf "%.2f", (b - a) / hz}')
    # "SET","384615.38","1.9","0.3","1.7","2.9","3.5","9.1": rps, avg, min, p50, p95, p99, max
    echo "$csv" | tr -d '"' | awk -F, -v l="$label" -v n="$name" -v c="$cpu" \
        'NF >= 8 {print l "," n "," $1 "," $2 "," $5 "," $7 "," c}' >>"$out/results.csv"
}

subscribers() { # port count: start redis-cli subscribers, print their pids
    local i
    for i in $(seq "$2"); do
        redis-cli -p "$1" subscribe bench >/dev/null 2>&1 &
        echo $!
    done
}

load_keys() { # port: SET KEYS keys through redis-cli --pipe
    awk -v n="$KEYS" 'BEGIN { for (i = 0; i < n; i++) {
        k = sprintf("key:%07d", i);
        printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$10\r\nvalue12345\r\n", length(k), k } }' |
        redis-cli -p "$1" --pipe >/dev/null
}

: >"$out/results.csv"
: >"$out/memory.csv"
for server in redis reki; do
    start_server "$server"
    pid=$spid port=$sport
    echo "== $server (pid $pid, port $port)"
    bench pipelined "$server" "$pid" "$port" -t set,get,incr -r 100000 -n "$N" -c 50 -P 16
    bench single "$server" "$pid" "$port" -t set,get,incr -r 100000 -n "$N1" -c 50
    mapfile -t subs < <(subscribers "$port" 10)
    sleep 1
    bench publish "$server" "$pid" "$port" -n "$N" -c 50 -P 16 publish bench 0123456789
    for s in "${subs[@]}"; do kill "$s" 2>/dev/null || true; done
    stop_server "$pid"

    # Memory: a fresh server holding KEYS keys.
    start_server "$server"
    pid=$spid port=$sport
    rss0=$(rss_kb "$port")
    load_keys "$port"
    [ "$server" = reki ] && sleep 4 # key actors passivate after idle_ms (1 s by default)
    n=$(redis-cli -p "$port" dbsize)
    rss1=$(rss_kb "$port")
    echo "$server,memory,keys=$n,rss_start_kb=$rss0,rss_kb=$rss1" >>"$out/memory.csv"
    stop_server "$pid"
done

echo
echo "| run | test | redis-server rps | reki-resp rps | ratio | redis p50/p99 ms | reki p50/p99 ms | p99 ratio | CPU s redis / reki |"
echo "|---|---|---|---|---|---|---|---|---|"
awk -F, '
    $1 == "redis" { k = $2 "," $3; r[k] = $4; rp50[k] = $5; rp99[k] = $6; rc[k] = $7; order[++n] = k }
    $1 == "reki"  { k = $2 "," $3; q[k] = $4; qp50[k] = $5; qp99[k] = $6; qc[k] = $7 }
    END { for (i = 1; i <= n; i++) { k = order[i]; split(k, a, ",");
        printf "| %s | %s | %.0f | %.0f | %.2fx | %s / %s | %s / %s | %.2fx | %s / %s |\n", a[1], a[2],
            r[k], q[k], q[k] / r[k], rp50[k], rp99[k], qp50[k], qp99[k], qp99[k] / rp99[k], rc[k], qc[k] } }
' "$out/results.csv"
echo
awk -F, '{ split($4, a, "="); split($5, b, "="); print $1 ": " $3 ", RSS " int((b[2]) / 1024) " MiB (started at " int(a[2] / 1024) " MiB)" }' "$out/memory.csv"
awk -F, '{ split($5, b, "="); v[$1] = b[2] } END { if (v["redis"]) printf "RSS ratio reki-resp / redis-server: %.2fx\n", v["reki"] / v["redis"] }' "$out/memory.csv"
