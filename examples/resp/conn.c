/*
 * Connections of reki-resp (see conn.h): reading, parsing, the reply ring,
 * bounds, subscriptions.  Everything here runs on the connection's I/O
 * thread.
 */
#include "conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io.h"

#define READ_CHUNK (64 * 1024)
#define READS_PER_EVENT 4

static const char ERR_NOMEM[] = "ERR out of memory";
static const char ERR_ACTOR[] = "ERR the key's actor is not available";

struct conn *conn_new(struct io *io, int fd)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->ring_cap = 16;
    c->ring = calloc(c->ring_cap, sizeof(*c->ring));
    if (!c->ring) {
        free(c);
        return NULL;
    }
    c->fd = fd;
    c->io = io;
    c->id = ++io->next_id;
    resp_parser_init(&c->ps, srv.o.max_bulk);
    return c;
}

/* ------------------------------------------------------------ the ring -- */

struct slot *conn_slot(struct conn *c, uint64_t seq)
{
    return &c->ring[seq & (c->ring_cap - 1)];
}

static int ring_grow(struct conn *c)
{
    size_t cap = c->ring_cap * 2;
    struct slot *r = calloc(cap, sizeof(*r));
    if (!r)
        return -1;
    for (uint64_t s = c->head; s < c->tail; s++)
        r[s & (cap - 1)] = c->ring[s & (c->ring_cap - 1)];
    free(c->ring);
    c->ring = r;
    c->ring_cap = cap;
    return 0;
}

struct slot *conn_slot_new(struct conn *c, uint64_t *seq)
{
    if (c->tail - c->head == c->ring_cap && ring_grow(c) != 0)
        return NULL;
    *seq = c->tail++;
    struct slot *s = conn_slot(c, *seq);
    memset(s, 0, sizeof(*s));
    return s;
}

static void slot_clear(struct conn *c, struct slot *s)
{
    for (struct prepush *q = s->pre, *next; q; q = next) {
        next = q->next;
        c->held -= q->p->len;
        push_unref(q->p);
        free(q);
    }
    switch (s->kind) {
    case SLOT_BYTES: free(s->p); break;
    case SLOT_MSG:
        if (s->p && ((struct kmsg *)s->p)->rkind == R_BYTES)
            c->held -= ((struct kmsg *)s->p)->outlen;
        kmsg_free(s->p);
        break;
    case SLOT_ARRAY: {
        struct kmsg **parts = s->p;
        for (uint32_t i = 0; parts && i < s->n; i++) {
            if (parts[i] && parts[i]->rkind == R_BYTES)
                c->held -= parts[i]->outlen;
            kmsg_free(parts[i]);
        }
        free(parts);
        break;
    }
    case SLOT_PUSH:
        c->held -= ((struct push *)s->p)->len;
        push_unref(s->p);
        break;
    default: break;
    }
    memset(s, 0, sizeof(*s));
}

static int emit_msg(rbuf_t *o, const struct kmsg *m)
{
    if (m->flags & KMSG_DROPPED && !m->out)
        return resp_error(o, ERR_ACTOR);
    if (m->rkind == R_INT)
        return resp_int(o, m->num);
    if (!m->out)
        return resp_error(o, ERR_NOMEM);
    return rbuf_put(o, m->out, m->outlen);
}

static int emit(struct conn *c, struct slot *s)
{
    rbuf_t *o = &c->out;
    for (struct prepush *q = s->pre; q; q = q->next)
        if (rbuf_put(o, q->p->bytes, q->p->len) != 0)
            return -1;
    if (s->err)
        return resp_error(o, s->err);
    switch (s->kind) {
    case SLOT_BYTES: return rbuf_put(o, s->p, s->len);
    case SLOT_MSG: return emit_msg(o, s->p);
    case SLOT_SUM: return resp_int(o, s->sum);
    case SLOT_ARRAY: {
        struct kmsg **parts = s->p;
        if (resp_array(o, s->n) != 0)
            return -1;
        for (uint32_t i = 0; i < s->n; i++)
            if (emit_msg(o, parts[i]) != 0)
                return -1;
        return 0;
    }
    case SLOT_PUSH: return rbuf_put(o, ((struct push *)s->p)->bytes, ((struct push *)s->p)->len);
    default: return 0;
    }
}

