/*
 * Inboxes: mailboxes for plain threads.  Order, timeouts, wake-ups, and
 * what reki_inbox_free does with unreceived messages.
 */
#include <criterion/criterion.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "support.h"

static reki_rt_t *rt;
static struct probe p;

static void setup(void)
{
    cr_assert_eq(t_fixture_up(&p, &rt, NULL), REKI_OK);
}

static void teardown(void)
{
    t_fixture_down(&rt, NULL);
}

TestSuite(inbox, .init = setup, .fini = teardown, .timeout = 120.0);

Test(inbox, send_and_receive_in_order)
{
    reki_inbox_t *in;
    cr_assert_eq(reki_inbox_new(rt, &in), REKI_OK);
    reki_pid_t pid = reki_inbox_pid(in);
    cr_assert_neq(pid, 0);
    cr_assert(reki_alive(rt, pid));
    static int vals[100];
    for (int i = 0; i < 100; i++)
        cr_assert_eq(reki_send(rt, pid, &vals[i]), REKI_OK);
    for (int i = 0; i < 100; i++) {
        void *got = NULL;
        cr_assert_eq(reki_inbox_recv(in, &got, 0), REKI_OK);
        cr_assert_eq(got, &vals[i], "message %d out of order", i);
    }
    void *got = NULL;
    cr_assert_eq(reki_inbox_recv(in, &got, 0), REKI_ETIMEDOUT);
    reki_inbox_free(in);
}

Test(inbox, receive_times_out)
{
    reki_inbox_t *in;
    cr_assert_eq(reki_inbox_new(rt, &in), REKI_OK);
    void *got = &p;
    cr_assert_eq(reki_inbox_recv(in, &got, 0), REKI_ETIMEDOUT);
    cr_assert_eq(reki_inbox_recv(in, &got, 1), REKI_ETIMEDOUT);
    cr_assert_eq(reki_inbox_recv(in, &got, 50), REKI_ETIMEDOUT);
    /* Still usable after timeouts. */
    int v;
    cr_assert_eq(reki_send(rt, reki_inbox_pid(in), &v), REKI_OK);
    cr_assert_eq(reki_inbox_recv(in, &got, 50), REKI_OK);
    cr_assert_eq(got, &v);
    reki_inbox_free(in);
}

struct late_send {
    reki_pid_t to;
    int delay_ms;
    int value;
};

static void *late_sender(void *arg)
{
    struct late_send *l = arg;
    t_sleep_ms(l->delay_ms);
    reki_send(rt, l->to, &l->value);
    return NULL;
}

Test(inbox, receive_forever_wakes_on_a_later_send)
{
    reki_inbox_t *in;
    cr_assert_eq(reki_inbox_new(rt, &in), REKI_OK);
    struct late_send l = {reki_inbox_pid(in), 100, 7};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, late_sender, &l), 0);
    void *got = NULL;
    cr_assert_eq(reki_inbox_recv(in, &got, -1), REKI_OK);
    cr_assert_eq(got, &l.value);
    pthread_join(t, NULL);
    reki_inbox_free(in);
}

/* Ping-pong with an actor: every reply must wake the blocked receiver. */
Test(inbox, no_lost_wake_up_in_ping_pong, .timeout = 300.0)
{
    reki_inbox_t *in = t_inbox(rt);
    reki_pid_t pid;
    cr_assert_eq(t_counter_spawn(rt, &p, 0, &pid), REKI_OK);
    long n = t_scaled(20000, 200);
    for (long i = 0; i < n; i++) {
        cr_assert_eq(t_send(rt, pid, T_INCR, 1), REKI_OK);
        struct tmsg *m = calloc(1, sizeof *m);
        m->kind = T_GET;
        m->reply = reki_inbox_pid(in);
        cr_assert_eq(reki_send(rt, pid, m), REKI_OK);
        void *got;
        cr_assert_eq(reki_inbox_recv(in, &got, -1), REKI_OK);
        cr_assert_eq(*(long *)got, i + 1);
        free(got);
    }
    reki_inbox_free(in);
}

