/*
 * The command table of reki-resp.  The I/O thread answers PING, ECHO, QUIT,
 * INFO, COMMAND, CONFIG, DBSIZE and SELECT itself; data commands become
 * messages by key to key actors (one per key for MGET, DEL and EXISTS over
 * several keys, gathered back into one reply); pub/sub commands become
 * messages by key to channel actors.  Every reply takes its place in the
 * connection's ring (conn.h), so pipelined replies keep request order.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "conn.h"
#include "io.h"

typedef void cmd_fn(struct conn *c, size_t argc, const char **argv, const size_t *lens);

static const char ERR_NOMEM[] = "ERR out of memory";

const char *send_error(int rc)
{
    switch (rc) {
    case REKI_EFULL: return "ERR the key's mailbox is full";
    case REKI_ESHUTDOWN: return "ERR the server is shutting down";
    case REKI_EINVAL: return "ERR key is longer than 4095 bytes";
    default: return ERR_NOMEM;
    }
}

/*
 * Send one message by key for the slot seq.  0, or -1 with *err set (the
 * message was not sent and nothing of it is in flight).
 */
static int send_part(struct conn *c, reki_registry_t *reg, char tag, uint8_t op, uint64_t seq,
                     uint32_t part, const char *key, size_t klen, const char *arg, size_t alen,
                     uint8_t flags, int64_t num, const char **err)
{
    if (klen >= REKI_KEY_MAX) {
        *err = send_error(REKI_EINVAL);
        return -1;
    }
    struct kmsg *m = kmsg_new(op, tag, key, klen, arg, alen);
    if (!m) {
        *err = ERR_NOMEM;
        return -1;
    }
    m->conn = c;
    m->io = c->io;
    m->seq = seq;
    m->part = part;
    m->flags = flags;
    m->num = num;
    int rc;
    if (srv.cluster && tag == 'k') /* cluster mode: the key's actor may be on another node */
        rc = cluster_send(m, err);
    else if ((rc = reki_send_key(reg, m->data, m->klen, m)) != REKI_OK)
        *err = send_error(rc);
    if (rc != REKI_OK) {
        kmsg_free(m);
        return -1;
    }
    c->refs++;
    atomic_fetch_add_explicit(&srv.n_messages, 1, memory_order_relaxed);
    return 0;
}

/* A slot whose answer failed before anything was sent. */
static void slot_fail(struct conn *c, struct slot *s, uint64_t seq, const char *err)
{
    s->err = err;
    s->pending = 0;
    if (seq == c->head)
        conn_flush_ready(c);
}

static void one_key(struct conn *c, reki_registry_t *reg, char tag, uint8_t op, const char *key,
                    size_t klen, const char *arg, size_t alen, uint8_t flags, int64_t num)
{
    uint64_t seq;
    struct slot *s = conn_slot_new(c, &seq);
    if (!s) {
        conn_close(c);
        return;
    }
    s->kind = SLOT_MSG;
    s->pending = 1;
    const char *err;
    if (send_part(c, reg, tag, op, seq, 0, key, klen, arg, alen, flags, num, &err) != 0)
        slot_fail(c, s, seq, err);
}

/* MGET (array), DEL and EXISTS (sum) over argv[1..argc). */
static void many_keys(struct conn *c, uint8_t op, size_t argc, const char **argv,
                      const size_t *lens)
{
    uint64_t seq;
    size_t n = argc - 1;
    struct slot *s = conn_slot_new(c, &seq);
    struct kmsg **parts = s && op == OP_GET ? calloc(n, sizeof(*parts)) : NULL;
    if (!s || (op == OP_GET && !parts)) {
        if (s)
            c->tail--;
        conn_close(c);
        return;
    }
    s->kind = op == OP_GET ? SLOT_ARRAY : SLOT_SUM;
    s->p = parts;
    s->n = (uint32_t)n;
    s->pending = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        const char *err;
        if (send_part(c, srv.keys, 'k', op, seq, (uint32_t)i, argv[i + 1], lens[i + 1], NULL, 0, 0,
                      0, &err) != 0) {
            s->err = err;
            s->pending--;
        }
    }
    if (s->pending == 0 && seq == c->head)
        conn_flush_ready(c);
}

/* Redis's string2ll, for INCRBY's argument. */
static int parse_ll(const char *s, size_t n, long long *out)
{
    char tmp[24];
    if (n == 0 || n > 20)
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    if ((tmp[0] == '0' && n > 1) || (tmp[0] == '-' && (n == 1 || tmp[1] == '0')))
        return -1;
    for (size_t i = tmp[0] == '-'; i < n; i++)
        if (!isdigit((unsigned char)tmp[i]))
            return -1;
    errno = 0;
    long long v = strtoll(tmp, NULL, 10);
    if (errno)
        return -1;
    *out = v;
    return 0;
}

