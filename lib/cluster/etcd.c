/*
 * A minimal etcd v3 client (leases, create-if-absent, conditional delete, put,
 * prefix range, prefix watch) over etcd 3.4's JSON gateway (grpc-gateway,
 * POST /v3/...), with libcurl and jansson.  Why not gRPC: there is no
 * maintained C client for etcd v3, and gRPC from C would need protobuf-c plus
 * HTTP/2 framing code of our own; the gateway ships with every etcd server.
 *
 * Thread-safety: one client per thread.  A client owns one CURL easy handle,
 * reused so that its HTTP/1.1 connection is kept alive.  The global init
 * (pthread_once) runs curl_global_init and seeds jansson's hash.
 *
 * Endpoints: round robin, starting with the one that last worked.  A transport
 * failure, an HTTP 5xx or an answer that is not etcd's JSON moves on to the
 * next; a 200, or a 4xx with a gRPC code, is final (code 5, NOT_FOUND, gives
 * REKI_ENOTFOUND).  A txn retried on the next endpoint after its answer was
 * lost may report our own key as already created (with our value).  A watch
 * notices a silent peer through TCP keepalive (idle = interval = timeout).
 *
 * Gateway quirks handled (checked against etcd 3.4.23):
 *  - keys and values are base64 (decoded strictly: alphabet, padding, bits);
 *  - int64 fields are JSON strings ("42");
 *  - default values are omitted: `succeeded` absent when false, `kvs`,
 *    `value`, `lease`, `TTL` absent when empty or 0;
 *  - lease/keepalive (a stream endpoint) answers {"result":{...}}, and for a
 *    lease that is gone still 200, with TTL omitted;
 *  - lease/revoke of an unknown lease: 404 {"error":..,"code":5};
 *  - watch streams newline-terminated {"result":{...}}: "created":true
 *    first, then "events" (event "type" absent = PUT), or "canceled":true
 *    (e.g. start revision compacted) while the stream stays open.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include "etcd.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "reki/reki.h"

#define REKI__ETCD_MAX_BODY ((size_t)128 << 20) /* largest answer (or watch line) buffered */
#define REKI__ETCD_MAX_URL 256
#define REKI__ETCD_NEXT 1 /* internal: this endpoint failed, try the next one */
#define REKI__ETCD_FN 2   /* internal: the watch callback returned nonzero */

struct reki__etcd {
    CURL *easy;
    struct curl_slist *headers;
    char (*urls)[REKI__ETCD_MAX_URL]; /* base URLs, "http://host:port" */
    size_t nurls, cur;                /* cur: the endpoint that worked last */
    long timeout_ms;
};

struct reki__etcd_buf {
    char *p;
    size_t len, cap;
    bool oom;
};

