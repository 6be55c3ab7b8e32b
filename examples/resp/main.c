/*
 * reki-resp: a Redis-protocol (RESP2) server whose keys and channels are
 * reki virtual actors.  See server.h for the parts and README.md for use.
 *
 *   reki-resp [--port N] [--bind ADDR] [--io-threads N] [--workers N]
 *             [--idle-ms N] [--max-bulk BYTES]
 *             [--cluster-etcd URLS --cluster-node NAME --cluster-listen HOST:PORT
 *              [--cluster-advertise HOST:PORT] [--cluster-prefix P]
 *              [--cluster-shards N] [--cluster-ttl S]]
 *
 * With --cluster-etcd, the keys' registry joins a reki cluster (cluster.c)
 * before serving and leaves it (handing its shards over) at shutdown,
 * before it is freed.
 *
 * Serves until SIGINT or SIGTERM, then shuts down in order: the I/O threads
 * close every connection and stop; the key and channel registries are freed
 * (every actor terminates; a key's value goes to the store); what came back
 * to the I/O threads' inboxes is freed with them; then the runtime and the
 * store.  Nothing is left allocated.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "io.h"

struct server srv;

static void usage(void)
{
    fprintf(stderr,
            "usage: reki-resp [--port N] [--bind ADDR] [--io-threads N] [--workers N]\n"
            "                 [--idle-ms N] [--max-bulk BYTES]\n"
            "  --port        TCP port (default 6379; 0 = any free port, printed)\n"
            "  --bind        IPv4 address to listen on (default 127.0.0.1)\n"
            "  --io-threads  I/O threads (default 1)\n"
            "  --workers     reki worker threads for the actors (default: one per CPU)\n"
            "  --idle-ms     a key's actor passivates after this long unused (default 1000)\n"
            "  --max-bulk    largest bulk string accepted (default 536870912)\n" CLUSTER_USAGE);
}

static int parse_num(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v > max || s[0] == '-')
        return -1;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, server_opts_t *o)
{
    *o = (server_opts_t){.bind = "127.0.0.1",
                         .port = 6379,
                         .io_threads = 1,
                         .idle_ms = 1000,
                         .max_bulk = (size_t)512 << 20,
                         .out_soft = 1 << 20,
                         .out_hard = 32 << 20,
                         .max_pipeline = 1024};
    for (int i = 1; i < argc; i++) {
        unsigned long long v;
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return -1;
        if (!val)
            return -1;
        i++;
        if (strcmp(a, "--bind") == 0)
            o->bind = val;
        else if (strcmp(a, "--port") == 0 && parse_num(val, 65535, &v) == 0)
            o->port = (int)v;
        else if (strcmp(a, "--io-threads") == 0 && parse_num(val, 64, &v) == 0 && v > 0)
            o->io_threads = (unsigned)v;
        else if (strcmp(a, "--workers") == 0 && parse_num(val, 1024, &v) == 0)
            o->workers = (unsigned)v;
        else if (strcmp(a, "--idle-ms") == 0 && parse_num(val, UINT32_MAX, &v) == 0)
            o->idle_ms = (uint32_t)v;
        else if (strcmp(a, "--max-bulk") == 0 && parse_num(val, (1ull << 32), &v) == 0 && v > 0)
            o->max_bulk = (size_t)v;
        else if (strncmp(a, "--cluster-", 10) == 0 && cluster_option(a + 10, val) == 0)
            continue;
        else
            return -1;
    }
    return 0;
}

static int listen_on(const char *addr, int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)*port)};
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        fprintf(stderr, "reki-resp: --bind %s: not an IPv4 address\n", addr);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 511) != 0) {
        fprintf(stderr, "reki-resp: listen on %s:%d: %s\n", addr, *port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    socklen_t len = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    *port = ntohs(sa.sin_port);
    return fd;
}

static void on_event(const void *key, size_t keylen, reki_pid_t pid, int event, int detail,
                     void *arg)
{
    (void)key;
    (void)keylen;
    (void)pid;
    (void)arg;
    if (event == REKI_EVENT_STARTED)
        atomic_fetch_add_explicit(&srv.n_starts, 1, memory_order_relaxed);
    else if (event == REKI_EVENT_EXITED) {
        atomic_fetch_add_explicit(&srv.n_exits, 1, memory_order_relaxed);
        if (detail == REKI_EXIT_IDLE)
            atomic_fetch_add_explicit(&srv.n_passivations, 1, memory_order_relaxed);
    }
}

/*
 * The main thread's job while serving: wait for SIGINT or SIGTERM, and once a
 * second give back to the system the memory that passivated actors freed (a
 * wave of passivations frees a lot at once, in the middle of malloc's heap,
 * where it would otherwise stay resident).
 */
