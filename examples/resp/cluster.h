/*
 * Cluster mode of reki-resp (cluster.c): the keys' registry is one node of a
 * reki cluster (reki/cluster.h), so each key's actor lives on exactly one
 * node and any node answers for any key.
 *
 * A request for a key whose shard this node owns takes the single-node path
 * (reki_send_key).  Any other goes to the owner as bytes
 * (reki_cluster_send_key); the owner's `decode` makes it a `remote` kmsg
 * for the key's actor, whose answer goes back to the origin node as a node
 * message; the origin's node handler hands it to the I/O thread that sent
 * the request, which finds the request by its id in a table of requests in
 * flight (connection, slot, part, deadline) and completes the slot as a
 * local answer would.  A request not answered within 5 s fails with an
 * error.  Channels stay local to each node.
 *
 * Built only when libreki-cluster is (REKI_BUILD_CLUSTER); otherwise these
 * are stubs and --cluster-* options are unknown.
 */
#ifndef RESP_CLUSTER_H
#define RESP_CLUSTER_H

#include "server.h"

#ifdef RESP_CLUSTER

#define CLUSTER_USAGE                                                                        \
    "  --cluster-etcd URLS         cluster mode: etcd endpoints (comma-separated)\n"         \
    "  --cluster-node NAME         this node's unique name (required in cluster mode)\n"     \
    "  --cluster-listen HOST:PORT  where other nodes reach this one (required)\n"            \
    "  --cluster-advertise H:P     address told to the others (default: --cluster-listen)\n" \
    "  --cluster-prefix P          etcd key prefix (default /reki-resp/)\n"                  \
    "  --cluster-shards N          shards, the same on every node (default 256)\n"           \
    "  --cluster-ttl S             lease TTL in seconds (default 5)\n"

/* main.c: one --cluster-NAME VAL option (name without "--cluster-"); 0, or -1. */
int cluster_option(const char *name, const char *val);
/* main.c: join (after the registries exist, before serving); no-op without
 * --cluster-etcd.  0, or -1 (said on stderr). */
int cluster_join(void);
/* main.c: leave gracefully (the I/O threads stopped, the registry not yet freed). */
void cluster_leave(void);

/* commands.c: send m (a request for a data key, from an I/O thread) to the
 * key's actor, here or on its node.  REKI_OK: m is taken (in flight, or
 * forwarded and freed); else *err is the slot's error line and m is still the
 * caller's. */
int cluster_send(struct kmsg *m, const char **err);
/* kmsg.c: the answer of a remote request goes back to its node; frees m. */
void cluster_reply(struct kmsg *m);
/* io.c: an OP_REPLY reached I/O thread io; timeouts; the thread's end. */
void cluster_on_reply(struct io *io, struct kmsg *m);
int cluster_wait_ms(struct io *io); /* epoll_wait's timeout: -1 when nothing is in flight */
void cluster_expire(struct io *io);
void cluster_io_free(struct io *io);
/* info.c: the "# Cluster" section. */
void cluster_info(rbuf_t *t);
/* keys.c, in a key's start: the fencing token of its shard's claim (0: none
 * known), and whether v, taken from the store, was kept under that claim (if
 * so, its token is taken off the front of v). */
int64_t cluster_token(const void *key, size_t klen);
bool cluster_fresh(store_val_t *v, int64_t token);

#else /* a build without libreki-cluster: never in cluster mode */

#define CLUSTER_USAGE ""

static inline int cluster_option(const char *name, const char *val)
{
    (void)name;
    (void)val;
    return -1;
}
static inline int cluster_join(void)
{
    return 0;
}
static inline void cluster_leave(void)
{
}
static inline int cluster_send(struct kmsg *m, const char **err)
{
    (void)m;
    *err = "ERR not in cluster mode";
    return REKI_EINVAL;
}
static inline void cluster_reply(struct kmsg *m)
{
    kmsg_free(m);
}
static inline void cluster_on_reply(struct io *io, struct kmsg *m)
{
    (void)io;
    kmsg_free(m);
}
static inline int cluster_wait_ms(struct io *io)
{
    (void)io;
    return -1;
}
static inline void cluster_expire(struct io *io)
{
    (void)io;
}
static inline void cluster_io_free(struct io *io)
{
    (void)io;
}
static inline void cluster_info(rbuf_t *t)
{
    (void)t;
}
static inline int64_t cluster_token(const void *key, size_t klen)
{
    (void)key;
    (void)klen;
    return 0;
}
static inline bool cluster_fresh(store_val_t *v, int64_t token)
{
    (void)v;
    (void)token;
    return true;
}

#endif
#endif
