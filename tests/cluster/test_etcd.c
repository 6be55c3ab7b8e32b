/*
 * The etcd v3 client (lib/cluster/etcd.c) against a real etcd: each test of
 * the `etcd` suite starts its own single-member etcd on free loopback ports
 * in a temporary data dir (etcd_fixture.c: a guardian process owns it and
 * cleans up however the test's process ends).  The `offline` suite needs no
 * etcd: bad arguments, dead and silent endpoints, and a fake server that
 * answers hostile JSON.
 *
 * The etcd binary: $REKI_ETCD_BIN, or /usr/bin/etcd.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "etcd.h"
#include "etcd_fixture.h"
#include "reki/reki.h"

#define now_ms etcd_fixture_now_ms
#define bound_socket etcd_fixture_bound_socket
#define free_port etcd_fixture_free_port

static reki__etcd_t *client(const char *endpoints, int timeout_ms)
{
    reki__etcd_t *c = NULL;
    cr_assert_eq(reki__etcd_new(endpoints, timeout_ms, &c), REKI_OK, "client for %s", endpoints);
    return c;
}

/* ------------------------------------------------------------ the etcd -- */

static struct etcd_fixture etcd;

static void etcd_start(void)
{
    etcd_fixture_start(&etcd);
}

static void etcd_stop(void)
{
    etcd_fixture_stop(&etcd);
}

TestSuite(etcd, .init = etcd_start, .fini = etcd_stop, .timeout = 60);
TestSuite(offline, .timeout = 30);

/* ---------------------------------------------------------- the tests -- */

Test(etcd, lease_grant_keepalive_revoke)
{
    reki__etcd_t *c = client(etcd.url, 2000);
    int64_t id = 0, ttl = 0;
    cr_assert_eq(reki__etcd_lease_grant(c, 5, &id, &ttl), REKI_OK);
    cr_assert(id != 0 && ttl == 5, "id %lld ttl %lld", (long long)id, (long long)ttl);
    ttl = 0;
    cr_assert_eq(reki__etcd_lease_keepalive(c, id, &ttl), REKI_OK);
    cr_assert(ttl > 0 && ttl <= 5);
    cr_assert_eq(reki__etcd_lease_revoke(c, id), REKI_OK);
    cr_assert_eq(reki__etcd_lease_keepalive(c, id, &ttl), REKI_ENOTFOUND);
    cr_assert_eq(reki__etcd_lease_revoke(c, id), REKI_OK, "revoking a gone lease is fine");
    cr_assert_eq(reki__etcd_lease_keepalive(c, 0x1234567, NULL), REKI_ENOTFOUND);
    cr_assert_eq(reki__etcd_put(c, "k", 1, "v", 1, id), REKI_ENOTFOUND, "put with a gone lease");
    reki__etcd_free(c);
}

Test(etcd, create_if_absent)
{
    reki__etcd_t *c = client(etcd.url, 2000);
    const char k1[] = {'k', 0, (char)0x80, (char)0xff, '/', 'a'},
               k2[] = {'k', 0, (char)0x80, (char)0xff, '/', 'b'};
    const char v1[] = {'v', 0, (char)0xfe, '1'};
    bool created = false;
    int64_t rev1 = 0, rev = 0;
    char *cur = NULL;
    size_t cur_len = 99;
    cr_assert_eq(
        reki__etcd_create(c, k1, sizeof(k1), v1, sizeof(v1), 0, &created, &rev1, &cur, &cur_len),
        REKI_OK);
    cr_assert(created && rev1 > 0 && cur == NULL && cur_len == 0);
    cr_assert_eq(
        reki__etcd_create(c, k1, sizeof(k1), "other", 5, 0, &created, &rev, &cur, &cur_len),
        REKI_OK);
    cr_assert(!created && rev == rev1, "rev %lld, first %lld", (long long)rev, (long long)rev1);
    cr_assert(cur && cur_len == sizeof(v1) && memcmp(cur, v1, sizeof(v1)) == 0 &&
              cur[cur_len] == 0);
    free(cur);
    cr_assert_eq(reki__etcd_create(c, k1, sizeof(k1), NULL, 0, 0, &created, &rev, NULL, NULL),
                 REKI_OK);
    cr_assert(!created && rev == rev1);
    cr_assert_eq(reki__etcd_create(c, k2, sizeof(k2), NULL, 0, 0, &created, &rev, NULL, NULL),
                 REKI_OK);
    cr_assert(created && rev > rev1, "a key differing after its NUL byte is another key");
    reki__etcd_free(c);
}

