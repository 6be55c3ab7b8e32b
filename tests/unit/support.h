/*
 * Shared fixtures of the unit tests: scaling knobs, bounded waits, a probe
 * that counts what callbacks saw, a counter actor and a registry start
 * function built on it.
 *
 * Callbacks run on the library's threads, where a Criterion assertion would
 * unwind the wrong stack; they record what they see in a probe instead, and
 * the test thread asserts on the probe.
 */
#ifndef REKI_TEST_SUPPORT_H
#define REKI_TEST_SUPPORT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reki/reki.h"

/* ------------------------------------------------------------ knobs -- */

/* REKI_TEST_SCALE (default 1): multiplies iteration counts, so that runs
 * under valgrind can use e.g. 0.05.  scaled() never goes below `floor`. */
double t_scale(void);
long t_scaled(long n, long floor);
/* REKI_TEST_SETTLE_MS (default 200): how long a test lets other threads
 * reach a blocking call it cannot observe directly. */
int t_settle_ms(void);
/* REKI_TEST_WAIT_MS (default 60000): upper bound of any wait for an
 * asynchronous event; hitting it is a failure, never a measurement. */
int t_wait_ms(void);

void t_sleep_ms(int ms);
uint64_t t_now_ms(void);

/* Polls `expr` until it holds or t_wait_ms() ran out, and stores its final
 * value in the bool lvalue `ok`.  Yields first, then sleeps 1 ms a poll. */
#define T_WAIT_UNTIL(ok, expr)                                     \
    do {                                                           \
        uint64_t t_deadline_ = t_now_ms() + (uint64_t)t_wait_ms(); \
        unsigned t_polls_ = 0;                                     \
        while (!((ok) = (expr)) && t_now_ms() < t_deadline_)       \
            t_backoff(&t_polls_);                                  \
    } while (0)

/* One poll's pause: sched_yield for the first polls, then 1 ms sleeps. */
void t_backoff(unsigned *polls);

/* ------------------------------------------------------------ probe -- */

struct probe {
    atomic_long inits;
    atomic_long terminates;
    atomic_long reasons[5];  /* terminates per REKI_EXIT_* */
    atomic_long bad_reasons; /* terminates or downs with a reason outside 0..4 */
    atomic_long handled;
    atomic_long dropped;
    atomic_long downs; /* monitor calls */
    atomic_long down_reasons[5];
    atomic_long violations; /* anything a callback found wrong */
};

void probe_reset(struct probe *p);
void probe_note_reason(atomic_long *by_reason, struct probe *p, int reason);

/* Atomic loads as functions: assertion messages then show `t_ldl(&p.x)`
 * instead of the expansion of atomic_load. */
long t_ldl(atomic_long *a);
int t_ldi(atomic_int *a);

/* ---------------------------------------------------- test messages -- */

enum tmsg_kind {
    T_INCR,         /* state += value */
    T_GET,          /* reply the state (a malloc'd long) to msg->reply */
    T_STOP,         /* handle returns REKI_STOP */
    T_CRASH,        /* handle returns REKI_CRASH */
    T_ODD,          /* handle returns 7, which must count as a crash */
    T_KILL_SELF,    /* reki_kill on self from inside handle */
    T_GATE,         /* spin until *msg->gate != 0 (dedicated actors only) */
    T_KILL_REENTER, /* reki_kill on self, then reki_lookup_or_start of the
                       actor's reenter_key; the result goes to *reenter_rc */
    T_SEQ           /* per-sender order check: value = sender << 32 | seq */
};

struct tmsg {
    int kind;
    long value;
    reki_pid_t reply;
    atomic_int *gate;
};

/* Allocates and sends a message; frees it when the send was refused.
 * Returns reki_send's code. */
int t_send(reki_rt_t *rt, reki_pid_t to, int kind, long value);
int t_send_gate(reki_rt_t *rt, reki_pid_t to, atomic_int *gate);
/* Drop callback of test messages: counts into the probe of the global
 * drop sink (messages carry no probe) and frees. */
void t_drop(void *msg);
/* Drops count into this probe; NULL = only free. */
void t_set_drop_probe(struct probe *p);