void conn_flush_ready(struct conn *c)
{
    bool any = false;
    /* Replies beyond out_soft stay in their slots until the client reads:
     * copying them out would only double what the slow client costs. */
    while (c->head < c->tail && !c->closed && c->out.len - c->out.off <= srv.o.out_soft) {
        struct slot *s = conn_slot(c, c->head);
        if (s->pending)
            break;
        int rc = emit(c, s);
        slot_clear(c, s);
        c->head++;
        any = true;
        if (rc != 0) { /* the order cannot be kept without this reply */
            conn_close(c);
            return;
        }
    }
    if (any)
        conn_touch(c);
}

void conn_touch(struct conn *c)
{
    if (c->dirty || c->closed)
        return;
    c->dirty = true;
    c->dirty_next = c->io->dirty;
    c->io->dirty = c;
}

void conn_reply(struct conn *c, const void *bytes, size_t len)
{
    if (c->closed)
        return;
    if (c->head == c->tail) { /* nothing pending: straight out */
        if (rbuf_put(&c->out, bytes, len) != 0)
            conn_close(c);
        else
            conn_touch(c);
        return;
    }
    uint64_t seq;
    struct slot *s = conn_slot_new(c, &seq);
    void *p = s ? malloc(len ? len : 1) : NULL;
    if (!p) {
        if (s)
            c->tail--;
        conn_close(c);
        return;
    }
    memcpy(p, bytes, len);
    s->kind = SLOT_BYTES;
    s->p = p;
    s->len = len;
}

void conn_reply_error(struct conn *c, const char *line)
{
    rbuf_t tmp = {0};
    if (resp_error(&tmp, line) != 0) {
        conn_close(c);
        return;
    }
    conn_reply(c, tmp.p, tmp.len);
    rbuf_free(&tmp);
}

/* ------------------------------------------------------------- answers -- */

void conn_on_kmsg(struct kmsg *m)
{
    struct conn *c = m->conn;
    bool dropped = m->flags & KMSG_DROPPED;
    c->refs--;
    if (m->op == OP_SUB && dropped) {
        c->refs--; /* never subscribed */
        if (!c->closed)
            conn_chan_del(c, m->data + 1, m->klen - 1);
    } else if (m->op == OP_UNSUB && !dropped) {
        c->refs--; /* the channel has let go of c */
    }
    if (c->closed || m->seq == NOSLOT) {
        kmsg_free(m);
        return;
    }
    uint64_t seq = m->seq;
    struct slot *s = conn_slot(c, seq);
    if (m->rkind == R_BYTES)
        c->held += m->outlen; /* until emitted: counted against out_soft */
    switch (s->kind) {
    case SLOT_MSG: s->p = m; break;
    case SLOT_SUM:
        if (m->rkind == R_INT && !dropped)
            s->sum += m->num;
        else
            s->err = ERR_ACTOR;
        if (m->rkind == R_BYTES)
            c->held -= m->outlen;
        kmsg_free(m);
        break;
    case SLOT_ARRAY:
        ((struct kmsg **)s->p)[m->part] = m;
        if (dropped)
            s->err = ERR_ACTOR;
        break;
    default: /* SLOT_BYTES prepared for (UN)SUBSCRIBE: this is its acknowledgement */
        if (dropped)
            s->err = ERR_ACTOR;
        if (m->rkind == R_BYTES)
            c->held -= m->outlen;
        kmsg_free(m);
    }
    if (--s->pending == 0 && seq == c->head)
        conn_flush_ready(c); /* m may be freed: only seq is used */
}

void conn_on_push(struct conn *c, struct push *p)
{
    if (c->closed)
        return;
    if (c->out.len - c->out.off + c->held + p->len > srv.o.out_hard) {
        fprintf(stderr, "reki-resp: connection %llu closed: over the output limit of %zu bytes\n",
                (unsigned long long)c->id, srv.o.out_hard);
        conn_close(c);
        return;
    }
    if (c->head == c->tail) {
        if (rbuf_put(&c->out, p->bytes, p->len) != 0)
            conn_close(c);
        else
            conn_touch(c);
        return;
    }
    for (uint64_t q = c->head; q < c->tail; q++) {
        struct slot *u = conn_slot(c, q);
        if (!u->unsub || !u->pending)
            continue;
        struct prepush *pp = malloc(sizeof(*pp));
        if (!pp) {
            conn_close(c);
            return;
        }
        atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
        pp->p = p;
        pp->next = NULL;
        struct prepush **at = &u->pre; /* no tail pointer: the ring may move */
        while (*at)
            at = &(*at)->next;
        *at = pp;
        c->held += p->len;
        return;
    }
    uint64_t seq;
    struct slot *s = conn_slot_new(c, &seq);
    if (!s) {
        conn_close(c);
        return;
    }
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    s->kind = SLOT_PUSH;
    s->p = p;
    c->held += p->len;
}