static size_t reki__etcd_on_data(char *data, size_t size, size_t nmemb, void *arg)
{
    struct reki__etcd_buf *b = arg;
    size_t n = size * nmemb; /* size is always 1 */
    if (n > REKI__ETCD_MAX_BODY - b->len)
        return 0; /* too large: aborts the transfer */
    if (b->len + n + 1 > b->cap) {
        char *p = realloc(b->p, 2 * (b->len + n + 1));
        b->oom = !p;
        if (!p)
            return 0;
        b->p = p;
        b->cap = 2 * (b->len + n + 1);
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

static const char reki__etcd_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* A JSON string holding base64(src); NULL on ENOMEM. */
static json_t *reki__etcd_b64_json(const void *src, size_t n)
{
    const unsigned char *s = src;
    char *out = n <= SIZE_MAX / 4 * 3 - 3 ? malloc((n + 2) / 3 * 4 + 1) : NULL, *o = out;
    for (size_t i = 0; out && i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)(i + 1 < n ? s[i + 1] : 0) << 8 |
                     (uint32_t)(i + 2 < n ? s[i + 2] : 0);
        for (size_t k = 0; k < 4; k++) /* n - i input bytes left: n - i + 1 chars, then '=' */
            *o++ = k <= n - i ? reki__etcd_b64[(v >> (18 - 6 * k)) & 63] : '=';
    }
    json_t *j = out ? json_stringn(out, (size_t)(o - out)) : NULL;
    free(out);
    return j;
}

/* Field `name` of obj as base64 bytes (absent = empty), decoded strictly (alphabet, length,
   padding, zero trailing bits) into a malloc'd, NUL-terminated buffer. */
static int reki__etcd_bytes(const json_t *obj, const char *name, char **out, size_t *outlen)
{
    json_t *j = json_object_get(obj, name);
    if (j && !json_is_string(j))
        return REKI_EDEAD;
    const char *s = j ? json_string_value(j) : "";
    size_t n = j ? json_string_length(j) : 0;
    size_t pad = n >= 4 && s[n - 1] == '=' ? 1 + (s[n - 2] == '=') : 0;
    unsigned char *d = n % 4 == 0 ? malloc(n / 4 * 3 + 1) : NULL, *o = d;
    int rc = n % 4 ? REKI_EDEAD : d ? REKI_OK : REKI_ENOMEM;
    uint32_t v = 0;
    for (size_t i = 0; rc == REKI_OK && i < n; i++) {
        const char *p = i >= n - pad ? reki__etcd_b64 : s[i] ? strchr(reki__etcd_b64, s[i]) : NULL;
        rc = p ? REKI_OK : REKI_EDEAD;
        v = v << 6 | (uint32_t)(p ? p - reki__etcd_b64 : 0);
        if (i % 4 == 3) {
            *o++ = (unsigned char)(v >> 16);
            *o++ = (unsigned char)(v >> 8);
            *o++ = (unsigned char)v;
        }
    }
    o -= rc == REKI_OK ? pad : 0;
    if (rc == REKI_OK && pad && (o[0] || o[pad - 1]))
        rc = REKI_EDEAD; /* non-zero bits under the padding */
    if (rc != REKI_OK) {
        free(d);
        return rc;
    }
    *o = '\0';
    *out = (char *)d;
    *outlen = (size_t)(o - d);
    return REKI_OK;
}

/* Field `name` of obj (which may be NULL) as a gateway int64, a decimal string; absent = 0.
   Returns REKI_OK or REKI_EDEAD only, so that results can be OR'ed. */
static int reki__etcd_i64(const json_t *obj, const char *name, int64_t *out)
{
    json_t *v = json_object_get(obj, name);
    const char *s = v ? json_string_value(v) : "0";
    char *end = NULL;
    errno = 0;
    long long x = s && (*s == '-' || (*s >= '0' && *s <= '9')) ? strtoll(s, &end, 10) : 0;
    if (!end || errno || (size_t)(end - s) != (v ? json_string_length(v) : 1))
        return REKI_EDEAD;
    *out = x;
    return REKI_OK;
}

/* A JSON string "<v>" (the gateway's int64 form); NULL on ENOMEM. */
static json_t *reki__etcd_i64_json(int64_t v)
{
    return json_sprintf("%" PRId64, v);
}

static int reki__etcd_kv_parse(const json_t *j, struct reki__etcd_kv *kv)
{
    memset(kv, 0, sizeof(*kv));
    int rc = json_is_object(j) ? reki__etcd_bytes(j, "key", &kv->key, &kv->klen) : REKI_EDEAD;
    if (rc == REKI_OK && kv->klen == 0)
        rc = REKI_EDEAD; /* etcd keys are never empty */
    if (rc == REKI_OK)
        rc = reki__etcd_bytes(j, "value", &kv->val, &kv->vlen);
    if (rc == REKI_OK)
        rc = reki__etcd_i64(j, "create_revision", &kv->create_rev) |
             reki__etcd_i64(j, "mod_revision", &kv->mod_rev) |
             reki__etcd_i64(j, "lease", &kv->lease);
    if (rc != REKI_OK) {
        free(kv->key);
        free(kv->val);
        memset(kv, 0, sizeof(*kv));
    }
    return rc;
}

/* {"key": prefix, "range_end": prefix with its last byte < 0xff incremented, rev_field: rev};
   NULL on ENOMEM.  An empty prefix (or one of 0xff bytes only) has range_end "\0": all keys
   >= key. */
static json_t *reki__etcd_prefix_req(const void *prefix, size_t plen, const char *rev_field,
                                     int64_t rev)
{
    unsigned char *end = malloc(plen + 1), zero = 0;
    size_t n = plen;
    if (!end)
        return NULL;
    if (plen)
        memcpy(end, prefix, plen);
    while (n > 0 && end[n - 1] == 0xff)
        n--;
    if (n > 0)
        end[n - 1]++;
    json_t *j = json_pack("{s:o,s:o,s:o}", "key",
                          reki__etcd_b64_json(plen ? prefix : &zero, plen ? plen : 1), "range_end",
                          reki__etcd_b64_json(n ? end : &zero, n ? n : 1), rev_field,
                          reki__etcd_i64_json(rev));
    free(end);
    return j;
}

static pthread_once_t reki__etcd_once = PTHREAD_ONCE_INIT;
static int reki__etcd_init_rc = REKI_ENOMEM;

static void reki__etcd_init_once(void)
{
    json_object_seed(0);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK)
        reki__etcd_init_rc = REKI_OK;
}

