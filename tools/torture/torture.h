/*
 * reki-torture: random operations from many threads on a small key set,
 * checking the registry guarantees of api.md as it runs and at the end.
 *
 * The checks rest on state the tool keeps beside the library:
 *  - per key, a live counter that an actor's init increments and its
 *    terminate decrements: init finding it non-zero means two live actors
 *    under one key (guarantee 1);
 *  - a set of exited pids, each stamped from a global clock when its exit
 *    was observed (reki_kill returned, terminate ran): an operation that read
 *    the clock before it began and returns a pid stamped earlier returned a
 *    stale pid (guarantee 4);
 *  - per message, a consumed flag flipped by handle, drop or inbox receive,
 *    and per world counters of accepted and consumed messages that must meet
 *    once everything has run (exactly-once delivery, guarantee 7);
 *  - a model of which keys are registered, compared with reki_lookup,
 *    reki_count and reki_foreach at quiescent points, when every torture
 *    thread is parked and every message has been consumed.
 *
 * Every random choice of a thread comes from its own generator seeded from
 * --seed and its index, two draws per operation whatever the results, so a
 * seed replays the same operation sequence on each thread.
 */
#ifndef REKI_TORTURE_H
#define REKI_TORTURE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reki/reki.h"

#define T_MAX_THREADS 256
#define T_RING 16 /* recently seen pids kept per thread as operation targets */

/* Error codes of the tool's own start functions and init callbacks: distinct
 * from every REKI_E* code so that a shared outcome can be recognised. */
#define T_EFAIL (-1001)
#define T_EINIT (-1002)

/* ------------------------------------------------------------------ rng -- */

static inline uint64_t t_splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Bits [lo, lo+n) of r, as a number below `mod` (mod > 0). */
static inline unsigned t_bits(uint64_t r, unsigned lo, unsigned n, unsigned mod)
{
    return (unsigned)((r >> lo) & ((1ull << n) - 1)) % mod;
}

/* ------------------------------------------------------------ exited set -- */

struct pidset;

struct pidset *pidset_new(unsigned log2_slots);
void pidset_free(struct pidset *s);
/* Stamp pid as exited now; the first stamp of a pid wins. */
void pidset_add(struct pidset *s, reki_pid_t pid);
/* The stamp of pid, or 0 if not recorded (or not yet fully recorded). */
uint64_t pidset_stamp(struct pidset *s, reki_pid_t pid);
/* Whether pid was added, even if its stamp is still being written: an add
 * that found the pid already there returns before the first one's stamp. */
bool pidset_contains(struct pidset *s, reki_pid_t pid);
/* Fraction of slots in use, in percent. */
unsigned pidset_fill(struct pidset *s);
/* Forget every entry.  Only while nothing else touches the set. */
void pidset_clear(struct pidset *s);
/* Times the set was cleared: a monitor that sees it change cannot tell. */
uint64_t pidset_generation(struct pidset *s);
uint64_t pidset_dropped(struct pidset *s);

/* The global clock read before an operation begins; stamps are below it for
 * exits that happened before. */
uint64_t t_clock_now(void);

/* ---------------------------------------------------------------- world -- */

struct keystate {
    atomic_int live;     /* counted actors of this key past init, before terminate */
    atomic_int starting; /* start functions running for this key */
    atomic_ullong cur;   /* pid of the counted actor last initialised for it */
};

struct world {
    reki_rt_t *rt;
    reki_registry_t *reg;
    unsigned nkeys;
    unsigned nthreads; /* senders tracked for FIFO checks */
    struct keystate *ks;
    unsigned char **kbytes; /* the key of each index, and its length */
    size_t *klen;
    struct pidset *exited;          /* main world only */
    atomic_ullong inits, terms;     /* counted (registered) actors */
    atomic_ullong u_inits, u_terms; /* unregistered actors */
    atomic_ullong init_fails;
    atomic_ullong accepted, handled, dropped, received;
    atomic_ullong mon_set, mon_fired;
    /* Exits asked for from inside handle (REKI_STOP, REKI_CRASH, reki_kill
     * or reki_stop on itself) and exits finished by terminate: equal once no
     * such exit is in flight. */
    atomic_ullong exits_asked, exits_done;
    /* Virtual actors (vkeys.c; main world only): every message by key is
     * handled or dropped exactly once, in per-sender order per key. */
    reki_registry_t *vreg;
    atomic_ullong vaccepted, vhandled, vdropped, vstarts;
    atomic_ullong *vlast; /* [key * nthreads + sender]: last seq handled */
};