static bool is(const char *a, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(a, word, n) == 0;
}

/* ------------------------------------------------------------ data keys -- */

static void cmd_get(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    (void)argc;
    one_key(c, srv.keys, 'k', OP_GET, argv[1], lens[1], NULL, 0, 0, 0);
}

static void cmd_set(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    uint8_t flags = 0;
    for (size_t i = 3; i < argc; i++) {
        if (is(argv[i], lens[i], "nx") && !(flags & SET_XX))
            flags |= SET_NX;
        else if (is(argv[i], lens[i], "xx") && !(flags & SET_NX))
            flags |= SET_XX;
        else if (is(argv[i], lens[i], "get"))
            flags |= SET_GET;
        else if (is(argv[i], lens[i], "ex") || is(argv[i], lens[i], "px") ||
                 is(argv[i], lens[i], "exat") || is(argv[i], lens[i], "pxat") ||
                 is(argv[i], lens[i], "keepttl")) {
            conn_reply_error(c, "ERR reki-resp keeps no expiry (EX, PX, EXAT, PXAT, KEEPTTL)");
            return;
        } else {
            conn_reply_error(c, "ERR syntax error");
            return;
        }
    }
    one_key(c, srv.keys, 'k', OP_SET, argv[1], lens[1], argv[2], lens[2], flags, 0);
}

static void cmd_del(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    many_keys(c, OP_DEL, argc, argv, lens);
}

static void cmd_exists(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    many_keys(c, OP_EXISTS, argc, argv, lens);
}

static void cmd_mget(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    many_keys(c, OP_GET, argc, argv, lens);
}

static void incr_by(struct conn *c, const char *key, size_t klen, long long by)
{
    one_key(c, srv.keys, 'k', OP_INCRBY, key, klen, NULL, 0, 0, by);
}

static void cmd_incr(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    (void)argc;
    incr_by(c, argv[1], lens[1], 1);
}

static void cmd_decr(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    (void)argc;
    incr_by(c, argv[1], lens[1], -1);
}

static void cmd_incrby(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    (void)argc;
    long long by;
    if (parse_ll(argv[2], lens[2], &by) != 0) {
        conn_reply_error(c, "ERR value is not an integer or out of range");
        return;
    }
    incr_by(c, argv[1], lens[1], by);
}

static void cmd_decrby(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    (void)argc;
    long long by;
    if (parse_ll(argv[2], lens[2], &by) != 0) {
        conn_reply_error(c, "ERR value is not an integer or out of range");
        return;
    }
    if (by == LLONG_MIN) {
        conn_reply_error(c, "ERR decrement would overflow");
        return;
    }
    incr_by(c, argv[1], lens[1], -by);
}

static void cmd_append(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    (void)argc;
    one_key(c, srv.keys, 'k', OP_APPEND, argv[1], lens[1], argv[2], lens[2], 0, 0);
}

static void cmd_strlen(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    (void)argc;
    one_key(c, srv.keys, 'k', OP_STRLEN, argv[1], lens[1], NULL, 0, 0, 0);
}

/* -------------------------------------------------------------- pub/sub -- */

/* "*3 <kind> <name> :<count>" (name NULL: nil), for (UN)SUBSCRIBE. */
static int sub_reply(rbuf_t *b, const char *kind, const char *name, size_t len, size_t count)
{
    if (resp_array(b, 3) || resp_bulk(b, kind, strlen(kind)))
        return -1;
    if (name ? resp_bulk(b, name, len) : resp_nil(b))
        return -1;
    return resp_int(b, (long long)count);
}

/*
 * A prepared reply that waits for the channel's acknowledgement: the slot
 * holds the bytes, pending 1, and one message goes to the channel.
 */
static void sub_change(struct conn *c, uint8_t op, const char *name, size_t len)
{
    rbuf_t b = {0};
    uint64_t seq;
    struct slot *s = NULL;
    if (sub_reply(&b, op == OP_SUB ? "subscribe" : "unsubscribe", name, len, conn_nchans(c)) ||
        !(s = conn_slot_new(c, &seq))) {
        rbuf_free(&b);
        conn_close(c);
        return;
    }
    s->kind = SLOT_BYTES;
    s->p = b.p;
    s->len = b.len;
    s->pending = 1;
    s->unsub = op == OP_UNSUB;
    const char *err;
    if (send_part(c, srv.channels, 'c', op, seq, 0, name, len, NULL, 0, 0, 0, &err) != 0) {
        /* Nothing changed in the channel: undo the change here too. */
        if (op == OP_SUB)
            conn_chan_del(c, name, len);
        else
            conn_chan_add(c, name, len); /* if even this fails, the subscription's
                                          * ref is never released: c outlives the
                                          * channel (conn.c) */
        slot_fail(c, s, seq, err);
        return;
    }
    if (op == OP_SUB)
        c->refs++; /* the subscription, held until its UNSUBSCRIBE is acknowledged */
}