int reki__etcd_global_init(void)
{
    pthread_once(&reki__etcd_once, reki__etcd_init_once);
    return reki__etcd_init_rc;
}

/* Accepts exactly http://host:port (host: a name or IPv4 address; port: 1..65535). */
static bool reki__etcd_url_ok(const char *s, size_t len)
{
    size_t host = 7, port = 0;
    if (len < 10 || len >= REKI__ETCD_MAX_URL || strncmp(s, "http://", 7) != 0)
        return false;
    while (host < len && (isalnum((unsigned char)s[host]) || s[host] == '-' || s[host] == '.'))
        host++;
    if (host == 7 || host + 1 >= len || host + 6 < len || s[host] != ':')
        return false;
    for (size_t i = host + 1; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        port = port * 10 + (size_t)(s[i] - '0');
    }
    return port >= 1 && port <= 65535;
}

static int reki__etcd_split(reki__etcd_t *c, const char *endpoints)
{
    size_t n = 1;
    for (const char *p = endpoints; *p; p++)
        n += *p == ',';
    c->urls = calloc(n, sizeof(*c->urls));
    if (!c->urls)
        return REKI_ENOMEM;
    for (const char *p = endpoints;; p++) {
        size_t len = strcspn(p, ",");
        if (!reki__etcd_url_ok(p, len))
            return REKI_EINVAL;
        memcpy(c->urls[c->nurls++], p, len);
        p += len;
        if (!*p)
            return REKI_OK;
    }
}

static int reki__etcd_curl_init(reki__etcd_t *c)
{
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *h = c->headers ? curl_slist_append(c->headers, "Expect:") : NULL;
    c->easy = h ? curl_easy_init() : NULL; /* "Expect:": no 100-continue round trip */
    if (!c->easy)
        return REKI_ENOMEM;
    long keepalive_s = c->timeout_ms >= 2000 ? c->timeout_ms / 1000 : 1;
    CURLcode e = curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
    e |= curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, h);
    e |= curl_easy_setopt(c->easy, CURLOPT_PROXY, ""); /* never an http_proxy from the env */
    e |= curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms);
    e |= curl_easy_setopt(c->easy, CURLOPT_TCP_KEEPALIVE, 1L); /* notices a silent watch peer */
    e |= curl_easy_setopt(c->easy, CURLOPT_TCP_KEEPIDLE, keepalive_s);
    e |= curl_easy_setopt(c->easy, CURLOPT_TCP_KEEPINTVL, keepalive_s);
    e |= curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, reki__etcd_on_data);
    return e == CURLE_OK ? REKI_OK : REKI_ENOMEM;
}

int reki__etcd_new(const char *endpoints, int timeout_ms, reki__etcd_t **out)
{
    if (!endpoints || !*endpoints || timeout_ms <= 0 || !out)
        return REKI_EINVAL;
    int rc = reki__etcd_global_init();
    reki__etcd_t *c = rc == REKI_OK ? calloc(1, sizeof(*c)) : NULL;
    if (!c)
        return rc == REKI_OK ? REKI_ENOMEM : rc;
    c->timeout_ms = timeout_ms;
    rc = reki__etcd_split(c, endpoints);
    if (rc == REKI_OK)
        rc = reki__etcd_curl_init(c);
    if (rc == REKI_OK)
        *out = c;
    else
        reki__etcd_free(c);
    return rc;
}

void reki__etcd_free(reki__etcd_t *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->easy); /* NULL: no-op */
    curl_slist_free_all(c->headers);
    free(c->urls);
    free(c);
}

static void reki__etcd_setup(reki__etcd_t *c, size_t idx, const char *path, const char *body,
                             struct reki__etcd_buf *b, long timeout_ms)
{
    char url[REKI__ETCD_MAX_URL + 32];
    snprintf(url, sizeof(url), "%s%s", c->urls[idx], path);
    curl_easy_setopt(c->easy, CURLOPT_URL, url); /* copied by libcurl */
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
}

