/*
 * reki-resp driven by real clients: redis-cli for every command, and raw
 * RESP sockets for what redis-cli cannot do (pipelining, pub/sub under
 * concurrency, malformed input, a client that never reads).  Each test starts
 * its own server on a free loopback port and stops it by pid; the server must
 * then exit 0 (in the ASan build that includes: nothing leaked).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

#if defined(__SANITIZE_THREAD__)
#define RESP_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RESP_TEST_TSAN 1
#endif
#endif
#ifndef RESP_TEST_TSAN
#define RESP_TEST_TSAN 0
#endif

static server_t srv;

static void start(void)
{
    srv = server_start(NULL);
}

static void stop(void)
{
    cr_assert_eq(server_stop(&srv), 0, "the server exits cleanly (and, under ASan, leaks nothing)");
}

static void expect_cli(const char *args, const char *want)
{
    char *got = cli(srv.port, args);
    cr_assert_str_eq(got, want, "redis-cli %s", args);
    free(got);
}

static void expect(client_t *c, const char *want)
{
    char *got = client_reply(c);
    cr_assert_not_null(got, "a reply (expected %s)", want);
    cr_assert_str_eq(got, want, "reply");
    free(got);
}

TestSuite(resp, .init = start, .fini = stop, .timeout = 120);

Test(resp, every_command_through_redis_cli)
{
    expect_cli("ping", "PONG");
    expect_cli("echo hello", "hello");
    expect_cli("set a 10", "OK");
    expect_cli("get a", "10");
    expect_cli("incr a", "11");
    expect_cli("incrby a 9", "20");
    expect_cli("decr a", "19");
    expect_cli("append a x", "3");
    expect_cli("strlen a", "3");
    expect_cli("get a", "19x");
    expect_cli("incr a", "ERR value is not an integer or out of range");
    /* redis-cli prints nil as an empty line when its output is not a tty */
    expect_cli("set b hi nx", "OK");
    expect_cli("set b ho nx", "");
    expect_cli("get b", "hi");
    expect_cli("set b ho xx", "OK");
    expect_cli("set c v xx", "");
    expect_cli("mget a b c", "19x\nho");
    expect_cli("exists a b c", "2");
    expect_cli("del a c", "1");
    expect_cli("get a", "");
    expect_cli("incr counter", "1");
    expect_cli("dbsize", "2");
    expect_cli("publish nobody hello", "0");
    expect_cli("nosuchcommand x", "ERR unknown command 'nosuchcommand', with args "
                                  "beginning with: 'x' ");
    expect_cli("get", "ERR wrong number of arguments for 'get' command");
    expect_cli("config get save", "save");
    expect_cli("config get appendonly", "appendonly\nno");
    expect_cli("command count", "22");
    char *info = cli(srv.port, "info");
    cr_assert(strstr(info, "live_actors:") && strstr(info, "passivations:") &&
                  strstr(info, "db0:keys=2"),
              "INFO has reki's figures");
    free(info);
    expect_cli("quit", "OK");
}

Test(resp, set_options_errors_and_binary_keys)
{
    client_t *c = client_open(srv.port);
    const char *argv[] = {"SET", "k\0\r\nbin", "v\r\n\0"};
    const size_t lens[] = {3, 7, 4};
    client_cmdv(c, 3, argv, lens);
    expect(c, "+OK");
    const char *get[] = {"GET", "k\0\r\nbin"};
    client_cmdv(c, 2, get, lens);
    char *r = client_reply(c);
    cr_assert(r && memcmp(r, "$v\r\n\0", 5) == 0, "a binary key and value round-trip");
    free(r);
    client_cmd(c, "SET", "", "empty key", NULL);
    expect(c, "+OK");
    client_cmd(c, "GET", "", NULL);
    expect(c, "$empty key");
    client_cmd(c, "SET", "s", "old", "GET", NULL);
    expect(c, "(nil)");
    client_cmd(c, "SET", "s", "new", "GET", NULL);
    expect(c, "$old");
    client_cmd(c, "SET", "s", "x", "NX", "XX", NULL);
    expect(c, "-ERR syntax error");
    client_cmd(c, "SET", "s", "x", "EX", "10", NULL);
    expect(c, "-ERR reki-resp keeps no expiry (EX, PX, EXAT, PXAT, KEEPTTL)");
    client_cmd(c, "SET", "n", "9223372036854775806", NULL);
    expect(c, "+OK");
    client_cmd(c, "INCR", "n", NULL);
    expect(c, ":9223372036854775807");
    client_cmd(c, "INCR", "n", NULL);
    expect(c, "-ERR increment or decrement would overflow");
    client_cmd(c, "INCRBY", "n", "x1", NULL);
    expect(c, "-ERR value is not an integer or out of range");
    client_cmd(c, "DECRBY", "m", "-9223372036854775808", NULL);
    expect(c, "-ERR decrement would overflow");
    client_cmd(c, "G\r\nET", "k", NULL); /* an error line never carries raw CR LF */
    expect(c, "-ERR unknown command 'G??ET', with args beginning with: 'k' ");
    char longkey[5000];
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = 0;
    client_cmd(c, "SET", longkey, "v", NULL);
    expect(c, "-ERR key is longer than 4095 bytes");
    client_cmd(c, "PING", NULL);
    expect(c, "+PONG");
    client_close(c);
}

