/*
 * Issue 4's targets (and issue 2's message rate), checked against this run's
 * figures and printed as information: a shared 2-core machine moves absolute
 * figures by tens of percent, so nothing here fails the run.
 */
#include <stdio.h>
#include <string.h>

#include "goals.h"

static double med(const bench_results_t *rs, const char *bench, const char *impl, unsigned t)
{
    const bench_result_t *r = bench_results_find(rs, bench, impl, t);
    return r ? r->ops.median : -1;
}

static void line(FILE *f, const char *goal, double value, double need, const char *unit)
{
    if (value < 0) {
        fprintf(f, "  %-58s not measured\n", goal);
        return;
    }
    fprintf(f, "  %-58s %10.2f%s  %s\n", goal, value, unit, value >= need ? "met" : "SHORT");
}

static double ratio(double a, double b)
{
    return a < 0 || b <= 0 ? -1 : a / b;
}

static void lookup_goals(FILE *f, const bench_results_t *rs)
{
    line(f, "lookup_hit 1 thread: reki / ck_ht >= 0.8",
         ratio(med(rs, "lookup_hit", "reki", 1), med(rs, "lookup_hit", "ck_ht", 1)), 0.8, "x");
    line(f, "lookup_hit reki: 2 threads / 1 thread >= 1.8",
         ratio(med(rs, "lookup_hit", "reki", 2), med(rs, "lookup_hit", "reki", 1)), 1.8, "x");
    line(f, "lookup_hit reki: 8 threads / 2 threads >= 0.9",
         ratio(med(rs, "lookup_hit", "reki", 8), med(rs, "lookup_hit", "reki", 2)), 0.9, "x");
    line(f, "lookup_hit 2 threads: reki / mutex >= 4",
         ratio(med(rs, "lookup_hit", "reki", 2), med(rs, "lookup_hit", "mutex", 2)), 4, "x");
    line(f, "lookup_hit 8 threads: reki / mutex >= 4",
         ratio(med(rs, "lookup_hit", "reki", 8), med(rs, "lookup_hit", "mutex", 8)), 4, "x");
}

static void start_goals(FILE *f, const bench_results_t *rs)
{
    double n2 = med(rs, "los_new", "reki", 2);
    line(f, "los_new 2 threads: reki >= 1.0M starts/s", n2 < 0 ? -1 : n2 / 1e6, 1.0, "M");
    line(f, "los_new 2 threads: reki / serial >= 10", ratio(n2, med(rs, "los_new", "serial", 2)),
         10, "x");
    for (size_t i = 0; i < rs->n; i++) {
        const bench_result_t *r = &rs->v[i];
        if (strcmp(r->bench, "los_hot") != 0 || strcmp(r->impl, "reki") != 0)
            continue;
        char goal[80];
        snprintf(goal, sizeof goal, "los_hot %u threads: reki / reki lookup_hit >= 0.9",
                 r->threads);
        line(f, goal, ratio(r->ops.median, med(rs, "lookup_hit", "reki", r->threads)), 0.9, "x");
    }
}

static void send_goal(FILE *f, const bench_results_t *rs)
{
    double best = -1;
    unsigned at = 0;
    for (size_t i = 0; i < rs->n; i++) {
        const bench_result_t *r = &rs->v[i];
        if (bench_results_find(rs, "send_1to1", "reki", r->threads) == r && r->ops.median > best) {
            best = r->ops.median;
            at = r->threads;
        }
    }
    char goal[80];
    snprintf(goal, sizeof goal, "send_1to1 reki (best, %u threads) >= 10M msgs/s", at);
    line(f, goal, best < 0 ? -1 : best / 1e6, 10, "M");
}

void bench_goals_print(FILE *f, const bench_results_t *rs)
{
    fprintf(f, "\n== goals of issues 4 and 2, against this run (information, not a test)\n");
    lookup_goals(f, rs);
    start_goals(f, rs);
    send_goal(f, rs);
}