Test(etcd, delete_if_create_revision)
{
    reki__etcd_t *c = client(etcd.url, 2000);
    bool created = false, deleted = true;
    int64_t rev = 0, rev2 = 0;
    cr_assert_eq(reki__etcd_create(c, "d", 1, "1", 1, 0, &created, &rev, NULL, NULL), REKI_OK);
    cr_assert(created);
    cr_assert_eq(reki__etcd_delete_if(c, "d", 1, rev + 1000, &deleted), REKI_OK);
    cr_assert(!deleted, "wrong revision: kept");
    cr_assert_eq(reki__etcd_create(c, "d", 1, "2", 1, 0, &created, &rev2, NULL, NULL), REKI_OK);
    cr_assert(!created && rev2 == rev);
    cr_assert_eq(reki__etcd_delete_if(c, "d", 1, rev, &deleted), REKI_OK);
    cr_assert(deleted, "right revision: deleted");
    cr_assert_eq(reki__etcd_delete_if(c, "d", 1, rev, &deleted), REKI_OK);
    cr_assert(!deleted, "already gone");
    cr_assert_eq(reki__etcd_create(c, "d", 1, "3", 1, 0, &created, &rev2, NULL, NULL), REKI_OK);
    cr_assert(created && rev2 > rev);
    reki__etcd_free(c);
}

static bool has_key(const struct reki__etcd_kv *kvs, size_t n, const char *k, size_t klen)
{
    for (size_t i = 0; i < n; i++)
        if (kvs[i].klen == klen && memcmp(kvs[i].key, k, klen) == 0)
            return true;
    return false;
}

Test(etcd, range_prefix_exact_set)
{
    reki__etcd_t *c = client(etcd.url, 2000);
    static const char *const in[] = {"p/a",        "p/b",   "p/\xff",
                                     "p/\xff\xff", "q\xff", "q\xff\xff\x01"};
    static const char *const out[] = {"p", "p.", "p0", "p0a", "q\xfe", "r", "r\x01"};
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
        cr_assert_eq(reki__etcd_put(c, in[i], strlen(in[i]), in[i], strlen(in[i]), 0), REKI_OK);
    for (size_t i = 0; i < sizeof(out) / sizeof(out[0]); i++)
        cr_assert_eq(reki__etcd_put(c, out[i], strlen(out[i]), "x", 1, 0), REKI_OK);
    struct reki__etcd_kv *kvs = NULL;
    size_t n = 0;
    int64_t hrev = 0;
    cr_assert_eq(reki__etcd_range_prefix(c, "p/", 2, &kvs, &n, &hrev), REKI_OK);
    cr_assert_eq(n, 4);
    cr_assert_eq(hrev, 14, "13 puts after the readiness probe's revision 1");
    for (size_t i = 0; i < 4; i++) {
        cr_assert(has_key(kvs, n, in[i], strlen(in[i])), "%s", in[i]);
        cr_assert(kvs[i].vlen == kvs[i].klen && memcmp(kvs[i].val, kvs[i].key, kvs[i].klen) == 0);
        cr_assert(kvs[i].create_rev > 1 && kvs[i].mod_rev == kvs[i].create_rev && !kvs[i].lease);
    }
    reki__etcd_kvs_free(kvs, n);
    cr_assert_eq(reki__etcd_range_prefix(c, "q\xff", 2, &kvs, &n, NULL), REKI_OK);
    cr_assert(n == 2 && has_key(kvs, n, in[4], 2) && has_key(kvs, n, in[5], 4), "n %zu", n);
    reki__etcd_kvs_free(kvs, n);
    cr_assert_eq(reki__etcd_range_prefix(c, "none/", 5, &kvs, &n, NULL), REKI_OK);
    cr_assert_eq(n, 0);
    reki__etcd_kvs_free(kvs, n);
    cr_assert_eq(reki__etcd_range_prefix(c, NULL, 0, &kvs, &n, NULL), REKI_OK);
    cr_assert_eq(n, 13, "the empty prefix: every key");
    reki__etcd_kvs_free(kvs, n);
    reki__etcd_free(c);
}

