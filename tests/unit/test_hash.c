/*
 * The registry's hash (lib/core/hash.h): SipHash as specified, keyed, and not
 * floodable by keys chosen without the key.
 *
 * Bug pinned (hash_flooding): the hash before 0.2 was a seeded multiply-fold
 * in which, for 9-16 byte keys whose first 8 bytes equal its P1 constant,
 * the output depended on the length only, for every seed; 20,000 such keys
 * inserted about 1,000x slower than random ones.  flood_keys_do_not_collide
 * fails on that hash (all 20,000 keys of one length share one value).
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"

/* The key 00 01 .. 0f of the SipHash paper's test vectors. */
static struct reki__hashkey paper_key(void)
{
    unsigned char k[16];
    for (int i = 0; i < 16; i++)
        k[i] = (unsigned char)i;
    struct reki__hashkey hk;
    reki__hashkey_set(&hk, reki__load64le(k), reki__load64le(k + 8));
    return hk;
}

Test(hash, siphash_2_4_matches_the_reference_vectors, .timeout = 10.0)
{
    /* Aumasson and Bernstein's reference vectors: message 00 01 .. (n-1). */
    static const struct {
        size_t n;
        uint64_t out;
    } v[] = {
        {0, UINT64_C(0x726fdb47dd0e0e31)},
        {1, UINT64_C(0x74f839c593dc67fd)},
        {15, UINT64_C(0xa129ca6149be45e5)},
    };
    struct reki__hashkey hk = paper_key();
    unsigned char msg[64];
    for (int i = 0; i < 64; i++)
        msg[i] = (unsigned char)i;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        cr_assert_eq(reki__siphash(&hk, msg, v[i].n, 2, 4), v[i].out,
                     "SipHash-2-4 of %zu bytes: %#llx", v[i].n,
                     (unsigned long long)reki__siphash(&hk, msg, v[i].n, 2, 4));
}

Test(hash, registry_hash_is_siphash_1_3, .timeout = 10.0)
{
    struct reki__hashkey hk;
    reki__hashkey_init(&hk);
    unsigned char msg[64];
    for (int i = 0; i < 64; i++)
        msg[i] = (unsigned char)(i * 37 + 11);
    for (size_t n = 0; n <= sizeof(msg); n++)
        cr_assert_eq(reki__hash(&hk, msg, n), reki__siphash(&hk, msg, n, 1, 3), "length %zu", n);
}

Test(hash, every_input_byte_and_the_length_matter, .timeout = 10.0)
{
    struct reki__hashkey hk = paper_key();
    unsigned char a[40] = {0}, b[40];
    for (size_t len = 1; len <= sizeof(a); len++) {
        uint64_t h = reki__hash(&hk, a, len);
        cr_assert_neq(h, reki__hash(&hk, a, len - 1), "length %zu vs %zu", len, len - 1);
        for (size_t i = 0; i < len; i++) {
            memcpy(b, a, len);
            b[i] ^= 0x01;
            cr_assert_neq(h, reki__hash(&hk, b, len), "byte %zu of %zu", i, len);
        }
    }
}

Test(hash, the_key_changes_every_output, .timeout = 10.0)
{
    struct reki__hashkey k1, k2;
    reki__hashkey_init(&k1);
    reki__hashkey_init(&k2);
    cr_assert(k1.v0 != k2.v0 || k1.v1 != k2.v1, "two registries drew the same key");
    int same = 0;
    for (int i = 0; i < 1000; i++) {
        char key[16];
        int n = snprintf(key, sizeof(key), "user:%d", i);
        same += reki__hash(&k1, key, (size_t)n) == reki__hash(&k2, key, (size_t)n);
    }
    cr_assert_eq(same, 0, "%d of 1000 keys hash alike under two keys", same);
}

/* Keys built against the old hash: 8 bytes of its P1 constant, then a
 * distinct tail; lengths 9 to 16 (and longer keys with a P1 block inside). */
static size_t flood_key(unsigned char *k, uint32_t i, size_t len)
{
    static const uint64_t p1 = UINT64_C(0xe7037ed1a0b428db);
    memset(k, 'x', len);
    memcpy(k, &p1, 8);
    memcpy(k + len - 4, &i, 4);
    return len;
}

Test(hash, flood_keys_do_not_collide, .timeout = 30.0)
{
    enum { N = 20000, BUCKETS = 4096 };
    struct reki__hashkey hk;
    reki__hashkey_init(&hk);
    uint64_t *h = malloc(N * sizeof(*h));
    unsigned *load = calloc(BUCKETS, sizeof(*load));
    cr_assert(h && load);
    for (size_t len = 12; len <= 40; len += 4) {
        memset(load, 0, BUCKETS * sizeof(*load));
        for (uint32_t i = 0; i < N; i++) {
            unsigned char k[40];
            h[i] = reki__hash(&hk, k, flood_key(k, i, len));
            load[h[i] & (BUCKETS - 1)]++;
        }
        unsigned worst = 0;
        for (unsigned b = 0; b < BUCKETS; b++)
            worst = load[b] > worst ? load[b] : worst;
        /* Uniform: ~4.9 keys a bucket; 30 is beyond any fair draw. */
        cr_assert_leq(worst, 30, "length %zu: %u keys share one bucket of %d", len, worst, BUCKETS);
        int dup = 0;
        for (uint32_t i = 1; i < N; i++)
            dup += h[i] == h[i - 1];
        cr_assert_eq(dup, 0, "length %zu: %d neighbours share a hash", len, dup);
    }
    free(h);
    free(load);
}
