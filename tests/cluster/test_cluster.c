/*
 * The cluster API (include/reki/cluster.h) against a real etcd: each test of
 * the `cluster` suite starts its own single-member etcd (etcd_fixture.c: a
 * guardian process owns it, kills it by pid and removes its data dir however
 * the test's process ends) and joins one or two nodes to it, each node a
 * runtime and a registry of virtual actors of its own, in this process.  The
 * `offline` suite needs no etcd: join's argument checks, against an
 * endpoint nothing listens on (a check that let bad options through would
 * answer REKI_EDEAD, not REKI_EINVAL).
 *
 * The partition tests put an in-process TCP proxy between one node and
 * etcd, and cut it (requests then hang until the client's timeout, as
 * across a real partition), so that only that node loses its lease.
 *
 * Callbacks run on the library's threads, where a Criterion assertion would
 * unwind the wrong stack: they count what they see in their node's struct,
 * and the test thread asserts on the counts.  Every wait is bounded; a test
 * that runs out of one fails.  Leases are 2 s, so a lease deadline comes at
 * most ttl - margin = 1.6 s after etcd stops answering (docs/cluster.md).
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "etcd.h"
#include "etcd_fixture.h"
#include "reki/cluster.h"
#include "reki/reki.h"

#define NKEYS 256
#define TTL_S 2
#define TTL_MS (TTL_S * 1000)
#define WIRE_MAGIC 0x6b657269u

static int64_t now_ms(void)
{
    return etcd_fixture_now_ms();
}

static void sleep_ms(int64_t ms)
{
    if (ms > 0)
        usleep((useconds_t)ms * 1000);
}

/* Polls `expr` every 5 ms until it holds or `ms` ran out; its last value in `ok`. */
#define WAIT_UNTIL(ok, expr, ms)                              \
    do {                                                      \
        int64_t wait_deadline_ = now_ms() + (ms);             \
        while (!((ok) = (expr)) && now_ms() < wait_deadline_) \
            usleep(5000);                                     \
    } while (0)

/* --------------------------------------------------------------- nodes -- */

/* One node: a runtime, a registry of virtual actors, and what its callbacks saw. */
struct tnode {
    const char *name;
    char listen[32];
    reki_rt_t *rt;
    reki_registry_t *reg;
    _Atomic(reki_cluster_t *) cl;
    atomic_int joining;   /* a join is running or done: start waits for cl */
    int slow_ms;          /* every handle sleeps this long (dedicated actors) */
    uint32_t gate_queue;  /* max_queue of the "gate" key's actor */
    atomic_int gate_shut; /* the "gate" key's handle waits while set */
    atomic_int decodes, starts, handled, terms, term_shutdown, term_other, drops, misrouted,
        bad_token, gate_in;
    atomic_int handled_key[NKEYS], starts_key[NKEYS];
    _Atomic int64_t start_token[NKEYS]; /* reki_cluster_token, read by each key's start */
    _Atomic int64_t last_handle_ms;     /* when the latest handle began */
    _Atomic int64_t start_ms[NKEYS];    /* when the key's latest start began */
    _Atomic int64_t term_ms[NKEYS];     /* when the key's latest terminate returned */
    _Atomic uintptr_t last_decoded, last_handled, last_dropped;
    pthread_mutex_t mu; /* the byte copies below */
    unsigned char dec_bytes[64], hnd_bytes[64], nm_tag[64], nm_bytes[64];
    size_t dec_len, hnd_len, nm_taglen, nm_len;
    atomic_int node_msgs; /* node messages received */
    _Atomic(pthread_t) nm_thread;
};

/* What decode makes of bytes: a copy, and the key index if they are a wire. */
struct tmsg {
    struct tnode *node; /* whose decode made it (drop has no argument) */
    int idx, from;
    size_t len;
    unsigned char bytes[];
};

struct wire {
    uint32_t magic;
    int32_t idx, from;
    uint32_t seq;
};

struct actor {
    struct tnode *n;
    int idx; /* the key k<idx>, or -1 */
    bool gate;
};

/* "k<digits>" below NKEYS: its index; else -1. */
static int key_index(const void *key, size_t keylen)
{
    const char *k = key;
    if (keylen < 2 || keylen > 4 || k[0] != 'k')
        return -1;
    int v = 0;
    for (size_t i = 1; i < keylen; i++) {
        if (k[i] < '0' || k[i] > '9')
            return -1;
        v = v * 10 + (k[i] - '0');
    }
    return v < NKEYS ? v : -1;
}

static void copy_bytes(struct tnode *n, unsigned char *dst, size_t *dlen, const void *b, size_t len)
{
    pthread_mutex_lock(&n->mu);
    memcpy(dst, b, len < 64 ? len : 64);
    *dlen = len;
    pthread_mutex_unlock(&n->mu);
}

static void on_node_msg(const void *tag, size_t taglen, const void *bytes, size_t len, void *arg)
{
    struct tnode *n = arg;
    copy_bytes(n, n->nm_tag, &n->nm_taglen, tag, taglen);
    copy_bytes(n, n->nm_bytes, &n->nm_len, bytes, len);
    atomic_store(&n->nm_thread, pthread_self());
    atomic_fetch_add(&n->node_msgs, 1);
}

static void *decode(const void *bytes, size_t len, void *arg)
{
    struct tnode *n = arg;
    atomic_fetch_add(&n->decodes, 1);
    copy_bytes(n, n->dec_bytes, &n->dec_len, bytes, len);
    if (len == 3 && memcmp(bytes, "nil", 3) == 0)
        return NULL; /* send_key must answer REKI_EINVAL */
    struct tmsg *m = malloc(sizeof(*m) + len);
    if (!m)
        return NULL;
    *m = (struct tmsg){.node = n, .idx = -1, .from = -1, .len = len};
    if (len)
        memcpy(m->bytes, bytes, len);
    struct wire w;
    if (len == sizeof(w) && (memcpy(&w, bytes, sizeof(w)), w.magic == WIRE_MAGIC)) {
        m->idx = w.idx;
        m->from = w.from;
    }
    atomic_store(&n->last_decoded, (uintptr_t)m);
    return m;
}

static void drop_msg(void *msg)
{
    struct tmsg *m = msg;
    atomic_store(&m->node->last_dropped, (uintptr_t)m);
    atomic_fetch_add(&m->node->drops, 1);
    free(m);
}

static reki_next_t handle(void *state, void *msg, reki_pid_t self)
{
    (void)self;
    struct actor *a = state;
    struct tnode *n = a->n;
    struct tmsg *m = msg;
    atomic_store(&n->last_handle_ms, now_ms());
    atomic_fetch_add(&n->handled, 1);
    if (a->idx >= 0)
        atomic_fetch_add(&n->handled_key[a->idx], 1);
    if (m->idx >= 0 && m->idx != a->idx)
        atomic_fetch_add(&n->misrouted, 1);
    copy_bytes(n, n->hnd_bytes, &n->hnd_len, m->bytes, m->len);
    atomic_store(&n->last_handled, (uintptr_t)m);
    if (a->gate) {
        atomic_fetch_add(&n->gate_in, 1);
        while (atomic_load(&n->gate_shut))
            usleep(1000);
    }
    if (n->slow_ms)
        sleep_ms(n->slow_ms);
    free(m);
    return REKI_CONTINUE;
}

static void terminate(void *state, int reason)
{
    struct actor *a = state;
    if (a->idx >= 0)
        atomic_store(&a->n->term_ms[a->idx], now_ms());
    atomic_fetch_add(reason == REKI_EXIT_SHUTDOWN ? &a->n->term_shutdown : &a->n->term_other, 1);
    atomic_fetch_add(&a->n->terms, 1); /* last: terminate has returned once counted */
    free(a);
}

static const reki_behavior_t behavior = {
    .handle = handle, .terminate = terminate, .drop = drop_msg};

