/*
 * A growable byte buffer and the RESP2 reply encoders that append to it.
 * Appends fail only for lack of memory (they return -1 and leave the buffer
 * as it was); a buffer is owned by one thread at a time.
 */
#ifndef RESP_BUF_H
#define RESP_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct rbuf {
    char *p;
    size_t len; /* bytes held */
    size_t off; /* bytes at the front already consumed (written out) */
    size_t cap;
} rbuf_t;

int rbuf_reserve(rbuf_t *b, size_t more);
int rbuf_put(rbuf_t *b, const void *s, size_t n);
void rbuf_consume(rbuf_t *b, size_t n);
void rbuf_compact(rbuf_t *b);
void rbuf_free(rbuf_t *b);

int resp_simple(rbuf_t *b, const char *s);         /* +s */
int resp_error(rbuf_t *b, const char *s);          /* -s (s includes "ERR ...") */
int resp_int(rbuf_t *b, long long v);              /* :v */
int resp_bulk(rbuf_t *b, const void *s, size_t n); /* $n s */
int resp_nil(rbuf_t *b);                           /* $-1 */
int resp_array(rbuf_t *b, long long n);            /* *n */

/* The length of resp_bulk's output for n bytes. */
size_t resp_bulk_size(size_t n);
/* Encode a bulk into out, which has resp_bulk_size(n) bytes; returns that size. */
size_t resp_bulk_into(char *out, const void *s, size_t n);

#endif
