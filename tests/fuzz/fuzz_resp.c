/*
 * libFuzzer target for reki-resp's request parser (examples/resp/parse.c),
 * which reads bytes straight from untrusted clients.
 *
 * The input is a byte stream as a client would send it.  The first byte
 * chooses how it is cut into reads (1 to 256 bytes each).  Checks:
 *   - parsing in pieces gives exactly the requests (and the same error, at
 *     the same point) as parsing the whole stream at once;
 *   - every argument lies within the bytes the request consumed;
 *   - a request re-encoded as a multibulk parses back to the same arguments.
 * Any difference aborts (a crash for libFuzzer); ASan+UBSan catch the rest.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "parse.h"

#define MAX_BULK (1u << 20)

struct req {
    size_t argc;
    size_t used;
    uint64_t digest; /* of the argument bytes and lengths */
};

static uint64_t digest(const char *base, const resp_parser_t *p)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < p->argc; i++) {
        h = (h ^ p->argv[i].len) * 1099511628211ull;
        for (size_t j = 0; j < p->argv[i].len; j++)
            h = (h ^ (unsigned char)base[p->argv[i].off + j]) * 1099511628211ull;
    }
    return h;
}

/* Parse data[0..n) delivered `step` bytes at a time; at most cap requests. */
static size_t run(const uint8_t *data, size_t n, size_t step, struct req *out, size_t cap,
                  int *final)
{
    resp_parser_t p;
    resp_parser_init(&p, MAX_BULK);
    size_t start = 0, avail = 0, count = 0;
    *final = RESP_PARSE_AGAIN;
    while (count < cap) {
        size_t used = 0;
        int rc = resp_parse(&p, (const char *)data + start, avail, &used);
        if (rc == RESP_PARSE_OK) {
            if (used == 0 || used > avail)
                abort();
            for (size_t i = 0; i < p.argc; i++)
                if (p.argv[i].off > used || p.argv[i].len > used - p.argv[i].off)
                    abort();
            out[count].argc = p.argc;
            out[count].used = used;
            out[count].digest = digest((const char *)data + start, &p);
            count++;
            start += used;
            avail -= used;
            continue;
        }
        if (rc != RESP_PARSE_AGAIN) {
            *final = rc;
            break;
        }
        if (start + avail == n)
            break; /* needs more than there is */
        size_t more = n - start - avail < step ? n - start - avail : step;
        avail += more;
    }
    resp_parser_free(&p);
    return count;
}

static void round_trip(const uint8_t *data, size_t n)
{
    resp_parser_t p;
    resp_parser_init(&p, MAX_BULK);
    size_t used;
    if (resp_parse(&p, (const char *)data, n, &used) == RESP_PARSE_OK && p.argc > 0) {
        rbuf_t b = {0};
        int rc = resp_array(&b, (long long)p.argc);
        for (size_t i = 0; i < p.argc && rc == 0; i++)
            rc = resp_bulk(&b, (const char *)data + p.argv[i].off, p.argv[i].len);
        if (rc == 0) {
            uint64_t want = digest((const char *)data, &p);
            size_t argc = p.argc;
            resp_parser_t q;
            resp_parser_init(&q, MAX_BULK);
            size_t u2;
            if (resp_parse(&q, b.p, b.len, &u2) != RESP_PARSE_OK || u2 != b.len || q.argc != argc ||
                digest(b.p, &q) != want)
                abort();
            resp_parser_free(&q);
        }
        rbuf_free(&b);
    }
    resp_parser_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] + 1;
    data++;
    size--;
    enum { CAP = 512 };
    static struct req whole[CAP], pieces[CAP];
    int fw, fp;
    size_t nw = run(data, size, size ? size : 1, whole, CAP, &fw);
    size_t np = run(data, size, step, pieces, CAP, &fp);
    if (nw != np || fw != fp)
        abort();
    for (size_t i = 0; i < nw; i++)
        if (whole[i].argc != pieces[i].argc || whole[i].used != pieces[i].used ||
            whole[i].digest != pieces[i].digest)
            abort();
    round_trip(data, size);
    return 0;
}