static int start(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    struct tnode *n = arg;
    struct actor *a = calloc(1, sizeof(*a));
    if (!a)
        return REKI_ENOMEM;
    *a = (struct actor){.n = n, .idx = key_index(key, keylen)};
    if (a->idx >= 0)
        atomic_store(&n->start_ms[a->idx], now_ms());
    a->gate = keylen == 4 && memcmp(key, "gate", 4) == 0;
    /* While joined, the key's shard is ours during its start: it has a
     * token.  A start can come before join has returned (a forwarded
     * message), so wait for the cluster a little. */
    reki_cluster_t *cl = atomic_load(&n->cl);
    for (int i = 0; !cl && atomic_load(&n->joining) && i < 5000; i++) {
        usleep(1000);
        cl = atomic_load(&n->cl);
    }
    if (cl) {
        int64_t token = 0;
        if (reki_cluster_token(cl, key, keylen, &token) != REKI_OK || token <= 0)
            atomic_fetch_add(&n->bad_token, 1);
        if (a->idx >= 0)
            atomic_store(&n->start_token[a->idx], token);
    }
    reki_spawn_opts_t so = {.flags = n->slow_ms || a->gate ? REKI_SPAWN_DEDICATED : 0,
                            .max_queue = a->gate ? n->gate_queue : 0};
    int rc = reki_spawn(rt, &behavior, a, &so, out);
    if (rc < 0) {
        free(a);
        return rc;
    }
    atomic_fetch_add(&n->starts, 1);
    if (a->idx >= 0)
        atomic_fetch_add(&n->starts_key[a->idx], 1);
    return rc;
}

static void node_init(struct tnode *n, const char *name)
{
    memset(n, 0, sizeof(*n));
    n->name = name;
    pthread_mutex_init(&n->mu, NULL);
    reki_rt_opts_t ro = {.workers = 4};
    cr_assert_eq(reki_rt_new(&ro, &n->rt), REKI_OK);
    reki_registry_opts_t go = {.start = start, .start_arg = n, .drop = drop_msg};
    cr_assert_eq(reki_registry_new(n->rt, &go, &n->reg), REKI_OK);
    snprintf(n->listen, sizeof(n->listen), "127.0.0.1:%d", etcd_fixture_free_port());
}

static reki_cluster_opts_t node_opts(struct tnode *n, const char *etcd, const char *prefix,
                                     unsigned shards)
{
    return (reki_cluster_opts_t){.etcd = etcd,
                                 .prefix = prefix,
                                 .node = n->name,
                                 .listen = n->listen,
                                 .shards = shards,
                                 .lease_ttl_s = TTL_S,
                                 .decode = decode,
                                 .decode_arg = n};
}

static int node_join_opts(struct tnode *n, const reki_cluster_opts_t *o)
{
    reki_cluster_t *cl = NULL;
    atomic_store(&n->joining, 1);
    int rc = reki_cluster_join(n->reg, o, &cl);
    if (rc == REKI_OK)
        atomic_store(&n->cl, cl);
    else
        atomic_store(&n->joining, 0);
    return rc;
}

static void node_join(struct tnode *n, const char *etcd, const char *prefix, unsigned shards)
{
    reki_cluster_opts_t o = node_opts(n, etcd, prefix, shards);
    int rc = node_join_opts(n, &o);
    cr_assert_eq(rc, REKI_OK, "%s joins %s with %u shards: %s", n->name, prefix, shards,
                 reki_strerror(rc));
}

static void node_leave(struct tnode *n)
{
    reki_cluster_t *cl = atomic_load(&n->cl);
    reki_cluster_leave(cl);
    atomic_store(&n->joining, 0);
    atomic_store(&n->cl, NULL);
}

static void node_free(struct tnode *n)
{
    if (atomic_load(&n->cl))
        node_leave(n);
    reki_registry_free(n->reg);
    reki_rt_free(n->rt);
    pthread_mutex_destroy(&n->mu);
}

static reki_cluster_stats_t stats_of(struct tnode *n)
{
    reki_cluster_stats_t st;
    cr_assert_eq(reki_cluster_stats(atomic_load(&n->cl), &st), REKI_OK);
    return st;
}

static unsigned owned(struct tnode *n)
{
    return stats_of(n).shards_owned;
}

static int key_of(int idx, char *key, size_t size)
{
    return snprintf(key, size, "k%d", idx);
}

static int send_wire(struct tnode *n, int idx, int from, uint32_t seq)
{
    char key[16];
    int kl = key_of(idx, key, sizeof(key));
    struct wire w = {WIRE_MAGIC, idx, from, seq};
    return reki_cluster_send_key(atomic_load(&n->cl), key, (size_t)kl, &w, sizeof(w));
}

/* A message for reki_send_key on the registry itself (no cluster). */
static int send_local(struct tnode *n, int idx)
{
    char key[16];
    int kl = key_of(idx, key, sizeof(key));
    struct tmsg *m = calloc(1, sizeof(*m));
    cr_assert_not_null(m);
    *m = (struct tmsg){.node = n, .idx = idx, .from = -1};
    int rc = reki_send_key(n->reg, key, (size_t)kl, m);
    if (rc != REKI_OK)
        free(m);
    return rc;
}

/* The owner of k<idx> as n sees it: 0 unknown, 1 n itself, 2 the other node `o`, -1 bad. */
static int owner_of(struct tnode *n, struct tnode *o, int idx)
{
    char key[16], name[64];
    int kl = key_of(idx, key, sizeof(key));
    bool local = false;
    int rc = reki_cluster_owner(atomic_load(&n->cl), key, (size_t)kl, name, sizeof(name), &local);
    if (rc == REKI_ENOTFOUND)
        return 0;
    if (rc != REKI_OK)
        return -1;
    if (local && strcmp(name, n->name) == 0)
        return 1;
    if (!local && o && strcmp(name, o->name) == 0)
        return 2;
    return -1;
}

/* Both name one of the two as k<i>'s owner, the same one, for i < nkeys. */
static bool agree(struct tnode *a, struct tnode *b, int nkeys)
{
    for (int i = 0; i < nkeys; i++) {
        int oa = owner_of(a, b, i), ob = owner_of(b, a, i);
        if (!((oa == 1 && ob == 2) || (oa == 2 && ob == 1)))
            return false;
    }
    return true;
}

/* Two nodes settled: each sees both, they own every shard between them,
 * each some, they agree on the owner of k0..k<nkeys-1>, and none of that
 * (nor a claim or release count) changed for 1.5 s.  "Each some" holds
 * only if rendezvous hashing prefers each node for some shard: with n
 * shards, both nodes' names and a random cluster key, one node is preferred
 * for all of them with probability 2^(1-n).  Tests that call this use 32
 * shards (8 failed 1 run in 128: CI saw it). */
static bool settled(struct tnode *a, struct tnode *b, unsigned shards, int nkeys, int64_t within)
{
    int64_t deadline = now_ms() + within, since = -1;
    uint64_t last[4] = {0, 0, 0, 0};
    while (now_ms() < deadline) {
        reki_cluster_stats_t sa = stats_of(a), sb = stats_of(b);
        uint64_t cur[4] = {sa.claims, sa.releases, sb.claims, sb.releases};
        bool ok = sa.nodes == 2 && sb.nodes == 2 && sa.shards_owned > 0 && sb.shards_owned > 0 &&
                  sa.shards_owned + sb.shards_owned == shards && agree(a, b, nkeys);
        if (!ok || memcmp(cur, last, sizeof(cur)) != 0)
            since = -1;
        else if (since < 0)
            since = now_ms();
        memcpy(last, cur, sizeof(cur));
        if (since >= 0 && now_ms() - since >= 1500)
            return true;
        if (now_ms() + 50 >= deadline) { /* the state it gave up in, for the failure */
            int unknown = 0, disagree = 0;
            for (int i = 0; i < nkeys; i++) {
                int oa = owner_of(a, b, i), ob = owner_of(b, a, i);
                unknown += oa == 0 || ob == 0;
                disagree += !((oa == 1 && ob == 2) || (oa == 2 && ob == 1));
            }
            fprintf(stderr,
                    "not settled: a nodes %u owns %u claims %" PRIu64 " releases %" PRIu64
                    " losses %" PRIu64 "; b nodes %u owns %u claims %" PRIu64 " releases %" PRIu64
                    " losses %" PRIu64 "; keys: %d unknown, %d not agreed\n",
                    sa.nodes, sa.shards_owned, sa.claims, sa.releases, sa.lease_losses, sb.nodes,
                    sb.shards_owned, sb.claims, sb.releases, sb.lease_losses, unknown, disagree);
        }
        usleep(50000);
    }
    return false;
}

static bool lookup(struct tnode *n, int idx)
{
    char key[16];
    int kl = key_of(idx, key, sizeof(key));
    reki_pid_t pid;
    return reki_lookup(n->reg, key, (size_t)kl, &pid) == REKI_OK;
}