Test(etcd, lease_expiry_deletes_key)
{
    reki__etcd_t *c = client(etcd.url, 2000);
    int64_t id = 0, rev = 0;
    bool created = false;
    cr_assert_eq(reki__etcd_lease_grant(c, 2, &id, NULL), REKI_OK);
    cr_assert_eq(reki__etcd_create(c, "e/1", 3, "v", 1, id, &created, &rev, NULL, NULL), REKI_OK);
    cr_assert(created);
    struct reki__etcd_kv *kvs;
    size_t n;
    cr_assert_eq(reki__etcd_range_prefix(c, "e/", 2, &kvs, &n, NULL), REKI_OK);
    cr_assert(n == 1 && kvs[0].lease == id);
    reki__etcd_kvs_free(kvs, n);
    int64_t start = now_ms();
    do {
        usleep(100000);
        cr_assert_eq(reki__etcd_range_prefix(c, "e/", 2, &kvs, &n, NULL), REKI_OK);
        reki__etcd_kvs_free(kvs, n);
    } while (n == 1 && now_ms() - start < 6000);
    cr_assert_eq(n, 0, "the key went with its lease");
    cr_assert_eq(reki__etcd_lease_keepalive(c, id, NULL), REKI_ENOTFOUND);
    reki__etcd_free(c);
}

/* ------------------------------------------------------------- watches -- */

struct watch_run {
    const char *endpoints;
    int64_t start_rev;
    int stop_at; /* fn returns 42 on this event number (0 = never) */
    _Atomic int stop;
    pthread_mutex_t mu;
    int n, type[8], rc, bad;
    int64_t rev[8];
    char key[8][16], val[8][16];
};

static int watch_fn(void *arg, int type, const struct reki__etcd_kv *kv, int64_t rev)
{
    struct watch_run *w = arg;
    pthread_mutex_lock(&w->mu);
    int i = w->n < 8 ? w->n++ : 7;
    w->type[i] = type;
    w->rev[i] = rev;
    w->bad |= (type == 2) != (kv == NULL); /* no cr_assert off the test's thread */
    if (kv) {
        snprintf(w->key[i], sizeof(w->key[i]), "%.*s", (int)kv->klen, kv->key);
        snprintf(w->val[i], sizeof(w->val[i]), "%.*s", (int)kv->vlen, kv->val);
    }
    pthread_mutex_unlock(&w->mu);
    return w->stop_at == i + 1 ? 42 : 0;
}

static void *watch_main(void *arg)
{
    struct watch_run *w = arg;
    reki__etcd_t *c = NULL;
    w->rc = reki__etcd_new(w->endpoints, 2000, &c);
    if (w->rc == REKI_OK)
        w->rc = reki__etcd_watch_prefix(c, "w/", 2, w->start_rev, watch_fn, w, &w->stop);
    reki__etcd_free(c);
    return NULL;
}

static void watch_start(struct watch_run *w, pthread_t *th, const char *endpoints)
{
    w->endpoints = endpoints;
    pthread_mutex_init(&w->mu, NULL);
    cr_assert_eq(pthread_create(th, NULL, watch_main, w), 0);
}

static int watch_seen(struct watch_run *w, int want, int64_t within_ms)
{
    int64_t deadline = now_ms() + within_ms;
    int n;
    do {
        pthread_mutex_lock(&w->mu);
        n = w->n;
        pthread_mutex_unlock(&w->mu);
    } while (n < want && now_ms() < deadline && usleep(10000) == 0);
    return n;
}

static void watch_end(struct watch_run *w, pthread_t th)
{
    int64_t t0 = now_ms();
    atomic_store(&w->stop, 1);
    pthread_join(th, NULL);
    cr_assert_lt(now_ms() - t0, 1000, "the stop flag ends the watch promptly");
    cr_assert_eq(w->rc, REKI_OK);
    cr_assert(!w->bad, "kv is NULL exactly for the created callback");
    pthread_mutex_destroy(&w->mu);
}

