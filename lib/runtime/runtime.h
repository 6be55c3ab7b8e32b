/*
 * The runtime layer (lib/runtime): pids, actors, mailboxes, scheduling,
 * timers, inboxes, calls.  It builds on lib/core only; the registry layer
 * above plugs into it through hooks (struct reki__hook), attached objects
 * (struct reki__rt_child) and the hazard-pointer domain's destructor, never
 * the other way round.  Nothing here is installed.
 */
#ifndef REKI_RUNTIME_H
#define REKI_RUNTIME_H

#include <ck_hp.h>

#include "core/core.h"

/* ------------------------------------------------------------- pids -- */

/* pid = generation << 26 | slot index, and generation = sequence << 8 | tag.
 * The tag (1..255) is the runtime's: consecutive runtimes get different
 * tags, so a pid handed to another runtime's calls is not alive there even
 * though both tables hand out the same slot indexes.  Generations are >= 1,
 * so every pid is >= 2^26 and small values are free for entry states.  Bit
 * 63 marks a dead slot, so generations stop at 2^37 - 1: a slot whose next
 * generation would pass it is retired for good rather than wrapped, and no
 * pid is ever reused. */
#define REKI__TAG_BITS 8u
#define REKI__GEN_STEP (UINT64_C(1) << REKI__TAG_BITS)
#define REKI__IDX_BITS 26u
#define REKI__IDX_MASK ((UINT64_C(1) << REKI__IDX_BITS) - 1)
#define REKI__PID_MIN (UINT64_C(1) << REKI__IDX_BITS)
#define REKI__DEAD_BIT (UINT64_C(1) << 63)
#define REKI__GEN_MAX ((UINT64_C(1) << (63 - REKI__IDX_BITS)) - 1)
#define REKI__CHUNK_BITS 14u
#define REKI__CHUNK_SLOTS (1u << REKI__CHUNK_BITS)
#define REKI__NCHUNKS (1u << (REKI__IDX_BITS - REKI__CHUNK_BITS))

struct reki__proc;

struct reki__slot {
    /* == the occupant's pid while it lives; pid | DEAD_BIT after; 0 never used. */
    _Atomic uint64_t live;
    _Atomic(struct reki__proc *) proc;
};

/* Threads spread over this many shards (counters, pid allocation), so that
 * spawning threads share no cache line. */
#define REKI__SHARDS 16u
#define REKI__BLOCK_SLOTS 64u /* a shard takes fresh pid slots this many at a time */

/* One shard of the pid table's allocator: its own free list and block. */
struct reki__pidshard {
    pthread_mutex_t lock; /* guards the rest */
    uint32_t *free_idx;
    size_t nfree, cap_free;
    uint32_t block, used; /* current fresh block's first index, slots taken from it */
} __attribute__((aligned(64)));

struct reki__pidtab {
    /* Chunks are mapped on demand (exactly their pages: an idle actor's
     * slot costs its 16 bytes) and never move or shrink until the runtime
     * is freed, so readers index them without a lock.  owners[c] has one
     * byte per block of chunk c: the shard that owns the block. */
    _Atomic(struct reki__slot *) chunks[REKI__NCHUNKS];
    _Atomic(_Atomic uint8_t *) owners[REKI__NCHUNKS];
    _Atomic uint32_t blocks; /* fresh blocks handed out: slots below blocks * BLOCK_SLOTS */
    uint64_t tag;            /* 1..255: the low bits of every generation of this table */
    struct reki__pidshard shard[REKI__SHARDS];
};

int reki__pidtab_init(struct reki__pidtab *t);
void reki__pidtab_destroy(struct reki__pidtab *t);
/* Reserve a slot for p; the pid is returned but not yet live. */
int reki__pid_alloc(struct reki__pidtab *t, struct reki__proc *p, reki_pid_t *pid);
/* Make pid live (release: pairs with the acquire in reki__pid_resolve). */
void reki__pid_publish(struct reki__pidtab *t, reki_pid_t pid);
/* Mark dead (the exit transition's store). */
void reki__pid_kill(struct reki__pidtab *t, reki_pid_t pid);
/* Give the slot back after a grace period: no reader can hold the old pid's proc. */
void reki__pid_release(struct reki__pidtab *t, reki_pid_t pid);
/* The proc of a live pid, or NULL.  Caller is in an RCU read-side section. */
struct reki__proc *reki__pid_resolve(struct reki__pidtab *t, reki_pid_t pid);
bool reki__pid_alive(struct reki__pidtab *t, reki_pid_t pid);
/* Call fn on every pid alive when its slot is read (no read-side section). */
void reki__pid_foreach_live(struct reki__pidtab *t, void (*fn)(reki_pid_t, void *), void *arg);

