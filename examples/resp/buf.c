/* Growable buffers and RESP2 encoders (see buf.h). */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rbuf_reserve(rbuf_t *b, size_t more)
{
    if (b->cap - b->len >= more)
        return 0;
    if (b->off > 0 && b->cap - (b->len - b->off) >= more && b->off >= b->cap / 2) {
        rbuf_compact(b);
        return 0;
    }
    if (more > SIZE_MAX / 2 - b->len)
        return -1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < more)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int rbuf_put(rbuf_t *b, const void *s, size_t n)
{
    if (rbuf_reserve(b, n) != 0)
        return -1;
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

void rbuf_consume(rbuf_t *b, size_t n)
{
    b->off += n;
    if (b->off == b->len)
        b->off = b->len = 0;
}

void rbuf_compact(rbuf_t *b)
{
    if (b->off == 0)
        return;
    memmove(b->p, b->p + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
}

void rbuf_free(rbuf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

static int put_line(rbuf_t *b, char type, const char *s, size_t n)
{
    if (rbuf_reserve(b, n + 3) != 0)
        return -1;
    char *o = b->p + b->len;
    o[0] = type;
    memcpy(o + 1, s, n);
    o[n + 1] = '\r';
    o[n + 2] = '\n';
    b->len += n + 3;
    return 0;
}

int resp_simple(rbuf_t *b, const char *s)
{
    return put_line(b, '+', s, strlen(s));
}

int resp_error(rbuf_t *b, const char *s)
{
    return put_line(b, '-', s, strlen(s));
}

int resp_int(rbuf_t *b, long long v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%lld", v);
    return put_line(b, ':', tmp, (size_t)n);
}

int resp_array(rbuf_t *b, long long n)
{
    char tmp[24];
    int k = snprintf(tmp, sizeof(tmp), "%lld", n);
    return put_line(b, '*', tmp, (size_t)k);
}

int resp_nil(rbuf_t *b)
{
    return rbuf_put(b, "$-1\r\n", 5);
}

static size_t digits(size_t n)
{
    size_t d = 1;
    while (n >= 10) {
        n /= 10;
        d++;
    }
    return d;
}

size_t resp_bulk_size(size_t n)
{
    return 1 + digits(n) + 2 + n + 2;
}

size_t resp_bulk_into(char *out, const void *s, size_t n)
{
    size_t d = digits(n), i = 1 + d;
    out[0] = '$';
    for (size_t v = n; i > 1; v /= 10)
        out[--i] = (char)('0' + v % 10);
    i = 1 + d;
    out[i++] = '\r';
    out[i++] = '\n';
    if (n)
        memcpy(out + i, s, n);
    i += n;
    out[i++] = '\r';
    out[i++] = '\n';
    return i;
}

int resp_bulk(rbuf_t *b, const void *s, size_t n)
{
    size_t need = resp_bulk_size(n);
    if (rbuf_reserve(b, need) != 0)
        return -1;
    b->len += resp_bulk_into(b->p + b->len, s, n);
    return 0;
}
