/*
 * An event loop that owns a reki inbox: epoll waits on the inbox's fd
 * (reki_inbox_fd) next to a timerfd, as a server's I/O thread waits on its
 * sockets.  Worker actors, one per "job" key of a registry, send their
 * results to the loop's inbox; the loop drains the inbox each time the fd
 * polls readable, with reki_inbox_recv(in, &m, 0) until REKI_ETIMEDOUT, and
 * ends when every result has come in.
 */
#include <reki/reki.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

enum { JOBS = 64, STEPS = 100 };

struct job {
    reki_rt_t *rt;
    reki_pid_t reply_to;
    long sum;
};

/* Each message is one step of work; the last one sends the result. */
static reki_next_t job_handle(void *state, void *msg, reki_pid_t self)
{
    (void)self;
    struct job *j = state;
    long step = (long)(intptr_t)msg;
    j->sum += step;
    if (step < STEPS)
        return REKI_CONTINUE;
    long *result = malloc(sizeof(*result));
    if (!result)
        return REKI_CRASH;
    *result = j->sum;
    if (reki_send(j->rt, j->reply_to, result) != REKI_OK)
        free(result);
    return REKI_STOP;
}

static void job_terminate(void *state, int reason)
{
    (void)reason;
    free(state);
}

static int start_job(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)key;
    (void)keylen;
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return REKI_ENOMEM;
    j->rt = rt;
    j->reply_to = *(reki_pid_t *)arg;
    static const reki_behavior_t b = {.handle = job_handle, .terminate = job_terminate};
    int rc = reki_spawn(rt, &b, j, NULL, out);
    if (rc != REKI_OK)
        free(j);
    return rc;
}

/* Drain the inbox; returns results received. */
static int drain(reki_inbox_t *in, long *total)
{
    int n = 0;
    void *m;
    while (reki_inbox_recv(in, &m, 0) == REKI_OK) {
        *total += *(long *)m;
        free(m);
        n++;
    }
    return n;
}

int main(void)
{
    reki_rt_t *rt;
    reki_registry_t *jobs;
    reki_inbox_t *in;
    if (reki_rt_new(NULL, &rt) != REKI_OK || reki_registry_new(rt, NULL, &jobs) != REKI_OK ||
        reki_inbox_new(rt, &in) != REKI_OK)
        return 1;
    int fd = reki_inbox_fd(in);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int tick = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    struct itimerspec its = {{0, 100000000}, {0, 100000000}}; /* 100 ms */
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (fd < 0 || ep < 0 || tick < 0 || timerfd_settime(tick, 0, &its, NULL) != 0 ||
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        return 1;
    ev.data.fd = tick;
    epoll_ctl(ep, EPOLL_CTL_ADD, tick, &ev);

    reki_pid_t me = reki_inbox_pid(in);
    for (int k = 0; k < JOBS; k++) {
        char key[16];
        int len = snprintf(key, sizeof(key), "job:%d", k);
        reki_pid_t pid;
        if (reki_lookup_or_start(jobs, key, (size_t)len, start_job, &me, -1, &pid) < 0)
            return 1;
        for (long s = 1; s <= STEPS; s++)
            reki_send(rt, pid, (void *)(intptr_t)s);
    }

    int results = 0, wakeups = 0, ticks = 0;
    long total = 0;
    while (results < JOBS && ticks < 100) {
        struct epoll_event got[2];
        int n = epoll_wait(ep, got, 2, -1);
        for (int i = 0; i < n; i++) {
            if (got[i].data.fd == fd) {
                wakeups++;
                results += drain(in, &total);
            } else {
                uint64_t t;
                if (read(tick, &t, sizeof(t)) == (ssize_t)sizeof(t))
                    ticks++;
            }
        }
    }
    long want = (long)JOBS * STEPS * (STEPS + 1) / 2;
    printf("inbox_epoll: %d results in %d wake-ups, total %ld (want %ld)\n", results, wakeups,
           total, want);
    close(tick);
    close(ep);
    reki_inbox_free(in);
    reki_registry_free(jobs);
    reki_rt_free(rt);
    if (results != JOBS || total != want)
        return 1;
    printf("inbox_epoll: all checks passed\n");
    return 0;
}
