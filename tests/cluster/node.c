/*
 * reki-cluster-node: one node of a test cluster, for tests/cluster/harness.py.
 *
 *   reki-cluster-node --etcd URLS --node NAME --listen 127.0.0.1:PORT --log FILE
 *                     [--shards 64] [--ttl 2] [--keys 256] [--rate 2000]
 *                     [--prefix /reki-test/]
 *
 * Joins the cluster, prints "ready NAME OSPID", then sends `rate` messages a
 * second in all to keys k0..k<keys-1> chosen at random, through
 * reki_cluster_send_key.  Each key's actor appends to FILE, one write(2) per
 * line (O_APPEND: lines survive kill -9, processes may share the file), with
 * CLOCK_MONOTONIC nanoseconds:
 *   S key node ospid actorpid token t        at the actor's start
 *   H key node ospid actorpid token t        for each message it handles
 *   E key node ospid actorpid token t reason at its exit
 * The H line's time is read inside the handle, after the fence's deadline
 * check that precedes every handle.  SIGTERM: reki_cluster_leave, then exit
 * 0.  Stats go to stderr once a second.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "reki/cluster.h"
#include "reki/reki.h"

static int log_fd = -1;
static const char *node_name;
static _Atomic(reki_cluster_t *) cluster;
static volatile sig_atomic_t stop_flag;

struct actor {
    char key[64];
    size_t keylen;
    int64_t token;
    reki_pid_t pid;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void log_line(char kind, const struct actor *a, const char *extra)
{
    char line[256];
    int n = snprintf(line, sizeof(line), "%c %.*s %s %d %" PRIu64 " %" PRId64 " %" PRIu64 "%s\n",
                     kind, (int)a->keylen, a->key, node_name, (int)getpid(), (uint64_t)a->pid,
                     a->token, now_ns(), extra);
    if (n > 0 && write(log_fd, line, (size_t)n) != n)
        fprintf(stderr, "log write failed\n");
}

static int on_init(reki_pid_t self, void *arg, void **state)
{
    struct actor *a = arg;
    a->pid = self;
    *state = a;
    log_line('S', a, "");
    return 0;
}

static reki_next_t on_handle(void *state, void *msg, reki_pid_t self)
{
    (void)self;
    log_line('H', state, "");
    free(msg);
    return REKI_CONTINUE;
}

static void on_terminate(void *state, int reason)
{
    char extra[16];
    snprintf(extra, sizeof(extra), " %d", reason);
    log_line('E', state, extra);
    free(state);
}

static const reki_behavior_t behavior = {
    .init = on_init, .handle = on_handle, .terminate = on_terminate, .drop = free};

static int start(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)arg;
    struct actor *a = calloc(1, sizeof(*a));
    if (!a || keylen >= sizeof(a->key)) {
        free(a);
        return REKI_ENOMEM;
    }
    memcpy(a->key, key, keylen);
    a->keylen = keylen;
    /* The shard is ours while a start runs (the fence let it in).  A start
     * can come before join has returned (a message from another node). */
    reki_cluster_t *cl;
    while (!(cl = atomic_load(&cluster)))
        usleep(1000);
    if (reki_cluster_token(cl, key, keylen, &a->token) != REKI_OK)
        a->token = 0;
    int rc = reki_spawn(rt, &behavior, a, NULL, out);
    if (rc < 0)
        free(a);
    return rc;
}

static void *decode(const void *bytes, size_t len, void *arg)
{
    (void)arg;
    void *m = malloc(len ? len : 1);
    if (m && len)
        memcpy(m, bytes, len);
    return m;
}

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

struct args {
    const char *etcd, *node, *listen, *log, *prefix;
    unsigned shards, ttl, keys, rate;
};

