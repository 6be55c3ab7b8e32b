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
for ex in "${examples[@]}"; do
    echo
    echo "== example: ${ex#"$root"/}"
    "$ex"
done

echo
echo "== bench: ${build#"$root"/}/bench/reki-bench --quick"
"$build/bench/reki-bench" --quick
