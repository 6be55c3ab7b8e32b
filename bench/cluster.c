/*
 * reki-bench-cluster: the cluster's costs (issue 12), each against its
 * baseline in the same process.  Starts its own single-member etcd on free
 * loopback ports (by pid; it dies with the bench) unless --etcd URL is given.
 *
 *   local    reki_cluster_send_key to keys whose shards this node owns  vs
 *            decode + reki_send_key on a registry outside any cluster (its
 *            own runtime): ns per message from the first send until every
 *            message is handled (so the handle-side deadline check counts),
 *            median of ROUNDS alternating rounds, and the ratio (goal <= 1.5x).
 *   forward  node A sends to keys owned by node B (two nodes in this process,
 *            loopback TCP, batched): messages per second handled on B, from
 *            one sending thread on A, median of ROUNDS (goal >= 500,000/s).
 *
 * usage: reki-bench-cluster [--quick] [--rounds R] [--msgs N] [--etcd URL]
 */
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include <reki/cluster.h>
#include <reki/reki.h>

#include "report.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static atomic_ulong handled;

static reki_next_t h_count(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    (void)self;
    free(msg);
    atomic_fetch_add_explicit(&handled, 1, memory_order_relaxed);
    return REKI_CONTINUE;
}

static const reki_behavior_t counter = {.handle = h_count, .drop = free};

static int start(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)key;
    (void)keylen;
    (void)arg;
    return reki_spawn(rt, &counter, NULL, NULL, out);
}

static void *decode(const void *bytes, size_t len, void *arg)
{
    (void)arg;
    void *m = malloc(len ? len : 1);
    if (m)
        memcpy(m, bytes, len);
    return m;
}

static void wait_handled(unsigned long n)
{
    uint64_t deadline = now_ns() + 60000000000ull;
    while (atomic_load_explicit(&handled, memory_order_relaxed) < n) {
        if (now_ns() > deadline) {
            fprintf(stderr, "messages lost: %lu of %lu handled\n", atomic_load(&handled), n);
            exit(1);
        }
        sched_yield();
    }
}

static double median(double *v, int n)
{
    bench_stat_t st;
    bench_stat_of(v, (size_t)n, &st);
    return st.median;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &l) != 0)
        abort();
    close(fd);
    return ntohs(a.sin_port);
}

/* A single-member etcd in a temporary directory; dies with this process. */
static pid_t etcd_start(char *url, size_t n, char *dir)
{
    int cp = free_port(), pp = free_port();
    snprintf(url, n, "http://127.0.0.1:%d", cp);
    if (!mkdtemp(dir))
        abort();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char peer[64], cluster[96];
        snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", pp);
        snprintf(cluster, sizeof(cluster), "b=%s", peer);
        if (!freopen("/dev/null", "w", stderr) || !freopen("/dev/null", "w", stdout))
            _exit(127);
        execlp("etcd", "etcd", "--name", "b", "--data-dir", dir, "--listen-client-urls", url,
               "--advertise-client-urls", url, "--listen-peer-urls", peer,
               "--initial-advertise-peer-urls", peer, "--initial-cluster", cluster, (char *)NULL);
        _exit(127);
    }
    return pid;
}

struct node {
    reki_rt_t *rt;
    reki_registry_t *reg;
    reki_cluster_t *cl;
};

static void node_join(struct node *nd, const char *etcd, const char *name, const char *prefix)
{
    reki_registry_opts_t ro = {.start = start, .drop = free};
    if (reki_rt_new(NULL, &nd->rt) || reki_registry_new(nd->rt, &ro, &nd->reg))
        abort();
    char listen[32];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", free_port());
    reki_cluster_opts_t co = {.etcd = etcd,
                              .prefix = prefix,
                              .node = name,
                              .listen = listen,
                              .shards = 64,
                              .lease_ttl_s = 5,
                              .decode = decode};
    int rc = REKI_EDEAD;
    for (int i = 0; i < 100 && rc != REKI_OK; i++) { /* etcd may still be starting */
        rc = reki_cluster_join(nd->reg, &co, &nd->cl);
        if (rc != REKI_OK)
            sleep_ms(100);
    }
    if (rc != REKI_OK) {
        fprintf(stderr, "join %s: %s\n", name, reki_strerror(rc));
        exit(1);
    }
}

static void node_leave(struct node *nd)
{
    reki_cluster_leave(nd->cl);
    reki_registry_free(nd->reg);
    reki_rt_free(nd->rt);
}

static unsigned owned(struct node *nd)
{
    reki_cluster_stats_t st;
    reki_cluster_stats(nd->cl, &st);
    return st.shards_owned;
}

#define KEYS 1024

static void keyname(char *b, unsigned i)
{
    snprintf(b, 16, "key%u", i);
}

/* ------------------------------------------------------------------ local -- */