/* --------------------------------------------------------- procs -- */

/* Hooks run on a proc's exit.  Registry links run before monitors. */
struct reki__hook {
    struct reki__hook *next;
    /* At the exit transition itself, under the proc lock: must not block
     * (a futex wake is the most it may do). */
    void (*marked)(struct reki__hook *h, reki_pid_t pid);
    /* After terminate has returned, with no lock held. */
    void (*exited)(struct reki__hook *h, reki_pid_t pid, int reason);
    /* Before each handle while rt->gated is nonzero, under the proc lock:
     * false makes the actor exit with REKI_EXIT_SHUTDOWN instead (the
     * message goes where messages dequeued after an exit go).  NULL: always
     * true.  Must not block. */
    bool (*may_handle)(struct reki__hook *h);
};

/* A CALLER is the reply address of one reki_call (call.c): a pid with no
 * mailbox, alive while its call waits. */
enum reki__proc_kind { REKI__LIGHT = 0, REKI__DEDICATED = 1, REKI__INBOX = 2, REKI__CALLER = 3 };

/* proc->sched */
enum {
    REKI__IDLE = 0,      /* mailbox empty as far as the consumer knows; nobody will look */
    REKI__SCHEDULED = 1, /* queued on a worker, running, or its consumer is awake */
    REKI__INIT = 2,      /* init is running: messages wait, nobody runs */
    REKI__DONE = 3       /* exit path finished: never scheduled again */
};

#define REKI__ALIVE (-1)

/* What a proc runs: reki_behavior_t's functions, interned per runtime
 * (behavior.c) so that a proc holds one pointer instead of three. */
struct reki__beh {
    reki_next_t (*handle)(void *, void *, reki_pid_t);
    void (*terminate)(void *, int);
    void (*drop)(void *);
    struct reki__beh *next;
};

/* An idle light actor is this struct (104 bytes: a 112-byte malloc chunk)
 * and its pid slot (16 bytes).  Fields that only some kinds use share
 * space: see the unions. */
struct reki__proc {
    struct __cds_wfcq_head mq_head; /* mailbox: MPSC, this proc's consumer dequeues */
    struct cds_wfcq_tail mq_tail;
    _Atomic uint32_t sched; /* REKI__IDLE ...; also the futex of dedicated/inbox consumers */
    _Atomic int32_t reason; /* REKI__ALIVE, or the exit reason once exited */
    reki__spin_t lock;      /* exit transition, hook lists */
    uint8_t kind;
    uint8_t no_terminate; /* init failed: the actor never lived */
    union {
        uint8_t free_on_finish; /* inbox: freed from its own exit path (a monitor) */
        uint8_t idle_quiet;     /* light, dedicated: idle ticks since the last handle
                                   (its consumer only) */
    };
    _Atomic uint32_t qlen; /* messages queued and not yet taken */
    uint32_t max_queue;    /* 0 = unbounded */
    uint32_t timers;       /* pending timers' list (timer.c, under its lock) */
    reki_pid_t pid;
    reki_rt_t *rt;
    const struct reki__beh *beh;
    union {
        void *state; /* light and dedicated actors: handle's state; CALLER: its call */
        struct {
            _Atomic uint32_t finished; /* its exit path has run (futex) */
            _Atomic int efd;           /* eventfd of reki_inbox_fd, or -1 */
        } in;                          /* REKI__INBOX */
    };
    struct reki__hook *links; /* registry entries naming this pid */
    union {
        struct {
            struct cds_wfcq_node rq_node; /* run-queue link (light actors) */
            struct reki__hook *monitors;  /* NULL once the exit path took them */
        };
        struct rcu_head rcu; /* retirement: neither is used any more */
    };
    void *ext; /* dedicated: struct reki__dthread */
};
_Static_assert(sizeof(struct reki__proc) <= 104, "an idle light actor must fit 128 bytes");

