/*
 * The targets of issues 4 and 2 against one run's figures.
 */
#ifndef REKI_BENCH_GOALS_H
#define REKI_BENCH_GOALS_H

#include <stdio.h>

#include "report.h"

void bench_goals_print(FILE *f, const bench_results_t *rs);

#endif /* REKI_BENCH_GOALS_H */
