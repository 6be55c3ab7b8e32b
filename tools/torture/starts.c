/*
 * Start functions of every kind the contract names (succeed, fail, slow,
 * return a dead pid, crash in init, re-enter) and the check of
 * reki_lookup_or_start's result against what the start did:
 *  - a start runs only when no other start of its key runs (guarantee 1),
 *    after the key's previous actor has terminated, and while reki_lookup of
 *    the key misses;
 *  - the caller whose start ran gets REKI_STARTED with the start's pid, or
 *    the start's own error, or REKI_EDEAD for a dead pid (guarantee 5);
 *  - a caller whose start did not run gets a pid that was not stale when it
 *    began, a shared error (guarantee 2), or REKI_ETIMEDOUT only if it gave
 *    a timeout;
 *  - re-entry for its own key gets REKI_EDEADLK (guarantee 6), and so does
 *    an actor calling it for its own key from its handle while it exits.
 */
#include "torture.h"

static void kill_loose(struct world *w, reki_pid_t pid)
{
    int rc = reki_kill(w->rt, pid);
    if (rc != REKI_OK)
        violation("reki_kill of a fresh loose actor returned %d (%s)", rc, reki_strerror(rc));
    else
        note_exit(w, pid);
}

static int start_ok(struct start_ctx *c, reki_pid_t *out)
{
    int rc = spawn_counted(c->w, c->key, c->dedicated, (c->bits >> 40) & 1, out);
    if (rc != REKI_OK && !t_oom(rc))
        violation("reki_spawn in a start returned %d (%s)", rc, reki_strerror(rc));
    return rc;
}

static void reenter(struct start_ctx *c, const void *key, size_t keylen)
{
    static const int timeouts[4] = {-1, 0, 10, -1};
    struct start_ctx inner = {.w = c->w, .key = c->key, .mode = S_OK, .bits = c->bits};
    reki_pid_t pid = 0;
    int rc = reki_lookup_or_start(c->w->reg, key, keylen, start_fn, &inner,
                                  timeouts[(c->bits >> 41) & 3], &pid);
    if (rc != REKI_EDEADLK)
        violation("lookup_or_start of its own key from its start returned %d (%s), "
                  "not EDEADLK",
                  rc, reki_strerror(rc));
    if (inner.ran)
        violation("a re-entrant lookup_or_start ran its start function");
}

static void nested(struct start_ctx *c)
{
    struct world *w = c->w;
    if (w->nkeys < 2)
        return;
    int other = (int)((c->key + 1 + (c->bits >> 43) % (w->nkeys - 1)) % w->nkeys);
    reki_pid_t pid = 0;
    checked_los(w, other, ((c->bits >> 50) & 1) ? S_FAIL : S_OK, false, (int)((c->bits >> 51) & 3),
                c->bits >> 53, &pid);
}

static int run_mode(struct start_ctx *c, const void *key, size_t keylen, reki_pid_t *out)
{
    struct world *w = c->w;
    reki_pid_t pid = 0;
    int rc;
    switch (c->mode) {
    case S_SLOW: t_sleep_us(50 + (unsigned)((c->bits >> 20) % 2000)); return start_ok(c, out);
    case S_FAIL: return T_EFAIL;
    case S_FAIL_LATE:
        if (spawn_loose(w, false, &pid) == REKI_OK)
            kill_loose(w, pid);
        return T_EFAIL;
    case S_DEAD:
        if ((rc = spawn_loose(w, false, &pid)) != REKI_OK) {
            if (!t_oom(rc))
                violation("reki_spawn of a loose actor returned %d", rc);
            return rc;
        }
        kill_loose(w, pid);
        *out = pid;
        /* Any value >= 0 is success. */
        return (c->bits >> 42) & 1 ? 5 : 0;
    case S_INIT_FAIL: {
        struct spawn_arg sa = {w, c->key, true};
        rc = reki_spawn(w->rt, &beh_broken, &sa, NULL, &pid);
        if (rc != T_EINIT && !t_oom(rc))
            violation("reki_spawn with a failing init returned %d, not init's %d", rc, T_EINIT);
        return rc;
    }
    case S_REENTER: reenter(c, key, keylen); return start_ok(c, out);
    case S_NESTED: nested(c); return start_ok(c, out);
    default: return start_ok(c, out);
    }
}

