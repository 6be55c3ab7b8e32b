/*
 * Data keys as virtual actors.  Each key with a value is, while in use, an
 * actor of srv.keys that holds the value in its state; commands reach it by
 * reki_send_key, in the order each connection sent them.  After idle_ms
 * without a command the actor passivates (REKI_EXIT_IDLE): its terminate
 * puts the value into the store, and the key's next actor takes it back in
 * its start.  An actor whose key holds no value (GET of a missing key, DEL)
 * stops as soon as its mailbox is empty, so missing keys cost nothing.
 *
 * Cluster mode: a value is kept with the fencing token of its shard's claim
 * (cluster.h); a value kept under another claim is stale (the shard was on
 * another node meanwhile, where the key started empty) and is dropped.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"

#define MAX_VALUE ((size_t)512 << 20) /* as Redis's proto-max-bulk-len */

struct key {
    bool exists;
    char *val;
    size_t len, cap;
    int64_t token; /* cluster mode: its shard's claim */
    uint32_t klen;
    char key[];
};

static void key_free(struct key *k)
{
    free(k->val);
    free(k);
}

static int set_value(struct key *k, const void *v, size_t n)
{
    if (n > k->cap || (k->cap > 4096 && n < k->cap / 4)) {
        char *p = malloc(n ? n : 1);
        if (!p)
            return -1;
        free(k->val);
        k->val = p;
        k->cap = n ? n : 1;
    }
    if (n)
        memcpy(k->val, v, n);
    k->len = n;
    if (!k->exists)
        atomic_fetch_add_explicit(&srv.n_keys, 1, memory_order_relaxed);
    k->exists = true;
    return 0;
}

static void clear_value(struct key *k)
{
    if (k->exists)
        atomic_fetch_sub_explicit(&srv.n_keys, 1, memory_order_relaxed);
    free(k->val);
    k->val = NULL;
    k->len = k->cap = 0;
    k->exists = false;
}

/* Redis's string2ll: an optional '-', digits, no leading zeros, in range. */
static int parse_int(const char *s, size_t n, long long *out)
{
    if (n == 0 || n > 20)
        return -1;
    char tmp[24];
    memcpy(tmp, s, n);
    tmp[n] = 0;
    if ((tmp[0] == '0' && n > 1) || (tmp[0] == '-' && (n == 1 || tmp[1] == '0')))
        return -1;
    for (size_t i = tmp[0] == '-'; i < n; i++)
        if (tmp[i] < '0' || tmp[i] > '9')
            return -1;
    errno = 0;
    long long v = strtoll(tmp, NULL, 10);
    if (errno == ERANGE)
        return -1;
    *out = v;
    return 0;
}

static const char ERR_NOT_INT[] = "-ERR value is not an integer or out of range\r\n";
static const char ERR_OVERFLOW[] = "-ERR increment or decrement would overflow\r\n";
static const char ERR_TOO_BIG[] =
    "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n";
static const char ERR_OOM[] = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";

#define REPLY_LIT(m, s) kmsg_reply((m), (s), sizeof(s) - 1)

static int do_set(struct key *k, struct kmsg *m)
{
    const char *v = m->data + m->klen;
    bool had = k->exists;
    if (((m->flags & SET_NX) && had) || ((m->flags & SET_XX) && !had))
        return (m->flags & SET_GET) ? kmsg_reply_bulk(m, had ? k->val : NULL, k->len)
                                    : REPLY_LIT(m, "$-1\r\n");
    if (m->flags & SET_GET) {
        if (kmsg_reply_bulk(m, had ? k->val : NULL, k->len) != 0)
            return -1;
    } else if (REPLY_LIT(m, "+OK\r\n") != 0) {
        return -1;
    }
    if (set_value(k, v, m->alen) != 0)
        return REPLY_LIT(m, ERR_OOM);
    return 0;
}

static int do_incrby(struct key *k, struct kmsg *m)
{
    long long cur = 0;
    if (k->exists && parse_int(k->val, k->len, &cur) != 0)
        return REPLY_LIT(m, ERR_NOT_INT);
    long long d = m->num;
    if ((d > 0 && cur > LLONG_MAX - d) || (d < 0 && cur < LLONG_MIN - d))
        return REPLY_LIT(m, ERR_OVERFLOW);
    cur += d;
    char num[24], out[32];
    int n = snprintf(num, sizeof(num), "%lld", cur);
    if (set_value(k, num, (size_t)n) != 0)
        return REPLY_LIT(m, ERR_OOM);
    int o = snprintf(out, sizeof(out), ":%lld\r\n", cur);
    return kmsg_reply(m, out, (size_t)o);
}

