/*
 * The shard map, claims and handoffs (the control and watch threads).
 *
 * etcd holds, under the prefix:
 *   nodes/<name>   = "host:port"   (the node's lease)  a live node
 *   shards/<s>     = "<name>"      (the owner's lease) the claim of shard s
 * A claim is a transaction "if shards/<s> was never created (CREATE revision
 * 0), put it with my lease"; its revision is the shard's fencing token.  The
 * key disappears when its owner deletes it (handoff) or its lease expires
 * (owner dead or cut off), and only then can another claim succeed.
 *
 * Who claims: rendezvous hashing (highest random weight) of the shard
 * number against the live nodes' names, under the cluster's hash key.  Each
 * node claims the unowned shards that prefer it; a shard left unowned for
 * 1.5 s (its preferred node is slow or paused) may be claimed by anyone; a
 * message to an unowned shard claims it on the sender's thread (cluster.c).
 * A node hands over the shards it owns that prefer another node once that
 * node has been seen alive for a second, so shards follow the membership:
 * a joining node gets about 1/n of them, a leaving or dead node's go to the
 * nodes that rank next for each shard.
 *
 * A handoff (rc_release): owned[s] = 0 in the fence (no new start), wait for
 * the starts in flight, stop the shard's actors, wait until every one's
 * terminate returned (the fence's live count), then delete the key if its
 * CREATE revision is still our claim's.  The new owner can only claim after
 * that delete, so the two never serve s at the same time.
 *
 * The map is re-read after every watch event (the watch is only a trigger;
 * a range read is the truth) and every 500 ms in any case, so a lost watch
 * stream costs latency, never correctness.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster_int.h"

#define CLAIM_ANYONE_NS 1500000000u /* unowned this long: anyone claims */
#define PEER_SETTLE_NS 1000000000u  /* seen this long before shards move to it */
#define SETTLE_NS 200000000u        /* a round's wait for handed-over actors */

struct rc_peer *rc_peer_find(reki_cluster_t *cl, const char *name)
{
    pthread_mutex_lock(&cl->peers_mu);
    struct rc_peer *p = cl->peers;
    while (p && strcmp(p->name, name) != 0)
        p = p->next;
    pthread_mutex_unlock(&cl->peers_mu);
    return p;
}

/* Peers come from nodes/ keys only (and this node), at most RC_PEERS_MAX. */
struct rc_peer *rc_peer_get(reki_cluster_t *cl, const char *name, const char *addr)
{
    pthread_mutex_lock(&cl->peers_mu);
    struct rc_peer *p = cl->peers;
    unsigned n = 0;
    for (; p && strcmp(p->name, name) != 0; p = p->next)
        n++;
    if (!p && n < RC_PEERS_MAX && strlen(name) <= RC_NAME_MAX &&
        (p = calloc(1, sizeof(*p))) != NULL) {
        strcpy(p->name, name);
        p->cl = cl;
        pthread_mutex_init(&p->mu, NULL);
        pthread_cond_init(&p->cv, NULL);
        p->next = cl->peers;
        cl->peers = p;
    }
    pthread_mutex_unlock(&cl->peers_mu);
    if (p && addr) {
        pthread_mutex_lock(&p->mu);
        if (strcmp(p->addr, addr) != 0 && strlen(addr) < sizeof(p->addr)) {
            strcpy(p->addr, addr);
            p->addr_changed = true;
        }
        pthread_mutex_unlock(&p->mu);
    }
    return p;
}

/* The control thread's view of one round. */
struct view {
    struct rc_peer *owner[REKI__FENCE_MAX_SHARDS];
    int64_t rev[REKI__FENCE_MAX_SHARDS], lease[REKI__FENCE_MAX_SHARDS];
    bool taken[REKI__FENCE_MAX_SHARDS]; /* a key exists, owner known or not */
    struct rc_peer *live[RC_PEERS_MAX];
    unsigned nlive;
    int64_t hrev; /* the store's revision this view was read at */
};

