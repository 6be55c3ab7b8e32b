/*
 * The cluster's public API: join, leave, send_key, owner, token, stats.
 *
 * Routing a message (rc_route), for both local senders and frames received
 * from other nodes:
 *   1. the key's shard is ours (the fence's owned flag) and the deadline has
 *      not passed: decode, then reki_send_key on the registry;
 *   2. the map names another owner: queue the frame for it (forward.c);
 *   3. nobody owns it as far as we know: claim it (one etcd transaction on
 *      this thread; at most one attempt per shard per 200 ms after a failed
 *      one); won: 1; lost: 2 with the owner the transaction reported; else
 *      REKI_ENOTFOUND.
 * A frame that has already been rerouted RC_HOPS_MAX times is not sent on.
 *
 * Join: the cluster's config key (<prefix>config = "k0 k1 shards", created
 * by the first node, read by the others) gives the shard-hash key and count
 * that every node must share; then the registry's fence is attached, the
 * listener opened, the lease granted and the node registered, and the
 * threads started.  Leave undoes it in the reverse order, handing shards
 * over first.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cluster_int.h"

#define CLAIM_BACKOFF_NS 200000000u
#define LEAVE_SETTLE_NS 10000000000ull /* leave's wait for its shards' actors */

uint64_t rc_now_ns(void)
{
    return reki__fence_now_ns();
}

int rc_parse_addr(const char *addr, char *host, size_t host_size, int *port)
{
    const char *c = addr ? strrchr(addr, ':') : NULL;
    if (!c || c == addr || (size_t)(c - addr) >= host_size)
        return REKI_EINVAL;
    char *end;
    long p = strtol(c + 1, &end, 10);
    if (*end || end == c + 1 || p < 0 || p > 65535)
        return REKI_EINVAL;
    memcpy(host, addr, (size_t)(c - addr));
    host[c - addr] = 0;
    *port = (int)p;
    return REKI_OK;
}

static int deliver(reki_cluster_t *cl, const void *key, size_t keylen, const void *bytes,
                   size_t len)
{
    if (rc_now_ns() >= atomic_load_explicit(&cl->fence->until, memory_order_acquire))
        return REKI_ESHUTDOWN;
    void *msg = cl->decode(bytes, len, cl->decode_arg);
    if (!msg)
        return REKI_EINVAL;
    int rc = reki_send_key(cl->reg, key, keylen, msg);
    if (rc != REKI_OK) {
        if (cl->reg->drop)
            cl->reg->drop(msg);
        return rc;
    }
    atomic_fetch_add_explicit(&cl->n_local, 1, memory_order_relaxed);
    return REKI_OK;
}

static int send_to(reki_cluster_t *cl, struct rc_peer *o, const void *key, size_t keylen,
                   const void *bytes, size_t len, unsigned hops)
{
    if (hops > RC_HOPS_MAX)
        return REKI_ENOTFOUND;
    int rc = rc_forward(o, key, keylen, bytes, len, hops);
    if (rc == REKI_OK)
        atomic_fetch_add_explicit(hops ? &cl->n_rerouted : &cl->n_forwarded, 1,
                                  memory_order_relaxed);
    return rc;
}

int rc_route(reki_cluster_t *cl, const void *key, size_t keylen, const void *bytes, size_t len,
             unsigned hops)
{
    if (atomic_load_explicit(&cl->leaving, memory_order_acquire) && hops == 0)
        return REKI_ESHUTDOWN;
    unsigned s = reki__fence_shard(cl->fence, key, keylen);
    if (reki__fence_owned(cl->fence, s))
        return deliver(cl, key, keylen, bytes, len);
    struct rc_peer *o = atomic_load_explicit(&cl->shard[s].owner, memory_order_acquire);
    if (o && !o->self)
        return send_to(cl, o, key, keylen, bytes, len, hops);
    /* Claim only a shard the control thread found free and ours to take
     * (preferred here, or orphaned): claims from every sender would pull a
     * shard back from the node it was just handed to. */
    uint64_t now = rc_now_ns();
    if (now >= atomic_load_explicit(&cl->fence->until, memory_order_acquire))
        return REKI_ESHUTDOWN; /* not serving: no claim either */
    if (!atomic_load_explicit(&cl->shard[s].may_claim, memory_order_relaxed) ||
        now - atomic_load_explicit(&cl->shard[s].claim_fail_ns, memory_order_relaxed) <
            CLAIM_BACKOFF_NS)
        return REKI_ENOTFOUND;
    pthread_mutex_lock(&cl->claim_mu);
    int rc = rc_claim(cl, cl->claim_etcd, s, &o);
    pthread_mutex_unlock(&cl->claim_mu);
    if (rc == REKI_OK)
        return deliver(cl, key, keylen, bytes, len);
    atomic_store_explicit(&cl->shard[s].claim_fail_ns, now, memory_order_relaxed);
    if (o && !o->self)
        return send_to(cl, o, key, keylen, bytes, len, hops);
    return rc == REKI_ETIMEDOUT || rc == REKI_EDEAD || rc == REKI_ESHUTDOWN ? rc : REKI_ENOTFOUND;
}

