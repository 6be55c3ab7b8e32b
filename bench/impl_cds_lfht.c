/*
 * Floor "cds_lfht": liburcu's lock-free resizable hash table, read under
 * urcu-memb (membarrier flavour: the cheapest read side that needs no
 * quiescent-state calls).  lookup is a bare cds_lfht_lookup; lookup_or_start
 * is lookup, then start and cds_lfht_add_unique, ending the extra actor when
 * a concurrent start won: no registry logic, no waiters.
 *
 * The table resizes itself with node accounting on: without
 * CDS_LFHT_ACCOUNTING, growth follows chain lengths alone and a table of a
 * few ten thousand keys can take seconds to empty and destroy.
 */
#include <stdlib.h>
#include <string.h>
#include <urcu/rculfhash.h>
#include <urcu/urcu-memb.h>

#include "bench.h"

typedef struct lnode {
    struct cds_lfht_node node;
    reki_pid_t pid;
    size_t len;
    char key[];
} lnode_t;

typedef struct ltable {
    struct cds_lfht *ht;
    reki_rt_t *rt;
} ltable_t;

typedef struct lkey {
    const void *key;
    size_t len;
} lkey_t;

static int match(struct cds_lfht_node *node, const void *arg)
{
    const lnode_t *n = caa_container_of(node, lnode_t, node);
    const lkey_t *k = arg;
    return n->len == k->len && memcmp(n->key, k->key, k->len) == 0;
}

static int l_create(reki_rt_t *rt, size_t capacity, void **out)
{
    ltable_t *t = calloc(1, sizeof *t);
    if (t == NULL)
        return REKI_ENOMEM;
    unsigned long init = 1;
    while (init < capacity)
        init <<= 1;
    t->ht = cds_lfht_new_flavor(init, 1, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING,
                                &urcu_memb_flavor, NULL);
    if (t->ht == NULL) {
        free(t);
        return REKI_ENOMEM;
    }
    t->rt = rt;
    *out = t;
    return 0;
}

/* Runs on a registered thread with no reader active: nodes are freed after a
 * grace period. */
static void l_destroy(void *p)
{
    ltable_t *t = p;
    struct cds_lfht_iter it;
    lnode_t *n;
    lnode_t *dead = NULL;
    urcu_memb_read_lock();
    cds_lfht_for_each_entry (t->ht, &it, n, node) {
        if (cds_lfht_del(t->ht, &n->node) == 0) {
            reki_kill(t->rt, n->pid);
            /* the pid is no longer needed: reuse it as the free list link */
            n->pid = (reki_pid_t)(uintptr_t)dead;
            dead = n;
        }
    }
    urcu_memb_read_unlock();
    urcu_memb_synchronize_rcu();
    while (dead != NULL) {
        lnode_t *next = (lnode_t *)(uintptr_t)dead->pid;
        free(dead);
        dead = next;
    }
    cds_lfht_destroy(t->ht, NULL);
    free(t);
}

static int l_lookup(void *p, const void *key, size_t len, reki_pid_t *out)
{
    ltable_t *t = p;
    lkey_t k = {key, len};
    struct cds_lfht_iter it;
    int rc = REKI_ENOTFOUND;
    urcu_memb_read_lock();
    cds_lfht_lookup(t->ht, bench_hash(key, len), match, &k, &it);
    struct cds_lfht_node *node = cds_lfht_iter_get_node(&it);
    if (node != NULL) {
        *out = caa_container_of(node, lnode_t, node)->pid;
        rc = 0;
    }
    urcu_memb_read_unlock();
    return rc;
}

static int l_lookup_or_start(void *p, const void *key, size_t len, reki_pid_t *out)
{
    ltable_t *t = p;
    if (l_lookup(p, key, len, out) == 0)
        return 0;
    lnode_t *n = malloc(sizeof *n + len);
    if (n == NULL)
        return REKI_ENOMEM;
    int rc = bench_start(t->rt, key, len, NULL, &n->pid);
    if (rc < 0) {
        free(n);
        return rc;
    }
    n->len = len;
    memcpy(n->key, key, len);
    cds_lfht_node_init(&n->node);
    lkey_t k = {n->key, len};
    urcu_memb_read_lock();
    struct cds_lfht_node *won =
        cds_lfht_add_unique(t->ht, bench_hash(key, len), match, &k, &n->node);
    *out = caa_container_of(won, lnode_t, node)->pid;
    urcu_memb_read_unlock();
    if (won == &n->node)
        return REKI_STARTED;
    reki_kill(t->rt, n->pid);
    free(n); /* never published */
    return 0;
}

static void l_thread_enter(void)
{
    urcu_memb_register_thread();
}

static void l_thread_leave(void)
{
    urcu_memb_unregister_thread();
}

const bench_impl_t bench_impl_cds_lfht = {
    .name = "cds_lfht",
    .what = "floor: bare cds_lfht_lookup (urcu-memb); get-or-create by cds_lfht_add_unique",
    .caps = BENCH_CAP_LOOKUP | BENCH_CAP_START,
    .create = l_create,
    .destroy = l_destroy,
    .lookup = l_lookup,
    .lookup_or_start = l_lookup_or_start,
    .thread_enter = l_thread_enter,
    .thread_leave = l_thread_leave,
};