/* ---------------------------------------------------------------- etcd -- */

static struct etcd_fixture etcd;

/* Nodes a and b started, joined under prefix (a through etcd_a, b through
 * the test's etcd) and settled on one map of `shards` shards. */
static void two_nodes(struct tnode *a, struct tnode *b, const char *etcd_a, const char *prefix,
                      unsigned shards, int nkeys)
{
    node_init(a, "node-a");
    node_init(b, "node-b");
    node_join(a, etcd_a, prefix, shards);
    node_join(b, etcd.url, prefix, shards);
    cr_assert(settled(a, b, shards, nkeys, 20000), "the two nodes settle on one map");
}

static void etcd_up(void)
{
    etcd_fixture_start(&etcd);
}

static void etcd_down(void)
{
    etcd_fixture_stop(&etcd);
}

/* Keys in etcd under prefix. */
static size_t etcd_keys(const char *prefix)
{
    reki__etcd_t *c = NULL;
    cr_assert_eq(reki__etcd_new(etcd.url, 2000, &c), REKI_OK);
    struct reki__etcd_kv *kvs = NULL;
    size_t n = 0;
    cr_assert_eq(reki__etcd_range_prefix(c, prefix, strlen(prefix), &kvs, &n, NULL), REKI_OK);
    reki__etcd_kvs_free(kvs, n);
    reki__etcd_free(c);
    return n;
}

static void etcd_pause(void)
{
    cr_assert_gt(etcd.pid, 0, "the fixture knows etcd's pid");
    cr_assert_eq(kill(etcd.pid, SIGSTOP), 0);
}

static void etcd_resume(void)
{
    cr_assert_eq(kill(etcd.pid, SIGCONT), 0);
}

/* Whether a loopback listen address ("127.0.0.1:port") can be bound now. */
static bool port_free(const char *addr)
{
    int port = atoi(strchr(addr, ':') + 1);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port)};
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(fd, 1) == 0;
    close(fd);
    return ok;
}

/* A TCP proxy to etcd for one node, which the test can cut: from then on
 * it forwards nothing either way (a partition: requests hang until the
 * client's timeout) and new connections are held the same way; healed, new
 * connections are forwarded again. */
struct proxy {
    int lfd, port, target;
    atomic_int cut, stop;
    pthread_t acceptor;
    atomic_int relays; /* relay threads running (detached) */
};

struct relay {
    struct proxy *p;
    int client, up; /* up: -1 once cut */
};

static bool write_all(int fd, const char *b, size_t n)
{
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

static void *relay_main(void *arg)
{
    struct relay *r = arg;
    char buf[16384];
    while (!atomic_load(&r->p->stop)) {
        if (r->up >= 0 && atomic_load(&r->p->cut)) {
            close(r->up);
            r->up = -1;
        }
        struct pollfd pf[2] = {{.fd = r->client, .events = POLLIN},
                               {.fd = r->up, .events = POLLIN}};
        if (poll(pf, r->up >= 0 ? 2 : 1, 50) <= 0)
            continue;
        bool done = false;
        for (int i = 0; i < 2 && !done; i++) {
            if (i == 1 && r->up < 0)
                break;
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = recv(pf[i].fd, buf, sizeof(buf), 0);
            if (n <= 0)
                done = true; /* either side closed: so does the relay */
            else if (r->up >= 0 && !atomic_load(&r->p->cut))
                done = !write_all(i == 0 ? r->up : r->client, buf, (size_t)n);
            /* cut: what the client sends vanishes */
        }
        if (done)
            break;
    }
    close(r->client);
    if (r->up >= 0)
        close(r->up);
    atomic_fetch_sub(&r->p->relays, 1);
    free(r);
    return NULL;
}

static int dial_local(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port)};
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void *acceptor_main(void *arg)
{
    struct proxy *p = arg;
    while (!atomic_load(&p->stop)) {
        struct pollfd pf = {.fd = p->lfd, .events = POLLIN};
        if (poll(&pf, 1, 50) <= 0)
            continue;
        int c = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        struct relay *r = malloc(sizeof(*r));
        int up = atomic_load(&p->cut) ? -1 : dial_local(p->target);
        pthread_t t;
        bool ok = r != NULL;
        if (ok) {
            *r = (struct relay){.p = p, .client = c, .up = up};
            atomic_fetch_add(&p->relays, 1);
            ok = pthread_create(&t, NULL, relay_main, r) == 0;
            if (ok)
                pthread_detach(t);
            else
                atomic_fetch_sub(&p->relays, 1);
        }
        if (!ok) {
            free(r);
            close(c);
            if (up >= 0)
                close(up);
        }
    }
    return NULL;
}

static void proxy_start(struct proxy *p, const char *target_url)
{
    memset(p, 0, sizeof(*p));
    p->target = atoi(strrchr(target_url, ':') + 1);
    p->lfd = etcd_fixture_bound_socket(64, &p->port);
    cr_assert_eq(pthread_create(&p->acceptor, NULL, acceptor_main, p), 0);
}

static void proxy_stop(struct proxy *p)
{
    atomic_store(&p->stop, 1);
    pthread_join(p->acceptor, NULL);
    bool ok;
    WAIT_UNTIL(ok, atomic_load(&p->relays) == 0, 5000); /* each polls stop every 50 ms */
    cr_assert(ok, "the proxy's relays ended");
    close(p->lfd);
}

TestSuite(offline, .timeout = 30);
TestSuite(cluster, .init = etcd_up, .fini = etcd_down, .timeout = 60);

/* ------------------------------------------------------------- offline -- */

Test(offline, join_bad_arguments)
{
    static struct tnode n;
    node_init(&n, "a");
    char dead[64], longname[300];
    snprintf(dead, sizeof(dead), "http://127.0.0.1:%d", etcd_fixture_free_port());
    memset(longname, 'n', 256);
    longname[256] = 0;
    reki_cluster_t *sentinel = (reki_cluster_t *)&n, *out = sentinel;
    const reki_cluster_opts_t good = node_opts(&n, dead, "/t-bad/", 8);

    cr_assert_eq(reki_cluster_join(NULL, &good, &out), REKI_EINVAL);
    cr_assert_eq(reki_cluster_join(n.reg, NULL, &out), REKI_EINVAL);
    cr_assert_eq(reki_cluster_join(n.reg, &good, NULL), REKI_EINVAL);
    reki_cluster_opts_t bad[32];
    int nb = 0;
#define BAD(field, value)        \
    do {                         \
        bad[nb] = good;          \
        bad[nb++].field = value; \
    } while (0)
    BAD(etcd, NULL);
    BAD(etcd, "");
    BAD(node, NULL);
    BAD(node, "");
    BAD(node, "a b");
    BAD(node, "a/b");
    BAD(node, "tab\there");
    BAD(node, longname); /* 256 bytes: over 255 */
    BAD(listen, NULL);
    BAD(listen, "127.0.0.1");
    BAD(listen, "127.0.0.1:");
    BAD(listen, ":4000");
    BAD(listen, "127.0.0.1:65536");
    BAD(listen, "127.0.0.1:12x");
    BAD(advertise, "no-port");
    BAD(decode, NULL);
    BAD(shards, 65537);
    BAD(shards, 1u << 20);
    BAD(lease_ttl_s, 3601);
#undef BAD
    for (int i = 0; i < nb; i++) {
        int64_t t0 = now_ms();
        cr_assert_eq(reki_cluster_join(n.reg, &bad[i], &out), REKI_EINVAL, "bad option %d", i);
        cr_assert_lt(now_ms() - t0, 500, "option %d refused without trying etcd", i);
    }
    /* A registry without start (no virtual actors). */
    reki_registry_t *plain = NULL;
    cr_assert_eq(reki_registry_new(n.rt, NULL, &plain), REKI_OK);
    cr_assert_eq(reki_cluster_join(plain, &good, &out), REKI_EINVAL);
    reki_registry_free(plain);
    cr_assert(out == sentinel, "*out untouched on failure");

    /* The control: the good options get as far as etcd, which is not there. */
    int rc = node_join_opts(&n, &good);
    cr_assert(rc == REKI_EDEAD || rc == REKI_ETIMEDOUT, "%s", reki_strerror(rc));

    /* Nothing changed: the listen port is free, the registry is a local one. */
    cr_assert(port_free(n.listen), "%s not left bound", n.listen);
    cr_assert_eq(send_local(&n, 1), REKI_OK);
    bool ok;
    WAIT_UNTIL(ok, atomic_load(&n.handled_key[1]) == 1, 5000);
    cr_assert(ok, "a local message is handled");
    cr_assert_eq(atomic_load(&n.decodes), 0);
    reki_cluster_leave(NULL); /* a no-op */
    node_free(&n);
}