/*
 * One connection, 20,000 commands written at once: INCR over 257 keys (each
 * reply must count that key's INCRs so far), interleaved with replies the
 * I/O thread gives itself (PING, ECHO) and with MGET over several actors.
 * Replies must come back exactly in request order.
 */
Test(resp, pipelined_replies_come_back_in_request_order)
{
    enum { N = 20000, KEYS = 257 };
    client_t *c = client_open(srv.port);
    static long count[KEYS];
    char key[32], num[32];
    size_t cap = (size_t)N * 64, len = 0;
    char *buf = malloc(cap);
    for (int i = 0; i < N; i++) {
        int k = (i * 7919) % KEYS;
        snprintf(key, sizeof(key), "key:%d", k);
        if (i % 10 == 3)
            len += (size_t)sprintf(buf + len, "*1\r\n$4\r\nPING\r\n");
        else if (i % 10 == 7) {
            snprintf(num, sizeof(num), "%d", i);
            len +=
                (size_t)sprintf(buf + len, "*2\r\n$4\r\nECHO\r\n$%zu\r\n%s\r\n", strlen(num), num);
        } else if (i % 10 == 9)
            len += (size_t)sprintf(buf + len, "*3\r\n$4\r\nMGET\r\n$%zu\r\n%s\r\n$5\r\nnokey\r\n",
                                   strlen(key), key);
        else
            len +=
                (size_t)sprintf(buf + len, "*2\r\n$4\r\nINCR\r\n$%zu\r\n%s\r\n", strlen(key), key);
    }
    client_raw(c, buf, len);
    free(buf);
    char want[128];
    for (int i = 0; i < N; i++) {
        int k = (i * 7919) % KEYS;
        if (i % 10 == 3)
            snprintf(want, sizeof(want), "+PONG");
        else if (i % 10 == 7)
            snprintf(want, sizeof(want), "$%d", i);
        else if (i % 10 == 9)
            snprintf(want, sizeof(want), count[k] ? "*2[$%ld,(nil)]" : "*2[(nil),(nil)]", count[k]);
        else
            snprintf(want, sizeof(want), ":%ld", ++count[k]);
        char *got = client_reply(c);
        cr_assert_not_null(got, "reply %d", i);
        cr_assert_str_eq(got, want, "reply %d in request order", i);
        free(got);
    }
    client_close(c);
}

