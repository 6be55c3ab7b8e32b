/*
 * The registry under contention, with many more threads than the machine
 * has cores: one start per key, one live actor per key through churn,
 * foreach during changes, and a registry of a million keys.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

static reki_rt_t *rt;
static reki_registry_t *reg;
static struct probe p;

static void setup(void)
{
    cr_assert_eq(t_fixture_up(&p, &rt, &reg), REKI_OK);
}

static void teardown(void)
{
    t_fixture_down(&rt, &reg);
}

TestSuite(contention, .init = setup, .fini = teardown, .timeout = 900.0);

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Per-key state: a start context (so overlapping starts of one key show)
 * and an exclusive flag held by the key's actor from init to terminate. */
struct keyslot {
    struct start_ctx s;
    atomic_int exclusive;
    char key[16];
    size_t len;
};

static struct keyslot *make_keys(int n, int terminate_sleep_ms)
{
    struct keyslot *k = calloc((size_t)n, sizeof *k);
    cr_assert_not_null(k);
    for (int i = 0; i < n; i++) {
        start_ctx_init(&k[i].s, rt, &p);
        k[i].s.actor.exclusive = &k[i].exclusive;
        k[i].s.actor.terminate_sleep_ms = terminate_sleep_ms;
        k[i].len = t_key(k[i].key, sizeof k[i].key, i);
    }
    return k;
}

/* -------------------------------------------- 16 threads on 64 keys -- */

enum { KEYS = 64, THREADS = 16 };

struct worker {
    int id;
    struct keyslot *keys;
    atomic_int *go;
    long passes, errors;
    reki_pid_t seen[KEYS];
};

static void *all_keys_thread(void *arg)
{
    struct worker *w = arg;
    t_wait_flag(w->go);
    for (long pass = 0; pass < w->passes; pass++)
        for (int j = 0; j < KEYS; j++) {
            int k = (j * (w->id % 2 ? 7 : 1) + w->id * 5) % KEYS; /* orders differ */
            struct keyslot *ks = &w->keys[k];
            reki_pid_t pid;
            int rc = reki_lookup_or_start(reg, ks->key, ks->len, t_start, &ks->s, -1, &pid);
            if ((rc != REKI_OK && rc != REKI_STARTED) || (w->seen[k] && w->seen[k] != pid))
                w->errors++;
            w->seen[k] = pid;
        }
    return NULL;
}

Test(contention, sixteen_threads_sixty_four_keys_one_start_each)
{
    struct keyslot *keys = make_keys(KEYS, 0);
    atomic_int go = 0;
    struct worker w[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.id = i, .keys = keys, .go = &go, .passes = t_scaled(50, 2)};
        cr_assert_eq(pthread_create(&t[i], NULL, all_keys_thread, &w[i]), 0);
    }
    atomic_store(&go, 1);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    long starts = 0;
    for (int k = 0; k < KEYS; k++) {
        cr_assert_eq(t_ldl(&keys[k].s.starts), 1, "key %d started %ld times", k,
                     t_ldl(&keys[k].s.starts));
        starts += atomic_load(&keys[k].s.starts);
        for (int i = 0; i < THREADS; i++)
            cr_assert_eq(w[i].seen[k], w[0].seen[k],
                         "threads 0 and %d saw different actors "
                         "for key %d",
                         i, k);
    }
    cr_assert_eq(starts, KEYS);
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(w[i].errors, 0);
    cr_assert_eq(t_ldl(&p.violations), 0);
    cr_assert_eq(reki_count(reg), KEYS);
    reki_registry_free(reg); /* its actors point into keys */
    reg = NULL;
    free(keys);
}

/* ------------------------------------------------------------- churn -- */

struct churner {
    int id;
    struct keyslot *keys;
    int nkeys;
    long ops, errors, started;
    atomic_int *go;
};

