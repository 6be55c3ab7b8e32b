#!/usr/bin/env bash
# Install the Debian packages reki needs, when any is missing.
#   build: build-essential cmake pkg-config liburcu-dev libck-dev
#   tests: libcriterion-dev, valgrind, clang-format-14 (format check)
#   fuzzing and LeakSanitizer with clang: clang-14 libclang-rt-14-dev
#   bench plots: gnuplot-nox
#   reki-resp tests and baseline: redis-server redis-tools
#   cluster: etcd-server etcd-client libcurl4-openssl-dev libjansson-dev, python3 (harness)
# Idempotent and silent when everything is present.  As root it runs
# apt-get; otherwise it prints the command to run and exits 1.
set -euo pipefail

packages=(build-essential cmake pkg-config liburcu-dev libck-dev libcriterion-dev
          valgrind clang-14 libclang-rt-14-dev clang-format-14 gnuplot-nox
          redis-server redis-tools etcd-server etcd-client libcurl4-openssl-dev libjansson-dev
          python3)

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = installed ] || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "reki needs these Debian packages: ${missing[*]}" >&2
    echo "run as root:  apt-get update && $cmd" >&2
    exit 1
fi

echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
