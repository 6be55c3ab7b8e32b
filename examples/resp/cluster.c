/*
 * Cluster mode of reki-resp (see cluster.h): data keys spread over nodes.
 *
 * Wire formats (little-endian; every length is checked on receipt, since
 * the bytes come from the network, and a bad buffer is dropped):
 *
 *   request, by key (reki_cluster_send_key, decoded on the key's node):
 *     0 version  1 op  2 flags  3 node name length n  4 u32 I/O thread
 *     8 u64 request id  16 i64 num  24 u32 registry key length k
 *     28 registry key (k), argument, node name (n)
 *   reply, node message tagged "r" (reki_cluster_send_node to the origin):
 *     0 version  1 rkind  2 flags  3 has reply bytes (0/1)  4 u32 I/O thread
 *     8 u64 request id  16 i64 num  24 reply bytes
 *
 * The slot, part and connection of a request never leave this node: they
 * stay in the table of the I/O thread that sent it, so a reply can only
 * complete the slot that waits for it, and a reply whose id is not there
 * (answered already, timed out, failed at send, or from another life of this
 * node) is ignored.  Ids start at a random value in each I/O thread.
 *
 * The table is a ring indexed by id: ids are handed out in order, and each
 * request's deadline is its send time + 5 s, so the oldest live entry is the
 * first to expire, and the ring holds at most 5 s of requests.
 *
 * Replies are sent from whatever thread returns the message (a worker, or
 * the registry's drop); they pass a gate (a read lock) that closes before
 * reki_cluster_leave, which must not run concurrently with other calls on
 * the cluster: answers given after that are not sent, and their requests
 * time out on their node.
 *
 * Values stay in the store of the node that served the key (keys.c): a key
 * whose shard moves starts empty on its new node.  So that a shard coming
 * back does not bring back values from before, keys.c keeps each value with
 * the fencing token of its shard's claim, and drops one kept under another.
 */
#include "cluster.h"

#include <pthread.h>
#include <reki/cluster.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "io.h"

#define WIRE_VERSION 1
#define REQ_HDR 28
#define REP_HDR 24
#define FRAME_MAX (16u << 20) /* reki_cluster_send_key's and send_node's limit */
#define TIMEOUT_MS 5000
#define REPLY_TAG "r"

static const char ERR_TIMEOUT[] = "ERR cluster: no reply from the key's node";
static const char ERR_NOMEM[] = "ERR out of memory";
static const char ERR_TOO_BIG[] =
    "-ERR cluster: reply too large to send between nodes (16 MiB at most)\r\n";

static struct {
    const char *etcd, *node, *listen, *advertise, *prefix;
    unsigned shards, ttl;
} opt = {.prefix = "/reki-resp/"};

/* The gate for replies (see the top). */
static pthread_rwlock_t gate = PTHREAD_RWLOCK_INITIALIZER;
static reki_cluster_t *gate_cl;
static atomic_bool gate_set; /* join's outcome is known (before: replies wait) */

/* Figures for INFO (the library counts the rest). */
static atomic_ullong n_direct, n_remote, n_timeouts, n_errors, n_bad;

/* ------------------------------------------------------------ options -- */

static int parse_uint(const char *s, unsigned long min, unsigned long max, unsigned *out)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || *end || s[0] == '-' || v < min || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

int cluster_option(const char *name, const char *val)
{
    if (strcmp(name, "etcd") == 0)
        srv.clustered = (opt.etcd = val) != NULL;
    else if (strcmp(name, "node") == 0)
        opt.node = val;
    else if (strcmp(name, "listen") == 0)
        opt.listen = val;
    else if (strcmp(name, "advertise") == 0)
        opt.advertise = val;
    else if (strcmp(name, "prefix") == 0)
        opt.prefix = val;
    else if (strcmp(name, "shards") == 0)
        return parse_uint(val, 1, 65536, &opt.shards);
    else if (strcmp(name, "ttl") == 0)
        return parse_uint(val, 1, 3600, &opt.ttl);
    else
        return -1;
    return 0;
}

/* ------------------------------------------------------ little-endian -- */

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ------------------------------------------------ on the key's node -- */

