#!/usr/bin/env bash
# Build and run the test suite under AddressSanitizer+UBSan (build-asan/) and
# under ThreadSanitizer (build-tsan/), each through tools/test.sh, so that a
# leak, a memory error, undefined behaviour or a data race fails.  Both runs
# go ahead even if the first fails; exits non-zero if either did.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
common="-DREKI_WERROR=ON -DREKI_BUILD_BENCH=OFF"
# Formatting does not change with a sanitizer: tools/test.sh has checked it.
export REKI_CTEST_SKIP_LABELS="soak|format"

# gcc's TSan runtime aborts with "unexpected memory mapping" on kernels whose
# mmap randomisation puts libraries where it does not expect them; running
# with ASLR off (setarch -R) avoids it.  Probe once and pick what works.
tsan_wrapper() {
    local dir probe out
    dir=$(mktemp -d)
    probe=$dir/probe
    printf '#include <pthread.h>\nstatic void *f(void *a) { return a; }\nint main(void) { pthread_t t; pthread_create(&t, 0, f, 0); return pthread_join(t, 0); }\n' >"$dir/probe.c"
    "${CC:-cc}" -fsanitize=thread -o "$probe" "$dir/probe.c" -pthread
    if out=$("$probe" 2>&1); then
        echo ""
    elif setarch "$(uname -m)" -R "$probe" >/dev/null 2>&1; then
        echo "tsan: plain run failed (${out%%$'\n'*}); running under setarch -R" >&2
        echo "setarch $(uname -m) -R"
    else
        echo "tsan: even a trivial program fails under ThreadSanitizer:" >&2
        printf '%s\n' "$out" >&2
        rm -rf "$dir"
        return 1
    fi
    rm -rf "$dir"
}

status=0

echo "=== AddressSanitizer + UBSan (build-asan)"
ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1" \
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
REKI_BUILD_DIR="$root/build-asan" \
REKI_CMAKE_ARGS="$common -DREKI_SANITIZE=address" \
    bash "$root/tools/test.sh" || { status=1; echo "=== AddressSanitizer run FAILED"; }

echo "=== ThreadSanitizer (build-tsan)"
tsan_opts="halt_on_error=1 second_deadlock_stack=1"
if [ -f "$root/tools/tsan.supp" ]; then
    tsan_opts="$tsan_opts suppressions=$root/tools/tsan.supp"
fi
# Criterion cannot start under TSan (see cmake/criterion-tests.cmake); the
# unit tests link a stand-in there (tests/unit/crshim).  Any test binary that
# still links libcriterion is left out, so build first, then look.
tsan_build=$root/build-tsan
tsan_args="$common -DREKI_SANITIZE=thread"
# shellcheck disable=SC2086 # word list
if wrap=$(tsan_wrapper) &&
    cmake -S "$root" -B "$tsan_build" $tsan_args &&
    cmake --build "$tsan_build" -j "$(nproc)"; then
    skip=$(cmake -DBUILD_DIR="$tsan_build" -P "$root/cmake/criterion-tests.cmake")
    ctest_args=
    if [ -n "$skip" ]; then
        echo "tsan: not running the Criterion binaries (Snaipe/Criterion#274): $skip"
        ctest_args="-E $skip"
    fi
    # TSan runs 5-15x slower: a fifth of the iterations still races every path.
    REKI_TEST_SCALE="${REKI_TEST_SCALE:-0.2}" \
    TSAN_OPTIONS="$tsan_opts" \
    REKI_BUILD_DIR="$tsan_build" \
    REKI_CMAKE_ARGS="$tsan_args" \
    REKI_CTEST_ARGS="$ctest_args" \
    REKI_CTEST_WRAP="$wrap" \
        bash "$root/tools/test.sh" || { status=1; echo "=== ThreadSanitizer run FAILED"; }
else
    status=1
    echo "=== ThreadSanitizer set-up or build FAILED"
fi

exit "$status"