static void *churn_thread(void *arg)
{
    struct churner *c = arg;
    uint64_t seed = 0x9e3779b97f4a7c15ull * (uint64_t)(c->id + 1);
    t_wait_flag(c->go);
    for (long i = 0; i < c->ops; i++) {
        uint64_t r = xorshift(&seed);
        struct keyslot *ks = &c->keys[r % (uint64_t)c->nkeys];
        reki_pid_t pid;
        int rc = reki_lookup_or_start(reg, ks->key, ks->len, t_start, &ks->s, -1, &pid);
        if (rc != REKI_OK && rc != REKI_STARTED) {
            c->errors++;
            continue;
        }
        c->started += rc == REKI_STARTED;
        switch ((r >> 32) % 16) {
        case 0: rc = reki_stop(reg, ks->key, ks->len); break;
        case 1: rc = reki_kill(rt, pid); break;
        case 2: rc = t_send(rt, pid, T_STOP, 0); break;
        case 3: rc = t_send(rt, pid, T_CRASH, 0); break;
        default: rc = t_send(rt, pid, T_INCR, 1); break;
        }
        /* Another thread may have ended the actor first. */
        if (rc != REKI_OK && rc != REKI_EDEAD && rc != REKI_ENOTFOUND)
            c->errors++;
    }
    return NULL;
}

Test(contention, churn_never_two_live_actors_per_key)
{
    enum { NKEYS = 16, CHURNERS = 16 };
    struct keyslot *keys = make_keys(NKEYS, 1);
    atomic_int go = 0;
    struct churner c[CHURNERS];
    pthread_t t[CHURNERS];
    for (int i = 0; i < CHURNERS; i++) {
        c[i] = (struct churner){
            .id = i, .keys = keys, .nkeys = NKEYS, .ops = t_scaled(3000, 100), .go = &go};
        cr_assert_eq(pthread_create(&t[i], NULL, churn_thread, &c[i]), 0);
    }
    atomic_store(&go, 1);
    long errors = 0, started = 0;
    for (int i = 0; i < CHURNERS; i++) {
        pthread_join(t[i], NULL);
        errors += c[i].errors;
        started += c[i].started;
    }
    cr_assert_eq(errors, 0);
    cr_assert_eq(t_ldl(&p.violations), 0,
                 "an actor started while its key's previous actor had not terminated");
    long overlaps = 0, starts = 0;
    for (int k = 0; k < NKEYS; k++) {
        overlaps += atomic_load(&keys[k].s.overlaps);
        starts += atomic_load(&keys[k].s.starts);
    }
    cr_assert_eq(overlaps, 0, "two starts of one key ran at once");
    cr_assert_eq(starts, started, "a start ran whose caller did not get REKI_STARTED");
    /* Quiescent now: registered actors are exactly the live ones. */
    bool settled;
    T_WAIT_UNTIL(settled,
                 atomic_load(&p.inits) - atomic_load(&p.terminates) == (long)reki_count(reg));
    cr_assert(settled, "inits %ld - terminates %ld != count %zu", t_ldl(&p.inits),
              t_ldl(&p.terminates), reki_count(reg));
    size_t live = 0;
    for (int k = 0; k < NKEYS; k++) {
        reki_pid_t pid;
        live += reki_lookup(reg, keys[k].key, keys[k].len, &pid) == REKI_OK;
    }
    cr_assert_eq(live, reki_count(reg));
    reki_registry_free(reg);
    reg = NULL;
    free(keys);
}

/* ---------------------------------------------- foreach during churn -- */

enum { STABLE = 64, CHURNED = 64 };

struct walk {
    int visits[STABLE + CHURNED];
    int foreign;
};

static int count_visit(const void *key, size_t keylen, reki_pid_t pid, void *arg)
{
    (void)pid;
    struct walk *w = arg;
    char text[16] = {0};
    if (keylen >= sizeof text || keylen < 5 || memcmp(key, "key-", 4) != 0) {
        w->foreign++;
        return 0;
    }
    memcpy(text, key, keylen);
    long i = strtol(text + 4, NULL, 10);
    if (i < 0 || i >= STABLE + CHURNED)
        w->foreign++;
    else
        w->visits[i]++;
    return 0;
}