/* mailbox.c */
/* A message in a mailbox, or in a registry key's queue between the key's
 * actors.  `via` says how it came:
 *   0                 reki_send, a timer;
 *   a pid (bit 63 0)  reki_call: its reply address;
 *   VIA_KEY | kq      reki_send_key to the key whose queue is kq;
 *   VIA_IDLE | ms     an idle tick (registry idle_ms): ms is its period.
 * Pointers and the period stay below 2^57. */
struct reki__env {
    struct cds_wfcq_node node;
    _Atomic(void *) msg;
    _Atomic uint64_t via;
};
#define REKI__VIA_TAG (UINT64_C(1) << 63)
#define REKI__VIA_KIND (UINT64_C(7) << 58)
#define REKI__VIA_KEY (REKI__VIA_TAG | UINT64_C(1) << 58)
#define REKI__VIA_IDLE (REKI__VIA_TAG | UINT64_C(4) << 58)
#define REKI__VIA_LOW ((UINT64_C(1) << 58) - 1)

/* The leftovers of a key's exiting actor: messages by key that its exit
 * path found in the mailbox, in mailbox order.  Filled by that exit path
 * alone (before its registry link's exited hook, which takes them); lives in
 * the registry entry (registry.h), named by the envelopes. */
struct reki__keyq {
    struct __cds_wfcq_head lh;
    struct cds_wfcq_tail lt;
    uint32_t nleft;
};

/* Queue msg; returns REKI_OK, REKI_EFULL (at max_queue) or REKI_ENOMEM.
 * *was_empty tells whether the mailbox was empty before: the sender that
 * fills it schedules the proc. */
int reki__mbox_push(struct reki__proc *p, void *msg, bool *was_empty);
/* The same for a call (caller: the pid reki_caller returns while msg is
 * handled) or a timer's delivery (bounded false: accepted at arming). */
int reki__mbox_push_ex(struct reki__proc *p, void *msg, reki_pid_t caller, bool bounded,
                       bool *was_empty);
/* Queue a ready envelope (by key; an idle tick is not counted).  REKI_EFULL
 * only when bounded and a counted message finds the mailbox at its bound. */
int reki__mbox_push_env(struct reki__proc *p, struct reki__env *e, bool counted, bool bounded,
                        bool *was_empty);
/* What reki__mbox_pop found. */
enum { REKI__POP_BUSY = -1, REKI__POP_EMPTY = 0, REKI__POP_MSG = 1, REKI__POP_IDLE = 2 };
/* The next message: MSG with *msg and *caller (0 for a send) and, if kenv
 * is not NULL, *kenv = its envelope when it came by key (the caller frees
 * it, or hands it to the key's leftovers with reki__mbox_leftover; others
 * are freed here); IDLE (an idle tick, *msg = its period); EMPTY; BUSY (a
 * sender is half-way through an enqueue). */
int reki__mbox_pop(struct reki__proc *p, void **msg, reki_pid_t *caller, struct reki__env **kenv);
bool reki__mbox_empty(struct reki__proc *p);
/* Empty the mailbox: messages by key to their key's leftovers, idle ticks
 * freed, the rest to p->drop (or discarded); returns how many dropped. */
size_t reki__mbox_drain(struct reki__proc *p);
/* A message by key taken by the exit path (kenv from reki__mbox_pop):
 * append it to its key's leftovers. */
void reki__mbox_leftover(struct reki__env *kenv);

/* actor.c */
/* The exit transition: atomically dead, early hooks.  False if already dead. */
bool reki__proc_exit(struct reki__proc *p, int reason);
/* Exit p (if alive) from any thread and make its owner run the exit path. */
int reki__kill_pid(reki_rt_t *rt, reki_pid_t pid, int reason);
/* The exit path, on the proc's own thread after the transition. */
void reki__proc_finish(struct reki__proc *p);
/* A new proc with a live pid, its sched at REKI__INIT (nobody runs it yet). */
int reki__proc_new(reki_rt_t *rt, const struct reki__beh *beh, void *arg, uint8_t kind,
                   uint32_t max_queue, struct reki__proc **out);