/* Key bytes for index i of a key set: lengths 1, 2..16, 100 and REKI_KEY_MAX
 * mixed, first bytes encoding i. */
size_t key_len(unsigned i);
void key_bytes(unsigned i, unsigned char *buf);
/* The index whose key is (key, len), or -1. */
int key_index(const void *key, size_t len, unsigned nkeys);

struct world *world_new(reki_rt_t *rt, unsigned nkeys, unsigned nthreads, bool track_exits);
void world_free(struct world *w);

/* --------------------------------------------------------------- actors -- */

enum msg_kind {
    M_PLAIN,
    M_STOP,      /* handle returns REKI_STOP */
    M_CRASH,     /* handle returns REKI_CRASH */
    M_KILL_SELF, /* reki_kill on itself from inside handle */
    M_STOP_KEY,  /* reki_stop on its own key from inside handle */
    M_SLOW,      /* handle sleeps a little */
    M_LOOKUP,    /* reki_lookup and reki_lookup_or_start from inside handle */
    M_FORWARD,   /* send a fresh message to another actor from inside handle */
    M_NKINDS
};

#define T_ANON_SENDER T_MAX_THREADS /* senders whose FIFO order is not tracked */

struct msg {
    uint32_t magic;
    atomic_int consumed;
    enum msg_kind kind;
    unsigned sender;
    uint64_t seq; /* per sender, increasing */
    int key;      /* key the target was looked up under, or -1 */
    reki_pid_t to;
    struct world *w;
    uint64_t arg; /* random bits for the handle's own choices */
};

struct msg *msg_new(struct world *w, enum msg_kind kind, unsigned sender, uint64_t seq, int key,
                    reki_pid_t to, uint64_t arg);
/* Mark a message consumed (counting it under *counter) and free it. */
void msg_consume(struct msg *m, atomic_ullong *counter, const char *by);
/* Free a message that reki_send refused, checking nobody consumed it. */
void msg_refused(struct msg *m);
/* The drop function of every actor and inbox of the tool. */
void t_msg_drop(void *msg);
/* Send, counting acceptance; returns reki_send's code. */
int msg_send(struct world *w, reki_pid_t to, struct msg *m);

/* Behaviours: counted actors register under a key; loose actors never do;
 * the init of a broken actor fails with T_EINIT after sending to itself. */
extern const reki_behavior_t beh_counted;
extern const reki_behavior_t beh_loose;
extern const reki_behavior_t beh_broken;

struct spawn_arg {
    struct world *w;
    int key;        /* for counted actors */
    bool self_send; /* init sends a message to itself */
};

/* Whether this thread runs the handle of the actor started for `key` of w. */
bool t_in_own_handle(struct world *w, int key);

int spawn_counted(struct world *w, int key, bool dedicated, bool self_send, reki_pid_t *out);
int spawn_loose(struct world *w, bool dedicated, reki_pid_t *out);

/* Monitor pid with the tool's checking down function; returns reki_monitor's code. */
int monitor_pid(struct world *w, reki_pid_t pid);

/* --------------------------------------------------------------- starts -- */

enum start_mode {
    S_OK,        /* spawn a counted actor */
    S_SLOW,      /* sleep, then as S_OK */
    S_FAIL,      /* return T_EFAIL */
    S_FAIL_LATE, /* spawn a loose actor, kill it, return T_EFAIL */
    S_DEAD,      /* return the pid of a loose actor already killed */
    S_INIT_FAIL, /* spawn an actor whose init fails: return T_EINIT */
    S_REENTER,   /* lookup_or_start of its own key must give EDEADLK; then S_OK */
    S_NESTED,    /* lookup_or_start of another key with a short timeout; then S_OK */
    S_NMODES
};

struct start_ctx {
    struct world *w;
    int key;
    enum start_mode mode;
    bool dedicated;
    uint64_t bits; /* random bits for the start's own choices */
    /* filled in by the start function */
    bool ran;
    int rc;
    reki_pid_t pid;
};

int start_fn(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out);

/* Call reki_lookup_or_start with a start of the given mode and check the
 * result against the contract.  Returns the library's code; *out as the
 * library left it. */
int checked_los(struct world *w, int key, enum start_mode mode, bool dedicated, int timeout,
                uint64_t bits, reki_pid_t *out);

/* ------------------------------------------------------------ violations -- */

