#!/bin/sh
# Plots a reki-bench JSON file (reki-bench --json FILE, or several files'
# records joined with jq -s add): throughput against threads, one panel per
# workload, one line per implementation (median, bars from min to max), as
# PNG and SVG.
#
# usage: tools/plot-bench.sh RESULTS.json [OUT_PREFIX]
#   writes OUT_PREFIX.png and OUT_PREFIX.svg (default prefix: the JSON file's
#   name without .json).  Needs jq and gnuplot (apt-get install jq gnuplot-nox).
set -eu

if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
    sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
fi
json=$1
prefix=${2:-${json%.json}}
for tool in jq gnuplot; do
    if ! command -v $tool >/dev/null 2>&1; then
        echo "plot-bench: $tool is missing; install it with: apt-get install jq gnuplot-nox" >&2
        exit 1
    fi
done
[ -r "$json" ] || { echo "plot-bench: cannot read $json" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# Names in order of first appearance, so panels follow the run's order and an
# implementation keeps one colour in every panel.
# shellcheck disable=SC2016 # $x is jq's variable, not the shell's
first_seen='reduce .[] as $x ([]; if any(.[]; . == $x) then . else . + [$x] end) | .[]'
jq -r "[.[].bench] | $first_seen" "$json" >"$tmp/benches"
jq -r "[.[].implementation] | $first_seen" "$json" >"$tmp/impls"
n=$(wc -l <"$tmp/benches")
[ "$n" -gt 0 ] || { echo "plot-bench: no records in $json" >&2; exit 1; }
title=$(jq -r '.[0] | "reki-bench, \(.machine.cpu), \(.machine.cores) cores, git \(.git_sha), \(.compiler) \(.flags)"' "$json" | sed 's/"/\\"/g')

cols=2
[ "$n" -eq 1 ] && cols=1
[ "$n" -gt 6 ] && cols=3
rows=$(( (n + cols - 1) / cols ))

# One data file per (bench, implementation): threads, median, min, max in M ops/s.
while read -r bench; do
    while read -r impl; do
        jq -r --arg b "$bench" --arg i "$impl" \
            '[.[] | select(.bench == $b and .implementation == $i)] | sort_by(.threads) | .[] |
             "\(.threads) \(.ops_per_s.median / 1e6) \(.ops_per_s.min / 1e6) \(.ops_per_s.max / 1e6)"' \
            "$json" >"$tmp/$bench.$impl.dat"
    done <"$tmp/impls"
done <"$tmp/benches"

{
    echo "set multiplot layout $rows,$cols title \"$title\" font ',10'"
    echo "set logscale x 2; set xlabel 'threads'; set ylabel 'M ops/s'"
    echo "set yrange [0:*]; set grid; set key top left font ',9'"
    echo "set offsets graph 0.05, graph 0.05, 0, 0"
    while read -r bench; do
        xt=$(jq -r --arg b "$bench" '[.[] | select(.bench == $b) | .threads] | unique | map(tostring) | join(",")' "$json")
        echo "set xtics ($xt)"
        echo "set title '$bench'"
        plot=""
        lt=0
        while read -r impl; do
            lt=$((lt + 1))
            f="$tmp/$bench.$impl.dat"
            [ -s "$f" ] || continue
            width=1.5
            [ "$impl" = reki ] && width=3
            plot="$plot${plot:+, }'$f' using 1:2:3:4 with yerrorlines lt $lt lw $width pt 7 ps 0.6 title '$impl'"
        done <"$tmp/impls"
        echo "plot $plot"
    done <"$tmp/benches"
    echo "unset multiplot"
} >"$tmp/body.gp"

w=$((cols * 560))
h=$((rows * 380 + 40))
{ echo "set terminal pngcairo noenhanced size $w,$h font 'sans,10'"; echo "set output '$prefix.png'"; cat "$tmp/body.gp"; } | gnuplot
{ echo "set terminal svg noenhanced size $w,$h dynamic font 'sans,10'"; echo "set output '$prefix.svg'"; cat "$tmp/body.gp"; } | gnuplot
echo "plot-bench: wrote $prefix.png and $prefix.svg" >&2
