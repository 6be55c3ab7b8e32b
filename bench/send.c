/*
 * Send workloads: each thread sends tokens to its own receiver (one-to-one)
 * or all threads to one receiver (many-to-one).  A message carries its
 * sender's index; the receiver counts what it handled per sender, and each
 * sender keeps at most WINDOW messages in flight (checked once per batch, so
 * the count's cache line is not pulled on every send).  After the deadline a
 * sender waits until everything it sent has been handled, and the round's
 * clock stops when the last sender is done: the figure is messages handled
 * per second, not messages queued.
 *
 * Two implementations: reki light actors, and the mailbox a user writes by
 * hand (a mutex + condvar queue drained by a thread per receiver).
 */
#include <sched.h>
#include <stdlib.h>

#include "bench.h"
#include "send.h"

#define BATCH 64
#define WINDOW 4096
#define DRAIN_LIMIT 30.0

int send_counters_new(unsigned n, send_counter_t **out)
{
    send_counter_t *c = aligned_alloc(64, sizeof *c * n);
    if (c == NULL)
        return REKI_ENOMEM;
    for (unsigned i = 0; i < n; i++)
        atomic_init(&c[i].handled, 0);
    *out = c;
    return 0;
}

void send_count(send_counter_t *c, void *msg)
{
    /* relaxed: one writer (the receiver); senders read it only to pace
     * themselves, and the round's join orders the final figures. */
    atomic_uint_fast64_t *h = &c[(uintptr_t)msg - 1].handled;
    atomic_store_explicit(h, atomic_load_explicit(h, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static uint64_t handled(const send_counter_t *c, unsigned i)
{
    return atomic_load_explicit(&c[i].handled, memory_order_relaxed);
}

uint64_t send_loop(bench_thread_t *th, send_counter_t *c, int (*send)(void *, unsigned, void *),
                   void *ctx, unsigned to)
{
    void *msg = (void *)(uintptr_t)(th->index + 1);
    uint64_t sent = 0, errors = 0;
    while (!bench_should_stop(th)) {
        while (sent - handled(c, th->index) > WINDOW - BATCH && !bench_should_stop(th))
            sched_yield();
        for (int i = 0; i < BATCH; i++) {
            if (send(ctx, to, msg) == 0)
                sent++;
            else
                errors++;
        }
    }
    /* A receiver that stops handling is a bug, not a slow round: give up
     * after DRAIN_LIMIT seconds and count what it never handled. */
    double give_up = bench_now() + DRAIN_LIMIT;
    while (handled(c, th->index) < sent && bench_now() < give_up)
        sched_yield();
    errors += sent - handled(c, th->index);
    th->errors = errors;
    th->sink = sent;
    return sent;
}
