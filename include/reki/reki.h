/*
 * reki: a registry of light actors for multi-core servers.
 *
 * Look actors up by key, or start one on demand, with exactly one live actor
 * per key and no stale pid ever returned after an actor has exited.
 *
 * Conventions (every function below, unless its comment says otherwise):
 *  - Returns 0 (REKI_OK) or a negative REKI_E* code; REKI_STARTED (1) is the
 *    one positive success code.  Each code equals the matching negative Linux
 *    errno value, so they read well in logs.
 *  - Bad arguments return REKI_EINVAL and change nothing; allocation failure
 *    returns REKI_ENOMEM and changes nothing.  No function aborts on bad input.
 *  - MT-safe: any function may be called from any thread, concurrently with
 *    any other, including from inside actor callbacks.  The exception is the
 *    *_free functions: the caller guarantees that no other call on that object
 *    is running or will start.  docs/concurrency.md holds the full table.
 *  - No thread has to register itself: per-thread state (RCU reader, hazard
 *    pointer records) is created on first use and released at thread exit.
 *    The first call on a new thread pays that registration once (liburcu-bp
 *    takes a process-wide mutex and blocks signals twice): a server that
 *    makes a thread per request pays it per request; prefer a thread pool.
 *  - No user callback (start, init, handle, terminate, drop, down, foreach's
 *    fn) runs inside an RCU read-side section, so a callback that blocks
 *    delays nothing outside its own actor, key or call.
 *  - fork(): a child process may not use a runtime, registry or inbox it
 *    inherited (their threads do not exist in the child); it may create new
 *    ones, or exec.  liburcu-bp keeps its own state consistent across fork.
 *  - Keys are byte strings, 1 <= keylen <= REKI_KEY_MAX, copied on insert.
 *
 * Copyright the reki authors.  See LICENSE.
 */
#ifndef REKI_REKI_H
#define REKI_REKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reki/version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(REKI_BUILDING) && defined(__GNUC__)
#define REKI_API __attribute__((visibility("default")))
#else
#define REKI_API
#endif

/* ---------------------------------------------------------------- codes -- */

enum {
    REKI_OK = 0,
    REKI_STARTED = 1,      /* reki_lookup_or_start ran start and registered it */
    REKI_ENOTFOUND = -2,   /* -ENOENT: no live actor under that key */
    REKI_EDEAD = -3,       /* -ESRCH: the pid is not a live actor */
    REKI_EAGAIN = -11,     /* -EAGAIN: no thread could be created */
    REKI_ENOMEM = -12,     /* -ENOMEM: allocation failed; nothing changed */
    REKI_EINVAL = -22,     /* -EINVAL: bad argument; nothing changed */
    REKI_EDEADLK = -35,    /* -EDEADLK: waiting would wait for the caller itself */
    REKI_EFULL = -105,     /* -ENOBUFS: the mailbox is at its bound; msg was not taken */
    REKI_ESHUTDOWN = -108, /* -ESHUTDOWN: runtime or registry being freed */
    REKI_ETIMEDOUT = -110  /* -ETIMEDOUT: the wait ran out */
};

/* Longest key, in bytes, that the registry accepts. */
#define REKI_KEY_MAX 4096

/*
 * reki_strerror: a static, human-readable string for a return code.
 * Returns: never NULL; unknown codes get "unknown reki error".
 * Thread-safety: MT-safe.  Lifetime: the string is static.
 */
REKI_API const char *reki_strerror(int code);

/* reki_version_string: "MAJOR.MINOR.PATCH" of the linked library. */
REKI_API const char *reki_version_string(void);

/* -------------------------------------------------------------- runtime -- */

typedef struct reki_rt reki_rt_t;

typedef struct reki_rt_opts {
    unsigned workers; /* worker threads for light actors; 0 = one per online CPU */
} reki_rt_opts_t;

/*
 * reki_rt_new: start a runtime: a pid table and a pool of worker threads.
 * Returns: REKI_OK and *out; REKI_EINVAL (out NULL, workers > 1024);
 *   REKI_ENOMEM; REKI_EAGAIN (a worker thread could not be created).  On error
 *   nothing is left behind and *out is untouched.
 * Thread-safety: MT-safe.
 * Lifetime: the caller owns *out and releases it with reki_rt_free.
 */
REKI_API int reki_rt_new(const reki_rt_opts_t *opts, reki_rt_t **out);