void conn_on_release(struct conn *c)
{
    c->refs--;
}

void conn_on_fail(struct conn *c, uint64_t seq, const char *err)
{
    c->refs--;
    if (c->closed)
        return;
    struct slot *s = conn_slot(c, seq);
    s->err = err;
    if (--s->pending == 0 && seq == c->head)
        conn_flush_ready(c);
}

/* ------------------------------------------------------ reading, bounds -- */

static bool over_bounds(const struct conn *c)
{
    return c->out.len - c->out.off + c->held > srv.o.out_soft ||
           c->tail - c->head > srv.o.max_pipeline;
}

static void set_paused(struct conn *c, bool paused)
{
    if (c->paused == paused)
        return;
    c->paused = paused;
    io_watch(c->io, c);
}

int conn_read(struct conn *c)
{
    for (int i = 0; i < READS_PER_EVENT; i++) {
        size_t have = c->in.len - c->in.off;
        size_t need = resp_parse_need(&c->ps);
        size_t want = need > have ? need - have : 0;
        if (want < READ_CHUNK)
            want = READ_CHUNK;
        if (want > 16 * READ_CHUNK)
            want = 16 * READ_CHUNK; /* a large bulk arrives over several reads */
        if (rbuf_reserve(&c->in, want) != 0)
            return -1;
        size_t room = c->in.cap - c->in.len;
        ssize_t n = read(c->fd, c->in.p + c->in.len, room);
        if (n > 0) {
            c->in.len += (size_t)n;
            if ((size_t)n < room)
                return 0;
            continue;
        }
        if (n == 0)
            return -1;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno != EINTR)
            return -1;
    }
    return 0;
}

void conn_process(struct conn *c)
{
    struct io *io = c->io;
    while (!c->closed && !c->quit && !over_bounds(c)) {
        const char *base = c->in.p + c->in.off;
        size_t used = 0;
        int rc = resp_parse(&c->ps, base, c->in.len - c->in.off, &used);
        if (rc == RESP_PARSE_AGAIN)
            break;
        if (rc != RESP_PARSE_OK) {
            char line[128];
            snprintf(line, sizeof(line), "ERR %s",
                     rc == RESP_PARSE_ERROR ? c->ps.err : "out of memory");
            conn_reply_error(c, line);
            c->quit = true; /* as Redis: the error, then the connection closes */
            break;
        }
        size_t argc = c->ps.argc;
        if (argc > io->arg_cap) {
            size_t cap = argc > 2 * io->arg_cap ? argc : 2 * io->arg_cap;
            const char **a = realloc(io->argv, cap * sizeof(*a));
            size_t *l = a ? realloc(io->lens, cap * sizeof(*l)) : NULL;
            if (a)
                io->argv = a;
            if (!l) {
                conn_close(c);
                return;
            }
            io->lens = l;
            io->arg_cap = cap;
        }
        for (size_t i = 0; i < argc; i++) {
            io->argv[i] = base + c->ps.argv[i].off;
            io->lens[i] = c->ps.argv[i].len;
        }
        if (argc > 0) {
            atomic_fetch_add_explicit(&srv.n_commands, 1, memory_order_relaxed);
            command_dispatch(c, argc, io->argv, io->lens);
            if (c->closed)
                return;
        }
        rbuf_consume(&c->in, used);
    }
    if (!c->closed)
        set_paused(c, over_bounds(c) && !c->quit);
}

