#!/usr/bin/env bash
# The cluster's full fault-injection run (issue 12): tests/cluster/harness.py
# with every scenario repeated (5 x 24 = 120 injections by default: kill -9
# of nodes with takeover timing, SIGSTOP past the TTL, the etcd leader
# killed, all of etcd down, a node joining and leaving), then the activation
# log checked for overlapping activations.  Builds first if needed.
# usage: tools/cluster-faults.sh [REPEAT] [extra harness.py arguments]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${REKI_BUILD_DIR:-$root/build}
repeat=${1:-5}
shift || true
"$root/tools/install-deps.sh"
cmake -S "$root" -B "$build" >/dev/null
cmake --build "$build" -j "$(nproc)" --target reki-cluster-node >/dev/null
out=${REKI_CLUSTER_OUT:-$build/cluster-faults}
exec python3 "$root/tests/cluster/harness.py" --node-bin "$build/tests/cluster/reki-cluster-node" \
    --repeat "$repeat" --max-seconds $((300 * repeat + 300)) --out "$out" "$@"
