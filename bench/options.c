/*
 * Command line of reki-bench.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: reki-bench [options]\n"
               "  --seconds S      length of each timed round (default 1)\n"
               "  --rounds N       timed rounds per configuration, >= 1 (default 5)\n"
               "  --warmup S       untimed warm-up round (default min(0.3, seconds))\n"
               "  --threads LIST   thread counts, e.g. 1,2,4,8 (the default)\n"
               "  --workloads LIST which workloads (default all; --list shows them)\n"
               "  --impls LIST     which implementations (default all)\n"
               "  --keys N         registered keys (default 10000)\n"
               "  --budget N       new keys per round for los_new and mixed\n"
               "                   (default 3,000,000 x seconds)\n"
               "  --workers N      reki runtime worker threads (default: one per CPU)\n"
               "  --json FILE      write one JSON record per configuration\n"
               "  --csv FILE       the same as CSV\n"
               "  --quick          the short run README uses: under 30 s in all\n"
               "  --callgrind      run --ops lookup hits of one implementation for\n"
               "                   valgrind --tool=callgrind (tools/bench-instructions.sh)\n"
               "  --ops N          lookups in --callgrind mode (default 1000000)\n"
               "  --latency        claim (lookup_or_start) and stop latency percentiles\n"
               "                   of --keys churning keys next to --stable live ones,\n"
               "                   one --seconds round per implementation and thread count\n"
               "                   (defaults: threads 1,2, impls reki,mutex,rwlock;\n"
               "                   with --quick: 0.2 s, 100000 stable keys)\n"
               "  --stable N       --latency: keys started first and left live\n"
               "                   (default 1000000)\n"
               "  --list           list workloads and implementations\n");
}

int bench_parse_counts(const char *s, unsigned *v, unsigned max, unsigned *n)
{
    *n = 0;
    while (*s) {
        char *end;
        errno = 0;
        unsigned long x = strtoul(s, &end, 10);
        if (end == s || errno || x == 0 || x > 1024 || *n == max)
            return -1;
        v[(*n)++] = (unsigned)x;
        if (*end && *end != ',')
            return -1;
        s = *end == ',' ? end + 1 : end;
    }
    return *n ? 0 : -1;
}

static int parse_threads(const char *s, bench_opts_t *o)
{
    return bench_parse_counts(s, o->threads, 16, &o->nthreads);
}

static int parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static void defaults(bench_opts_t *o)
{
    *o = (bench_opts_t){.seconds = 1.0,
                        .warmup = -1,
                        .rounds = 5,
                        .keys = 10000,
                        .callgrind_ops = 1000000,
                        .stable = 1000000};
    parse_threads("1,2,4,8", o);
}

/* The value-taking options; returns -1 on a bad value, 1 if name is not one. */
static int value_opt(bench_opts_t *o, const char *name, const char *v)
{
    double d;
    if (strcmp(name, "--seconds") == 0)
        return o->seconds_given = true, parse_num(v, 0.001, 3600, &o->seconds);
    if (strcmp(name, "--warmup") == 0)
        return o->warmup_given = true, parse_num(v, 0, 3600, &o->warmup);
    if (strcmp(name, "--threads") == 0)
        return o->threads_given = true, parse_threads(v, o);
    if (strcmp(name, "--stable") == 0)
        return parse_num(v, 0, 1e7, &d) ? -1 : (o->stable_given = true, o->stable = (size_t)d, 0);
    if (strcmp(name, "--workloads") == 0)
        return o->workloads = v, 0;
    if (strcmp(name, "--impls") == 0)
        return o->impls = v, 0;
    if (strcmp(name, "--json") == 0)
        return o->json = v, 0;
    if (strcmp(name, "--csv") == 0)
        return o->csv = v, 0;
    if (strcmp(name, "--rounds") == 0)
        return parse_num(v, 1, 1000, &d) ? -1 : (o->rounds = (unsigned)d, 0);
    if (strcmp(name, "--keys") == 0)
        return parse_num(v, 1, 1e6, &d) ? -1 : (o->keys = (size_t)d, 0);
    if (strcmp(name, "--budget") == 0)
        return parse_num(v, 1024, 1e8, &d) ? -1 : (o->budget = (size_t)d, 0);
    if (strcmp(name, "--workers") == 0)
        return parse_num(v, 0, 1024, &d) ? -1 : (o->workers = (unsigned)d, 0);
    if (strcmp(name, "--ops") == 0)
        return parse_num(v, 1, 1e10, &d) ? -1 : (o->callgrind_ops = (uint64_t)d, 0);
    return 1;
}

/* --quick: 5 rounds of 20 ms at 1, 2 and 8 threads; explicit options given
 * after it still win. */
static void quick(bench_opts_t *o)
{
    o->quick = true;
    o->seconds = 0.02;
    o->warmup = 0.01;
    o->rounds = 5;
    parse_threads("1,2,8", o);
    o->seconds_given = o->warmup_given = o->threads_given = false;
}

/* --latency's defaults where the command line left a value to them: 1 and
 * 2 threads; with --quick a CI smoke run (0.2 s rounds, 100,000 stable). */
static void latency_defaults(bench_opts_t *o)
{
    if (!o->threads_given)
        parse_threads("1,2", o);
    if (!o->quick)
        return;
    if (!o->seconds_given)
        o->seconds = 0.2;
    if (!o->warmup_given)
        o->warmup = 0.05;
    if (!o->stable_given)
        o->stable = 100000;
}

/* The options without a value; whether name is one. */
static bool flag_opt(bench_opts_t *o, const char *name)
{
    if (strcmp(name, "--list") == 0)
        o->list = true;
    else if (strcmp(name, "--quick") == 0)
        quick(o);
    else if (strcmp(name, "--callgrind") == 0)
        o->callgrind = true;
    else if (strcmp(name, "--latency") == 0)
        o->latency = true;
    else
        return false;
    return true;
}

int bench_opts_parse(int argc, char **argv, bench_opts_t *o)
{
    defaults(o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (flag_opt(o, a))
            continue;
        int rc = i + 1 < argc ? value_opt(o, a, argv[i + 1]) : 1;
        if (rc != 0) {
            fprintf(stderr, "reki-bench: bad option or value: %s%s%s\n", a, i + 1 < argc ? " " : "",
                    i + 1 < argc ? argv[i + 1] : "");
            usage(stderr);
            return -1;
        }
        i++;
    }
    if (o->latency && o->callgrind) {
        fprintf(stderr, "reki-bench: --latency and --callgrind are separate modes\n");
        return -1;
    }
    if (o->latency)
        latency_defaults(o);
    if (o->warmup < 0)
        o->warmup = o->seconds < 0.3 ? o->seconds : 0.3;
    if (o->budget == 0)
        o->budget = (size_t)(o->seconds * 3e6) < 65536 ? 65536 : (size_t)(o->seconds * 3e6);
    return 0;
}

bool bench_list_has(const char *list, const char *name)
{
    if (list == NULL)
        return true;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, name, n) == 0)
            return true;
        p += len + (p[len] == ',');
    }
    return false;
}