/*
 * reki_rt_free: end a runtime.  Every live actor exits with reason
 * REKI_EXIT_SHUTDOWN: its terminate runs, every message still queued for it is
 * handed to its drop callback, its monitors fire.  Registries and inboxes
 * still open on the runtime are freed as if by reki_registry_free and
 * reki_inbox_free.  Worker threads are joined and all memory is released.
 * The order: (1) new spawns fail with REKI_ESHUTDOWN; every live actor and
 *   inbox pid exits (registered or not, all alike), and reki_rt_free waits
 *   until every exit path has run (terminate, drops, monitors); (2) messages
 *   that raced an exit reach their drop; (3) open inboxes are freed (their
 *   unreceived messages to their drop); (4) late drops again; (5) open
 *   registries are freed (all their entries are FREE by then); (6) threads
 *   are joined and memory released.  So a terminate, drop or down callback
 *   that runs during (1)-(4) may still call reki_lookup or reki_foreach on a
 *   registry, send to an inbox that is still open, or reki_lookup_or_start
 *   (its start's spawn fails with REKI_ESHUTDOWN).
 * Thread-safety: not concurrent with any other call on rt, and never from an
 * actor callback or a worker thread of rt.  Callbacks that run meanwhile may
 * still call into rt: spawns then fail with REKI_ESHUTDOWN.
 * Ordering: everything every actor did happens-before reki_rt_free returns.
 * Lifetime: rt and every pid, registry and inbox of it are gone.  NULL is a no-op.
 */
REKI_API void reki_rt_free(reki_rt_t *rt);

/* --------------------------------------------------------------- actors -- */

/* A pid is a value handle.  0 is never a pid, and a pid is never reused within
 * one runtime's life, so a stale pid is always safe to pass: it is just dead.
 * A pid names an actor of the runtime that spawned it; passed to another
 * runtime's calls it is dead there too, as long as the two runtimes are among
 * any 255 created one after another in the process (the pid carries an 8-bit
 * runtime tag that repeats after that). */
typedef uint64_t reki_pid_t;

typedef enum reki_next {
    REKI_CONTINUE = 0,
    REKI_STOP = 1, /* normal exit */
    REKI_CRASH = 2 /* abnormal exit (any other value is treated as REKI_CRASH) */
} reki_next_t;

/* Exit reasons, passed to terminate and to monitors. */
enum {
    REKI_EXIT_NORMAL = 0,   /* handle returned REKI_STOP */
    REKI_EXIT_ABNORMAL = 1, /* handle returned REKI_CRASH */
    REKI_EXIT_KILLED = 2,   /* reki_kill */
    REKI_EXIT_SHUTDOWN = 3, /* reki_stop, reki_registry_free, reki_rt_free */
    REKI_EXIT_IDLE = 4      /* passivated after its registry's idle_ms */
};

typedef struct reki_behavior {
    /* Optional.  Runs on the spawning thread, inside reki_spawn, before any
     * message is handled; messages sent to self meanwhile wait in the mailbox.
     * Returns 0, or a negative code that reki_spawn returns (the actor never
     * lives: terminate is not called, queued messages go to drop).  A positive
     * return is treated as 0.  *state starts as arg. */
    int (*init)(reki_pid_t self, void *arg, void **state);
    /* Required.  One message at a time, never two calls of one actor at once. */
    reki_next_t (*handle)(void *state, void *msg, reki_pid_t self);
    /* Optional.  Called exactly once after the actor has exited, after every
     * queued message has gone to drop and before its monitors fire. */
    void (*terminate)(void *state, int reason);
    /* Optional.  Each message sent successfully but never handled: the ones
     * queued at the exit go to drop before terminate, on the actor's thread; a
     * send that raced with the exit may reach drop later, on another thread
     * (liburcu's call_rcu thread).  Must not block long or call reki_rt_free. */
    void (*drop)(void *msg);
} reki_behavior_t;

/* reki_spawn_opts_t.flags */
#define REKI_SPAWN_DEDICATED 0x1u /* run on a thread of its own: handle may block */

typedef struct reki_spawn_opts {
    unsigned flags;
    /* 0 = unbounded.  Otherwise reki_send to an actor with that many
     * messages queued (not yet taken by handle) returns REKI_EFULL and leaves
     * msg with the caller. */
    uint32_t max_queue;
} reki_spawn_opts_t;

/*
 * reki_spawn: start an actor.  The behavior is copied; arg is handed to init
 * (or becomes the state when init is NULL).
 * Returns: REKI_OK and *out; REKI_EINVAL (rt, b, b->handle or out NULL, unknown
 *   flags); REKI_ENOMEM; REKI_EAGAIN (dedicated thread not created);
 *   REKI_ESHUTDOWN (reki_rt_free has begun); or init's own negative code.
 * Thread-safety: MT-safe.
 * Ordering: everything before reki_spawn happens-before init and every handle.
 * Lifetime: on error nothing is left and arg still belongs to the caller.
 */
