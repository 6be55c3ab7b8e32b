/*
 * Forwarding between nodes: one TCP connection per peer and direction,
 * messages in frames, batched.
 *
 * Frame (little-endian): u32 keylen, u32 len, u8 hops, key, bytes.  hops
 * 0x80 marks a node message: key is its tag, for the node handler.
 * keylen is 1..REKI_KEY_MAX and len at most RC_FRAME_MAX; a receiver closes
 * a connection that sends anything else.  The port is for the cluster's
 * nodes only (no authentication: keep it on a private network).
 *
 * Out: rc_forward appends the frame to the peer's buffer under its mutex and
 * signals the peer's sender thread only when the buffer was empty.  The
 * sender swaps the whole buffer out and writes it with as few system calls
 * as the socket takes, so a burst of messages costs one write: batching
 * comes from the queue itself, with no timer.  At most RC_QUEUE_MAX bytes
 * wait per peer (then REKI_EFULL).  A peer that cannot be reached loses the
 * batch in hand (counted in stats.lost): its shards' messages are in flight
 * to a node that is gone, until its lease expires and the shards move.
 *
 * In: the listener accepts; one receiver thread per connection reads 256 KiB
 * at a time and routes each frame (rc_route, hops + 1): decoded here if the
 * shard is ours, else sent on to its owner (at most RC_HOPS_MAX times).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster_int.h"

#define HDR 9
#define DIAL_MS 1000
#define SEND_TIMEOUT_S 2
#define RX_CHUNK (256u << 10)

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void *sender_main(void *arg);

int rc_forward(struct rc_peer *p, const void *key, size_t keylen, const void *bytes, size_t len,
               unsigned hops)
{
    size_t need = HDR + keylen + len;
    pthread_mutex_lock(&p->mu);
    int rc = REKI_OK;
    if (p->stopping) {
        rc = REKI_ESHUTDOWN;
    } else if (p->len + need > RC_QUEUE_MAX) {
        rc = REKI_EFULL;
    } else if (p->len + need > p->cap) {
        size_t cap = p->cap ? p->cap : 64 * 1024;
        while (cap < p->len + need)
            cap *= 2;
        char *nb = realloc(p->buf, cap);
        if (!nb)
            rc = REKI_ENOMEM;
        else {
            p->buf = nb;
            p->cap = cap;
        }
    }
    if (rc == REKI_OK && !p->started) {
        p->started = pthread_create(&p->thread, NULL, sender_main, p) == 0;
        if (!p->started)
            rc = REKI_ENOMEM;
    }
    if (rc == REKI_OK) {
        unsigned char *f = (unsigned char *)p->buf + p->len;
        put32(f, (uint32_t)keylen);
        put32(f + 4, (uint32_t)len);
        f[8] = (unsigned char)hops;
        memcpy(f + HDR, key, keylen);
        if (len)
            memcpy(f + HDR + keylen, bytes, len);
        if (p->len == 0)
            pthread_cond_signal(&p->cv);
        p->len += need;
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

/* Wait until fd is writable (a connect finished), at most ms. */
static bool wait_out(int fd, int ms)
{
    struct pollfd pf = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t l = sizeof(err);
    return poll(&pf, 1, ms) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) == 0 && err == 0;
}

/* "host:port" -> a connected TCP socket, or -1.  Bounded: the connect waits
 * at most DIAL_MS, and a send blocks at most SEND_TIMEOUT_S (a stopped or
 * blackholed peer costs its batch, never the sender thread). */
static int dial(const char *addr)
{
    char host[256];
    int port;
    if (rc_parse_addr(addr, host, sizeof(host), &port) != REKI_OK)
        return -1;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    if (getaddrinfo(host, ps, &hints, &ai) != 0)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 &&
        (errno != EINPROGRESS || !wait_out(fd, DIAL_MS))) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd >= 0) {
        int one = 1, fl = fcntl(fd, F_GETFL);
        struct timeval tv = {SEND_TIMEOUT_S, 0};
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    }
    return fd;
}

static uint64_t count_frames(const char *b, size_t n)
{
    uint64_t k = 0;
    for (size_t off = 0; off + HDR <= n; k++)
        off += HDR + get32((const unsigned char *)b + off) +
               (size_t)get32((const unsigned char *)b + off + 4);
    return k;
}

static bool write_all(int fd, const char *b, size_t n)
{
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

static void *sender_main(void *arg)
{
    struct rc_peer *p = arg;
    reki_cluster_t *cl = p->cl;
    char *out = NULL, addr[sizeof(p->addr)];
    size_t outcap = 0;
    int fd = -1;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->len == 0 && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->len == 0 && p->stopping)
            break;
        char *b = p->buf; /* swap: the peer gets our old buffer */
        size_t n = p->len, cap = p->cap;
        p->buf = out;
        p->cap = outcap;
        p->len = 0;
        out = b;
        outcap = cap;
        bool changed = p->addr_changed;
        p->addr_changed = false;
        memcpy(addr, p->addr, sizeof(addr));
        pthread_mutex_unlock(&p->mu);
        if (changed && fd >= 0) {
            close(fd);
            fd = -1;
        }
        if (fd < 0)
            fd = dial(addr);
        if (fd < 0 || !write_all(fd, out, n)) {
            atomic_fetch_add_explicit(&cl->n_lost, count_frames(out, n), memory_order_relaxed);
            if (fd >= 0)
                close(fd);
            fd = -1;
            usleep(50 * 1000); /* a dead peer: do not spin on connect */
        }
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    if (fd >= 0)
        close(fd);
    free(out);
    return NULL;
}

