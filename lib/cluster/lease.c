/*
 * The lease and the deadline (the lease thread).
 *
 * The node holds one etcd lease; its node key and every shard it claims are
 * attached to it.  Every ttl/3 the thread reads the boottime clock (t0),
 * then sends a keepalive.  etcd can expire the lease no sooner than ttl
 * after it received that keepalive, which is after t0; so the node may
 * serve until t0 + ttl - margin, with margin = max(ttl/5, 300 ms) for clock
 * rates and the coarse expiry checks.  That deadline goes into the
 * registry's fence (lib/registry/fence.c): past it, no actor of the registry handles
 * a message and nothing starts, whatever this thread is doing (it may be
 * the paused one).
 *
 * When the deadline passes with no renewal (etcd unreachable, or electing a
 * leader), the node stops serving every shard (rc_lose_all) and goes on
 * renewing the same lease: if etcd still has it, no other node can have
 * claimed those shards, and the control thread adopts the claims still
 * under it.  When a keepalive says the lease is gone, the node grants a new
 * lease and registers again; the control thread claims shards anew, with
 * new tokens.
 * Keys left behind under the old lease expire with it; it is never revoked
 * (a revoke would end the margin the proof relies on).
 *
 * The clock is CLOCK_BOOTTIME (reki__fence_now_ns): it goes on counting
 * while the machine is suspended, where CLOCK_BOOTTIME stops.
 *
 * etcd itself must honour the lease's TTL: etcd-io/etcd#15247 (an old
 * leader revoking leases early after losing leadership) breaks that
 * premise; releases with its fix (3.4.32 and 3.5.13 on) are recommended.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cluster_int.h"

static uint64_t margin_ns(const reki_cluster_t *cl)
{
    uint64_t m = (uint64_t)cl->ttl_s * 1000000000u / 5;
    return m < 300000000u ? 300000000u : m;
}

static void set_deadline(reki_cluster_t *cl, uint64_t t0, int64_t ttl)
{
    reki__fence_set_until(cl->fence, t0 + (uint64_t)ttl * 1000000000u - margin_ns(cl));
}

/* Grant a lease and register this node under it. */
int rc_lease_start(reki_cluster_t *cl, reki__etcd_t *etcd)
{
    int64_t id = 0, ttl = 0;
    uint64_t t0 = rc_now_ns();
    int rc = reki__etcd_lease_grant(etcd, cl->ttl_s, &id, &ttl);
    if (rc != REKI_OK)
        return rc;
    if (ttl <= 0) {
        (void)reki__etcd_lease_revoke(etcd, id);
        return REKI_EDEAD;
    }
    char key[512];
    int n = snprintf(key, sizeof(key), "%snodes/%s", cl->prefix, cl->node);
    rc = reki__etcd_put(etcd, key, (size_t)n, cl->advertise, strlen(cl->advertise), id);
    if (rc != REKI_OK) {
        (void)reki__etcd_lease_revoke(etcd, id);
        return rc;
    }
    pthread_mutex_lock(&cl->own_mu);
    atomic_store_explicit(&cl->lease, id, memory_order_release);
    set_deadline(cl, t0, ttl);
    pthread_mutex_unlock(&cl->own_mu);
    rc_kick(cl);
    return REKI_OK;
}

static int stop_all_fn(const void *key, size_t keylen, reki_pid_t pid, void *arg)
{
    (void)pid;
    (void)reki_stop(arg, key, keylen);
    return 0;
}

void rc_lose_all(reki_cluster_t *cl, bool lease_gone)
{
    pthread_mutex_lock(&cl->own_mu);
    cl->epoch++;
    reki__fence_set_until(cl->fence, 0); /* closed: no handle, no start */
    for (unsigned s = 0; s < cl->nshards; s++) {
        reki__fence_set_owned(cl->fence, s, 0);
        atomic_store_explicit(&cl->shard[s].token, 0, memory_order_relaxed);
        atomic_store_explicit(&cl->shard[s].may_claim, 0, memory_order_relaxed);
    }
    if (lease_gone)
        atomic_store_explicit(&cl->lease, 0, memory_order_release);
    pthread_mutex_unlock(&cl->own_mu);
    /* Nothing handles or starts any more (the deadline is 0).  Stopping
     * runs their terminate now rather than at some later message; an actor
     * a start links after this walk cannot handle either, and exits at its
     * first message. */
    (void)reki_foreach(cl->reg, stop_all_fn, cl->reg);
    atomic_fetch_add_explicit(&cl->n_lease_losses, 1, memory_order_relaxed);
    rc_kick(cl);
}