REKI_API int reki_spawn(reki_rt_t *rt, const reki_behavior_t *b, void *arg,
                        const reki_spawn_opts_t *opts, reki_pid_t *out);

/*
 * reki_send: queue msg for the actor or inbox `to`.
 * Returns: REKI_OK: the actor owns msg: it will be handled, or handed to drop if
 *   the actor exits first.  REKI_EDEAD: `to` is not alive (stale, zero or never
 *   a pid); msg was not taken and is still the caller's.  REKI_EFULL: the
 *   actor's mailbox holds its max_queue messages; msg was not taken.
 *   REKI_ENOMEM: msg was not taken.  REKI_EINVAL: rt NULL.
 * Thread-safety: MT-safe, wait-free apart from allocation.
 * Ordering: messages from one sender to one actor are handled in send order;
 *   everything the sender did before reki_send happens-before the handle call.
 */
REKI_API int reki_send(reki_rt_t *rt, reki_pid_t to, void *msg);

/*
 * reki_kill: make the actor exit with REKI_EXIT_KILLED.  The exit takes effect
 * before reki_kill returns (reki_alive is false, sends fail); terminate runs
 * afterwards on the actor's own thread, once any running handle has returned.
 * Returns: REKI_OK; REKI_EDEAD if not alive; REKI_EINVAL (rt NULL).
 * Thread-safety: MT-safe, also on itself from inside handle.
 */
REKI_API int reki_kill(reki_rt_t *rt, reki_pid_t pid);

/*
 * reki_alive: whether pid is a live actor or inbox of rt.  Takes no lock and
 * writes no shared memory.  False for rt NULL.
 */
REKI_API bool reki_alive(reki_rt_t *rt, reki_pid_t pid);

/*
 * reki_mailbox_len: messages queued for pid and not yet taken by its handle
 * (or its inbox's receiver).  Exact when no send or handle runs concurrently;
 * 0 for a dead pid or rt NULL.  O(1), takes no lock.  MT-safe.
 */
REKI_API size_t reki_mailbox_len(reki_rt_t *rt, reki_pid_t pid);

typedef void (*reki_down_fn)(reki_pid_t pid, int reason, void *arg);

/*
 * reki_monitor: have fn(pid, reason, arg) called exactly once, after the actor
 * has exited and its terminate has returned (from the thread that ran the exit).
 * Returns: REKI_OK; REKI_EDEAD (not alive: fn is never called); REKI_ENOMEM;
 *   REKI_EINVAL (rt or fn NULL).
 * Thread-safety: MT-safe.  fn must not call reki_rt_free.
 */
REKI_API int reki_monitor(reki_rt_t *rt, reki_pid_t pid, reki_down_fn fn, void *arg);

/* A monitor that can be cancelled (reki_monitor_ex, reki_demonitor). */
typedef struct reki_monitor_ref {
    reki_pid_t pid;
    uint64_t id; /* unique within the runtime; 0 is never a monitor */
} reki_monitor_ref_t;

/*
 * reki_monitor_ex: reki_monitor, and *out names the monitor for
 * reki_demonitor.  Returns and thread-safety as reki_monitor's; *out is set
 * only on REKI_OK.
 */
REKI_API int reki_monitor_ex(reki_rt_t *rt, reki_pid_t pid, reki_down_fn fn, void *arg,
                             reki_monitor_ref_t *out);

/*
 * reki_demonitor: cancel a monitor before it fires.
 * Returns: REKI_OK: removed; its fn will never run (its arg is the caller's
 *   again).  REKI_ENOTFOUND: it has fired, is firing (the actor has exited),
 *   or was cancelled already.  REKI_EINVAL (rt or ref NULL).
 * Thread-safety: MT-safe, also from inside the monitored actor or from fn of
 *   another monitor.  O(monitors of that actor).
 */
REKI_API int reki_demonitor(reki_rt_t *rt, const reki_monitor_ref_t *ref);

/* ---------------------------------------------------------------- timers -- */

typedef uint64_t reki_timer_t; /* 0 is never a timer; a timer id is never reused in a runtime */

