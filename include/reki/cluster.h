/*
 * reki cluster: at most one live actor per key across machines, on etcd.
 *
 * Library libreki-cluster.a (pkg-config reki-cluster, CMake reki::cluster),
 * on top of libreki.a.  docs/cluster.md has the design and its proofs.
 *
 * Keys hash to a fixed number of shards (the same on every node).  A shard
 * is owned by one node through an etcd lease and a create-if-absent
 * transaction; that transaction's revision is the shard's fencing token.  A
 * node serves the keys of the shards it owns with its local registry (a
 * registry with a start: virtual actors), and forwards the others' messages
 * over TCP to their owner, where `decode` turns the bytes into a message
 * for reki_send_key.  Per-key traffic never touches etcd; only shard
 * ownership does.
 *
 * Guarantee: at most one live actor per key in the whole cluster, as long as
 * clocks advance at the same rate within the lease's safety margin.  A node
 * stops serving (its shards' actors exit with REKI_EXIT_SHUTDOWN, nothing new
 * starts, no actor of the registry handles another message) at its lease
 * deadline minus the margin, measured on its own clock (CLOCK_BOOTTIME) from before
 * the keepalive that set it; etcd can expire the lease only later, and only
 * then can another node claim the shard.  The check runs right before each
 * handle, so a node that was paused (SIGSTOP) past its deadline handles
 * nothing after it resumes.  Messages in flight to a node that dies, or to
 * a shard in the middle of a handoff, may be lost (stats.lost counts those
 * this node saw); a message is never handled by two actors of one key.
 *
 * Thread-safety: every function is MT-safe except reki_cluster_leave,
 * which must not run concurrently with another call on the same cluster.
 * One cluster per registry, for the registry's whole life.  A start of a
 * clustered registry must return a light or dedicated actor (one whose
 * every handle passes the deadline check): an inbox's or a call's pid
 * fails the start with REKI_EINVAL.
 *
 * Clocks: deadlines use CLOCK_BOOTTIME, which counts time suspended.  The
 * guarantee also needs etcd to honour lease TTLs: etcd-io/etcd#15247 (an
 * old leader revoking leases early) is fixed from etcd 3.4.32 / 3.5.13.
 */
#ifndef REKI_CLUSTER_H
#define REKI_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reki/reki.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct reki_cluster reki_cluster_t;

typedef struct reki_cluster_opts {
    const char *etcd;      /* comma-separated endpoints, e.g. "http://127.0.0.1:2379"; required */
    const char *prefix;    /* etcd key prefix; NULL = "/reki/" */
    const char *node;      /* this node's unique name; required */
    const char *listen;    /* "host:port" this node accepts forwarded messages on; required */
    const char *advertise; /* "host:port" others reach it at; NULL = listen */
    unsigned shards;       /* the same on every node; 0 = 256 */
    unsigned lease_ttl_s;  /* 0 = 5 */
    void *(*decode)(const void *bytes, size_t len, void *arg); /* bytes -> local message */
    void *decode_arg;
} reki_cluster_opts_t;

/*
 * reki_cluster_join: make reg one node of the cluster described by opts.
 *   Grants this node's lease, registers it under <prefix>nodes/<node>,
 *   starts its threads (lease, watch, shard control, listener) and returns
 *   once it has read the shard map.  Shards are then claimed in the
 *   background (each node claims the shards that rendezvous hashing over
 *   the live nodes gives it), or on the first message to a shard nobody
 *   owns.
 * Returns: REKI_OK and *out; REKI_EINVAL (a required field NULL, a node name
 *   with spaces or over 255 bytes, an address that is not host:port or
 *   cannot be listened on, shards over 65536 or unlike the cluster's,
 *   lease_ttl_s over 3600, reg without a start, reg already in a cluster
 *   (or left one), reg that has ever started a key (its entries must all be
 *   gone: join a fresh registry), decode NULL); REKI_ENOMEM; REKI_ETIMEDOUT (etcd did
 *   not answer in time); REKI_EDEAD (no etcd endpoint reachable, or an
 *   answer etcd does not give).
 * Thread-safety: MT-safe.
 * Lifetime: opts' strings are copied.  reg must outlive the cluster
 *   (reki_cluster_leave before reki_registry_free).
 */
REKI_API int reki_cluster_join(reki_registry_t *reg, const reki_cluster_opts_t *opts,
                               reki_cluster_t **out);

/*
 * reki_cluster_leave: leave the cluster gracefully, then free cl.  This node
 *   deregisters (so no node picks it for a shard), then hands each shard it
 *   owns over: no new start there, its actors stop (REKI_EXIT_SHUTDOWN) and
 *   their terminate returns, and only then is the shard's key deleted in
 *   etcd, for the next owner to claim.  Then the lease is revoked and the
 *   threads end.  Messages that arrive for a shard after its handoff began
 *   are forwarded to its next owner when one is known, else lost (counted).
 *   Each shard's handover waits at most 10 s in all for its actors'
 *   terminate; a shard whose actors are still there then keeps its key,
 *   which expires with the lease (the lease is revoked only when every
 *   shard was handed over).  Afterwards the registry serves nothing (its
 *   keys belong to the cluster): free it.  NULL: no-op.
 * Thread-safety: not concurrently with any other call on cl.
 */
REKI_API void reki_cluster_leave(reki_cluster_t *cl);