struct seq_arg {
    reki_pid_t to;
    long sender, n, fails;
};

static void *seq_sender(void *arg)
{
    struct seq_arg *a = arg;
    for (long i = 0; i < a->n; i++) {
        long *v = malloc(sizeof *v);
        *v = a->sender << 32 | i;
        if (reki_send(rt, a->to, v) != REKI_OK) {
            free(v);
            a->fails++;
        }
    }
    return NULL;
}

struct seq_recv {
    reki_inbox_t *in;
    long total, bad;
};

static void *seq_receiver(void *arg)
{
    struct seq_recv *r = arg;
    long next[8] = {0};
    for (long i = 0; i < r->total; i++) {
        void *got;
        if (reki_inbox_recv(r->in, &got, t_wait_ms()) != REKI_OK) {
            r->bad++;
            break;
        }
        long v = *(long *)got, s = v >> 32;
        free(got);
        if (s < 0 || s >= 8 || (v & 0xffffffffL) != next[s]++)
            r->bad++;
    }
    return NULL;
}

Test(inbox, many_senders_keep_their_order, .timeout = 300.0)
{
    reki_inbox_t *in = t_inbox(rt);
    enum { SENDERS = 6 };
    long n = t_scaled(20000, 200);
    struct seq_arg args[SENDERS];
    for (int i = 0; i < SENDERS; i++)
        args[i] = (struct seq_arg){.to = reki_inbox_pid(in), .sender = i, .n = n};
    struct seq_recv r = {in, SENDERS * n, 0};
    pthread_t rt_thread;
    cr_assert_eq(pthread_create(&rt_thread, NULL, seq_receiver, &r), 0);
    t_run_threads(SENDERS, seq_sender, args, sizeof args[0]);
    pthread_join(rt_thread, NULL);
    for (int i = 0; i < SENDERS; i++)
        cr_assert_eq(args[i].fails, 0);
    cr_assert_eq(r.bad, 0, "messages lost or out of order");
    reki_inbox_free(in);
}

Test(inbox, free_drops_unreceived_messages)
{
    reki_inbox_opts_t o = {.drop = t_drop};
    reki_inbox_t *in;
    cr_assert_eq(reki_inbox_new_ex(rt, &o, &in), REKI_OK);
    reki_pid_t pid = reki_inbox_pid(in);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(t_send(rt, pid, T_INCR, i), REKI_OK);
    void *got;
    cr_assert_eq(reki_inbox_recv(in, &got, 0), REKI_OK);
    free(got);
    reki_inbox_free(in);
    cr_assert_eq(t_ldl(&p.dropped), 9);
    cr_assert(!reki_alive(rt, pid));
    int v;
    cr_assert_eq(reki_send(rt, pid, &v), REKI_EDEAD, "send to a freed inbox");
}

Test(inbox, set_drop_replaces_the_drop_function)
{
    reki_inbox_t *in;
    cr_assert_eq(reki_inbox_new(rt, &in), REKI_OK);
    cr_assert_eq(reki_inbox_set_drop(in, t_drop), REKI_OK);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(t_send(rt, reki_inbox_pid(in), T_INCR, i), REKI_OK);
    reki_inbox_free(in);
    cr_assert_eq(t_ldl(&p.dropped), 4);
}

Test(inbox, free_without_drop_leaves_messages_to_the_caller)
{
    reki_inbox_t *in;
    cr_assert_eq(reki_inbox_new(rt, &in), REKI_OK);
    static int vals[5];
    for (int i = 0; i < 5; i++)
        cr_assert_eq(reki_send(rt, reki_inbox_pid(in), &vals[i]), REKI_OK);
    reki_inbox_free(in); /* static messages: freeing them would crash */
    cr_assert_eq(t_ldl(&p.dropped), 0);
}