static bool key_ok(const void *key, size_t keylen)
{
    return key && keylen >= 1 && keylen <= REKI_KEY_MAX;
}

int reki_cluster_send_key(reki_cluster_t *cl, const void *key, size_t keylen, const void *bytes,
                          size_t len)
{
    if (!cl || !key_ok(key, keylen) || (!bytes && len) || len > RC_FRAME_MAX)
        return REKI_EINVAL;
    return rc_route(cl, key, keylen, bytes ? bytes : "", len, 0);
}

int reki_cluster_owner(reki_cluster_t *cl, const void *key, size_t keylen, char *node,
                       size_t node_size, bool *local)
{
    if (!cl || !key_ok(key, keylen) || !node || !local)
        return REKI_EINVAL;
    unsigned s = reki__fence_shard(cl->fence, key, keylen);
    bool mine = reki__fence_owned(cl->fence, s);
    struct rc_peer *o =
        mine ? cl->self : atomic_load_explicit(&cl->shard[s].owner, memory_order_acquire);
    if (!o)
        return REKI_ENOTFOUND;
    if (strlen(o->name) >= node_size)
        return REKI_EINVAL;
    strcpy(node, o->name);
    *local = o->self && mine;
    return REKI_OK;
}

int reki_cluster_token(reki_cluster_t *cl, const void *key, size_t keylen, int64_t *token)
{
    if (!cl || !key_ok(key, keylen) || !token)
        return REKI_EINVAL;
    /* The token the key's activation started under, not the shard's
     * latest: a stalled activation must not present a newer claim's. */
    return reki__fence_token(cl->reg, key, keylen, token);
}

void rc_node_message(reki_cluster_t *cl, const void *tag, size_t taglen, const void *bytes,
                     size_t len)
{
    /* acquire: pairs with the release that set fn after arg. */
    reki_cluster_node_fn fn = atomic_load_explicit(&cl->node_fn, memory_order_acquire);
    if (!fn) {
        atomic_fetch_add_explicit(&cl->n_lost, 1, memory_order_relaxed);
        return;
    }
    fn(tag, taglen, bytes, len, atomic_load_explicit(&cl->node_arg, memory_order_relaxed));
}

int reki_cluster_set_node_handler(reki_cluster_t *cl, reki_cluster_node_fn fn, void *arg)
{
    if (!cl || !fn)
        return REKI_EINVAL;
    pthread_mutex_lock(&cl->claim_mu); /* setters exclude each other */
    int rc = REKI_EINVAL;
    if (!atomic_load_explicit(&cl->node_fn, memory_order_relaxed)) {
        atomic_store_explicit(&cl->node_arg, arg, memory_order_relaxed);
        atomic_store_explicit(&cl->node_fn, fn, memory_order_release);
        rc = REKI_OK;
    }
    pthread_mutex_unlock(&cl->claim_mu);
    return rc;
}

int reki_cluster_send_node(reki_cluster_t *cl, const char *node, const void *tag, size_t taglen,
                           const void *bytes, size_t len)
{
    if (!cl || !node || !key_ok(tag, taglen) || (!bytes && len) || len > RC_FRAME_MAX)
        return REKI_EINVAL;
    if (!bytes)
        bytes = "";
    if (strcmp(node, cl->node) == 0) {
        rc_node_message(cl, tag, taglen, bytes, len);
        return REKI_OK;
    }
    struct rc_peer *p = rc_peer_find(cl, node);
    /* seen_since is the control thread's; a peer with no address is unknown. */
    bool known = false;
    if (p) {
        pthread_mutex_lock(&p->mu);
        known = p->addr[0] != 0;
        pthread_mutex_unlock(&p->mu);
    }
    if (!known)
        return REKI_ENOTFOUND;
    return rc_forward(p, tag, taglen, bytes, len, RC_NODE_MSG);
}

