/*
 * A single-member etcd for the tests of tests/cluster, on free loopback
 * ports in a temporary data dir.  A guardian process (forked by the test)
 * owns the etcd process: when the test's process ends, however it ends, the
 * guardian sees its pipe close, kills etcd by pid and removes the data dir.
 *
 * The etcd binary: $REKI_ETCD_BIN, or /usr/bin/etcd.
 *
 * Start it before the test makes any thread: the guardian is a fork of the
 * test's process.  Failures are Criterion assertions (test thread only).
 */
#ifndef REKI_TESTS_ETCD_FIXTURE_H
#define REKI_TESTS_ETCD_FIXTURE_H

#include <stdint.h>
#include <sys/types.h>

struct etcd_fixture {
    pid_t guardian; /* owns etcd; cleans up when pipe_w closes */
    pid_t pid;      /* etcd itself (for SIGSTOP / SIGCONT); 0 if unknown */
    int pipe_w;     /* the guardian's lifeline */
    char url[64];   /* "http://127.0.0.1:<client port>" */
};

/* CLOCK_MONOTONIC in milliseconds. */
int64_t etcd_fixture_now_ms(void);

/* A loopback socket bound to a free port; listening if `backlog` > 0. */
int etcd_fixture_bound_socket(int backlog, int *port);

/* A port nothing listens on (it was free a moment ago). */
int etcd_fixture_free_port(void);

/* Starts etcd (a few tries, in case a port was taken meanwhile) and waits
 * until it answers. */
void etcd_fixture_start(struct etcd_fixture *e);

/* Has the guardian stop etcd and clean up, and checks that it did. */
void etcd_fixture_stop(struct etcd_fixture *e);

#endif