struct toggler {
    int id;
    struct keyslot *keys;
    atomic_int *stop;
    long errors;
};

static void *toggle_thread(void *arg)
{
    struct toggler *tg = arg;
    uint64_t seed = 12345u + (uint64_t)tg->id;
    while (!atomic_load(tg->stop)) {
        struct keyslot *ks = &tg->keys[STABLE + xorshift(&seed) % CHURNED];
        reki_pid_t pid;
        int rc = reki_lookup_or_start(reg, ks->key, ks->len, t_start, &ks->s, -1, &pid);
        if (rc != REKI_OK && rc != REKI_STARTED)
            tg->errors++;
        rc = reki_stop(reg, ks->key, ks->len);
        if (rc != REKI_OK && rc != REKI_ENOTFOUND)
            tg->errors++;
    }
    return NULL;
}

Test(contention, foreach_during_changes_visits_each_entry_at_most_once)
{
    struct keyslot *keys = make_keys(STABLE + CHURNED, 0);
    for (int i = 0; i < STABLE; i++) {
        reki_pid_t pid;
        cr_assert_eq(
            reki_lookup_or_start(reg, keys[i].key, keys[i].len, t_start, &keys[i].s, -1, &pid),
            REKI_STARTED);
    }
    enum { TOGGLERS = 6 };
    atomic_int stop = 0;
    struct toggler tg[TOGGLERS];
    pthread_t t[TOGGLERS];
    for (int i = 0; i < TOGGLERS; i++) {
        tg[i] = (struct toggler){.id = i, .keys = keys, .stop = &stop};
        cr_assert_eq(pthread_create(&t[i], NULL, toggle_thread, &tg[i]), 0);
    }
    long walks = t_scaled(300, 20);
    int bad_stable = 0, bad_churned = 0, foreign = 0;
    for (long n = 0; n < walks; n++) {
        struct walk w = {{0}, 0};
        if (reki_foreach(reg, count_visit, &w) != REKI_OK)
            bad_stable++;
        for (int i = 0; i < STABLE; i++)
            bad_stable += w.visits[i] != 1;
        for (int i = STABLE; i < STABLE + CHURNED; i++)
            bad_churned += w.visits[i] > 1;
        foreign += w.foreign;
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < TOGGLERS; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(tg[i].errors, 0);
    }
    cr_assert_eq(bad_stable, 0, "an entry live throughout a walk was missed or repeated");
    cr_assert_eq(bad_churned, 0, "a changing entry was visited twice in one walk");
    cr_assert_eq(foreign, 0, "foreach passed a key never registered");
    cr_assert_eq(t_ldl(&p.violations), 0);
    reki_registry_free(reg);
    reg = NULL;
    free(keys);
}

/* --------------------------------- lookups while other keys churn -- */

/* Keys that come and go leave tombstones in the index, and keys never seen
 * again are reaped, so the writer rebuilds the index into a second table
 * while readers probe the first without a lock, then switches them over: a
 * lookup of a key registered throughout must never miss it or return
 * another pid. */
struct reader {
    struct keyslot *keys;
    const reki_pid_t *pids;
    atomic_int *stop;
    long lookups, misses, wrong;
    int id;
};

static void *stable_reader(void *arg)
{
    struct reader *r = arg;
    uint64_t seed = 777u + (uint64_t)r->id;
    while (!atomic_load_explicit(r->stop, memory_order_relaxed)) {
        int i = (int)(xorshift(&seed) % STABLE);
        reki_pid_t pid;
        int rc = reki_lookup(reg, r->keys[i].key, r->keys[i].len, &pid);
        r->misses += rc != REKI_OK;
        r->wrong += rc == REKI_OK && pid != r->pids[i];
        r->lookups++;
    }
    return NULL;
}