static void nap_ms(reki_cluster_t *cl, unsigned ms)
{
    while (ms && !atomic_load_explicit(&cl->stop, memory_order_acquire)) {
        unsigned step = ms < 20 ? ms : 20;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

/* One renewal: 1 renewed, 0 not now (retry soon), -1 the lease is gone. */
static int renew(reki_cluster_t *cl, reki__etcd_t *etcd, int64_t id)
{
    int64_t ttl = 0;
    uint64_t t0 = rc_now_ns();
    int rc = reki__etcd_lease_keepalive(etcd, id, &ttl);
    if (rc == REKI_OK && ttl > 0) {
        pthread_mutex_lock(&cl->own_mu);
        if (atomic_load_explicit(&cl->lease, memory_order_relaxed) == id)
            set_deadline(cl, t0, ttl);
        pthread_mutex_unlock(&cl->own_mu);
        return 1;
    }
    return rc == REKI_ENOTFOUND || rc == REKI_OK ? -1 : 0;
}

/* Per request: a keepalive tried on every endpoint must still end well
 * before the deadline it is meant to extend. */
static int keepalive_timeout_ms(const reki_cluster_t *cl)
{
    int n = 1;
    for (const char *c = cl->etcd_urls; *c; c++)
        n += *c == ',';
    int ms = (int)(cl->ttl_s * 1000u / 3u) / n;
    return ms < 200 ? 200 : ms > RC_ETCD_TIMEOUT_MS ? RC_ETCD_TIMEOUT_MS : ms;
}

void *rc_lease_main(void *arg)
{
    reki_cluster_t *cl = arg;
    reki__etcd_t *etcd = NULL;
    if (reki__etcd_new(cl->etcd_urls, keepalive_timeout_ms(cl), &etcd) != REKI_OK)
        return NULL;
    unsigned period_ms = cl->ttl_s * 1000 / 3;
    while (!atomic_load_explicit(&cl->stop, memory_order_acquire)) {
        int64_t id = atomic_load_explicit(&cl->lease, memory_order_acquire);
        if (id == 0) {
            if (atomic_load_explicit(&cl->leaving, memory_order_acquire)) {
                nap_ms(cl, 100); /* no new lease for a node on its way out */
                continue;
            }
            if (rc_lease_start(cl, etcd) != REKI_OK)
                nap_ms(cl, 200);
            continue;
        }
        /* Unreachable etcd (or a leader election): keep renewing the same
         * lease; the deadline thread stops serving when it passes.  If
         * etcd still has the lease when it answers (a new leader extends
         * every lease), nobody else can have claimed our shards, and the
         * control thread adopts the claims still under it (shards.c). */
        int r = renew(cl, etcd, id);
        if (r > 0)
            nap_ms(cl, period_ms);
        else if (r < 0)
            rc_lose_all(cl, true); /* gone: a new lease next */
        else
            nap_ms(cl, 100);
    }
    reki__etcd_free(etcd);
    return NULL;
}

/* The deadline thread: stops serving the moment the deadline passes,
 * whatever the lease thread is waiting for (a keepalive to an endpoint
 * that does not answer).  The fence already refuses every handle and start
 * from then on; this ends the actors (their terminate runs within the
 * margin, before etcd can expire the lease). */
void *rc_deadline_main(void *arg)
{
    reki_cluster_t *cl = arg;
    while (!atomic_load_explicit(&cl->stop, memory_order_acquire)) {
        uint64_t until = atomic_load_explicit(&cl->fence->until, memory_order_acquire);
        uint64_t now = rc_now_ns();
        if (until && now >= until) {
            rc_lose_all(cl, false); /* sets until to 0: once per loss */
            continue;
        }
        uint64_t ns = until ? until - now : 50000000u;
        struct timespec ts = {0, (long)(ns < 20000000u ? ns : 20000000u)};
        nanosleep(&ts, NULL);
    }
    return NULL;
}