Test(etcd, watch_put_then_delete)
{
    static struct watch_run w, w2;
    pthread_t th;
    watch_start(&w, &th, etcd.url);
    cr_assert_eq(watch_seen(&w, 1, 10000), 1);
    cr_assert_eq(w.type[0], 2, "the created callback comes first");
    reki__etcd_t *c = client(etcd.url, 2000);
    bool created, deleted;
    int64_t rev = 0;
    cr_assert_eq(reki__etcd_put(c, "w0", 2, "out", 3, 0), REKI_OK);
    cr_assert_eq(reki__etcd_create(c, "w/1", 3, "x", 1, 0, &created, &rev, NULL, NULL), REKI_OK);
    cr_assert_eq(reki__etcd_delete_if(c, "w/1", 3, rev, &deleted), REKI_OK);
    cr_assert(created && deleted);
    cr_assert_eq(watch_seen(&w, 3, 10000), 3);
    cr_assert(w.type[1] == 0 && w.rev[1] == rev && !strcmp(w.key[1], "w/1") &&
              !strcmp(w.val[1], "x"));
    cr_assert(w.type[2] == 1 && w.rev[2] == rev + 1 && !strcmp(w.key[2], "w/1") && !w.val[2][0]);
    cr_assert_eq(watch_seen(&w, 4, 300), 3, "nothing outside the prefix");
    watch_end(&w, th);

    /* From a past revision, and ended by the callback's return value. */
    w2.start_rev = rev;
    w2.stop_at = 2;
    watch_start(&w2, &th, etcd.url);
    pthread_join(th, NULL);
    cr_assert_eq(w2.rc, 42);
    cr_assert(!w2.bad && w2.n == 2 && w2.type[0] == 2 && w2.type[1] == 0 && w2.rev[1] == rev);
    reki__etcd_free(c);
}

Test(etcd, first_endpoint_dead)
{
    char eps[160];
    snprintf(eps, sizeof(eps), "http://127.0.0.1:%d,%s", free_port(), etcd.url);
    reki__etcd_t *c = client(eps, 2000);
    int64_t id;
    struct reki__etcd_kv *kvs;
    size_t n;
    cr_assert_eq(reki__etcd_put(c, "f", 1, "1", 1, 0), REKI_OK);
    cr_assert_eq(reki__etcd_lease_grant(c, 5, &id, NULL), REKI_OK);
    cr_assert_eq(reki__etcd_range_prefix(c, "f", 1, &kvs, &n, NULL), REKI_OK);
    cr_assert_eq(n, 1);
    reki__etcd_kvs_free(kvs, n);
    reki__etcd_free(c);
    static struct watch_run w;
    pthread_t th;
    watch_start(&w, &th, eps);
    cr_assert_eq(watch_seen(&w, 1, 10000), 1);
    watch_end(&w, th);
}

/* ------------------------------------------------------------- offline -- */

Test(offline, unreachable_endpoint)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", free_port());
    reki__etcd_t *c = client(url, 5000);
    int64_t t0 = now_ms(), id;
    struct reki__etcd_kv *kvs;
    size_t n;
    cr_assert_eq(reki__etcd_range_prefix(c, "a", 1, &kvs, &n, NULL), REKI_EDEAD);
    cr_assert_eq(reki__etcd_lease_grant(c, 5, &id, NULL), REKI_EDEAD);
    static struct watch_run w;
    w.endpoints = url;
    pthread_mutex_init(&w.mu, NULL);
    watch_main(&w);
    cr_assert_eq(w.rc, REKI_EDEAD);
    cr_assert_lt(now_ms() - t0, 1000, "connection refused is quick");
    reki__etcd_free(c);
}

Test(offline, silent_endpoint_times_out)
{
    int p1, p2; /* listening, never accepting: connect succeeds, no answer comes */
    int s1 = bound_socket(8, &p1), s2 = bound_socket(8, &p2);
    char eps[128];
    snprintf(eps, sizeof(eps), "http://127.0.0.1:%d,http://127.0.0.1:%d", p1, p2);
    reki__etcd_t *c = client(eps, 300);
    int64_t t0 = now_ms();
    cr_assert_eq(reki__etcd_put(c, "a", 1, "b", 1, 0), REKI_ETIMEDOUT);
    cr_assert(now_ms() - t0 >= 550 && now_ms() - t0 < 2000, "%lld ms", (long long)(now_ms() - t0));
    reki__etcd_free(c);
    snprintf(eps, sizeof(eps), "http://127.0.0.1:%d,http://127.0.0.1:%d", p1, free_port());
    c = client(eps, 300);
    cr_assert_eq(reki__etcd_put(c, "a", 1, "b", 1, 0), REKI_EDEAD, "timed out on one only");
    reki__etcd_free(c);
    close(s1);
    close(s2);
}

