/*
 * Chat rooms as virtual actors: one room per key, addressed only by key
 * (reki_send_key).  A room starts on its first message, stops when its
 * last subscriber leaves, and is passivated when nobody talks for a while;
 * a message that arrives while it stops is not lost: it goes to the room's
 * next incarnation, after the messages queued before it.
 *
 * Here the main thread is the only subscriber (through an inbox).  For each
 * room it sends, in one burst and without waiting: join, three lines,
 * leave (the room stops: no subscriber left), join again, two lines,
 * leave.  Every line must arrive, in order, and each room must have lived
 * exactly twice.  Then one line to a room nobody listens to: the room is
 * passivated (REKI_EXIT_IDLE) after idle_ms.
 */
#include <reki/reki.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ROOMS = 10, MAXSUBS = 8 };
enum kind { JOIN, LEAVE, SAY };

struct msg {
    enum kind kind;
    reki_pid_t who; /* JOIN, LEAVE */
    int room, line; /* SAY */
};

struct room {
    reki_rt_t *rt;
    reki_pid_t subs[MAXSUBS];
    int nsubs;
};

static reki_rt_t *rt;
static atomic_int starts, exits_idle, exits_normal, dropped;

static reki_next_t room_handle(void *state, void *m, reki_pid_t self)
{
    (void)self;
    struct room *r = state;
    struct msg *msg = m;
    switch (msg->kind) {
    case JOIN:
        if (r->nsubs < MAXSUBS)
            r->subs[r->nsubs++] = msg->who;
        break;
    case LEAVE:
        for (int i = 0; i < r->nsubs; i++)
            if (r->subs[i] == msg->who)
                r->subs[i--] = r->subs[--r->nsubs];
        free(msg);
        /* No subscriber left: this incarnation ends.  Whatever is queued
         * behind this message goes to the room's next one. */
        return r->nsubs == 0 ? REKI_STOP : REKI_CONTINUE;
    case SAY:
        for (int i = 0; i < r->nsubs; i++) {
            struct msg *copy = malloc(sizeof(*copy));
            if (!copy)
                return REKI_CRASH;
            *copy = *msg;
            if (reki_send(r->rt, r->subs[i], copy) != REKI_OK)
                free(copy);
        }
        break;
    }
    free(msg);
    return REKI_CONTINUE;
}

static void room_terminate(void *state, int reason)
{
    (void)reason;
    free(state);
}

static void msg_free(void *m)
{
    free(m);
}

static const reki_behavior_t room_behavior = {NULL, room_handle, room_terminate, msg_free};

static int room_start(reki_rt_t *r, const void *key, size_t keylen, void *arg, reki_pid_t *out)
{
    (void)key;
    (void)keylen;
    (void)arg;
    struct room *room = calloc(1, sizeof(*room));
    if (!room)
        return REKI_ENOMEM;
    room->rt = r;
    int rc = reki_spawn(r, &room_behavior, room, NULL, out);
    if (rc != REKI_OK)
        free(room);
    return rc;
}

static void room_drop(void *m)
{
    atomic_fetch_add(&dropped, 1);
    free(m);
}

static void on_event(const void *key, size_t keylen, reki_pid_t pid, int event, int detail,
                     void *arg)
{
    (void)key;
    (void)keylen;
    (void)pid;
    (void)arg;
    if (event == REKI_EVENT_STARTED)
        atomic_fetch_add(&starts, 1);
    if (event == REKI_EVENT_EXITED && detail == REKI_EXIT_IDLE)
        atomic_fetch_add(&exits_idle, 1);
    if (event == REKI_EVENT_EXITED && detail == REKI_EXIT_NORMAL)
        atomic_fetch_add(&exits_normal, 1);
}

static int post(reki_registry_t *reg, int room, enum kind kind, reki_pid_t who, int line)
{
    char key[16];
    int n = snprintf(key, sizeof(key), "room-%d", room);
    struct msg *m = malloc(sizeof(*m));
    if (!m)
        return REKI_ENOMEM;
    *m = (struct msg){kind, who, room, line};
    int rc = reki_send_key(reg, key, (size_t)n, m);
    if (rc != REKI_OK)
        free(m);
    return rc;
}

int main(void)
{
    reki_registry_t *reg;
    reki_inbox_t *me;
    reki_registry_opts_t o = {0};
    o.start = room_start;
    o.idle_ms = 50;
    o.drop = room_drop;
    o.on_event = on_event;
    if (reki_rt_new(NULL, &rt) != REKI_OK || reki_registry_new(rt, &o, &reg) != REKI_OK ||
        reki_inbox_new(rt, &me) != REKI_OK)
        return 1;
    reki_pid_t self = reki_inbox_pid(me);
    int ok = 1;
    for (int r = 0; r < ROOMS; r++) {
        ok &= post(reg, r, JOIN, self, 0) == REKI_OK;
        for (int l = 0; l < 3; l++)
            ok &= post(reg, r, SAY, 0, l) == REKI_OK;
        ok &= post(reg, r, LEAVE, self, 0) == REKI_OK;
        ok &= post(reg, r, JOIN, self, 0) == REKI_OK;
        for (int l = 3; l < 5; l++)
            ok &= post(reg, r, SAY, 0, l) == REKI_OK;
        ok &= post(reg, r, LEAVE, self, 0) == REKI_OK;
    }
    int next[ROOMS] = {0};
    for (int i = 0; i < ROOMS * 5; i++) {
        void *m;
        if (reki_inbox_recv(me, &m, 10000) != REKI_OK) {
            printf("virtual_rooms: a line never arrived\n");
            return 1;
        }
        struct msg *got = m;
        if (got->line != next[got->room]++) {
            printf("virtual_rooms: room %d: line %d out of order\n", got->room, got->line);
            ok = 0;
        }
        free(got);
    }
    printf("virtual_rooms: %d lines in order across %d room incarnations\n", ROOMS * 5,
           atomic_load(&starts));
    /* A room nobody listens to: started by the line, passivated after 50 ms. */
    ok &= post(reg, 0, SAY, 0, 99) == REKI_OK;
    reki_pid_t pid;
    ok &= reki_await(reg, "room-0", 6, 10000, &pid) == REKI_OK;
    for (int i = 0; i < 10000 && atomic_load(&exits_idle) == 0; i++) {
        void *m;
        reki_inbox_recv(me, &m, 1); /* nothing comes: a 1 ms pause */
    }
    printf("virtual_rooms: room-0 passivated after idling: %s\n",
           atomic_load(&exits_idle) == 1 ? "yes" : "no");
    ok &= atomic_load(&starts) == 2 * ROOMS + 1 && atomic_load(&exits_normal) == 2 * ROOMS &&
          atomic_load(&exits_idle) == 1 && atomic_load(&dropped) == 0;
    reki_inbox_free(me);
    reki_registry_free(reg);
    reki_rt_free(rt);
    if (!ok) {
        printf("virtual_rooms: FAILED\n");
        return 1;
    }
    printf("virtual_rooms: all checks passed\n");
    return 0;
}
