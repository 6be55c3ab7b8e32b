/*
 * Runner for the Criterion stand-in (criterion/criterion.h beside this
 * file): runs every registered test in this process, in name order, with
 * suite and test init/fini, a per-test alarm for .timeout, and Criterion's
 * summary line at the end.  Exit status: 0 only if every test passed.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "criterion/criterion.h"

static struct shim_test *tests;
static struct shim_suite *suites;
static jmp_buf on_fail;
static pthread_t runner;
static const struct shim_test *current;

void shim_register_test(struct shim_test *t)
{
    t->next = tests;
    tests = t;
}

void shim_register_suite(struct shim_suite *s)
{
    s->next = suites;
    suites = s;
}

void shim_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
    fprintf(stderr, "[FAIL] %s::%s: %s:%d: assertion failed: %s", current->suite,
            current->name, file, line, expr);
    if (fmt[0]) {
        va_list ap;
        va_start(ap, fmt);
        fputs(": ", stderr);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    }
    fputc('\n', stderr);
    if (!pthread_equal(pthread_self(), runner)) {
        fprintf(stderr, "[FAIL] assertion on a helper thread: aborting the run\n");
        abort();
    }
    longjmp(on_fail, 1);
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "[FAIL] test timed out\n";
    ssize_t rc = write(2, msg, sizeof(msg) - 1);
    (void)rc;
    _exit(1);
}

static const struct shim_opts *suite_opts(const char *name)
{
    for (struct shim_suite *s = suites; s; s = s->next)
        if (strcmp(s->name, name) == 0)
            return &s->opts;
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    const struct shim_test *x = *(const struct shim_test *const *)a;
    const struct shim_test *y = *(const struct shim_test *const *)b;
    int c = strcmp(x->suite, y->suite);
    return c ? c : strcmp(x->name, y->name);
}

/* Runs t; true if it passed.  volatile: values read after longjmp. */
static bool run_one(const struct shim_test *t, const struct shim_opts *so, double scale)
{
    double timeout = t->opts.timeout > 0 ? t->opts.timeout : (so ? so->timeout : 0);
    current = t;
    alarm(timeout > 0 ? (unsigned)(timeout * scale) + 1 : 0);
    volatile bool ok = true;
    if (setjmp(on_fail) == 0) {
        if (so && so->init)
            so->init();
        if (t->opts.init)
            t->opts.init();
        t->fn();
    } else {
        ok = false;
    }
    if (setjmp(on_fail) == 0) {
        if (t->opts.fini)
            t->opts.fini();
        if (so && so->fini)
            so->fini();
    } else {
        ok = false;
    }
    alarm(0);
    return ok;
}

int main(void)
{
    runner = pthread_self();
    signal(SIGALRM, on_alarm);
    /* TSan runs 5-15x slower than a plain build: stretch the timeouts. */
    const char *s = getenv("REKI_SHIM_TIMEOUT_SCALE");
    double scale = s ? atof(s) : 10.0;
    size_t n = 0;
    for (struct shim_test *t = tests; t; t = t->next)
        n++;
    struct shim_test **all = malloc((n ? n : 1) * sizeof(*all));
    if (!all)
        return 1;
    n = 0;
    for (struct shim_test *t = tests; t; t = t->next)
        all[n++] = t;
    qsort(all, n, sizeof(*all), cmp);
    size_t passed = 0, failed = 0, tested = 0;
    for (size_t i = 0; i < n; i++) {
        const struct shim_opts *so = suite_opts(all[i]->suite);
        if (all[i]->opts.disabled || (so && so->disabled))
            continue;
        if (all[i]->opts.signal || all[i]->opts.exit_code)
            continue; /* needs a process of its own: Criterion runs cover it */
        tested++;
        fprintf(stderr, "[RUN ] %s::%s\n", all[i]->suite, all[i]->name);
        if (run_one(all[i], so, scale))
            passed++;
        else
            failed++;
    }
    free(all);
    printf("[====] Synthesis: Tested: %zu | Passing: %zu | Failing: %zu | Crashing: 0\n", tested,
           passed, failed);
    return failed ? 1 : 0;
}