/* Classifies a complete answer: REKI_OK (*resp set), final error, or REKI__ETCD_NEXT. */
static int reki__etcd_answer(long status, const struct reki__etcd_buf *b, json_t **resp)
{
    json_error_t err;
    json_t *j = b->len ? json_loadb(b->p, b->len, JSON_REJECT_DUPLICATES, &err) : NULL;
    if (!j && b->len && json_error_code(&err) == json_error_out_of_memory)
        return REKI_ENOMEM;
    json_t *code = json_object_get(j, "code");
    int rc = REKI__ETCD_NEXT;
    if (json_is_object(j) && status == 200 && !code && !json_object_get(j, "error")) {
        if (resp)
            *resp = j;
        else
            json_decref(j);
        return REKI_OK;
    }
    if (json_is_object(j) && status >= 400 && status < 500 && json_is_integer(code))
        rc = json_integer_value(code) == 5 ? REKI_ENOTFOUND : REKI_EDEAD;
    json_decref(j);
    return rc;
}

/* POSTs req (taken over; NULL = it could not be built) to each endpoint in turn; sets *resp
   (if resp != NULL) to the answer on REKI_OK. */
static int reki__etcd_post(reki__etcd_t *c, const char *path, json_t *req, json_t **resp)
{
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body)
        return REKI_ENOMEM;
    bool all_timed_out = true;
    int rc = REKI_EDEAD;
    for (size_t i = 0; i < c->nurls; i++) {
        size_t idx = (c->cur + i) % c->nurls;
        struct reki__etcd_buf b = {0};
        long status = 0;
        reki__etcd_setup(c, idx, path, body, &b, c->timeout_ms);
        CURLcode cc = curl_easy_perform(c->easy);
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
        rc = b.oom                            ? REKI_ENOMEM
             : cc == CURLE_OPERATION_TIMEDOUT ? REKI_ETIMEDOUT
             : cc != CURLE_OK                 ? REKI__ETCD_NEXT
                                              : reki__etcd_answer(status, &b, resp);
        free(b.p);
        all_timed_out &= rc == REKI_ETIMEDOUT;
        if (rc != REKI__ETCD_NEXT && rc != REKI_ETIMEDOUT) {
            c->cur = rc == REKI_ENOMEM ? c->cur : idx;
            break;
        }
    }
    free(body);
    if (rc == REKI__ETCD_NEXT || rc == REKI_ETIMEDOUT)
        rc = all_timed_out ? REKI_ETIMEDOUT : REKI_EDEAD;
    return rc;
}

/* POSTs {"<field>":"<v>"} to a lease endpoint. */
static int reki__etcd_lease_call(reki__etcd_t *c, const char *path, const char *field, int64_t v,
                                 json_t **resp)
{
    return reki__etcd_post(c, path, json_pack("{s:o}", field, reki__etcd_i64_json(v)), resp);
}

int reki__etcd_lease_grant(reki__etcd_t *c, int64_t ttl_s, int64_t *id, int64_t *granted_ttl_s)
{
    if (!c || ttl_s <= 0 || !id)
        return REKI_EINVAL;
    json_t *resp;
    int64_t lid = 0, ttl = 0;
    int rc = reki__etcd_lease_call(c, "/v3/lease/grant", "TTL", ttl_s, &resp);
    if (rc != REKI_OK)
        return rc;
    rc = reki__etcd_i64(resp, "ID", &lid) | reki__etcd_i64(resp, "TTL", &ttl);
    json_decref(resp);
    if (rc != REKI_OK || lid == 0 || ttl <= 0)
        return REKI_EDEAD;
    *id = lid;
    if (granted_ttl_s)
        *granted_ttl_s = ttl;
    return REKI_OK;
}

int reki__etcd_lease_keepalive(reki__etcd_t *c, int64_t id, int64_t *ttl_s)
{
    if (!c || id == 0)
        return REKI_EINVAL;
    json_t *resp;
    int64_t rid = 0, ttl = 0;
    int rc = reki__etcd_lease_call(c, "/v3/lease/keepalive", "ID", id, &resp);
    if (rc != REKI_OK)
        return rc;
    json_t *r = json_object_get(resp, "result");
    rc = reki__etcd_i64(r, "ID", &rid) | reki__etcd_i64(r, "TTL", &ttl);
    json_decref(resp);
    if (rc != REKI_OK || rid != id)
        return REKI_EDEAD;
    if (ttl <= 0)
        return REKI_ENOTFOUND; /* etcd 3.4 omits TTL (0) for a lease that is gone */
    if (ttl_s)
        *ttl_s = ttl;
    return REKI_OK;
}