static int never_called(void *arg, int type, const struct reki__etcd_kv *kv, int64_t rev)
{
    (void)arg, (void)type, (void)kv, (void)rev;
    return 1;
}

Test(offline, bad_arguments)
{
    static const char *const bad[] = {"",
                                      "127.0.0.1:2379",
                                      "https://127.0.0.1:2379",
                                      "http://127.0.0.1",
                                      "http://127.0.0.1:",
                                      "http://:2379",
                                      "http://h:0",
                                      "http://h:65536",
                                      "http://h:123456",
                                      "http://h:12a",
                                      "http://h:2379/",
                                      "http://h:2379/v3",
                                      "http://a b:2379",
                                      "http://h:2379,",
                                      ",http://h:2379",
                                      "http://h:1,,http://h:2",
                                      "http://user@h:2379"};
    reki__etcd_t *c = (reki__etcd_t *)&c;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(reki__etcd_new(bad[i], 1000, &c), REKI_EINVAL, "\"%s\"", bad[i]);
    cr_assert_eq(reki__etcd_new(NULL, 1000, &c), REKI_EINVAL);
    cr_assert_eq(reki__etcd_new("http://h:1", 0, &c), REKI_EINVAL);
    cr_assert_eq(reki__etcd_new("http://h:1", 1000, NULL), REKI_EINVAL);
    cr_assert(c == (reki__etcd_t *)&c, "*out untouched on failure");
    c = client("http://localhost:1,http://127.0.0.1:65535,http://my-host.example:2379", 1000);
    int64_t id, rev;
    bool b;
    struct reki__etcd_kv *kvs;
    size_t n;
    _Atomic int stop = 0;
    cr_assert_eq(reki__etcd_lease_grant(NULL, 5, &id, NULL), REKI_EINVAL);
    cr_assert_eq(reki__etcd_lease_grant(c, 0, &id, NULL), REKI_EINVAL);
    cr_assert_eq(reki__etcd_lease_grant(c, 5, NULL, NULL), REKI_EINVAL);
    cr_assert_eq(reki__etcd_lease_keepalive(c, 0, NULL), REKI_EINVAL);
    cr_assert_eq(reki__etcd_lease_revoke(c, 0), REKI_EINVAL);
    cr_assert_eq(reki__etcd_create(c, NULL, 1, "v", 1, 0, &b, &rev, NULL, NULL), REKI_EINVAL);
    cr_assert_eq(reki__etcd_create(c, "k", 0, "v", 1, 0, &b, &rev, NULL, NULL), REKI_EINVAL);
    cr_assert_eq(reki__etcd_create(c, "k", 1, NULL, 1, 0, &b, &rev, NULL, NULL), REKI_EINVAL);
    cr_assert_eq(reki__etcd_create(c, "k", 1, "v", 1, -1, &b, &rev, NULL, NULL), REKI_EINVAL);
    cr_assert_eq(reki__etcd_create(c, "k", 1, "v", 1, 0, NULL, &rev, NULL, NULL), REKI_EINVAL);
    cr_assert_eq(reki__etcd_create(c, "k", 1, "v", 1, 0, &b, NULL, NULL, NULL), REKI_EINVAL);
    cr_assert_eq(reki__etcd_delete_if(c, "k", 1, 0, &b), REKI_EINVAL);
    cr_assert_eq(reki__etcd_delete_if(c, "k", 0, 5, &b), REKI_EINVAL);
    cr_assert_eq(reki__etcd_delete_if(c, "k", 1, 5, NULL), REKI_EINVAL);
    cr_assert_eq(reki__etcd_put(c, NULL, 0, "v", 1, 0), REKI_EINVAL);
    cr_assert_eq(reki__etcd_put(c, "k", 1, NULL, 3, 0), REKI_EINVAL);
    cr_assert_eq(reki__etcd_range_prefix(c, NULL, 3, &kvs, &n, NULL), REKI_EINVAL);
    cr_assert_eq(reki__etcd_range_prefix(c, "p", 1, NULL, &n, NULL), REKI_EINVAL);
    cr_assert_eq(reki__etcd_range_prefix(c, "p", 1, &kvs, NULL, NULL), REKI_EINVAL);
    cr_assert_eq(reki__etcd_watch_prefix(c, "p", 1, 0, NULL, NULL, &stop), REKI_EINVAL);
    cr_assert_eq(reki__etcd_watch_prefix(c, "p", 1, -1, never_called, NULL, &stop), REKI_EINVAL);
    cr_assert_eq(reki__etcd_watch_prefix(NULL, "p", 1, 0, never_called, NULL, &stop), REKI_EINVAL);
    reki__etcd_free(c);
    reki__etcd_free(NULL);
    reki__etcd_kvs_free(NULL, 0);
}