Test(inbox, pids_of_two_inboxes_differ_and_receive_separately)
{
    reki_inbox_t *a, *b;
    cr_assert_eq(reki_inbox_new(rt, &a), REKI_OK);
    cr_assert_eq(reki_inbox_new(rt, &b), REKI_OK);
    cr_assert_neq(reki_inbox_pid(a), reki_inbox_pid(b));
    int va, vb;
    cr_assert_eq(reki_send(rt, reki_inbox_pid(a), &va), REKI_OK);
    cr_assert_eq(reki_send(rt, reki_inbox_pid(b), &vb), REKI_OK);
    void *got;
    cr_assert_eq(reki_inbox_recv(b, &got, 0), REKI_OK);
    cr_assert_eq(got, &vb);
    cr_assert_eq(reki_inbox_recv(a, &got, 0), REKI_OK);
    cr_assert_eq(got, &va);
    reki_inbox_free(a);
    reki_inbox_free(b);
}

/* An inbox's pid can be killed like an actor's: sends fail from then on,
 * but what was accepted before still arrives. */
Test(inbox, killing_an_inbox_pid_keeps_accepted_messages)
{
    reki_inbox_t *in;
    cr_assert_eq(reki_inbox_new(rt, &in), REKI_OK);
    reki_pid_t pid = reki_inbox_pid(in);
    cr_assert_eq(reki_monitor(rt, pid, t_down, &p), REKI_OK);
    static int vals[3];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(reki_send(rt, pid, &vals[i]), REKI_OK);
    cr_assert_eq(reki_kill(rt, pid), REKI_OK);
    cr_assert(!reki_alive(rt, pid));
    int late;
    cr_assert_eq(reki_send(rt, pid, &late), REKI_EDEAD);
    cr_assert_eq(reki_kill(rt, pid), REKI_EDEAD);
    for (int i = 0; i < 3; i++) {
        void *got = NULL;
        cr_assert_eq(reki_inbox_recv(in, &got, 0), REKI_OK);
        cr_assert_eq(got, &vals[i]);
    }
    void *got;
    /* Drained and dead: nothing can come, so no wait (-1 would hang). */
    cr_assert_eq(reki_inbox_recv(in, &got, -1), REKI_EDEAD);
    cr_assert_eq(reki_inbox_recv(in, &got, 0), REKI_EDEAD);
    reki_inbox_free(in);
    reki_rt_free(rt);
    rt = NULL;
    cr_assert_eq(t_ldl(&p.downs), 1, "the inbox's monitor fired %ld times", t_ldl(&p.downs));
}

struct blocked_recv {
    reki_inbox_t *in;
    atomic_int entered;
    int rc;
};

static void *recv_forever(void *arg)
{
    struct blocked_recv *b = arg;
    void *got;
    atomic_store(&b->entered, 1);
    b->rc = reki_inbox_recv(b->in, &got, -1);
    return NULL;
}

/* A receiver waiting with no timeout wakes with REKI_EDEAD when the inbox's
 * pid is killed (before 0.2 it waited forever). */
Test(inbox, killing_the_pid_wakes_a_receiver_waiting_forever, .timeout = 30.0)
{
    reki_inbox_t *in;
    cr_assert_eq(reki_inbox_new(rt, &in), REKI_OK);
    struct blocked_recv b = {.in = in};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, recv_forever, &b), 0);
    t_wait_flag(&b.entered);
    t_sleep_ms(t_settle_ms()); /* let it reach its wait */
    cr_assert_eq(reki_kill(rt, reki_inbox_pid(in)), REKI_OK);
    pthread_join(t, NULL);
    cr_assert_eq(b.rc, REKI_EDEAD, "recv returned %d", b.rc);
    reki_inbox_free(in);
}

static bool fd_readable(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN);
}

/* The event-loop contract of reki_inbox_fd: readable while messages may
 * wait, unreadable after recv(0) reports none until the next message, one
 * wake-up per drain however many messages arrive, readable at death. */