int reki_cluster_stats(reki_cluster_t *cl, reki_cluster_stats_t *out)
{
    if (!cl || !out)
        return REKI_EINVAL;
    memset(out, 0, sizeof(*out));
    for (unsigned s = 0; s < cl->nshards; s++)
        out->shards_owned += reki__fence_owned(cl->fence, s);
    out->nodes = atomic_load_explicit(&cl->nodes, memory_order_relaxed);
#define RD(f) atomic_load_explicit(&cl->n_##f, memory_order_relaxed)
    out->local = RD(local);
    out->forwarded = RD(forwarded);
    out->received = RD(received);
    out->rerouted = RD(rerouted);
    out->lost = RD(lost);
    out->claims = RD(claims);
    out->releases = RD(releases);
    out->lease_losses = RD(lease_losses);
#undef RD
    return REKI_OK;
}

/* ---------------------------------------------------------------- join -- */

static bool name_ok(const char *n)
{
    size_t l = n ? strlen(n) : 0;
    if (l == 0 || l > RC_NAME_MAX)
        return false;
    for (size_t i = 0; i < l; i++)
        if ((unsigned char)n[i] <= ' ' || n[i] == '/' || (unsigned char)n[i] == 0x7f)
            return false;
    return true;
}

static int opts_check(const reki_registry_t *reg, const reki_cluster_opts_t *o)
{
    char host[256];
    int port;
    if (!reg || !o || !o->etcd || !*o->etcd || !name_ok(o->node) || !o->decode || !reg->start)
        return REKI_EINVAL;
    if (rc_parse_addr(o->listen, host, sizeof(host), &port) != REKI_OK ||
        (o->advertise && rc_parse_addr(o->advertise, host, sizeof(host), &port) != REKI_OK))
        return REKI_EINVAL;
    if (o->shards > REKI__FENCE_MAX_SHARDS || o->lease_ttl_s > 3600)
        return REKI_EINVAL;
    if (o->prefix && (strlen(o->prefix) == 0 || strlen(o->prefix) > 200))
        return REKI_EINVAL;
    return REKI_OK;
}

/* The cluster-wide hash key and shard count: created by the first node. */
static int read_config(reki_cluster_t *cl, reki__etcd_t *etcd)
{
    uint64_t k[2];
    if (getrandom(k, sizeof(k), 0) != (ssize_t)sizeof(k))
        return REKI_EDEAD;
    char key[256], val[64];
    int kn = snprintf(key, sizeof(key), "%sconfig", cl->prefix);
    int vn =
        snprintf(val, sizeof(val), "%016" PRIx64 " %016" PRIx64 " %u", k[0], k[1], cl->nshards);
    bool created = false;
    int64_t rev = 0;
    char *cur = NULL;
    size_t curlen = 0;
    int rc =
        reki__etcd_create(etcd, key, (size_t)kn, val, (size_t)vn, 0, &created, &rev, &cur, &curlen);
    if (rc != REKI_OK)
        return rc;
    const char *v = created ? val : cur;
    unsigned shards = 0;
    if (!v || sscanf(v, "%" SCNx64 " %" SCNx64 " %u", &cl->k0, &cl->k1, &shards) != 3)
        rc = REKI_EDEAD;
    else if (shards != cl->nshards)
        rc = REKI_EINVAL;
    free(cur);
    return rc;
}

static char *dup_or(const char *s, const char *dflt)
{
    return strdup(s ? s : dflt);
}

