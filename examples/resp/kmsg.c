/*
 * Messages to key and channel actors (struct kmsg, server.h): one
 * allocation carries the request's key and argument, and comes back as the
 * reply.  Whatever happens to it, it returns to its I/O thread once.
 */
#include <stdlib.h>
#include <string.h>

#include "cluster.h"

struct kmsg *kmsg_new(uint8_t op, char tag, const void *key, size_t klen, const void *arg,
                      size_t alen)
{
    if (alen > SIZE_MAX - sizeof(struct kmsg) - klen - 1)
        return NULL;
    struct kmsg *m = malloc(sizeof(*m) + 1 + klen + alen);
    if (!m)
        return NULL;
    m->op = op;
    m->flags = 0;
    m->rkind = R_BYTES;
    m->remote = 0;
    m->part = 0;
    m->conn = NULL;
    m->io = NULL;
    m->seq = 0;
    m->num = 0;
    m->klen = (uint32_t)klen + 1;
    m->alen = alen;
    m->out = NULL;
    m->outlen = 0;
    m->data[0] = tag;
    memcpy(m->data + 1, key, klen);
    if (alen)
        memcpy(m->data + 1 + klen, arg, alen);
    return m;
}

static void release_out(struct kmsg *m)
{
    if (m->out && m->out != m->inl)
        free(m->out);
    m->out = NULL;
    m->outlen = 0;
}

void kmsg_free(struct kmsg *m)
{
    if (!m)
        return;
    release_out(m);
    free(m);
}

int kmsg_reply(struct kmsg *m, const void *bytes, size_t len)
{
    release_out(m);
    char *o = len <= KMSG_INLINE ? m->inl : malloc(len);
    if (!o)
        return -1;
    memcpy(o, bytes, len);
    m->out = o;
    m->outlen = len;
    m->rkind = R_BYTES;
    return 0;
}

int kmsg_reply_bulk(struct kmsg *m, const void *s, size_t n)
{
    if (!s)
        return kmsg_reply(m, "$-1\r\n", 5);
    release_out(m);
    size_t need = resp_bulk_size(n);
    char *o = need <= KMSG_INLINE ? m->inl : malloc(need);
    if (!o)
        return -1;
    m->out = o;
    m->outlen = resp_bulk_into(o, s, n);
    m->rkind = R_BYTES;
    return 0;
}

void kmsg_return(struct kmsg *m)
{
    if (m->remote) { /* cluster mode: back to the node that sent it */
        cluster_reply(m);
        return;
    }
    if (reki_send(srv.rt, io_pid(m->io), m) != REKI_OK)
        kmsg_free(m); /* only once the I/O thread's inbox is gone: shutdown */
}

void kmsg_dropped(void *msg)
{
    struct kmsg *m = msg;
    static const char err[] = "-ERR the key's actor is not available\r\n";
    if (m->op == OP_PUSH || m->op == OP_RELEASE)
        abort(); /* never sent by key */
    if (kmsg_reply(m, err, sizeof(err) - 1) != 0) {
        m->out = NULL; /* the I/O thread answers with a generic error */
        m->outlen = 0;
    }
    m->flags |= KMSG_DROPPED;
    kmsg_return(m);
}

void push_unref(struct push *p)
{
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
        free(p);
}
