/*
 * --callgrind: a fixed number of lookup hits of one implementation, in one
 * function (bench_insn_loop) that callgrind's --toggle-collect can isolate.
 * The pseudo-implementation "empty" runs the same loop with a lookup that
 * does nothing, so its count is the harness's share to subtract.
 * tools/bench-instructions.sh drives it; instruction counts repeat where
 * times do not.
 */
#include <stdio.h>
#include <string.h>

#include "insn.h"

__attribute__((noinline)) static int empty_lookup(void *t, const void *key, size_t len,
                                                  reki_pid_t *out)
{
    (void)t;
    (void)key;
    *out = len;
    __asm__ volatile("" ::: "memory");
    return 0;
}

/* Extern and never inlined, so it keeps its name for --toggle-collect (the
 * script also matches "bench_insn_loop*", should a compiler clone it). */
__attribute__((noinline)) uint64_t
bench_insn_loop(int (*get)(void *, const void *, size_t, reki_pid_t *), void *t,
                const bench_keyset_t *ks, uint64_t ops, uint64_t *misses);

uint64_t bench_insn_loop(int (*get)(void *, const void *, size_t, reki_pid_t *), void *t,
                         const bench_keyset_t *ks, uint64_t ops, uint64_t *misses)
{
    uint64_t s = bench_seed(0), sink = 0, miss = 0;
    for (uint64_t i = 0; i < ops; i++) {
        const bench_key_t *k = bench_pick(ks, &s);
        reki_pid_t pid = 0;
        miss += get(t, k->bytes, k->len, &pid) != 0;
        sink += pid;
    }
    *misses = miss;
    return sink;
}

static const bench_impl_t *find_impl(const char *name)
{
    for (const bench_impl_t *const *im = bench_impls; *im; im++)
        if (strcmp((*im)->name, name) == 0)
            return *im;
    return NULL;
}

static int prefill(const bench_impl_t *im, void *t, const bench_keyset_t *ks)
{
    for (size_t i = 0; i < ks->n; i++) {
        reki_pid_t pid;
        int rc = im->lookup_or_start(t, ks->keys[i].bytes, ks->keys[i].len, &pid);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int one(reki_rt_t *rt, const char *name, const bench_keyset_t *ks, uint64_t ops)
{
    uint64_t misses = 0, sink;
    if (strcmp(name, "empty") == 0) {
        sink = bench_insn_loop(empty_lookup, NULL, ks, ops, &misses);
    } else {
        const bench_impl_t *im = find_impl(name);
        void *t = NULL;
        if (im == NULL) {
            fprintf(stderr, "reki-bench: --callgrind: no implementation %s\n", name);
            return 2;
        }
        int rc = im->create(rt, ks->n, &t);
        if (rc == 0 && (rc = prefill(im, t, ks)) != 0)
            im->destroy(t);
        if (rc != 0) {
            fprintf(stderr, "reki-bench: %s: set-up failed: %s\n", name, reki_strerror(rc));
            return 1;
        }
        sink = bench_insn_loop(im->lookup, t, ks, ops, &misses);
        im->destroy(t);
    }
    printf("callgrind %s ops %llu misses %llu sink %llu\n", name, (unsigned long long)ops,
           (unsigned long long)misses, (unsigned long long)sink);
    return misses ? 1 : 0;
}

int bench_insn_main(const bench_opts_t *o, const bench_keyset_t *ks)
{
    const char *list = o->impls ? o->impls : "empty,reki,ck_ht";
    reki_rt_opts_t ro = {.workers = o->workers ? o->workers : 1};
    reki_rt_t *rt;
    int rc = reki_rt_new(&ro, &rt);
    if (rc != 0) {
        fprintf(stderr, "reki-bench: reki_rt_new: %s\n", reki_strerror(rc));
        return 1;
    }
    int status = 0;
    for (const char *p = list; *p;) {
        char name[32];
        size_t len = strcspn(p, ",");
        snprintf(name, sizeof name, "%.*s", (int)len, p);
        int r = one(rt, name, ks, o->callgrind_ops);
        status = r > status ? r : status;
        p += len + (p[len] == ',');
    }
    reki_rt_free(rt);
    return status;
}
