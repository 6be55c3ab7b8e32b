/* Return-code strings and the library version. */
#include <errno.h>

#include "core/core.h"

/* The public codes are the negated Linux errno values, written out in the
 * header so it needs no <errno.h>; keep the two in step. */
_Static_assert(REKI_ENOTFOUND == -ENOENT, "code mismatch");
_Static_assert(REKI_EDEAD == -ESRCH, "code mismatch");
_Static_assert(REKI_EAGAIN == -EAGAIN, "code mismatch");
_Static_assert(REKI_ENOMEM == -ENOMEM, "code mismatch");
_Static_assert(REKI_EINVAL == -EINVAL, "code mismatch");
_Static_assert(REKI_EDEADLK == -EDEADLK, "code mismatch");
_Static_assert(REKI_ESHUTDOWN == -ESHUTDOWN, "code mismatch");
_Static_assert(REKI_ETIMEDOUT == -ETIMEDOUT, "code mismatch");
_Static_assert(REKI_EFULL == -ENOBUFS, "code mismatch");

const char *reki_strerror(int code)
{
    switch (code) {
    case REKI_OK: return "success";
    case REKI_STARTED: return "success: started a new actor";
    case REKI_ENOTFOUND: return "no live actor under that key";
    case REKI_EDEAD: return "not a live actor";
    case REKI_EAGAIN: return "could not create a thread";
    case REKI_ENOMEM: return "out of memory";
    case REKI_EINVAL: return "invalid argument";
    case REKI_EDEADLK: return "start function re-entered for its own key";
    case REKI_ESHUTDOWN: return "runtime or registry is shutting down";
    case REKI_ETIMEDOUT: return "timed out";
    case REKI_EFULL: return "mailbox full";
    default: return "unknown reki error";
    }
}

const char *reki_version_string(void)
{
    return REKI_VERSION_STRING;
}
