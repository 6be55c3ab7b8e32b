/*
 * The hand-written chained table behind the mutex and rwlock baselines.
 * Callers serialise every mutation and exclude readers during it.
 */
#include <stdlib.h>
#include <string.h>

#include "chain.h"

int chain_init(chain_t *c, size_t capacity)
{
    size_t nb = 16;
    while (nb < capacity)
        nb <<= 1;
    c->b = calloc(nb, sizeof *c->b);
    c->mask = nb - 1;
    c->n = 0;
    return c->b ? 0 : REKI_ENOMEM;
}

void chain_destroy(chain_t *c, void (*fn)(reki_pid_t pid, void *arg), void *arg)
{
    for (size_t i = 0; i <= c->mask; i++) {
        chain_node_t *e = c->b[i];
        while (e != NULL) {
            chain_node_t *next = e->next;
            if (fn)
                fn(e->pid, arg);
            free(e);
            e = next;
        }
    }
    free(c->b);
    c->b = NULL;
}

static void grow(chain_t *c)
{
    size_t nb = (c->mask + 1) * 2;
    chain_node_t **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return; /* a longer chain is slower, not wrong */
    for (size_t i = 0; i <= c->mask; i++) {
        chain_node_t *e = c->b[i];
        while (e != NULL) {
            chain_node_t *next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
            e = next;
        }
    }
    free(c->b);
    c->b = b;
    c->mask = nb - 1;
}

int chain_insert(chain_t *c, const void *key, size_t len, uint64_t hash, reki_pid_t pid)
{
    chain_node_t *e = malloc(sizeof *e + len);
    if (e == NULL)
        return REKI_ENOMEM;
    e->hash = hash;
    e->pid = pid;
    e->len = len;
    memcpy(e->key, key, len);
    e->next = c->b[hash & c->mask];
    c->b[hash & c->mask] = e;
    if (++c->n > c->mask + 1)
        grow(c);
    return 0;
}

int chain_remove(chain_t *c, const void *key, size_t len, uint64_t hash, reki_pid_t *pid)
{
    for (chain_node_t **pp = &c->b[hash & c->mask]; *pp != NULL; pp = &(*pp)->next) {
        chain_node_t *e = *pp;
        if (e->hash == hash && e->len == len && memcmp(e->key, key, len) == 0) {
            *pp = e->next;
            *pid = e->pid;
            free(e);
            c->n--;
            return 0;
        }
    }
    return REKI_ENOTFOUND;
}