static void bench_local(const char *etcd, int rounds, unsigned long msgs)
{
    struct node a;
    node_join(&a, etcd, "local-a", "/bench-local/");
    while (owned(&a) < 64)
        sleep_ms(20);
    reki_rt_t *rt;
    reki_registry_t *reg;
    reki_registry_opts_t ro = {.start = start, .drop = free};
    if (reki_rt_new(NULL, &rt) || reki_registry_new(rt, &ro, &reg))
        abort();
    char keys[KEYS][16];
    for (unsigned i = 0; i < KEYS; i++)
        keyname(keys[i], i);
    double *base = calloc((size_t)rounds + 1, sizeof(double));
    double *clus = calloc((size_t)rounds + 1, sizeof(double));
    unsigned long total = 0;
    for (int r = 0; r <= rounds; r++) { /* round 0 warms up: actors start */
        for (int which = 0; which < 2; which++) {
            uint64_t t0 = now_ns();
            for (unsigned long i = 0; i < msgs; i++) {
                const char *k = keys[i % KEYS];
                size_t kl = strlen(k);
                int rc;
                if (which == 0) {
                    void *m = decode(&i, sizeof(i), NULL);
                    rc = reki_send_key(reg, k, kl, m);
                } else {
                    rc = reki_cluster_send_key(a.cl, k, kl, &i, sizeof(i));
                }
                if (rc != REKI_OK)
                    abort();
            }
            total += msgs;
            wait_handled(total);
            if (r > 0)
                (which == 0 ? base : clus)[r - 1] = (double)(now_ns() - t0) / (double)msgs;
        }
    }
    double b = median(base, rounds), c = median(clus, rounds);
    printf("local    decode+send_key %.1f ns/msg   cluster_send_key %.1f ns/msg   ratio %.2fx  "
           "(goal <= 1.5x)\n",
           b, c, c / b);
    free(base);
    free(clus);
    reki_rt_free(rt);
    node_leave(&a);
}

/* ---------------------------------------------------------------- forward -- */

static void bench_forward(const char *etcd, int rounds, unsigned long msgs)
{
    struct node a, b;
    node_join(&a, etcd, "fwd-a", "/bench-fwd/");
    node_join(&b, etcd, "fwd-b", "/bench-fwd/");
    /* Wait until the shards have settled between the two. */
    for (int i = 0; i < 300 && (owned(&a) + owned(&b) != 64 || !owned(&a) || !owned(&b)); i++)
        sleep_ms(20);
    sleep_ms(1500);
    char keys[KEYS][16];
    unsigned nk = 0;
    for (unsigned i = 0; nk < KEYS && i < 100000; i++) {
        char k[16], node[64];
        bool local;
        keyname(k, i);
        if (reki_cluster_owner(a.cl, k, strlen(k), node, sizeof(node), &local) == REKI_OK &&
            strcmp(node, "fwd-b") == 0)
            memcpy(keys[nk++], k, 16);
    }
    double *rate = calloc((size_t)rounds + 1, sizeof(double));
    unsigned long total = atomic_load(&handled), fails = 0;
    for (int r = 0; r <= rounds; r++) {
        uint64_t t0 = now_ns();
        unsigned long sent = 0;
        for (unsigned long i = 0; i < msgs; i++) {
            const char *k = keys[i % nk];
            int rc;
            while ((rc = reki_cluster_send_key(a.cl, k, strlen(k), &i, sizeof(i))) == REKI_EFULL)
                sched_yield();
            if (rc == REKI_OK)
                sent++;
            else
                fails++;
        }
        total += sent;
        wait_handled(total);
        if (r > 0)
            rate[r - 1] = (double)sent / ((double)(now_ns() - t0) / 1e9);
    }
    reki_cluster_stats_t sa, sb;
    reki_cluster_stats(a.cl, &sa);
    reki_cluster_stats(b.cl, &sb);
    printf("forward  A -> B over loopback: %.0f msgs/s handled on B  (goal >= 500000)   "
           "forwarded %llu received %llu lost %llu send errors %lu\n",
           median(rate, rounds), (unsigned long long)sa.forwarded, (unsigned long long)sb.received,
           (unsigned long long)(sa.lost + sb.lost), fails);
    free(rate);
    node_leave(&a);
    node_leave(&b);
}

int main(int argc, char **argv)
{
    int rounds = 7;
    unsigned long msgs = 200000;
    const char *etcd = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            rounds = 3;
            msgs = 50000;
        } else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
            rounds = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--msgs") && i + 1 < argc) {
            msgs = strtoul(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--etcd") && i + 1 < argc) {
            etcd = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--quick] [--rounds R] [--msgs N] [--etcd URL]\n", argv[0]);
            return 2;
        }
    }
    if (rounds < 1 || msgs < 1)
        return 2;
    char url[64], dir[] = "/tmp/reki-bench-etcd-XXXXXX";
    pid_t pid = 0;
    if (!etcd) {
        pid = etcd_start(url, sizeof(url), dir);
        etcd = url;
    }
    printf("reki-bench-cluster: etcd %s, %d rounds of %lu messages, 1024 keys, 64 shards\n", etcd,
           rounds, msgs);
    fflush(stdout);
    bench_local(etcd, rounds, msgs);
    bench_forward(etcd, rounds, msgs);
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
    }
    return 0;
}
