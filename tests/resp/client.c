/* Test helpers for reki-resp (see client.h). */
#include "client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
    fprintf(stderr, "resp test: %s: %s\n", what, strerror(errno));
    abort();
}

server_t server_start(const char *const *args)
{
    int out[2];
    if (pipe(out) != 0)
        die("pipe");
    const char *argv[32] = {RESP_SERVER_PATH, "--port", "0"};
    int n = 3;
    for (int i = 0; args && args[i] && n < 30; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        /* If the test dies (a crash, Criterion's timeout), so does its server. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    FILE *f = fdopen(out[0], "r");
    char line[256];
    server_t s = {.pid = pid};
    if (!f || !fgets(line, sizeof(line), f) || !strstr(line, "listening on 127.0.0.1:")) {
        fprintf(stderr, "resp test: server did not start\n");
        kill(pid, SIGKILL);
        abort();
    }
    s.port = atoi(strstr(line, "127.0.0.1:") + 10);
    fclose(f);
    return s;
}

int server_stop(server_t *s)
{
    kill(s->pid, SIGTERM);
    for (int i = 0; i < 3000; i++) {
        int st;
        pid_t r = waitpid(s->pid, &st, WNOHANG);
        if (r == s->pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(10000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    return -1; /* did not stop within 30 s */
}

client_t *client_open(int port)
{
    client_t *c = calloc(1, sizeof(*c));
    if (!c)
        die("calloc");
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        die("connect");
    struct timeval tv = {.tv_sec = 10};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return c;
}

void client_close(client_t *c)
{
    if (!c)
        return;
    close(c->fd);
    free(c);
}

void client_raw(client_t *c, const void *bytes, size_t len)
{
    const char *p = bytes;
    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            return; /* the server may have closed: the reply check says so */
        }
        p += n;
        len -= (size_t)n;
    }
}

void client_cmdv(client_t *c, int argc, const char *const *argv, const size_t *lens)
{
    size_t cap = 64, len = 0;
    for (int i = 0; i < argc; i++)
        cap += lens[i] + 32;
    char *b = malloc(cap);
    len += (size_t)sprintf(b, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++) {
        len += (size_t)sprintf(b + len, "$%zu\r\n", lens[i]);
        memcpy(b + len, argv[i], lens[i]);
        len += lens[i];
        b[len++] = '\r';
        b[len++] = '\n';
    }
    client_raw(c, b, len);
    free(b);
}

void client_cmd(client_t *c, const char *a0, ...)
{
    const char *argv[64];
    size_t lens[64];
    int n = 0;
    va_list ap;
    va_start(ap, a0);
    for (const char *a = a0; a && n < 64; a = va_arg(ap, const char *)) {
        argv[n] = a;
        lens[n++] = strlen(a);
    }
    va_end(ap);
    client_cmdv(c, n, argv, lens);
}

/* Fill the buffer until it holds at least n bytes after off; false at EOF. */
static bool need(client_t *c, size_t n)
{
    while (c->len - c->off < n) {
        if (c->off > 0) {
            memmove(c->buf, c->buf + c->off, c->len - c->off);
            c->len -= c->off;
            c->off = 0;
        }
        if (c->len == sizeof(c->buf))
            return false;
        ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            return false;
        }
        c->len += (size_t)r;
    }
    return true;
}

static char *read_line(client_t *c)
{
    for (size_t scan = 0;; scan++) {
        if (!need(c, scan + 2))
            return NULL;
        if (c->buf[c->off + scan] == '\r' && c->buf[c->off + scan + 1] == '\n') {
            char *l = strndup(c->buf + c->off, scan);
            c->off += scan + 2;
            return l;
        }
    }
}

typedef struct text {
    char *p;
    size_t len, cap;
} text_t;

static void put(text_t *t, const void *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->p = realloc(t->p, t->cap);
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = 0;
}

static bool reply_into(client_t *c, text_t *t)
{
    char *l = read_line(c);
    if (!l)
        return false;
    bool ok = true;
    long long n = atoll(l + 1);
    if (l[0] == '$' && n >= 0) {
        /* A bulk may be larger than the buffer: read it in pieces. */
        put(t, "$", 1);
        size_t left = (size_t)n;
        while (left && ok) {
            size_t chunk = left < sizeof(c->buf) / 2 ? left : sizeof(c->buf) / 2;
            ok = need(c, chunk);
            if (ok) {
                put(t, c->buf + c->off, chunk);
                c->off += chunk;
                left -= chunk;
            }
        }
        ok = ok && need(c, 2);
        c->off += 2;
    } else if (l[0] == '$') {
        put(t, "(nil)", 5);
    } else if (l[0] == '*' && n >= 0) {
        put(t, l, strlen(l));
        put(t, "[", 1);
        for (long long i = 0; i < n && ok; i++) {
            if (i)
                put(t, ",", 1);
            ok = reply_into(c, t);
        }
        put(t, "]", 1);
    } else {
        put(t, l, strlen(l));
    }
    free(l);
    return ok;
}

char *client_reply(client_t *c)
{
    text_t t = {0};
    put(&t, "", 0);
    if (!reply_into(c, &t)) {
        free(t.p);
        return NULL;
    }
    return t.p;
}

bool client_closed_by_server(client_t *c)
{
    char b[256];
    for (;;) {
        ssize_t r = recv(c->fd, b, sizeof(b), 0);
        if (r == 0)
            return true;
        if (r < 0)
            return errno == ECONNRESET;
    }
}

char *cli(int port, const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "timeout 20 redis-cli -p %d %s 2>&1", port, args);
    FILE *f = popen(cmd, "r");
    if (!f)
        die("popen");
    text_t t = {0};
    put(&t, "", 0);
    char b[4096];
    size_t n;
    while ((n = fread(b, 1, sizeof(b), f)) > 0)
        put(&t, b, n);
    pclose(f);
    while (t.len && t.p[t.len - 1] == '\n')
        t.p[--t.len] = 0;
    return t.p;
}
