#!/bin/sh
# Instructions per lookup hit, counted by valgrind's callgrind (issue 4's
# instruction-count mode).  Instruction counts repeat where times do not, so
# this is the figure to compare reki's lookup path against the bare ck_ht
# floor with: goal, at most 1.25x ck_ht's instructions.
#
# For each implementation it runs `reki-bench --callgrind`, which registers
# the key set and then does a fixed number of lookup hits in one function,
# bench_insn_loop; --toggle-collect counts only that function and what it
# calls.  The pseudo-implementation "empty" runs the same loop (key choice,
# indirect call) with a lookup that does nothing: its count is subtracted.
#
# usage: tools/bench-instructions.sh [-b BUILD_DIR] [-n OPS] [-i IMPLS] [-t TOP] [-c]
#   -b  build directory holding bench/reki-bench (default: build)
#   -n  lookups per implementation (default 1000000)
#   -i  comma list (default empty,reki,ck_ht,cds_lfht,mutex,rwlock; empty is
#       always run first)
#   -t  functions to list per implementation, inclusive cost (default 6)
#   -c  also simulate the caches (--cache-sim=yes) and report L1 data-read
#       misses per lookup, beyond the harness's: the cost a layout change moves
set -eu

build=build
ops=1000000
impls=reki,ck_ht,cds_lfht,mutex,rwlock
top=6
cache=no
while getopts b:n:i:t:ch opt; do
    case $opt in
    b) build=$OPTARG ;;
    n) ops=$OPTARG ;;
    i) impls=$OPTARG ;;
    t) top=$OPTARG ;;
    c) cache=yes ;;
    *) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
    esac
done

bin=$build/bench/reki-bench
if [ ! -x "$bin" ]; then
    echo "bench-instructions: $bin not found; build first (cmake --build $build)" >&2
    exit 1
fi
for tool in valgrind callgrind_annotate; do
    if ! command -v $tool >/dev/null 2>&1; then
        echo "bench-instructions: $tool is missing; install it with: apt-get install valgrind" >&2
        exit 1
    fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# Collected instructions of one implementation's loop, written to $tmp/NAME.
measure() {
    out=$tmp/cg.$1
    if ! valgrind --tool=callgrind --callgrind-out-file="$out" --cache-sim="$cache" \
        --toggle-collect='bench_insn_loop*' \
        "$bin" --callgrind --impls "$1" --ops "$ops" --workers 1 \
        >"$tmp/log.$1" 2>&1; then
        echo "bench-instructions: $1 failed:" >&2
        cat "$tmp/log.$1" >&2
        exit 1
    fi
    # totals: Ir, and with the cache simulation Dr Dw I1mr D1mr ... (D1mr is 5th)
    sed -n 's/^totals: *//p' "$out" >"$tmp/ir.$1"
}

echo "instructions per lookup hit (callgrind, $ops lookups each, 10000 keys)" >&2
measure empty
read -r base _ _ _ base_d1 _ <"$tmp/ir.empty" || true
printf '%-10s %12s %14s %10s' implementation "Ir/op" "minus harness" "vs ck_ht"
[ "$cache" = yes ] && printf ' %14s' "D1 misses/op"
echo
printf '%-10s %12.1f %14s %10s' harness "$(echo "$base $ops" | awk '{print $1/$2}')" "-" "-"
[ "$cache" = yes ] && printf ' %14.2f' "$(echo "$base_d1 $ops" | awk '{print $1/$2}')"
echo
for impl in $(echo "$impls" | tr ',' ' '); do
    [ "$impl" = empty ] && continue
    echo "  measuring $impl ..." >&2
    measure "$impl"
done
ck=""
if [ -s "$tmp/ir.ck_ht" ]; then
    ck=$(awk -v b="$base" -v n="$ops" '{print ($1-b)/n}' "$tmp/ir.ck_ht")
fi
for impl in $(echo "$impls" | tr ',' ' '); do
    [ "$impl" = empty ] && continue
    awk -v b="$base" -v bd="${base_d1:-0}" -v n="$ops" -v ck="$ck" -v name="$impl" \
        -v cache="$cache" '{
        net = ($1 - b) / n
        ratio = ck != "" && ck > 0 ? sprintf("%.2fx", net / ck) : "-"
        printf "%-10s %12.1f %14.1f %10s", name, $1 / n, net, ratio
        if (cache == "yes")
            printf " %14.2f", ($5 - bd) / n
        printf "\n"
    }' "$tmp/ir.$impl"
done

echo
echo "where the instructions go (inclusive Ir per lookup, top $top functions)"
for impl in $(echo "$impls" | tr ',' ' '); do
    [ "$impl" = empty ] && continue
    echo "-- $impl"
    callgrind_annotate --inclusive=yes --show=Ir "$tmp/cg.$impl" 2>/dev/null |
        awk -v n="$ops" -v top="$top" '
            /^-+$/ { rule++; next }
            rule >= 3 && $1 ~ /^[0-9,]+$/ && shown < top {
                ir = $1; gsub(",", "", ir)
                fn = $0; sub(/^ *[0-9,]+ *(\([^)]*\))? */, "", fn); sub(/ \[.*$/, "", fn)
                if (fn ~ /PROGRAM TOTALS/) { total = ir; next }
                # the loop itself, and its callers, hold the whole total
                if (ir == total || fn ~ /below main|libc_start|:main$|bench_insn_main/) next
                printf "  %8.1f  %s\n", ir / n, fn; shown++
            }'
done