static void reply_now(struct conn *c, rbuf_t *b, int rc)
{
    if (rc != 0) {
        rbuf_free(b);
        conn_close(c);
        return;
    }
    conn_reply(c, b->p, b->len);
    rbuf_free(b);
}

static void cmd_subscribe(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    for (size_t i = 1; i < argc && !c->closed; i++) {
        int r = conn_chan_add(c, argv[i], lens[i]);
        if (r < 0) {
            conn_close(c);
        } else if (r == 0) {
            rbuf_t b = {0};
            reply_now(c, &b, sub_reply(&b, "subscribe", argv[i], lens[i], conn_nchans(c)));
        } else if (lens[i] >= REKI_KEY_MAX) {
            conn_chan_del(c, argv[i], lens[i]);
            conn_reply_error(c, "ERR channel name is longer than 4095 bytes");
        } else {
            sub_change(c, OP_SUB, argv[i], lens[i]);
        }
    }
}

static void unsub_one(struct conn *c, const char *name, size_t len)
{
    if (conn_chan_del(c, name, len) == 1) {
        sub_change(c, OP_UNSUB, name, len);
        return;
    }
    rbuf_t b = {0};
    reply_now(c, &b, sub_reply(&b, "unsubscribe", name, len, conn_nchans(c)));
}

static void cmd_unsubscribe(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    if (argc > 1) {
        for (size_t i = 1; i < argc && !c->closed; i++)
            unsub_one(c, argv[i], lens[i]);
        return;
    }
    if (conn_nchans(c) == 0) {
        rbuf_t b = {0};
        reply_now(c, &b, sub_reply(&b, "unsubscribe", NULL, 0, 0));
        return;
    }
    while (conn_nchans(c) > 0 && !c->closed) {
        struct chname *n = conn_chan_at(c, conn_nchans(c) - 1);
        char *copy = malloc(n->len ? n->len : 1);
        if (!copy) {
            conn_close(c);
            return;
        }
        size_t len = n->len;
        memcpy(copy, n->name, len);
        unsub_one(c, copy, len);
        free(copy);
    }
}

static void cmd_publish(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    (void)argc;
    one_key(c, srv.channels, 'c', OP_PUB, argv[1], lens[1], argv[2], lens[2], 0, 0);
}

/* ------------------------------------------------------- answered here -- */

static void cmd_ping(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    rbuf_t b = {0};
    int rc;
    if (conn_nchans(c) > 0) /* RESP2 subscribed mode: a push-shaped pong */
        rc = resp_array(&b, 2) || resp_bulk(&b, "pong", 4) ||
             resp_bulk(&b, argc > 1 ? argv[1] : "", argc > 1 ? lens[1] : 0);
    else if (argc > 1)
        rc = resp_bulk(&b, argv[1], lens[1]);
    else
        rc = resp_simple(&b, "PONG");
    reply_now(c, &b, rc);
}

static void cmd_echo(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    (void)argc;
    rbuf_t b = {0};
    reply_now(c, &b, resp_bulk(&b, argv[1], lens[1]));
}

static void cmd_quit(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    (void)argc;
    (void)argv;
    (void)lens;
    conn_reply(c, "+OK\r\n", 5);
    c->quit = true;
}

static void cmd_select(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    (void)argc;
    if (lens[1] == 1 && argv[1][0] == '0')
        conn_reply(c, "+OK\r\n", 5);
    else
        conn_reply_error(c, "ERR DB index is out of range");
}

static void cmd_dbsize(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    (void)argc;
    (void)argv;
    (void)lens;
    rbuf_t b = {0};
    long long n = atomic_load_explicit(&srv.n_keys, memory_order_relaxed);
    reply_now(c, &b, resp_int(&b, n < 0 ? 0 : n));
}

static void cmd_command(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    if (argc > 1 && is(argv[1], lens[1], "count"))
        conn_reply(c, ":22\r\n", 5);
    else /* COMMAND, COMMAND DOCS, COMMAND INFO: no documentation to give */
        conn_reply(c, "*0\r\n", 4);
}

