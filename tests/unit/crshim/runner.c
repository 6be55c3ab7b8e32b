/*
 * The runner of the Criterion stand-in (see criterion/criterion.h): forks a
 * child per test, up to -jN at a time, kills it at its .timeout (scaled by
 * REKI_TEST_TIMEOUT_FACTOR), and prints Criterion's result and summary
 * lines.  A child that exits non-zero (a failed assertion, or TSan's exit
 * code after a report) is a failure; one killed by a signal is a crash.
 */
#include <errno.h>
#include <fnmatch.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

struct crs_test {
    const char *suite, *name;
    void (*fn)(void);
    const struct crs_opts *opts;
    pid_t child;
    double started;
};

struct crs_suite {
    const char *name;
    const struct crs_opts *opts;
};

static struct crs_test tests[1024];
static int ntests;
static struct crs_suite suites[64];
static int nsuites;

void crs_register_test(const char *suite, const char *name, void (*fn)(void),
                       const struct crs_opts *opts)
{
    if (ntests < (int)(sizeof tests / sizeof tests[0]))
        tests[ntests++] = (struct crs_test){suite, name, fn, opts, 0, 0};
}

void crs_register_suite(const char *suite, const struct crs_opts *opts)
{
    if (nsuites < (int)(sizeof suites / sizeof suites[0]))
        suites[nsuites++] = (struct crs_suite){suite, opts};
}

void crs_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "[----] %s:%d: Assertion Failed\n[----]   %s\n[----]  %s\n", file, line, expr,
            msg);
    fflush(stderr);
    _exit(1);
}

static const struct crs_opts *suite_opts(const char *suite)
{
    for (int i = 0; i < nsuites; i++)
        if (strcmp(suites[i].name, suite) == 0)
            return suites[i].opts;
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double timeout_of(const struct crs_test *t)
{
    const struct crs_opts *s = suite_opts(t->suite);
    double tmo = t->opts->timeout > 0 ? t->opts->timeout : s && s->timeout > 0 ? s->timeout : 0;
    const char *f = getenv("REKI_TEST_TIMEOUT_FACTOR");
    if (tmo > 0 && f != NULL && atof(f) > 0)
        tmo *= atof(f);
    return tmo;
}

static void run_child(const struct crs_test *t)
{
    const struct crs_opts *s = suite_opts(t->suite);
    void (*init)(void) = t->opts->init ? t->opts->init : s ? s->init : NULL;
    void (*fini)(void) = t->opts->fini ? t->opts->fini : s ? s->fini : NULL;
    if (init)
        init();
    t->fn();
    if (fini)
        fini();
    fflush(NULL);
    exit(0); /* through exit(): sanitizers report from their atexit hooks */
}

static void start(struct crs_test *t, int verbose)
{
    if (verbose)
        fprintf(stderr, "[RUN ] %s::%s\n", t->suite, t->name);
    fflush(NULL);
    t->started = now_s();
    t->child = fork();
    if (t->child == 0)
        run_child(t);
    if (t->child < 0) {
        perror("fork");
        exit(2);
    }
}

static int pending_timeouts(struct crs_test **running, int n)
{
    double now = now_s();
    for (int i = 0; i < n; i++) {
        double tmo = timeout_of(running[i]);
        if (tmo > 0 && now - running[i]->started > tmo)
            kill(running[i]->child, SIGKILL);
    }
    return 0;
}

int main(int argc, char **argv)
{
    int jobs = 1, verbose = 1;
    const char *filter = NULL;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "-j", 2) == 0 && argv[i][2])
            jobs = atoi(argv[i] + 2);
        else if (strncmp(argv[i], "--verbose=", 10) == 0)
            verbose = atoi(argv[i] + 10) > 0;
        else if (strncmp(argv[i], "--filter=", 9) == 0)
            filter = argv[i] + 9;
        else if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc)
            filter = argv[++i];
    }
    if (jobs < 1)
        jobs = 1;
    fprintf(stderr, "[----] Criterion stand-in (sanitizer build)\n");
    int passed = 0, failed = 0, crashed = 0, tested = 0, next = 0, nrun = 0;
    struct crs_test *running[64];
    if (jobs > 64)
        jobs = 64;
    for (;;) {
        while (nrun < jobs && next < ntests) {
            struct crs_test *t = &tests[next++];
            char full[256];
            snprintf(full, sizeof full, "%s/%s", t->suite, t->name);
            if (filter && fnmatch(filter, full, 0) != 0)
                continue;
            start(t, verbose);
            running[nrun++] = t;
        }
        if (nrun == 0)
            break;
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid == 0) {
            pending_timeouts(running, nrun);
            usleep(20000);
            continue;
        }
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            perror("waitpid");
            return 2;
        }
        for (int i = 0; i < nrun; i++) {
            struct crs_test *t = running[i];
            if (t->child != pid)
                continue;
            double secs = now_s() - t->started;
            tested++;
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
                passed++;
                fprintf(stderr, "[PASS] %s::%s: (%.2fs)\n", t->suite, t->name, secs);
            } else if (WIFEXITED(status)) {
                failed++;
                fprintf(stderr, "[FAIL] %s::%s: (%.2fs) exit code %d\n", t->suite, t->name, secs,
                        WEXITSTATUS(status));
            } else {
                crashed++;
                fprintf(stderr, "[FAIL] %s::%s: CRASH or TIMEOUT (signal %d, %.2fs)\n", t->suite,
                        t->name, WTERMSIG(status), secs);
            }
            running[i] = running[--nrun];
            break;
        }
    }
    fprintf(stderr, "[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: %d \n",
            tested, passed, failed, crashed);
    return failed + crashed ? 1 : 0;
}
