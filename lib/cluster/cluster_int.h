/*
 * Private declarations of the cluster layer (libreki-cluster): one struct
 * reki_cluster and the functions its files share.  docs/cluster.md has the
 * design; each file's comment has its part.
 *
 *   cluster.c   join, leave, send_key, owner, token, stats
 *   shards.c    the shard map as read from etcd, rendezvous preferences,
 *               claims and handoffs (the control thread)
 *   lease.c     the lease and the deadline (the lease thread)
 *   forward.c   peers: batched TCP connections out, the listener and
 *               receivers in, the frame format
 *   etcd.c      the etcd v3 JSON-gateway client
 *
 * This layer uses the registry layer's fence (lib/registry/fence.c) and public API;
 * nothing below knows it exists.
 */
#ifndef REKI_CLUSTER_INT_H
#define REKI_CLUSTER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "registry/registry.h"
#include "etcd.h"
#include "reki/cluster.h"

#define RC_NAME_MAX 255
#define RC_FRAME_MAX (16u << 20) /* largest message body */
#define RC_QUEUE_MAX (64u << 20) /* bytes queued for one peer */
#define RC_HOPS_MAX 3            /* reroutes of one message */
#define RC_NODE_MSG 0x80         /* the hops byte of a node message */
#define RC_PEERS_MAX 1024
#define RC_ETCD_TIMEOUT_MS 1000 /* one etcd request, per endpoint */

/* A node this one knows of (itself included).  Never freed before the
 * cluster: the shard map points at peers without protection. */
struct rc_peer {
    char name[RC_NAME_MAX + 1];
    struct rc_peer *next; /* cl->peers, under peers_mu; the list only grows */
    reki_cluster_t *cl;
    bool self;
    pthread_mutex_t mu; /* the fields below */
    pthread_cond_t cv;
    char addr[300]; /* "host:port" as advertised */
    bool addr_changed;
    char *buf; /* frames waiting for the sender */
    size_t len, cap;
    bool stopping;
    pthread_t thread;
    bool started;
    uint64_t seen_since; /* ns: alive in etcd since (control thread, under peers_mu) */
};

struct rc_shard {
    _Atomic(struct rc_peer *) owner; /* as last read from etcd, or NULL */
    _Atomic int64_t token;           /* our claim's revision while we own it */
    uint64_t unowned_since;          /* ns, control thread: first seen without owner */
    _Atomic uint64_t claim_fail_ns;  /* send path: when a claim last found it taken */
    _Atomic uint8_t may_claim;       /* unowned, and ours to claim (control thread) */
    _Atomic uint8_t releasing;       /* handed over; its key not deleted yet */
};

struct reki_cluster {
    reki_registry_t *reg;
    struct reki__fence *fence;
    char *etcd_urls, *prefix, *listen, *advertise;
    char node[RC_NAME_MAX + 1];
    unsigned nshards, ttl_s;
    void *(*decode)(const void *bytes, size_t len, void *arg);
    void *decode_arg;
    uint64_t k0, k1; /* the cluster's shard-hash key (etcd: <prefix>config) */
    struct rc_shard *shard;
    struct rc_peer *self;

    pthread_mutex_t peers_mu;
    struct rc_peer *peers;

    /* Ownership: claims and losses agree under own_mu; `epoch` moves at
     * every loss of the lease, so a claim made under an older lease is not
     * taken as ours. */
    pthread_mutex_t own_mu;
    uint64_t epoch;
    _Atomic int64_t lease; /* 0: none */

    /* Threads. */
    _Atomic int stop;
    _Atomic int leaving;
    pthread_mutex_t round_mu; /* held by the control thread through a round */
    pthread_mutex_t ctl_mu;   /* ctl_cv: the control thread's wake-ups */
    pthread_cond_t ctl_cv;
    bool ctl_dirty;
    _Atomic int ctl_rounds; /* rounds done (join waits for the first) */
    pthread_t lease_thr, ctl_thr, watch_thr, listen_thr, deadline_thr;
    int listen_fd;
    pthread_mutex_t rx_mu; /* receivers: their fds and count */
    pthread_cond_t rx_cv;
    int rx_fds[256];
    unsigned rx_n;

    pthread_mutex_t claim_mu; /* claim_etcd: claims from send paths */
    reki__etcd_t *claim_etcd;
    reki__etcd_t *ctl_etcd; /* control thread, then leave */

    _Atomic(reki_cluster_node_fn) node_fn; /* set once (release after node_arg) */
    void *_Atomic node_arg;
    _Atomic unsigned nodes;
    _Atomic uint64_t n_local, n_forwarded, n_received, n_rerouted, n_lost, n_claims, n_releases,
        n_lease_losses;
};

/* cluster.c */
uint64_t rc_now_ns(void);
void rc_kick(reki_cluster_t *cl); /* wake the control thread */
int rc_route(reki_cluster_t *cl, const void *key, size_t keylen, const void *bytes, size_t len,
             unsigned hops);
int rc_parse_addr(const char *addr, char *host, size_t host_size, int *port);

void rc_node_message(reki_cluster_t *cl, const void *tag, size_t taglen, const void *bytes,
                     size_t len);

/* lease.c */
int rc_lease_start(reki_cluster_t *cl, reki__etcd_t *etcd);
void *rc_lease_main(void *arg);
void *rc_deadline_main(void *arg);
void rc_lose_all(reki_cluster_t *cl, bool lease_gone); /* stop serving every shard now */

/* shards.c */
void *rc_control_main(void *arg);
void *rc_watch_main(void *arg);
int rc_claim(reki_cluster_t *cl, reki__etcd_t *etcd, unsigned s, struct rc_peer **owner);
void rc_release(reki_cluster_t *cl, const bool *which);
bool rc_settle(reki_cluster_t *cl, reki__etcd_t *etcd, uint64_t deadline);
struct rc_peer *rc_peer_find(reki_cluster_t *cl, const char *name);
struct rc_peer *rc_peer_get(reki_cluster_t *cl, const char *name, const char *addr);

/* forward.c */
int rc_listen_open(reki_cluster_t *cl);
void *rc_listen_main(void *arg);
int rc_forward(struct rc_peer *p, const void *key, size_t keylen, const void *bytes, size_t len,
               unsigned hops);
void rc_peers_stop(reki_cluster_t *cl);
void rc_receivers_stop(reki_cluster_t *cl);

#endif