/* Join the readers; their counts summed. */
static struct reader join_readers(pthread_t *threads, struct reader *rd, int n)
{
    struct reader sum = {0};
    for (int i = 0; i < n; i++) {
        pthread_join(threads[i], NULL);
        sum.lookups += rd[i].lookups;
        sum.misses += rd[i].misses;
        sum.wrong += rd[i].wrong;
    }
    return sum;
}

static void expect_no_misses(const struct reader *sum)
{
    cr_assert_gt(sum->lookups, 0);
    cr_assert_eq(sum->misses, 0, "%ld of %ld lookups missed a key registered throughout",
                 sum->misses, sum->lookups);
    cr_assert_eq(sum->wrong, 0, "%ld of %ld lookups returned another pid", sum->wrong,
                 sum->lookups);
}

Test(contention, lookups_never_miss_a_stable_key_while_others_churn)
{
    struct keyslot *keys = make_keys(STABLE + CHURNED, 0);
    reki_pid_t pids[STABLE];
    for (int i = 0; i < STABLE; i++)
        cr_assert_eq(
            reki_lookup_or_start(reg, keys[i].key, keys[i].len, t_start, &keys[i].s, -1, &pids[i]),
            REKI_STARTED);
    enum { TOGGLERS = 3, READERS = 3 };
    atomic_int stop_toggling = 0, stop_reading = 0;
    struct toggler tg[TOGGLERS];
    struct reader rd[READERS];
    pthread_t toggler_threads[TOGGLERS], reader_threads[READERS];
    for (int i = 0; i < READERS; i++) {
        rd[i] = (struct reader){.keys = keys, .pids = pids, .stop = &stop_reading, .id = i};
        cr_assert_eq(pthread_create(&reader_threads[i], NULL, stable_reader, &rd[i]), 0);
    }
    for (int i = 0; i < TOGGLERS; i++) {
        tg[i] = (struct toggler){.id = i, .keys = keys, .stop = &stop_toggling};
        cr_assert_eq(pthread_create(&toggler_threads[i], NULL, toggle_thread, &tg[i]), 0);
    }
    /* Enough removals for the index to be compacted many times over: it
     * holds 128 keys at most, and compacts every capacity/4 removals. */
    long want = t_scaled(50000, 2000), churned = 0;
    uint64_t deadline = t_now_ms() + (uint64_t)t_wait_ms();
    while (churned < want && t_now_ms() < deadline) {
        t_sleep_ms(5);
        churned = 0;
        for (int i = STABLE; i < STABLE + CHURNED; i++)
            churned += atomic_load(&keys[i].s.starts);
    }
    atomic_store(&stop_toggling, 1);
    for (int i = 0; i < TOGGLERS; i++) {
        pthread_join(toggler_threads[i], NULL);
        cr_assert_eq(tg[i].errors, 0);
    }
    atomic_store(&stop_reading, 1);
    struct reader sum = join_readers(reader_threads, rd, READERS);
    cr_assert_geq(churned, want, "only %ld starts of churned keys before the deadline", churned);
    expect_no_misses(&sum);
    cr_assert_eq(t_ldl(&p.violations), 0);
    reki_registry_free(reg);
    reg = NULL;
    free(keys);
}

/* Writers of keys never seen before: each start inserts an entry, each
 * stop leaves it FREE, and the reaper unlinks FREE entries past the budget,
 * so the index keeps being rebuilt. */
struct fresh_writer {
    int id;
    struct start_ctx *s;
    atomic_int *stop;
    long cycles, errors;
};

static void *fresh_thread(void *arg)
{
    struct fresh_writer *f = arg;
    while (!atomic_load_explicit(f->stop, memory_order_relaxed)) {
        char key[32];
        int n = snprintf(key, sizeof(key), "fresh:%d:%ld", f->id, f->cycles++);
        reki_pid_t pid;
        if (reki_lookup_or_start(reg, key, (size_t)n, t_start, f->s, -1, &pid) != REKI_STARTED ||
            reki_stop(reg, key, (size_t)n) != REKI_OK)
            f->errors++;
    }
    return NULL;
}

