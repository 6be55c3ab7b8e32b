/*
 * reki-bench --callgrind: fixed-count lookup loops for instruction counts.
 */
#ifndef REKI_BENCH_INSN_H
#define REKI_BENCH_INSN_H

#include "bench.h"
#include "options.h"

/* Runs o->callgrind_ops lookup hits per implementation named in o->impls
 * (default "empty,reki,ck_ht"); returns the process exit status. */
int bench_insn_main(const bench_opts_t *o, const bench_keyset_t *ks);

#endif /* REKI_BENCH_INSN_H */