/* ------------------------------------------------------- one node, args -- */

Test(cluster, unreachable_etcd_leaves_registry_local)
{
    static struct tnode n, m;
    node_init(&n, "a");
    node_init(&m, "a");
    char dead[64];
    snprintf(dead, sizeof(dead), "http://127.0.0.1:%d", etcd_fixture_free_port());
    for (int i = 0; i < 2; i++) {
        struct tnode *x = i ? &m : &n;
        reki_cluster_opts_t o = node_opts(x, dead, "/t-unreachable/", 8);
        reki_cluster_t *sentinel = (reki_cluster_t *)x, *out = sentinel;
        int64_t t0 = now_ms();
        int rc = reki_cluster_join(x->reg, &o, &out);
        cr_assert(rc == REKI_EDEAD || rc == REKI_ETIMEDOUT, "%s", reki_strerror(rc));
        cr_assert_lt(now_ms() - t0, 2000, "a refused connection fails fast");
        cr_assert(out == sentinel);
        cr_assert(port_free(x->listen), "%s not left bound", x->listen);
    }

    /* n: the registry is still a local one: no fence refuses its starts. */
    cr_assert_eq(send_local(&n, 1), REKI_OK);
    bool ok;
    WAIT_UNTIL(ok, atomic_load(&n.handled_key[1]) == 1, 5000);
    cr_assert(ok, "a local message is handled after the failed join");
    cr_assert(lookup(&n, 1));
    cr_assert_eq(atomic_load(&n.drops), 0);

    /* m: nothing was left attached: the same registry joins once etcd is there. */
    node_join(&m, etcd.url, "/t-unreachable/", 8);
    cr_assert_eq(send_wire(&m, 2, 0, 1), REKI_OK);
    WAIT_UNTIL(ok, atomic_load(&m.handled_key[2]) == 1, 5000);
    cr_assert(ok, "served through the cluster");
    cr_assert_eq(atomic_load(&m.bad_token), 0);
    node_free(&m);
    node_free(&n);
}

Test(cluster, join_rejects_registry_state)
{
    static struct tnode n, fresh, other;
    node_init(&n, "a");
    reki_cluster_t *sentinel = (reki_cluster_t *)&n, *out = sentinel;
    reki_cluster_opts_t o = node_opts(&n, etcd.url, "/t-state/", 8);

    /* A registry with a live actor: an actor started unfenced would escape the fence. */
    cr_assert_eq(send_local(&n, 1), REKI_OK);
    bool ok;
    WAIT_UNTIL(ok, atomic_load(&n.handled_key[1]) == 1, 5000);
    cr_assert(ok);
    cr_assert_eq(reki_cluster_join(n.reg, &o, &out), REKI_EINVAL);
    cr_assert(out == sentinel);
    cr_assert_eq(etcd_keys("/t-state/nodes/"), 0, "not registered");
    cr_assert(port_free(n.listen), "%s not left bound", n.listen);
    cr_assert(lookup(&n, 1), "the actor lives on");
    cr_assert_eq(send_local(&n, 1), REKI_OK);
    WAIT_UNTIL(ok, atomic_load(&n.handled_key[1]) == 2, 5000);
    cr_assert(ok, "and handles");
    cr_assert_eq(atomic_load(&n.terms), 0);

    /* A fresh registry joins with the same options. */
    node_init(&fresh, "a");
    strcpy(fresh.listen, n.listen);
    node_join(&fresh, etcd.url, "/t-state/", 8);
    cr_assert_eq(etcd_keys("/t-state/nodes/"), 1);

    /* A second join on the joined registry (another name and port). */
    node_init(&other, "b"); /* for a free port */
    reki_cluster_opts_t o2 = node_opts(&fresh, etcd.url, "/t-state/", 8);
    o2.node = "b";
    o2.listen = other.listen;
    cr_assert_eq(reki_cluster_join(fresh.reg, &o2, &out), REKI_EINVAL);
    cr_assert(out == sentinel);
    o2.prefix = "/t-state-2/"; /* nor into another cluster */
    cr_assert_eq(reki_cluster_join(fresh.reg, &o2, &out), REKI_EINVAL);
    cr_assert(out == sentinel);
    cr_assert_eq(etcd_keys("/t-state/nodes/"), 1, "b not registered");
    cr_assert_eq(etcd_keys("/t-state-2/nodes/"), 0);
    cr_assert(port_free(other.listen), "%s not left bound", other.listen);

    /* The first cluster is untouched: it still serves. */
    cr_assert_eq(send_wire(&fresh, 3, 0, 1), REKI_OK);
    WAIT_UNTIL(ok, atomic_load(&fresh.handled_key[3]) == 1, 5000);
    cr_assert(ok);
    sleep_ms(700); /* a control round or more */
    cr_assert_eq(owned(&fresh), 8);
    cr_assert_eq(stats_of(&fresh).nodes, 1);
    node_free(&other);
    node_free(&fresh);
    node_free(&n);
}

