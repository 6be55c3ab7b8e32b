/*
 * The registry's key hash, given to ck_ht as its hash callback and inlined on
 * the lookup path (ck_ht_hash would reach the same function through a
 * pointer, after a call).
 *
 * Keys are mostly short names, so short keys take one or two unaligned loads
 * and a single 64x64->128 multiply-fold; longer keys fold 16 bytes a round.
 * Every output bit matters to ck_ht (low bits pick the bucket, bits 32..47
 * are memoized beside the key, high bits drive the probe stride), and the
 * final fold mixes all of them.  Seeded per table.
 */
#ifndef REKI_HASH_H
#define REKI_HASH_H

#include <stdint.h>
#include <string.h>

#define REKI__H_P0 UINT64_C(0xa0761d6478bd642f)
#define REKI__H_P1 UINT64_C(0xe7037ed1a0b428db)
#define REKI__H_P2 UINT64_C(0x8ebc6af09c88c6e3)

static inline uint64_t reki__fold(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t reki__load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t reki__load32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t reki__hash(const void *key, size_t len, uint64_t seed)
{
    const unsigned char *p = key;
    uint64_t a, b;
    seed ^= REKI__H_P0;
    if (len <= 16) {
        if (len >= 8) {
            a = reki__load64(p);
            b = reki__load64(p + len - 8);
        } else if (len >= 4) {
            a = reki__load32(p);
            b = reki__load32(p + len - 4);
        } else if (len > 0) {
            a = ((uint64_t)p[0] << 16) | ((uint64_t)p[len >> 1] << 8) | p[len - 1];
            b = 0;
        } else {
            a = b = 0;
        }
    } else {
        size_t i = len;
        while (i > 16) {
            seed = reki__fold(reki__load64(p) ^ REKI__H_P1, reki__load64(p + 8) ^ seed);
            p += 16;
            i -= 16;
        }
        a = reki__load64(p + i - 16);
        b = reki__load64(p + i - 8);
    }
    return reki__fold(REKI__H_P1 ^ len, reki__fold(a ^ REKI__H_P1, b ^ seed) ^ REKI__H_P2);
}

#endif /* REKI_HASH_H */