static bool parse_shard(const reki_cluster_t *cl, const struct reki__etcd_kv *kv, unsigned *s)
{
    size_t pl = strlen(cl->prefix);
    if (kv->klen <= pl + 7 || memcmp(kv->key + pl, "shards/", 7) != 0)
        return false;
    /* Strict decimal, as written by rc_claim: no sign, space or leading 0. */
    const char *d = kv->key + pl + 7;
    size_t n = kv->klen - pl - 7;
    unsigned long v = 0;
    if (n > 5 || (n > 1 && d[0] == '0'))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (d[i] < '0' || d[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(d[i] - '0');
    }
    if (v >= cl->nshards)
        return false;
    *s = (unsigned)v;
    return true;
}

static void note_node(reki_cluster_t *cl, struct view *v, const struct reki__etcd_kv *kv)
{
    size_t pl = strlen(cl->prefix);
    const char *name = kv->key + pl + 6;
    if (kv->klen - pl - 6 > RC_NAME_MAX || strlen(name) != kv->klen - pl - 6 ||
        v->nlive == RC_PEERS_MAX)
        return;
    struct rc_peer *p = rc_peer_get(cl, name, kv->val);
    if (!p)
        return;
    for (unsigned i = 0; i < v->nlive; i++)
        if (v->live[i] == p)
            return;
    v->live[v->nlive++] = p;
}

static struct rc_peer *live_named(const struct view *v, const char *name)
{
    for (unsigned i = 0; i < v->nlive; i++)
        if (strcmp(v->live[i]->name, name) == 0)
            return v->live[i];
    return NULL;
}

/* Read the whole prefix into v; publish owners for the send paths. */
static int read_view(reki_cluster_t *cl, reki__etcd_t *etcd, struct view *v)
{
    struct reki__etcd_kv *kvs = NULL;
    size_t n = 0;
    int64_t hrev = 0;
    int rc = reki__etcd_range_prefix(etcd, cl->prefix, strlen(cl->prefix), &kvs, &n, &hrev);
    if (rc != REKI_OK)
        return rc;
    size_t pl = strlen(cl->prefix);
    memset(v->owner, 0, cl->nshards * sizeof(v->owner[0]));
    memset(v->taken, 0, cl->nshards * sizeof(v->taken[0]));
    v->nlive = 0;
    for (size_t i = 0; i < n; i++)
        if (kvs[i].klen > pl + 6 && memcmp(kvs[i].key + pl, "nodes/", 6) == 0)
            note_node(cl, v, &kvs[i]);
    for (size_t i = 0; i < n; i++) {
        unsigned s;
        if (!parse_shard(cl, &kvs[i], &s))
            continue;
        /* Owners are live nodes (or this one): a value naming anything
         * else makes no peer, and its shard is neither routed nor claimed
         * until the key goes. */
        v->taken[s] = true;
        v->owner[s] = strcmp(kvs[i].val, cl->node) == 0 ? cl->self : live_named(v, kvs[i].val);
        v->rev[s] = kvs[i].create_rev;
        v->lease[s] = kvs[i].lease;
    }
    reki__etcd_kvs_free(kvs, n);
    v->hrev = hrev;
    for (unsigned s = 0; s < cl->nshards; s++) {
        /* release: the peer's name before a sender reads it */
        atomic_store_explicit(&cl->shard[s].owner, v->owner[s], memory_order_release);
    }
    atomic_store_explicit(&cl->nodes, v->nlive, memory_order_relaxed);
    return REKI_OK;
}

static uint64_t score(const reki_cluster_t *cl, const struct rc_peer *p, unsigned s)
{
    char buf[RC_NAME_MAX + 16];
    size_t n = strlen(p->name);
    memcpy(buf, p->name, n);
    memcpy(buf + n, &s, sizeof(s));
    return reki__hash(&cl->fence->key, buf, n + sizeof(s));
}

static struct rc_peer *preferred(const reki_cluster_t *cl, const struct view *v, unsigned s)
{
    struct rc_peer *best = NULL;
    uint64_t bs = 0;
    for (unsigned i = 0; i < v->nlive; i++) {
        uint64_t sc = score(cl, v->live[i], s);
        if (!best || sc > bs) {
            best = v->live[i];
            bs = sc;
        }
    }
    return best;
}

int rc_claim(reki_cluster_t *cl, reki__etcd_t *etcd, unsigned s, struct rc_peer **owner)
{
    pthread_mutex_lock(&cl->own_mu);
    uint64_t epoch = cl->epoch;
    int64_t lease = atomic_load_explicit(&cl->lease, memory_order_relaxed);
    pthread_mutex_unlock(&cl->own_mu);
    *owner = NULL;
    if (!lease || atomic_load_explicit(&cl->leaving, memory_order_acquire))
        return REKI_ESHUTDOWN;
    char key[512];
    int kn = snprintf(key, sizeof(key), "%sshards/%u", cl->prefix, s);
    bool created = false;
    int64_t rev = 0;
    char *cur = NULL;
    size_t curlen = 0;
    int rc = reki__etcd_create(etcd, key, (size_t)kn, cl->node, strlen(cl->node), lease, &created,
                               &rev, &cur, &curlen);
    if (rc != REKI_OK)
        return rc;
    if (!created) {
        *owner = cur ? rc_peer_find(cl, cur) : NULL;
        free(cur);
        if (*owner == cl->self && reki__fence_owned(cl->fence, s))
            return REKI_OK; /* another thread of ours claimed it meanwhile */
        return REKI_ENOTFOUND;
    }
    pthread_mutex_lock(&cl->own_mu);
    bool ours =
        cl->epoch == epoch && atomic_load_explicit(&cl->lease, memory_order_relaxed) == lease;
    if (ours) {
        atomic_store_explicit(&cl->shard[s].may_claim, 0, memory_order_relaxed);
        atomic_store_explicit(&cl->shard[s].token, rev, memory_order_relaxed);
        atomic_store_explicit(&cl->shard[s].owner, cl->self, memory_order_release);
        reki__fence_set_owned(cl->fence, s, rev);
        atomic_fetch_add_explicit(&cl->n_claims, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&cl->own_mu);
    *owner = ours ? cl->self : NULL;
    return ours ? REKI_OK : REKI_ESHUTDOWN; /* made under a lease since lost: it expires */
}

/* Take a claim of ours found in etcd under our current lease. */
static void adopt(reki_cluster_t *cl, unsigned s, int64_t rev, int64_t lease)
{
    pthread_mutex_lock(&cl->own_mu);
    if (atomic_load_explicit(&cl->lease, memory_order_relaxed) == lease &&
        !reki__fence_owned(cl->fence, s) &&
        !atomic_load_explicit(&cl->shard[s].releasing, memory_order_relaxed)) {
        atomic_store_explicit(&cl->shard[s].token, rev, memory_order_relaxed);
        reki__fence_set_owned(cl->fence, s, rev);
        atomic_fetch_add_explicit(&cl->n_claims, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&cl->own_mu);
}

struct stop_set {
    reki_cluster_t *cl;
    const bool *which;
};

static int stop_fn(const void *key, size_t keylen, reki_pid_t pid, void *arg)
{
    struct stop_set *ss = arg;
    (void)pid;
    if (ss->which[reki__fence_shard(ss->cl->fence, key, keylen)])
        (void)reki_stop(ss->cl->reg, key, keylen);
    return 0;
}

static void stop_shards(reki_cluster_t *cl, const bool *which)
{
    struct stop_set ss = {cl, which};
    (void)reki_foreach(cl->reg, stop_fn, &ss);
}

void rc_release(reki_cluster_t *cl, const bool *which)
{
    bool any = false;
    pthread_mutex_lock(&cl->own_mu); /* claims and adoptions see both */
    for (unsigned s = 0; s < cl->nshards; s++)
        if (which[s]) {
            reki__fence_set_owned(cl->fence, s, 0); /* no new start from here */
            atomic_store_explicit(&cl->shard[s].releasing, 1, memory_order_relaxed);
            any = true;
        }
    pthread_mutex_unlock(&cl->own_mu);
    if (any)
        stop_shards(cl, which);
}

/* The shards being released whose starts have all ended and whose actors
 * have all terminated: their keys go (if the claim is still ours: a lease
 * loss clears the token, and the key then expires with that lease).  Until
 * `deadline`; the others stay `releasing` for a later round, which stops
 * their actors again (a start that was still in flight may have linked
 * one).  Returns whether none is left. */
bool rc_settle(reki_cluster_t *cl, reki__etcd_t *etcd, uint64_t deadline)
{
    bool *again = calloc(cl->nshards, sizeof(*again));
    bool left = true, etcd_ok = true;
    for (int pass = 0; again && left; pass++) {
        left = false;
        bool restop = false;
        for (unsigned s = 0; s < cl->nshards; s++) {
            struct rc_shard *sh = &cl->shard[s];
            again[s] = false;
            if (!atomic_load_explicit(&sh->releasing, memory_order_relaxed))
                continue;
            /* seq_cst: the Dekker pair with fence_enter's users++. */
            uint32_t users = atomic_load_explicit(&cl->fence->shard[s].users, memory_order_seq_cst);
            if (users || reki__fence_live(cl->fence, s)) {
                left = true;
                again[s] = !users;
                restop |= again[s];
                continue;
            }
            pthread_mutex_lock(&cl->own_mu);
            int64_t token = atomic_exchange_explicit(&sh->token, 0, memory_order_relaxed);
            atomic_store_explicit(&sh->releasing, 0, memory_order_relaxed);
            pthread_mutex_unlock(&cl->own_mu);
            if (token && etcd_ok) {
                char key[512];
                int kn = snprintf(key, sizeof(key), "%sshards/%u", cl->prefix, s);
                bool deleted = false;
                int rc = reki__etcd_delete_if(etcd, key, (size_t)kn, token, &deleted);
                /* etcd unreachable: the rest keep their keys, which come
                 * back through adoption or expire with the lease. */
                etcd_ok = rc == REKI_OK;
            }
            atomic_store_explicit(&sh->owner, NULL, memory_order_release);
            atomic_fetch_add_explicit(&cl->n_releases, 1, memory_order_relaxed);
        }
        if (!left || rc_now_ns() >= deadline)
            break;
        if (restop && pass % 100 == 0)
            stop_shards(cl, again);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    free(again);
    return !left;
}

/* Whether pref has been alive long enough for shards to move to it. */
static bool settled(const struct rc_peer *pref, uint64_t now)
{
    return pref->seen_since && now - pref->seen_since > PEER_SETTLE_NS;
}

/* One pass over the shards: claims, stale keys of ours, handoffs (out[s]:
 * shards to hand over, or to stop serving because etcd no longer has our
 * claim). */
static void balance(reki_cluster_t *cl, reki__etcd_t *etcd, struct view *v, bool *out)
{
    uint64_t now = rc_now_ns();
    int64_t lease = atomic_load_explicit(&cl->lease, memory_order_acquire);
    bool serving = lease && now < atomic_load_explicit(&cl->fence->until, memory_order_acquire) &&
                   !atomic_load_explicit(&cl->leaving, memory_order_acquire);
    for (unsigned s = 0; s < cl->nshards; s++) {
        struct rc_shard *sh = &cl->shard[s];
        struct rc_peer *o = v->owner[s], *pref = preferred(cl, v, s);
        bool mine = reki__fence_owned(cl->fence, s);
        /* A claim newer than the view is not in it: not a loss. */
        int64_t token = atomic_load_explicit(&sh->token, memory_order_relaxed);
        out[s] = mine && token <= v->hrev && (o != cl->self || v->rev[s] != token);
        if (!v->taken[s]) {
            if (!sh->unowned_since)
                sh->unowned_since = now;
            /* Ours to claim, here or on a sender's thread (cluster.c). */
            bool may = pref == cl->self || now - sh->unowned_since > CLAIM_ANYONE_NS;
            atomic_store_explicit(&sh->may_claim, may, memory_order_relaxed);
            if (serving && may && !out[s]) {
                struct rc_peer *ow;
                (void)rc_claim(cl, etcd, s, &ow);
            }
            continue;
        }
        atomic_store_explicit(&sh->may_claim, 0, memory_order_relaxed);
        sh->unowned_since = 0;
        /* A claim of ours under a lease we lost (o == self, !mine) is left
         * to expire with that lease: a process of the same name may still
         * serve it until its own deadline.  Under our current lease it is
         * ours (a claim whose answer was lost and whose retry found it). */
        if (o == cl->self && !mine && serving && v->lease[s] == lease)
            adopt(cl, s, v->rev[s], lease);
        if (mine && !out[s] && serving && pref && pref != cl->self && settled(pref, now))
            out[s] = true;
        if (!o)
            continue; /* taken by a name that is no live node: wait for the key to go */
    }
}

static void mark_live(reki_cluster_t *cl, const struct view *v)
{
    uint64_t now = rc_now_ns();
    pthread_mutex_lock(&cl->peers_mu);
    for (struct rc_peer *p = cl->peers; p; p = p->next) {
        bool live = false;
        for (unsigned i = 0; i < v->nlive && !live; i++)
            live = v->live[i] == p;
        if (!live)
            p->seen_since = 0;
        else if (!p->seen_since)
            p->seen_since = now;
    }
    pthread_mutex_unlock(&cl->peers_mu);
}

void rc_kick(reki_cluster_t *cl)
{
    pthread_mutex_lock(&cl->ctl_mu);
    cl->ctl_dirty = true;
    pthread_cond_signal(&cl->ctl_cv);
    pthread_mutex_unlock(&cl->ctl_mu);
}

/* Wait for a kick, at most 500 ms. */
static void ctl_wait(reki_cluster_t *cl)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += 500000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&cl->ctl_mu);
    while (!cl->ctl_dirty && !atomic_load_explicit(&cl->stop, memory_order_acquire))
        if (pthread_cond_timedwait(&cl->ctl_cv, &cl->ctl_mu, &ts) != 0)
            break;
    cl->ctl_dirty = false;
    pthread_mutex_unlock(&cl->ctl_mu);
}

void *rc_control_main(void *arg)
{
    reki_cluster_t *cl = arg;
    struct view *v = calloc(1, sizeof(*v));
    bool *out = calloc(cl->nshards, sizeof(*out));
    while (v && out && !atomic_load_explicit(&cl->stop, memory_order_acquire)) {
        pthread_mutex_lock(&cl->round_mu);
        if (!atomic_load_explicit(&cl->leaving, memory_order_acquire) &&
            read_view(cl, cl->ctl_etcd, v) == REKI_OK) {
            mark_live(cl, v);
            balance(cl, cl->ctl_etcd, v, out);
            rc_release(cl, out);
            /* Bounded: a terminate that blocks delays its shard's handoff
             * to a later round, never the other shards' or the claims. */
            (void)rc_settle(cl, cl->ctl_etcd, rc_now_ns() + SETTLE_NS);
        }
        pthread_mutex_unlock(&cl->round_mu);
        atomic_fetch_add_explicit(&cl->ctl_rounds, 1, memory_order_release);
        ctl_wait(cl);
    }
    free(v);
    free(out);
    return NULL;
}

static int watch_fn(void *arg, int type, const struct reki__etcd_kv *kv, int64_t rev)
{
    (void)type;
    (void)kv;
    (void)rev;
    rc_kick(arg);
    return 0;
}

void *rc_watch_main(void *arg)
{
    reki_cluster_t *cl = arg;
    reki__etcd_t *etcd = NULL;
    if (reki__etcd_new(cl->etcd_urls, RC_ETCD_TIMEOUT_MS, &etcd) != REKI_OK)
        return NULL;
    while (!atomic_load_explicit(&cl->stop, memory_order_acquire)) {
        (void)reki__etcd_watch_prefix(etcd, cl->prefix, strlen(cl->prefix), 0, watch_fn, cl,
                                      &cl->stop);
        for (int i = 0; i < 10 && !atomic_load_explicit(&cl->stop, memory_order_acquire); i++) {
            struct timespec ts = {0, 20000000};
            nanosleep(&ts, NULL);
        }
    }
    reki__etcd_free(etcd);
    return NULL;
}
