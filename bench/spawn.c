/*
 * reki-bench-spawn: spawn N idle light actors (default 1,000,000) and report
 * spawns per second and bytes of library memory per actor, as the resident
 * set's growth over the spawns divided by N (issue 2).
 *
 * Each round runs in a child process forked from this single-threaded
 * parent, so every round starts from a fresh heap: freed memory kept by
 * malloc in one round cannot hide the next round's growth.  The bench keeps
 * nothing per actor itself (the pids are not stored; reki_rt_free ends the
 * actors), so the growth is the library's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "options.h"
#include "report.h"

typedef struct spawn_opts {
    size_t actors;
    unsigned threads[16], nthreads;
    unsigned rounds, workers;
    const char *json, *csv;
} spawn_opts_t;

typedef struct child_result {
    int rc;
    double seconds;
    double bytes;
} child_result_t;

typedef struct spawn_arg {
    reki_rt_t *rt;
    size_t actors;
    atomic_int rc;
} spawn_arg_t;

static long rss_bytes(void)
{
    long pages = -1, resident = -1;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

static uint64_t spawner(bench_thread_t *th, void *p)
{
    spawn_arg_t *a = p;
    size_t lo = a->actors * th->index / th->nthreads;
    size_t hi = a->actors * (th->index + 1) / th->nthreads;
    uint64_t n = 0;
    for (size_t i = lo; i < hi; i++) {
        reki_pid_t pid;
        int rc = bench_start(a->rt, NULL, 0, NULL, &pid);
        if (rc != 0) {
            atomic_store(&a->rc, rc);
            break;
        }
        n++;
    }
    return n;
}

static void child(const spawn_opts_t *o, unsigned threads, int fd)
{
    child_result_t res = {0};
    reki_rt_opts_t ro = {.workers = o->workers};
    reki_rt_t *rt = NULL;
    res.rc = reki_rt_new(&ro, &rt);
    if (res.rc == 0) {
        spawn_arg_t a = {.rt = rt, .actors = o->actors};
        bench_run_t run = {.arg = &a, .fn = spawner};
        bench_round_t out;
        long before = rss_bytes();
        int err = bench_round_run(&run, threads, 3600, &out);
        long after = rss_bytes();
        res.rc = err ? REKI_EAGAIN : atomic_load(&a.rc);
        res.seconds = out.elapsed;
        res.bytes = (double)(after - before) / (double)o->actors;
    }
    ssize_t w = write(fd, &res, sizeof res);
    reki_rt_free(rt);
    _exit(w == (ssize_t)sizeof res ? 0 : 1);
}

static int round_in_child(const spawn_opts_t *o, unsigned threads, child_result_t *res)
{
    int fds[2];
    if (pipe(fds) != 0)
        return errno;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return errno;
    if (pid == 0) {
        close(fds[0]);
        child(o, threads, fds[1]);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], res, sizeof *res);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (n != (ssize_t)sizeof *res || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return EIO;
    return 0;
}

static int measure(const spawn_opts_t *o, unsigned threads, bench_results_t *rs)
{
    double rate[1000], bytes[1000], secs[1000];
    for (unsigned k = 0; k < o->rounds; k++) {
        child_result_t res;
        int err = round_in_child(o, threads, &res);
        if (err != 0 || res.rc != 0) {
            fprintf(stderr, "reki-bench-spawn: %u threads, round %u: %s\n", threads, k + 1,
                    err ? strerror(err) : reki_strerror(res.rc));
            return 1;
        }
        rate[k] = res.seconds > 0 ? (double)o->actors / res.seconds : 0;
        bytes[k] = res.bytes;
        secs[k] = res.seconds;
        fprintf(stderr, "[%u threads, round %u/%u] %.3fM spawns/s, %.1f bytes/actor\n", threads,
                k + 1, o->rounds, rate[k] / 1e6, bytes[k]);
    }
    bench_result_t r = {.bench = "spawn",
                        .impl = "reki",
                        .threads = threads,
                        .keys = o->actors,
                        .rounds = o->rounds,
                        .extra_name = "bytes_per_actor"};
    bench_stat_of(rate, o->rounds, &r.ops);
    bench_stat_of(bytes, o->rounds, &r.extra);
    bench_stat_t t;
    bench_stat_of(secs, o->rounds, &t);
    r.seconds = t.median;
    return bench_results_add(rs, &r) ? 1 : 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: reki-bench-spawn [--actors N] [--threads 1,2] [--rounds 5] [--workers N]\n"
               "                        [--json FILE] [--csv FILE] [--quick]\n"
               "  spawns N idle light actors per round (default 1000000) from each thread\n"
               "  count; reports spawns/s and resident bytes per actor.  --quick: 100000\n"
               "  actors, 1 and 2 threads, 5 rounds.\n");
}

static int parse(int argc, char **argv, spawn_opts_t *o)
{
    *o = (spawn_opts_t){.actors = 1000000, .rounds = 5};
    bench_parse_counts("1,2", o->threads, 16, &o->nthreads);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        unsigned long x = v ? strtoul(v, &end, 10) : 0;
        bool num = v && *v && end && *end == '\0';
        if (strcmp(a, "--quick") == 0) {
            o->actors = 100000;
            continue;
        }
        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            return 1;
        }
        i++;
        if (strcmp(a, "--actors") == 0 && num && x >= 1 && x <= 100000000)
            o->actors = x;
        else if (strcmp(a, "--rounds") == 0 && num && x >= 1 && x <= 1000)
            o->rounds = (unsigned)x;
        else if (strcmp(a, "--workers") == 0 && num && x <= 1024)
            o->workers = (unsigned)x;
        else if (strcmp(a, "--threads") == 0 && v &&
                 bench_parse_counts(v, o->threads, 16, &o->nthreads) == 0)
            ;
        else if (strcmp(a, "--json") == 0 && v)
            o->json = v;
        else if (strcmp(a, "--csv") == 0 && v)
            o->csv = v;
        else {
            fprintf(stderr, "reki-bench-spawn: bad option or value: %s\n", a);
            usage(stderr);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    spawn_opts_t o;
    int rc = parse(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    bench_results_t rs = {0};
    int status = 0;
    for (unsigned i = 0; i < o.nthreads && status == 0; i++)
        status = measure(&o, o.threads[i], &rs);
    bench_machine_t m;
    bench_machine_get(&m);
    bench_machine_print(stdout, &m);
    printf("method:   %u rounds, each in a fresh process: spawn %zu idle light actors,\n"
           "          resident-set growth / actors; issue 2 asks <= 256 B and >= 1M/s\n",
           o.rounds, o.actors);
    bench_table_print(stdout, &rs, "spawn", "reki_spawn of an idle light actor");
    if (o.json && bench_json_write(o.json, &m, &rs) != 0)
        status = 1;
    if (o.csv && bench_csv_write(o.csv, &m, &rs) != 0)
        status = 1;
    bench_results_free(&rs);
    return status;
}
