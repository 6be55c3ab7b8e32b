/*
 * Per-registry keys for the registry hash (hash.h): 128 bits from the
 * kernel's random pool.
 */
#include <errno.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/hash.h"

void reki__hashkey_init(struct reki__hashkey *k)
{
    uint64_t key[2];
    unsigned char *p = (unsigned char *)key;
    size_t got = 0;
    while (got < sizeof(key)) {
        ssize_t n = getrandom(p + got, sizeof(key) - got, GRND_NONBLOCK);
        if (n > 0)
            got += (size_t)n;
        else if (n < 0 && errno == EINTR)
            continue;
        else
            break;
    }
    if (got == sizeof(key)) {
        reki__hashkey_set(k, key[0], key[1]);
        return;
    }
    /* No pool yet (early boot) or no getrandom: unpredictable to a remote
     * client only in the weak sense, but distinct per registry and process. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t a = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)(uintptr_t)k;
    uint64_t b = ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&ts;
#if defined(__x86_64__) || defined(__i386__)
    b ^= (uint64_t)__builtin_ia32_rdtsc();
#endif
    struct reki__hashkey mix;
    reki__hashkey_set(&mix, a, b);
    reki__hashkey_set(k, reki__hash(&mix, &b, sizeof(b)), reki__hash(&mix, &a, sizeof(a)));
}