/* Make p's consumer look at its mailbox (IDLE -> SCHEDULED). */
void reki__proc_wake(struct reki__proc *p);
/* Handle one dequeued message; false once the actor has exited and finished. */
bool reki__proc_handle_one(struct reki__proc *p, void *msg, reki_pid_t caller,
                           struct reki__env *kenv);
/* An idle tick was popped: exit (REKI_EXIT_IDLE) or re-arm.  false once
 * the actor has exited and finished. */
bool reki__proc_idle_tick(struct reki__proc *p, uint32_t period);
/* Free p and its pid after a grace period (late messages go to drop). */
void reki__proc_retire(struct reki__proc *p);
/* Run queued messages of a light proc; called by a worker. */
void reki__proc_run(struct reki__proc *p);

/* monitor.c */
/* Add h to p's links (registry) or monitors, if p lives.  Under p's lock,
 * then `publish(arg)` runs, so that it is ordered before any exit hook. */
int reki__proc_add_hook(struct reki__proc *p, struct reki__hook *h, bool link,
                        void (*publish)(void *), void *arg);
void reki__proc_run_marked(struct reki__proc *p);
void reki__proc_run_exited(struct reki__proc *p, int reason);

/* ------------------------------------------------------------ sched.c -- */

struct reki__worker {
    struct __cds_wfcq_head head;
    struct cds_wfcq_tail tail;
    pthread_mutex_t dq_lock; /* dequeuers: the owner and thieves */
    pthread_t tid;
    reki_rt_t *rt;
    unsigned id;
    unsigned spin; /* the owner's current spin budget (sched.c), in rounds */
    bool started;
} __attribute__((aligned(64)));

int reki__sched_start(reki_rt_t *rt, unsigned nworkers);
void reki__sched_stop(reki_rt_t *rt);
void reki__sched_push(reki_rt_t *rt, struct reki__proc *p);

/* -------------------------------------------------------------- tls.c -- */

/* A value unique to the calling thread among live threads. */
const void *reki__thread_token(void);
struct reki__worker *reki__tls_worker(void);
void reki__tls_set_worker(struct reki__worker *w);
unsigned reki__tls_next_rr(void);
/* The actor whose callbacks the calling thread is running (0: none); returns
 * the previous value, to restore. */
reki_pid_t reki__tls_set_current(reki_pid_t pid);
reki_pid_t reki__tls_current(void);
/* This thread's shard (0 .. REKI__SHARDS - 1), fixed at its first call. */
unsigned reki__tls_shard(void);
/* Set reki_caller's answer for this thread; returns the previous one. */
reki_pid_t reki__tls_swap_caller(reki_pid_t caller);

/* Hazard-pointer record of the calling thread for rt (created on first use,
 * released at thread exit); NULL on allocation failure. */
ck_hp_record_t *reki__hp_record(reki_rt_t *rt);
/* Set up rt's hazard-pointer domain for the objects a layer above retires
 * through it (registry entries), with their destructor, unless it is set up
 * already; REKI_OK, REKI_ENOMEM, or REKI_EINVAL if it is set up with another
 * destructor.  Records exist only after this. */
int reki__hp_use(reki_rt_t *rt, ck_hp_destructor_t destroy);
/* At reki_rt_free, after the last waiter: reclaim what is still retired. */
void reki__hp_destroy(reki_rt_t *rt);
/* Live-runtime set, so thread-exit destructors never touch a freed runtime. */
void reki__rt_list_add(reki_rt_t *rt);
void reki__rt_list_remove(reki_rt_t *rt);

/* ----------------------------------------------------------- runtime -- */

struct reki_rt {
    struct reki__pidtab pids;
    struct reki__worker *workers;
    unsigned nworkers;
    _Atomic uint32_t ec_seq;   /* worker event count (futex) */
    _Atomic uint32_t waking;   /* a futex wake is on its way (sched.c) */
    _Atomic uint32_t gated;    /* hooks with may_handle may say no (fence.c) */
    _Atomic uint32_t sleepers; /* workers asleep or about to be */
    _Atomic int stop;          /* workers: finish queued work and leave */
    _Atomic int shutdown;      /* reki_rt_free has begun */

