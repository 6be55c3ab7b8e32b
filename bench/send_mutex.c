/*
 * Send baseline "mutex": the mailbox a user writes by hand, a malloc'd node
 * per message on a list under a mutex, a condvar to wake the receiver
 * thread, which takes the whole list at once.
 */
#include <pthread.h>
#include <stdlib.h>

#include "send.h"

typedef struct mnode {
    struct mnode *next;
    void *msg;
} mnode_t;

typedef struct mbox {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    mnode_t *head, **tail;
    bool sleeping;
    bool quit;
    pthread_t thread;
    send_counter_t *counts;
    char pad[64];
} mbox_t;

typedef struct msend {
    unsigned n;
    unsigned started;
    bool many;
    mbox_t *box;
    send_counter_t *counts;
} msend_t;

static void *receiver(void *p)
{
    mbox_t *b = p;
    pthread_mutex_lock(&b->lock);
    for (;;) {
        while (b->head == NULL && !b->quit) {
            b->sleeping = true;
            pthread_cond_wait(&b->cv, &b->lock);
            b->sleeping = false;
        }
        if (b->head == NULL)
            break;
        mnode_t *list = b->head;
        b->head = NULL;
        b->tail = &b->head;
        pthread_mutex_unlock(&b->lock);
        while (list != NULL) {
            mnode_t *next = list->next;
            send_count(b->counts, list->msg);
            free(list);
            list = next;
        }
        pthread_mutex_lock(&b->lock);
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

static void m_close(void *p)
{
    msend_t *s = p;
    for (unsigned i = 0; i < s->started; i++) {
        mbox_t *b = &s->box[i];
        pthread_mutex_lock(&b->lock);
        b->quit = true;
        pthread_cond_signal(&b->cv);
        pthread_mutex_unlock(&b->lock);
        pthread_join(b->thread, NULL);
        pthread_cond_destroy(&b->cv);
        pthread_mutex_destroy(&b->lock);
    }
    free(s->box);
    free(s->counts);
    free(s);
}

static int m_open(reki_rt_t *rt, unsigned nthreads, bool many_to_one, void **out)
{
    (void)rt;
    msend_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return REKI_ENOMEM;
    s->many = many_to_one;
    s->n = many_to_one ? 1 : nthreads;
    s->box = aligned_alloc(64, sizeof *s->box * s->n);
    int rc = s->box ? send_counters_new(nthreads, &s->counts) : REKI_ENOMEM;
    for (; rc == 0 && s->started < s->n; s->started++) {
        mbox_t *b = &s->box[s->started];
        *b = (mbox_t){.counts = s->counts};
        b->tail = &b->head;
        pthread_mutex_init(&b->lock, NULL);
        pthread_cond_init(&b->cv, NULL);
        if (pthread_create(&b->thread, NULL, receiver, b) != 0) {
            pthread_cond_destroy(&b->cv);
            pthread_mutex_destroy(&b->lock);
            rc = REKI_EAGAIN;
            break;
        }
    }
    if (rc != 0) {
        m_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

static int m_send(void *p, unsigned to, void *msg)
{
    msend_t *s = p;
    mbox_t *b = &s->box[to];
    mnode_t *n = malloc(sizeof *n);
    if (n == NULL)
        return REKI_ENOMEM;
    n->next = NULL;
    n->msg = msg;
    pthread_mutex_lock(&b->lock);
    *b->tail = n;
    b->tail = &n->next;
    if (b->sleeping)
        pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->lock);
    return 0;
}

static uint64_t m_thread(bench_thread_t *th, void *arg)
{
    const bench_wctx_t *w = arg;
    msend_t *s = w->send;
    return send_loop(th, s->counts, m_send, s, s->many ? 0 : th->index);
}

const bench_send_impl_t bench_send_mutex = {
    .name = "mutex",
    .what = "hand-written mailbox: mutex + condvar list, one receiver thread each",
    .open = m_open,
    .close = m_close,
    .fn = m_thread,
};
