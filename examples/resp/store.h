/*
 * The values of passivated keys.  A key's actor holds its value while it
 * lives; when it passivates (idle) it puts the value here, and the key's next
 * actor takes it back out in its start.  reki runs at most one actor per key
 * and starts the next only after the previous one's terminate has returned,
 * so a key is either in the store or in its actor, never both: no lock is
 * held across the two.
 *
 * 64 shards, each a ck_ht (byte-string keys, MurmurHash64A under a random
 * seed, so that keys chosen by a client cannot collide on purpose) under a
 * mutex; a record is one allocation holding key and value.
 */
#ifndef RESP_STORE_H
#define RESP_STORE_H

#include <stddef.h>

typedef struct store store_t;

/* A value taken from the store: the caller owns val (free()). */
typedef struct store_val {
    char *val;
    size_t len;
    size_t cap;
} store_val_t;

int store_new(store_t **out);
void store_free(store_t *s);
/* store_take: remove key's value and hand it over; 1 if found, 0 if not, -1 no memory. */
int store_take(store_t *s, const void *key, size_t klen, store_val_t *out);
/* store_put: keep key's value (val copied); 0, or -1 (no memory: nothing kept). */
int store_put(store_t *s, const void *key, size_t klen, const void *val, size_t vlen);
/* store_putv: the same with the value in two pieces (head, then val), kept as one. */
int store_putv(store_t *s, const void *key, size_t klen, const void *head, size_t hlen,
               const void *val, size_t vlen);
/* store_count: keys held. */
size_t store_count(store_t *s);
/* store_bytes: bytes of records held (keys, values and headers). */
size_t store_bytes(store_t *s);

#endif