Test(cluster, calls_bad_arguments)
{
    static struct tnode n;
    node_init(&n, "solo");
    node_join(&n, etcd.url, "/t-args/", 4);
    reki_cluster_t *cl = atomic_load(&n.cl);
    bool ok;
    WAIT_UNTIL(ok, owned(&n) == 4, 5000);
    cr_assert(ok);
    reki_cluster_stats_t st0 = stats_of(&n);
    static char big_key[REKI_KEY_MAX + 1];
    memset(big_key, 'x', sizeof(big_key));
    size_t huge = (16u << 20) + 1;
    char *huge_bytes = calloc(1, huge);
    cr_assert_not_null(huge_bytes);

    cr_assert_eq(reki_cluster_send_key(NULL, "k1", 2, "x", 1), REKI_EINVAL);
    cr_assert_eq(reki_cluster_send_key(cl, NULL, 2, "x", 1), REKI_EINVAL);
    cr_assert_eq(reki_cluster_send_key(cl, "k1", 0, "x", 1), REKI_EINVAL);
    cr_assert_eq(reki_cluster_send_key(cl, big_key, REKI_KEY_MAX + 1, "x", 1), REKI_EINVAL);
    cr_assert_eq(reki_cluster_send_key(cl, "k1", 2, NULL, 1), REKI_EINVAL);
    cr_assert_eq(reki_cluster_send_key(cl, "k1", 2, huge_bytes, huge), REKI_EINVAL);
    free(huge_bytes);
    cr_assert_eq(atomic_load(&n.decodes), 0, "nothing decoded");
    reki_cluster_stats_t st = stats_of(&n);
    cr_assert(st.local == st0.local && st.forwarded == st0.forwarded && st.claims == st0.claims &&
                  st.lost == st0.lost,
              "nothing counted");

    /* The edges that are fine: no bytes at all, and the longest key. */
    cr_assert_eq(reki_cluster_send_key(cl, "k1", 2, NULL, 0), REKI_OK);
    cr_assert_eq(reki_cluster_send_key(cl, big_key, REKI_KEY_MAX, "y", 1), REKI_OK);
    WAIT_UNTIL(ok, atomic_load(&n.handled) == 2, 5000);
    cr_assert(ok, "both handled");
    cr_assert_eq(atomic_load(&n.handled_key[1]), 1);
    reki_pid_t pid;
    cr_assert_eq(reki_lookup(n.reg, big_key, REKI_KEY_MAX, &pid), REKI_OK);

    /* decode returning NULL: REKI_EINVAL, nothing delivered. */
    cr_assert_eq(reki_cluster_send_key(cl, "k2", 2, "nil", 3), REKI_EINVAL);
    cr_assert_eq(atomic_load(&n.decodes), 3);
    cr_assert_eq(stats_of(&n).local, st0.local + 2);

    /* owner */
    char name[64];
    bool local = false;
    memset(name, '#', sizeof(name));
    cr_assert_eq(reki_cluster_owner(NULL, "k1", 2, name, sizeof(name), &local), REKI_EINVAL);
    cr_assert_eq(reki_cluster_owner(cl, NULL, 2, name, sizeof(name), &local), REKI_EINVAL);
    cr_assert_eq(reki_cluster_owner(cl, "k1", 0, name, sizeof(name), &local), REKI_EINVAL);
    cr_assert_eq(reki_cluster_owner(cl, big_key, REKI_KEY_MAX + 1, name, sizeof(name), &local),
                 REKI_EINVAL);
    cr_assert_eq(reki_cluster_owner(cl, "k1", 2, NULL, sizeof(name), &local), REKI_EINVAL);
    cr_assert_eq(reki_cluster_owner(cl, "k1", 2, name, sizeof(name), NULL), REKI_EINVAL);
    cr_assert_eq(reki_cluster_owner(cl, "k1", 2, name, 4, &local), REKI_EINVAL,
                 "\"solo\" needs 5 bytes");
    cr_assert_eq(reki_cluster_owner(cl, "k1", 2, name, 0, &local), REKI_EINVAL);
    for (size_t i = 0; i < sizeof(name); i++)
        cr_assert_eq(name[i], '#', "name untouched on failure (byte %zu)", i);
    cr_assert(!local, "local untouched on failure");
    cr_assert_eq(reki_cluster_owner(cl, "k1", 2, name, 5, &local), REKI_OK, "exactly enough");
    cr_assert(local && strcmp(name, "solo") == 0);

    /* token, stats */
    int64_t token = -7;
    cr_assert_eq(reki_cluster_token(NULL, "k1", 2, &token), REKI_EINVAL);
    cr_assert_eq(reki_cluster_token(cl, NULL, 2, &token), REKI_EINVAL);
    cr_assert_eq(reki_cluster_token(cl, "k1", 0, &token), REKI_EINVAL);
    cr_assert_eq(reki_cluster_token(cl, big_key, REKI_KEY_MAX + 1, &token), REKI_EINVAL);
    cr_assert_eq(reki_cluster_token(cl, "k1", 2, NULL), REKI_EINVAL);
    cr_assert_eq(token, -7);
    reki_cluster_stats_t s2;
    cr_assert_eq(reki_cluster_stats(NULL, &s2), REKI_EINVAL);
    cr_assert_eq(reki_cluster_stats(cl, NULL), REKI_EINVAL);
    reki_cluster_leave(NULL);

    /* node messages */
    cr_assert_eq(reki_cluster_set_node_handler(NULL, on_node_msg, &n), REKI_EINVAL);
    cr_assert_eq(reki_cluster_set_node_handler(cl, NULL, &n), REKI_EINVAL);
    cr_assert_eq(reki_cluster_send_node(NULL, "solo", "t", 1, "b", 1), REKI_EINVAL);
    cr_assert_eq(reki_cluster_send_node(cl, NULL, "t", 1, "b", 1), REKI_EINVAL);
    cr_assert_eq(reki_cluster_send_node(cl, "solo", NULL, 1, "b", 1), REKI_EINVAL);
    cr_assert_eq(reki_cluster_send_node(cl, "solo", "t", 0, "b", 1), REKI_EINVAL);
    cr_assert_eq(reki_cluster_send_node(cl, "solo", big_key, REKI_KEY_MAX + 1, "b", 1),
                 REKI_EINVAL);
    cr_assert_eq(reki_cluster_send_node(cl, "solo", "t", 1, NULL, 1), REKI_EINVAL);
    cr_assert_eq(reki_cluster_send_node(cl, "nobody", "t", 1, "b", 1), REKI_ENOTFOUND);
    uint64_t lost = stats_of(&n).lost;
    cr_assert_eq(reki_cluster_send_node(cl, "solo", "t", 1, "b", 1), REKI_OK, "no handler yet");
    cr_assert_eq(stats_of(&n).lost, lost + 1, "lost, and counted");
    cr_assert_eq(reki_cluster_set_node_handler(cl, on_node_msg, &n), REKI_OK);
    cr_assert_eq(reki_cluster_set_node_handler(cl, on_node_msg, &n), REKI_EINVAL, "set once");
    static const unsigned char nb[] = {'n', 0, 0xfe, 'm'};
    cr_assert_eq(reki_cluster_send_node(cl, "solo", "tag\0x", 5, nb, sizeof(nb)), REKI_OK);
    cr_assert_eq(atomic_load(&n.node_msgs), 1, "to itself: on the caller's thread, at once");
    cr_assert(pthread_equal(atomic_load(&n.nm_thread), pthread_self()));
    pthread_mutex_lock(&n.mu);
    cr_assert(n.nm_taglen == 5 && memcmp(n.nm_tag, "tag\0x", 5) == 0);
    cr_assert(n.nm_len == sizeof(nb) && memcmp(n.nm_bytes, nb, sizeof(nb)) == 0);
    pthread_mutex_unlock(&n.mu);
    cr_assert_eq(reki_cluster_send_node(cl, "solo", big_key, REKI_KEY_MAX, NULL, 0), REKI_OK);
    cr_assert_eq(atomic_load(&n.node_msgs), 2);

    cr_assert_eq(atomic_load(&n.handled), 2, "nothing else was handled");
    cr_assert_eq(atomic_load(&n.drops), 0);
    node_free(&n);
}

/* -------------------------------------------------------------- one node -- */

Test(cluster, one_node_delivers)
{
    static struct tnode n;
    node_init(&n, "solo");
    node_join(&n, etcd.url, "/t-one/", 4);
    reki_cluster_t *cl = atomic_load(&n.cl);
    static const unsigned char bytes[] = {'h', 0, 'i', 0xff, 0x80, '\n', 0, 'z'};
    cr_assert_eq(reki_cluster_send_key(cl, "k7", 2, bytes, sizeof(bytes)), REKI_OK,
                 "right after join");
    bool ok;
    WAIT_UNTIL(ok, atomic_load(&n.handled) == 1, 5000);
    cr_assert(ok, "handled");
    sleep_ms(100);
    cr_assert_eq(atomic_load(&n.decodes), 1, "decoded once");
    cr_assert_eq(atomic_load(&n.handled), 1, "handled once");
    cr_assert_eq(atomic_load(&n.handled_key[7]), 1, "by the key's actor");
    cr_assert_eq(atomic_load(&n.starts_key[7]), 1);
    pthread_mutex_lock(&n.mu);
    cr_assert(n.dec_len == sizeof(bytes) && memcmp(n.dec_bytes, bytes, sizeof(bytes)) == 0,
              "decode got the exact bytes");
    cr_assert(n.hnd_len == sizeof(bytes) && memcmp(n.hnd_bytes, bytes, sizeof(bytes)) == 0);
    pthread_mutex_unlock(&n.mu);
    cr_assert_eq(atomic_load(&n.last_handled), atomic_load(&n.last_decoded),
                 "handle got the message decode returned");
    cr_assert(lookup(&n, 7));

    char name[32];
    bool local = false;
    cr_assert_eq(reki_cluster_owner(cl, "k7", 2, name, sizeof(name), &local), REKI_OK);
    cr_assert(local && strcmp(name, "solo") == 0, "owner %s local %d", name, local);

    reki_cluster_stats_t st = stats_of(&n);
    cr_assert_eq(st.local, 1);
    cr_assert(st.forwarded == 0 && st.received == 0 && st.lost == 0 && st.lease_losses == 0);
    cr_assert_eq(st.nodes, 1);

    /* Many messages to many keys: each once, by its key's actor. */
    for (int i = 0; i < 64; i++)
        cr_assert_eq(send_wire(&n, i, 0, (uint32_t)i), REKI_OK);
    WAIT_UNTIL(ok, atomic_load(&n.handled) == 65, 5000);
    cr_assert(ok);
    for (int i = 0; i < 64; i++)
        cr_assert_eq(atomic_load(&n.handled_key[i]), i == 7 ? 2 : 1);
    cr_assert_eq(atomic_load(&n.misrouted), 0);
    cr_assert_eq(stats_of(&n).local, 65);

    /* Tokens: an activation's is its shard's claim, so one per shard (the
     * same for every key of it), and the one its start saw. */
    WAIT_UNTIL(ok, owned(&n) == 4, 5000);
    cr_assert(ok, "a lone node owns every shard");
    int64_t tokens[4] = {0};
    int distinct = 0;
    for (int i = 0; i < 64; i++) {
        char key[16];
        int kl = key_of(i, key, sizeof(key));
        int64_t t = 0, t2 = 0;
        cr_assert_eq(reki_cluster_token(cl, key, (size_t)kl, &t), REKI_OK);
        cr_assert_gt(t, 0);
        cr_assert_eq(atomic_load(&n.start_token[i]), t, "k%d: the start saw the same token", i);
        cr_assert_eq(reki_cluster_token(cl, key, (size_t)kl, &t2), REKI_OK);
        cr_assert_eq(t, t2, "stable");
        bool seen = false;
        for (int j = 0; j < distinct; j++)
            seen |= tokens[j] == t;
        cr_assert(seen || distinct < 4, "at most one token per shard (a 5th: %" PRId64 ")", t);
        if (!seen)
            tokens[distinct++] = t;
        cr_assert_eq(reki_cluster_owner(cl, key, (size_t)kl, name, sizeof(name), &local), REKI_OK);
        cr_assert(local && strcmp(name, "solo") == 0);
    }
    cr_assert_eq(distinct, 4, "64 keys cover the 4 shards, each with its own claim");
    cr_assert_eq(atomic_load(&n.bad_token), 0);
    int64_t t = -7;
    cr_assert_eq(reki_cluster_token(cl, "k200", 4, &t), REKI_ENOTFOUND, "no activation");
    cr_assert_eq(t, -7);
    node_free(&n);
}