/* ------------------------------------------- a fake server, hostile JSON -- */

static _Atomic(const char *) fake_answer;

/* Answers every request with fake_answer, then closes the connection. */
static void *fake_main(void *arg)
{
    int lfd = *(int *)arg, fd;
    while ((fd = accept(lfd, NULL, NULL)) >= 0) {
        char req[16384];
        size_t got = 0;
        ssize_t r;
        while (got < sizeof(req) - 1 && (r = read(fd, req + got, sizeof(req) - 1 - got)) > 0) {
            req[got += (size_t)r] = '\0';
            char *end = strstr(req, "\r\n\r\n"), *cl = strcasestr(req, "Content-Length:");
            if (end && got >= (size_t)(end + 4 - req) + (cl ? strtoul(cl + 15, NULL, 10) : 0))
                break;
        }
        const char *a = atomic_load(&fake_answer);
        if (write(fd, a, strlen(a)) < 0)
            perror("fake server write");
        close(fd);
    }
    return NULL;
}

static char *answer(const char *status, const char *body)
{
    static char buf[8][1024];
    static int next;
    char *b = buf[next++ % 8];
    snprintf(b, sizeof(buf[0]),
             "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
             "Connection: close\r\n\r\n%s",
             status, strlen(body), body);
    atomic_store(&fake_answer, b);
    return b;
}

static int range_with(reki__etcd_t *c, const char *body, size_t *n, char **key)
{
    struct reki__etcd_kv *kvs = NULL;
    answer("200 OK", body);
    int rc = reki__etcd_range_prefix(c, "a", 1, &kvs, n, NULL);
    if (rc == REKI_OK && *n)
        *key = strdup(kvs[0].key);
    if (rc == REKI_OK)
        reki__etcd_kvs_free(kvs, *n);
    return rc;
}

static int count_fn(void *arg, int type, const struct reki__etcd_kv *kv, int64_t rev)
{
    (void)kv, (void)rev;
    int *seen = arg;
    *seen = *seen * 10 + type + 1;
    return 0;
}

