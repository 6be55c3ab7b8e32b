/*
 * A program outside the reki tree, built against an installed reki: proves
 * that the installed headers plus reki.pc or the CMake package are enough to
 * compile, link (statically too) and run.  It touches the runtime (liburcu)
 * and the registry (ck), so a missing private dependency fails the link.
 */
#include <reki/reki.h>

#include <stdio.h>
#include <string.h>

struct ping {
    reki_pid_t reply_to;
    int n;
};

static reki_next_t echo_handle(void *state, void *msg, reki_pid_t self)
{
    struct ping *p = msg;

    (void)self;
    p->n += 1;
    if (reki_send(state, p->reply_to, p) != REKI_OK)
        return REKI_CRASH;
    return REKI_CONTINUE;
}

static int start_echo(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    static const reki_behavior_t echo = {.handle = echo_handle};

    (void)key;
    (void)keylen;
    (void)arg;
    return reki_spawn(rt, &echo, rt, NULL, out);
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "consumer: %s: %d (%s)\n", what, rc, reki_strerror(rc));
    return 1;
}

static int ping_pong(reki_rt_t *rt, reki_registry_t *reg, reki_inbox_t *in)
{
    reki_pid_t pid = 0, again = 0;
    struct ping p = {.reply_to = reki_inbox_pid(in), .n = 41};
    void *reply = NULL;
    int rc;

    rc = reki_lookup_or_start(reg, "echo", 4, start_echo, NULL, 5000, &pid);
    if (rc != REKI_STARTED)
        return fail("lookup_or_start on an empty registry (want REKI_STARTED = 1)", rc);
    rc = reki_lookup(reg, "echo", 4, &again);
    if (rc != REKI_OK || again != pid)
        return fail("lookup of the started key (want REKI_OK and the same pid)", rc);
    rc = reki_send(rt, pid, &p);
    if (rc != REKI_OK)
        return fail("send", rc);
    rc = reki_inbox_recv(in, &reply, 10000);
    if (rc != REKI_OK)
        return fail("inbox_recv", rc);
    if (reply != &p || p.n != 42) {
        fprintf(stderr, "consumer: wrong reply %p n=%d\n", reply, p.n);
        return 1;
    }
    return 0;
}

int main(void)
{
    reki_rt_opts_t opts = {.workers = 1};
    reki_rt_t *rt = NULL;
    reki_registry_t *reg = NULL;
    reki_inbox_t *in = NULL;
    int rc, status;

    if (strcmp(reki_version_string(), REKI_VERSION_STRING) != 0) {
        fprintf(stderr, "consumer: header says %s, library says %s\n", REKI_VERSION_STRING,
                reki_version_string());
        return 1;
    }
    rc = reki_rt_new(&opts, &rt);
    if (rc != REKI_OK)
        return fail("rt_new", rc);
    rc = reki_registry_new(rt, NULL, &reg);
    if (rc == REKI_OK)
        rc = reki_inbox_new(rt, &in);
    status = rc == REKI_OK ? ping_pong(rt, reg, in) : fail("registry_new/inbox_new", rc);
    reki_registry_free(reg);
    reki_inbox_free(in);
    reki_rt_free(rt);
    if (status == 0)
        printf("consumer: reki %s ok\n", reki_version_string());
    return status;
}