/*
 * reki_send_after: queue msg to `to` (an actor or an inbox) no earlier than
 * ms milliseconds from now.  *out (may be NULL) names the timer for
 * reki_timer_cancel; ms == 0 is reki_send (and *out is 0).
 * Returns: REKI_OK: the target owns msg, as after reki_send: it is queued when
 *   due (1 ms resolution; late by the time a busy machine takes to run the
 *   timer thread), or handed to the target's drop if the target exits first
 *   (its exit path cancels its pending timers, before terminate runs).  A
 *   timer that falls due while the mailbox is full is still delivered: the
 *   bound applies at arming only when ms == 0.
 *   REKI_EDEAD: `to` is not alive (or is a reki_call's reply address); msg is
 *   still the caller's.  REKI_EFULL: ms == 0 to a full mailbox (msg is the
 *   caller's).  REKI_ESHUTDOWN: reki_rt_free has begun.  REKI_ENOMEM.
 *   REKI_EINVAL (rt NULL).
 * Cost: O(1); one node of 48 bytes; no system call, except that arming a
 *   timer due before the timer thread's next wake-up (the thread sleeps when
 *   no timer is pending, and between 64 ms cascades while only timers longer
 *   than that wait) makes one futex wake, and the arming that first needs a
 *   new chunk of nodes maps it (a chunk per doubling of the most timers ever
 *   pending at once).
 * Thread-safety: MT-safe, also from handle, terminate, drop and monitors.
 * Each runtime has one timer thread; it runs no user code but drop is never
 * called by it (a timer's message is queued, and dropped by the target's
 * exit path or by reki_timer_cancel's caller).
 */
REKI_API int reki_send_after(reki_rt_t *rt, reki_pid_t to, void *msg, uint32_t ms,
                             reki_timer_t *out);

/*
 * reki_timer_cancel: stop a pending timer.
 * Returns: REKI_OK: it had not fired and never will; its message is returned
 *   in *msg, or if msg is NULL handed to the target's drop (the actor's drop,
 *   or the inbox's; discarded if none) on this thread.
 *   REKI_ENOTFOUND: it fired, was cancelled, or its target exited (the message
 *   was or will be handled or dropped).  REKI_EINVAL: rt NULL, t 0, or t never
 *   an id of this runtime.
 * Thread-safety: MT-safe; O(1), no system call.
 */
REKI_API int reki_timer_cancel(reki_rt_t *rt, reki_timer_t t, void **msg);

/* ------------------------------------------------------ request and reply -- */

/*
 * reki_call: send msg to `to` as a call and wait for its reply (gen_server:call).
 * timeout_ms: -1 waits forever.
 * Returns: REKI_OK: *reply is the reply, now the caller's.
 *   REKI_EDEAD: `to` is not alive (msg is still the caller's), or it exited
 *   before replying (msg was handled or dropped by it), or the caller's reply
 *   address was killed (reki_kill on reki_caller's pid, or reki_rt_free).
 *   REKI_ETIMEDOUT: no reply in time; a later reply is refused (reki_reply
 *   returns REKI_EDEAD and the reply stays the replier's).
 *   REKI_EDEADLK: `to` is the calling actor itself (msg is the caller's).
 *   REKI_EFULL: `to`'s mailbox is at its bound (msg is the caller's).
 *   REKI_ENOMEM (msg is the caller's); REKI_EINVAL (rt or reply NULL,
 *   timeout_ms < -1; nothing is written).
 * On every other failure *reply tells who owns msg: msg itself if it was
 *   never taken (still the caller's), NULL if `to` took it (REKI_ETIMEDOUT,
 *   or REKI_EDEAD after the send: it was or will be handled or dropped).
 * From a plain thread or a dedicated actor it blocks that thread.  From a
 * light actor's handle it is allowed and occupies the worker while it waits
 * (other actors run on the other workers): prefer reki_send with a reply by
 * message there, and never call an actor that may call back.
 * Each call gets a reply address of its own: a pid, alive while the call
 * waits, that refuses reki_send and that reki_monitor can watch.
 * Thread-safety: MT-safe.
 */
REKI_API int reki_call(reki_rt_t *rt, reki_pid_t to, void *msg, int timeout_ms, void **reply);

/*
 * reki_caller: inside handle, the pid to reply to if the message being
 * handled came by reki_call, else 0.  It may be kept and used later (a
 * deferred reply), from any thread.  After reki_inbox_recv, the caller of
 * the message received (an inbox can answer calls too); 0 elsewhere.
 * Thread-safety: reads this thread's state only.
 */
REKI_API reki_pid_t reki_caller(void);

