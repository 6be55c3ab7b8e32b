#!/usr/bin/env bash
# Install a built reki into a scratch prefix, then build and run a consumer
# program against it twice: with `pkg-config --static` flags and with
# find_package(reki CONFIG).  Called by ctest (see CMakeLists.txt here).
#
# usage: run.sh BUILD_DIR WORK_DIR CC LIBDIR SHARED VERSION [EXTRA_FLAGS]
set -euo pipefail

build_dir=$1 work=$2 cc=$3 libdir=$4 shared=$5 version=$6 extra=${7:-}
here=$(cd "$(dirname "$0")" && pwd)
prefix=$work/prefix

step() { printf '== %s\n' "$*"; }
die() { printf 'install test: %s\n' "$*" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work"

step "cmake --install $build_dir --prefix $prefix"
cmake --install "$build_dir" --prefix "$prefix" >"$work/install.log" || {
    cat "$work/install.log" >&2
    die "cmake --install failed"
}

want=(include/reki/reki.h include/reki/version.h "$libdir/pkgconfig/reki.pc"
      "$libdir/cmake/reki/rekiConfig.cmake" "$libdir/cmake/reki/rekiConfigVersion.cmake"
      "$libdir/cmake/reki/rekiTargets.cmake")
if [ "$shared" = ON ]; then
    want+=("$libdir/libreki.so")
else
    want+=("$libdir/libreki.a")
fi
for f in "${want[@]}"; do
    [ -e "$prefix/$f" ] || die "missing from the installed tree: $f"
done
cluster=OFF
if [ -e "$prefix/$libdir/libreki-cluster.a" ]; then
    cluster=ON
    for f in include/reki/cluster.h "$libdir/pkgconfig/reki-cluster.pc"; do
        [ -e "$prefix/$f" ] || die "libreki-cluster.a installed without $f"
    done
fi
extra_headers=$(find "$prefix/include" -type f ! -path '*/reki/reki.h' ! -path '*/reki/version.h' \
    ! -path '*/reki/cluster.h')
[ -z "$extra_headers" ] || die "unexpected installed headers: $extra_headers"
if [ "$shared" = ON ]; then
    soname=$(readelf -d "$prefix/$libdir/libreki.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    [ -n "$soname" ] || die "libreki.so has no SONAME"
    [ -e "$prefix/$libdir/$soname" ] || die "SONAME $soname is not installed"
    step "SONAME $soname"
fi

export PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
pc_version=$(pkg-config --modversion reki)
[ "$pc_version" = "$version" ] || die "reki.pc says $pc_version, expected $version"
# reki.h includes no ck or liburcu header: their flags must not reach a
# consumer's compile line, and their libraries must reach a static link.
pc_cflags=$(pkg-config --cflags reki)
case "$pc_cflags" in
    *-D__x86_64__* | *x86_64-linux-gnu*) die "pkg-config --cflags reki leaks dependencies: $pc_cflags" ;;
esac
pc_static=$(pkg-config --static --libs reki)
case "$pc_static" in
    *-lurcu-bp*-lck* | *-lck*-lurcu-bp*) ;;
    *) die "pkg-config --static --libs reki lacks liburcu-bp or ck: $pc_static" ;;
esac

if [ "$shared" = ON ]; then
    libs=$(pkg-config --libs reki)
    rpath="-Wl,-rpath,$prefix/$libdir"
else
    libs=$(pkg-config --static --libs reki)
    rpath=
fi
cflags=$(pkg-config --cflags reki)
step "pkg-config: $cc consumer.c $cflags $libs"
# shellcheck disable=SC2086 # flags are word lists
"$cc" -std=c11 -Wall -Wextra -Werror $extra $cflags \
    -o "$work/consumer-pc" "$here/consumer.c" $libs $rpath
"$work/consumer-pc"

step "find_package(reki $version CONFIG)"
cmake -S "$here/consumer" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREKI_EXPECT_VERSION="$version" \
    -DCMAKE_C_FLAGS="$extra" -DCMAKE_EXE_LINKER_FLAGS="$extra" >"$work/cmake.log" || {
    cat "$work/cmake.log" >&2
    die "configuring the find_package consumer failed"
}
grep -q "reki_DIR=$prefix/" "$work/cmake.log" || die "find_package found reki outside $prefix"
cmake --build "$work/cmake" >"$work/build.log" 2>&1 || {
    cat "$work/build.log" >&2
    die "building the find_package consumer failed"
}
"$work/cmake/consumer"
if [ "$cluster" = ON ]; then
    [ -x "$work/cmake/cluster_consumer" ] || die "find_package(reki) gave no reki::cluster"
    "$work/cmake/cluster_consumer"
fi

if [ "$cluster" = ON ]; then
    cl_cflags=$(pkg-config --cflags reki-cluster)
    cl_libs=$(pkg-config --static --libs reki-cluster)
    step "pkg-config: $cc cluster_consumer.c $cl_cflags $cl_libs"
    # shellcheck disable=SC2086 # flags are word lists
    "$cc" -std=c11 -Wall -Wextra -Werror $extra $cl_cflags \
        -o "$work/cluster-consumer" "$here/cluster_consumer.c" $cl_libs
    "$work/cluster-consumer"
fi

step "both consumers built and ran"
