/*
 * The public header must stand alone (nothing is included before it) and be
 * strict ISO C: this file is compiled with -std=c11 -pedantic -Werror.  The
 * asserts pin the documented promise that each code equals -errno.
 */
#include <reki/reki.h>

#include <errno.h>

_Static_assert(REKI_OK == 0, "REKI_OK is 0");
_Static_assert(REKI_STARTED == 1, "REKI_STARTED is the one positive success");
_Static_assert(REKI_ENOTFOUND == -ENOENT, "REKI_ENOTFOUND is -ENOENT");
_Static_assert(REKI_EDEAD == -ESRCH, "REKI_EDEAD is -ESRCH");
_Static_assert(REKI_EAGAIN == -EAGAIN, "REKI_EAGAIN is -EAGAIN");
_Static_assert(REKI_ENOMEM == -ENOMEM, "REKI_ENOMEM is -ENOMEM");
_Static_assert(REKI_EINVAL == -EINVAL, "REKI_EINVAL is -EINVAL");
_Static_assert(REKI_EDEADLK == -EDEADLK, "REKI_EDEADLK is -EDEADLK");
_Static_assert(REKI_ESHUTDOWN == -ESHUTDOWN, "REKI_ESHUTDOWN is -ESHUTDOWN");
_Static_assert(REKI_ETIMEDOUT == -ETIMEDOUT, "REKI_ETIMEDOUT is -ETIMEDOUT");
_Static_assert(sizeof(reki_pid_t) == 8, "pids are 64-bit values");
_Static_assert(REKI_VERSION_HEX ==
                   ((REKI_VERSION_MAJOR << 16) | (REKI_VERSION_MINOR << 8) | REKI_VERSION_PATCH),
               "REKI_VERSION_HEX is 0xMMmmpp");
