/*
 * channels: a tiny publish/subscribe service built on reki.
 *
 * Each channel is an actor that keeps a list of subscriber pids.  Two kinds
 * of message drive it: Subscribe(pid) adds a subscriber, Publish(text) sends
 * a copy of the text to every subscriber.  Channels live in a registry under
 * their name, so whoever asks for "general" first starts it, and everyone
 * else gets the same actor.
 *
 * main() plays a client: it subscribes an inbox (a mailbox for a plain
 * thread) to "general" and publishes three texts, reaching the channel three
 * ways: by starting it, by looking it up-or-starting it again, and by a
 * plain lookup.  The inbox must receive the three texts in order.
 *
 * Ownership: every message is malloc'd by its sender.  Once reki_send
 * returns REKI_OK the receiver owns it: the channel frees what it handles,
 * and the behaviour's drop callback frees what it never gets to handle.
 * When a send fails, the message is still the sender's to free.
 */
#define _POSIX_C_SOURCE 200809L /* strdup */

#include <reki/reki.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------ the channel actor -- */

enum channel_op { SUBSCRIBE, PUBLISH };

struct channel_msg {
    enum channel_op op;
    reki_pid_t subscriber; /* SUBSCRIBE */
    char *text;            /* PUBLISH: owned by the message */
};

struct channel {
    reki_rt_t *rt;
    reki_pid_t *subscribers;
    size_t count, capacity;
};

static void channel_msg_free(void *msg)
{
    struct channel_msg *m = msg;
    free(m->text);
    free(m);
}

/* Runs inside reki_spawn, before the channel handles anything. */
static int channel_init(reki_pid_t self, void *arg, void **state)
{
    (void)self;
    struct channel *c = calloc(1, sizeof *c);
    if (c == NULL)
        return REKI_ENOMEM; /* reki_spawn returns this code */
    c->rt = arg;
    *state = c;
    return 0;
}

static void channel_subscribe(struct channel *c, reki_pid_t pid)
{
    if (c->count == c->capacity) {
        size_t cap = c->capacity ? 2 * c->capacity : 4;
        reki_pid_t *grown = realloc(c->subscribers, cap * sizeof *grown);
        if (grown == NULL)
            return; /* out of memory: this subscriber is not added */
        c->subscribers = grown;
        c->capacity = cap;
    }
    c->subscribers[c->count++] = pid;
}

/* Each subscriber gets its own copy of the text; a subscriber that is gone
 * (its send returns REKI_EDEAD) is forgotten. */
static void channel_publish(struct channel *c, const char *text)
{
    size_t kept = 0;
    for (size_t i = 0; i < c->count; i++) {
        char *copy = strdup(text);
        if (copy == NULL)
            break;
        if (reki_send(c->rt, c->subscribers[i], copy) != REKI_OK) {
            free(copy); /* not taken: still ours */
            continue;
        }
        c->subscribers[kept++] = c->subscribers[i];
    }
    c->count = kept;
}

static reki_next_t channel_handle(void *state, void *msg, reki_pid_t self)
{
    (void)self;
    struct channel *c = state;
    struct channel_msg *m = msg;
    if (m->op == SUBSCRIBE)
        channel_subscribe(c, m->subscriber);
    else
        channel_publish(c, m->text);
    channel_msg_free(m);
    return REKI_CONTINUE;
}

/* Called once when the channel exits (here: at reki_registry_free). */
static void channel_terminate(void *state, int reason)
{
    (void)reason;
    struct channel *c = state;
    free(c->subscribers);
    free(c);
}

static const reki_behavior_t channel_behavior = {
    .init = channel_init,
    .handle = channel_handle,
    .terminate = channel_terminate,
    .drop = channel_msg_free,
};

/* The registry's start function: called only when no channel of that name
 * is alive, on the calling thread, with no lock held. */
static int channel_start(reki_rt_t *rt, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)arg;
    printf("starting channel \"%.*s\"\n", (int)keylen, (const char *)key);
    return reki_spawn(rt, &channel_behavior, rt, NULL, out);
}

/* ------------------------------------------------------ the client -- */

