/*
 * The timing wheel's data structure (see wheel.h); timer.c adds the lock,
 * the thread and the actors.
 */
#include <string.h>

#include "core/core.h"
#include "core/wheel.h"

#define CHUNK0_SHIFT 10

static unsigned chunk_of(uint32_t idx, uint32_t *off)
{
    uint64_t v = (uint64_t)idx + (1u << CHUNK0_SHIFT);
    unsigned k = (unsigned)(63 - __builtin_clzll(v)) - CHUNK0_SHIFT;
    *off = (uint32_t)(v - ((uint64_t)1 << (k + CHUNK0_SHIFT)));
    return k;
}

static size_t chunk_bytes(unsigned k)
{
    return ((size_t)1 << (k + CHUNK0_SHIFT)) * sizeof(struct reki__tnode);
}

struct reki__tnode *reki__wheel_node(struct reki__wheel *w, uint32_t idx)
{
    uint32_t off;
    unsigned k = chunk_of(idx, &off);
    return &w->chunks[k][off];
}

static void list_init(struct reki__wheel *w, uint32_t head)
{
    struct reki__tnode *h = reki__wheel_node(w, head);
    h->next = h->prev = head;
}

static uint32_t head_of(unsigned level, unsigned slot)
{
    return 1 + level * REKI__WHEEL_SLOTS + slot;
}

/* Map the chunk that holds idx, if not yet. */
static int ensure(struct reki__wheel *w, uint32_t idx)
{
    uint32_t off;
    unsigned k = chunk_of(idx, &off);
    if (w->chunks[k])
        return REKI_OK;
    void *m = reki__map_pages(chunk_bytes(k));
    if (!m)
        return REKI_ENOMEM;
    w->chunks[k] = m; /* zero-filled: gen 0 */
    w->mapped += chunk_bytes(k);
    return REKI_OK;
}

int reki__wheel_init(struct reki__wheel *w, uint64_t now)
{
    memset(w, 0, sizeof(*w));
    w->now = now;
    w->top = REKI__WHEEL_FIRST;
    if (ensure(w, 0) != REKI_OK) /* chunk 0 holds every sentinel */
        return REKI_ENOMEM;
    for (uint32_t h = 1; h <= REKI__WHEEL_DUE; h++)
        list_init(w, h);
    return REKI_OK;
}

void reki__wheel_destroy(struct reki__wheel *w)
{
    for (unsigned k = 0; k < REKI__WHEEL_CHUNKS; k++)
        if (w->chunks[k])
            reki__unmap_pages(w->chunks[k], chunk_bytes(k));
    memset(w, 0, sizeof(*w));
}

int reki__wheel_issued(const struct reki__wheel *w, uint32_t idx)
{
    return idx >= REKI__WHEEL_FIRST && idx < w->top;
}

uint32_t reki__wheel_alloc(struct reki__wheel *w)
{
    uint32_t idx = w->free_head;
    if (idx) {
        w->free_head = reki__wheel_node(w, idx)->next;
        return idx;
    }
    if (w->top >= REKI__WHEEL_MAX || ensure(w, w->top) != REKI_OK)
        return 0;
    idx = w->top++;
    struct reki__tnode *n = reki__wheel_node(w, idx);
    n->gen = 1; /* 0 is never a timer */
    return idx;
}

void reki__wheel_free(struct reki__wheel *w, uint32_t idx)
{
    struct reki__tnode *n = reki__wheel_node(w, idx);
    n->msg = NULL;
    n->proc = NULL;
    n->state = REKI__TNODE_FREE;
    if (n->gen == 0 || n->gen > REKI__WHEEL_GEN_MAX)
        return; /* every id of this node has been used: retire it */
    n->next = w->free_head;
    w->free_head = idx;
}

static void link_tail(struct reki__wheel *w, uint32_t head, uint32_t idx)
{
    struct reki__tnode *h = reki__wheel_node(w, head), *n = reki__wheel_node(w, idx);
    n->next = head;
    n->prev = h->prev;
    reki__wheel_node(w, h->prev)->next = idx;
    h->prev = idx;
}

static void unlink_node(struct reki__wheel *w, uint32_t idx)
{
    struct reki__tnode *n = reki__wheel_node(w, idx);
    reki__wheel_node(w, n->prev)->next = n->next;
    reki__wheel_node(w, n->next)->prev = n->prev;
    n->next = n->prev = 0;
}