static int parse(int argc, char **argv, struct args *a)
{
    *a = (struct args){.prefix = "/reki-test/", .shards = 64, .ttl = 2, .keys = 256, .rate = 2000};
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--etcd"))
            a->etcd = v;
        else if (!strcmp(k, "--node"))
            a->node = v;
        else if (!strcmp(k, "--listen"))
            a->listen = v;
        else if (!strcmp(k, "--log"))
            a->log = v;
        else if (!strcmp(k, "--prefix"))
            a->prefix = v;
        else if (!strcmp(k, "--shards"))
            a->shards = (unsigned)atoi(v);
        else if (!strcmp(k, "--ttl"))
            a->ttl = (unsigned)atoi(v);
        else if (!strcmp(k, "--keys"))
            a->keys = (unsigned)atoi(v);
        else if (!strcmp(k, "--rate"))
            a->rate = (unsigned)atoi(v);
        else
            return -1;
    }
    return a->etcd && a->node && a->listen && a->log && a->keys ? 0 : -1;
}

static void print_stats(void)
{
    reki_cluster_stats_t st;
    if (reki_cluster_stats(atomic_load(&cluster), &st) == REKI_OK)
        fprintf(stderr,
                "%s: shards %u nodes %u local %" PRIu64 " forwarded %" PRIu64 " received %" PRIu64
                " rerouted %" PRIu64 " lost %" PRIu64 " claims %" PRIu64 " releases %" PRIu64
                " lease_losses %" PRIu64 "\n",
                node_name, st.shards_owned, st.nodes, st.local, st.forwarded, st.received,
                st.rerouted, st.lost, st.claims, st.releases, st.lease_losses);
}

/* rate messages a second, in 1 ms steps, until SIGTERM. */
static void send_loop(const struct args *a, uint64_t *failed)
{
    uint64_t seq = 0, next_stats = now_ns() + 1000000000u, t0 = now_ns();
    unsigned seed = (unsigned)getpid();
    while (!stop_flag) {
        uint64_t due = (now_ns() - t0) / 1000000u * a->rate / 1000u;
        for (; seq < due && !stop_flag; seq++) {
            char key[32];
            int kl = snprintf(key, sizeof(key), "k%u", (unsigned)rand_r(&seed) % a->keys);
            if (reki_cluster_send_key(atomic_load(&cluster), key, (size_t)kl, &seq, sizeof(seq)) !=
                REKI_OK)
                (*failed)++;
        }
        if (now_ns() >= next_stats) {
            print_stats();
            fprintf(stderr, "%s: send failures %" PRIu64 "\n", node_name, *failed);
            next_stats += 1000000000u;
        }
        usleep(1000);
    }
}

int main(int argc, char **argv)
{
    struct args a;
    if (parse(argc, argv, &a) != 0) {
        fprintf(stderr,
                "usage: %s --etcd URLS --node NAME --listen HOST:PORT --log FILE "
                "[--shards N] [--ttl S] [--keys N] [--rate N] [--prefix P]\n",
                argv[0]);
        return 2;
    }
    node_name = a.node;
    log_fd = open(a.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    reki_rt_t *rt;
    reki_registry_t *reg;
    reki_registry_opts_t ro = {.start = start, .drop = free};
    if (log_fd < 0 || reki_rt_new(NULL, &rt) != REKI_OK ||
        reki_registry_new(rt, &ro, &reg) != REKI_OK) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    reki_cluster_opts_t co = {.etcd = a.etcd,
                              .prefix = a.prefix,
                              .node = a.node,
                              .listen = a.listen,
                              .shards = a.shards,
                              .lease_ttl_s = a.ttl,
                              .decode = decode};
    reki_cluster_t *joined;
    int rc = reki_cluster_join(reg, &co, &joined);
    if (rc != REKI_OK) {
        fprintf(stderr, "join: %s\n", reki_strerror(rc));
        return 1;
    }
    atomic_store(&cluster, joined);
    printf("ready %s %d\n", a.node, (int)getpid());
    fflush(stdout);
    uint64_t failed = 0;
    send_loop(&a, &failed);
    print_stats();
    reki_cluster_leave(joined);
    reki_registry_free(reg);
    reki_rt_free(rt);
    close(log_fd);
    return 0;
}
