/*
 * The registry's key hash: SipHash-1-3 (Aumasson and Bernstein, "SipHash: a
 * fast short-input PRF", 2012), keyed per registry with 128 bits from
 * getrandom(2).
 *
 * Keys come from clients a server does not trust.  An unkeyed or weakly
 * seeded hash lets a client pick keys that all land on one probe sequence of
 * ck_ht, turning every insert and miss into a walk of the whole cluster
 * (hash flooding).  SipHash is a PRF: without the key, outputs of chosen
 * inputs are unpredictable, so no key set can be built offline to collide.
 * 1-3 (one compression round per 8-byte block, three finalization rounds) is
 * what Python, Rust's std and Redis use for their tables; the generic c-d
 * form below is also run as 2-4 against the paper's test vectors.
 *
 * Every output bit matters to ck_ht: low bits pick the bucket, high bits
 * drive the probe stride, and the full 64 bits are compared before the key
 * bytes (the map is not pointer-packed).  Inlined on the lookup path.
 */
#ifndef REKI_HASH_H
#define REKI_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A 128-bit key (k0, k1), kept as SipHash's initial state: the four
 * key-dependent words every hash starts from. */
struct reki__hashkey {
    uint64_t v0, v1, v2, v3;
};

static inline void reki__hashkey_set(struct reki__hashkey *k, uint64_t k0, uint64_t k1)
{
    k->v0 = k0 ^ UINT64_C(0x736f6d6570736575);
    k->v1 = k1 ^ UINT64_C(0x646f72616e646f6d);
    k->v2 = k0 ^ UINT64_C(0x6c7967656e657261);
    k->v3 = k1 ^ UINT64_C(0x7465646279746573);
}

/* Fill k from the kernel's random pool (getrandom, non-blocking).  Falls back
 * to a mix of clock, address and cycle counter only if the pool cannot be
 * read (no getrandom, or not yet initialized early at boot): still distinct
 * per registry and per process, documented as the weaker case. */
void reki__hashkey_init(struct reki__hashkey *k);

static inline uint64_t reki__rotl64(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

#define REKI__SIPROUND(v0, v1, v2, v3) \
    do {                               \
        v0 += v1;                      \
        v1 = reki__rotl64(v1, 13);     \
        v1 ^= v0;                      \
        v0 = reki__rotl64(v0, 32);     \
        v2 += v3;                      \
        v3 = reki__rotl64(v3, 16);     \
        v3 ^= v2;                      \
        v0 += v3;                      \
        v3 = reki__rotl64(v3, 21);     \
        v3 ^= v0;                      \
        v2 += v1;                      \
        v1 = reki__rotl64(v1, 17);     \
        v1 ^= v2;                      \
        v2 = reki__rotl64(v2, 32);     \
    } while (0)

static inline uint64_t reki__load64le(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint64_t reki__load32le(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

/* The last r = n % 8 bytes of (p - (n - r), n), at p, little-endian in the
 * low bits.  Keys of 8 bytes or more take one unaligned load that ends at
 * the key's last byte (the bytes before it are the key's own); shorter ones
 * two overlapping 4-byte loads, or up to three byte loads. */
static inline uint64_t reki__load_tail(const unsigned char *p, size_t n)
{
    size_t r = n & 7;
    if (r == 0)
        return 0;
    if (n >= 8)
        return reki__load64le(p + r - 8) >> (64 - 8 * r);
    if (r >= 4)
        return reki__load32le(p) | (reki__load32le(p + r - 4) << (8 * (r - 4)));
    return (uint64_t)p[0] | (uint64_t)p[r >> 1] << (8 * (r >> 1)) |
           (uint64_t)p[r - 1] << (8 * (r - 1));
}

/* SipHash-c-d of (p, n) under k; c and d are compile-time constants at every
 * call, so the round loops unroll. */
static inline uint64_t reki__siphash(const struct reki__hashkey *k, const void *data, size_t n,
                                     unsigned c, unsigned d)
{
    const unsigned char *p = data;
    uint64_t v0 = k->v0, v1 = k->v1, v2 = k->v2, v3 = k->v3;
    const unsigned char *end = p + (n & ~(size_t)7);
    for (; p != end; p += 8) {
        uint64_t m = reki__load64le(p);
        v3 ^= m;
        for (unsigned i = 0; i < c; i++)
            REKI__SIPROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    uint64_t b = ((uint64_t)n << 56) | reki__load_tail(p, n);
    v3 ^= b;
    for (unsigned i = 0; i < c; i++)
        REKI__SIPROUND(v0, v1, v2, v3);
    v0 ^= b;
    v2 ^= 0xff;
    for (unsigned i = 0; i < d; i++)
        REKI__SIPROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

/* The registry's hash: SipHash-1-3, written out (the lookup path inlines
 * it: the generic form's round loops cost a counter and a branch each). */
static inline uint64_t reki__hash(const struct reki__hashkey *k, const void *key, size_t n)
{
    const unsigned char *p = key;
    uint64_t v0 = k->v0, v1 = k->v1, v2 = k->v2, v3 = k->v3;
    const unsigned char *end = p + (n & ~(size_t)7);
    while (p != end) {
        uint64_t m = reki__load64le(p);
        v3 ^= m;
        REKI__SIPROUND(v0, v1, v2, v3);
        v0 ^= m;
        p += 8;
    }
    uint64_t b = ((uint64_t)n << 56) | reki__load_tail(p, n);
    v3 ^= b;
    REKI__SIPROUND(v0, v1, v2, v3);
    v0 ^= b;
    v2 ^= 0xff;
    REKI__SIPROUND(v0, v1, v2, v3);
    REKI__SIPROUND(v0, v1, v2, v3);
    REKI__SIPROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

#endif /* REKI_HASH_H */