/* File idx by its expiry relative to w->now (the Linux rule). */
static void file(struct reki__wheel *w, uint32_t idx)
{
    struct reki__tnode *n = reki__wheel_node(w, idx);
    if (n->expires < w->now)
        n->expires = w->now;
    uint64_t delta = n->expires - w->now;
    unsigned level = 0;
    while (level + 1 < REKI__WHEEL_LEVELS && delta >= (uint64_t)1
                                                          << (REKI__WHEEL_BITS * (level + 1)))
        level++;
    uint64_t span = (uint64_t)1 << (REKI__WHEEL_BITS * REKI__WHEEL_LEVELS);
    if (delta >= span) /* beyond 2^36 ms: not reachable with 32-bit delays */
        n->expires = w->now + span - 1;
    unsigned slot = (unsigned)(n->expires >> (REKI__WHEEL_BITS * level)) & (REKI__WHEEL_SLOTS - 1);
    link_tail(w, head_of(level, slot), idx);
}

void reki__wheel_add(struct reki__wheel *w, uint32_t idx, uint64_t expires)
{
    reki__wheel_node(w, idx)->expires = expires;
    reki__wheel_node(w, idx)->state = REKI__TNODE_PENDING;
    file(w, idx);
    w->pending++;
}

/* idx stops pending: its id is dead from here on. */
static void take(struct reki__wheel *w, uint32_t idx)
{
    struct reki__tnode *n = reki__wheel_node(w, idx);
    unlink_node(w, idx);
    n->state = REKI__TNODE_TAKEN;
    n->gen++;
    w->pending--;
}

void reki__wheel_remove(struct reki__wheel *w, uint32_t idx)
{
    take(w, idx);
}

/* Re-file every node of one slot (they move to lower levels). */
static void cascade(struct reki__wheel *w, unsigned level, unsigned slot)
{
    uint32_t head = head_of(level, slot);
    struct reki__tnode *h = reki__wheel_node(w, head);
    while (h->next != head) {
        uint32_t idx = h->next;
        unlink_node(w, idx);
        file(w, idx);
    }
}

size_t reki__wheel_advance(struct reki__wheel *w, uint64_t upto)
{
    size_t moved = 0;
    while (w->now <= upto && w->pending > 0) {
        unsigned idx0 = (unsigned)w->now & (REKI__WHEEL_SLOTS - 1);
        if (idx0 == 0) {
            for (unsigned l = 1; l < REKI__WHEEL_LEVELS; l++) {
                unsigned s = (unsigned)(w->now >> (REKI__WHEEL_BITS * l)) & (REKI__WHEEL_SLOTS - 1);
                cascade(w, l, s);
                if (s != 0)
                    break;
            }
        }
        uint32_t head = head_of(0, idx0);
        struct reki__tnode *h = reki__wheel_node(w, head);
        while (h->next != head) {
            uint32_t idx = h->next;
            take(w, idx);
            link_tail(w, REKI__WHEEL_DUE, idx);
            moved++;
        }
        w->now++;
    }
    /* Nothing pending: no slot can hold a timer, so the clock may jump. */
    if (w->pending == 0 && w->now <= upto)
        w->now = upto + 1;
    return moved;
}

uint64_t reki__wheel_next(const struct reki__wheel *w)
{
    if (w->pending == 0)
        return UINT64_MAX;
    /* The next occupied level-0 slot before level 0 wraps, else the wrap: a
     * cascade may bring timers down.  w->now itself may be a wrap whose
     * cascade has not run yet. */
    for (uint64_t tick = w->now;; tick++) {
        uint32_t head = head_of(0, (unsigned)tick & (REKI__WHEEL_SLOTS - 1));
        if ((tick & (REKI__WHEEL_SLOTS - 1)) == 0 ||
            reki__wheel_node((struct reki__wheel *)w, head)->next != head)
            return tick;
    }
}

uint32_t reki__wheel_pop_due(struct reki__wheel *w)
{
    struct reki__tnode *h = reki__wheel_node(w, REKI__WHEEL_DUE);
    if (h->next == REKI__WHEEL_DUE)
        return 0;
    uint32_t idx = h->next;
    unlink_node(w, idx);
    return idx;
}
