/*
 * Pub/sub channels as virtual actors of srv.channels.  A channel's actor
 * holds its subscribers (connection, I/O thread).  SUBSCRIBE and UNSUBSCRIBE
 * reach it by key and are acknowledged back to the I/O thread; PUBLISH
 * builds the RESP "message" array once and sends it to each I/O thread that
 * has subscribers, as one OP_PUSH listing them, then answers with the number
 * of receivers.  The push and the acknowledgement of an UNSUBSCRIBE travel
 * the same way (this actor to that I/O thread's inbox), so a connection's
 * pushes always arrive before its unsubscription is acknowledged, and the
 * I/O thread can keep the connection alive until then.
 *
 * With no subscriber left and nothing queued, the actor stops.  A SUBSCRIBE
 * sent while it stops waits in the key's queue and is handled by the
 * channel's next actor, so no subscriber is lost to a re-creation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

struct sub {
    struct io *io;
    struct conn *conn;
};

struct chan {
    size_t n, cap;
    struct sub *subs;
    uint32_t klen;
    char name[];
};

static int add_sub(struct chan *c, struct io *io, struct conn *conn)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 4;
        struct sub *s = realloc(c->subs, cap * sizeof(*s));
        if (!s)
            return -1;
        c->subs = s;
        c->cap = cap;
    }
    c->subs[c->n].io = io;
    c->subs[c->n].conn = conn;
    c->n++;
    return 0;
}

static void remove_sub(struct chan *c, struct conn *conn)
{
    for (size_t i = 0; i < c->n; i++) {
        if (c->subs[i].conn == conn) {
            c->subs[i] = c->subs[--c->n];
            return;
        }
    }
}

static struct push *make_push(const struct chan *c, const char *msg, size_t len)
{
    static const char head[] = "*3\r\n$7\r\nmessage\r\n";
    size_t n = sizeof(head) - 1 + resp_bulk_size(c->klen) + resp_bulk_size(len);
    struct push *p = malloc(sizeof(*p) + n);
    if (!p)
        return NULL;
    memcpy(p->bytes, head, sizeof(head) - 1);
    size_t at = sizeof(head) - 1;
    at += resp_bulk_into(p->bytes + at, c->name, c->klen);
    at += resp_bulk_into(p->bytes + at, msg, len);
    p->len = at;
    atomic_init(&p->refs, 1); /* the builder's, dropped at the end */
    return p;
}

/*
 * Send op (OP_PUSH with payload, or OP_RELEASE) to every I/O thread that has
 * subscribers, one message each.  Returns the receivers reached.
 */
static size_t fan_out(struct chan *c, uint8_t op, struct push *payload)
{
    size_t reached = 0;
    for (unsigned t = 0; t < srv.o.io_threads; t++) {
        struct io *io = srv.io[t];
        uint32_t k = 0;
        for (size_t i = 0; i < c->n; i++)
            k += c->subs[i].io == io;
        if (k == 0)
            continue;
        struct pushmsg *pm = malloc(sizeof(*pm) + k * sizeof(pm->conns[0]));
        if (!pm)
            continue; /* these receivers miss this message: counted out */
        pm->op = op;
        pm->payload = payload;
        pm->n = 0;
        for (size_t i = 0; i < c->n; i++)
            if (c->subs[i].io == io)
                pm->conns[pm->n++] = c->subs[i].conn;
        if (payload)
            atomic_fetch_add_explicit(&payload->refs, 1, memory_order_relaxed);
        if (reki_send(srv.rt, io_pid(io), pm) != REKI_OK) {
            if (payload)
                push_unref(payload);
            free(pm);
            continue;
        }
        reached += k;
    }
    return reached;
}

static reki_next_t chan_handle(void *state, void *msg, reki_pid_t self)
{
    struct chan *c = state;
    struct kmsg *m = msg;
    switch (m->op) {
    case OP_SUB:
        if (add_sub(c, m->io, m->conn) != 0)
            m->flags |= KMSG_DROPPED; /* not subscribed: the I/O thread says so */
        m->rkind = R_ACK;
        break;
    case OP_UNSUB:
        remove_sub(c, m->conn);
        m->rkind = R_ACK;
        break;
    case OP_PUB: {
        size_t reached = 0;
        struct push *p = c->n ? make_push(c, m->data + m->klen, m->alen) : NULL;
        if (p) {
            reached = fan_out(c, OP_PUSH, p);
            push_unref(p);
        }
        atomic_fetch_add_explicit(&srv.n_published, 1, memory_order_relaxed);
        m->rkind = R_INT;
        m->num = (int64_t)reached;
        break;
    }
    default: m->rkind = R_BYTES; m->out = NULL;
    }
    kmsg_return(m);
    if (c->n == 0 && reki_mailbox_len(srv.rt, self) == 0)
        return REKI_STOP;
    return REKI_CONTINUE;
}

/* At a shutdown with subscribers left, tell their I/O threads they are let go. */
static void chan_terminate(void *state, int reason)
{
    (void)reason;
    struct chan *c = state;
    if (c->n)
        fan_out(c, OP_RELEASE, NULL);
    free(c->subs);
    free(c);
}

static const reki_behavior_t chan_behavior = {
    .handle = chan_handle,
    .terminate = chan_terminate,
    .drop = kmsg_dropped,
};

int channels_start(reki_rt_t *rt, const void *key, size_t klen, void *arg, reki_pid_t *out)
{
    (void)arg;
    /* The name without its tag byte (server.h), as clients see it. */
    struct chan *c = calloc(1, sizeof(*c) + klen);
    if (!c)
        return REKI_ENOMEM;
    c->klen = (uint32_t)klen - 1;
    memcpy(c->name, (const char *)key + 1, klen - 1);
    int rc = reki_spawn(rt, &chan_behavior, c, NULL, out);
    if (rc != REKI_OK)
        free(c);
    return rc;
}