/*
 * reki_reply: answer a call.
 * Returns: REKI_OK: the waiting reki_call returns reply (now its caller's).
 *   REKI_EDEAD: the caller no longer waits (it timed out, its target exited,
 *   or a reply was already given) or caller is not a reply address; reply is
 *   still the replier's.  REKI_EINVAL (rt NULL, caller 0).
 * Thread-safety: MT-safe; exactly one of several replies to one call wins.
 */
REKI_API int reki_reply(reki_rt_t *rt, reki_pid_t caller, void *reply);

/* --------------------------------------------------------------- inboxes -- */

/* A mailbox for a plain (non-actor) thread, like a Gleam Subject made in main. */
typedef struct reki_inbox reki_inbox_t;

typedef struct reki_inbox_opts {
    void (*drop)(void *msg); /* optional: unreceived messages at reki_inbox_free */
} reki_inbox_opts_t;

/*
 * reki_inbox_new / reki_inbox_new_ex: create an inbox with a fresh pid.
 * Returns: REKI_OK and *out; REKI_EINVAL; REKI_ENOMEM; REKI_ESHUTDOWN.
 * Thread-safety: MT-safe.  Lifetime: free with reki_inbox_free.
 */
REKI_API int reki_inbox_new(reki_rt_t *rt, reki_inbox_t **out);
REKI_API int reki_inbox_new_ex(reki_rt_t *rt, const reki_inbox_opts_t *opts, reki_inbox_t **out);

/* reki_inbox_pid: the inbox's pid (0 for NULL).  MT-safe. */
REKI_API reki_pid_t reki_inbox_pid(const reki_inbox_t *in);

/*
 * reki_inbox_set_drop: set the drop function used by reki_inbox_free.
 * Returns: REKI_OK; REKI_EINVAL (in NULL).
 * Thread-safety: only from the inbox's receiving thread.
 */
REKI_API int reki_inbox_set_drop(reki_inbox_t *in, void (*drop)(void *msg));

/*
 * reki_inbox_recv: take the next message, waiting up to timeout_ms
 * (-1 = forever, 0 = do not wait).
 * Returns: REKI_OK and *msg; REKI_ETIMEDOUT; REKI_EDEAD once the inbox's pid
 *   is dead (killed, stopped) and every message accepted before has been
 *   received (a receiver waiting then wakes with it); REKI_EINVAL (in or msg
 *   NULL, timeout_ms < -1).
 * Thread-safety: one receiving thread per inbox at a time.  The first
 *   REKI_EDEAD waits for one RCU grace period (senders that saw the pid alive
 *   finish their enqueue), so it may not be called inside a callback of
 *   another library that holds an RCU read-side section of liburcu-bp.
 * Ordering: like reki_send's; the sender's prior writes are visible.
 */
REKI_API int reki_inbox_recv(reki_inbox_t *in, void **msg, int timeout_ms);

/*
 * reki_inbox_fd: a file descriptor that polls readable (poll, epoll, libuv)
 * while the inbox may hold messages, or once its pid is dead: an event loop
 * waits on it, then calls reki_inbox_recv(in, &m, 0) until REKI_ETIMEDOUT,
 * after which the fd stays unreadable until a new message (or the death)
 * arrives.  A sender makes a system call only to wake a receiver that has
 * drained the inbox, at most once per drain.  The fd is an eventfd owned by
 * the inbox: do not read, write or close it; reki_inbox_free closes it once
 * no late sender can touch it (after an RCU grace period).
 * Returns: the fd (>= 0; the same one on every call); REKI_EINVAL (in NULL);
 *   REKI_ENOMEM (no descriptor could be created).
 * Thread-safety: call it from the inbox's receiving thread.
 */
REKI_API int reki_inbox_fd(reki_inbox_t *in);

/*
 * If the inbox's pid is killed (reki_kill, reki_stop, reki_rt_free) the
 * messages accepted before still arrive; after them reki_inbox_recv returns
 * REKI_EDEAD, since nothing new can come.
 *
 * reki_inbox_free: the pid dies (sends fail from now on), unreceived messages
 * go to the drop function (if any; otherwise they are discarded and remain the
 * caller's memory), monitors fire, and the inbox is freed.  NULL is a no-op.
 */
REKI_API void reki_inbox_free(reki_inbox_t *in);

/* -------------------------------------------------------------- registry -- */

typedef struct reki_registry reki_registry_t;

/* A start function: 0 (or any value >= 0) and *out = a live pid, or a negative
 * error that reki_lookup_or_start returns to its caller and to its waiters. */