Test(contention, lookups_never_miss_a_stable_key_while_the_index_is_rebuilt)
{
    struct keyslot *keys = make_keys(STABLE, 0);
    reki_pid_t pids[STABLE];
    for (int i = 0; i < STABLE; i++)
        cr_assert_eq(
            reki_lookup_or_start(reg, keys[i].key, keys[i].len, t_start, &keys[i].s, -1, &pids[i]),
            REKI_STARTED);
    reki_registry_stats_t before, after;
    cr_assert_eq(reki_registry_stats(reg, &before), REKI_OK);
    enum { WRITERS = 3, READERS = 3 };
    atomic_int stop_writing = 0, stop_reading = 0;
    struct start_ctx s;
    start_ctx_init(&s, rt, &p);
    struct fresh_writer fw[WRITERS];
    struct reader rd[READERS];
    pthread_t writer_threads[WRITERS], reader_threads[READERS];
    for (int i = 0; i < READERS; i++) {
        rd[i] = (struct reader){.keys = keys, .pids = pids, .stop = &stop_reading, .id = i};
        cr_assert_eq(pthread_create(&reader_threads[i], NULL, stable_reader, &rd[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++) {
        fw[i] = (struct fresh_writer){.id = i, .s = &s, .stop = &stop_writing};
        cr_assert_eq(pthread_create(&writer_threads[i], NULL, fresh_thread, &fw[i]), 0);
    }
    /* The index rebuilds each time tombstones pass 1/4 of its map (at least
     * 1,024 slots here): wait for many rebuilds, and for the reaper to have
     * unlinked entries (a slow run, under valgrind, can have its first
     * rebuilds from growth alone). */
    long want = t_scaled(40, 4);
    uint64_t deadline = t_now_ms() + (uint64_t)t_wait_ms();
    do {
        t_sleep_ms(5);
        cr_assert_eq(reki_registry_stats(reg, &after), REKI_OK);
    } while (((long)(after.rebuilds - before.rebuilds) < want || after.reaped == before.reaped) &&
             t_now_ms() < deadline);
    atomic_store(&stop_writing, 1);
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(writer_threads[i], NULL);
        cr_assert_eq(fw[i].errors, 0);
    }
    atomic_store(&stop_reading, 1);
    struct reader sum = join_readers(reader_threads, rd, READERS);
    cr_assert_geq((long)(after.rebuilds - before.rebuilds), want,
                  "only %llu rebuilds before the deadline",
                  (unsigned long long)(after.rebuilds - before.rebuilds));
    cr_assert_gt(after.reaped, before.reaped);
    expect_no_misses(&sum);
    cr_assert_eq(t_ldl(&p.violations), 0);
    reki_registry_free(reg);
    reg = NULL;
    free(keys);
}

/* -------------------------------------------------- a million keys -- */

static int count_all(const void *key, size_t keylen, reki_pid_t pid, void *arg)
{
    (void)key;
    (void)keylen;
    (void)pid;
    (*(long *)arg)++;
    return 0;
}

Test(contention, a_million_keys)
{
    long n = t_scaled(1000000, 10000);
    reki_pid_t *pids = calloc((size_t)n, sizeof *pids);
    cr_assert_not_null(pids);
    struct start_ctx s;
    start_ctx_init(&s, rt, &p);
    char key[32];
    for (long i = 0; i < n; i++) {
        int rc =
            reki_lookup_or_start(reg, key, t_key(key, sizeof key, i), t_start, &s, -1, &pids[i]);
        cr_assert_eq(rc, REKI_STARTED, "key %ld: %s", i, reki_strerror(rc));
    }
    cr_assert_eq(reki_count(reg), (size_t)n);
    for (long i = 0; i < n; i++) {
        reki_pid_t got;
        cr_assert_eq(reki_lookup(reg, key, t_key(key, sizeof key, i), &got), REKI_OK, "key %ld", i);
        cr_assert_eq(got, pids[i]);
    }
    long visited = 0;
    cr_assert_eq(reki_foreach(reg, count_all, &visited), REKI_OK);
    cr_assert_eq(visited, n);
    for (long i = 0; i < n; i += 2)
        cr_assert_eq(reki_stop(reg, key, t_key(key, sizeof key, i)), REKI_OK);
    cr_assert_eq(reki_count(reg), (size_t)(n / 2));
    reki_registry_free(reg);
    reg = NULL;
    cr_assert_eq(t_ldl(&p.terminates), n);
    cr_assert_eq(t_ldl(&p.reasons[REKI_EXIT_SHUTDOWN]), n);
    free(pids);
}

/* --------------------------------------- registry_free with contention -- */

Test(contention, registry_free_stops_every_actor_with_shutdown)
{
    struct keyslot *keys = make_keys(KEYS, 0);
    atomic_int go = 0;
    struct worker w[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.id = i, .keys = keys, .go = &go, .passes = 1};
        cr_assert_eq(pthread_create(&t[i], NULL, all_keys_thread, &w[i]), 0);
    }
    atomic_store(&go, 1);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (int k = 0; k < KEYS; k++)
        cr_assert_eq(reki_monitor(rt, w[0].seen[k], t_down, &p), REKI_OK);
    reki_registry_free(reg);
    reg = NULL;
    cr_assert_eq(t_ldl(&p.terminates), KEYS);
    cr_assert_eq(t_ldl(&p.reasons[REKI_EXIT_SHUTDOWN]), KEYS);
    bool ok;
    T_WAIT_UNTIL(ok, atomic_load(&p.downs) == KEYS);
    cr_assert(ok);
    cr_assert_eq(t_ldl(&p.down_reasons[REKI_EXIT_SHUTDOWN]), KEYS);
    for (int k = 0; k < KEYS; k++)
        cr_assert(!reki_alive(rt, w[0].seen[k]));
    free(keys);
}

/* ---------------------------------------------- concurrent reki_stop -- */

struct stopper {
    const char *key;
    atomic_int *go;
    int rc;
};

static void *stop_thread(void *arg)
{
    struct stopper *st = arg;
    t_wait_flag(st->go);
    st->rc = reki_stop(reg, st->key, strlen(st->key));
    return NULL;
}

/* Many threads stop one key at once: exactly one gets REKI_OK. */
Test(contention, concurrent_stops_of_one_key_succeed_exactly_once)
{
    enum { STOPPERS = 8 };
    struct start_ctx s;
    start_ctx_init(&s, rt, &p);
    long rounds = t_scaled(100, 10);
    for (long r = 0; r < rounds; r++) {
        reki_pid_t pid;
        cr_assert_eq(reki_lookup_or_start(reg, "contested", 9, t_start, &s, -1, &pid),
                     REKI_STARTED);
        atomic_int go = 0;
        struct stopper st[STOPPERS];
        pthread_t t[STOPPERS];
        for (int i = 0; i < STOPPERS; i++) {
            st[i] = (struct stopper){.key = "contested", .go = &go};
            cr_assert_eq(pthread_create(&t[i], NULL, stop_thread, &st[i]), 0);
        }
        atomic_store(&go, 1);
        int ok = 0;
        for (int i = 0; i < STOPPERS; i++) {
            pthread_join(t[i], NULL);
            cr_assert(st[i].rc == REKI_OK || st[i].rc == REKI_ENOTFOUND, "stop returned %d",
                      st[i].rc);
            ok += st[i].rc == REKI_OK;
        }
        cr_assert_eq(ok, 1, "round %ld: %d stops succeeded", r, ok);
        cr_assert(!reki_alive(rt, pid));
    }
    reki_registry_free(reg);
    reg = NULL;
    cr_assert_eq(t_ldl(&p.terminates), rounds);
    cr_assert_eq(t_ldl(&p.reasons[REKI_EXIT_SHUTDOWN]), rounds);
}
