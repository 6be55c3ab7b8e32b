/*
 * Per-thread state, created on first use and released at thread exit, so no
 * user thread ever registers itself: the thread token (who is running a
 * start), the worker a thread is (if any), a round-robin counter for spreading
 * actors over run queues, and hazard-pointer records, one per runtime.
 *
 * Hazard-pointer records belong to their runtime (freed by reki_rt_free); a
 * thread's exit only marks its records free for reuse, and only if the
 * runtime still exists, which it checks in the live-runtime set under a
 * process-wide mutex (taken at thread exit and runtime creation/free only).
 */
#include <stdlib.h>

#include "runtime/runtime.h"

struct reki__hprec {
    ck_hp_record_t rec;
    void *pointers[1];
    struct reki__hprec *next_owned; /* rt->hp_owned */
} __attribute__((aligned(64)));

struct hp_cache {
    uint64_t rt_id;
    reki_rt_t *rt;
    ck_hp_record_t *rec;
    struct hp_cache *next;
};

struct tls {
    char token;
    reki_pid_t current; /* actor whose callback this thread runs, or 0 */
    reki_pid_t caller;  /* reki_caller: of the message handled or last received */
    unsigned shard;     /* 1 + reki__tls_shard, 0 until first asked */
    unsigned rr;
    struct reki__worker *worker;
    struct hp_cache *hp;
};

static _Thread_local struct tls tls;
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct reki__list live_rts = {&live_rts, &live_rts};
static uint64_t next_rt_id = 1; /* under live_lock */

const void *reki__thread_token(void)
{
    return &tls.token;
}

struct reki__worker *reki__tls_worker(void)
{
    return tls.worker;
}

void reki__tls_set_worker(struct reki__worker *w)
{
    tls.worker = w;
}

reki_pid_t reki__tls_set_current(reki_pid_t pid)
{
    reki_pid_t prev = tls.current;
    tls.current = pid;
    return prev;
}

unsigned reki__tls_shard(void)
{
    static _Atomic unsigned next;
    if (REKI__UNLIKELY(tls.shard == 0))
        tls.shard = 1 + atomic_fetch_add_explicit(&next, 1, memory_order_relaxed) % REKI__SHARDS;
    return tls.shard - 1;
}

reki_pid_t reki__tls_swap_caller(reki_pid_t caller)
{
    reki_pid_t prev = tls.caller;
    tls.caller = caller;
    return prev;
}

reki_pid_t reki_caller(void)
{
    return tls.caller;
}

reki_pid_t reki__tls_current(void)
{
    return tls.current;
}

unsigned reki__tls_next_rr(void)
{
    return tls.rr++;
}

static bool rt_is_live(reki_rt_t *rt, uint64_t id)
{
    for (struct reki__list *n = live_rts.next; n != &live_rts; n = n->next)
        if (n == &rt->live_node && rt->id == id)
            return true;
    return false;
}

static void tls_destroy(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&live_lock);
    for (struct hp_cache *c = tls.hp, *next; c; c = next) {
        next = c->next;
        if (rt_is_live(c->rt, c->rt_id)) {
            pthread_mutex_lock(&c->rt->hp_lock);
            ck_hp_unregister(c->rec);
            pthread_mutex_unlock(&c->rt->hp_lock);
        }
        reki__free(c);
    }
    tls.hp = NULL;
    pthread_mutex_unlock(&live_lock);
}

static void tls_key_init(void)
{
    pthread_key_create(&tls_key, tls_destroy);
}

void reki__rt_list_add(reki_rt_t *rt)
{
    pthread_mutex_lock(&live_lock);
    rt->id = next_rt_id++;
    reki__list_add(&live_rts, &rt->live_node);
    pthread_mutex_unlock(&live_lock);
}

void reki__rt_list_remove(reki_rt_t *rt)
{
    pthread_mutex_lock(&live_lock);
    reki__list_del(&rt->live_node);
    pthread_mutex_unlock(&live_lock);
}

/* Forget records of runtimes that are gone (their ids never return), so a
 * thread that outlives many runtimes keeps a short cache. */
static void prune_cache(void)
{
    pthread_mutex_lock(&live_lock);
    for (struct hp_cache **pp = &tls.hp; *pp;) {
        struct hp_cache *c = *pp;
        if (rt_is_live(c->rt, c->rt_id)) {
            pp = &c->next;
        } else {
            *pp = c->next;
            reki__free(c);
        }
    }
    pthread_mutex_unlock(&live_lock);
}

/* Under rt->hp_lock: a recycled record or a new one. */
static ck_hp_record_t *record_get(reki_rt_t *rt)
{
    ck_hp_record_t *r = ck_hp_recycle(&rt->hp);
    if (r)
        return r;
    struct reki__hprec *h = reki__aligned_alloc(64, sizeof(*h));
    if (!h)
        return NULL;
    h->pointers[0] = NULL;
    ck_hp_register(&rt->hp, &h->rec, h->pointers);
    h->next_owned = rt->hp_owned;
    rt->hp_owned = h;
    return &h->rec;
}

ck_hp_record_t *reki__hp_record(reki_rt_t *rt)
{
    for (struct hp_cache *c = tls.hp; c; c = c->next)
        if (c->rt == rt && c->rt_id == rt->id)
            return c->rec;
    pthread_once(&tls_once, tls_key_init);
    prune_cache();
    struct hp_cache *c = reki__malloc(sizeof(*c));
    if (!c)
        return NULL;
    pthread_mutex_lock(&rt->hp_lock);
    ck_hp_record_t *r = record_get(rt);
    pthread_mutex_unlock(&rt->hp_lock);
    if (!r) {
        reki__free(c);
        return NULL;
    }
    c->rt_id = rt->id;
    c->rt = rt;
    c->rec = r;
    c->next = tls.hp;
    tls.hp = c;
    pthread_setspecific(tls_key, &tls);
    return r;
}

int reki__hp_use(reki_rt_t *rt, ck_hp_destructor_t destroy)
{
    int rc = REKI_OK;
    pthread_mutex_lock(&rt->hp_lock);
    if (!rt->hp_ready) {
        /* One hazard pointer per record: a waiter protects the one entry it
         * waits on.  Scan once 64 entries are pending. */
        ck_hp_init(&rt->hp, 1, 64, destroy);
        rt->reaper = record_get(rt);
        if (rt->reaper)
            rt->hp_ready = true;
        else
            rc = REKI_ENOMEM;
    } else if (rt->hp.destroy != destroy) {
        rc = REKI_EINVAL; /* one kind of object per domain: its destructor is fixed */
    }
    pthread_mutex_unlock(&rt->hp_lock);
    return rc;
}

void reki__hp_destroy(reki_rt_t *rt)
{
    /* reki_rt_free, alone with rt (hp_ready without hp_lock): every waiter
     * has left; every retired entry is now unprotected. */
    if (rt->hp_ready)
        ck_hp_purge(rt->reaper);
    for (struct reki__hprec *h = rt->hp_owned, *next; h; h = next) {
        next = h->next_owned;
        reki__free(h);
    }
    rt->hp_owned = NULL;
    rt->hp_ready = false;
}