typedef int (*reki_start_fn)(reki_rt_t *rt, const void *key, size_t keylen, void *arg,
                             reki_pid_t *out);

/* Restart policies (reki_registry_opts_t.restart), as in OTP. */
enum {
    REKI_RESTART_TEMPORARY = 0, /* never restarted */
    REKI_RESTART_TRANSIENT = 1, /* restarted after REKI_EXIT_ABNORMAL */
    REKI_RESTART_PERMANENT = 2  /* restarted after REKI_EXIT_NORMAL or ABNORMAL */
};

/* Events (reki_registry_opts_t.on_event). */
enum {
    REKI_EVENT_STARTED = 1,      /* detail 0: pid now registered under key */
    REKI_EVENT_EXITED = 2,       /* detail = exit reason; after terminate returned */
    REKI_EVENT_START_FAILED = 3, /* detail = start's error (or REKI_EDEAD); pid 0 */
    REKI_EVENT_GAVE_UP = 4       /* detail = restarts counted; pid = the last actor */
};

/*
 * Registry options.  A zeroed struct (or NULL) is a plain registry: no start
 * of its own, no passivation, no restarts.  Fields after capacity make it a
 * registry of virtual actors (reki_send_key): see below and docs/design.md.
 */
typedef struct reki_registry_opts {
    size_t capacity;            /* expected number of keys (a hint); 0 = 64; at most
                        REKI_REGISTRY_CAPACITY_MAX, else REKI_EINVAL */
    reki_start_fn start;        /* the registry's start (reki_send_key, restarts,
                            leftovers); NULL: reki_send_key is REKI_EINVAL */
    void *start_arg;            /* its arg */
    uint32_t idle_ms;           /* 0 = never.  An actor registered here (by any start)
                            that has handled no message and had none queued
                            for idle_ms exits with REKI_EXIT_IDLE: it is
                            checked every idle_ms / 2 (rounded up), so it exits
                            between idle_ms and 1.5 x idle_ms (plus a tick)
                            after its last handle.  An actor registered in
                            several such registries keeps the first one's.  A handle still running is
                            activity; pending timers are not (they end with the
                            actor, to its drop).  Inboxes never idle. */
    int restart;                /* REKI_RESTART_*; other values: REKI_EINVAL.  Never
                            after KILLED, SHUTDOWN, IDLE or reki_stop.  Needs
                            start (else REKI_EINVAL unless TEMPORARY). */
    uint32_t max_restarts;      /* intensity: more than max_restarts restarts of */
    uint32_t restart_period_ms; /* one key within the period and the key is given
                                   up.  0 = default: 3, 5000 ms.  The period is a
                                   window that opens at the first restart counted
                                   in it; the count starts over whenever the key
                                   is left with no actor and nothing queued. */
    void (*drop)(void *msg);    /* messages by key that no actor of the key can take;
                                NULL: such messages are discarded (they remain
                                the caller's memory) */
    void (*on_event)(const void *key, size_t keylen, reki_pid_t pid, int event, int detail,
                     void *arg); /* optional; REKI_EVENT_*, see reki_send_key */
    void *event_arg;
} reki_registry_opts_t;

/* The largest capacity hint reki_registry_new accepts: the most actors one
 * runtime can hold (2^26). */
#define REKI_REGISTRY_CAPACITY_MAX ((size_t)1 << 26)

/*
 * reki_registry_new: create an empty registry of actors of rt.
 * Returns: REKI_OK and *out; REKI_EINVAL (rt or out NULL, capacity over
 *   REKI_REGISTRY_CAPACITY_MAX, an unknown restart policy, a restart policy
 *   other than TEMPORARY without start); REKI_ENOMEM; REKI_ESHUTDOWN;
 *   REKI_EAGAIN (a registry with start makes its first start thread here,
 *   and the thread could not be made).
 * Keys are hashed with SipHash-1-3 under a random key of this registry (from
 *   getrandom), so clients that choose keys cannot make them collide.
 * Thread-safety: MT-safe.  Lifetime: free with reki_registry_free (or rt_free).
 */
REKI_API int reki_registry_new(reki_rt_t *rt, const reki_registry_opts_t *opts,
                               reki_registry_t **out);

/*
 * reki_registry_free: stop every actor registered in reg (reason
 * REKI_EXIT_SHUTDOWN), wait until each has terminated, free everything.
 * Thread-safety: not concurrent with other calls on reg, and never from an
 * actor callback: it waits for actors whose exit may need the calling worker.
 * NULL is a no-op.
 */
REKI_API void reki_registry_free(reki_registry_t *reg);