/* Request bytes -> a remote kmsg for the key's actor, or NULL (dropped). */
static void *decode(const void *bytes, size_t len, void *arg)
{
    (void)arg;
    const unsigned char *b = bytes;
    if (len < REQ_HDR || b[0] != WIRE_VERSION) {
        atomic_fetch_add_explicit(&n_bad, 1, memory_order_relaxed);
        return NULL;
    }
    uint8_t op = b[1], nodelen = b[3];
    size_t klen = get32(b + 24), body = len - REQ_HDR;
    const unsigned char *key = b + REQ_HDR;
    if (op < OP_GET || op > OP_STRLEN || nodelen == 0 || klen == 0 || klen > REKI_KEY_MAX ||
        klen > body || nodelen > body - klen || key[0] != 'k') {
        atomic_fetch_add_explicit(&n_bad, 1, memory_order_relaxed);
        return NULL;
    }
    size_t alen = body - klen - nodelen;
    /* The argument and the node name are contiguous: copied as one, then the
     * name is the argument's tail (kmsg.c's data layout: key, argument). */
    struct kmsg *m = kmsg_new(op, 'k', key + 1, klen - 1, key + klen, alen + nodelen);
    if (!m)
        return NULL;
    m->alen = alen;
    m->remote = 1;
    m->flags = b[2] & (SET_NX | SET_XX | SET_GET);
    m->rio = get32(b + 4);
    m->rid = get64(b + 8);
    m->num = (int64_t)get64(b + 16);
    m->rnode = nodelen;
    return m;
}

void cluster_reply(struct kmsg *m)
{
    char node[256];
    memcpy(node, m->data + m->klen + m->alen, m->rnode);
    node[m->rnode] = 0;
    const char *out = m->out;
    size_t outlen = out ? m->outlen : 0;
    if (m->rkind == R_BYTES && outlen > FRAME_MAX - REP_HDR) {
        out = ERR_TOO_BIG;
        outlen = sizeof(ERR_TOO_BIG) - 1;
    }
    unsigned char small[REP_HDR + 128];
    size_t len = REP_HDR + (m->rkind == R_BYTES ? outlen : 0);
    unsigned char *b = len <= sizeof(small) ? small : malloc(len);
    if (b) {
        b[0] = WIRE_VERSION;
        b[1] = m->rkind;
        b[2] = m->flags & KMSG_DROPPED;
        b[3] = m->rkind == R_BYTES && out; /* else the origin says "out of memory" */
        put32(b + 4, m->rio);
        put64(b + 8, m->rid);
        put64(b + 16, (uint64_t)m->num);
        if (len > REP_HDR)
            memcpy(b + REP_HDR, out, outlen);
        /* A message returned while join runs (a request from a node that
         * already knows this one's shards) waits for the cluster. */
        while (!atomic_load_explicit(&gate_set, memory_order_acquire))
            usleep(1000);
        pthread_rwlock_rdlock(&gate);
        if (gate_cl)
            (void)reki_cluster_send_node(gate_cl, node, REPLY_TAG, 1, b, len); /* else: lost */
        pthread_rwlock_unlock(&gate);
        if (b != small)
            free(b);
    }
    kmsg_free(m);
}

/* ------------------------------------------------- on the origin node -- */

/* A reply from a key's node (a receiver thread, or this node's own thread
 * when it served the key itself): to the I/O thread that waits for it. */
static void on_node_message(const void *tag, size_t taglen, const void *bytes, size_t len,
                            void *arg)
{
    (void)arg;
    const unsigned char *b = bytes;
    uint32_t io = len >= REP_HDR ? get32(b + 4) : UINT32_MAX;
    if (taglen != 1 || memcmp(tag, REPLY_TAG, 1) != 0 || len < REP_HDR || b[0] != WIRE_VERSION ||
        (b[1] != R_BYTES && b[1] != R_INT) || b[3] > 1 || (!b[3] && len != REP_HDR) ||
        io >= srv.o.io_threads) {
        atomic_fetch_add_explicit(&n_bad, 1, memory_order_relaxed);
        return;
    }
    struct kmsg *m = kmsg_new(OP_REPLY, 'r', "", 0, NULL, 0);
    if (!m)
        return; /* the request times out */
    if (b[3] && kmsg_reply(m, b + REP_HDR, len - REP_HDR) != 0) {
        kmsg_free(m);
        return;
    }
    m->rkind = b[1];
    m->flags = b[2] & KMSG_DROPPED;
    m->rid = get64(b + 8);
    m->num = (int64_t)get64(b + 16);
    if (reki_send(srv.rt, io_pid(srv.io[io]), m) != REKI_OK)
        kmsg_free(m);
}

