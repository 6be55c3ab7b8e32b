#!/usr/bin/env bash
# What CI runs for reliability (issue 5), each step bounded in time:
#   1. reki-torture under ThreadSanitizer;
#   2. reki-torture under AddressSanitizer+UBSan with REKI_DEBUG_YIELD=ON;
#   3. the Criterion unit tests under valgrind memcheck (scaled down);
#   4. the fault-injection tests and the torture tool with allocations
#      failing (REKI_FAULT_INJECTION=ON, ASan);
#   5. the libFuzzer target: the seed corpus, then ~60 s of fuzzing.
# Every step runs even if an earlier one failed; exits non-zero if any did.
# Installs nothing (tools/install-deps.sh does); needs gcc, clang-14,
# valgrind, cmake, Criterion, liburcu and ck.
# Environment: REKI_REL_BUILD (build root, default build-reliability-ci/),
# REKI_TORTURE_SECONDS (default 20), REKI_FUZZ_SECONDS (default 60),
# REKI_REL_STEPS (default "tsan asan valgrind fault fuzz": the steps to run).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${REKI_REL_BUILD:-$root/build-reliability-ci}
secs=${REKI_TORTURE_SECONDS:-20}
fuzz_secs=${REKI_FUZZ_SECONDS:-60}
steps=" ${REKI_REL_STEPS:-tsan asan valgrind fault fuzz} "
jobs=$(nproc)
common=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DREKI_WERROR=ON -DREKI_BUILD_BENCH=OFF
    -DREKI_BUILD_EXAMPLES=OFF)
failed=()

