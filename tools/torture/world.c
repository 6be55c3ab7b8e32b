/*
 * The tool's model of one runtime + registry ("world"), the key set, the
 * stale-pid check and violation reporting.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "torture.h"

atomic_ullong t_violations;
bool t_oom_mode;
int t_verbose;

static _Thread_local const char *thread_name = "lib"; /* threads the library made */
_Atomic(const char *) t_phase = "run";

#define TRACE_LEN 16
struct trace_ent {
    unsigned long long opno;
    const char *op;
    int key;
    int rc;
};
static _Thread_local struct trace_ent trace[TRACE_LEN];
static _Thread_local unsigned trace_pos;

void t_trace(unsigned long long opno, const char *op, int key, int rc)
{
    trace[trace_pos % TRACE_LEN] = (struct trace_ent){opno, op, key, rc};
    trace_pos++;
}

static void trace_dump(void)
{
    unsigned n = trace_pos < TRACE_LEN ? trace_pos : TRACE_LEN;
    for (unsigned i = trace_pos - n; i != trace_pos; i++) {
        const struct trace_ent *e = &trace[i % TRACE_LEN];
        fprintf(stderr, "    [%s] op #%llu %s key %d -> %d\n", thread_name, e->opno, e->op, e->key,
                e->rc);
    }
}

void t_set_thread_name(const char *name)
{
    thread_name = name;
}

const char *t_thread_name(void)
{
    return thread_name;
}

/* Violations are grouped by their format string: one bug tends to repeat,
 * and a flood of one kind must not hide the first of another. */
#define KINDS_MAX 128
#define PRINT_PER_KIND 3
static struct {
    _Atomic(const char *) fmt;
    atomic_ullong count;
} kinds[KINDS_MAX];

static unsigned long long count_kind(const char *fmt)
{
    for (unsigned i = 0; i < KINDS_MAX; i++) {
        const char *cur = atomic_load(&kinds[i].fmt);
        if (cur == NULL) {
            const char *expected = NULL;
            if (!atomic_compare_exchange_strong(&kinds[i].fmt, &expected, fmt))
                cur = expected;
            else
                cur = fmt;
        }
        if (cur == fmt)
            return atomic_fetch_add(&kinds[i].count, 1) + 1;
    }
    return 1;
}

void violation(const char *fmt, ...)
{
    unsigned long long n = atomic_fetch_add(&t_violations, 1) + 1;
    unsigned long long of_kind = count_kind(fmt);
    if (of_kind > PRINT_PER_KIND)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fprintf(stderr, "VIOLATION #%llu [%s, %s]: %s\n", n, thread_name, atomic_load(&t_phase), buf);
    if (of_kind == 1 && trace_pos > 0) {
        fprintf(stderr, "  last operations of this thread (the current one is not listed):\n");
        trace_dump();
    }
}

void violation_summary(void)
{
    for (unsigned i = 0; i < KINDS_MAX; i++) {
        const char *fmt = atomic_load(&kinds[i].fmt);
        if (fmt == NULL)
            break;
        fprintf(stderr, "violations: %llu x \"%s\"\n", atomic_load(&kinds[i].count), fmt);
    }
}

uint64_t t_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void t_sleep_us(unsigned us)
{
    struct timespec ts = {.tv_sec = us / 1000000u, .tv_nsec = (long)(us % 1000000u) * 1000};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------ keys -- */

size_t key_len(unsigned i)
{
    switch (i % 8) {
    case 0: return i < 256 ? 1 : 3;
    case 1: return REKI_KEY_MAX;
    case 2: return 100;
    default: return 2 + (i * 7) % 15; /* 2..16 */
    }
}

void key_bytes(unsigned i, unsigned char *buf)
{
    size_t len = key_len(i);
    buf[0] = (unsigned char)i;
    if (len == 1)
        return;
    buf[1] = (unsigned char)(i >> 8);
    for (size_t j = 2; j < len; j++)
        buf[j] = (unsigned char)('a' + (j + i) % 26);
}

int key_index(const void *key, size_t len, unsigned nkeys)
{
    const unsigned char *k = key;
    if (key == NULL || len == 0 || len > REKI_KEY_MAX)
        return -1;
    unsigned i = len == 1 ? k[0] : (unsigned)k[0] | (unsigned)k[1] << 8;
    if (i >= nkeys || key_len(i) != len)
        return -1;
    unsigned char want[REKI_KEY_MAX];
    key_bytes(i, want);
    return memcmp(want, key, len) == 0 ? (int)i : -1;
}

/* ----------------------------------------------------------------- world -- */

struct world *world_new(reki_rt_t *rt, unsigned nkeys, unsigned nthreads, bool track_exits)
{
    struct world *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->rt = rt;
    w->nkeys = nkeys;
    w->nthreads = nthreads;
    w->ks = calloc(nkeys, sizeof(*w->ks));
    w->kbytes = calloc(nkeys, sizeof(*w->kbytes));
    w->klen = calloc(nkeys, sizeof(*w->klen));
    if (w->ks == NULL || w->kbytes == NULL || w->klen == NULL)
        goto fail;
    for (unsigned i = 0; i < nkeys; i++) {
        w->klen[i] = key_len(i);
        if ((w->kbytes[i] = malloc(w->klen[i])) == NULL)
            goto fail;
        key_bytes(i, w->kbytes[i]);
    }
    if (track_exits && (w->exited = pidset_new(21)) == NULL)
        goto fail;
    int rc = reki_registry_new(rt, NULL, &w->reg);
    if (rc != REKI_OK) {
        if (!t_oom(rc))
            fprintf(stderr, "reki_registry_new: %s\n", reki_strerror(rc));
        goto fail;
    }
    return w;
fail:
    world_free(w);
    return NULL;
}

/* The registry is freed (or its runtime is) by the caller beforehand. */
void world_free(struct world *w)
{
    if (w == NULL)
        return;
    pidset_free(w->exited);
    for (unsigned i = 0; w->kbytes != NULL && i < w->nkeys; i++)
        free(w->kbytes[i]);
    free(w->kbytes);
    free(w->klen);
    free(w->ks);
    free(w);
}

uint64_t exited_stamp(struct world *w, reki_pid_t pid)
{
    return w->exited != NULL ? pidset_stamp(w->exited, pid) : 0;
}

void note_exit(struct world *w, reki_pid_t pid)
{
    if (w->exited != NULL)
        pidset_add(w->exited, pid);
}

bool check_not_stale(struct world *w, reki_pid_t pid, uint64_t since, const char *what)
{
    uint64_t stamp = exited_stamp(w, pid);
    if (stamp != 0 && stamp < since) {
        violation("%s returned pid %#llx whose exit was observed before the call began "
                  "(stamp %llu < %llu)",
                  what, (unsigned long long)pid, (unsigned long long)stamp,
                  (unsigned long long)since);
        return false;
    }
    return true;
}
