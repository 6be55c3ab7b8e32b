/*
 * What a figure was measured on: CPU model, online cores, kernel, compiler
 * and flags of this build, git revision of the source tree at build time.
 */
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench_build.h"
#include "gitrev.h"
#include "reki/reki.h"
#include "report.h"

static void cpu_model(char *buf, size_t size)
{
    snprintf(buf, size, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f == NULL)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0)
            continue;
        const char *v = strchr(line, ':');
        if (v == NULL)
            continue;
        v++;
        while (*v == ' ' || *v == '\t')
            v++;
        snprintf(buf, size, "%s", v);
        buf[strcspn(buf, "\n")] = '\0';
        break;
    }
    fclose(f);
}

void bench_machine_get(bench_machine_t *m)
{
    memset(m, 0, sizeof *m);
    cpu_model(m->cpu, sizeof m->cpu);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    m->cores = n > 0 ? (unsigned)n : 0;
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(m->kernel, sizeof m->kernel, "%.60s %.60s %.30s", u.sysname, u.release, u.machine);
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm))
        strftime(m->date, sizeof m->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    m->compiler = REKI_BENCH_COMPILER;
    m->flags = REKI_BENCH_FLAGS;
    m->git = REKI_BENCH_GIT;
    m->reki_version = reki_version_string();
}

void bench_machine_print(FILE *f, const bench_machine_t *m)
{
    fprintf(f, "machine:  %s, %u cores online, %s\n", m->cpu, m->cores, m->kernel);
    fprintf(f, "build:    %s, flags \"%s\"\n", m->compiler, m->flags);
    fprintf(f, "source:   git %s, reki %s, run at %s\n", m->git, m->reki_version, m->date);
}