Test(offline, hostile_answers)
{
    int port, lfd = bound_socket(16, &port);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, fake_main, &lfd), 0);
    char url[64], *key = NULL;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    reki__etcd_t *c = client(url, 2000);
    size_t n = 0;
    static const char *const dead[] = {
        "not json",
        "[]",
        "{\"kvs\":{}}",
        "{\"kvs\":[1]}",
        "{\"kvs\":[{}]}",
        "{\"kvs\":[{\"key\":\"!!!!\"}]}",
        "{\"kvs\":[{\"key\":\"QR==\"}]}", /* non-canonical */
        "{\"kvs\":[{\"key\":\"QQ=\"}]}",
        "{\"kvs\":[{\"key\":\"Q===\"}]}",
        "{\"kvs\":[{\"key\":\"QQ==QQ==\"}]}",
        "{\"kvs\":[{\"key\":\"\"}]}",
        "{\"kvs\":[{\"key\":\"QQ==\",\"value\":7}]}",
        "{\"kvs\":[{\"key\":\"QQ\\u0000==\"}]}",
        "{\"kvs\":[{\"key\":\"QQ==\",\"mod_revision\":\"1x\"}]}",
        "{\"kvs\":[{\"key\":\"QQ==\",\"lease\":\"99999999999999999999\"}]}",
        "{\"header\":{\"revision\":5}}",
        "{\"header\":{\"revision\":\" 5\"}}",
        "{\"header\":{\"revision\":\"\"}}",
        "{\"error\":\"boom\",\"code\":2}",
        "{\"a\":1,\"a\":2}"};
    for (size_t i = 0; i < sizeof(dead) / sizeof(dead[0]); i++)
        cr_assert_eq(range_with(c, dead[i], &n, &key), REKI_EDEAD, "%s", dead[i]);
    cr_assert_eq(range_with(c, "{\"kvs\":[{\"key\":\"QUI=\",\"value\":\"Qw==\"}]}", &n, &key),
                 REKI_OK);
    cr_assert(n == 1 && key && !strcmp(key, "AB"));
    free(key);
    answer("503 Service Unavailable", "{\"error\":\"no leader\",\"code\":14}");
    cr_assert_eq(reki__etcd_put(c, "k", 1, "v", 1, 0), REKI_EDEAD);
    answer("404 Not Found", "{\"error\":\"etcdserver: requested lease not found\",\"code\":5}");
    cr_assert_eq(reki__etcd_lease_revoke(c, 5), REKI_OK);
    answer("400 Bad Request", "{\"error\":\"bad\",\"code\":3}");
    cr_assert_eq(reki__etcd_lease_revoke(c, 5), REKI_EDEAD);

    int64_t ttl = 0, rev = -1;
    answer("200 OK", "{\"result\":{\"ID\":\"5\"}}");
    cr_assert_eq(reki__etcd_lease_keepalive(c, 5, &ttl), REKI_ENOTFOUND, "TTL omitted");
    answer("200 OK", "{\"result\":{\"ID\":\"6\",\"TTL\":\"3\"}}");
    cr_assert_eq(reki__etcd_lease_keepalive(c, 5, &ttl), REKI_EDEAD, "another lease's answer");
    answer("200 OK", "{\"result\":{\"ID\":\"5\",\"TTL\":\"3\"}}");
    cr_assert(reki__etcd_lease_keepalive(c, 5, &ttl) == REKI_OK && ttl == 3);

    bool created = true;
    char *cur = (char *)&cur;
    answer("200 OK", "{\"header\":{\"revision\":\"7\"},\"succeeded\":\"true\"}");
    cr_assert_eq(reki__etcd_create(c, "k", 1, "v", 1, 0, &created, &rev, NULL, NULL), REKI_EDEAD);
    answer("200 OK", "{\"header\":{\"revision\":\"7\"}}");
    cr_assert_eq(reki__etcd_create(c, "k", 1, "v", 1, 0, &created, &rev, NULL, NULL), REKI_EDEAD);
    answer("200 OK", "{\"responses\":[{\"response_range\":{}}]}");
    cr_assert_eq(reki__etcd_create(c, "k", 1, "v", 1, 0, &created, &rev, &cur, NULL), REKI_OK);
    cr_assert(!created && rev == 0 && cur == NULL, "the key vanished meanwhile");
    answer("200 OK", "{\"header\":{\"revision\":\"7\"},\"succeeded\":true}");
    cr_assert_eq(reki__etcd_create(c, "k", 1, "v", 1, 0, &created, &rev, NULL, NULL), REKI_OK);
    cr_assert(created && rev == 7);

    int seen = 0;
    _Atomic int stop = 0;
    static const char stream[] =
        "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"result\":{\"created\":true}}\n\n"
        "{\"result\":{\"events\":[{\"kv\":{\"key\":\"QQ==\"}},{\"type\":\"DELETE\",\"kv\":{"
        "\"key\":\"QQ==\"}}]}}\n{\"result\":{\"events\":[{\"type\":\"BOGUS\",\"kv\":{}}]}}\n";
    atomic_store(&fake_answer, stream);
    cr_assert_eq(reki__etcd_watch_prefix(c, "a", 1, 0, count_fn, &seen, &stop), REKI_EDEAD);
    cr_assert_eq(seen, 312, "created, PUT, DELETE, then the bogus event ends the watch");
    reki__etcd_free(c);
    shutdown(lfd, SHUT_RDWR);
    pthread_join(th, NULL);
    close(lfd);
}