/*
 * reki_cluster_send_key: route bytes to the key's actor on whichever node
 *   owns its shard: here, decode(bytes) then reki_send_key on the registry;
 *   elsewhere, queued for that node's connection (batched, one write for
 *   many messages).  If nobody owns the shard, this node claims it (one
 *   etcd transaction, on this thread).
 * Returns: REKI_OK (delivered here, or queued for the owner); REKI_EINVAL
 *   (cl or key NULL, keylen 0 or > REKI_KEY_MAX, bytes NULL with len > 0,
 *   len > 16 MiB, or decode returned NULL); REKI_EFULL (the actor's mailbox
 *   or the owner's connection queue, 64 MiB, is full); REKI_ENOTFOUND (no
 *   node can take the shard now: it is being handed over or its owner's
 *   lease has not expired yet; retry later); REKI_ESHUTDOWN (this node's
 *   lease has run out, or the cluster is leaving); REKI_ETIMEDOUT or
 *   REKI_EDEAD (a claim could not reach etcd); what reki_send_key returns.
 *   On every error the message was not taken: a decoded message goes to
 *   the registry's drop, and bytes are still the caller's.
 * Thread-safety: MT-safe.
 * Ordering: messages from one thread to one key go in order while the
 *   key's shard keeps its owner; across a handoff, order is not kept.
 * Lifetime: bytes are copied (or decoded) before it returns.
 */
REKI_API int reki_cluster_send_key(reki_cluster_t *cl, const void *key, size_t keylen,
                                   const void *bytes, size_t len);

/*
 * reki_cluster_owner: the node that owns key's shard, as this node knows it
 *   now (from etcd's watch: it may lag by a round trip).
 * Returns: REKI_OK, the owner's name in node (NUL-terminated) and whether
 *   it is this node in *local; REKI_ENOTFOUND (no owner known);
 *   REKI_EINVAL (NULL, bad key, node_size too small for the name).
 * Thread-safety: MT-safe.
 */
REKI_API int reki_cluster_owner(reki_cluster_t *cl, const void *key, size_t keylen, char *node,
                                size_t node_size, bool *local);

/* ---------------------------------------------------------- additions -- */

/*
 * reki_cluster_token: the fencing token of key's current activation here:
 *   the etcd revision of the shard claim it started under (not a later
 *   claim's: a stalled activation keeps its own).  Tokens of one shard only grow from
 *   one claim to the next, so storage written by actors can reject a writer
 *   whose token is older than one it has seen (the check that protects
 *   against a process that stalls between its own deadline check and its
 *   write).
 * Returns: REKI_OK and *token; REKI_ENOTFOUND (no activation of key
 *   here, or one that started outside a cluster); REKI_EINVAL.
 * Thread-safety: MT-safe; call it from an actor's start or handle.
 */
REKI_API int reki_cluster_token(reki_cluster_t *cl, const void *key, size_t keylen, int64_t *token);

/*
 * Node messages: bytes for one node, not for a key.  Request/response
 * protocols built on the cluster send their replies this way (reki-resp's
 * cluster mode does).
 *
 * reki_cluster_set_node_handler: fn(tag, taglen, bytes, len, arg) receives
 *   every node message sent to this node from then on, on the thread that
 *   received it (a receiver thread; the caller's own thread when a node
 *   sends to itself).  fn must not block for long: it delays the messages
 *   behind it on the same connection.  Set once, before other nodes send;
 *   node messages that arrive while no handler is set are lost (counted).
 * Returns: REKI_OK; REKI_EINVAL (NULL, or a handler is already set).
 *
 * reki_cluster_send_node: queue tag and bytes for the node named node,
 *   on the same connection as the messages by key to it (so, from one
 *   thread, in order with them).  Best effort, like any message in flight:
 *   lost if that node dies or cannot be reached (stats.lost there or here).
 * Returns: REKI_OK; REKI_ENOTFOUND (no live node of that name is known);
 *   REKI_EINVAL (NULL, taglen 0 or > REKI_KEY_MAX, len > 16 MiB);
 *   REKI_EFULL (the connection's queue is full); REKI_ENOMEM.
 * Thread-safety: MT-safe.  Lifetime: tag and bytes are copied.
 */
typedef void (*reki_cluster_node_fn)(const void *tag, size_t taglen, const void *bytes, size_t len,
                                     void *arg);
REKI_API int reki_cluster_set_node_handler(reki_cluster_t *cl, reki_cluster_node_fn fn, void *arg);
REKI_API int reki_cluster_send_node(reki_cluster_t *cl, const char *node, const void *tag,
                                    size_t taglen, const void *bytes, size_t len);

typedef struct reki_cluster_stats {
    unsigned shards_owned; /* shards served here now */
    unsigned nodes;        /* live nodes in the last map read */
    uint64_t local;        /* messages delivered here by reki_cluster_send_key */
    uint64_t forwarded;    /* messages queued for other nodes */
    uint64_t received;     /* messages that came from other nodes */
    uint64_t rerouted;     /* received for a shard no longer here, sent on */
    uint64_t lost;         /* messages this node had to give up (see leave) */
    uint64_t claims;       /* successful shard claims */
    uint64_t releases;     /* shards handed over */
    uint64_t lease_losses; /* times the lease ran out and serving stopped */
} reki_cluster_stats_t;

/*
 * reki_cluster_stats: counters of this node since join (read one by one
 *   without a lock: under concurrent traffic they need not agree exactly).
 * Returns: REKI_OK; REKI_EINVAL.
 */
REKI_API int reki_cluster_stats(reki_cluster_t *cl, reki_cluster_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif /* REKI_CLUSTER_H */
