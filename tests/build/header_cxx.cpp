/*
 * The public header compiled as C++: it must parse under -pedantic -Werror and
 * give its functions C linkage.  reki_cxx_probe calls into the API so that the
 * object file has undefined references, which cxx_linkage.sh checks are the
 * plain C names rather than C++-mangled ones.
 */
#include <reki/reki.h>

#include <cerrno>

static_assert(REKI_EINVAL == -EINVAL, "codes are -errno in C++ too");
static_assert(sizeof(reki_pid_t) == 8, "pids are 64-bit values");

static reki_next_t probe_handle(void *state, void *msg, reki_pid_t self)
{
    (void)state;
    (void)msg;
    (void)self;
    return REKI_STOP;
}

int reki_cxx_probe(reki_rt_t *rt, reki_registry_t *reg);
int reki_cxx_probe(reki_rt_t *rt, reki_registry_t *reg)
{
    reki_behavior_t b = reki_behavior_t();
    reki_pid_t pid = 0;
    int rc;

    b.handle = probe_handle;
    rc = reki_spawn(rt, &b, nullptr, nullptr, &pid);
    if (rc == REKI_OK && reki_alive(rt, pid))
        rc = reki_send(rt, pid, nullptr);
    if (rc == REKI_OK)
        rc = reki_lookup(reg, "k", 1, &pid);
    return reki_strerror(rc)[0] + reki_version_string()[0];
}
