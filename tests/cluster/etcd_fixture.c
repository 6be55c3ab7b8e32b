/*
 * A guardian-owned, single-member etcd for the tests (see etcd_fixture.h).
 */
#include "etcd_fixture.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "etcd.h"
#include "reki/reki.h"

int64_t etcd_fixture_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int etcd_fixture_bound_socket(int backlog, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    cr_assert(backlog <= 0 || listen(fd, backlog) == 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

int etcd_fixture_free_port(void)
{
    int port;
    close(etcd_fixture_bound_socket(0, &port));
    return port;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* The guardian: runs etcd until its lifeline closes or etcd exits, then
 * cleans up.  It tells the test etcd's pid through info_w. */
static _Noreturn void guardian(int pipe_r, int info_w, const char *dir, int cport, int pport)
{
    /* Keep no descriptor of the test's (another fixture's lifeline, a
     * socket): only stdio, the lifeline and the info pipe. */
    for (int fd = 3; fd < 1024; fd++)
        if (fd != pipe_r && fd != info_w)
            close(fd);
    char curl[64], purl[64], cluster[80], log[128];
    snprintf(curl, sizeof(curl), "http://127.0.0.1:%d", cport);
    snprintf(purl, sizeof(purl), "http://127.0.0.1:%d", pport);
    snprintf(cluster, sizeof(cluster), "t=%s", purl);
    snprintf(log, sizeof(log), "%s/etcd.log", dir);
    char data[128];
    snprintf(data, sizeof(data), "%s/data", dir);
    const char *bin = getenv("REKI_ETCD_BIN") ? getenv("REKI_ETCD_BIN") : "/usr/bin/etcd";
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* the guardian died: so does etcd */
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(bin, bin, "--name", "t", "--data-dir", data, "--listen-client-urls", curl,
              "--advertise-client-urls", curl, "--listen-peer-urls", purl,
              "--initial-advertise-peer-urls", purl, "--initial-cluster", cluster, (char *)NULL);
        _exit(127);
    }
    ssize_t w = write(info_w, &pid, sizeof(pid)); /* short: the test knows no pid */
    (void)w;
    close(info_w);
    struct pollfd p = {.fd = pipe_r, .events = POLLIN};
    bool alive = pid > 0;
    while (alive && poll(&p, 1, 100) == 0)
        alive = waitpid(pid, NULL, WNOHANG) == 0;
    if (alive) {
        int64_t deadline = etcd_fixture_now_ms() + 10000;
        kill(pid, SIGTERM);
        kill(pid, SIGCONT); /* a test may have left it stopped */
        while ((alive = waitpid(pid, NULL, WNOHANG) == 0) && etcd_fixture_now_ms() < deadline)
            usleep(10000);
        if (alive && kill(pid, SIGKILL) == 0)
            waitpid(pid, NULL, 0);
    }
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    _exit(0);
}

void etcd_fixture_start(struct etcd_fixture *e)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        char dir[] = "/tmp/reki-etcd-test-XXXXXX";
        int fds[2], info[2];
        cr_assert_not_null(mkdtemp(dir));
        cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
        cr_assert_eq(pipe2(info, O_CLOEXEC), 0);
        int cport = etcd_fixture_free_port(), pport = etcd_fixture_free_port();
        e->guardian = fork();
        cr_assert_geq(e->guardian, 0);
        if (e->guardian == 0) {
            close(fds[1]);
            close(info[0]);
            guardian(fds[0], info[1], dir, cport, pport);
        }
        close(fds[0]);
        close(info[1]);
        e->pipe_w = fds[1];
        e->pid = 0;
        if (read(info[0], &e->pid, sizeof(e->pid)) != (ssize_t)sizeof(e->pid) || e->pid < 0)
            e->pid = 0;
        close(info[0]);
        snprintf(e->url, sizeof(e->url), "http://127.0.0.1:%d", cport);
        reki__etcd_t *c = NULL;
        cr_assert_eq(reki__etcd_new(e->url, 1000, &c), REKI_OK, "client for %s", e->url);
        struct reki__etcd_kv *kvs;
        size_t n;
        int64_t deadline = etcd_fixture_now_ms() + 20000;
        while (waitpid(e->guardian, NULL, WNOHANG) == 0 && etcd_fixture_now_ms() < deadline) {
            if (reki__etcd_range_prefix(c, "x", 1, &kvs, &n, NULL) == REKI_OK) {
                reki__etcd_kvs_free(kvs, n);
                reki__etcd_free(c);
                return;
            }
            usleep(50000);
        }
        reki__etcd_free(c);
        close(e->pipe_w);
        waitpid(e->guardian, NULL, 0);
    }
    cr_assert(false, "etcd did not start");
}

void etcd_fixture_stop(struct etcd_fixture *e)
{
    close(e->pipe_w);
    int st = -1;
    cr_assert_eq(waitpid(e->guardian, &st, 0), e->guardian);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the guardian stopped etcd and cleaned up");
}