int reki__etcd_lease_revoke(reki__etcd_t *c, int64_t id)
{
    if (!c || id == 0)
        return REKI_EINVAL;
    int rc = reki__etcd_lease_call(c, "/v3/lease/revoke", "ID", id, NULL);
    return rc == REKI_ENOTFOUND ? REKI_OK : rc; /* 404 {"code":5}: already gone */
}

/* The `succeeded` flag of a txn answer: absent = false. */
static int reki__etcd_succeeded(const json_t *resp, bool *ok)
{
    json_t *s = json_object_get(resp, "succeeded");
    if (s && !json_is_boolean(s))
        return REKI_EDEAD;
    *ok = json_is_true(s);
    return REKI_OK;
}

/* Create's answer: the txn revision, or the failure branch's responses[0].response_range.kvs[0]. */
static int reki__etcd_created(const json_t *resp, bool *ok, int64_t *rev, struct reki__etcd_kv *kv)
{
    json_t *r =
        json_object_get(json_array_get(json_object_get(resp, "responses"), 0), "response_range");
    json_t *kvs = json_object_get(r, "kvs");
    int rc = reki__etcd_succeeded(resp, ok);
    memset(kv, 0, sizeof(*kv));
    if (rc == REKI_OK && *ok)
        rc = reki__etcd_i64(json_object_get(resp, "header"), "revision", rev);
    else if (rc == REKI_OK && (!json_is_object(r) || (kvs && !json_is_array(kvs))))
        rc = REKI_EDEAD;
    else if (rc == REKI_OK && json_array_size(kvs))
        rc = reki__etcd_kv_parse(json_array_get(kvs, 0), kv);
    if (rc == REKI_OK && !*ok)
        *rev = kv->create_rev;
    return rc == REKI_OK && (*ok ? *rev <= 0 : *rev < 0) ? REKI_EDEAD : rc;
}

/* [{key == key, CREATE revision == rev}]: the compare of our txns; NULL on ENOMEM. */
static json_t *reki__etcd_cmp(const void *key, size_t klen, int64_t rev)
{
    return json_pack("[{s:o,s:s,s:s,s:o}]", "key", reki__etcd_b64_json(key, klen), "result",
                     "EQUAL", "target", "CREATE", "create_revision", reki__etcd_i64_json(rev));
}

int reki__etcd_create(reki__etcd_t *c, const void *key, size_t klen, const void *val, size_t vlen,
                      int64_t lease, bool *created, int64_t *rev, char **cur_val, size_t *cur_len)
{
    if (!c || !key || !klen || (!val && vlen) || lease < 0 || !created || !rev)
        return REKI_EINVAL;
    json_t *resp,
        *req = json_pack("{s:o,s:[{s:{s:o,s:o,s:o}}],s:[{s:{s:o}}]}", "compare",
                         reki__etcd_cmp(key, klen, 0), "success", "request_put", "key",
                         reki__etcd_b64_json(key, klen), "value", reki__etcd_b64_json(val, vlen),
                         "lease", reki__etcd_i64_json(lease), "failure", "request_range", "key",
                         reki__etcd_b64_json(key, klen));
    int rc = reki__etcd_post(c, "/v3/kv/txn", req, &resp);
    if (rc != REKI_OK)
        return rc;
    bool ok = false;
    int64_t r = 0;
    struct reki__etcd_kv kv;
    rc = reki__etcd_created(resp, &ok, &r, &kv);
    json_decref(resp);
    free(kv.key);
    if (rc == REKI_OK) {
        *created = ok;
        *rev = r;
        if (cur_len)
            *cur_len = kv.vlen;
        if (cur_val)
            *cur_val = kv.val, kv.val = NULL;
    }
    free(kv.val);
    return rc;
}

int reki__etcd_delete_if(reki__etcd_t *c, const void *key, size_t klen, int64_t create_rev,
                         bool *deleted)
{
    if (!c || !key || !klen || create_rev <= 0 || !deleted)
        return REKI_EINVAL;
    json_t *resp,
        *req = json_pack("{s:o,s:[{s:{s:o}}]}", "compare", reki__etcd_cmp(key, klen, create_rev),
                         "success", "request_delete_range", "key", reki__etcd_b64_json(key, klen));
    int rc = reki__etcd_post(c, "/v3/kv/txn", req, &resp);
    if (rc != REKI_OK)
        return rc;
    rc = reki__etcd_succeeded(resp, deleted);
    json_decref(resp);
    return rc;
}