/* The per-test fixture most suites share: resets *p and makes it the drop
 * probe, then creates *rt (default options) and, when reg is not NULL, *reg
 * in it.  Returns REKI_OK or the first error.  t_fixture_down frees whichever
 * is still set: a test that frees one itself sets it to NULL. */
int t_fixture_up(struct probe *p, reki_rt_t **rt, reki_registry_t **reg);
void t_fixture_down(reki_rt_t **rt, reki_registry_t **reg);

/* ---------------------------------------------------- counter actor -- */

struct counter_args {
    reki_rt_t *rt;
    struct probe *probe;
    long initial;
    int init_error;             /* init returns this when nonzero */
    atomic_int *exclusive;      /* init claims it 0->1, terminate releases it */
    int terminate_sleep_ms;     /* widens the terminate window of guarantee 1 */
    atomic_int *terminated;     /* set to 1 at the very end of terminate */
    atomic_int *terminate_gate; /* terminate waits until *terminate_gate != 0 */
    /* Re-entry: reki_lookup_or_start(reenter_reg, reenter_key) (the actor's
     * own key) from inside the actor, result in *reenter_rc: from terminate
     * when reenter_in_terminate, from handle on T_KILL_REENTER. */
    reki_registry_t *reenter_reg;
    const char *reenter_key;
    atomic_int *reenter_rc;
    bool reenter_in_terminate;
    long seq_senders; /* T_SEQ: number of senders checked (<= 64) */
};

extern const reki_behavior_t t_counter;

/* Spawns a counter with a zero initial value. */
int t_counter_spawn(reki_rt_t *rt, struct probe *p, unsigned flags, reki_pid_t *out);
int t_counter_spawn_args(const struct counter_args *a, unsigned flags, reki_pid_t *out);

/* Asks a counter (light or not) for its value through `in`; -1 when the
 * send failed, -2 when no reply arrived within t_wait_ms(). */
long t_counter_get(reki_rt_t *rt, reki_pid_t pid, reki_inbox_t *in);

/* An inbox whose unreceived messages are freed at reki_inbox_free. */
reki_inbox_t *t_inbox(reki_rt_t *rt);

/* --------------------------------------------------- start function -- */

struct start_ctx {
    struct counter_args actor; /* what each started actor gets */
    atomic_long starts;        /* start calls */
    atomic_long running;       /* start calls in progress */
    atomic_long overlaps;      /* a start began while another one ran */
    int fail_code;             /* start returns this when nonzero */
    int dead_pid;              /* start spawns, kills and returns the dead pid */
    atomic_int *hold;          /* start waits until *hold == 0 */
    atomic_int entered;        /* set when start has begun */
};

void start_ctx_init(struct start_ctx *s, reki_rt_t *rt, struct probe *p);
int t_start(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out);

/* A reki_lookup_or_start run on a thread of its own. */
struct los_call {
    reki_registry_t *reg;
    const void *key;
    size_t keylen;
    reki_start_fn start;
    void *arg;
    int timeout_ms;
    atomic_int *go;     /* optional: the call waits until *go != 0 */
    atomic_int calling; /* set just before the call */
    atomic_int done;    /* set just after it */
    int rc;
    reki_pid_t pid;
    pthread_t thread;
};

void t_los_spawn(struct los_call *c);
/* Joins the thread; afterwards rc and pid may be read. */
void t_los_join(struct los_call *c);

/* ----------------------------------------------------------- misc -- */

/* A monitor that counts into a probe (arg = struct probe *). */
void t_down(reki_pid_t pid, int reason, void *arg);

/* Spin-waits (with 1 ms sleeps) on an atomic flag, bounded by t_wait_ms().
 * Returns whether the flag became nonzero. */
bool t_wait_flag(atomic_int *flag);

/* Key text of integer i, e.g. "key-17"; returns its length. */
size_t t_key(char *buf, size_t cap, long i);

/* Runs fn(arg_i) on n threads and joins them; args is an array of n
 * elements of `size` bytes. */
void t_run_threads(int n, void *(*fn)(void *), void *args, size_t size);

#endif