/* Several subscribers; every message reaches each exactly once, in order. */
Test(resp, publish_reaches_every_subscriber_once_in_order)
{
    enum { SUBS = 4, MSGS = 2000 };
    client_t *sub[SUBS];
    for (int s = 0; s < SUBS; s++) {
        sub[s] = client_open(srv.port);
        client_cmd(sub[s], "SUBSCRIBE", "news", "other", NULL);
        expect(sub[s], "*3[$subscribe,$news,:1]");
        expect(sub[s], "*3[$subscribe,$other,:2]");
    }
    client_t *pub = client_open(srv.port);
    char msg[32], want[64];
    for (int i = 0; i < MSGS; i++) {
        snprintf(msg, sizeof(msg), "m%d", i);
        client_cmd(pub, "PUBLISH", "news", msg, NULL);
    }
    for (int i = 0; i < MSGS; i++)
        expect(pub, ":4");
    for (int s = 0; s < SUBS; s++) {
        for (int i = 0; i < MSGS; i++) {
            snprintf(want, sizeof(want), "*3[$message,$news,$m%d]", i);
            expect(sub[s], want);
        }
        client_cmd(sub[s], "GET", "x", NULL); /* subscribed: refused, as in Redis */
        expect(sub[s], "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / "
                       "PING / QUIT / RESET are allowed in this context");
        client_cmd(sub[s], "UNSUBSCRIBE", NULL);
        char *a = client_reply(sub[s]), *b = client_reply(sub[s]);
        cr_assert(a && b, "two unsubscribe replies");
        cr_assert(strstr(a, "unsubscribe") && strstr(b, ":0]"), "unsubscribed from both");
        free(a);
        free(b);
    }
    client_cmd(pub, "PUBLISH", "news", "late", NULL);
    expect(pub, ":0");
    for (int s = 0; s < SUBS; s++)
        client_close(sub[s]);
    client_close(pub);
}

/*
 * The channel goes away each time its last subscriber leaves, and is made
 * again by the next SUBSCRIBE, while other connections subscribe at the same
 * moment: after its SUBSCRIBE is acknowledged, every subscriber must receive
 * what is published next, every time.
 */
struct churn {
    int port, id, rounds;
    int received; /* own messages received */
    int failed;
};

static void *churn_main(void *arg)
{
    struct churn *ch = arg;
    client_t *sub = client_open(ch->port), *pub = client_open(ch->port);
    char tag[64], want[96];
    for (int r = 0; r < ch->rounds; r++) {
        client_cmd(sub, "SUBSCRIBE", "churn", NULL);
        char *ack = client_reply(sub);
        if (!ack || strcmp(ack, "*3[$subscribe,$churn,:1]") != 0) {
            fprintf(stderr, "churn %d round %d: subscribe reply %s\n", ch->id, r,
                    ack ? ack : "none");
            ch->failed++;
        }
        free(ack);
        snprintf(tag, sizeof(tag), "from-%d-%d", ch->id, r);
        client_cmd(pub, "PUBLISH", "churn", tag, NULL);
        char *n = client_reply(pub);
        if (!n || n[0] != ':' || atoi(n + 1) < 1) {
            fprintf(stderr, "churn %d round %d: publish reply %s\n", ch->id, r, n ? n : "none");
            ch->failed++;
        }
        free(n);
        /* Others' messages may come first; ours must come. */
        snprintf(want, sizeof(want), "*3[$message,$churn,$%s]", tag);
        for (;;) {
            char *m = client_reply(sub);
            if (!m) {
                ch->failed++;
                break;
            }
            bool mine = strcmp(m, want) == 0;
            free(m);
            if (mine) {
                ch->received++;
                break;
            }
        }
        client_cmd(sub, "UNSUBSCRIBE", "churn", NULL);
        for (;;) { /* messages published before the unsubscription may precede its reply */
            char *m = client_reply(sub);
            if (!m) {
                ch->failed++;
                break;
            }
            bool done = strstr(m, "$unsubscribe") != NULL;
            free(m);
            if (done)
                break;
        }
    }
    client_close(sub);
    client_close(pub);
    return NULL;
}

Test(resp, a_channel_remade_under_concurrent_subscribes_loses_nobody)
{
    enum { T = 6, ROUNDS = 300 };
    pthread_t th[T];
    struct churn ch[T];
    for (int i = 0; i < T; i++) {
        ch[i] = (struct churn){.port = srv.port, .id = i, .rounds = ROUNDS};
        pthread_create(&th[i], NULL, churn_main, &ch[i]);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(ch[i].failed, 0, "no reply missing or wrong");
        cr_assert_eq(ch[i].received, ROUNDS, "each subscriber got every message published to it");
    }
    char *info = cli(srv.port, "info");
    char *ca = strstr(info, "channel_actors:");
    cr_assert(ca, "INFO lists channel actors");
    free(info);
}