static int wait_for_signal(const sigset_t *set)
{
    unsigned long long seen = 0;
    for (;;) {
        struct timespec second = {.tv_sec = 1};
        int sig = sigtimedwait(set, NULL, &second);
        if (sig > 0)
            return sig;
        unsigned long long exits = atomic_load_explicit(&srv.n_exits, memory_order_relaxed);
        if (exits != seen) {
            seen = exits;
            malloc_trim(0);
        }
    }
}

static int setup(void)
{
    reki_rt_opts_t ro = {.workers = srv.o.workers};
    if (reki_rt_new(&ro, &srv.rt) != REKI_OK || store_new(&srv.store) != 0)
        return -1;
    reki_registry_opts_t ko = {
        .start = keys_start, .idle_ms = srv.o.idle_ms, .drop = kmsg_dropped, .on_event = on_event};
    reki_registry_opts_t co = {.start = channels_start, .drop = kmsg_dropped, .on_event = on_event};
    if (reki_registry_new(srv.rt, &ko, &srv.keys) != REKI_OK ||
        reki_registry_new(srv.rt, &co, &srv.channels) != REKI_OK)
        return -1;
    srv.io = calloc(srv.o.io_threads, sizeof(*srv.io));
    if (!srv.io)
        return -1;
    for (unsigned i = 0; i < srv.o.io_threads; i++)
        if (io_new(i, &srv.io[i]) != 0)
            return -1;
    return 0;
}

static void teardown(void)
{
    /* Cluster mode: hand the shards over while the registry still serves. */
    cluster_leave();
    /* Actors first: their last answers land in the inboxes, freed with them. */
    reki_registry_free(srv.keys);
    reki_registry_free(srv.channels);
    for (unsigned i = 0; srv.io && i < srv.o.io_threads; i++)
        io_free(srv.io[i]);
    free(srv.io);
    reki_rt_free(srv.rt);
    store_free(srv.store);
    if (srv.listen_fd >= 0)
        close(srv.listen_fd);
    if (srv.stop_fd >= 0)
        close(srv.stop_fd);
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv, &srv.o) != 0) {
        usage();
        return 2;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    srv.started_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    srv.stop_fd = -1;
    /* Signals go to sigwait below, never to the other threads. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* A shell starts background jobs with SIGINT ignored: serve it anyway. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);

    srv.listen_fd = listen_on(srv.o.bind, &srv.o.port);
    srv.stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (srv.listen_fd < 0 || srv.stop_fd < 0 || setup() != 0 || cluster_join() != 0) {
        fprintf(stderr, "reki-resp: could not start\n");
        teardown();
        return 1;
    }
    unsigned started = 0;
    for (; started < srv.o.io_threads; started++)
        if (io_start(srv.io[started]) != 0)
            break;
    if (started == srv.o.io_threads) {
        printf("reki-resp: listening on %s:%d (pid %ld, %u I/O threads)\n", srv.o.bind, srv.o.port,
               (long)getpid(), srv.o.io_threads);
        fflush(stdout);
        int sig = wait_for_signal(&set);
        fprintf(stderr, "reki-resp: signal %d: shutting down\n", sig);
    } else {
        fprintf(stderr, "reki-resp: could not start an I/O thread\n");
    }
    uint64_t one = 1;
    if (write(srv.stop_fd, &one, sizeof(one)) != sizeof(one))
        abort();
    for (unsigned i = 0; i < started; i++)
        io_join(srv.io[i]);
    teardown();
    return started == srv.o.io_threads ? 0 : 1;
}
