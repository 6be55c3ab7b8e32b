/*
 * reki__etcd: a minimal etcd v3 client over etcd 3.4's JSON gateway (/v3/...).
 * Design notes are at the top of etcd.c.  Return codes are reki's
 * (include/reki/reki.h): REKI_OK, REKI_ENOMEM, REKI_EINVAL, REKI_ETIMEDOUT,
 * REKI_EDEAD, REKI_ENOTFOUND.
 */
#ifndef REKI_CLUSTER_ETCD_H
#define REKI_CLUSTER_ETCD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct reki__etcd reki__etcd_t;

/* endpoints: comma-separated base URLs ("http://127.0.0.1:2379,http://127.0.0.1:22379"),
   copied; each exactly http://host:port.  timeout_ms bounds each request (connect + transfer),
   per endpoint tried.  One client per thread: a client is not MT-safe (it owns one CURL easy
   handle, reused so that connections are kept alive).  Call reki__etcd_global_init() once before
   any client (pthread_once inside; reki__etcd_new calls it too). */
int reki__etcd_global_init(void);
int reki__etcd_new(const char *endpoints, int timeout_ms, reki__etcd_t **out);
void reki__etcd_free(reki__etcd_t *c);
int reki__etcd_lease_grant(reki__etcd_t *c, int64_t ttl_s, int64_t *id, int64_t *granted_ttl_s);
/* REKI_ENOTFOUND: the lease is gone (expired or revoked) */
int reki__etcd_lease_keepalive(reki__etcd_t *c, int64_t id, int64_t *ttl_s);
/* REKI_OK also when already gone */
int reki__etcd_lease_revoke(reki__etcd_t *c, int64_t id);
/* Create-if-absent: txn compare CREATE revision of key == 0; success: put key=val with lease
   (0 = none); failure: range key.  *created true: *rev = the txn's header revision (the key's
   create_revision).  *created false: *rev = the existing key's create_revision, and if
   cur_val != NULL, *cur_val = malloc'd copy of its value (NUL-terminated, length in *cur_len; the
   key may also have vanished meanwhile: then *rev = 0 and *cur_val = NULL).
   REKI_ENOTFOUND: lease != 0 and etcd does not know that lease (it expired or was revoked). */
int reki__etcd_create(reki__etcd_t *c, const void *key, size_t klen, const void *val, size_t vlen,
                      int64_t lease, bool *created, int64_t *rev, char **cur_val, size_t *cur_len);
/* Delete key only if its create_revision == create_rev (txn compare CREATE EQUAL). */
int reki__etcd_delete_if(reki__etcd_t *c, const void *key, size_t klen, int64_t create_rev,
                         bool *deleted);
/* Put without condition (lease 0 = none); used for small metadata.
   REKI_ENOTFOUND: lease != 0 and etcd does not know that lease. */
int reki__etcd_put(reki__etcd_t *c, const void *key, size_t klen, const void *val, size_t vlen,
                   int64_t lease);
struct reki__etcd_kv {
    char *key;
    size_t klen;
    char *val;
    size_t vlen; /* malloc'd, NUL-terminated */
    int64_t create_rev, mod_rev, lease;
};
/* All keys under prefix (range_end = prefix with its last byte +1, per etcd's rule; an empty
   prefix: all keys).  *header_rev (may be NULL): the store's revision the range was read at.
   *kvs: free with reki__etcd_kvs_free(*kvs, *n). */
int reki__etcd_range_prefix(reki__etcd_t *c, const void *prefix, size_t plen,
                            struct reki__etcd_kv **kvs, size_t *n, int64_t *header_rev);
void reki__etcd_kvs_free(struct reki__etcd_kv *kvs, size_t n);
/* Watch keys under prefix from start_rev (0 = now). Blocks: calls fn once per event (type 0 = PUT,
   1 = DELETE; kv valid during the call only; rev = the event's mod_revision) until fn returns
   nonzero (returns that value), *stop becomes nonzero (checked at least every 200 ms; returns
   REKI_OK), or the stream fails (returns REKI_EDEAD / REKI_ETIMEDOUT; the caller reconnects).
   Also calls fn with type 2 and kv NULL once the watch is created (so the caller knows events
   from now on are seen).
   A watch etcd cancels (start_rev already compacted) also ends with REKI_EDEAD. */
int reki__etcd_watch_prefix(reki__etcd_t *c, const void *prefix, size_t plen, int64_t start_rev,
                            int (*fn)(void *arg, int type, const struct reki__etcd_kv *kv,
                                      int64_t rev),
                            void *arg, _Atomic int *stop);

#endif
