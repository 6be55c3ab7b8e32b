/* reki version macros.  The linked library's version: reki_version_string(). */
#ifndef REKI_VERSION_H
#define REKI_VERSION_H

#define REKI_VERSION_MAJOR 0
#define REKI_VERSION_MINOR 1
#define REKI_VERSION_PATCH 0
#define REKI_VERSION_STRING "0.1.0"
/* One number that grows with each release: 0xMMmmpp. */
#define REKI_VERSION_HEX \
    ((REKI_VERSION_MAJOR << 16) | (REKI_VERSION_MINOR << 8) | REKI_VERSION_PATCH)

#endif /* REKI_VERSION_H */
