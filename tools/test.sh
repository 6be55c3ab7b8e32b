#!/usr/bin/env bash
# The whole test suite: install missing packages, configure and build
# (warnings are errors), run every ctest except the long `soak` runs, then
# print each Criterion binary's summary line.
# Environment: REKI_BUILD_DIR (default build/), REKI_CMAKE_ARGS (extra
# configure arguments), REKI_CTEST_ARGS (extra ctest arguments),
# REKI_CTEST_WRAP (a command to run ctest under, e.g. "setarch x86_64 -R"),
# REKI_CTEST_SKIP_LABELS (ctest -LE regex; default "soak").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${REKI_BUILD_DIR:-$root/build}
jobs=$(nproc)

"$root/tools/install-deps.sh"

# shellcheck disable=SC2086 # REKI_CMAKE_ARGS is a word list
cmake -S "$root" -B "$build" -DREKI_WERROR=ON ${REKI_CMAKE_ARGS:-}
cmake --build "$build" -j "$jobs"

log=$build/Testing/ctest-console.log
mkdir -p "$build/Testing"
set +e
# shellcheck disable=SC2086 # word lists
${REKI_CTEST_WRAP:-} ctest --test-dir "$build" --output-on-failure --no-tests=error \
    -j "$jobs" --timeout 900 -LE "${REKI_CTEST_SKIP_LABELS:-soak}" ${REKI_CTEST_ARGS:-} 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# ctest keeps every test's full output in LastTest.log: show what Criterion
# concluded for each of its binaries (it prints a "Synthesis" line at exit).
echo
echo "== Criterion summaries ($build)"
found=$(awk '
    /^[0-9]+\/[0-9]+ Test: / { name = $3 }
    /Synthesis: Tested:/ { gsub(/\033\[[0-9;]*m/, ""); print name ":"; print; n++ }
    END { exit n == 0 }' "$build/Testing/Temporary/LastTest.log") || found=
if [ -n "$found" ]; then
    printf '%s\n' "$found"
else
    echo "no Criterion summary line in $build/Testing/Temporary/LastTest.log"
    [ -n "${REKI_CTEST_ARGS:-}" ] || status=1
fi
# Repeat ctest's verdict last, where a reader looks for it.
grep -E '^[0-9]+% tests passed' "$log" || true
exit "$status"
