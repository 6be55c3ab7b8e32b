#!/usr/bin/env python3
"""Check that lib/'s layers depend only downwards: core < runtime < registry < cluster.

    tools/check-layers.py SOURCE_DIR [BUILD_DIR]

1. Includes ("..." and <...>): a file under lib/<layer>/ may include its own
   folder's headers ("x.h") and "<layer>/x.h" of its own layer or one below,
   nothing else from lib/ (no "../x.h", no header of a layer above); of the
   public headers, reki/cluster.h belongs to the cluster layer alone.
2. Symbols (with BUILD_DIR, after a build): every symbol an object file of a
   layer uses and the library defines must be defined by that layer or one
   below it.  This catches a call declared in a lower header but defined
   above (a runtime that frees registries by name, say).

Exits 1 and prints each violation, or prints a summary and exits 0.
"""
import os
import re
import subprocess
import sys

LAYERS = ["core", "runtime", "registry", "cluster"]
RANK = {name: i for i, name in enumerate(LAYERS)}
INCLUDE = re.compile(r'^\s*#\s*include\s+([<"])([^>"]+)[>"]', re.M)
# Public headers that belong to a layer (the rest are the base API).
PUBLIC = {"reki/cluster.h": "cluster"}


def check_includes(lib):
    bad, n = [], 0
    for layer in LAYERS:
        d = os.path.join(lib, layer)
        for f in sorted(os.listdir(d)):
            if not f.endswith((".c", ".h")):
                continue
            n += 1
            text = open(os.path.join(d, f), encoding="utf-8").read()
            for quote, inc in INCLUDE.findall(text):
                if inc.startswith("reki/"):  # the public headers
                    owner = PUBLIC.get(inc)
                    if owner and RANK[owner] > RANK[layer]:
                        bad.append(f"lib/{layer}/{f}: includes <{inc}>, the {owner} layer's")
                    continue
                parts = inc.split("/")
                if quote == "<":
                    # A system header, unless it resolves under lib/ (lib/ is
                    # on the include path: <registry/registry.h> would work).
                    if not os.path.exists(os.path.join(lib, inc)):
                        continue
                    bad.append(f"lib/{layer}/{f}: <{inc}> is a header of lib/: include it with quotes")
                    continue
                if len(parts) == 1:
                    if not os.path.exists(os.path.join(d, inc)):
                        bad.append(f"lib/{layer}/{f}: \"{inc}\" is not a file of lib/{layer}")
                    continue
                if len(parts) != 2 or parts[0] not in RANK:
                    bad.append(f"lib/{layer}/{f}: \"{inc}\" is not <layer>/<header>")
                elif RANK[parts[0]] > RANK[layer]:
                    bad.append(f"lib/{layer}/{f}: includes \"{inc}\", a layer above {layer}")
    return bad, n


def nm(obj):
    out = subprocess.run(["nm", "--format=posix", obj], check=True, capture_output=True,
                         text=True).stdout
    defined, used = set(), set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        sym, kind = fields[0], fields[1]
        if kind == "U":
            used.add(sym)
        elif kind.isupper():  # global definition
            defined.add(sym)
    return defined, used


def objects(build, layer):
    roots = {
        "cluster": [os.path.join(build, "lib", "cluster", "CMakeFiles", "reki-cluster.dir")],
    }.get(layer, [os.path.join(build, "lib", "CMakeFiles", "reki.dir", layer)])
    found = []
    for root in roots:
        for dirpath, _, files in os.walk(root):
            found += [os.path.join(dirpath, f) for f in files if f.endswith(".o")]
    return sorted(found)


def check_symbols(build):
    owner, uses, nobj = {}, [], 0
    for layer in LAYERS:
        objs = objects(build, layer)
        if not objs and layer != "cluster":  # cluster is optional (REKI_BUILD_CLUSTER)
            return [f"{build}: no object files of lib/{layer} (build first)"], 0
        for o in objs:
            nobj += 1
            defined, used = nm(o)
            for s in defined:
                owner[s] = layer
            uses.append((layer, o, used))
    bad = []
    for layer, o, used in uses:
        for s in sorted(used):
            if s in owner and RANK[owner[s]] > RANK[layer]:
                bad.append(f"{os.path.basename(o)} (lib/{layer}) uses {s}, defined in lib/{owner[s]}")
    return bad, nobj


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    lib = os.path.join(sys.argv[1], "lib")
    bad, nfiles = check_includes(lib)
    nobj = 0
    if len(sys.argv) == 3:
        more, nobj = check_symbols(sys.argv[2])
        bad += more
    for b in bad:
        print("layer violation:", b)
    if bad:
        return 1
    print(f"layers ok: {nfiles} source files, {nobj} object files, order {' < '.join(LAYERS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
