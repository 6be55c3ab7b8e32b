/*
 * RESP2 request parser (see parse.h).  The state between calls is the
 * position reached in the request (pos), the number of arguments announced
 * (want) and the length of the bulk being read (bulk); nothing points into
 * the caller's buffer between calls.  Each byte of a request is examined
 * once, except the bytes of an incomplete header line, which are searched
 * again when more arrive (a header is at most a few dozen bytes: a longer
 * one is an error).
 */
#include "parse.h"

#include <stdlib.h>
#include <string.h>

#define MAX_HEADER 32     /* "$" or "*", 20 digits and a sign fit well within */
#define HDR_BADNUM (-100) /* header(): the number is malformed */

void resp_parser_init(resp_parser_t *p, size_t max_bulk)
{
    memset(p, 0, sizeof(*p));
    p->max_bulk = max_bulk ? max_bulk : (size_t)512 << 20;
    p->bulk = -1;
}

void resp_parser_free(resp_parser_t *p)
{
    free(p->argv);
    p->argv = NULL;
    p->cap = 0;
}

size_t resp_parse_need(const resp_parser_t *p)
{
    return p->need > p->pos ? p->need : p->pos + 1;
}

static void reset(resp_parser_t *p)
{
    p->pos = 0;
    p->want = 0;
    p->bulk = -1;
    p->need = 0;
}

static int push_arg(resp_parser_t *p, size_t off, size_t len)
{
    if (p->argc == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        resp_arg_t *a = realloc(p->argv, cap * sizeof(*a));
        if (!a)
            return RESP_PARSE_NOMEM;
        p->argv = a;
        p->cap = cap;
    }
    p->argv[p->argc].off = off;
    p->argv[p->argc].len = len;
    p->argc++;
    return RESP_PARSE_OK;
}

static int fail(resp_parser_t *p, const char *msg)
{
    p->err = msg;
    reset(p);
    return RESP_PARSE_ERROR;
}

/* A decimal in s[0..n): digits with an optional '-', no more than 18 digits. */
static int parse_ll(const char *s, size_t n, long long *out)
{
    size_t i = 0;
    int neg = 0;
    if (n > 0 && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == n || n - i > 18)
        return -1;
    long long v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = neg ? -v : v;
    return 0;
}

/*
 * The header line at p->pos ("*N\r\n" or "$N\r\n"): its number in *out and
 * the position after it in *next.  AGAIN if the line is not complete.
 */
static int header(resp_parser_t *p, const char *buf, size_t len, long long *out, size_t *next,
                  const char *too_big)
{
    size_t avail = len - p->pos;
    size_t scan = avail < MAX_HEADER ? avail : MAX_HEADER;
    const char *cr = memchr(buf + p->pos, '\r', scan);
    if (!cr) {
        if (avail >= MAX_HEADER)
            return fail(p, too_big);
        p->need = p->pos + scan + 1;
        return RESP_PARSE_AGAIN;
    }
    size_t at = (size_t)(cr - buf);
    if (at + 1 >= len) {
        p->need = at + 2;
        return RESP_PARSE_AGAIN;
    }
    if (buf[at + 1] != '\n')
        return fail(p, "Protocol error: expected CRLF");
    if (parse_ll(buf + p->pos + 1, at - p->pos - 1, out) != 0)
        return HDR_BADNUM; /* the caller names the field */
    *next = at + 2;
    return RESP_PARSE_OK;
}

static int parse_inline(resp_parser_t *p, const char *buf, size_t len, size_t *used)
{
    size_t scan = len < RESP_MAX_INLINE ? len : RESP_MAX_INLINE;
    const char *nl = memchr(buf, '\n', scan);
    if (!nl) {
        if (len >= RESP_MAX_INLINE)
            return fail(p, "Protocol error: too big inline request");
        p->need = len + 1;
        return RESP_PARSE_AGAIN;
    }
    size_t end = (size_t)(nl - buf);
    size_t stop = end > 0 && buf[end - 1] == '\r' ? end - 1 : end;
    p->argc = 0;
    for (size_t i = 0; i < stop;) {
        while (i < stop && (buf[i] == ' ' || buf[i] == '\t'))
            i++;
        size_t s = i;
        while (i < stop && buf[i] != ' ' && buf[i] != '\t')
            i++;
        if (i > s && push_arg(p, s, i - s) != RESP_PARSE_OK) {
            reset(p);
            return RESP_PARSE_NOMEM;
        }
    }
    *used = end + 1;
    reset(p);
    return RESP_PARSE_OK;
}

static int parse_multibulk(resp_parser_t *p, const char *buf, size_t len, size_t *used)
{
    long long n;
    size_t next;
    int rc;
    if (p->want == 0) {
        rc = header(p, buf, len, &n, &next, "Protocol error: too big mbulk count string");
        if (rc == HDR_BADNUM || (rc == RESP_PARSE_OK && n > RESP_MAX_ARGS))
            return fail(p, "Protocol error: invalid multibulk length");
        if (rc != RESP_PARSE_OK)
            return rc;
        p->pos = next;
        p->argc = 0;
        if (n <= 0) { /* "*0" and "*-1" are empty requests, as in Redis */
            *used = next;
            reset(p);
            return RESP_PARSE_OK;
        }
        p->want = n;
    }
    while ((long long)p->argc < p->want) {
        if (p->bulk < 0) {
            if (p->pos >= len) {
                p->need = p->pos + 1;
                return RESP_PARSE_AGAIN;
            }
            if (buf[p->pos] != '$')
                return fail(p, "Protocol error: expected '$'");
            rc = header(p, buf, len, &n, &next, "Protocol error: too big bulk count string");
            if (rc == HDR_BADNUM ||
                (rc == RESP_PARSE_OK && (n < 0 || (unsigned long long)n > p->max_bulk)))
                return fail(p, "Protocol error: invalid bulk length");
            if (rc != RESP_PARSE_OK)
                return rc;
            p->pos = next;
            p->bulk = n;
        }
        size_t end = p->pos + (size_t)p->bulk;
        if (len < end + 2) {
            p->need = end + 2;
            return RESP_PARSE_AGAIN;
        }
        if (buf[end] != '\r' || buf[end + 1] != '\n')
            return fail(p, "Protocol error: expected CRLF after bulk");
        if (push_arg(p, p->pos, (size_t)p->bulk) != RESP_PARSE_OK) {
            reset(p);
            return RESP_PARSE_NOMEM;
        }
        p->pos = end + 2;
        p->bulk = -1;
    }
    *used = p->pos;
    reset(p);
    return RESP_PARSE_OK;
}

int resp_parse(resp_parser_t *p, const char *buf, size_t len, size_t *used)
{
    p->err = NULL;
    if (len == 0 || len < p->need) {
        if (p->need == 0)
            p->need = 1;
        return RESP_PARSE_AGAIN;
    }
    if (p->want == 0 && p->pos == 0 && buf[0] != '*')
        return parse_inline(p, buf, len, used);
    return parse_multibulk(p, buf, len, used);
}
