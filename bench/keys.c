/*
 * Key sets: dense arrays of short keys, generated before timing so a
 * workload's loop only picks one (xorshift + multiply-shift).
 */
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

int bench_keyset_make(bench_keyset_t *ks, const char *prefix, size_t first, size_t n)
{
    ks->keys = calloc(n ? n : 1, sizeof *ks->keys);
    ks->n = n;
    if (ks->keys == NULL)
        return REKI_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int len =
            snprintf(ks->keys[i].bytes, sizeof ks->keys[i].bytes, "%s%06zu", prefix, first + i);
        if (len <= 0 || (size_t)len >= sizeof ks->keys[i].bytes) {
            free(ks->keys);
            ks->keys = NULL;
            return REKI_EINVAL;
        }
        ks->keys[i].len = (uint8_t)len;
    }
    return 0;
}

void bench_keyset_free(bench_keyset_t *ks)
{
    free(ks->keys);
    ks->keys = NULL;
    ks->n = 0;
}

uint64_t bench_seed(unsigned thread_index)
{
    /* splitmix64 of the index: distinct, never zero (xorshift's fixed point). */
    uint64_t z = 0x9e3779b97f4a7c15ull * (thread_index + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z ? z : 1;
}