/* Start functions running on this thread (nested ones count too). */
static _Thread_local int starts_here;

int start_fn(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    struct start_ctx *c = arg;
    starts_here++;
    struct world *w = c->w;
    c->ran = true;
    if (rt != w->rt)
        violation("start called with another runtime");
    int k = key_index(key, keylen, w->nkeys);
    if (k != c->key)
        violation("start for key %d called with key %d (len %zu)", c->key, k, keylen);
    struct keystate *ks = &w->ks[c->key];
    int others = atomic_fetch_add(&ks->starting, 1);
    if (others != 0)
        violation("%d other start(s) of key %d running at once", others, c->key);
    /* acquire pairs with the previous actor's terminate. */
    int live = atomic_load_explicit(&ks->live, memory_order_acquire);
    if (live != 0)
        violation("start of key %d while its previous actor %#llx has not terminated", c->key,
                  (unsigned long long)atomic_load(&ks->cur));
    reki_pid_t seen = 0;
    int lrc = reki_lookup(w->reg, key, keylen, &seen);
    if (lrc != REKI_ENOTFOUND)
        violation("reki_lookup of key %d during its start returned %d (pid %#llx)", c->key, lrc,
                  (unsigned long long)seen);
    int rc = run_mode(c, key, keylen, out);
    c->rc = rc;
    c->pid = rc >= 0 ? *out : 0;
    atomic_fetch_sub(&ks->starting, 1);
    starts_here--;
    return rc;
}

static void check_ran(const struct start_ctx *c, int rc, reki_pid_t pid)
{
    if (c->rc < 0) {
        if (rc != c->rc)
            violation("start of key %d returned %d but lookup_or_start returned %d (%s)", c->key,
                      c->rc, rc, reki_strerror(rc));
    } else if (c->mode == S_DEAD) {
        if (rc != REKI_EDEAD)
            violation("start of key %d returned a dead pid but lookup_or_start returned "
                      "%d (%s)",
                      c->key, rc, reki_strerror(rc));
    } else if (rc != REKI_STARTED) {
        violation("start of key %d (mode %d) succeeded but lookup_or_start returned %d (%s)",
                  c->key, (int)c->mode, rc, reki_strerror(rc));
    } else if (pid != c->pid) {
        violation("lookup_or_start of key %d returned pid %#llx, its start made %#llx", c->key,
                  (unsigned long long)pid, (unsigned long long)c->pid);
    }
}

static void check_waited(const struct start_ctx *c, int rc, reki_pid_t pid, int timeout,
                         uint64_t t0)
{
    switch (rc) {
    case REKI_OK:
        if (pid == 0)
            violation("lookup_or_start of key %d returned OK with pid 0", c->key);
        check_not_stale(c->w, pid, t0, "reki_lookup_or_start");
        break;
    case REKI_STARTED:
        violation("lookup_or_start of key %d returned STARTED but its start never ran", c->key);
        break;
    case REKI_ETIMEDOUT:
        if (timeout < 0)
            violation("lookup_or_start of key %d with no timeout returned ETIMEDOUT", c->key);
        break;
    case T_EFAIL:
    case T_EINIT:
    case REKI_EDEAD: break; /* the outcome of another caller's start, shared */
    case REKI_EDEADLK:
        /* An actor restarting its own key while it exits: waiting would
         * hang, since its terminate runs only after this handle returns. */
        if (t_in_own_handle(c->w, c->key))
            break;
        violation("lookup_or_start of key %d returned EDEADLK on a thread running %d start(s)",
                  c->key, starts_here);
        break;
    default:
        if (!t_oom(rc)) /* this call's own allocation, or a start's, shared */
            violation("lookup_or_start of key %d returned %d (%s)", c->key, rc, reki_strerror(rc));
    }
}

int checked_los(struct world *w, int key, enum start_mode mode, bool dedicated, int timeout,
                uint64_t bits, reki_pid_t *out)
{
    struct start_ctx c = {.w = w, .key = key, .mode = mode, .dedicated = dedicated, .bits = bits};
    *out = 0;
    uint64_t t0 = t_clock_now();
    int rc = reki_lookup_or_start(w->reg, w->kbytes[key], w->klen[key], start_fn, &c, timeout, out);
    if (c.ran)
        check_ran(&c, rc, *out);
    else
        check_waited(&c, rc, *out, timeout, t0);
    return rc;
}
