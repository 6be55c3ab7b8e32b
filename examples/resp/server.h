/*
 * reki-resp: the types shared by its parts.
 *
 *   main.c      options, signals, start and orderly shutdown
 *   io.c        I/O threads: epoll over sockets and over the thread's reki
 *               inbox (reki_inbox_fd); reading, writing, output bounds
 *   conn.c      a connection: parsing, the reply ring that keeps pipelined
 *               replies in request order, subscriptions
 *   commands.c  the command table: what the I/O thread answers itself and
 *               what it sends to actors
 *   keys.c      data keys as virtual actors (reki_send_key), values kept
 *               across passivation in store.c
 *   channels.c  pub/sub channels as virtual actors
 *   cluster.c   cluster mode (--cluster-etcd): keys' actors spread over
 *               nodes with reki's cluster layer; remote requests and replies
 *   parse.c     the RESP2 request parser; buf.c the reply encoders
 *
 * A request becomes a `struct kmsg`, sent by key to an actor; the actor
 * writes its reply into the same message and sends it back (reki_send) to
 * the inbox of the I/O thread that owns the connection.  Every message
 * handed to reki comes back this way exactly once, also when it is dropped
 * (the registry's drop turns it into an error reply), so a connection is
 * freed only when nothing of it is in flight (conn->refs).
 */
#ifndef RESP_SERVER_H
#define RESP_SERVER_H

#include <reki/reki.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "store.h"

struct conn;
struct io;
struct reki_cluster;

enum op {
    /* to key actors */
    OP_GET = 1,
    OP_SET,
    OP_DEL,
    OP_EXISTS,
    OP_INCRBY,
    OP_APPEND,
    OP_STRLEN,
    /* to channel actors */
    OP_SUB,
    OP_UNSUB,
    OP_PUB,
    /* from channel actors to I/O threads */
    OP_PUSH,    /* struct pushmsg: a published message for some connections */
    OP_RELEASE, /* struct pushmsg without payload: subscriptions ended (shutdown) */
    OP_REPLY,   /* struct kmsg from cluster.c: another node's answer to request rid */
};

/* flags of OP_SET */
#define SET_NX 1u
#define SET_XX 2u
#define SET_GET 4u
/* set on a message that came back through a registry's drop */
#define KMSG_DROPPED 0x80u

/* How an answer joins its slot. */
enum rkind {
    R_BYTES = 0, /* out/outlen: the reply, or for an MGET part, its element */
    R_INT = 1,   /* num: a count to add (DEL, EXISTS over several keys) */
    R_ACK = 2    /* nothing: the slot's bytes were prepared by the I/O thread */
};

#define KMSG_INLINE 48 /* reply bytes kept inside the message */

struct kmsg {
    uint8_t op; /* first, as in struct pushmsg */
    uint8_t flags;
    uint8_t rkind;
    uint8_t remote; /* a request from another node's I/O thread (cluster.c) */
    uint32_t part;  /* index within a multi-key command */
    union {
        struct {
            struct conn *conn; /* valid until this message returns to io */
            struct io *io;
        };
        struct {           /* remote, and OP_REPLY (rid only) */
            uint64_t rid;  /* the request's id on its I/O thread */
            uint32_t rio;  /* that I/O thread's index on its node */
            uint8_t rnode; /* length of that node's name, stored after the argument */
        };
    };
    uint64_t seq;  /* the request's slot */
    int64_t num;   /* INCRBY's delta; R_INT's count */
    uint32_t klen; /* registry key: tag byte and client key */
    size_t alen;   /* argument (value, message) */
    char *out;     /* the reply: inl, or its own allocation */
    size_t outlen;
    char inl[KMSG_INLINE];
    char data[]; /* key, then argument */
};

/* A published message, shared by every I/O thread that delivers it. */
struct push {
    atomic_uint refs;
    size_t len;
    char bytes[]; /* the whole RESP "message" array */
};

struct pushmsg {
    uint8_t op; /* OP_PUSH or OP_RELEASE */
    struct push *payload;
    uint32_t n;
    struct conn *conns[];
};

typedef struct server_opts {
    const char *bind;
    int port;
    unsigned io_threads;
    unsigned workers;
    uint32_t idle_ms;      /* key actors passivate after this */
    size_t max_bulk;       /* largest bulk string accepted */
    size_t out_soft;       /* pause reading above this much output pending */
    size_t out_hard;       /* close a connection above this much (pub/sub) */
    unsigned max_pipeline; /* pause reading above this many replies pending */
} server_opts_t;

struct server {
    server_opts_t o;
    reki_rt_t *rt;
    reki_registry_t *keys;
    reki_registry_t *channels;
    struct reki_cluster *cluster; /* cluster mode (cluster.c); NULL: a single node */
    bool clustered;               /* --cluster-etcd given (set before any thread) */
    store_t *store;
    struct io **io;
    int listen_fd;
    int stop_fd; /* eventfd: shutdown began */
    uint64_t started_ms;
    /* figures for INFO */
    atomic_ullong n_commands;
    atomic_ullong n_messages; /* sent to actors */
    atomic_ullong n_starts;
    atomic_ullong n_exits;
    atomic_ullong n_passivations;
    atomic_ullong n_connections;
    atomic_llong n_keys; /* keys that hold a value */
    atomic_ullong n_published;
};

extern struct server srv;

/*
 * kmsg lifetime: new, reply, return, free.  The registry key is a tag byte
 * ('k' data key, 'c' channel) and the client's key, so that the empty key,
 * valid in Redis, is a valid reki key; data = tag, key, argument.
 */
struct kmsg *kmsg_new(uint8_t op, char tag, const void *key, size_t klen, const void *arg,
                      size_t alen);
void kmsg_free(struct kmsg *m);
/* Set m's reply to these bytes (copied; inline when they fit).  0 or -1. */
int kmsg_reply(struct kmsg *m, const void *bytes, size_t len);
/* Set m's reply to a bulk string (or nil when s is NULL). */
int kmsg_reply_bulk(struct kmsg *m, const void *s, size_t n);
/* Send m back to its I/O thread (frees it if the thread is gone). */
void kmsg_return(struct kmsg *m);
/* The registries' drop: m could not reach an actor; it returns as an error. */
void kmsg_dropped(void *m);

void push_unref(struct push *p);

/* keys.c */
int keys_start(reki_rt_t *rt, const void *key, size_t klen, void *arg, reki_pid_t *out);
/* channels.c */
int channels_start(reki_rt_t *rt, const void *key, size_t klen, void *arg, reki_pid_t *out);
/* info.c: the INFO text */
void info_text(rbuf_t *text);
/* io.c */
reki_pid_t io_pid(const struct io *io);

#endif
