#!/usr/bin/env bash
# The main job: install missing packages, configure and build in build/,
# run every example, then the quick bench (under 30 s).
# Environment: REKI_BUILD_DIR (default build/), REKI_CMAKE_ARGS (extra
# configure arguments).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${REKI_BUILD_DIR:-$root/build}

"$root/tools/install-deps.sh"

# shellcheck disable=SC2086 # REKI_CMAKE_ARGS is a word list
cmake -S "$root" -B "$build" ${REKI_CMAKE_ARGS:-}
cmake --build "$build" -j "$(nproc)"

mapfile -t examples < <(find "$build/examples" -maxdepth 1 -type f -executable | sort)
if [ "${#examples[@]}" -eq 0 ]; then
    echo "main: no example programs were built in $build/examples" >&2
    exit 1
fi
# A server example runs as a short demo: started on a free port, asked a few
# things by the real client, stopped by pid; bounded in time.
demo_resp() {
    local bin=$1 out pid port i
    out=$(mktemp)
    timeout 60 "$bin" --port 0 >"$out" 2>&1 &
    pid=$!
    port=
    for i in $(seq 100); do
        port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$out")
        [ -n "$port" ] && break
        sleep 0.1
    done
    local ok=1
    if [ -z "$port" ]; then
        ok=0
    else
        local cli=(timeout 10 redis-cli -p "$port")
        echo "redis-cli PING -> $("${cli[@]}" PING)"
        echo "redis-cli SET greeting hello -> $("${cli[@]}" SET greeting hello)"
        echo "redis-cli GET greeting -> $("${cli[@]}" GET greeting)"
        echo "redis-cli INCR visits (x2) -> $("${cli[@]}" INCR visits) $("${cli[@]}" INCR visits)"
        [ "$("${cli[@]}" GET greeting)" = hello ] && [ "$("${cli[@]}" GET visits)" = 2 ] || ok=0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" || ok=0
    cat "$out"
    rm -f "$out"
    [ "$ok" -eq 1 ] && echo "reki-resp: demo passed" || { echo "reki-resp: demo FAILED" >&2; return 1; }
}

for ex in "${examples[@]}"; do
    echo
    echo "== example: ${ex#"$root"/}"
    case "$(basename "$ex")" in
        reki-resp) demo_resp "$ex" ;;
        *) "$ex" ;;
    esac
done

echo
echo "== bench: ${build#"$root"/}/bench/reki-bench --quick"
"$build/bench/reki-bench" --quick
