/* I/O threads of reki-resp (see io.h). */
#include "io.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster.h"

#define EVENTS 256
#define INBOX_BATCH 4096 /* answers taken per turn, so sockets get their turn */

/* epoll data: a connection pointer, or one of these tags. */
static char TAG_LISTEN, TAG_STOP, TAG_INBOX;

reki_pid_t io_pid(const struct io *io)
{
    return io->pid;
}

/* The inbox's drop, at reki_inbox_free: whatever is left is freed. */
static void inbox_drop(void *msg)
{
    uint8_t op = *(uint8_t *)msg;
    if (op == OP_PUSH || op == OP_RELEASE) {
        struct pushmsg *pm = msg;
        if (pm->payload)
            push_unref(pm->payload);
        free(pm);
    } else {
        kmsg_free(msg);
    }
}

int io_new(unsigned idx, struct io **out)
{
    struct io *io = calloc(1, sizeof(*io));
    if (!io)
        return -1;
    io->idx = idx;
    io->ep = epoll_create1(EPOLL_CLOEXEC);
    reki_inbox_opts_t o = {.drop = inbox_drop};
    if (io->ep < 0 || reki_inbox_new_ex(srv.rt, &o, &io->inbox) != REKI_OK) {
        if (io->ep >= 0)
            close(io->ep);
        free(io);
        return -1;
    }
    io->pid = reki_inbox_pid(io->inbox);
    *out = io;
    return 0;
}

void io_watch(struct io *io, struct conn *c)
{
    if (c->closed)
        return;
    struct epoll_event ev = {.data.ptr = c};
    ev.events = (c->paused ? 0 : EPOLLIN) | (c->want_out ? EPOLLOUT : 0);
    epoll_ctl(io->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void link_front(struct conn **list, struct conn *c)
{
    c->prev = NULL;
    c->next = *list;
    if (*list)
        (*list)->prev = c;
    *list = c;
}

static void unlink_from(struct conn **list, struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        *list = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

void io_unlink(struct io *io, struct conn *c)
{
    unlink_from(&io->conns, c);
    link_front(&io->dead, c);
    atomic_fetch_sub_explicit(&io->nconns, 1, memory_order_relaxed);
}

static void accept_all(struct io *io)
{
    for (;;) {
        int fd = accept4(srv.listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                fprintf(stderr, "reki-resp: accept: %s\n", strerror(errno));
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = conn_new(io, fd);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (!c || epoll_ctl(io->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            if (c)
                conn_destroy(c);
            else
                close(fd);
            continue;
        }
        link_front(&io->conns, c);
        atomic_fetch_add_explicit(&io->nconns, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&srv.n_connections, 1, memory_order_relaxed);
    }
}

static void on_pushmsg(struct pushmsg *pm)
{
    for (uint32_t i = 0; i < pm->n; i++) {
        if (pm->op == OP_PUSH)
            conn_on_push(pm->conns[i], pm->payload);
        else
            conn_on_release(pm->conns[i]);
    }
    if (pm->payload)
        push_unref(pm->payload);
    free(pm);
}

static void drain_inbox(struct io *io)
{
    void *msg;
    for (int i = 0; i < INBOX_BATCH; i++) {
        if (reki_inbox_recv(io->inbox, &msg, 0) != REKI_OK)
            return;
        uint8_t op = *(uint8_t *)msg;
        if (op == OP_PUSH || op == OP_RELEASE)
            on_pushmsg(msg);
        else if (op == OP_REPLY)
            cluster_on_reply(io, msg);
        else
            conn_on_kmsg(msg);
    }
}

static void on_socket(struct conn *c, uint32_t events)
{
    if (events & (EPOLLERR | EPOLLHUP) && !(events & EPOLLIN)) {
        conn_close(c);
        return;
    }
    if (events & EPOLLIN) {
        if (conn_read(c) != 0) {
            conn_close(c);
            return;
        }
        conn_process(c);
    }
    if (events & EPOLLOUT && !c->closed)
        conn_touch(c);
}

/* End of a turn: write what the turn produced; free what is finished. */
static void end_turn(struct io *io)
{
    while (io->dirty) {
        struct conn *c = io->dirty;
        io->dirty = c->dirty_next;
        c->dirty = false;
        if (!c->closed && conn_write(c) != 0)
            conn_close(c);
    }
    for (struct conn *c = io->dead, *next; c; c = next) {
        next = c->next;
        if (!c->refs && !c->dirty) {
            unlink_from(&io->dead, c);
            conn_maybe_free(c);
        }
    }
}

static void *io_main(void *arg)
{
    struct io *io = arg;
    struct epoll_event ev[EVENTS];
    for (;;) {
        /* Cluster mode: wake up for the oldest remote request's deadline. */
        int n = epoll_wait(io->ep, ev, EVENTS, srv.cluster ? cluster_wait_ms(io) : -1);
        if (n < 0 && errno != EINTR)
            break;
        bool stop = false;
        for (int i = 0; i < n; i++) {
            void *p = ev[i].data.ptr;
            if (p == &TAG_LISTEN)
                accept_all(io);
            else if (p == &TAG_STOP)
                stop = true;
            else if (p == &TAG_INBOX)
                drain_inbox(io);
            else
                on_socket(p, ev[i].events);
        }
        if (srv.cluster)
            cluster_expire(io);
        end_turn(io);
        if (stop)
            break;
    }
    /* Shutdown: close every connection; answers still in flight are freed by io_free. */
    while (io->conns)
        conn_close(io->conns);
    return NULL;
}

int io_start(struct io *io)
{
    io->inbox_fd = reki_inbox_fd(io->inbox);
    struct epoll_event l = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &TAG_LISTEN};
    struct epoll_event s = {.events = EPOLLIN, .data.ptr = &TAG_STOP};
    struct epoll_event b = {.events = EPOLLIN, .data.ptr = &TAG_INBOX};
    if (io->inbox_fd < 0 || epoll_ctl(io->ep, EPOLL_CTL_ADD, srv.listen_fd, &l) != 0 ||
        epoll_ctl(io->ep, EPOLL_CTL_ADD, srv.stop_fd, &s) != 0 ||
        epoll_ctl(io->ep, EPOLL_CTL_ADD, io->inbox_fd, &b) != 0)
        return -1;
    return pthread_create(&io->thread, NULL, io_main, io) == 0 ? 0 : -1;
}

void io_join(struct io *io)
{
    pthread_join(io->thread, NULL);
}

void io_free(struct io *io)
{
    if (!io)
        return;
    void *msg;
    while (reki_inbox_recv(io->inbox, &msg, 0) == REKI_OK)
        inbox_drop(msg);
    while (io->conns) {
        struct conn *c = io->conns;
        unlink_from(&io->conns, c);
        conn_destroy(c);
    }
    while (io->dead) {
        struct conn *c = io->dead;
        unlink_from(&io->dead, c);
        conn_destroy(c);
    }
    reki_inbox_free(io->inbox);
    cluster_io_free(io);
    close(io->ep);
    free(io->argv);
    free(io->lens);
    free(io);
}
