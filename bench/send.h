/*
 * Pieces shared by the two send implementations (send_reki.c,
 * send_mutex.c): per-sender handled counters and the sender's paced loop.
 */
#ifndef REKI_BENCH_SEND_H
#define REKI_BENCH_SEND_H

#include "bench.h"

typedef struct send_counter {
    atomic_uint_fast64_t handled;
    char pad[64 - sizeof(atomic_uint_fast64_t)];
} send_counter_t;

int send_counters_new(unsigned n, send_counter_t **out);
/* Receiver side: one more message of the sender msg names was handled. */
void send_count(send_counter_t *c, void *msg);
/* Sender side: send(ctx, to, msg) until the stop flag, then wait until the
 * receiver has handled all of them.  Returns the messages sent. */
uint64_t send_loop(bench_thread_t *th, send_counter_t *c, int (*send)(void *, unsigned, void *),
                   void *ctx, unsigned to);

#endif /* REKI_BENCH_SEND_H */