void rc_peers_stop(reki_cluster_t *cl)
{
    pthread_mutex_lock(&cl->peers_mu);
    struct rc_peer *list = cl->peers;
    pthread_mutex_unlock(&cl->peers_mu);
    for (struct rc_peer *p = list; p; p = p->next) {
        pthread_mutex_lock(&p->mu);
        p->stopping = true;
        pthread_cond_signal(&p->cv);
        bool started = p->started;
        pthread_mutex_unlock(&p->mu);
        if (started)
            pthread_join(p->thread, NULL);
    }
}

/* ------------------------------------------------------------------ in -- */

int rc_listen_open(reki_cluster_t *cl)
{
    char host[256];
    int port;
    if (rc_parse_addr(cl->listen, host, sizeof(host), &port) != REKI_OK)
        return REKI_EINVAL;
    struct addrinfo hints = {.ai_family = AF_INET,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE},
                    *ai = NULL;
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    if (getaddrinfo(host, ps, &hints, &ai) != 0)
        return REKI_EINVAL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0) {
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return REKI_EINVAL;
    }
    freeaddrinfo(ai);
    cl->listen_fd = fd;
    return REKI_OK;
}

struct rx {
    reki_cluster_t *cl;
    int fd;
};

/* Route every whole frame in b[0..n); how many bytes were used, or -1 for
 * a frame no node sends. */
static long rx_frames(reki_cluster_t *cl, const unsigned char *b, size_t n)
{
    size_t off = 0;
    while (off + HDR <= n) {
        uint32_t kl = get32(b + off), len = get32(b + off + 4);
        unsigned hops = b[off + 8];
        if (kl == 0 || kl > REKI_KEY_MAX || len > RC_FRAME_MAX ||
            (hops > RC_HOPS_MAX && hops != RC_NODE_MSG))
            return -1;
        if (off + HDR + kl + len > n)
            break;
        atomic_fetch_add_explicit(&cl->n_received, 1, memory_order_relaxed);
        const unsigned char *k = b + off + HDR;
        if (hops == RC_NODE_MSG)
            rc_node_message(cl, k, kl, k + kl, len);
        else if (rc_route(cl, k, kl, k + kl, len, hops + 1) != REKI_OK)
            atomic_fetch_add_explicit(&cl->n_lost, 1, memory_order_relaxed);
        off += HDR + kl + len;
    }
    return (long)off;
}

static void rx_loop(reki_cluster_t *cl, int fd)
{
    size_t cap = RX_CHUNK, n = 0;
    unsigned char *b = malloc(cap);
    while (b) {
        if (cap - n < RX_CHUNK / 2) {
            unsigned char *nb =
                cap < HDR + REKI_KEY_MAX + RC_FRAME_MAX + RX_CHUNK ? realloc(b, cap * 2) : NULL;
            if (!nb)
                break;
            b = nb;
            cap *= 2;
        }
        ssize_t r = recv(fd, b + n, cap - n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        long used = rx_frames(cl, b, n);
        if (used < 0)
            break;
        memmove(b, b + used, n - (size_t)used);
        n -= (size_t)used;
    }
    free(b);
}

static void *rx_main(void *arg)
{
    struct rx *x = arg;
    reki_cluster_t *cl = x->cl;
    rx_loop(cl, x->fd);
    pthread_mutex_lock(&cl->rx_mu);
    for (unsigned i = 0; i < cl->rx_n; i++)
        if (cl->rx_fds[i] == x->fd) {
            cl->rx_fds[i] = cl->rx_fds[--cl->rx_n];
            break;
        }
    close(x->fd);
    pthread_cond_broadcast(&cl->rx_cv);
    pthread_mutex_unlock(&cl->rx_mu);
    free(x);
    return NULL;
}

void *rc_listen_main(void *arg)
{
    reki_cluster_t *cl = arg;
    while (!atomic_load_explicit(&cl->stop, memory_order_acquire)) {
        struct pollfd pf = {.fd = cl->listen_fd, .events = POLLIN};
        if (poll(&pf, 1, 100) <= 0)
            continue;
        int fd = accept4(cl->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        /* A peer that vanished (host down, partition) must not hold a
         * receiver forever: keepalive probes after 10 s idle. */
        int one = 1, idle = 10, intvl = 5, cnt = 3;
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
        struct rx *x = malloc(sizeof(*x));
        pthread_mutex_lock(&cl->rx_mu);
        bool ok = x && cl->rx_n < sizeof(cl->rx_fds) / sizeof(cl->rx_fds[0]);
        pthread_t t;
        if (ok) {
            *x = (struct rx){cl, fd};
            cl->rx_fds[cl->rx_n++] = fd;
            ok = pthread_create(&t, NULL, rx_main, x) == 0;
            if (ok)
                pthread_detach(t);
            else
                cl->rx_n--;
        }
        pthread_mutex_unlock(&cl->rx_mu);
        if (!ok) {
            free(x);
            close(fd);
        }
    }
    return NULL;
}

void rc_receivers_stop(reki_cluster_t *cl)
{
    pthread_mutex_lock(&cl->rx_mu);
    for (unsigned i = 0; i < cl->rx_n; i++)
        shutdown(cl->rx_fds[i], SHUT_RDWR);
    while (cl->rx_n)
        pthread_cond_wait(&cl->rx_cv, &cl->rx_mu);
    pthread_mutex_unlock(&cl->rx_mu);
}