static void cmd_config(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    static const char *const params[][2] = {
        {"save", ""},
        {"appendonly", "no"},
        {"maxmemory", "0"},
        {"databases", "1"},
    };
    if (!is(argv[1], lens[1], "get") || argc < 3) {
        conn_reply_error(c, argc < 3 && is(argv[1], lens[1], "get")
                                ? "ERR wrong number of arguments for 'config|get' command"
                                : "ERR reki-resp supports only CONFIG GET");
        return;
    }
    rbuf_t items = {0}, b = {0};
    size_t n = 0;
    int rc = 0;
    for (size_t p = 0; p < sizeof(params) / sizeof(params[0]); p++) {
        for (size_t i = 2; i < argc; i++) {
            if (is(argv[i], lens[i], params[p][0]) || (lens[i] == 1 && argv[i][0] == '*')) {
                rc |= resp_bulk(&items, params[p][0], strlen(params[p][0]));
                rc |= resp_bulk(&items, params[p][1], strlen(params[p][1]));
                n++;
                break;
            }
        }
    }
    rc |= resp_array(&b, (long long)(2 * n));
    rc |= rbuf_put(&b, items.p, items.len);
    rbuf_free(&items);
    reply_now(c, &b, rc);
}

static void cmd_info(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    (void)argc;
    (void)argv;
    (void)lens;
    rbuf_t text = {0}, b = {0};
    info_text(&text);
    int rc = text.p ? resp_bulk(&b, text.p, text.len) : -1;
    rbuf_free(&text);
    reply_now(c, &b, rc);
}

/* ---------------------------------------------------------------- table -- */

struct command {
    const char *name;
    int arity; /* as Redis: n exactly, -n at least n (the name counts) */
    bool in_pubsub;
    cmd_fn *fn;
};

static const struct command table[] = {
    {"get", 2, false, cmd_get},
    {"set", -3, false, cmd_set},
    {"del", -2, false, cmd_del},
    {"exists", -2, false, cmd_exists},
    {"incr", 2, false, cmd_incr},
    {"incrby", 3, false, cmd_incrby},
    {"decr", 2, false, cmd_decr},
    {"decrby", 3, false, cmd_decrby},
    {"append", 3, false, cmd_append},
    {"strlen", 2, false, cmd_strlen},
    {"mget", -2, false, cmd_mget},
    {"subscribe", -2, true, cmd_subscribe},
    {"unsubscribe", -1, true, cmd_unsubscribe},
    {"publish", 3, false, cmd_publish},
    {"ping", -1, true, cmd_ping},
    {"echo", 2, false, cmd_echo},
    {"quit", -1, true, cmd_quit},
    {"info", -1, false, cmd_info},
    {"command", -1, false, cmd_command},
    {"config", -2, false, cmd_config},
    {"dbsize", 1, false, cmd_dbsize},
    {"select", 2, false, cmd_select},
};

static const struct command *lookup(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (is(name, len, table[i].name))
            return &table[i];
    return NULL;
}

/* Client bytes quoted in an error line: printable ASCII only, at most max. */
static void quote(char *out, size_t cap, const char *s, size_t len, size_t max)
{
    size_t o = 0;
    for (size_t i = 0; i < len && i < max && o + 2 < cap; i++)
        out[o++] = isprint((unsigned char)s[i]) && s[i] != '\'' ? s[i] : '?';
    out[o] = 0;
}

static void unknown(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    char line[512], name[130], arg[130];
    quote(name, sizeof(name), argv[0], lens[0], 128);
    int n =
        snprintf(line, sizeof(line), "ERR unknown command '%s', with args beginning with: ", name);
    for (size_t i = 1; i < argc && n > 0 && (size_t)n < sizeof(line) - 140; i++) {
        quote(arg, sizeof(arg), argv[i], lens[i], 128);
        n += snprintf(line + n, sizeof(line) - (size_t)n, "'%s' ", arg);
    }
    conn_reply_error(c, line);
}

void command_dispatch(struct conn *c, size_t argc, const char **argv, const size_t *lens)
{
    const struct command *cmd = lookup(argv[0], lens[0]);
    if (!cmd) {
        unknown(c, argc, argv, lens);
        return;
    }
    char line[200];
    if ((cmd->arity > 0 && argc != (size_t)cmd->arity) ||
        (cmd->arity < 0 && argc < (size_t)-cmd->arity)) {
        snprintf(line, sizeof(line), "ERR wrong number of arguments for '%s' command", cmd->name);
        conn_reply_error(c, line);
        return;
    }
    if (conn_nchans(c) > 0 && !cmd->in_pubsub) {
        snprintf(line, sizeof(line),
                 "ERR Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / "
                 "RESET are allowed in this context",
                 cmd->name);
        conn_reply_error(c, line);
        return;
    }
    cmd->fn(c, argc, argv, lens);
}