int conn_write(struct conn *c)
{
    if (c->closed)
        return -1;
    while (c->out.len > c->out.off) {
        ssize_t n = send(c->fd, c->out.p + c->out.off, c->out.len - c->out.off, MSG_NOSIGNAL);
        if (n > 0) {
            rbuf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        return -1;
    }
    bool more = c->out.len > c->out.off;
    if (!more && c->quit && c->head == c->tail)
        return -1; /* QUIT or protocol error: everything said */
    if (!more && c->out.cap > 1024 * 1024) {
        rbuf_free(&c->out); /* give back what a large reply took */
    }
    if (!more && c->head < c->tail && !conn_slot(c, c->head)->pending) {
        conn_flush_ready(c); /* what waited for room (above out_soft) */
        if (c->out.len > c->out.off)
            return conn_write(c);
    }
    if (more != c->want_out) {
        c->want_out = more;
        io_watch(c->io, c);
    }
    if (c->paused && !over_bounds(c)) {
        set_paused(c, false);
        conn_process(c); /* what was read before the pause */
    }
    return 0;
}

/* --------------------------------------------------------------- close -- */

static void unsubscribe_all(struct conn *c)
{
    for (size_t i = 0; i < c->nchans; i++) {
        struct chname *n = c->chans[i];
        struct kmsg *m = kmsg_new(OP_UNSUB, 'c', n->name, n->len, NULL, 0);
        if (m) {
            m->conn = c;
            m->io = c->io;
            m->seq = NOSLOT;
            if (reki_send_key(srv.channels, m->data, m->klen, m) == REKI_OK) {
                c->refs++;
                free(n);
                continue;
            }
            kmsg_free(m);
        }
        /* The channel keeps c: c must outlive it, so c is never freed
         * before shutdown (a leak, only after an allocation failure). */
        c->refs++;
        free(n);
    }
    free(c->chans);
    c->chans = NULL;
    c->nchans = c->chans_cap = 0;
}

void conn_close(struct conn *c)
{
    if (c->closed)
        return;
    c->closed = true;
    close(c->fd);
    c->fd = -1;
    unsubscribe_all(c);
    for (uint64_t s = c->head; s < c->tail; s++)
        slot_clear(c, conn_slot(c, s));
    c->head = c->tail;
    rbuf_free(&c->in);
    rbuf_free(&c->out);
    resp_parser_free(&c->ps);
    io_unlink(c->io, c);
}

bool conn_maybe_free(struct conn *c)
{
    if (!c->closed || c->refs || c->dirty)
        return false;
    free(c->ring);
    free(c);
    return true;
}

void conn_destroy(struct conn *c)
{
    if (!c->closed) {
        c->closed = true;
        close(c->fd);
        for (uint64_t s = c->head; s < c->tail; s++)
            slot_clear(c, conn_slot(c, s));
        rbuf_free(&c->in);
        rbuf_free(&c->out);
        resp_parser_free(&c->ps);
        for (size_t i = 0; i < c->nchans; i++)
            free(c->chans[i]);
        free(c->chans);
    }
    free(c->ring);
    free(c);
}

/* -------------------------------------------------------- subscriptions -- */

static int name_cmp(const struct chname *a, const char *name, size_t len)
{
    size_t n = a->len < len ? a->len : len;
    int r = memcmp(a->name, name, n);
    if (r)
        return r;
    return a->len < len ? -1 : a->len > len;
}

/* The index of name, or where it would go (*found tells). */
static size_t chan_find(struct conn *c, const char *name, size_t len, bool *found)
{
    size_t lo = 0, hi = c->nchans;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = name_cmp(c->chans[mid], name, len);
        if (r == 0) {
            *found = true;
            return mid;
        }
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

size_t conn_nchans(struct conn *c)
{
    return c->nchans;
}

struct chname *conn_chan_at(struct conn *c, size_t i)
{
    return c->chans[i];
}

int conn_chan_add(struct conn *c, const char *name, size_t len)
{
    bool found;
    size_t at = chan_find(c, name, len, &found);
    if (found)
        return 0;
    if (c->nchans == c->chans_cap) {
        size_t cap = c->chans_cap ? c->chans_cap * 2 : 4;
        struct chname **a = realloc(c->chans, cap * sizeof(*a));
        if (!a)
            return -1;
        c->chans = a;
        c->chans_cap = cap;
    }
    struct chname *n = malloc(sizeof(*n) + len);
    if (!n)
        return -1;
    n->len = len;
    memcpy(n->name, name, len);
    memmove(c->chans + at + 1, c->chans + at, (c->nchans - at) * sizeof(*c->chans));
    c->chans[at] = n;
    c->nchans++;
    return 1;
}

int conn_chan_del(struct conn *c, const char *name, size_t len)
{
    bool found;
    size_t at = chan_find(c, name, len, &found);
    if (!found)
        return 0;
    free(c->chans[at]);
    memmove(c->chans + at, c->chans + at + 1, (c->nchans - at - 1) * sizeof(*c->chans));
    c->nchans--;
    return 1;
}