int reki__etcd_put(reki__etcd_t *c, const void *key, size_t klen, const void *val, size_t vlen,
                   int64_t lease)
{
    if (!c || !key || !klen || (!val && vlen) || lease < 0)
        return REKI_EINVAL;
    json_t *req = json_pack("{s:o,s:o,s:o}", "key", reki__etcd_b64_json(key, klen), "value",
                            reki__etcd_b64_json(val, vlen), "lease", reki__etcd_i64_json(lease));
    return reki__etcd_post(c, "/v3/kv/put", req, NULL);
}

void reki__etcd_kvs_free(struct reki__etcd_kv *kvs, size_t n)
{
    for (size_t i = 0; kvs && i < n; i++) {
        free(kvs[i].key);
        free(kvs[i].val);
    }
    free(kvs);
}

int reki__etcd_range_prefix(reki__etcd_t *c, const void *prefix, size_t plen,
                            struct reki__etcd_kv **kvs, size_t *n, int64_t *header_rev)
{
    if (!c || (!prefix && plen) || !kvs || !n)
        return REKI_EINVAL;
    json_t *resp;
    int64_t hrev = 0;
    int rc = reki__etcd_post(c, "/v3/kv/range", reki__etcd_prefix_req(prefix, plen, "revision", 0),
                             &resp);
    if (rc != REKI_OK)
        return rc;
    json_t *arr = json_object_get(resp, "kvs");
    size_t cnt = json_array_size(arr), i = 0;
    struct reki__etcd_kv *out = calloc(cnt ? cnt : 1, sizeof(*out));
    rc = !out ? REKI_ENOMEM : reki__etcd_i64(json_object_get(resp, "header"), "revision", &hrev);
    if (rc == REKI_OK && arr && !json_is_array(arr))
        rc = REKI_EDEAD;
    for (; rc == REKI_OK && i < cnt; i++)
        rc = reki__etcd_kv_parse(json_array_get(arr, i), &out[i]);
    json_decref(resp);
    if (rc != REKI_OK) {
        reki__etcd_kvs_free(out, i);
        return rc;
    }
    *kvs = out;
    *n = cnt;
    if (header_rev)
        *header_rev = hrev;
    return REKI_OK;
}

struct reki__etcd_watch {
    reki__etcd_t *c;
    int (*fn)(void *arg, int type, const struct reki__etcd_kv *kv, int64_t rev);
    void *arg;
    struct reki__etcd_buf b;
    bool created;
    int fn_rc;
};

static int reki__etcd_watch_event(struct reki__etcd_watch *w, const json_t *ev)
{
    json_t *t = json_object_get(ev, "type");
    const char *ts = t ? json_string_value(t) : "PUT";
    int type = ts && !strcmp(ts, "PUT") ? 0 : ts && !strcmp(ts, "DELETE") ? 1 : -1;
    struct reki__etcd_kv kv;
    int rc = type < 0 ? REKI_EDEAD : reki__etcd_kv_parse(json_object_get(ev, "kv"), &kv);
    if (rc != REKI_OK)
        return rc;
    w->fn_rc = w->fn(w->arg, type, &kv, kv.mod_rev);
    free(kv.key);
    free(kv.val);
    return w->fn_rc ? REKI__ETCD_FN : REKI_OK;
}

/* One streamed object: REKI_OK to go on, REKI__ETCD_FN, or an error. */
static int reki__etcd_watch_line(struct reki__etcd_watch *w, const char *line, size_t len)
{
    json_t *j = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *r = json_object_get(j, "result"), *cr = json_object_get(r, "created");
    json_t *cancel = json_object_get(r, "canceled"), *evs = json_object_get(r, "events");
    int rc = REKI_OK;
    if (!json_is_object(r) || json_object_get(j, "error") || (cr && !json_is_boolean(cr)) ||
        (cancel && !json_is_false(cancel)) || (evs && !json_is_array(evs)))
        rc = REKI_EDEAD;
    else if (json_is_true(cr) && !w->created) {
        w->created = true;
        w->fn_rc = w->fn(w->arg, 2, NULL, 0);
        rc = w->fn_rc ? REKI__ETCD_FN : REKI_OK;
    }
    for (size_t i = 0; rc == REKI_OK && i < json_array_size(evs); i++)
        rc = reki__etcd_watch_event(w, json_array_get(evs, i));
    json_decref(j);
    return rc;
}

