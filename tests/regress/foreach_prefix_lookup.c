/*
 * Bug: inside reki_foreach, a lookup of a prefix of the visited key could
 * return the visited key's pid.
 *
 * The index is a ck_ht in byte-string mode, and ck_ht's probe takes a slot
 * whose stored key pointer equals the lookup's key pointer as a match before
 * it compares lengths.  reki_foreach hands fn the entry's own key buffer, so
 * reki_lookup(reg, key, shorter_len, &pid) from fn, for a prefix of the
 * visited key (same pointer, shorter length) that is not registered, returned
 * REKI_OK and the visited key's pid whenever the prefix's probe sequence
 * crossed the visited key's slot, and reki_lookup_or_start of that prefix
 * returned REKI_OK with that pid and never ran start.  How often depends on
 * how full the map is: 1.5 to 3 % of such calls in the small registries used
 * here (30 keys each), so each run sees thousands.
 *
 * Every key registered here ends in '#' and has no other '#', so no proper
 * prefix of a key is ever a registered key: every prefix lookup must miss,
 * and every reki_lookup_or_start of a prefix must start a fresh actor (which
 * is killed again at once, so that it too is unregistered).
 */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "reki/reki.h"

#define NREGS 200 /* small tables: a prefix's probe crosses the visited slot more often */
#define KEYS_PER_REG 30
#define KEY_MIN 16
#define KEY_MAX 40

#include "idle_actor.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* Key i: its decimal index (unique), lowercase filler up to a length in
 * [KEY_MIN, KEY_MAX], then '#'. */
static size_t make_key(unsigned i, char *buf)
{
    size_t len = KEY_MIN + (size_t)(rng() % (KEY_MAX - KEY_MIN + 1));
    int n = snprintf(buf, KEY_MAX + 1, "%u-", i);
    for (size_t j = (size_t)n; j < len - 1; j++)
        buf[j] = (char)('a' + rng() % 26);
    buf[len - 1] = '#';
    return len;
}

struct walk {
    reki_registry_t *reg;
    reki_rt_t *rt;
    size_t visited;
    size_t lookups, lookup_wrong;
    size_t starts, start_wrong;
    bool example_visited;
    int example_rc;
    size_t example_len;
    int start_example_rc;
    bool start_example_visited;
};

static int visit(const void *key, size_t keylen, reki_pid_t pid, void *arg)
{
    struct walk *w = arg;
    const char *k = key;
    if (keylen < KEY_MIN || k[keylen - 1] != '#')
        return 0; /* a prefix actor started by an earlier call: not one of ours */
    w->visited++;
    for (size_t len = 1; len < keylen; len++) {
        reki_pid_t got = 0;
        int rc = reki_lookup(w->reg, key, len, &got);
        w->lookups++;
        if (rc != REKI_ENOTFOUND) {
            w->lookup_wrong++;
            if (w->lookup_wrong == 1) {
                w->example_rc = rc;
                w->example_visited = got == pid;
                w->example_len = len;
            }
        }
        got = 0;
        rc = reki_lookup_or_start(w->reg, key, len, idle_start, NULL, 5000, &got);
        w->starts++;
        if (rc != REKI_STARTED || got == pid) {
            if (w->start_wrong++ == 0) {
                w->start_example_rc = rc;
                w->start_example_visited = got == pid;
            }
            continue; /* never kill what may be the visited key's actor */
        }
        /* Unregister the prefix again (by pid, not by key: a buggy lookup of
         * the key could name the visited actor). */
        reki_kill(w->rt, got);
    }
    return 0;
}

Test(regress, foreach_prefix_lookup_misses, .timeout = 30.0)
{
    reki_rt_t *rt;
    cr_assert_eq(reki_rt_new(NULL, &rt), REKI_OK);
    struct walk w = {.rt = rt};
    char buf[KEY_MAX + 1];
    for (unsigned r = 0; r < NREGS; r++) {
        cr_assert_eq(reki_registry_new(rt, NULL, &w.reg), REKI_OK);
        for (unsigned i = 0; i < KEYS_PER_REG; i++) {
            size_t len = make_key(r * KEYS_PER_REG + i, buf);
            reki_pid_t pid;
            int rc = reki_lookup_or_start(w.reg, buf, len, idle_start, NULL, -1, &pid);
            cr_assert_eq(rc, REKI_STARTED, "registering key %u returned %d", i, rc);
        }
        cr_assert_eq(reki_count(w.reg), KEYS_PER_REG);
        size_t before = w.visited;
        int rc = reki_foreach(w.reg, visit, &w);
        cr_assert_eq(rc, REKI_OK, "reki_foreach returned %d", rc);
        cr_assert_eq(w.visited - before, KEYS_PER_REG, "visited %zu of %d keys", w.visited - before,
                     KEYS_PER_REG);
        reki_registry_free(w.reg);
    }
    reki_rt_free(rt);
    cr_assert(w.lookup_wrong == 0 && w.start_wrong == 0,
              "calls with an unregistered prefix of the visited key: %zu of %zu reki_lookup "
              "did not miss (first: rc %d, %s, prefix length %zu); %zu of %zu "
              "reki_lookup_or_start did not start a fresh actor (first: rc %d, %s)",
              w.lookup_wrong, w.lookups, w.example_rc,
              w.example_visited ? "the visited key's pid" : "another pid", w.example_len,
              w.start_wrong, w.starts, w.start_example_rc,
              w.start_example_visited ? "the visited key's pid" : "another pid");
}