/*
 * reki_lookup: the live actor registered under key.
 * Returns: REKI_OK and *out; REKI_ENOTFOUND (none, starting, or exiting);
 *   REKI_EINVAL (reg, key or out NULL, keylen 0 or > REKI_KEY_MAX).
 * Thread-safety: MT-safe.  Takes no lock, makes no system call, does no atomic
 *   read-modify-write and writes no memory shared with other threads.
 * Ordering: linearizes at its read of the entry and of the pid's liveness; a
 *   pid whose exit happened before the call began is never returned.  The
 *   start that registered the pid happens-before a successful return.
 */
REKI_API int reki_lookup(reki_registry_t *reg, const void *key, size_t keylen, reki_pid_t *out);

/*
 * reki_lookup_or_start: the live actor under key, starting one with
 * start(rt, key, keylen, arg, &pid) if there is none.
 * Returns: REKI_OK: a live actor was already registered (or a concurrent start
 *   registered one while this call waited); REKI_STARTED: this call ran start
 *   and registered its pid; REKI_ETIMEDOUT: waited timeout_ms (-1 = forever) for
 *   another caller's start, or for the previous actor of the key to finish
 *   terminating (the other start goes on); REKI_EDEADLK: called from inside a
 *   start function for the key that start is starting; REKI_EDEAD: start
 *   returned a pid that was not alive (an actor that has exited but is still
 *   terminating is not alive, and its terminate may overlap the next start);
 *   start's own negative code (shared with
 *   the callers that waited on it); REKI_ENOMEM; REKI_ESHUTDOWN;
 *   REKI_EINVAL (reg, key, start or out NULL, bad keylen, timeout_ms < -1).
 * Thread-safety: MT-safe.  On a live key it is as cheap as reki_lookup (no
 *   lock, no read-modify-write).  start runs on the calling thread with no
 *   lock held; other keys are never delayed by it.  From a light actor's
 *   callback, a wait for another actor's start or exit may need a worker
 *   thread: if every worker could be waiting that way at once, pass a timeout
 *   or spawn the caller with REKI_SPAWN_DEDICATED.  An actor calling it for
 *   its own key while that key's actor (itself) is exiting gets REKI_EDEADLK.
 * Ordering: the start that produced the returned pid happens-before return.
 *   A new actor is started for a key only after the previous actor's terminate
 *   has returned.
 * Lifetime: on any error the key is left unregistered, as before the call.
 */
REKI_API int reki_lookup_or_start(reki_registry_t *reg, const void *key, size_t keylen,
                                  reki_start_fn start, void *arg, int timeout_ms, reki_pid_t *out);

/*
 * reki_stop: stop the actor under key (reason REKI_EXIT_SHUTDOWN) and remove
 * the key.  The exit takes effect before return (lookups miss it); terminate
 * runs on the actor's own thread, and a later reki_lookup_or_start of the key
 * waits for it before starting anew.
 * Returns: REKI_OK; REKI_ENOTFOUND (no live actor under key); REKI_EINVAL.
 * Thread-safety: MT-safe, also from inside the actor's own handle.
 */
REKI_API int reki_stop(reki_registry_t *reg, const void *key, size_t keylen);

/* reki_count: live registered actors, O(1).  0 for NULL.  MT-safe. */
REKI_API size_t reki_count(const reki_registry_t *reg);

/* What a registry's index holds (reki_registry_stats). */
typedef struct reki_registry_stats {
    size_t live;       /* live registered actors (reki_count) */
    size_t entries;    /* entries in the index: live, starting, exiting, and
                          free ones kept so that their keys restart with one
                          CAS; the reaper keeps these within a budget */
    size_t capacity;   /* slots of the index's current hash map */
    uint64_t reaped;   /* entries the reaper has unlinked so far */
    uint64_t rebuilds; /* incremental rebuilds of the index completed */
} reki_registry_stats_t;

/*
 * reki_registry_stats: a snapshot of reg's index, for monitoring and tests.
 * Returns: REKI_OK and *out; REKI_EINVAL (reg or out NULL).
 * Thread-safety: MT-safe; the fields are read one by one, without a lock, so
 *   under concurrent changes they need not agree with each other exactly.
 */
REKI_API int reki_registry_stats(const reki_registry_t *reg, reki_registry_stats_t *out);

