/*
 * A key -> pid map on Concurrency Kit's ck_ht (single writer, many lock-free
 * readers), shared by the ck_ht floor and the serial baseline.  Keys live in
 * nodes that stay allocated until ckmap_destroy, and ck_ht's own deferred
 * frees wait until the last map is gone: the bench's readers never hold a
 * reference past a round, so reclamation needs no epoch.
 */
#ifndef REKI_BENCH_CKMAP_H
#define REKI_BENCH_CKMAP_H

#include <ck_ht.h>
#include <stdbool.h>

#include "reki/reki.h"

typedef struct ckmap_node {
    struct ckmap_node *next;
    reki_pid_t pid;
    bool live;
    uint16_t len;
    char key[];
} ckmap_node_t;

typedef struct ckmap {
    ck_ht_t ht;
    ckmap_node_t *nodes;
} ckmap_t;

int ckmap_init(ckmap_t *m, size_t capacity);
/* Calls fn(pid, arg) on each live entry, then frees everything. */
void ckmap_destroy(ckmap_t *m, void (*fn)(reki_pid_t pid, void *arg), void *arg);

/* Lock-free read: the bare ck_ht_hash + ck_ht_get_spmc. */
static inline bool ckmap_get(ckmap_t *m, const void *key, size_t len, reki_pid_t *out)
{
    ck_ht_hash_t h;
    ck_ht_entry_t e;
    ck_ht_hash(&h, &m->ht, key, (uint16_t)len);
    ck_ht_entry_key_set(&e, key, (uint16_t)len);
    if (!ck_ht_get_spmc(&m->ht, h, &e))
        return false;
    *out = (reki_pid_t)ck_ht_entry_value_direct(&e);
    return true;
}

/* Writer side (the caller serialises): add an absent key; 0 or REKI_ENOMEM. */
int ckmap_put(ckmap_t *m, const void *key, size_t len, reki_pid_t pid);
/* Writer side: remove; 0 and *pid, or REKI_ENOTFOUND. */
int ckmap_remove(ckmap_t *m, const void *key, size_t len, reki_pid_t *pid);

#endif /* REKI_BENCH_CKMAP_H */