/* Requests in flight from one I/O thread (see the top). */
struct req {
    struct conn *conn; /* NULL: no longer in flight */
    uint64_t seq;
    uint64_t deadline; /* ms */
    uint32_t part;
};

struct reqs {
    struct req *ring;
    uint64_t cap;    /* a power of two */
    uint64_t lo, hi; /* ids [lo, hi) were handed out; lo's entry is live */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct reqs *reqs_new(void)
{
    struct reqs *t = calloc(1, sizeof(*t));
    if (!t || !(t->ring = calloc(64, sizeof(*t->ring)))) {
        free(t);
        return NULL;
    }
    t->cap = 64;
    uint64_t start;
    if (getrandom(&start, sizeof(start), 0) != (ssize_t)sizeof(start))
        start = (uint64_t)time(NULL) << 20;
    t->lo = t->hi = start;
    return t;
}

static struct req *req_at(struct reqs *t, uint64_t id)
{
    return &t->ring[id & (t->cap - 1)];
}

/* The live entry of id, or NULL (ids compare modulo 2^64). */
static struct req *req_find(struct reqs *t, uint64_t id)
{
    if (id - t->lo >= t->hi - t->lo)
        return NULL;
    struct req *r = req_at(t, id);
    return r->conn ? r : NULL;
}

static void reqs_trim(struct reqs *t)
{
    while (t->lo != t->hi && !req_at(t, t->lo)->conn)
        t->lo++;
}

/* A new entry (not yet live: conn NULL) and its id; NULL: no memory. */
static struct req *req_add(struct reqs *t, uint64_t *id)
{
    if (t->hi - t->lo == t->cap) {
        struct req *r = calloc(t->cap * 2, sizeof(*r));
        if (!r)
            return NULL;
        for (uint64_t i = t->lo; i != t->hi; i++)
            r[i & (t->cap * 2 - 1)] = *req_at(t, i);
        free(t->ring);
        t->ring = r;
        t->cap *= 2;
    }
    *id = t->hi++;
    struct req *r = req_at(t, *id);
    memset(r, 0, sizeof(*r));
    return r;
}

static const char *route_error(int rc)
{
    switch (rc) {
    case REKI_ENOTFOUND: return "ERR cluster: the key's shard is changing owner, try again";
    case REKI_ESHUTDOWN: return "ERR cluster: this node is not serving (lease lost, or leaving)";
    case REKI_EFULL: return "ERR cluster: the queue to the key's node is full";
    case REKI_ETIMEDOUT:
    case REKI_EDEAD: return "ERR cluster: etcd is unreachable";
    case REKI_ENOMEM: return ERR_NOMEM;
    default: return "ERR cluster: the request could not be routed";
    }
}

int cluster_send(struct kmsg *m, const char **err)
{
    char owner[256];
    bool local = false;
    if (reki_cluster_owner(srv.cluster, m->data, m->klen, owner, sizeof(owner), &local) ==
            REKI_OK &&
        local) {
        int rc = reki_send_key(srv.keys, m->data, m->klen, m);
        if (rc != REKI_OK)
            *err = send_error(rc);
        else
            atomic_fetch_add_explicit(&n_direct, 1, memory_order_relaxed);
        return rc;
    }
    struct io *io = m->io;
    size_t nodelen = strlen(opt.node);
    if (m->alen > FRAME_MAX - REQ_HDR - m->klen - nodelen) {
        *err = "ERR cluster: value too large to send to the key's node (16 MiB at most)";
        return REKI_EINVAL;
    }
    size_t len = REQ_HDR + m->klen + m->alen + nodelen;
    unsigned char *b = malloc(len);
    uint64_t id;
    struct req *r = NULL;
    if (!b || (!io->reqs && !(io->reqs = reqs_new())) || !(r = req_add(io->reqs, &id))) {
        free(b);
        *err = ERR_NOMEM;
        return REKI_ENOMEM;
    }
    b[0] = WIRE_VERSION;
    b[1] = m->op;
    b[2] = m->flags;
    b[3] = (unsigned char)nodelen;
    put32(b + 4, io->idx);
    put64(b + 8, id);
    put64(b + 16, (uint64_t)m->num);
    put32(b + 24, m->klen);
    memcpy(b + REQ_HDR, m->data, m->klen + m->alen);
    memcpy(b + REQ_HDR + m->klen + m->alen, opt.node, nodelen);
    /* Live before the send: a reply cannot overtake it (this thread reads
     * replies only later), but the entry must exist when it comes. */
    r->conn = m->conn;
    r->seq = m->seq;
    r->part = m->part;
    r->deadline = now_ms() + TIMEOUT_MS;
    int rc = reki_cluster_send_key(srv.cluster, m->data, m->klen, b, len);
    free(b);
    if (rc != REKI_OK) {
        /* Not in flight.  If this node decoded it and its actor could not take
         * it, the drop's reply is on its way to the inbox: with the entry
         * dead, that reply is ignored. */
        r->conn = NULL; /* r has not moved: only this thread adds entries */
        reqs_trim(io->reqs);
        atomic_fetch_add_explicit(&n_errors, 1, memory_order_relaxed);
        *err = route_error(rc);
        return rc;
    }
    atomic_fetch_add_explicit(&n_remote, 1, memory_order_relaxed);
    kmsg_free(m);
    return REKI_OK;
}

void cluster_on_reply(struct io *io, struct kmsg *m)
{
    struct req *r = io->reqs ? req_find(io->reqs, m->rid) : NULL;
    if (!r) { /* timed out, or failed when sent */
        kmsg_free(m);
        return;
    }
    m->conn = r->conn; /* rid is read: the union's other half is free */
    m->io = io;
    m->seq = r->seq;
    m->part = r->part;
    r->conn = NULL;
    reqs_trim(io->reqs);
    conn_on_kmsg(m);
}

int cluster_wait_ms(struct io *io)
{
    struct reqs *t = io->reqs;
    if (!t || t->lo == t->hi)
        return -1;
    uint64_t now = now_ms(), deadline = req_at(t, t->lo)->deadline;
    return deadline <= now ? 0 : (int)(deadline - now) + 1;
}

void cluster_expire(struct io *io)
{
    struct reqs *t = io->reqs;
    if (!t || t->lo == t->hi)
        return;
    uint64_t now = now_ms();
    for (; t->lo != t->hi; t->lo++) {
        struct req *r = req_at(t, t->lo);
        if (r->conn && r->deadline > now)
            break;
        if (r->conn) {
            struct conn *c = r->conn;
            r->conn = NULL;
            atomic_fetch_add_explicit(&n_timeouts, 1, memory_order_relaxed);
            conn_on_fail(c, r->seq, ERR_TIMEOUT);
        }
    }
}

void cluster_io_free(struct io *io)
{
    if (io->reqs)
        free(io->reqs->ring);
    free(io->reqs);
    io->reqs = NULL;
}

/* -------------------------------------------------------- join, leave -- */

static void open_gate(reki_cluster_t *cl)
{
    pthread_rwlock_wrlock(&gate);
    gate_cl = cl;
    pthread_rwlock_unlock(&gate);
    atomic_store_explicit(&gate_set, true, memory_order_release);
}

int cluster_join(void)
{
    if (!opt.etcd) {
        open_gate(NULL);
        if (!opt.node && !opt.listen && !opt.advertise)
            return 0;
        fprintf(stderr, "reki-resp: --cluster-* options need --cluster-etcd\n");
        return -1;
    }
    if (!opt.node || !opt.listen) {
        open_gate(NULL);
        fprintf(stderr, "reki-resp: cluster mode needs --cluster-node and --cluster-listen\n");
        return -1;
    }
    reki_cluster_opts_t co = {.etcd = opt.etcd,
                              .prefix = opt.prefix,
                              .node = opt.node,
                              .listen = opt.listen,
                              .advertise = opt.advertise,
                              .shards = opt.shards,
                              .lease_ttl_s = opt.ttl,
                              .decode = decode};
    reki_cluster_t *cl;
    int rc = reki_cluster_join(srv.keys, &co, &cl);
    if (rc != REKI_OK) {
        open_gate(NULL);
        fprintf(stderr, "reki-resp: joining the cluster at %s: %s\n", opt.etcd,
                rc == REKI_EDEAD       ? "no etcd endpoint reachable"
                : rc == REKI_ETIMEDOUT ? "etcd did not answer in time"
                : rc == REKI_EINVAL    ? "invalid options (a node name with spaces, an address "
                                         "that is not host:port or cannot be listened on, "
                                         "--cluster-shards unlike the cluster's)"
                                       : reki_strerror(rc));
        return -1;
    }
    (void)reki_cluster_set_node_handler(cl, on_node_message, NULL);
    srv.cluster = cl;
    open_gate(cl);
    fprintf(stderr, "reki-resp: cluster node %s, listening for nodes on %s\n", opt.node,
            opt.listen);
    return 0;
}

void cluster_leave(void)
{
    if (!srv.cluster)
        return;
    open_gate(NULL); /* no call on the cluster from here on but leave's */
    reki_cluster_leave(srv.cluster);
    srv.cluster = NULL;
}

/* ------------------------------------------------- values in the store -- */

int64_t cluster_token(const void *key, size_t klen)
{
    while (!atomic_load_explicit(&gate_set, memory_order_acquire))
        usleep(1000); /* a start while join runs */
    int64_t token = 0;
    pthread_rwlock_rdlock(&gate);
    if (!gate_cl || reki_cluster_token(gate_cl, key, klen, &token) != REKI_OK)
        token = 0;
    pthread_rwlock_unlock(&gate);
    return token;
}

bool cluster_fresh(store_val_t *v, int64_t token)
{
    int64_t kept;
    if (v->len < sizeof(kept))
        return false;
    memcpy(&kept, v->val, sizeof(kept));
    if (!token || kept != token)
        return false;
    v->len -= sizeof(kept);
    memmove(v->val, v->val + sizeof(kept), v->len);
    return true;
}

/* ---------------------------------------------------------------- INFO -- */

void cluster_info(rbuf_t *t)
{
    reki_cluster_stats_t st;
    if (!srv.cluster || reki_cluster_stats(srv.cluster, &st) != REKI_OK)
        return;
    char tmp[1024];
    int n = snprintf(
        tmp, sizeof(tmp),
        "\r\n# Cluster\r\ncluster_enabled:1\r\ncluster_node:%s\r\ncluster_shards_owned:%u\r\n"
        "cluster_nodes:%u\r\ncluster_local:%llu\r\ncluster_forwarded:%llu\r\n"
        "cluster_received:%llu\r\ncluster_rerouted:%llu\r\ncluster_lost:%llu\r\n"
        "cluster_claims:%llu\r\ncluster_releases:%llu\r\ncluster_lease_losses:%llu\r\n"
        "cluster_requests_direct:%llu\r\ncluster_requests_remote:%llu\r\n"
        "cluster_request_timeouts:%llu\r\ncluster_request_errors:%llu\r\n"
        "cluster_bad_messages:%llu\r\n",
        opt.node, st.shards_owned, st.nodes, (unsigned long long)st.local,
        (unsigned long long)st.forwarded, (unsigned long long)st.received,
        (unsigned long long)st.rerouted, (unsigned long long)st.lost, (unsigned long long)st.claims,
        (unsigned long long)st.releases, (unsigned long long)st.lease_losses,
        atomic_load(&n_direct), atomic_load(&n_remote), atomic_load(&n_timeouts),
        atomic_load(&n_errors), atomic_load(&n_bad));
    if (n > 0)
        rbuf_put(t, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}
