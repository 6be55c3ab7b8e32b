/*
 * The RESP2 request parser of reki-resp: multibulk requests
 * ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n") and inline ones ("GET k\r\n"), as
 * redis-server accepts them.  It is incremental: bytes may arrive in any
 * pieces, and a request is parsed once however it is split.  It never
 * allocates more than the argument table, and it rejects what Redis rejects
 * (with the same messages) before buffering it: a multibulk count over
 * 1,048,576, a bulk length over the configured maximum, a bad length line.
 *
 * Offsets are relative to the start of the request, so the caller may move
 * its buffer (compact it) between calls as long as the request's bytes stay
 * together and in order.
 */
#ifndef RESP_PARSE_H
#define RESP_PARSE_H

#include <stddef.h>
#include <stdint.h>

enum {
    RESP_PARSE_OK = 0,     /* one request: argc/argv are set, *used bytes consumed */
    RESP_PARSE_AGAIN = 1,  /* incomplete: call again with more bytes */
    RESP_PARSE_ERROR = -1, /* protocol error: reply parser.err, then close */
    RESP_PARSE_NOMEM = -2  /* the argument table could not grow */
};

#define RESP_MAX_ARGS (1024 * 1024) /* as redis-server */
#define RESP_MAX_INLINE (64 * 1024) /* as redis-server's PROTO_INLINE_MAX_SIZE */

typedef struct resp_arg {
    size_t off; /* from the start of the request */
    size_t len;
} resp_arg_t;

typedef struct resp_parser {
    /* configuration */
    size_t max_bulk; /* largest bulk string accepted; 0 = 512 MiB (Redis's) */
    /* result of RESP_PARSE_OK: argv[0..argc) */
    size_t argc;
    resp_arg_t *argv;
    const char *err; /* RESP_PARSE_ERROR: the message, without "-ERR " */
    /* private: progress through the current request */
    size_t cap;     /* slots in argv */
    size_t pos;     /* bytes of the request already parsed */
    long long want; /* multibulk: arguments announced; 0 = not yet known */
    long long bulk; /* length of the bulk being read; -1 = reading its header */
    size_t need;    /* no progress is possible before this many bytes */
} resp_parser_t;

/* resp_parser_init: a parser with no request in progress. */
void resp_parser_init(resp_parser_t *p, size_t max_bulk);
/* resp_parser_free: release the argument table. */
void resp_parser_free(resp_parser_t *p);

/*
 * resp_parse: parse buf[0..len), the bytes of the current request onward.
 * RESP_PARSE_OK: argv describes one request and *used is its length; the
 *   next call starts a new request at buf + *used.  An empty inline line is
 *   skipped: OK with argc 0.
 * RESP_PARSE_AGAIN: nothing complete yet; keep the bytes and call again with
 *   them and more.  resp_parse_need() tells how many bytes it waits for.
 * RESP_PARSE_ERROR / RESP_PARSE_NOMEM: the connection cannot go on.
 */
int resp_parse(resp_parser_t *p, const char *buf, size_t len, size_t *used);

/* resp_parse_need: the fewest bytes the current request needs (>= 1). */
size_t resp_parse_need(const resp_parser_t *p);

#endif