static int send_op(reki_rt_t *rt, reki_pid_t channel, enum channel_op op, reki_pid_t subscriber,
                   const char *text)
{
    struct channel_msg *m = calloc(1, sizeof *m);
    if (m == NULL)
        return REKI_ENOMEM;
    m->op = op;
    m->subscriber = subscriber;
    if (text != NULL && (m->text = strdup(text)) == NULL) {
        free(m);
        return REKI_ENOMEM;
    }
    int rc = reki_send(rt, channel, m);
    if (rc != REKI_OK)
        channel_msg_free(m); /* refused: the message is still ours */
    return rc;
}

static int check(int rc, int expected, const char *what)
{
    if (rc == expected)
        return 0;
    fprintf(stderr, "channels: %s returned %d (%s), expected %d (%s)\n", what, rc,
            reki_strerror(rc), expected, reki_strerror(expected));
    return 1;
}

/* Publishes through the registry three ways, then reads the inbox. */
static int run(reki_rt_t *rt, reki_registry_t *reg, reki_inbox_t *inbox)
{
    static const char name[] = "general";
    const size_t len = sizeof name - 1;
    const int timeout_ms = 5000;
    reki_pid_t general = 0, again = 0, found = 0;
    int bad = 0;

    /* 1. Nobody has started "general" yet: this call runs channel_start. */
    bad |= check(reki_lookup_or_start(reg, name, len, channel_start, NULL, timeout_ms, &general),
                 REKI_STARTED, "first reki_lookup_or_start");
    bad |=
        check(send_op(rt, general, SUBSCRIBE, reki_inbox_pid(inbox), NULL), REKI_OK, "Subscribe");
    bad |= check(send_op(rt, general, PUBLISH, 0, "Hello!"), REKI_OK, "Publish");

    /* 2. Asking again finds the live channel: same actor, no start. */
    bad |= check(reki_lookup_or_start(reg, name, len, channel_start, NULL, timeout_ms, &again),
                 REKI_OK, "second reki_lookup_or_start");
    if (again != general) {
        fprintf(stderr, "channels: \"general\" is a different actor the second time\n");
        bad = 1;
    }
    bad |= check(send_op(rt, again, PUBLISH, 0, "Also hello!"), REKI_OK, "Publish");

    /* 3. A plain lookup, which never starts anything. */
    bad |= check(reki_lookup(reg, name, len, &found), REKI_OK, "reki_lookup");
    if (found != general) {
        fprintf(stderr, "channels: reki_lookup found another actor\n");
        bad = 1;
    }
    bad |= check(send_op(rt, found, PUBLISH, 0, "Found it!"), REKI_OK, "Publish");
    if (bad)
        return 1;

    /* One sender (main) to one channel: the channel handles the messages in
     * send order, and forwards each text before handling the next. */
    static const char *const expected[] = {"Hello!", "Also hello!", "Found it!"};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        void *msg = NULL;
        if (check(reki_inbox_recv(inbox, &msg, timeout_ms), REKI_OK, "reki_inbox_recv"))
            return 1;
        printf("inbox received: %s\n", (char *)msg);
        int same = strcmp(msg, expected[i]) == 0;
        free(msg);
        if (!same) {
            fprintf(stderr, "channels: expected \"%s\"\n", expected[i]);
            return 1;
        }
    }
    return 0;
}

int main(void)
{
    reki_rt_t *rt = NULL;
    reki_registry_t *reg = NULL;
    reki_inbox_t *inbox = NULL;
    /* Texts still queued in the inbox when it is freed are freed by it. */
    reki_inbox_opts_t inbox_opts = {.drop = free};

    if (check(reki_rt_new(NULL, &rt), REKI_OK, "reki_rt_new"))
        return 1;
    int failed = check(reki_registry_new(rt, NULL, &reg), REKI_OK, "reki_registry_new") ||
                 check(reki_inbox_new_ex(rt, &inbox_opts, &inbox), REKI_OK, "reki_inbox_new_ex") ||
                 run(rt, reg, inbox);

    reki_inbox_free(inbox);
    reki_registry_free(reg); /* stops "general": its terminate frees its state */
    reki_rt_free(rt);
    if (failed)
        return 1;
    printf("channels: all checks passed\n");
    return 0;
}