Test(resp, malformed_input_gets_an_error_then_the_connection_closes)
{
    static const struct {
        const char *in;
        const char *err;
    } cases[] = {
        {"*x\r\n", "-ERR Protocol error: invalid multibulk length"},
        {"*99999999\r\n", "-ERR Protocol error: invalid multibulk length"},
        {"*1\r\n$1073741824\r\n", "-ERR Protocol error: invalid bulk length"},
        {"*1\r\n$-5\r\n", "-ERR Protocol error: invalid bulk length"},
        {"*2\r\n$3\r\nGET\r\n+k\r\n", "-ERR Protocol error: expected '$'"},
        {"*1\r\n$4\r\nPINGxx", "-ERR Protocol error: expected CRLF after bulk"},
        {"*1\r\n$111111111111111111111111111111111111\r\n",
         "-ERR Protocol error: too big bulk count string"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        client_t *c = client_open(srv.port);
        client_raw(c, cases[i].in, strlen(cases[i].in));
        expect(c, cases[i].err);
        cr_assert(client_closed_by_server(c), "the server closes after a protocol error");
        client_close(c);
    }
    /* Inline commands work, as in Redis. */
    client_t *c = client_open(srv.port);
    static const char inl[] = "PING\r\nECHO  hi \r\n";
    client_raw(c, inl, sizeof(inl) - 1);
    expect(c, "+PONG");
    expect(c, "$hi");
    client_close(c);
    /* Clients that vanish mid-command, mid-pipeline, mid-reply. */
    for (int i = 0; i < 50; i++) {
        c = client_open(srv.port);
        static const char half[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nabc";
        client_raw(c, half, sizeof(half) - 1);
        client_close(c);
        c = client_open(srv.port);
        for (int j = 0; j < 100; j++)
            client_cmd(c, "INCR", "vanish", NULL);
        client_close(c);
    }
    c = client_open(srv.port);
    client_cmd(c, "GET", "k", NULL);
    expect(c, "(nil)");
    client_cmd(c, "PING", NULL);
    expect(c, "+PONG");
    client_close(c);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kb(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
    FILE *f = fopen(path, "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

/*
 * A client that sends 4,000 GETs of a 256 KiB value (1 GiB of replies) and
 * never reads: the server stops reading from it instead of buffering, and
 * keeps answering another connection at once.
 */
Test(resp, a_client_that_never_reads_is_bounded_and_stalls_nobody)
{
    enum { VAL = 256 * 1024, GETS = 4000 };
    client_t *slow = client_open(srv.port), *other = client_open(srv.port);
    char *val = malloc(VAL);
    memset(val, 'v', VAL);
    const char *argv[] = {"SET", "big", val};
    const size_t lens[] = {3, 3, VAL};
    client_cmdv(other, 3, argv, lens);
    expect(other, "+OK");
    free(val);
    long rss0 = rss_kb(srv.pid);
    /* Written from a thread of its own would block when the server stops
     * reading: send what fits, without waiting. */
    char *reqs = malloc(GETS * 32);
    size_t len = 0;
    for (int i = 0; i < GETS; i++)
        len += (size_t)sprintf(reqs + len, "*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n");
    size_t sent = 0;
    while (sent < len) {
        ssize_t n = send(slow->fd, reqs + sent, len - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n <= 0)
            break;
        sent += (size_t)n;
    }
    free(reqs);
    double worst = 0;
    for (int i = 0; i < 200; i++) {
        double t0 = now_s();
        client_cmd(other, "PING", NULL);
        expect(other, "+PONG");
        double dt = now_s() - t0;
        worst = dt > worst ? dt : worst;
        usleep(5000);
    }
    long grown_mb = (rss_kb(srv.pid) - rss0) / 1024;
    cr_assert_lt(worst, 1.0, "another connection is answered within a second (worst %.3f s)",
                 worst);
    /* Bound: out_soft plus the GETs in flight when reading paused (at most
     * max_pipeline replies, 256 MiB), far below the 1 GiB asked for.  Not
     * under ThreadSanitizer: its shadow memory for each reply copied adds a
     * multiple of the reply's size to RSS (measured 416 MiB for the same
     * server state); the bound is checked by every other build. */
#if !RESP_TEST_TSAN
    cr_assert_lt(grown_mb, 400, "the server buffered %ld MiB for a client that does not read",
                 grown_mb);
#else
    (void)grown_mb;
#endif
    client_close(slow);
    client_cmd(other, "PING", NULL);
    expect(other, "+PONG");
    client_close(other);
}
