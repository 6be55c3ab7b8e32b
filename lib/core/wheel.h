/*
 * A hierarchical timing wheel (Varghese and Lauck; the classic Linux timer
 * wheel): 6 levels of 64 slots, one tick per millisecond, so every 32-bit
 * millisecond delay has a slot.  A timer sits in level l while it is due in
 * fewer than 64^(l+1) ticks; when level 0 wraps, the next level's current
 * slot is re-filed into the levels below (a cascade).
 *
 * Nodes live in a slab addressed by 32-bit index: a fixed array of chunks
 * that grow geometrically, are mapped on demand (pages are touched only when
 * a node is first used) and never move, so a node's address is stable and a
 * thread that owns a node (it took the node off the wheel) may read it
 * without the lock.  Lists link indices; each slot's list is circular through
 * a sentinel node.  A node's `gen` changes whenever it stops pending, so a
 * timer id (gen << 32 | index) names one arming only; a node whose gen would
 * wrap is retired, never reused, so ids are never reused either.
 *
 * Not thread-safe: the caller serializes every call (timer.c's lock), except
 * reads of a node it owns.
 */
#ifndef REKI_WHEEL_H
#define REKI_WHEEL_H

#include <stddef.h>
#include <stdint.h>

#define REKI__WHEEL_BITS 6
#define REKI__WHEEL_SLOTS (1u << REKI__WHEEL_BITS)
#define REKI__WHEEL_LEVELS 6
/* Index 0 is "none"; 1 .. HEADS are the slots' sentinels; DUE is the list
 * that reki__wheel_advance fills; nodes start after it. */
#define REKI__WHEEL_HEADS (REKI__WHEEL_LEVELS * REKI__WHEEL_SLOTS)
#define REKI__WHEEL_DUE (REKI__WHEEL_HEADS + 1)
#define REKI__WHEEL_FIRST (REKI__WHEEL_DUE + 1)
#define REKI__WHEEL_CHUNKS 21 /* chunk k holds 1024 << k nodes */
/* Indices stay below 2^31: the top bit of a proc's list head means "closed". */
#define REKI__WHEEL_MAX (1024u * ((1u << REKI__WHEEL_CHUNKS) - 1u)) /* what the chunks hold */

struct reki__proc;

enum { REKI__TNODE_FREE = 0, REKI__TNODE_PENDING = 1, REKI__TNODE_TAKEN = 2 };
#define REKI__WHEEL_GEN_MAX 0x7fffffffu /* a node past it is retired */

struct reki__tnode {
    uint32_t next, prev;   /* wheel slot or due list; next links the free list */
    uint32_t pnext, pprev; /* the target's list of pending timers; 0 ends it */
    uint32_t gen;          /* of the current (or next) arming; below 2^31 */
    uint16_t state;        /* REKI__TNODE_FREE, _PENDING (on the wheel) or _TAKEN */
    uint16_t idle;         /* an idle tick (timer.c): msg is its period, not a message */
    uint64_t expires;      /* tick */
    void *msg;
    struct reki__proc *proc;
};

struct reki__wheel {
    struct reki__tnode *chunks[REKI__WHEEL_CHUNKS];
    uint32_t free_head; /* free list, through next */
    uint32_t top;       /* first index never used */
    uint64_t now;       /* the next tick to process */
    size_t pending;     /* nodes on the slot lists */
    size_t mapped;      /* bytes of chunks mapped */
};

int reki__wheel_init(struct reki__wheel *w, uint64_t now);
void reki__wheel_destroy(struct reki__wheel *w);
struct reki__tnode *reki__wheel_node(struct reki__wheel *w, uint32_t idx);
/* True if idx has been handed out by reki__wheel_alloc. */
int reki__wheel_issued(const struct reki__wheel *w, uint32_t idx);
/* A free node (its gen is that of its next arming), or 0 if out of memory. */
uint32_t reki__wheel_alloc(struct reki__wheel *w);
/* Give back a node taken off the wheel. */
void reki__wheel_free(struct reki__wheel *w, uint32_t idx);
/* File node idx, due at tick `expires` (a past tick: the next processed). */
void reki__wheel_add(struct reki__wheel *w, uint32_t idx, uint64_t expires);
/* Take idx off its slot (it must be on one): it stops pending (TAKEN) and
 * its generation moves on, so its id names nothing any more. */
void reki__wheel_remove(struct reki__wheel *w, uint32_t idx);
/* Process every tick up to and including `upto`: cascades, and moves the
 * timers due onto the DUE list, taken as by reki__wheel_remove.  Returns
 * how many were moved. */
size_t reki__wheel_advance(struct reki__wheel *w, uint64_t upto);
/* The first tick at which advancing can move a timer (or cascade one
 * closer): no pending timer expires before it.  UINT64_MAX if none. */
uint64_t reki__wheel_next(const struct reki__wheel *w);
/* Unlink and return the first node of the DUE list, 0 if empty. */
uint32_t reki__wheel_pop_due(struct reki__wheel *w);

#endif
