#!/bin/sh
# The full measurement behind BENCHMARKS.md's results, in one command: every
# workload of reki-bench at 1, 2, 4 and 8 threads, reki-bench-spawn with
# 1,000,000 actors, instruction counts under callgrind, and the plots.  Run it
# on a quiet machine (it takes about 20 minutes on 2 cores and uses both):
# it records the load average before and after, so a disturbed run shows.
#
# usage: tools/bench-all.sh [-b BUILD_DIR] [-o OUT_DIR] [-s SECONDS]
#   -b  build directory (default: build), built beforehand in RelWithDebInfo
#   -o  where the results go (default: docs/bench)
#   -s  seconds per timed round (default 1)
# writes OUT_DIR/{results.json,results.csv,results.txt,spawn.json,spawn.txt,
#   instructions.txt,throughput.png,throughput.svg,load.txt}
set -eu

build=build
out=docs/bench
seconds=1
while getopts b:o:s:h opt; do
    case $opt in
    b) build=$OPTARG ;;
    o) out=$OPTARG ;;
    s) seconds=$OPTARG ;;
    *) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
    esac
done
here=$(cd "$(dirname "$0")" && pwd)
for bin in reki-bench reki-bench-spawn; do
    if [ ! -x "$build/bench/$bin" ]; then
        echo "bench-all: $build/bench/$bin not found; build first" >&2
        exit 1
    fi
done
mkdir -p "$out"

echo "before: $(cat /proc/loadavg)" >"$out/load.txt"
"$build/bench/reki-bench" --seconds "$seconds" \
    --json "$out/results.json" --csv "$out/results.csv" | tee "$out/results.txt"
echo "after reki-bench: $(cat /proc/loadavg)" >>"$out/load.txt"
"$build/bench/reki-bench-spawn" --json "$out/spawn.json" | tee "$out/spawn.txt"
echo "after reki-bench-spawn: $(cat /proc/loadavg)" >>"$out/load.txt"
"$here/bench-instructions.sh" -b "$build" -c | tee "$out/instructions.txt"
"$here/plot-bench.sh" "$out/results.json" "$out/throughput"
cat "$out/load.txt"
