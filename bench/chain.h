/*
 * A plain chained hash table of key -> pid, with no locking of its own: the
 * table a user writes by hand and puts behind a mutex or a rwlock.  It grows
 * by doubling when it holds more keys than buckets.
 */
#ifndef REKI_BENCH_CHAIN_H
#define REKI_BENCH_CHAIN_H

#include <stddef.h>
#include <stdint.h>

#include "reki/reki.h"

typedef struct chain_node {
    struct chain_node *next;
    uint64_t hash;
    reki_pid_t pid;
    size_t len;
    char key[];
} chain_node_t;

typedef struct chain {
    chain_node_t **b;
    size_t mask;
    size_t n;
} chain_t;

int chain_init(chain_t *c, size_t capacity);
/* Calls fn(pid, arg) on every entry, then frees the table. */
void chain_destroy(chain_t *c, void (*fn)(reki_pid_t pid, void *arg), void *arg);

static inline chain_node_t *chain_find(const chain_t *c, const void *key, size_t len, uint64_t hash)
{
    for (chain_node_t *e = c->b[hash & c->mask]; e != NULL; e = e->next)
        if (e->hash == hash && e->len == len && __builtin_memcmp(e->key, key, len) == 0)
            return e;
    return NULL;
}

/* Adds a key known to be absent; 0 or REKI_ENOMEM. */
int chain_insert(chain_t *c, const void *key, size_t len, uint64_t hash, reki_pid_t pid);
/* Removes the key; 0 and *pid, or REKI_ENOTFOUND. */
int chain_remove(chain_t *c, const void *key, size_t len, uint64_t hash, reki_pid_t *pid);

#endif /* REKI_BENCH_CHAIN_H */