static void cl_free(reki_cluster_t *cl)
{
    reki__etcd_free(cl->claim_etcd);
    reki__etcd_free(cl->ctl_etcd);
    for (struct rc_peer *p = cl->peers, *n; p; p = n) {
        n = p->next;
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        free(p->buf);
        free(p);
    }
    if (cl->listen_fd >= 0)
        close(cl->listen_fd);
    free(cl->shard);
    free(cl->etcd_urls);
    free(cl->prefix);
    free(cl->listen);
    free(cl->advertise);
    pthread_mutex_destroy(&cl->peers_mu);
    pthread_mutex_destroy(&cl->own_mu);
    pthread_mutex_destroy(&cl->ctl_mu);
    pthread_mutex_destroy(&cl->round_mu);
    pthread_cond_destroy(&cl->ctl_cv);
    pthread_mutex_destroy(&cl->rx_mu);
    pthread_cond_destroy(&cl->rx_cv);
    pthread_mutex_destroy(&cl->claim_mu);
    free(cl);
}

static reki_cluster_t *cl_alloc(reki_registry_t *reg, const reki_cluster_opts_t *o)
{
    reki_cluster_t *cl = calloc(1, sizeof(*cl));
    if (!cl)
        return NULL;
    cl->reg = reg;
    cl->listen_fd = -1;
    cl->nshards = o->shards ? o->shards : 256;
    cl->ttl_s = o->lease_ttl_s ? o->lease_ttl_s : 5;
    cl->decode = o->decode;
    cl->decode_arg = o->decode_arg;
    strcpy(cl->node, o->node);
    pthread_mutex_init(&cl->peers_mu, NULL);
    pthread_mutex_init(&cl->own_mu, NULL);
    pthread_mutex_init(&cl->ctl_mu, NULL);
    pthread_mutex_init(&cl->round_mu, NULL);
    pthread_mutex_init(&cl->rx_mu, NULL);
    pthread_mutex_init(&cl->claim_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cl->ctl_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&cl->rx_cv, NULL);
    cl->etcd_urls = strdup(o->etcd);
    cl->prefix = dup_or(o->prefix, "/reki/");
    cl->listen = strdup(o->listen);
    cl->advertise = dup_or(o->advertise, o->listen);
    cl->shard = calloc(cl->nshards, sizeof(*cl->shard));
    if (!cl->etcd_urls || !cl->prefix || !cl->listen || !cl->advertise || !cl->shard) {
        cl_free(cl);
        return NULL;
    }
    return cl;
}

static void threads_stop(reki_cluster_t *cl, int started)
{
    atomic_store_explicit(&cl->stop, 1, memory_order_release);
    rc_kick(cl);
    pthread_t *t[] = {&cl->lease_thr, &cl->ctl_thr, &cl->watch_thr, &cl->listen_thr,
                      &cl->deadline_thr};
    for (int i = 0; i < started; i++)
        pthread_join(*t[i], NULL);
    rc_receivers_stop(cl);
    rc_peers_stop(cl);
}

static int threads_start(reki_cluster_t *cl)
{
    void *(*fn[])(void *) = {rc_lease_main, rc_control_main, rc_watch_main, rc_listen_main,
                             rc_deadline_main};
    pthread_t *t[] = {&cl->lease_thr, &cl->ctl_thr, &cl->watch_thr, &cl->listen_thr,
                      &cl->deadline_thr};
    for (int i = 0; i < 5; i++)
        if (pthread_create(t[i], NULL, fn[i], cl) != 0) {
            threads_stop(cl, i);
            return REKI_ENOMEM;
        }
    return REKI_OK;
}

/* Everything that talks to etcd before the threads run. */
static int join_etcd(reki_cluster_t *cl)
{
    int rc = reki__etcd_global_init();
    if (rc == REKI_OK)
        rc = reki__etcd_new(cl->etcd_urls, RC_ETCD_TIMEOUT_MS, &cl->ctl_etcd);
    if (rc == REKI_OK)
        rc = reki__etcd_new(cl->etcd_urls, RC_ETCD_TIMEOUT_MS, &cl->claim_etcd);
    if (rc == REKI_OK)
        rc = read_config(cl, cl->ctl_etcd);
    return rc;
}