static int do_append(struct key *k, struct kmsg *m)
{
    const char *v = m->data + m->klen;
    size_t n = m->alen;
    if (n > MAX_VALUE || k->len > MAX_VALUE - n)
        return REPLY_LIT(m, ERR_TOO_BIG);
    if (!k->exists || k->len + n > k->cap) {
        size_t cap = k->cap * 2 > k->len + n ? k->cap * 2 : k->len + n;
        char *p = realloc(k->val, cap ? cap : 1);
        if (!p)
            return REPLY_LIT(m, ERR_OOM);
        k->val = p;
        k->cap = cap ? cap : 1;
    }
    if (n)
        memcpy(k->val + k->len, v, n);
    k->len += n;
    if (!k->exists)
        atomic_fetch_add_explicit(&srv.n_keys, 1, memory_order_relaxed);
    k->exists = true;
    char out[32];
    int o = snprintf(out, sizeof(out), ":%zu\r\n", k->len);
    return kmsg_reply(m, out, (size_t)o);
}

static void reply_int(struct kmsg *m, long long v)
{
    m->rkind = R_INT;
    m->num = v;
}

static reki_next_t key_handle(void *state, void *msg, reki_pid_t self)
{
    struct key *k = state;
    struct kmsg *m = msg;
    int rc = 0;
    switch (m->op) {
    case OP_GET: rc = kmsg_reply_bulk(m, k->exists ? k->val : NULL, k->len); break;
    case OP_SET: rc = do_set(k, m); break;
    case OP_DEL:
        reply_int(m, k->exists);
        clear_value(k);
        break;
    case OP_EXISTS: reply_int(m, k->exists); break;
    case OP_INCRBY: rc = do_incrby(k, m); break;
    case OP_APPEND: rc = do_append(k, m); break;
    case OP_STRLEN: reply_int(m, (long long)k->len); break;
    default: rc = REPLY_LIT(m, "-ERR internal: unknown operation\r\n");
    }
    if (rc != 0) { /* no memory for the reply: the I/O thread says so */
        m->out = NULL;
        m->outlen = 0;
        m->rkind = R_BYTES;
    }
    uint8_t op = m->op;
    kmsg_return(m);
    /* DEL ends the key's actor; so does having no value and nothing to do. */
    if (op == OP_DEL || (!k->exists && reki_mailbox_len(srv.rt, self) == 0))
        return REKI_STOP;
    return REKI_CONTINUE;
}

/* Put k's value into the store (cluster mode: after its token). */
static int keep(struct key *k)
{
    if (!srv.clustered)
        return store_put(srv.store, k->key, k->klen, k->val, k->len);
    return store_putv(srv.store, k->key, k->klen, &k->token, sizeof(k->token), k->val, k->len);
}

static void key_terminate(void *state, int reason)
{
    (void)reason;
    struct key *k = state;
    if (k->exists && keep(k) != 0)
        fprintf(stderr, "reki-resp: out of memory: the value of a passivated key is lost\n");
    /* The count of keys moves with the value: it is still a key. */
    key_free(k);
}

static const reki_behavior_t key_behavior = {
    .handle = key_handle,
    .terminate = key_terminate,
    .drop = kmsg_dropped,
};

int keys_start(reki_rt_t *rt, const void *key, size_t klen, void *arg, reki_pid_t *out)
{
    (void)arg;
    struct key *k = calloc(1, sizeof(*k) + klen);
    if (!k)
        return REKI_ENOMEM;
    k->klen = (uint32_t)klen;
    memcpy(k->key, key, klen);
    store_val_t v;
    int found = store_take(srv.store, key, klen, &v);
    if (srv.clustered) {
        k->token = cluster_token(key, klen);
        if (found > 0 && !cluster_fresh(&v, k->token)) {
            free(v.val);
            atomic_fetch_sub_explicit(&srv.n_keys, 1, memory_order_relaxed);
            found = 0;
        }
    }
    if (found > 0) {
        k->exists = true;
        k->val = v.val;
        k->len = v.len;
        k->cap = v.cap;
    }
    int rc = reki_spawn(rt, &key_behavior, k, NULL, out);
    if (rc != REKI_OK) {
        /* Put the value back where it was: a failed start changes nothing. */
        if (k->exists && keep(k) != 0)
            fprintf(stderr, "reki-resp: out of memory: a value is lost\n");
        key_free(k);
    }
    return rc;
}
