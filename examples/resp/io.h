/*
 * I/O threads of reki-resp.  Each one runs an epoll loop over its
 * connections' sockets, the shared listening socket (EPOLLEXCLUSIVE: one
 * thread wakes per connection attempt), the server's stop eventfd, and the fd
 * of its own reki inbox (reki_inbox_fd), where actors' answers arrive: it
 * polls readable only when there is something to receive, so the loop never
 * polls for answers.  A turn of the loop handles the ready events, then
 * writes every connection that got output during the turn, in one write
 * each.
 */
#ifndef RESP_IO_H
#define RESP_IO_H

#include <pthread.h>

#include "conn.h"

struct io {
    unsigned idx;
    pthread_t thread;
    int ep;
    reki_inbox_t *inbox;
    reki_pid_t pid;
    int inbox_fd;
    struct conn *conns; /* open connections */
    struct conn *dead;  /* closed ones with answers still in flight */
    struct conn *dirty; /* to write at the end of the turn */
    atomic_size_t nconns;
    uint64_t next_id;
    struct reqs *reqs; /* cluster mode: requests in flight to other nodes (cluster.c) */
    /* scratch for command_dispatch's argument vectors */
    const char **argv;
    size_t *lens;
    size_t arg_cap;
};

int io_new(unsigned idx, struct io **out);
int io_start(struct io *io);
void io_join(struct io *io);
/* After every actor is gone: take what is left in the inbox, free every connection. */
void io_free(struct io *io);
/* Set the connection's epoll interest from its state (paused, want_out). */
void io_watch(struct io *io, struct conn *c);
void io_unlink(struct io *io, struct conn *c); /* open list -> dead list */

#endif
