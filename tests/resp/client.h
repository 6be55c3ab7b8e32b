/*
 * Test helpers for reki-resp: start a server on a free loopback port (by
 * pid), stop it by pid, and talk RESP to it over plain sockets or through
 * redis-cli.  Every wait is bounded (10 s receive timeouts, 30 s to exit).
 */
#ifndef RESP_TEST_CLIENT_H
#define RESP_TEST_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct server {
    pid_t pid;
    int port;
} server_t;

/* Start reki-resp with extra arguments (NULL-terminated); aborts the test on failure. */
server_t server_start(const char *const *args);
/* SIGTERM, wait; the exit status (0 = clean: under ASan, also no leak). */
int server_stop(server_t *s);

typedef struct client {
    int fd;
    char buf[1 << 16];
    size_t len, off;
} client_t;

client_t *client_open(int port);
void client_close(client_t *c);
/* Send raw bytes / one command as a multibulk (argv with lengths). */
void client_raw(client_t *c, const void *bytes, size_t len);
void client_cmdv(client_t *c, int argc, const char *const *argv, const size_t *lens);
/* One command from C strings. */
void client_cmd(client_t *c, const char *a0, ...) __attribute__((sentinel));
/*
 * The next reply as text: "+OK", "-ERR ...", ":5", "$bytes", "(nil)",
 * "*2[$a,$b]".  NULL when the server closed the connection (or 10 s passed).
 * The caller frees it.
 */
char *client_reply(client_t *c);
/* True if the server closed the connection (reads EOF within 10 s). */
bool client_closed_by_server(client_t *c);

/* Run redis-cli -p port args..., return its stdout without the last newline. */
char *cli(int port, const char *args);

#endif