extern atomic_ullong t_violations;
/* --fail-allocs: library allocations fail now and then, so REKI_ENOMEM is an
 * allowed result wherever the library may allocate. */
extern bool t_oom_mode;
static inline bool t_oom(int rc)
{
    return t_oom_mode && rc == REKI_ENOMEM;
}
/* What the main thread is doing, for the violation messages. */
extern _Atomic(const char *) t_phase;
extern int t_verbose;

void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* How many violations of each kind, on stderr. */
void violation_summary(void);
/* The pid was stamped exited before `since`: report a stale pid from `what`. */
bool check_not_stale(struct world *w, reki_pid_t pid, uint64_t since, const char *what);
/* A recent stamp for pid in w's set (0 if none or if the world keeps none). */
uint64_t exited_stamp(struct world *w, reki_pid_t pid);
void note_exit(struct world *w, reki_pid_t pid);

/* Name of the thread for messages ("t3", "worker"), set by each torture thread. */
void t_set_thread_name(const char *name);
const char *t_thread_name(void);
/* The last operations of this thread, printed with its first violations. */
void t_trace(unsigned long long opno, const char *op, int key, int rc);

/* ---------------------------------------------------------------- churn -- */

/* Build a registry on the shared runtime, use it, free it, check it. */
void churn_registry(reki_rt_t *rt, unsigned nthreads, uint64_t seed);
/* Build a whole runtime with a registry, use it, free it, check it. */
void churn_runtime(unsigned nthreads, uint64_t seed);

/* ------------------------------------------------------ torture threads -- */

enum op_kind {
    OP_LOOKUP,
    OP_LOS,
    OP_SEND,
    OP_KILL,
    OP_STOP,
    OP_MONITOR,
    OP_ALIVE,
    OP_FOREACH,
    OP_COUNT,
    OP_SPAWN,
    OP_INBOX,
    OP_BADARGS,
    OP_REG_CHURN,
    OP_RT_CHURN,
    OP_SEND_KEY,
    OP_NKINDS
};

enum op_result {
    RES_OK,
    RES_STARTED,
    RES_NOTFOUND,
    RES_EDEAD,
    RES_TIMEDOUT,
    RES_TOOL,
    RES_OTHER,
    RES_N
};

struct ring_ent {
    reki_pid_t pid;
    int key; /* -1: a loose actor */
};

struct tthread {
    unsigned idx;
    uint64_t vseq; /* reki_send_key: this sender's last sequence number */
    char name[16];
    struct world *w;
    uint64_t rng;
    uint64_t seq; /* of the messages this thread sends */
    reki_inbox_t *inbox;
    uint64_t *in_last_seq;
    struct ring_ent ring[T_RING];
    unsigned ring_pos;
    unsigned long long opno;
    unsigned long long counts[OP_NKINDS][RES_N];
    unsigned long long max_ms[OP_NKINDS]; /* slowest operation of each kind */
    atomic_int cur_op;                    /* -1 between operations */
    atomic_ullong op_start_ms;
};

struct control {
    atomic_int stop;
    atomic_int pause;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned parked, done; /* under mu */
    unsigned nthreads;
    unsigned long long ops_limit; /* per thread; 0: until stop */
    bool churn;
};

extern struct control ctl;
/* The pid of each thread's inbox, 0 while it is being replaced. */
extern atomic_ullong inbox_pids[T_MAX_THREADS];

const char *op_name(int kind);
void *torture_thread(void *arg);
int tthread_init(struct tthread *t, struct world *w, unsigned idx, uint64_t seed);

/* vkeys.c */
int vkeys_init(struct world *w);
void vkeys_free(struct world *w);
int op_send_key(struct tthread *t, int k, uint64_t r1, uint64_t r2);
bool vkeys_settled(struct world *w);
void vkeys_report(struct world *w, const char *when);
/* Receive everything queued in t's inbox; t must be parked or finished. */
void inbox_drain(struct tthread *t);
void op_inbox(struct tthread *t, uint64_t r1, uint64_t r2);
void op_badargs(struct tthread *t, uint64_t r1);

/* ---------------------------------------------------------------- check -- */

/* At a quiescent point (no torture thread running an operation): wait until
 * every message is consumed and every exit has finished, then compare the
 * registry with the model.  Returns false if it never settled. */
bool quiescent_check(struct world *w, unsigned settle_ms);
/* Milliseconds since an arbitrary start. */
uint64_t t_now_ms(void);
void t_sleep_us(unsigned us);

#endif /* REKI_TORTURE_H */
