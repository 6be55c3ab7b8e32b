#!/bin/sh
# Skynet and ping-pong in reki, Go and Erlang, side by side (issue 9): the
# same two programs (bench/skynet.c, bench/compare/skynet.go,
# bench/compare/skynet.erl), each run ROUNDS times in one process, on the same
# machine in one go.  Installs golang-go and erlang-base from Debian if they
# are missing (as root; otherwise prints the command).  Prints each round and
# the median Skynet time of each runtime with reki's ratio to the others.
#
# usage: tools/bench-runtimes.sh [-b BUILD_DIR] [-r ROUNDS]
set -eu

build=build
rounds=5
while getopts b:r:h opt; do
    case $opt in
    b) build=$OPTARG ;;
    r) rounds=$OPTARG ;;
    *) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
    esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$build/bench/reki-bench-skynet
[ -x "$bin" ] || { echo "bench-runtimes: $bin not found; build first" >&2; exit 1; }
if ! command -v go >/dev/null || ! command -v erlc >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends golang-go erlang-base
    else
        echo "bench-runtimes: needs: apt-get install golang-go erlang-base" >&2
        exit 1
    fi
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$root/bench/compare/skynet.go" "$work/"
(cd "$work" && go mod init skynet >/dev/null 2>&1 && go build -o skynet-go .)
erlc -o "$work" "$root/bench/compare/skynet.erl"

echo "== machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== reki ($bin)"
"$bin" --rounds "$rounds" | tee "$work/reki.txt"
echo "== Go $(go version | cut -d' ' -f3)"
"$work/skynet-go" "$rounds" | tee "$work/go.txt"
echo "== Erlang/OTP $(erl -noshell -eval 'io:format("~s", [erlang:system_info(otp_release)]), halt().')"
erl +P 4000000 -noshell -pa "$work" -run skynet main "$rounds" | tee "$work/erlang.txt"

median() { grep 'skynet:' "$1" | sed 's/.* in \([0-9.]*\) ms/\1/' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
r=$(median "$work/reki.txt")
g=$(median "$work/go.txt")
e=$(median "$work/erlang.txt")
echo "== skynet median of $rounds: reki $r ms, Go $g ms, Erlang $e ms"
awk -v r="$r" -v g="$g" -v e="$e" 'BEGIN { printf "   reki / Go %.2f (goal <= 0.5), reki / Erlang %.2f (goal <= 0.2)\n", r / g, r / e }'