int reki_cluster_join(reki_registry_t *reg, const reki_cluster_opts_t *opts, reki_cluster_t **out)
{
    int rc = out ? opts_check(reg, opts) : REKI_EINVAL;
    if (rc != REKI_OK)
        return rc;
    reki_cluster_t *cl = cl_alloc(reg, opts);
    if (!cl)
        return REKI_ENOMEM;
    rc = join_etcd(cl);
    if (rc == REKI_OK && !(cl->self = rc_peer_get(cl, cl->node, cl->advertise)))
        rc = REKI_ENOMEM;
    if (rc == REKI_OK) {
        cl->self->self = true;
        rc = rc_listen_open(cl);
    }
    if (rc == REKI_OK)
        rc = reki__fence_attach(reg, cl->nshards, cl->k0, cl->k1, &cl->fence);
    if (rc == REKI_OK && (rc = rc_lease_start(cl, cl->ctl_etcd)) != REKI_OK)
        reki__fence_detach(reg);
    if (rc == REKI_OK && (rc = threads_start(cl)) != REKI_OK) {
        (void)reki__etcd_lease_revoke(cl->ctl_etcd, atomic_load(&cl->lease));
        reki__fence_detach(reg);
    }
    if (rc != REKI_OK) {
        cl_free(cl);
        return rc;
    }
    /* Return once the control thread has read the map (bounded). */
    for (int i = 0; i < 500 && atomic_load_explicit(&cl->ctl_rounds, memory_order_acquire) == 0;
         i++)
        usleep(10 * 1000);
    *out = cl;
    return REKI_OK;
}

/* ---------------------------------------------------------------- leave -- */

/* No start in flight and no actor left in any shard (a shard not owned any
 * more, after a lost deadline, may still have actors in terminate). */
static bool all_quiet(reki_cluster_t *cl)
{
    for (unsigned s = 0; s < cl->nshards; s++)
        if (atomic_load_explicit(&cl->fence->shard[s].users, memory_order_seq_cst) ||
            reki__fence_live(cl->fence, s))
            return false;
    return true;
}

/* Delete this node's key (found by a range read: its CREATE revision). */
static void deregister(reki__etcd_t *etcd, const char *key, size_t kn)
{
    struct reki__etcd_kv *kvs = NULL;
    size_t n = 0;
    int64_t hrev;
    if (reki__etcd_range_prefix(etcd, key, kn, &kvs, &n, &hrev) != REKI_OK)
        return;
    for (size_t i = 0; i < n; i++)
        if (kvs[i].klen == kn && memcmp(kvs[i].key, key, kn) == 0) {
            bool deleted;
            (void)reki__etcd_delete_if(etcd, key, kn, kvs[i].create_rev, &deleted);
        }
    reki__etcd_kvs_free(kvs, n);
}

void reki_cluster_leave(reki_cluster_t *cl)
{
    if (!cl)
        return;
    /* No claims from here on; the control thread stops balancing. */
    atomic_store_explicit(&cl->leaving, 1, memory_order_release);
    pthread_mutex_lock(&cl->claim_mu); /* a claim in flight ends first, */
    pthread_mutex_unlock(&cl->claim_mu);
    pthread_mutex_lock(&cl->round_mu); /* and so does a control round */
    pthread_mutex_unlock(&cl->round_mu);
    char key[512];
    int kn = snprintf(key, sizeof(key), "%snodes/%s", cl->prefix, cl->node);
    reki__etcd_t *etcd = NULL;
    if (reki__etcd_new(cl->etcd_urls, RC_ETCD_TIMEOUT_MS, &etcd) == REKI_OK) {
        /* Deregister first, so that no node picks this one for a shard. */
        deregister(etcd, key, (size_t)kn);
        bool *all = calloc(cl->nshards, sizeof(*all));
        for (unsigned s = 0; all && s < cl->nshards; s++)
            all[s] = reki__fence_owned(cl->fence, s);
        if (all)
            rc_release(cl, all);
        free(all);
        /* Bounded: a terminate that never returns keeps its shard's key,
         * which then expires with the lease (never revoked early). */
        if (rc_settle(cl, etcd, rc_now_ns() + LEAVE_SETTLE_NS) && all_quiet(cl))
            (void)reki__etcd_lease_revoke(etcd, atomic_load(&cl->lease));
        reki__etcd_free(etcd);
    }
    threads_stop(cl, 5);
    rc_lose_all(cl, true); /* anything left (etcd unreachable): stop serving */
    /* The fence stays closed: a restart still queued for a key of a shard
     * that is now another node's must not start here. */
    cl_free(cl);
}