/* Handles the complete lines buffered so far and keeps the rest. */
static int reki__etcd_watch_lines(struct reki__etcd_watch *w)
{
    long status = 0;
    if (!w->b.len)
        return REKI_OK;
    curl_easy_getinfo(w->c->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200)
        return REKI__ETCD_NEXT;
    size_t done = 0;
    int rc = REKI_OK;
    char *nl;
    while (rc == REKI_OK && (nl = memchr(w->b.p + done, '\n', w->b.len - done))) {
        size_t len = (size_t)(nl - (w->b.p + done));
        if (strspn(w->b.p + done, " \r\t") < len)
            rc = reki__etcd_watch_line(w, w->b.p + done, len);
        done += len + 1;
    }
    memmove(w->b.p, w->b.p + done, w->b.len - done + 1); /* with its NUL */
    w->b.len -= done;
    return rc;
}

static int64_t reki__etcd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Streams from one endpoint until stop, the callback, an error or the end. */
static int reki__etcd_watch_one(struct reki__etcd_watch *w, CURLM *m, size_t idx, const char *body,
                                _Atomic int *stop)
{
    int64_t deadline = reki__etcd_now_ms() + w->c->timeout_ms;
    reki__etcd_setup(w->c, idx, "/v3/watch", body, &w->b, 0L);
    if (curl_multi_add_handle(m, w->c->easy) != CURLM_OK)
        return REKI_ENOMEM;
    int rc = REKI_OK, running = 1;
    while (rc == REKI_OK) {
        if (curl_multi_perform(m, &running) != CURLM_OK)
            rc = REKI_EDEAD;
        else if ((rc = reki__etcd_watch_lines(w)) != REKI_OK)
            break;
        else if (!running) { /* the stream ended: a failure, whatever curl says */
            CURLMsg *msg = curl_multi_info_read(m, &running);
            bool timedout =
                msg && msg->msg == CURLMSG_DONE && msg->data.result == CURLE_OPERATION_TIMEDOUT;
            rc = w->b.oom ? REKI_ENOMEM : timedout ? REKI_ETIMEDOUT : REKI__ETCD_NEXT;
        } else if (stop && atomic_load(stop))
            break;
        else if (!w->created && reki__etcd_now_ms() > deadline)
            rc = REKI_ETIMEDOUT;
        else
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    curl_multi_remove_handle(m, w->c->easy);
    w->b.len = 0;
    return rc;
}

int reki__etcd_watch_prefix(reki__etcd_t *c, const void *prefix, size_t plen, int64_t start_rev,
                            int (*fn)(void *arg, int type, const struct reki__etcd_kv *kv,
                                      int64_t rev),
                            void *arg, _Atomic int *stop)
{
    if (!c || (!prefix && plen) || start_rev < 0 || !fn)
        return REKI_EINVAL;
    json_t *req = json_pack("{s:o}", "create_request",
                            reki__etcd_prefix_req(prefix, plen, "start_revision", start_rev));
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    CURLM *m = body ? curl_multi_init() : NULL;
    struct reki__etcd_watch w = {.c = c, .fn = fn, .arg = arg};
    int rc = m ? REKI_EDEAD : REKI_ENOMEM;
    bool all_timed_out = true;
    for (size_t i = 0; m && !w.created && i < c->nurls; i++) {
        size_t idx = (c->cur + i) % c->nurls;
        rc = reki__etcd_watch_one(&w, m, idx, body, stop);
        if (w.created)
            c->cur = idx;
        all_timed_out &= rc == REKI_ETIMEDOUT;
        if (rc == REKI_OK || rc == REKI__ETCD_FN || rc == REKI_ENOMEM)
            break; /* any other failure before "created": try the next endpoint */
    }
    if (m)
        curl_multi_cleanup(m);
    free(body);
    free(w.b.p);
    if (rc == REKI__ETCD_FN)
        return w.fn_rc;
    if (rc == REKI__ETCD_NEXT || (rc == REKI_ETIMEDOUT && !all_timed_out))
        rc = REKI_EDEAD;
    return rc;
}
