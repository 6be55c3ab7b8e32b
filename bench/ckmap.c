/*
 * ck_ht plumbing for the ck_ht floor and the serial baseline.  ck_malloc's
 * free has no context argument, so deferred frees (old maps after a grow,
 * which readers may still be probing) go on one process-wide list that is
 * emptied when the last map is destroyed.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "ckmap.h"

typedef struct deferred {
    struct deferred *next;
    void *p;
} deferred_t;

static pthread_mutex_t defer_lock = PTHREAD_MUTEX_INITIALIZER;
static deferred_t *defer_list;
static unsigned maps_alive;

static void *ck_alloc(size_t n)
{
    return malloc(n);
}

static void ck_release(void *p, size_t n, bool defer)
{
    (void)n;
    deferred_t *d = defer ? malloc(sizeof *d) : NULL;
    if (d == NULL) {
        /* Not deferred, or no memory to defer with: ck_ht only frees without
         * defer when no reader can see p. */
        if (!defer)
            free(p);
        return; /* leak rather than free under a reader */
    }
    d->p = p;
    pthread_mutex_lock(&defer_lock);
    d->next = defer_list;
    defer_list = d;
    pthread_mutex_unlock(&defer_lock);
}

static void *ck_resize(void *p, size_t old, size_t n, bool defer)
{
    void *q = malloc(n);
    if (q == NULL)
        return NULL;
    memcpy(q, p, old < n ? old : n);
    ck_release(p, old, defer);
    return q;
}

static struct ck_malloc allocator = {.malloc = ck_alloc, .realloc = ck_resize, .free = ck_release};

int ckmap_init(ckmap_t *m, size_t capacity)
{
    m->nodes = NULL;
    if (!ck_ht_init(&m->ht, CK_HT_MODE_BYTESTRING, NULL, &allocator, capacity ? capacity : 64,
                    0x5eed))
        return REKI_ENOMEM;
    pthread_mutex_lock(&defer_lock);
    maps_alive++;
    pthread_mutex_unlock(&defer_lock);
    return 0;
}

void ckmap_destroy(ckmap_t *m, void (*fn)(reki_pid_t pid, void *arg), void *arg)
{
    ck_ht_destroy(&m->ht);
    for (ckmap_node_t *n = m->nodes, *next; n != NULL; n = next) {
        next = n->next;
        if (n->live && fn)
            fn(n->pid, arg);
        free(n);
    }
    m->nodes = NULL;
    pthread_mutex_lock(&defer_lock);
    deferred_t *d = --maps_alive == 0 ? defer_list : NULL;
    if (maps_alive == 0)
        defer_list = NULL;
    pthread_mutex_unlock(&defer_lock);
    while (d != NULL) {
        deferred_t *next = d->next;
        free(d->p);
        free(d);
        d = next;
    }
}

int ckmap_put(ckmap_t *m, const void *key, size_t len, reki_pid_t pid)
{
    ckmap_node_t *n = malloc(sizeof *n + len);
    if (n == NULL)
        return REKI_ENOMEM;
    n->pid = pid;
    n->live = true;
    n->len = (uint16_t)len;
    memcpy(n->key, key, len);
    ck_ht_hash_t h;
    ck_ht_entry_t e;
    ck_ht_hash(&h, &m->ht, n->key, n->len);
    ck_ht_entry_set(&e, h, n->key, n->len, (const void *)(uintptr_t)pid);
    if (!ck_ht_put_spmc(&m->ht, h, &e)) {
        free(n);
        return REKI_ENOMEM;
    }
    n->next = m->nodes;
    m->nodes = n;
    return 0;
}

int ckmap_remove(ckmap_t *m, const void *key, size_t len, reki_pid_t *pid)
{
    ck_ht_hash_t h;
    ck_ht_entry_t e;
    ck_ht_hash(&h, &m->ht, key, (uint16_t)len);
    ck_ht_entry_key_set(&e, key, (uint16_t)len);
    if (!ck_ht_remove_spmc(&m->ht, h, &e))
        return REKI_ENOTFOUND;
    /* The node stays on the list (readers may still compare its key); mark it
     * so destroy does not end its actor twice. */
    const char *k = ck_ht_entry_key(&e);
    ckmap_node_t *n = (ckmap_node_t *)(void *)(k - offsetof(ckmap_node_t, key));
    n->live = false;
    *pid = (reki_pid_t)ck_ht_entry_value_direct(&e);
    return 0;
}
