/*
 * Baseline "serial": the gen_registry / Gleam reki design in C.  Reads go
 * straight to a shared table (ck_ht, lock-free, like ETS read_concurrency);
 * every lookup_or_start that misses and every stop is a request to one
 * registry thread over a queue (mutex + condvar, like a process mailbox),
 * which checks the table again, runs the start function, writes the table
 * (it is ck_ht's single writer) and answers through a semaphore.  Starts of
 * all keys are serialised on that thread, as in the Erlang original.
 */
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>

#include "bench.h"
#include "ckmap.h"

typedef struct request {
    struct request *next;
    enum { REQ_START, REQ_STOP } op;
    const void *key;
    size_t len;
    int rc;
    reki_pid_t pid;
    sem_t done;
} request_t;

typedef struct serial {
    ckmap_t map;
    reki_rt_t *rt;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    request_t *head, **tail;
    bool quit;
    pthread_t thread;
} serial_t;

static void serve(serial_t *s, request_t *r)
{
    if (r->op == REQ_STOP) {
        r->rc = ckmap_remove(&s->map, r->key, r->len, &r->pid);
        if (r->rc == 0)
            reki_kill(s->rt, r->pid);
        return;
    }
    if (ckmap_get(&s->map, r->key, r->len, &r->pid)) {
        r->rc = 0;
        return;
    }
    r->rc = bench_start(s->rt, r->key, r->len, NULL, &r->pid);
    if (r->rc < 0)
        return;
    r->rc = ckmap_put(&s->map, r->key, r->len, r->pid);
    if (r->rc == 0)
        r->rc = REKI_STARTED;
    else
        reki_kill(s->rt, r->pid);
}

static void *registry_thread(void *p)
{
    serial_t *s = p;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (s->head == NULL && !s->quit)
            pthread_cond_wait(&s->wake, &s->lock);
        if (s->head == NULL)
            break;
        request_t *batch = s->head;
        s->head = NULL;
        s->tail = &s->head;
        pthread_mutex_unlock(&s->lock);
        while (batch != NULL) {
            request_t *next = batch->next;
            serve(s, batch);
            sem_post(&batch->done); /* batch may be gone from here on */
            batch = next;
        }
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static int ask(serial_t *s, request_t *r)
{
    r->next = NULL;
    sem_init(&r->done, 0, 0);
    pthread_mutex_lock(&s->lock);
    *s->tail = r;
    s->tail = &r->next;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    while (sem_wait(&r->done) != 0)
        ; /* EINTR */
    sem_destroy(&r->done);
    return r->rc;
}

static int s_create(reki_rt_t *rt, size_t capacity, void **out)
{
    serial_t *s = calloc(1, sizeof *s);
    if (s == NULL || ckmap_init(&s->map, capacity) != 0) {
        free(s);
        return REKI_ENOMEM;
    }
    s->rt = rt;
    s->tail = &s->head;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    if (pthread_create(&s->thread, NULL, registry_thread, s) != 0) {
        ckmap_destroy(&s->map, NULL, NULL);
        free(s);
        return REKI_EAGAIN;
    }
    *out = s;
    return 0;
}

static void kill_one(reki_pid_t pid, void *rt)
{
    reki_kill(rt, pid);
}

static void s_destroy(void *p)
{
    serial_t *s = p;
    pthread_mutex_lock(&s->lock);
    s->quit = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    ckmap_destroy(&s->map, kill_one, s->rt);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int s_lookup(void *p, const void *key, size_t len, reki_pid_t *out)
{
    serial_t *s = p;
    return ckmap_get(&s->map, key, len, out) ? 0 : REKI_ENOTFOUND;
}

static int s_lookup_or_start(void *p, const void *key, size_t len, reki_pid_t *out)
{
    serial_t *s = p;
    if (ckmap_get(&s->map, key, len, out))
        return 0;
    request_t r = {.op = REQ_START, .key = key, .len = len};
    int rc = ask(s, &r);
    if (rc >= 0)
        *out = r.pid;
    return rc;
}

static int s_stop(void *p, const void *key, size_t len)
{
    request_t r = {.op = REQ_STOP, .key = key, .len = len};
    return ask(p, &r);
}

const bench_impl_t bench_impl_serial = {
    .name = "serial",
    .what = "gen_registry design: lock-free table reads, starts and stops on one registry thread",
    .caps = BENCH_CAP_LOOKUP | BENCH_CAP_START | BENCH_CAP_STOP,
    .create = s_create,
    .destroy = s_destroy,
    .lookup = s_lookup,
    .lookup_or_start = s_lookup_or_start,
    .stop = s_stop,
};