Test(cluster, one_node_full_mailbox)
{
    static struct tnode n;
    node_init(&n, "solo");
    n.gate_queue = 1;
    atomic_store(&n.gate_shut, 1);
    node_join(&n, etcd.url, "/t-full/", 4);
    reki_cluster_t *cl = atomic_load(&n.cl);
    bool ok;
    cr_assert_eq(reki_cluster_send_key(cl, "gate", 4, "m1", 2), REKI_OK);
    WAIT_UNTIL(ok, atomic_load(&n.gate_in) == 1, 5000);
    cr_assert(ok, "m1's handle holds the actor");
    cr_assert_eq(reki_cluster_send_key(cl, "gate", 4, "m2", 2), REKI_OK, "one may queue");
    cr_assert_eq(reki_cluster_send_key(cl, "gate", 4, "m3", 2), REKI_EFULL);
    cr_assert_eq(atomic_load(&n.decodes), 3);
    cr_assert_eq(atomic_load(&n.drops), 1, "the decoded m3 went to the registry's drop");
    cr_assert_eq(atomic_load(&n.last_dropped), atomic_load(&n.last_decoded));
    cr_assert_eq(stats_of(&n).local, 2, "only delivered messages count");
    atomic_store(&n.gate_shut, 0);
    WAIT_UNTIL(ok, atomic_load(&n.handled) == 2, 5000);
    cr_assert(ok);
    pthread_mutex_lock(&n.mu);
    cr_assert(n.hnd_len == 2 && memcmp(n.hnd_bytes, "m2", 2) == 0, "m2 came after m1");
    pthread_mutex_unlock(&n.mu);
    cr_assert_eq(atomic_load(&n.drops), 1);
    node_free(&n);
}

/* ------------------------------------------------------------- two nodes -- */

Test(cluster, two_nodes_one_owner_per_key)
{
    enum { KEYS = 200, SHARDS = 32 };
    static struct tnode a, b;
    two_nodes(&a, &b, etcd.url, "/t-two/", SHARDS, KEYS);

    for (int i = 0; i < KEYS; i++) {
        cr_assert_eq(send_wire(&a, i, 0, (uint32_t)i), REKI_OK, "from a, k%d", i);
        cr_assert_eq(send_wire(&b, i, 1, (uint32_t)i), REKI_OK, "from b, k%d", i);
    }
    bool ok;
    WAIT_UNTIL(ok, atomic_load(&a.handled) + atomic_load(&b.handled) == 2 * KEYS, 10000);
    cr_assert(ok, "every message handled: a %d b %d", atomic_load(&a.handled),
              atomic_load(&b.handled));
    sleep_ms(200);
    cr_assert_eq(atomic_load(&a.handled) + atomic_load(&b.handled), 2 * KEYS, "and only once");

    int on_a = 0, on_b = 0;
    for (int i = 0; i < KEYS; i++) {
        int ha = atomic_load(&a.handled_key[i]), hb = atomic_load(&b.handled_key[i]);
        int oa = owner_of(&a, &b, i), ob = owner_of(&b, &a, i);
        cr_assert((ha == 2 && hb == 0) || (ha == 0 && hb == 2),
                  "k%d handled on one node only: a %d b %d", i, ha, hb);
        bool here = ha == 2;
        on_a += here;
        on_b += !here;
        cr_assert(oa == (here ? 1 : 2) && ob == (here ? 2 : 1),
                  "k%d: both name its node as owner (a says %d, b says %d)", i, oa, ob);
        cr_assert_eq(lookup(&a, i), here, "k%d's actor lives on its owner", i);
        cr_assert_eq(lookup(&b, i), !here, "k%d's actor lives on its owner", i);
        cr_assert_eq(atomic_load(&(here ? &a : &b)->starts_key[i]), 1, "k%d: one actor", i);
        cr_assert_eq(atomic_load(&(here ? &b : &a)->starts_key[i]), 0, "k%d: one actor", i);
    }
    cr_assert(on_a > 0 && on_b > 0, "a %d b %d", on_a, on_b);
    cr_assert_eq(atomic_load(&a.misrouted) + atomic_load(&b.misrouted), 0);
    cr_assert_eq(atomic_load(&a.bad_token) + atomic_load(&b.bad_token), 0);
    cr_assert_eq(atomic_load(&a.decodes) + atomic_load(&b.decodes), 2 * KEYS, "decoded once");
    cr_assert_eq(atomic_load(&a.drops) + atomic_load(&b.drops), 0);

    reki_cluster_stats_t sa = stats_of(&a), sb = stats_of(&b);
    cr_assert(sa.forwarded == (uint64_t)on_b && sb.forwarded == (uint64_t)on_a,
              "each forwarded the other's keys: a %" PRIu64 " of %d, b %" PRIu64 " of %d",
              sa.forwarded, on_b, sb.forwarded, on_a);
    cr_assert(sa.received == sb.forwarded && sb.received == sa.forwarded,
              "received what the other forwarded");
    cr_assert(sa.local == (uint64_t)(2 * on_a) && sb.local == (uint64_t)(2 * on_b));
    cr_assert(sa.lost + sb.lost + sa.rerouted + sb.rerouted == 0);
    cr_assert_eq(sa.shards_owned + sb.shards_owned, SHARDS);

    /* A node message from a to b arrives there, bytes intact. */
    cr_assert_eq(reki_cluster_set_node_handler(atomic_load(&b.cl), on_node_msg, &b), REKI_OK);
    static const unsigned char nb[] = {'r', 'e', 0, 'p', 0xff};
    cr_assert_eq(reki_cluster_send_node(atomic_load(&a.cl), "node-b", "re", 2, nb, sizeof(nb)),
                 REKI_OK);
    WAIT_UNTIL(ok, atomic_load(&b.node_msgs) == 1, 5000);
    cr_assert(ok, "b's handler got it");
    pthread_mutex_lock(&b.mu);
    cr_assert(b.nm_taglen == 2 && memcmp(b.nm_tag, "re", 2) == 0);
    cr_assert(b.nm_len == sizeof(nb) && memcmp(b.nm_bytes, nb, sizeof(nb)) == 0);
    pthread_mutex_unlock(&b.mu);
    cr_assert_eq(atomic_load(&a.node_msgs), 0);
    node_free(&b);
    node_free(&a);
}

