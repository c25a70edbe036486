/* core/retain.h - one shard's retained-message index: exact topic -> value, and a walk of
 * every stored topic that matches a filter.
 *
 * Owned by one shard; only that shard's thread calls it. Values are opaque pointers owned by
 * the caller (the broker stores a struct msg *); the index never frees them: retain_set and
 * retain_clear return the displaced value so the caller can release it.
 */
#ifndef KEELMQ_CORE_RETAIN_H
#define KEELMQ_CORE_RETAIN_H

#include "core/base.h"

struct retain;

struct retain *retain_create(void);
/* Calls `release(ctx, value)` for every stored value, then frees the index. */
void retain_destroy(struct retain *r, void (*release)(void *ctx, void *value), void *ctx);

/* Stores `value` (non-NULL) for `topic` (a valid name; copied). Returns the previous value or
 * NULL. Sets *err to -ENOMEM (and stores nothing) when out of memory, else 0. */
void *retain_set(struct retain *r, struct slice topic, void *value, int *err);

/* Removes `topic`. Returns the removed value or NULL if there was none. */
void *retain_clear(struct retain *r, struct slice topic);

/* Returns the value stored for exactly `topic`, or NULL. */
void *retain_get(const struct retain *r, struct slice topic);

/* Calls `fn(ctx, topic, value)` for every stored topic matching `filter` (valid, non-shared),
 * applying the '$' rule. Walks only the branches the filter can match. `topic` borrows from
 * the index and is valid during the call. The callback must not modify the index. */
typedef void (*retain_walk_fn)(void *ctx, struct slice topic, void *value);
void retain_match(const struct retain *r, struct slice filter, retain_walk_fn fn, void *ctx);

/* Calls `fn` for every stored topic, '$' topics included, in no particular order. */
void retain_walk_all(const struct retain *r, retain_walk_fn fn, void *ctx);

uint32_t retain_count(const struct retain *r);

#endif
