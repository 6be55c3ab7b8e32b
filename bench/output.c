/*
 * JSON and CSV files: one record per configuration, each carrying the build
 * and machine it was measured on, so records from different runs can be
 * pooled without losing where they came from.  --latency writes JSON records
 * of its own (percentiles in place of rates) with the same provenance.
 */
#include <errno.h>
#include <string.h>

#include "report.h"

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void json_stat(FILE *f, const char *name, const bench_stat_t *s)
{
    fprintf(f, "\"%s\":{\"median\":%.1f,\"min\":%.1f,\"max\":%.1f}", name, s->median, s->min,
            s->max);
}

/* What every record ends with: the build and machine it was measured on,
 * then the record's closing brace. */
static void json_provenance(FILE *f, const bench_machine_t *m)
{
    fprintf(f, ",\"git_sha\":");
    json_str(f, m->git);
    fprintf(f, ",\"compiler\":");
    json_str(f, m->compiler);
    fprintf(f, ",\"flags\":");
    json_str(f, m->flags);
    fprintf(f, ",\"reki_version\":");
    json_str(f, m->reki_version);
    fprintf(f, ",\"machine\":{\"cpu\":");
    json_str(f, m->cpu);
    fprintf(f, ",\"cores\":%u,\"kernel\":", m->cores);
    json_str(f, m->kernel);
    fprintf(f, ",\"date\":");
    json_str(f, m->date);
    fprintf(f, "}}");
}

static void json_record(FILE *f, const bench_machine_t *m, const bench_results_t *rs,
                        const bench_result_t *r)
{
    fprintf(f, "{\"bench\":");
    json_str(f, r->bench);
    fprintf(f, ",\"implementation\":");
    json_str(f, r->impl);
    fprintf(f, ",\"threads\":%u,\"keys\":%zu,\"seconds\":%g,\"rounds\":%u,", r->threads, r->keys,
            r->seconds, r->rounds);
    json_stat(f, "ops_per_s", &r->ops);
    if (r->extra_name) {
        fputc(',', f);
        json_stat(f, r->extra_name, &r->extra);
    }
    const bench_result_t *reki = bench_results_find(rs, r->bench, "reki", r->threads);
    if (reki && reki != r && r->ops.median > 0)
        fprintf(f, ",\"reki_ratio\":%.4f", reki->ops.median / r->ops.median);
    fprintf(f, ",\"errors\":%llu,\"budget_hit\":%s", (unsigned long long)r->errors,
            r->budget_hit ? "true" : "false");
    json_provenance(f, m);
}

static int finish(FILE *f)
{
    int err = ferror(f) ? EIO : 0;
    if (fclose(f) != 0 && err == 0)
        err = errno;
    return err;
}

int bench_json_write(const char *path, const bench_machine_t *m, const bench_results_t *rs)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return errno;
    fprintf(f, "[\n");
    for (size_t i = 0; i < rs->n; i++) {
        json_record(f, m, rs, &rs->v[i]);
        fprintf(f, i + 1 < rs->n ? ",\n" : "\n");
    }
    fprintf(f, "]\n");
    return finish(f);
}

static void json_lat(FILE *f, const bench_machine_t *m, const bench_lat_result_t *r,
                     const char *bench, const bench_lat_t *l)
{
    fprintf(f, "{\"bench\":\"%s\",\"implementation\":", bench);
    json_str(f, r->impl);
    fprintf(f,
            ",\"threads\":%u,\"keys\":%zu,\"stable\":%zu,\"seconds\":%g,\"elapsed\":%.3f,"
            "\"ops\":%llu,\"started\":%llu,\"p50_ns\":%llu,\"p99_ns\":%llu,\"p999_ns\":%llu,"
            "\"max_ns\":%llu,\"errors\":%llu",
            r->threads, r->keys, r->stable, r->seconds, r->elapsed, (unsigned long long)r->ops,
            (unsigned long long)r->started, (unsigned long long)l->p50, (unsigned long long)l->p99,
            (unsigned long long)l->p999, (unsigned long long)l->max, (unsigned long long)r->errors);
    json_provenance(f, m);
}

int bench_lat_json_write(const char *path, const bench_machine_t *m, const bench_lat_result_t *v,
                         size_t n)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return errno;
    fprintf(f, "[\n");
    for (size_t i = 0; i < n; i++) {
        json_lat(f, m, &v[i], "latency_claim", &v[i].claim);
        fprintf(f, ",\n");
        json_lat(f, m, &v[i], "latency_stop", &v[i].stop);
        fprintf(f, i + 1 < n ? ",\n" : "\n");
    }
    fprintf(f, "]\n");
    return finish(f);
}

static void csv_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

int bench_csv_write(const char *path, const bench_machine_t *m, const bench_results_t *rs)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return errno;
    fprintf(f, "bench,implementation,threads,keys,seconds,rounds,ops_per_s_median,"
               "ops_per_s_min,ops_per_s_max,reki_ratio,extra,extra_median,extra_min,"
               "extra_max,errors,budget_hit,git_sha,compiler,flags,cpu,cores,kernel,date\n");
    for (size_t i = 0; i < rs->n; i++) {
        const bench_result_t *r = &rs->v[i];
        const bench_result_t *reki = bench_results_find(rs, r->bench, "reki", r->threads);
        fprintf(f, "%s,%s,%u,%zu,%g,%u,%.1f,%.1f,%.1f,", r->bench, r->impl, r->threads, r->keys,
                r->seconds, r->rounds, r->ops.median, r->ops.min, r->ops.max);
        if (reki && reki != r && r->ops.median > 0)
            fprintf(f, "%.4f", reki->ops.median / r->ops.median);
        fprintf(f, ",%s,", r->extra_name ? r->extra_name : "");
        if (r->extra_name)
            fprintf(f, "%.1f,%.1f,%.1f", r->extra.median, r->extra.min, r->extra.max);
        else
            fprintf(f, ",,");
        fprintf(f, ",%llu,%d,", (unsigned long long)r->errors, r->budget_hit);
        csv_str(f, m->git);
        fputc(',', f);
        csv_str(f, m->compiler);
        fputc(',', f);
        csv_str(f, m->flags);
        fputc(',', f);
        csv_str(f, m->cpu);
        fprintf(f, ",%u,", m->cores);
        csv_str(f, m->kernel);
        fputc(',', f);
        csv_str(f, m->date);
        fputc('\n', f);
    }
    return finish(f);
}