Test(cluster, shards_mismatch)
{
    static struct tnode a, b;
    node_init(&a, "a");
    node_init(&b, "b");
    node_join(&a, etcd.url, "/t-mismatch/", 8);
    reki_cluster_t *sentinel = (reki_cluster_t *)&b, *out = sentinel;
    reki_cluster_opts_t o = node_opts(&b, etcd.url, "/t-mismatch/", 16);
    cr_assert_eq(reki_cluster_join(b.reg, &o, &out), REKI_EINVAL, "16 shards in a cluster of 8");
    o.shards = 0; /* the default, 256 */
    cr_assert_eq(reki_cluster_join(b.reg, &o, &out), REKI_EINVAL, "256 shards in a cluster of 8");
    cr_assert(out == sentinel);
    cr_assert_eq(etcd_keys("/t-mismatch/nodes/"), 1, "b not registered");
    cr_assert(port_free(b.listen), "%s not left bound", b.listen);
    sleep_ms(700);
    cr_assert_eq(stats_of(&a).nodes, 1);
    cr_assert_eq(owned(&a), 8);

    /* With the cluster's count, the same node joins. */
    node_join(&b, etcd.url, "/t-mismatch/", 8);
    bool ok;
    WAIT_UNTIL(ok, stats_of(&a).nodes == 2 && stats_of(&b).nodes == 2, 5000);
    cr_assert(ok);
    node_free(&b);
    node_free(&a);
}

Test(cluster, leave_hands_over)
{
    enum { KEYS = 64, SHARDS = 32 };
    static struct tnode a, b;
    two_nodes(&a, &b, etcd.url, "/t-leave/", SHARDS, KEYS);
    for (int i = 0; i < KEYS; i++)
        cr_assert_eq(send_wire(&b, i, 1, 1), REKI_OK);
    bool ok;
    WAIT_UNTIL(ok, atomic_load(&a.handled) + atomic_load(&b.handled) == KEYS, 10000);
    cr_assert(ok);
    bool was_a[KEYS];
    int on_a = 0;
    for (int i = 0; i < KEYS; i++) {
        was_a[i] = atomic_load(&a.handled_key[i]) == 1;
        on_a += was_a[i];
        cr_assert_eq(lookup(&a, i), was_a[i]);
    }
    cr_assert(on_a > 0 && on_a < KEYS);
    cr_assert_eq(atomic_load(&a.starts), on_a);
    cr_assert_eq(atomic_load(&a.terms), 0);

    node_leave(&a);
    /* Read at once: every terminate had returned before leave did. */
    int terms = atomic_load(&a.terms);
    cr_assert_eq(terms, on_a, "a's %d actors terminated before leave returned (%d)", on_a, terms);
    cr_assert_eq(atomic_load(&a.term_shutdown), on_a, "with REKI_EXIT_SHUTDOWN");
    cr_assert_eq(reki_count(a.reg), 0);

    WAIT_UNTIL(ok, owned(&b) == SHARDS, 10000);
    cr_assert(ok, "b took every shard: it owns %u", owned(&b));
    WAIT_UNTIL(ok, stats_of(&b).nodes == 1, 5000);
    cr_assert(ok);
    for (int i = 0; i < KEYS; i++) {
        char name[32];
        bool local = false;
        char key[16];
        int kl = key_of(i, key, sizeof(key));
        cr_assert_eq(
            reki_cluster_owner(atomic_load(&b.cl), key, (size_t)kl, name, sizeof(name), &local),
            REKI_OK);
        cr_assert(local && strcmp(name, "node-b") == 0);
        if (was_a[i])
            cr_assert_eq(send_wire(&b, i, 1, 2), REKI_OK, "k%d", i);
    }
    WAIT_UNTIL(ok, atomic_load(&b.handled) == KEYS, 10000);
    cr_assert(ok, "b handled a's keys: %d of %d", atomic_load(&b.handled), KEYS);
    for (int i = 0; i < KEYS; i++) {
        cr_assert_eq(atomic_load(&b.handled_key[i]), 1, "k%d", i);
        cr_assert(lookup(&b, i));
    }
    cr_assert_eq(atomic_load(&a.handled), on_a, "a handled nothing after leaving");
    cr_assert_eq(atomic_load(&b.misrouted), 0);

    /* The registry that left serves nothing, not even a key of its old shards. */
    for (int i = 0; i < KEYS; i++) {
        if (!was_a[i])
            continue;
        int rc = send_local(&a, i);
        cr_assert(rc == REKI_OK || rc == REKI_ESHUTDOWN, "%s", reki_strerror(rc));
        break;
    }
    sleep_ms(200);
    cr_assert_eq(atomic_load(&a.starts), on_a, "a started nothing after leaving");
    cr_assert_eq(atomic_load(&a.handled), on_a);
    node_free(&b);
    node_free(&a);
}

Test(cluster, left_registry_stays_out)
{
    static struct tnode n;
    node_init(&n, "a");
    bool ok;
    node_join(&n, etcd.url, "/t-left/", 4);
    cr_assert_eq(send_wire(&n, 1, 0, 1), REKI_OK);
    WAIT_UNTIL(ok, atomic_load(&n.handled) == 1, 5000);
    cr_assert(ok);
    node_leave(&n);
    cr_assert_eq(atomic_load(&n.terms), 1, "its actor ended with the leave");
    cr_assert_eq(atomic_load(&n.term_shutdown), 1);
    cr_assert_eq(etcd_keys("/t-left/nodes/"), 0, "deregistered");
    cr_assert_eq(etcd_keys("/t-left/shards/"), 0, "every shard handed back");
    cr_assert(port_free(n.listen), "%s closed", n.listen);

    /* Afterwards the registry serves nothing: its keys are the cluster's. */
    int rc = send_local(&n, 1);
    cr_assert(rc == REKI_OK || rc == REKI_ESHUTDOWN, "%s", reki_strerror(rc));
    if (rc == REKI_OK) {
        WAIT_UNTIL(ok, atomic_load(&n.drops) == 1, 5000);
        cr_assert(ok, "the message went to the registry's drop");
    }
    sleep_ms(200);
    cr_assert_eq(atomic_load(&n.starts), 1, "nothing started after leave");
    cr_assert_eq(atomic_load(&n.handled), 1, "nothing handled after leave");

    /* One cluster per registry for its whole life: no join after a leave. */
    reki_cluster_t *sentinel = (reki_cluster_t *)&n, *out = sentinel;
    reki_cluster_opts_t o = node_opts(&n, etcd.url, "/t-left/", 4);
    cr_assert_eq(reki_cluster_join(n.reg, &o, &out), REKI_EINVAL, "the same cluster");
    o.prefix = "/t-left-2/";
    o.shards = 8;
    cr_assert_eq(reki_cluster_join(n.reg, &o, &out), REKI_EINVAL, "another cluster");
    cr_assert(out == sentinel);
    cr_assert_eq(etcd_keys("/t-left/nodes/") + etcd_keys("/t-left-2/nodes/"), 0);
    node_free(&n);
}

/* ------------------------------------------------------- lease deadline -- */

Test(cluster, lease_deadline_stops_and_recovers)
{
    enum { KEYS = 16, SHARDS = 4 };
    static struct tnode n;
    node_init(&n, "solo");
    node_join(&n, etcd.url, "/t-lease/", SHARDS);
    bool ok;
    WAIT_UNTIL(ok, owned(&n) == SHARDS, 5000);
    cr_assert(ok);
    for (int i = 0; i < KEYS; i++)
        cr_assert_eq(send_wire(&n, i, 0, 1), REKI_OK);
    WAIT_UNTIL(ok, atomic_load(&n.handled) == KEYS, 5000);
    cr_assert(ok);
    int64_t old_token[KEYS];
    for (int i = 0; i < KEYS; i++)
        old_token[i] = atomic_load(&n.start_token[i]);

    etcd_pause();
    int64_t t_stop = now_ms();
    /* The deadline is at most ttl - margin after the last keepalive etcd answered. */
    sleep_ms(t_stop + TTL_MS - now_ms());
    int decodes = atomic_load(&n.decodes);
    for (int i = 0; i < KEYS; i++) {
        int rc = send_wire(&n, i, 0, 2);
        cr_assert(rc == REKI_ESHUTDOWN || rc == REKI_ENOTFOUND, "k%d past the deadline: %s", i,
                  reki_strerror(rc));
    }
    cr_assert_eq(atomic_load(&n.decodes), decodes, "nothing taken");
    /* etcd may expire the lease ttl after the last keepalive it answered:
     * by then every actor must be gone (terminate returned), not just idle. */
    sleep_ms(t_stop + TTL_MS + 150 - now_ms());
    cr_assert_eq(atomic_load(&n.terms), KEYS, "every actor exited within the TTL: %d of %d",
                 atomic_load(&n.terms), KEYS);
    cr_assert_eq(atomic_load(&n.term_shutdown), KEYS, "with REKI_EXIT_SHUTDOWN");
    reki_cluster_stats_t st = stats_of(&n);
    cr_assert_eq(st.shards_owned, 0);
    cr_assert_geq(st.lease_losses, 1);
    sleep_ms(t_stop + TTL_MS + 1000 - now_ms());
    cr_assert_eq(atomic_load(&n.handled), KEYS, "nothing handled past the deadline");
    cr_assert_eq(atomic_load(&n.starts), KEYS, "nothing started past the deadline");
    cr_assert_lt(atomic_load(&n.last_handle_ms), t_stop + TTL_MS);

    /* etcd answers again: the node serves again within a few seconds. */
    etcd_resume();
    int64_t t_cont = now_ms();
    int rc;
    do {
        rc = send_wire(&n, 0, 0, 3);
        if (rc != REKI_OK)
            sleep_ms(50);
    } while (rc != REKI_OK && now_ms() - t_cont < 15000);
    cr_assert_eq(rc, REKI_OK, "serving again after %lld ms", (long long)(now_ms() - t_cont));
    WAIT_UNTIL(ok, atomic_load(&n.handled) == KEYS + 1, 5000);
    cr_assert(ok);
    WAIT_UNTIL(ok, owned(&n) == SHARDS, 10000);
    cr_assert(ok, "every shard claimed again");
    for (int i = 1; i < KEYS; i++)
        cr_assert_eq(send_wire(&n, i, 0, 3), REKI_OK);
    WAIT_UNTIL(ok, atomic_load(&n.handled) == 2 * KEYS, 5000);
    cr_assert(ok);
    cr_assert_eq(atomic_load(&n.starts), 2 * KEYS, "new actors");
    for (int i = 0; i < KEYS; i++)
        cr_assert_gt(atomic_load(&n.start_token[i]), old_token[i],
                     "k%d: a newer claim has a higher token", i);
    cr_assert_eq(atomic_load(&n.bad_token), 0);
    cr_assert_eq(atomic_load(&n.misrouted), 0);
    node_free(&n);
}

