/* version.h is usable on its own, e.g. in a configure check. */
#include <reki/version.h>

_Static_assert(REKI_VERSION_MAJOR >= 0 && REKI_VERSION_MINOR >= 0 && REKI_VERSION_PATCH >= 0,
               "version numbers are plain integer constants");
static const char reki_version_text[] = REKI_VERSION_STRING;
_Static_assert(sizeof reki_version_text >= sizeof "0.0.0", "version string is MAJOR.MINOR.PATCH");