/*
 * reki_foreach: call fn(key, keylen, pid, arg) for each live entry, each at
 * most once, safe during concurrent changes (entries added meanwhile may or
 * may not be visited).  fn returning nonzero stops the walk.
 * Returns: that nonzero value, or REKI_OK; REKI_ENOMEM (snapshot); REKI_EINVAL.
 * Thread-safety: MT-safe.  fn may call any reki function except the *_free
 *   ones, and may block: it runs outside every RCU read-side section, so a
 *   blocked fn delays nothing else in the process.  While any walk of reg
 *   runs, reg's reaper unlinks nothing (free entries then accumulate).
 * Lifetime: key is valid only during the fn call.
 */
REKI_API int reki_foreach(reki_registry_t *reg,
                          int (*fn)(const void *key, size_t keylen, reki_pid_t pid, void *arg),
                          void *arg);

/* ------------------------------------------------------- virtual actors -- */

/*
 * reki_send_key: deliver msg to the actor under key, starting one with the
 * registry's start if there is none.
 *
 * Never waits for a start or an exit: while the key's actor is starting,
 * restarting or exiting, msg is queued for the key (the key's queue) and
 * handed to the actor that comes next.  Starts (and restarts) for
 * reki_send_key run on the registry's start threads (one per CPU made as
 * needed; more, up to 16, once every one has been stuck in a start for a
 * millisecond; all kept until reki_registry_free): a slow start delays
 * neither its sender nor, by more than about a millisecond, other keys,
 * unless 16 starts block at once.
 *
 * Nothing is lost: a message accepted (REKI_OK) is handled exactly once by
 * one of the key's actors, messages from one sender in the order sent,
 * across any number of the key's actors stopping (REKI_STOP, REKI_CRASH,
 * idle_ms) and starting.  What an actor left unhandled in its mailbox at its
 * exit goes to the next actor of the key before newer messages; if no
 * restart policy or new message brings that actor, the registry starts it at
 * once for them.  The key's queue is unbounded; its messages go into the new
 * actor's mailbox, past any max_queue bound, before the actor is registered.
 * Only when the key cannot be started (start failed, intensity exceeded), the
 * registry or runtime is freed, or reki_stop / reki_kill ended the actor
 * (then the messages it left in its mailbox) do messages by key go to the
 * registry's drop, each once.  Messages queued for the key while such an
 * actor was exiting go to a new actor.
 *
 * Returns: REKI_OK (also when the start then fails: the message goes to the
 *   registry's drop); REKI_EINVAL (reg or key NULL, bad keylen, the registry
 *   has no start); REKI_ENOMEM; REKI_EFULL (the live actor's mailbox is at
 *   its bound; msg is still the caller's); REKI_ESHUTDOWN.
 * An inbox registered under key receives msg as from reki_send (its drop
 *   gets what it never received).  Messages sent by pid keep their semantics:
 *   dropped with the actor at its exit.
 * Thread-safety: MT-safe; takes no lock on a live key (one hash probe and a
 *   send).  From inside start for the same key it queues (no deadlock).
 */
REKI_API int reki_send_key(reki_registry_t *reg, const void *key, size_t keylen, void *msg);

/*
 * reki_await: wait until a live actor is registered under key, without
 * starting one.
 * Returns: REKI_OK and *out; REKI_ETIMEDOUT (timeout_ms, -1 = forever, 0 =
 *   just look); REKI_ESHUTDOWN (the registry is being freed); REKI_EINVAL;
 *   REKI_EDEADLK (called from the start that is starting this key).
 * Thread-safety: MT-safe; blocks the calling thread (from a light actor it
 *   occupies the worker, like reki_call).
 */
REKI_API int reki_await(reki_registry_t *reg, const void *key, size_t keylen, int timeout_ms,
                        reki_pid_t *out);

/*
 * Events, delivered to on_event synchronously on the thread where they
 * happen, each exactly once, for every actor registered in the registry
 * however it was started (reki_send_key, reki_lookup_or_start, a restart),
 * all before reki_registry_free returns:
 *   STARTED       on the starting thread, after the pid is registered; the
 *                 actor's EXITED event waits for it, so STARTED comes first;
 *   EXITED        on the actor's own thread, after terminate returned and
 *                 before the key can start again;
 *   START_FAILED  on the starting thread (start's error, or REKI_EDEAD if it
 *                 returned a dead pid);
 *   GAVE_UP       on the exiting actor's thread, after its EXITED.
 * The callback must not block (reki_await on its own key would) and must not
 * call *_free.  reki_send_key is fine; reki_lookup_or_start of the event's
 * own key from EXITED or START_FAILED returns REKI_EDEADLK.
 */

#ifdef __cplusplus
}
#endif

#endif /* REKI_REKI_H */
