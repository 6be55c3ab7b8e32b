/*
 * A client connection, owned by one I/O thread: only that thread touches it.
 *
 * Replies leave in request order through a ring of slots: each request takes
 * the next sequence number; its slot fills when its answers arrive, from the
 * I/O thread itself or, in any order, from key and channel actors through the
 * thread's inbox; the ring is written out from its head as far as slots are
 * complete.  A published message takes a slot of its own, so it follows the
 * replies to requests that came before it.  A request answered while nothing
 * is pending skips the ring and goes straight to the output buffer.
 *
 * Bounds: reading stops (and parsing with it) while more than out_soft bytes
 * wait (to be written, or in slots behind a reply not yet come) or more than
 * max_pipeline replies are pending, and
 * resumes when the client has caught up; a client that lets out_hard bytes
 * pile up (only published messages can do that) is disconnected, as Redis
 * does with its pub/sub output limit.  Other connections never wait.
 */
#ifndef RESP_CONN_H
#define RESP_CONN_H

#include "parse.h"
#include "server.h"

enum slot_kind {
    SLOT_NONE = 0,
    SLOT_BYTES, /* p: bytes (malloc), len */
    SLOT_MSG,   /* p: the kmsg that came back */
    SLOT_SUM,   /* sum of R_INT answers */
    SLOT_ARRAY, /* p: kmsg *[n], one per element */
    SLOT_PUSH   /* p: struct push */
};

/* Published messages to write before a slot's own reply (see conn_on_push). */
struct prepush {
    struct push *p;
    struct prepush *next;
};

struct slot {
    uint32_t pending; /* answers still to come; 0 = complete */
    uint8_t kind;
    bool unsub;          /* an UNSUBSCRIBE reply waiting for its acknowledgement */
    struct prepush *pre; /* in arrival order */
    const char *err;     /* an answer failed: the reply is this error line */
    uint32_t n;
    int64_t sum;
    void *p;
    size_t len;
};

#define NOSLOT UINT64_MAX /* a message whose answer no request waits for */

struct conn {
    int fd;
    struct io *io;
    struct conn *prev, *next; /* the I/O thread's connections */
    struct conn *dirty_next;  /* on the thread's list of connections to write */
    bool dirty;
    bool closed;   /* socket closed; freed when refs reaches 0 */
    bool quit;     /* QUIT: close once the output is written */
    bool paused;   /* reading stopped (bounds) */
    bool want_out; /* EPOLLOUT requested */
    uint32_t refs; /* kmsgs in flight + subscriptions held by channels */
    uint64_t id;
    rbuf_t in;
    rbuf_t out;
    resp_parser_t ps;
    struct slot *ring;
    size_t ring_cap;     /* a power of two */
    uint64_t head, tail; /* slots [head, tail) are pending */
    size_t held;         /* reply and push bytes waiting in slots */
    /* channels subscribed: sorted by memcmp order, binary-searched (no hash a
     * client could attack) */
    struct chname **chans;
    size_t nchans, chans_cap;
};

struct chname {
    size_t len;
    char name[];
};

struct conn *conn_new(struct io *io, int fd);
/* Parse and dispatch what has been read, while the bounds allow. */
void conn_process(struct conn *c);
/* Read what the socket has (bounded); 0, or -1 when the connection ended. */
int conn_read(struct conn *c);
/* Write what is ready; 0, or -1 when the connection ended. */
int conn_write(struct conn *c);
/* Close the socket; the conn is freed when nothing is in flight. */
void conn_close(struct conn *c);
/* Free c if it is closed and nothing of it is in flight; true if freed. */
bool conn_maybe_free(struct conn *c);
/* Free c now, whatever is in flight (shutdown, after every actor is gone). */
void conn_destroy(struct conn *c);

/* Slots. */
struct slot *conn_slot_new(struct conn *c, uint64_t *seq); /* NULL: no memory */
struct slot *conn_slot(struct conn *c, uint64_t seq);
/* Reply bytes from the I/O thread, in order with pending replies. */
void conn_reply(struct conn *c, const void *bytes, size_t len);
void conn_reply_error(struct conn *c, const char *line); /* line without "-" and CRLF */
/* Move complete slots from the head of the ring to the output buffer. */
void conn_flush_ready(struct conn *c);
/* Mark c to be written at the end of this loop turn. */
void conn_touch(struct conn *c);

/* An answer came back (kmsg), a push or a release (pushmsg). */
void conn_on_kmsg(struct kmsg *m);
void conn_on_push(struct conn *c, struct push *p);
void conn_on_release(struct conn *c);
/* One answer of slot seq will never come (cluster.c: a timeout): it is this error. */
void conn_on_fail(struct conn *c, uint64_t seq, const char *err);

/* Subscriptions (commands.c). */
size_t conn_nchans(struct conn *c);
int conn_chan_add(struct conn *c, const char *name, size_t len); /* 1 added, 0 had, -1 */
int conn_chan_del(struct conn *c, const char *name, size_t len); /* 1 removed, 0 not */
/* The names subscribed, for UNSUBSCRIBE without arguments and for close. */
struct chname *conn_chan_at(struct conn *c, size_t i);

/* commands.c */
void command_dispatch(struct conn *c, size_t argc, const char **argv, const size_t *lens);
/* The error line (static) for a reki_send_key that failed with rc. */
const char *send_error(int rc);

#endif