    /* Procs whose exit path has not finished: the sum of per-shard counts
     * (a spawn counts in its thread's shard, an exit in the exiting
     * thread's), so spawning threads share no line.  Only the sum means
     * anything; see reki__rt_live. */
    struct {
        _Atomic long n;
    } __attribute__((aligned(64))) live[REKI__SHARDS];
    pthread_mutex_t wait_lock; /* with wait_cv: rt_free waiting for the live count */
    pthread_cond_t wait_cv;

    pthread_mutex_t objs_lock;  /* children, inboxes and dedicated-thread zombies */
    struct reki__list children; /* struct reki__rt_child: registries */
    struct reki__list inboxes;
    struct reki__dthread *dthreads; /* every dedicated thread not yet joined */

    /* Hazard pointers (entries that waiters hold across a blocking wait). */
    ck_hp_t hp;
    pthread_mutex_t hp_lock; /* the domain's set-up, record registration, the reaper record */
    bool hp_ready;           /* under hp_lock: reki__hp_use has set the domain up */
    ck_hp_record_t *reaper;
    struct reki__hprec *hp_owned;
    uint64_t id; /* unique per runtime in this process */
    struct reki__list live_node;

    struct reki__timers *timers;      /* timer.c */
    _Atomic(struct reki__beh *) behs; /* behavior.c: interned, freed with the runtime */
};

/* An object of a layer above (a registry) that its runtime frees if the
 * user has not: reki_rt_free calls destroy on each one still attached, after
 * the inboxes' drops and before the workers stop. */
struct reki__rt_child {
    struct reki__list node; /* rt->children, under objs_lock */
    void (*destroy)(struct reki__rt_child *c);
};
/* Attach c; REKI_ESHUTDOWN (and nothing attached) once reki_rt_free has
 * begun.  Detach it before freeing it. */
int reki__rt_attach(reki_rt_t *rt, struct reki__rt_child *c);
void reki__rt_detach(reki_rt_t *rt, struct reki__rt_child *c);

/* A proc begins (before its spawner checks shutdown) / its exit path ends. */
void reki__rt_proc_begin(reki_rt_t *rt);
void reki__rt_proc_done(reki_rt_t *rt);

/* timer.c */
int reki__timers_start(reki_rt_t *rt);
/* After every proc has exited: stop the timer thread (no timer is pending). */
void reki__timers_stop(reki_rt_t *rt);
void reki__timers_destroy(reki_rt_t *rt);
/* The exit path: p's pending timers are cancelled, their messages dropped,
 * and p takes no new timer. */
void reki__timers_close(struct reki__proc *p);
/* Arm p's idle tick (ms from now); inside a read-side section that keeps p
 * valid.  REKI_OK, REKI_EDEAD (p's timers closed) or REKI_ENOMEM. */
int reki__timer_idle(struct reki__proc *p, uint32_t ms);

/* behavior.c */
/* The runtime's copy of b's functions (b NULL: none); NULL if out of memory. */
const struct reki__beh *reki__beh_intern(reki_rt_t *rt, const reki_behavior_t *b);
/* The behavior of nothing (CALLER procs). */
extern const struct reki__beh reki__beh_none;
void reki__beh_free_all(reki_rt_t *rt);

/* call.c */
/* reki_kill on a caller's pid: its call stops waiting (REKI_EDEAD). */
int reki__call_abort(struct reki__proc *p);
/* retire_cb of a CALLER: its call record. */
void reki__call_free(struct reki__proc *p);

/* inbox.c */
void reki__inbox_free_all(reki_rt_t *rt);
/* The inbox proc's exit path has finished (its last use of p). */
void reki__inbox_exited(struct reki__proc *p);

/* dedicated.c */
struct reki__dthread {
    pthread_t tid;
    _Atomic int finished;       /* past its last use of the proc: join will not block long */
    struct reki__dthread *next; /* rt->dthreads */
};
int reki__dedicated_start(struct reki__proc *p);
/* init failed after the thread started: let it run the exit path, join it. */
void reki__dedicated_abort(struct reki__proc *p);
/* Join finished dedicated threads (all of them when `all`). */
void reki__dedicated_reap(reki_rt_t *rt, bool all);

#endif /* REKI_RUNTIME_H */