say() { printf '\n=== [%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
run() {
    echo "+ $*"
    "$@"
}
fail() {
    echo "=== FAILED: $1"
    failed+=("$1")
}

# gcc's TSan runtime fails on kernels whose mmap layout it does not expect;
# running with ASLR off works there.  Prints the wrapper to use, if any.
tsan_wrapper() {
    local dir
    dir=$(mktemp -d)
    printf '#include <pthread.h>\nstatic void *f(void *a) { return a; }\nint main(void) { pthread_t t; pthread_create(&t, 0, f, 0); return pthread_join(t, 0); }\n' >"$dir/p.c"
    cc -fsanitize=thread -o "$dir/p" "$dir/p.c" -pthread || { rm -rf "$dir"; return 1; }
    if "$dir/p" >/dev/null 2>&1; then
        echo ""
    elif setarch "$(uname -m)" -R "$dir/p" >/dev/null 2>&1; then
        echo "setarch $(uname -m) -R"
    else
        rm -rf "$dir"
        return 1
    fi
    rm -rf "$dir"
}

build() { # dir, target..., -- cmake args...
    local dir=$1 targets=()
    shift
    while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
        targets+=("$1")
        shift
    done
    shift
    run cmake -S "$root" -B "$dir" "$@" >"$dir.configure.log" 2>&1 ||
        { cat "$dir.configure.log"; return 1; }
    run cmake --build "$dir" -j "$jobs" --target "${targets[@]}"
}

torture_runs() { # wrapper-or-empty, binary
    local wrap=$1 bin=$2 status=0
    # shellcheck disable=SC2086 # the wrapper is a word list
    run timeout $((secs * 3 + 120)) $wrap "$bin" --seconds "$secs" --threads 4 --keys 8 \
        --seed 1 || status=1
    # shellcheck disable=SC2086
    run timeout $((secs * 3 + 120)) $wrap "$bin" --seconds "$secs" --threads 8 --keys 2 \
        --workers 1 || status=1
    return "$status"
}

step_tsan() {
    say "1/5 reki-torture under ThreadSanitizer"
    local dir=$out/tsan wrap
    mkdir -p "$out"
    wrap=$(tsan_wrapper) || { echo "a trivial program fails under TSan"; return 1; }
    build "$dir" reki-torture -- "${common[@]}" -DREKI_BUILD_TESTS=OFF -DREKI_BUILD_TOOLS=ON \
        -DREKI_SANITIZE=thread || return 1
    TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 suppressions=$root/tools/tsan.supp" \
        torture_runs "$wrap" "$dir/tools/reki-torture"
}

step_asan() {
    say "2/5 reki-torture under AddressSanitizer+UBSan, REKI_DEBUG_YIELD=ON"
    local dir=$out/asan-yield
    mkdir -p "$out"
    build "$dir" reki-torture -- "${common[@]}" -DREKI_BUILD_TESTS=OFF -DREKI_BUILD_TOOLS=ON \
        -DREKI_SANITIZE=address -DREKI_DEBUG_YIELD=ON || return 1
    ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
        torture_runs "" "$dir/tools/reki-torture"
}

# Criterion runs each test in a child process whose exit status it ignores,
# so valgrind's verdict is read from its logs: one per process.
step_valgrind() {
    say "3/5 unit tests under valgrind memcheck"
    local dir=$out/valgrind logs cmd status=0 n=0
    mkdir -p "$out"
    build "$dir" all -- "${common[@]}" -DREKI_BUILD_TOOLS=OFF || return 1
    logs=$dir/valgrind-logs
    rm -rf "$logs"
    mkdir -p "$logs"
    # glibc keeps the stacks of finished threads in a cache, and with them
    # each thread's DTV, which it points at from inside the block: memcheck
    # calls that block "possibly lost" (glibc frames only; the threads are
    # the tests' own, joined, and liburcu's call_rcu thread, never joined).
    cat >"$logs/glibc-tls.supp" <<'EOF'
{
   glibc-thread-dtv-in-stack-cache
   Memcheck:Leak
   match-leak-kinds: possible
   fun:calloc
   ...
   fun:_dl_allocate_tls
   fun:allocate_stack
   fun:pthread_create*
}
EOF
    # --fair-sched=yes: valgrind runs one thread at a time, and its default
    # lock lets a thread that spins keep it while a thread woken from a futex
    # (a worker, a dedicated actor) waits for seconds; tests that race a
    # loop against an exit would then measure valgrind, not reki.
    while IFS= read -r cmd; do
        n=$((n + 1))
        eval "set -- $cmd"
        local name
        name=$(basename "$1")
        echo "+ valgrind $* (REKI_TEST_SCALE=0.05)"
        REKI_TEST_SCALE=0.05 REKI_TEST_WAIT_MS=120000 timeout 1200 \
            valgrind --error-exitcode=1 --leak-check=full --trace-children=yes --fair-sched=yes \
            --suppressions="$logs/glibc-tls.supp" --log-file="$logs/$name.%p.log" \
            "$@" -j1 || { echo "$name: exit status $?"; status=1; }
    done < <(ctest --test-dir "$dir" -N -V -L unit | sed -n 's/^.*Test command: //p')
    [ "$n" -gt 0 ] || { echo "no unit tests found"; return 1; }
    if grep -l -E 'ERROR SUMMARY: [1-9]' "$logs"/*.log; then
        echo "valgrind found errors in the logs listed above:"
        grep -h -A24 -E '(are (definitely|possibly|indirectly) lost|Invalid |uninitialised|Mismatched|overlap|Syscall param)' \
            "$logs"/*.log | head -300
        status=1
    fi
    echo "valgrind: $n unit test programs, logs in $logs"
    return "$status"
}

step_fault() {
    say "4/5 fault-injection tests (REKI_FAULT_INJECTION=ON, ASan)"
    local dir=$out/fault targets=() f
    mkdir -p "$out"
    for f in "$root"/tests/fault/test_*.c; do
        targets+=("$(basename "$f" .c)")
    done
    build "$dir" "${targets[@]}" reki-torture -- "${common[@]}" -DREKI_BUILD_TOOLS=ON \
        -DREKI_FAULT_INJECTION=ON -DREKI_SANITIZE=address || return 1
    ASAN_OPTIONS="detect_leaks=1" \
        run ctest --test-dir "$dir" -L fault --output-on-failure --no-tests=error --timeout 900
}

step_fuzz() {
    say "5/5 libFuzzer: seed corpus, then ${fuzz_secs} s"
    local dir=$out/fuzz scratch
    mkdir -p "$out"
    command -v clang-14 >/dev/null || { echo "clang-14 is not installed"; return 1; }
    CC=clang-14 build "$dir" reki-fuzz reki-fuzz-resp -- "${common[@]}" -DREKI_WERROR=OFF \
        -DREKI_BUILD_TOOLS=OFF -DREKI_FUZZ=ON -DREKI_SANITIZE=address || return 1
    run ctest --test-dir "$dir" -L fuzz --output-on-failure --no-tests=error || return 1
    scratch=$dir/corpus-run
    mkdir -p "$scratch"
    # New inputs go to the scratch directory; the committed corpus is only read.
    run timeout $((fuzz_secs + 300)) "$dir/tests/fuzz/reki-fuzz" -max_total_time="$fuzz_secs" \
        -timeout=60 -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$dir/" \
        "$scratch" "$root/tests/fuzz/corpus" || return 1
    # reki-resp's request parser: bytes from untrusted clients.
    mkdir -p "$scratch-resp"
    run timeout $((fuzz_secs + 300)) "$dir/tests/fuzz/reki-fuzz-resp" -max_total_time="$((fuzz_secs / 2))" \
        -timeout=60 -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$dir/resp-" \
        "$scratch-resp" "$root/tests/fuzz/corpus-resp"
}

start=$SECONDS
want() { [[ $steps == *" $1 "* ]]; }
want tsan && { step_tsan || fail "torture under TSan"; }
want asan && { step_asan || fail "torture under ASan+UBSan+yield"; }
want valgrind && { step_valgrind || fail "unit tests under valgrind"; }
want fault && { step_fault || fail "fault injection"; }
want fuzz && { step_fuzz || fail "fuzzing"; }

say "reliability: $((SECONDS - start)) s"
if [ "${#failed[@]}" -gt 0 ]; then
    printf 'reliability FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "reliability: all steps passed"
