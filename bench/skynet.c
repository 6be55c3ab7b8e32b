/*
 * reki-bench-skynet: messaging measured the way other runtimes publish it.
 *
 *   skynet    1,111,111 actors in a tree of fan-out 10: each spawns its ten
 *             children (from inside its handle), each leaf sends its number
 *             up, each inner actor sends the sum of its children's up, the
 *             root's goes to an inbox: 499999500000.  Wall time.
 *   pingpong  two light actors bounce one message: round trips per second
 *             and round-trip latency percentiles.
 *
 * bench/compare/ has the same two programs in Go (goroutines, channels) and
 * Erlang (processes); tools/bench-runtimes.sh runs all three side by side.
 *
 * usage: reki-bench-skynet [--skynet] [--pingpong N] [--size N] [--rounds R]
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <reki/reki.h>

#include "histogram.h"

static reki_rt_t *rt;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------- skynet -- */

/* Messages are values in the pointer itself: GO, or a sum tagged with bit 0. */
static char go_token;
#define GO ((void *)&go_token)
#define VALUE(v) ((void *)(uintptr_t)(((uint64_t)(v) << 1) | 1u))
#define VALUE_OF(m) ((uint64_t)(uintptr_t)(m) >> 1)

struct node {
    reki_pid_t parent;
    uint64_t num, size;
    unsigned pending;
    uint64_t sum;
};

static const reki_behavior_t node_b;

static int node_init(reki_pid_t self, void *arg, void **state)
{
    (void)self;
    *state = arg;
    return 0;
}

static void node_term(void *state, int reason)
{
    (void)reason;
    free(state);
}

static reki_next_t node_handle(void *state, void *msg, reki_pid_t self)
{
    (void)self;
    struct node *n = state;
    if (msg == GO) {
        if (n->size == 1) {
            reki_send(rt, n->parent, VALUE(n->num));
            return REKI_STOP;
        }
        uint64_t child = n->size / 10;
        n->pending = 10;
        for (uint64_t i = 0; i < 10; i++) {
            struct node *c = malloc(sizeof(*c));
            *c = (struct node){.parent = self, .num = n->num + i * child, .size = child};
            reki_pid_t pid;
            if (reki_spawn(rt, &node_b, c, NULL, &pid) != REKI_OK)
                abort();
            reki_send(rt, pid, GO);
        }
        return REKI_CONTINUE;
    }
    n->sum += VALUE_OF(msg);
    if (--n->pending > 0)
        return REKI_CONTINUE;
    reki_send(rt, n->parent, VALUE(n->sum));
    return REKI_STOP;
}

static const reki_behavior_t node_b = {
    .init = node_init, .handle = node_handle, .terminate = node_term};

static double run_skynet(uint64_t size)
{
    reki_inbox_t *in;
    if (reki_inbox_new(rt, &in) != REKI_OK)
        abort();
    uint64_t t0 = now_ns();
    struct node *root = malloc(sizeof(*root));
    *root = (struct node){.parent = reki_inbox_pid(in), .num = 0, .size = size};
    reki_pid_t pid;
    if (reki_spawn(rt, &node_b, root, NULL, &pid) != REKI_OK)
        abort();
    reki_send(rt, pid, GO);
    void *m;
    if (reki_inbox_recv(in, &m, -1) != REKI_OK)
        abort();
    double ms = (double)(now_ns() - t0) / 1e6;
    uint64_t want = size * (size - 1) / 2;
    printf("  skynet: sum %llu (%s) in %.1f ms\n", (unsigned long long)VALUE_OF(m),
           VALUE_OF(m) == want ? "right" : "WRONG", ms);
    if (VALUE_OF(m) != want)
        exit(1);
    reki_inbox_free(in);
    return ms;
}

/* -------------------------------------------------------------- pingpong -- */

struct ball {
    uint64_t left;
    uint64_t sent_ns;
};

struct player {
    reki_pid_t other;
    bool is_a;
    bench_hist_t *hist;
    reki_pid_t done;
};

static reki_next_t player_handle(void *state, void *msg, reki_pid_t self)
{
    (void)self;
    struct player *p = state;
    struct ball *b = msg;
    if (p->is_a) {
        uint64_t t = now_ns();
        if (b->sent_ns)
            bench_hist_record(p->hist, t - b->sent_ns);
        if (b->left-- == 0) {
            reki_send(rt, p->done, b);
            return REKI_CONTINUE;
        }
        b->sent_ns = t;
    }
    reki_send(rt, p->other, b);
    return REKI_CONTINUE;
}

static const reki_behavior_t player_b = {.handle = player_handle};

static void run_pingpong(uint64_t rounds)
{
    static bench_hist_t hist;
    bench_hist_init(&hist);
    reki_inbox_t *in;
    if (reki_inbox_new(rt, &in) != REKI_OK)
        abort();
    static struct player a, b;
    a = (struct player){.is_a = true, .hist = &hist, .done = reki_inbox_pid(in)};
    b = (struct player){.is_a = false};
    reki_pid_t pa, pb;
    if (reki_spawn(rt, &player_b, &a, NULL, &pa) != REKI_OK ||
        reki_spawn(rt, &player_b, &b, NULL, &pb) != REKI_OK)
        abort();
    a.other = pb;
    b.other = pa;
    struct ball ball = {.left = rounds};
    uint64_t t0 = now_ns();
    reki_send(rt, pa, &ball);
    void *m;
    if (reki_inbox_recv(in, &m, -1) != REKI_OK)
        abort();
    double s = (double)(now_ns() - t0) / 1e9;
    printf("  pingpong: %.0f round trips/s; round trip p50 %.1f us, p99 %.1f us, p99.9 %.1f us, "
           "max %.1f us\n",
           (double)rounds / s, (double)bench_hist_percentile(&hist, 50) / 1e3,
           (double)bench_hist_percentile(&hist, 99) / 1e3,
           (double)bench_hist_percentile(&hist, 99.9) / 1e3, (double)hist.max / 1e3);
    reki_kill(rt, pa);
    reki_kill(rt, pb);
    reki_inbox_free(in);
}

int main(int argc, char **argv)
{
    uint64_t size = 1000000, pings = 0;
    int rounds = 3;
    bool skynet = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--skynet"))
            skynet = true;
        else if (!strcmp(argv[i], "--pingpong") && i + 1 < argc)
            pings = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc)
            size = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: reki-bench-skynet [--skynet] [--pingpong N] [--size N] "
                            "[--rounds R]\n");
            return 2;
        }
    }
    if (!skynet && !pings)
        skynet = true, pings = 1000000;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (reki_rt_new(NULL, &rt) != REKI_OK)
        return 1;
    for (int r = 0; r < rounds; r++) {
        if (skynet)
            run_skynet(size);
        if (pings)
            run_pingpong(pings);
    }
    reki_rt_free(rt);
    return 0;
}