Test(cluster, fence_gate_mid_handle)
{
    enum { MSGS = 30 };
    static struct tnode n;
    node_init(&n, "solo");
    n.slow_ms = 200;
    node_join(&n, etcd.url, "/t-gate/", 1);
    for (int i = 0; i < MSGS; i++)
        cr_assert_eq(send_wire(&n, 0, 0, (uint32_t)i), REKI_OK);
    bool ok;
    WAIT_UNTIL(ok, atomic_load(&n.handled) >= 2, 5000);
    cr_assert(ok);

    etcd_pause();
    int64_t t_stop = now_ms();
    sleep_ms(t_stop + TTL_MS + 1000 - now_ms());
    WAIT_UNTIL(ok, atomic_load(&n.terms) == 1, 3000);
    cr_assert(ok, "the actor exited");
    cr_assert_eq(atomic_load(&n.term_shutdown), 1, "with REKI_EXIT_SHUTDOWN");
    int h1 = atomic_load(&n.handled);
    cr_assert_lt(h1, MSGS, "the deadline cut the queue short");
    cr_assert_lt(atomic_load(&n.last_handle_ms), t_stop + TTL_MS,
                 "no handle began past the deadline");
    sleep_ms(1000);
    cr_assert_eq(atomic_load(&n.handled), h1, "handled count stopped growing");
    cr_assert_eq(atomic_load(&n.starts), 1, "no new actor");
    WAIT_UNTIL(ok, atomic_load(&n.handled) + atomic_load(&n.drops) == MSGS, 3000);
    cr_assert(ok, "every message handled or dropped, once: %d + %d", atomic_load(&n.handled),
              atomic_load(&n.drops));
    etcd_resume();
    node_free(&n);
}

/* ------------------------------------------------------------ partition -- */

/* Node a reaches etcd through `endpoints` proxies (all to the one etcd), b
 * directly.  Cut a's proxies: a's lease runs out, etcd expires it, b takes
 * a's shards.  Every actor a had must have exited (terminate returned)
 * before b starts the key's next actor: at most one live actor per key in
 * the cluster.  Healed, a serves its share again, after b handed it over. */
static void partition(int endpoints, const char *prefix)
{
    enum { KEYS = 48, SHARDS = 32 };
    static struct tnode a, b;
    static struct proxy px[2];
    char urls[160] = "";
    for (int i = 0; i < endpoints; i++) {
        proxy_start(&px[i], etcd.url);
        size_t l = strlen(urls);
        snprintf(urls + l, sizeof(urls) - l, "%shttp://127.0.0.1:%d", i ? "," : "", px[i].port);
    }
    two_nodes(&a, &b, urls, prefix, SHARDS, KEYS);
    for (int i = 0; i < KEYS; i++)
        cr_assert_eq(send_wire(&b, i, 1, 1), REKI_OK);
    bool ok;
    WAIT_UNTIL(ok, atomic_load(&a.handled) + atomic_load(&b.handled) == KEYS, 10000);
    cr_assert(ok);
    bool was_a[KEYS];
    int on_a = 0;
    for (int i = 0; i < KEYS; i++)
        on_a += was_a[i] = atomic_load(&a.handled_key[i]) == 1;
    cr_assert(on_a > 0 && on_a < KEYS);

    for (int i = 0; i < endpoints; i++)
        atomic_store(&px[i].cut, 1);
    int64_t t_cut = now_ms();
    WAIT_UNTIL(ok, owned(&b) == SHARDS, 15000);
    cr_assert(ok, "b took a's shards once a's lease expired");
    int64_t t_took = now_ms();
    for (int i = 0; i < KEYS; i++)
        if (was_a[i])
            cr_assert_eq(send_wire(&b, i, 1, 2), REKI_OK);
    WAIT_UNTIL(ok, atomic_load(&b.handled) == KEYS, 10000);
    cr_assert(ok, "b serves a's keys: %d of %d", atomic_load(&b.handled), KEYS);
    WAIT_UNTIL(ok, atomic_load(&a.terms) == on_a, 5000);
    cr_assert(ok, "a's actors exited");
    for (int i = 0; i < KEYS; i++) {
        if (!was_a[i])
            continue;
        int64_t a_end = atomic_load(&a.term_ms[i]), b_start = atomic_load(&b.start_ms[i]);
        cr_assert(a_end <= b_start,
                  "k%d: a's actor terminated %lld ms after the cut, b's started %lld ms after "
                  "it (%d endpoints; b owned every shard %lld ms after it)",
                  i, (long long)(a_end - t_cut), (long long)(b_start - t_cut), endpoints,
                  (long long)(t_took - t_cut));
        cr_assert_lt(atomic_load(&a.last_handle_ms), b_start);
    }
    cr_assert_eq(atomic_load(&a.term_shutdown), on_a, "with REKI_EXIT_SHUTDOWN");
    cr_assert_geq(stats_of(&a).lease_losses, 1);

    /* Healed: a gets a lease again, and its share back through handoffs. */
    for (int i = 0; i < endpoints; i++)
        atomic_store(&px[i].cut, 0);
    cr_assert(settled(&a, &b, SHARDS, KEYS, 20000), "a serves again");
    int before = atomic_load(&a.handled) + atomic_load(&b.handled);
    for (int i = 0; i < KEYS; i++)
        cr_assert_eq(send_wire(&a, i, 0, 3), REKI_OK);
    WAIT_UNTIL(ok, atomic_load(&a.handled) + atomic_load(&b.handled) == before + KEYS, 10000);
    cr_assert(ok);
    for (int i = 0; i < KEYS; i++) {
        if (owner_of(&a, &b, i) != 1)
            continue;
        /* Moved back by a handoff: b's actor ended before a's new one began. */
        if (atomic_load(&b.starts_key[i]))
            cr_assert_leq(atomic_load(&b.term_ms[i]), atomic_load(&a.start_ms[i]), "k%d", i);
    }
    cr_assert_eq(atomic_load(&a.misrouted) + atomic_load(&b.misrouted), 0);
    node_free(&b);
    node_free(&a);
    for (int i = 0; i < endpoints; i++)
        proxy_stop(&px[i]);
}

Test(cluster, partition_takeover)
{
    partition(1, "/t-part-1/");
}

/* The same with two etcd endpoints (a usual configuration): each request
 * may now take two timeouts before the lease thread sees the deadline. */
Test(cluster, partition_takeover_two_endpoints)
{
    partition(2, "/t-part-2/");
}