Test(inbox, its_fd_polls_readable_while_messages_may_wait, .timeout = 30.0)
{
    reki_inbox_t *in;
    cr_assert_eq(reki_inbox_new(rt, &in), REKI_OK);
    cr_assert_eq(reki_inbox_fd(NULL), REKI_EINVAL);
    int fd = reki_inbox_fd(in);
    cr_assert_geq(fd, 0);
    cr_assert_eq(reki_inbox_fd(in), fd, "a second call gives another fd");
    reki_pid_t pid = reki_inbox_pid(in);
    void *got;
    cr_assert(fd_readable(fd), "a new fd starts readable: messages may wait");
    cr_assert_eq(reki_inbox_recv(in, &got, 0), REKI_ETIMEDOUT);
    cr_assert(!fd_readable(fd), "readable after recv reported an empty inbox");
    static int vals[100];
    for (int i = 0; i < 100; i++)
        cr_assert_eq(reki_send(rt, pid, &vals[i]), REKI_OK);
    cr_assert(fd_readable(fd), "not readable with 100 messages waiting");
    /* One wake-up for the drain, not one per message: the counter is 1. */
    uint64_t count = 0;
    cr_assert_eq(read(fd, &count, sizeof(count)), (ssize_t)sizeof(count));
    cr_assert_eq(count, 1, "senders signalled %llu times for one drain", (unsigned long long)count);
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(reki_inbox_recv(in, &got, 0), REKI_OK);
        cr_assert_eq(got, &vals[i]);
    }
    cr_assert_eq(reki_inbox_recv(in, &got, 0), REKI_ETIMEDOUT);
    cr_assert(!fd_readable(fd));
    cr_assert_eq(reki_send(rt, pid, &vals[0]), REKI_OK);
    cr_assert(fd_readable(fd), "the first message after a drain does not wake");
    cr_assert_eq(reki_inbox_recv(in, &got, 0), REKI_OK);
    cr_assert_eq(reki_inbox_recv(in, &got, 0), REKI_ETIMEDOUT);
    cr_assert_eq(reki_kill(rt, pid), REKI_OK);
    cr_assert(fd_readable(fd), "the death does not wake the loop");
    cr_assert_eq(reki_inbox_recv(in, &got, 0), REKI_EDEAD);
    reki_inbox_free(in);
}

struct pinger {
    reki_pid_t to;
    long n;
};

static void *pinger_thread(void *arg)
{
    struct pinger *g = arg;
    static int v;
    for (long i = 0; i < g->n; i++)
        while (reki_send(rt, g->to, &v) != REKI_OK)
            sched_yield();
    return NULL;
}

/* A poll loop on the fd, senders racing it: every message is received, and
 * the loop never sleeps on an unreadable fd while messages wait (it would
 * hang: the test would time out). */
Test(inbox, a_poll_loop_on_its_fd_loses_no_wake_up, .timeout = 60.0)
{
    reki_inbox_t *in;
    cr_assert_eq(reki_inbox_new(rt, &in), REKI_OK);
    int fd = reki_inbox_fd(in);
    cr_assert_geq(fd, 0);
    enum { SENDERS = 3 };
    struct pinger g[SENDERS];
    pthread_t t[SENDERS];
    long want = 0;
    for (int i = 0; i < SENDERS; i++) {
        g[i] = (struct pinger){reki_inbox_pid(in), t_scaled(30000, 300)};
        want += g[i].n;
        cr_assert_eq(pthread_create(&t[i], NULL, pinger_thread, &g[i]), 0);
    }
    long got_n = 0;
    while (got_n < want) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        cr_assert_eq(poll(&pfd, 1, 10000), 1, "asleep on the fd with %ld of %ld received", got_n,
                     want);
        void *m;
        while (reki_inbox_recv(in, &m, 0) == REKI_OK)
            got_n++;
    }
    for (int i = 0; i < SENDERS; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(got_n, want);
    reki_inbox_free(in);
}
